"""Attention weights per layer and head, and how they compose through the layers.

:func:`capture` runs one forward and returns ``{layer name: (B, heads, T, S)}`` in the
order the layers ran, per head (never averaged), detached. Four routes see attention,
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
- Attention written by hand: every softmax whose result is multiplied by another tensor
  (``@``, ``matmul``, ``bmm``, ``einsum``, through eval-mode dropout, casts, views and transposes),
  as torchvision's Swin (``q @ kᵀ · scale + relative position bias``) and MaxViT, timm blocks
  without fused attention, blog-style modules and memory reads compute it. The map is filed under
  the module whose code ran the softmax: the innermost Python frame whose ``self`` is a module of
  the model, so a method (``self.memory.read(q)``) counts, not only ``forward``.

``softmax=True`` instead records every softmax computed inside the modules named by ``within``
as it is (the read weights of a memory network over its slots, ``(B, slots)``).
:func:`as_heads` brings any of these to ``(B, heads, T, S)``. When nothing is found,
:func:`capture` warns what it looked for.

The forward runs in eval mode (each module's flag restored afterwards): in training mode
the weights would be post-dropout. A model in training mode gets a warning saying so.

Aggregation: :func:`rollout` (Abnar & Zuidema 2020), :func:`relevance` (Chefer et al. 2021,
gradient-weighted, gradients taken on the attention tensors themselves) and :func:`flow`
(attention flow as max-flow, Abnar & Zuidema 2020).
"""

from __future__ import annotations

import inspect
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, UnsupportedModelError, UsageError, require
from .inputs import Inputs, check_finite, check_input
from .layers import LayerSpec, find_layers
from .probe import functions, hooks, require_module, session
from .targets import OutputSpec, Target, TargetLike

__all__ = ["capture", "AttentionMaps", "as_heads", "rollout", "relevance", "relevance_rule", "flow", "fuse_heads"]

_SOFTMAX_FUNCS = {F.softmax, torch.softmax, Tensor.softmax, torch.special.softmax}
_MHA_SIG = inspect.signature(nn.MultiheadAttention.forward)


class AttentionMaps(dict):
    """What :func:`capture` returns: ``{layer: (B, heads, T, S)}`` in the order the layers ran, a plain
    ``dict`` in every way (indexing, iteration, ``==``, ``dict(maps)``, pickling), that shows itself in a
    notebook: per layer its heads side by side for sample 0 on one colour scale, a memory read as bars
    over its slots (:mod:`torchloupe.render.notebook`; matplotlib is imported only then).

    ``tokens``: the tokens of the input (one list of strings, or one list per sample), to label the
    axes whose length they match; ``None`` (the default) labels nothing. Set it on the result
    (``maps.tokens = tokenizer.convert_ids_to_tokens(ids[0])``) or pass ``AttentionMaps(maps, tokens)``.
    """

    tokens: list | None = None

    def __init__(self, maps: Any = (), tokens: Sequence[str] | Sequence[Sequence[str]] | None = None, **kw: Tensor):
        super().__init__(maps, **kw)
        if tokens is not None:
            self.tokens = [list(t) if isinstance(t, (list, tuple)) else t for t in tokens]

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import png_of

        return png_of(self)


class _Recording:
    """Attention tensors of one forward, in call order, keyed by unique layer names."""

    def __init__(self, keep_graph: bool):
        self.keep_graph = keep_graph
        # (call order, module name, weights, the tensor autograd used, how to view its gradient as the weights)
        self.entries: list[tuple[int, str, Tensor, Tensor, Callable[[Tensor], Tensor]]] = []
        self.maps: dict[str, Tensor] = {}
        # For gradients: the tensor autograd actually used, and how to view it as (B, H, T, S).
        self.grad_targets: dict[str, tuple[Tensor, Callable[[Tensor], Tensor]]] = {}
        self.stack: list[str] = []
        self.active_within = 0
        self.calls = 0
        self.unmatched_softmax = 0  # softmaxes whose result multiplied nothing (for the warning)

    def tick(self) -> int:
        """The next position in call order (taken when a call starts, so a map found later keeps its place)."""
        self.calls += 1
        return self.calls

    def add(self, name: str, weights: Tensor, grad_target: Tensor | None = None, view=None,
            seq: int | None = None) -> None:
        target = weights if grad_target is None else grad_target
        self.entries.append((self.tick() if seq is None else seq, name or "model",
                             weights if self.keep_graph else weights.detach(), target,
                             view if view is not None else (lambda g: g)))

    def finish(self) -> None:
        """Fill :attr:`maps` (and :attr:`grad_targets`) in call order; a name seen twice gets ``#1``, ``#2``..."""
        self.maps, self.grad_targets = {}, {}
        for _, name, weights, target, view in sorted(self.entries, key=lambda e: e[0]):
            key, i = name, 0
            while key in self.maps:
                i += 1
                key = f"{name}#{i}"
            self.maps[key] = weights
            if self.keep_graph:
                self.grad_targets[key] = (target, view)

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ""


