"""Attention weights per layer and head, and how they compose through the layers.

:func:`capture` runs one forward and returns ``{layer name: (B, heads, T, S)}`` in the
order the layers ran, per head (never averaged), detached. Three routes see attention,
all active at once:

- ``nn.MultiheadAttention`` (also inside ``nn.TransformerEncoderLayer`` /
  ``DecoderLayer``, which call it with ``need_weights=False``): a forward pre-hook binds
  the call's arguments with :func:`inspect.signature` and forces ``need_weights=True,
  average_attn_weights=False`` (``is_causal=True`` without a mask gets its causal mask
  materialised); a forward hook hands the caller back exactly what it asked for. The
  fused fast path is switched off for the call (``torch.backends.mha``, restored).
- ``F.scaled_dot_product_attention`` (custom blocks, timm-style ViTs, Hugging Face
  ``"sdpa"``): a torch-function handler (:func:`torchloupe.probe.functions`) lets the call run and
  recomputes its weights ``softmax(Q Kᵀ · scale + mask)`` (causal, boolean and additive
  masks, grouped-query heads); the call's own output is returned unchanged.
- Hugging Face ``"eager"`` attention: the softmax inside each attention module is
  recorded. Any other implementation (flash, flex...) is switched to ``"sdpa"`` for the
  call and restored.

``softmax=True`` also records every softmax computed directly inside the modules named
by ``within`` (the read weights of a memory network over its slots).

The forward runs in eval mode (each module's flag restored afterwards): in training mode
the weights would be post-dropout. A model in training mode gets a warning saying so.

Aggregation: :func:`rollout` (Abnar & Zuidema 2020), :func:`relevance` (Chefer et al. 2021,
gradient-weighted, gradients taken on the attention tensors themselves) and :func:`flow`
(attention flow as max-flow, Abnar & Zuidema 2020).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, UnsupportedModelError, UsageError, require
from .inputs import Inputs, check_finite
from .layers import LayerSpec, find_layers
from .probe import functions, hooks, require_module, session
from .targets import OutputSpec, Target, TargetLike

__all__ = ["capture", "rollout", "relevance", "relevance_rule", "flow", "fuse_heads"]

_SOFTMAX_FUNCS = {F.softmax, torch.softmax, Tensor.softmax, torch.special.softmax}
_MHA_SIG = inspect.signature(nn.MultiheadAttention.forward)


class _Recording:
    """Attention tensors of one forward, in call order, keyed by unique layer names."""

    def __init__(self, keep_graph: bool):
        self.keep_graph = keep_graph
        self.maps: dict[str, Tensor] = {}
        # For gradients: the tensor autograd actually used, and how to view it as (B, H, T, S).
        self.grad_targets: dict[str, tuple[Tensor, Callable[[Tensor], Tensor]]] = {}
        self.stack: list[str] = []
        self.active_within = 0

    def key(self, name: str) -> str:
        name = name or "model"
        if name not in self.maps:
            return name
        i = 1
        while f"{name}#{i}" in self.maps:
            i += 1
        return f"{name}#{i}"

    def add(self, name: str, weights: Tensor, grad_target: Tensor | None = None, view=None) -> None:
        key = self.key(name)
        self.maps[key] = weights if self.keep_graph else weights.detach()
        if self.keep_graph:
            target = weights if grad_target is None else grad_target
            self.grad_targets[key] = (target, view if view is not None else (lambda g: g))

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ""


def _sdpa_weights(
    query: Tensor,
    key: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(Q Kᵀ · scale + mask) exactly as ``F.scaled_dot_product_attention`` defines it."""
    L, S, E = query.size(-2), key.size(-2), query.size(-1)
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    compute = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    q, k = query.to(compute), key.to(compute)
    if enable_gqa and q.dim() >= 3 and k.size(-3) != q.size(-3):
        k = k.repeat_interleave(q.size(-3) // k.size(-3), dim=-3)
    scores = q @ k.transpose(-2, -1) * scale
    if is_causal:
        keep = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.to(compute)
    weights = torch.softmax(scores, dim=-1)
    # A row with every key masked is NaN in the formula; it attends nowhere.
    weights = torch.nan_to_num(weights, nan=0.0)
    return weights.to(query.dtype)


_SDPA_SIG = inspect.signature(
    lambda query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False: None
)


class _AttentionFunctions:
    """Sees every ``scaled_dot_product_attention`` (and, if asked, softmax) of one forward
    (a handler for :func:`torchloupe.probe.functions`)."""

    def __init__(self, rec: _Recording, softmax: bool, eager_softmax: set[str]):
        self.rec = rec
        self.softmax = softmax
        self.eager_softmax = eager_softmax  # Hugging Face eager attention modules by name

    def __call__(self, func, types, args, kwargs):
        if func is F.scaled_dot_product_attention:
            bound = _SDPA_SIG.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            weights = _sdpa_weights(
                a["query"], a["key"], a["attn_mask"], a["dropout_p"], a["is_causal"], a["scale"], a["enable_gqa"]
            )
            out = func(*args, **kwargs)
            if weights.dim() == 3:  # unbatched (heads, L, S)
                w4 = weights.unsqueeze(0)
            elif weights.dim() > 4:  # extra leading dims fold into the batch
                w4 = weights.reshape(-1, *weights.shape[-3:])
            else:
                w4 = weights
            self.rec.add(self.rec.current, w4, weights, lambda g, shape=w4.shape: g.reshape(shape))
            if self.rec.keep_graph:
                # Route the output through the recorded weights so gradients reach them.
                value = a["value"]
                if a["enable_gqa"] and value.size(-3) != weights.size(-3):
                    value = value.repeat_interleave(weights.size(-3) // value.size(-3), dim=-3)
                out = weights.to(value.dtype) @ value
            return out
        out = func(*args, **kwargs)
        if func in _SOFTMAX_FUNCS:
            name = self.rec.current
            if name in self.eager_softmax and isinstance(out, Tensor) and out.dim() == 4:
                self.rec.add(name, out)
            elif self.softmax and self.rec.active_within > 0:
                self.rec.add(name, out)
        return out


def _causal_mask(T: int, S: int, device) -> Tensor:
    return torch.ones(T, S, dtype=torch.bool, device=device).triu(1)  # True = not allowed (MHA convention)


def _mha_hooks(rec: _Recording, name: str):
    asked: dict[str, Any] = {}

    def pre(module, args, kwargs):
        bound = _MHA_SIG.bind(module, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        asked["need_weights"] = a["need_weights"]
        asked["average"] = a["average_attn_weights"]
        a["need_weights"] = True
        a["average_attn_weights"] = False
        if a["is_causal"] and a["attn_mask"] is None:
            q, k = a["query"], a["key"]
            t_dim = 0 if (q.dim() == 2 or not module.batch_first) else 1
            a["attn_mask"] = _causal_mask(q.size(t_dim), k.size(t_dim), q.device)
        new_kwargs = dict(a)
        new_kwargs.pop("self")
        return (), new_kwargs

    def post(module, args, kwargs, output):
        out, weights = output
        w = weights if weights.dim() == 4 else weights.unsqueeze(0)
        base = weights._base if weights._base is not None else None
        if base is not None and rec.keep_graph:
            shape = w.shape
            rec.add(name, w, base, lambda g, shape=shape: g.reshape(shape))
        else:
            rec.add(name, w)
        if not asked["need_weights"]:
            return out, None
        if asked["average"]:
            return out, weights.mean(dim=-3)
        return out, weights

    return pre, post


def _inputs(inputs: tuple, kwargs: dict) -> Inputs:
    """What ``model(*inputs, **kwargs)`` takes; one :class:`~torchloupe.inputs.Inputs` passes as it is."""
    if len(inputs) == 1 and isinstance(inputs[0], Inputs) and not kwargs:
        return inputs[0]
    return Inputs(tuple(inputs), dict(kwargs))


def _run(
    model: nn.Module,
    inputs: Inputs,
    *,
    keep_graph: bool,
    softmax: bool,
    within: LayerSpec | Sequence[LayerSpec] | None,
) -> tuple[Any, _Recording]:
    require_module(model)
    data = inputs.args[0] if inputs.args else None
    if isinstance(data, Tensor):  # the data (token ids are integers: not checked);
        check_finite(data)  # later arguments may be additive masks, where -inf is meaningful
    if within is not None and not softmax:
        raise UsageError(f"within={within!r} names where softmaxes are recorded; pass softmax=True with it")
    within_mods = find_layers(model, within) if within is not None else []
    rec = _Recording(keep_graph)
    if softmax and within is None:
        rec.active_within = 1  # the whole model
    names = {id(m): n for n, m in model.named_modules()}
    within_ids = {id(m) for _, m in within_mods}

    def push(module, args):
        rec.stack.append(names[id(module)])
        if id(module) in within_ids:
            rec.active_within += 1

    def pop(module, args, output):
        if rec.stack:
            rec.stack.pop()
        if id(module) in within_ids:
            rec.active_within -= 1

    mha = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    mha_pre, mha_post = {}, {}
    for n, m in mha:
        mha_pre[m], mha_post[m] = _mha_hooks(rec, n)
    modules = [m for _, m in model.named_modules()]
    if model.training:
        warnings.warn(
            f"{type(model).__name__} is in training mode; attention is captured in eval mode "
            "(no dropout on the weights) and the mode is restored afterwards",
            stacklevel=3,
        )
    with session(model, fastpath=False, hf_attention="sdpa") as run:
        eager = run.eager_attention
        with hooks(forward_pre={m: push for m in modules}, forward={m: pop for m in modules}):
            with hooks(forward_pre=mha_pre, forward=mha_post, with_kwargs=True):
                with functions(_AttentionFunctions(rec, softmax, eager)), torch.set_grad_enabled(keep_graph or torch.is_grad_enabled()):
                    output = run(inputs)
    return output, rec


def capture(
    model: nn.Module,
    *inputs: Any,
    softmax: bool = False,
    within: LayerSpec | Sequence[LayerSpec] | None = None,
    **kwargs: Any,
) -> dict[str, Tensor]:
    """Attention weights of one forward ``model(*inputs, **kwargs)``: ``{layer: (B, heads, T, S)}``.
    (One :class:`~torchloupe.inputs.Inputs` may stand for all of ``model``'s arguments.)

    Keys are the dotted names of the modules that computed attention (an
    ``nn.MultiheadAttention``, or the module calling ``scaled_dot_product_attention``), in
    the order they ran; a module that ran twice gets ``name#1`` for its second call. With
    ``softmax=True`` every softmax computed inside ``within`` (a layer spec; the whole
    model when ``None``) is recorded too, under the name of the module computing it, in
    whatever shape it has (e.g. memory read weights ``(B, slots)``). The forward runs in
    eval mode without autograd; the model's modes, hooks, fast-path flag and Hugging Face
    attention implementation are restored. Returns detached tensors on the model's device.
    """
    with torch.no_grad():
        _, rec = _run(model, _inputs(inputs, kwargs), keep_graph=False, softmax=softmax, within=within)
    return dict(rec.maps)


def _maps_list(maps: Mapping[str, Tensor] | Sequence[Tensor]) -> list[Tensor]:
    seq = list(maps.values()) if isinstance(maps, Mapping) else list(maps)
    if not seq:
        raise InputError("expected at least one attention map (B, heads, T, T); got none")
    T = seq[0].shape[-1]
    for i, a in enumerate(seq):
        if not isinstance(a, Tensor) or a.dim() != 4 or a.shape[-1] != a.shape[-2] or a.shape[-1] != T:
            shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise InputError(
                f"attention map {i} has shape {shape}; expected self-attention (B, heads, {T}, {T}) "
                "for every layer"
            )
    return seq


def fuse_heads(a: Tensor, head_fusion: str = "mean") -> Tensor:
    """(B, heads, T, S) -> (B, T, S) by mean, max or min over heads."""
    if head_fusion == "mean":
        return a.mean(dim=1)
    if head_fusion == "max":
        return a.amax(dim=1)
    if head_fusion == "min":
        return a.amin(dim=1)
    raise UsageError(f"head_fusion={head_fusion!r}; expected 'mean', 'max' or 'min'")


def _residual(a: Tensor, head_fusion: str, discard_ratio: float) -> Tensor:
    fused = fuse_heads(a, head_fusion).float() if a.dtype in (torch.float16, torch.bfloat16) else fuse_heads(a, head_fusion)
    if discard_ratio > 0:
        B, T, _ = fused.shape
        flat = fused.reshape(B, -1)
        k = int(flat.shape[1] * discard_ratio)
        if k > 0:
            idx = flat.topk(k, dim=1, largest=False).indices
            flat = flat.scatter(1, idx, 0.0)
        fused = flat.reshape(B, T, T)
    eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    a_hat = 0.5 * fused + 0.5 * eye
    return a_hat / a_hat.sum(dim=-1, keepdim=True)


def rollout(
    maps: Mapping[str, Tensor] | Sequence[Tensor],
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020, https://arxiv.org/abs/2005.00928): ``(B, T, T)``.

    Per layer ``Â = 0.5·fuse_heads(A) + 0.5·I`` with rows renormalised to sum 1 (the
    residual connection), then ``R = Â_L ⋯ Â_1``; ``R[b, i, j]`` is how much output token
    ``i`` draws on input token ``j``. ``discard_ratio`` zeroes that fraction of the smallest
    fused weights per sample before adding the identity (as vit-explain does). ``maps`` in
    the order the layers ran (a :func:`capture` dict works).
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise UsageError(f"discard_ratio={discard_ratio!r}; expected a fraction in [0, 1)")
    seq = _maps_list(maps)
    result = None
    for a in seq:
        a_hat = _residual(a, head_fusion, discard_ratio)
        result = a_hat if result is None else a_hat @ result
    return result


def relevance_rule(maps: Sequence[Tensor], grads: Sequence[Tensor]) -> Tensor:
    """Chefer et al. 2021 rule for self-attention: ``R ← R + Ā R``, ``Ā = mean_h (∇A ⊙ A)⁺``; ``(B, T, T)``."""
    seq = _maps_list(list(maps))
    if len(grads) != len(seq):
        raise InputError(f"got {len(grads)} gradients for {len(seq)} attention maps; expected one per map")
    B, _, T, _ = seq[0].shape
    R = torch.eye(T, dtype=seq[0].dtype, device=seq[0].device).expand(B, T, T).clone()
    for a, g in zip(seq, grads):
        a_bar = (g * a).clamp(min=0).mean(dim=1)
        R = R + a_bar @ R
    return R


def relevance(
    model: nn.Module,
    *inputs: Any,
    target: TargetLike = None,
    score: Callable[[Any], Tensor] | None = None,
    output: OutputSpec = None,
    **kwargs: Any,
) -> Tensor:
    """Gradient-weighted attention relevance (Chefer et al. 2021, https://arxiv.org/abs/2103.15679).

    One forward of ``model(*inputs, **kwargs)`` and one ``torch.autograd.grad`` of the target score
    with respect to every self-attention tensor itself (for ``nn.MultiheadAttention`` the returned
    weights are a view; the gradient is taken on their base). Returns ``R`` ``(B, T, T)`` from
    :func:`relevance_rule`. ``target``: class indices (predicted when ``None``) or a callable from the
    output to ``(B,)`` scores (:mod:`torchloupe.targets`); ``score`` is such a callable too (it takes
    precedence); ``output`` selects the ``(B, classes)`` scores of a dict / tuple / ``ModelOutput``
    output. SDPA blocks run their output through the recomputed weights here (equal up to rounding)
    so gradients reach them.
    """
    tgt = Target.of(score if score is not None else target, output)
    fed = _inputs(inputs, kwargs)
    out, rec = _run(model, fed, keep_graph=True, softmax=False, within=None)
    _, score_fn = tgt.resolve(out, fed.batch_size)
    s = score_fn(out)
    keys = [k for k, a in rec.maps.items() if a.dim() == 4 and a.shape[-1] == a.shape[-2]]
    if not keys:
        raise UnsupportedModelError(f"{type(model).__name__} computed no self-attention")
    targets = [rec.grad_targets[k][0] for k in keys]
    grads = torch.autograd.grad(s.sum(), targets, allow_unused=True)
    if all(g is None for g in grads):
        raise UnsupportedModelError(
            f"the score of {type(model).__name__} does not depend on any captured attention ({', '.join(keys)})"
        )
    maps, gs = [], []
    for k, g, t in zip(keys, grads, targets):
        view = rec.grad_targets[k][1]
        maps.append(rec.maps[k].detach())
        gs.append(view(torch.zeros_like(t) if g is None else g).detach())
    return relevance_rule(maps, gs)


def flow(
    maps: Mapping[str, Tensor] | Sequence[Tensor],
    head_fusion: str = "mean",
    max_nodes: int = 2048,
) -> Tensor:
    """Attention flow (Abnar & Zuidema 2020): max-flow from each top token to each input token; ``(B, T, T)``.

    The graph has a node per token per layer boundary; layer ``l`` links token ``i`` above
    to token ``j`` below with capacity ``Â_l[i, j]`` (the residual-augmented, row-normalised
    weights of :func:`rollout`). ``F[b, i, j]`` is the maximum flow from top token ``i`` to
    input token ``j``. Cost grows as T² max-flow problems on (L+1)·T nodes: for small L·T
    only (``max_nodes``).
    """
    nx = require("networkx", "dev")

    seq = _maps_list(maps)
    B, _, T, _ = seq[0].shape
    L = len(seq)
    if (L + 1) * T > max_nodes:
        raise InputError(f"attention flow on {L} layers x {T} tokens = {(L + 1) * T} nodes; at most {max_nodes}")
    hats = [_residual(a, head_fusion, 0.0).double().cpu() for a in seq]
    out = torch.zeros(B, T, T, dtype=torch.float64)
    for b in range(B):
        g = nx.DiGraph()
        for layer, a_hat in enumerate(hats):  # layer 0 is the first (bottom) layer
            for i in range(T):
                for j in range(T):
                    c = float(a_hat[b, i, j])
                    if c > 0:
                        g.add_edge((layer + 1, i), (layer, j), capacity=c)
        for i in range(T):
            for j in range(T):
                out[b, i, j] = nx.maximum_flow_value(g, (L, i), (0, j))
    return out.to(dtype=seq[0].dtype if seq[0].is_floating_point() else torch.float32, device=seq[0].device)