def as_heads(weights: Tensor, dim: int = -1) -> Tensor:
    """Softmax weights as ``(B, heads, T, S)``, normalised axis ``dim`` moved last as ``S``.

    ``(S,)`` -> ``(1, 1, 1, S)``; ``(B, S)`` (one query per sample: a memory read) -> ``(B, 1, 1, S)``;
    ``(B, T, S)`` -> ``(B, 1, T, S)`` (no head axis: one head); ``(B, H, T, S)`` as it is; more
    leading dims fold into the batch, batch-major: ``(B, G, H, T, S)`` -> ``(B·G, H, T, S)``
    (MaxViT's windows or grid cells, sample 0's first).
    """
    dim = dim % weights.dim()
    if dim != weights.dim() - 1:
        weights = weights.movedim(dim, -1)
    if weights.dim() == 1:
        return weights.reshape(1, 1, 1, -1)
    if weights.dim() == 2:
        return weights[:, None, None, :]
    if weights.dim() == 3:
        return weights[:, None]
    if weights.dim() == 4:
        return weights
    return weights.reshape(-1, *weights.shape[-3:])


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


# Calls through which softmax weights travel to their product with the values (eval-mode dropout,
# casts, head reshapes, transposes, masking after the softmax), and the products that make them attention.
_CARRIES = frozenset({
    "dropout", "to", "type_as", "float", "half", "bfloat16", "double", "contiguous", "clone", "transpose",
    "permute", "swapaxes", "swapdims", "masked_fill", "view", "reshape", "unsqueeze", "squeeze", "flatten",
})
_PRODUCTS = frozenset({"matmul", "__matmul__", "__rmatmul__", "bmm", "mm", "einsum", "baddbmm"})


class _Softmax:
    """One softmax of the forward: where it ran, and whether its result met a value tensor yet."""

    __slots__ = ("seq", "name", "out", "dim", "recorded")

    def __init__(self, seq: int, name: str, out: Tensor, dim: int):
        self.seq, self.name, self.out, self.dim, self.recorded = seq, name, out, dim, False


def _softmax_dim(args: tuple, kwargs: dict, out: Tensor) -> int:
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None:  # F.softmax's implicit (deprecated) choice
        dim = 0 if out.dim() in (0, 1, 3) else 1
    return int(dim) % max(out.dim(), 1)


def _tensors(args: tuple, kwargs: dict):
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):  # einsum's operand list
            yield from (t for t in a if isinstance(t, Tensor))


class _AttentionFunctions:
    """Sees every ``scaled_dot_product_attention``, softmax and matrix product of one forward
    (a handler for :func:`torchloupe.probe.functions`)."""

    def __init__(self, rec: _Recording, softmax: bool, eager_softmax: set[str], modules: dict[int, tuple[str, nn.Module]],
                 within: Sequence[str] | None):
        self.rec = rec
        self.softmax = softmax
        self.eager_softmax = eager_softmax  # Hugging Face eager attention modules by name
        self.modules = modules  # id -> (name, module) of every module of the model
        self.within = within  # names whose softmaxes softmax=True records (None: everywhere)
        self.pending: dict[int, tuple[Tensor, _Softmax]] = {}  # softmax results (and their views) by id

    def owner(self) -> str:
        """The module whose code is running: the innermost Python frame whose ``self`` is a module of
        the model (a method such as ``self.memory.read(q)`` counts, not only ``forward``)."""
        frame = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_argcount and code.co_varnames[0] == "self":
                obj = frame.f_locals.get("self")
                hit = self.modules.get(id(obj))
                if hit is not None and hit[1] is obj:
                    return hit[0]
            frame = frame.f_back
        return self.rec.current

    def _inside_within(self, name: str) -> bool:
        if self.within is None or self.rec.active_within > 0:
            return True
        return any(w == "" or name == w or name.startswith(w + ".") for w in self.within)

    def __call__(self, func, types, args, kwargs):
        if func is F.scaled_dot_product_attention:
            seq = self.rec.tick()
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
            self.rec.add(self.owner(), w4, weights, lambda g, shape=w4.shape: g.reshape(shape), seq=seq)
            if self.rec.keep_graph:
                # Route the output through the recorded weights so gradients reach them.
                value = a["value"]
                if a["enable_gqa"] and value.size(-3) != weights.size(-3):
                    value = value.repeat_interleave(weights.size(-3) // value.size(-3), dim=-3)
                out = weights.to(value.dtype) @ value
            return out
        if func in _SOFTMAX_FUNCS:
            seq = self.rec.tick()
            out = func(*args, **kwargs)
            if not isinstance(out, Tensor) or out.dim() == 0:
                return out
            name = self.owner()
            if name in self.eager_softmax and out.dim() == 4:
                self.rec.add(name, out, seq=seq)
            elif self.softmax and self._inside_within(name):
                self.rec.add(name, out, seq=seq)
            else:
                self.pending[id(out)] = (out, _Softmax(seq, name, out, _softmax_dim(args, kwargs, out)))
            return out
        out = func(*args, **kwargs)
        if not self.pending:
            return out
        fname = getattr(func, "__name__", "")
        if fname in _PRODUCTS:
            for t in _tensors(args, kwargs):
                hit = self.pending.get(id(t))
                if hit is not None and hit[0] is t and not hit[1].recorded:
                    self._record(hit[1])
        elif fname in _CARRIES or fname == "__get__":  # __get__: properties such as .mT, .T
            src = args[0] if args and isinstance(args[0], Tensor) else None
            hit = self.pending.get(id(src)) if src is not None else None
            if hit is not None and hit[0] is src and isinstance(out, Tensor):
                self.pending[id(out)] = (out, hit[1])
        return out

    def _record(self, sm: _Softmax) -> None:
        sm.recorded = True
        dim = sm.dim
        self.rec.add(sm.name, as_heads(sm.out, dim), sm.out, lambda g, dim=dim: as_heads(g, dim), seq=sm.seq)

    def unmatched(self) -> int:
        return len({id(sm) for _, sm in self.pending.values() if not sm.recorded})


def _causal_mask(T: int, S: int, device) -> Tensor:
    return torch.ones(T, S, dtype=torch.bool, device=device).triu(1)  # True = not allowed (MHA convention)


def _mha_hooks(rec: _Recording, name: str):
    asked: dict[str, Any] = {}

    def pre(module, args, kwargs):
        asked["seq"] = rec.tick()
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
            rec.add(name, w, base, lambda g, shape=shape: g.reshape(shape), seq=asked["seq"])
        else:
            rec.add(name, w, seq=asked["seq"])
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
) -> tuple[Any, _Recording, _AttentionFunctions]:
    require_module(model)
    data = inputs.args[0] if inputs.args else None
    if isinstance(data, Tensor):  # the data (token ids are integers: not checked);
        check_finite(data)  # later arguments may be additive masks, where -inf is meaningful
        if data.is_floating_point():  # its width against the first layer (embed_dim), before any forward
            check_input(model, data)
    if within is not None and not softmax:
        raise UsageError(f"within={within!r} names where softmaxes are recorded; pass softmax=True with it")
    within_mods = find_layers(model, within) if within is not None else []
    rec = _Recording(keep_graph)
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
        handler = _AttentionFunctions(
            rec, softmax, set(run.eager_attention), {id(m): (n, m) for n, m in model.named_modules()},
            None if within is None else [n for n, _ in within_mods],
        )
        with hooks(forward_pre={m: push for m in modules}, forward={m: pop for m in modules}):
            with hooks(forward_pre=mha_pre, forward=mha_post, with_kwargs=True):
                with functions(handler), torch.set_grad_enabled(keep_graph or torch.is_grad_enabled()):
                    output = run(inputs)
    rec.finish()
    rec.unmatched_softmax = handler.unmatched()
    handler.pending.clear()
    return output, rec, handler


def capture(
    model: nn.Module,
    *inputs: Any,
    softmax: bool = False,
    within: LayerSpec | Sequence[LayerSpec] | None = None,
    **kwargs: Any,
) -> AttentionMaps:
    """Attention weights of one forward ``model(*inputs, **kwargs)``: ``{layer: (B, heads, T, S)}``, an
    :class:`AttentionMaps` (a ``dict`` that draws itself in a notebook).
    (One :class:`~torchloupe.inputs.Inputs` may stand for all of ``model``'s arguments.)

    Found: every ``nn.MultiheadAttention``, every ``F.scaled_dot_product_attention`` call, Hugging
    Face eager attention, and every softmax whose result is multiplied by another tensor
    (``@``, ``matmul``, ``bmm``, ``einsum``; through dropout, casts, views and transposes on the way):
    attention written by hand, ``softmax(q @ k.transpose(-2, -1) * scale + bias) @ v`` as torchvision's
    Swin and MaxViT, timm blocks without fused attention and blog-style modules compute it, and memory
    reads (a softmax over slots multiplying the memory). Elementwise products (``(w[..., None] * h).sum(1)``)
    are not taken as attention: ``softmax=True`` records those softmaxes.

    Keys are the dotted names of the modules that computed the weights: the module whose code
    (``forward`` or any other method, e.g. ``self.memory.read(q)``) ran the softmax or the
    attention call, in the order they ran; a module that ran twice gets ``name#1`` for its second
    call. Shapes, normalised axis last as ``S``: ``(B, heads, T, S)`` as computed; no head axis
    ``(B, T, S)`` -> ``(B, 1, T, S)``; one query per sample ``(B, S)`` -> ``(B, 1, 1, S)``; extra
    leading dims fold into the batch, batch-major: MaxViT's ``(B, G, heads, T, S)`` ->
    ``(B·G, heads, T, S)``. Swin folds its windows into the batch itself: its maps are
    ``(B·windows, heads, 49, 49)``, sample 0's windows first, row-major over the (padded,
    shifted) window grid. Heads folded into the batch by the model (``bmm`` on ``(B·heads, T, d)``)
    stay folded (``(B·heads, 1, T, S)``): nothing says which factor is which.

    With ``softmax=True`` every softmax computed inside ``within`` (a layer spec; the whole model
    when ``None``) is recorded as it is instead, in whatever shape it has (e.g. memory read weights
    ``(B, slots)``). When nothing is found a warning says what was looked for (never a silent
    ``{}``). The forward runs in eval mode without autograd; the model's modes, hooks, fast-path
    flag and Hugging Face attention implementation are restored. Returns detached tensors on the
    model's device.
    """
    with torch.no_grad():
        _, rec, _ = _run(model, _inputs(inputs, kwargs), keep_graph=False, softmax=softmax, within=within)
    if not rec.maps:
        n_mha = sum(isinstance(m, nn.MultiheadAttention) for m in model.modules())
        seen = (f"{rec.unmatched_softmax} softmax(es) ran but none was multiplied by a tensor; pass softmax=True "
                "to record them" if rec.unmatched_softmax else "no softmax ran")
        where = f" inside {within!r}" if within is not None else ""
        warnings.warn(
            f"tl.attention.capture found no attention in {type(model).__name__}: it looked for "
            f"nn.MultiheadAttention ({n_mha} in the model), F.scaled_dot_product_attention calls, Hugging Face "
            f"attention and softmax results multiplied by a tensor (@, matmul, bmm, einsum)"
            f"{', and every softmax' + where if softmax else ''}; {seen}",
            stacklevel=2,
        )
    return AttentionMaps(rec.maps)


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
    out, rec, _ = _run(model, fed, keep_graph=True, softmax=False, within=None)
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
