"""Activation maximization: gradient ascent on a parameterized input (Olah et al. 2017).

:func:`maximize` optimizes one image per objective (and ``batch`` images per
objective when asked) in **one batched run**: the images are independent rows
of one forward, so 16 channels cost about one 16-image forward per step.

What it does at each step: parameterization -> robustness transforms ->
normalization -> forward (stopped right after the deepest layer an objective
reads) -> objective per image -> ``torch.autograd.grad`` with respect to the
parameterization only (the model's parameters are frozen for the call and
restored) -> Adam.

Honesty: the result holds each objective's *unit* value (penalties dropped) on
the final images, the best value of the same unit over ``baseline_samples``
random inputs, and the dataset top-1 when exemplars are given. A unit not
driven above its random baseline is flagged in ``failed``.
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputDtypeError, InputShapeError, ObjectiveSpecError, ParamError, TorchLoupeError, UnsupportedModelError, UsageError
from ..inputs import Inputs, check_finite, check_input, dtype_hint, first_layer, standard_layout, takes_shape
from .._limits import check_memory, tensor_bytes
from ..layers import find_layers, layout_of
from ..probe import hooks, intercept, require_module, session
from . import objectives as O
from . import transforms as T
from .params import PARAMS, InputDomain


@dataclass(frozen=True)
class SynthesisResult:
    """Images that maximize objectives, with the evidence of how well they do.

    ``images``: ``(N, *input_shape)`` in the input domain's range (before normalization);
    ``objective_curve``: ``(steps, N)`` objective per image at each step (transformed images);
    ``final_activation``: ``(N,)`` unit value (penalties dropped) on the final, untransformed images;
    ``baseline_activation``: ``(N,)`` best unit value over ``baseline_samples`` random inputs;
    ``dataset_top1``: ``(N,)`` top-1 exemplar value of the unit when exemplars were given, else NaN;
    ``failed``: ``(N,)`` True where ``final_activation`` is not above ``baseline_activation``;
    ``names``: objective name per image; ``groups``: ``(N,)`` objective index per image.
    """

    images: Tensor
    objective_curve: Tensor
    final_activation: Tensor
    baseline_activation: Tensor
    dataset_top1: Tensor
    failed: Tensor
    names: tuple[str, ...]
    groups: Tensor
    param: str
    steps: int
    seed: int

    @property
    def ratio(self) -> Tensor:
        """``final / baseline`` where the baseline is positive, else NaN."""
        b = self.baseline_activation
        return torch.where(b > 0, self.final_activation / b.clamp_min(1e-30), torch.full_like(b, float("nan")))

    def rows(self) -> list[tuple[str, float, float, float, str]]:
        """``(name, final, baseline, dataset top-1, 'ok' | 'FAILED')`` per image, for tables."""
        return [
            (n, float(f), float(b), float(d), "FAILED" if bool(x) else "ok")
            for n, f, b, d, x in zip(self.names, self.final_activation, self.baseline_activation,
                                     self.dataset_top1, self.failed)
        ]

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


# --- redirected ReLU ------------------------------------------------------------------------
class _RedirectedClamp(torch.autograd.Function):
    """Forward ``clamp(x, lo, hi)``; backward passes the clamp's gradient, except for samples where
    it is all zero: there the gradient passes wherever it would move ``x`` back into the range
    (Lucid's RedirectedReLU, generalised to any clamp). Saves masks, not ``x``, so the caller may
    write the result back into ``x`` (in-place ReLU semantics)."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        inside = torch.ones_like(x, dtype=torch.bool)
        below = torch.zeros_like(x, dtype=torch.bool)
        above = torch.zeros_like(x, dtype=torch.bool)
        if lo is not None:
            below = x <= lo
            inside &= ~below
        if hi is not None:
            above = x >= hi
            inside &= ~above
        ctx.save_for_backward(inside, below, above)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, g):
        inside, below, above = ctx.saved_tensors
        # descent moves x by -g: blocked where that pushes x further outside the range
        blocked = (below & (g > 0)) | (above & (g < 0))
        passed = g * inside
        if g.dim() == 0:
            return (passed if bool(passed != 0) else g.masked_fill(blocked, 0)), None, None
        alive = (passed.reshape(passed.shape[0], -1).abs().sum(1) > 0).reshape(-1, *([1] * (g.dim() - 1)))
        return torch.where(alive, passed, g.masked_fill(blocked, 0)), None, None


def _apply(x, lo, hi, inplace):
    out = _RedirectedClamp.apply(x, lo, hi)
    if inplace and not (x.is_leaf and x.requires_grad):
        return x.copy_(out)  # keep the in-place contract: the caller's tensor holds the result
    return out


def _relu(input, inplace=False):
    return _apply(input, 0.0, None, inplace)


def _relu_(input):
    return _apply(input, 0.0, None, True)


def _relu6(input, inplace=False):
    return _apply(input, 0.0, 6.0, inplace)


def _hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    return _apply(input, float(min_val), float(max_val), inplace)


_REDIRECTS = {
    F.relu: _relu,
    torch.relu: _relu,
    torch.relu_: _relu_,
    Tensor.relu: _relu,
    Tensor.relu_: _relu_,
    F.relu_: _relu_,
    F.relu6: _relu6,
    F.hardtanh: _hardtanh,
}


def redirected_relu():
    """Context manager: ReLU-family calls (``nn.ReLU``, ``F.relu``, ``torch.relu_``, ``relu6``,
    ``hardtanh``) in the block get redirected gradients; in-place calls stay in place."""
    return intercept(_REDIRECTS)


# --- helpers --------------------------------------------------------------------------------
class _StopForward(Exception):
    """Raised by the capture hook once every layer the objectives read has run."""


def _default_shape(model: nn.Module) -> tuple[int, ...]:
    found = first_layer(model)
    if found is not None and isinstance(found[1], nn.Conv2d):
        return (found[1].in_channels, 128, 128)
    what = "no parameterized layer" if found is None else f"first layer {found[0]!r} is {type(found[1]).__name__}"
    raise InputShapeError(
        f"input_shape is needed for this model ({what}); pass e.g. input_shape=(3, 64, 64) "
        f"for images or input_shape=(16,) for a feature vector"
    )


def _domain(domain: Any) -> InputDomain:
    if domain is None:
        return InputDomain()
    if isinstance(domain, InputDomain):
        return domain
    if isinstance(domain, dict):
        return InputDomain(**domain)
    raise ParamError(f"domain must be an InputDomain or a dict of its fields, got {type(domain).__name__}")


def _scores(objs: list[O.Objective], ctx: O.Context, fast: tuple[str, Tensor] | None) -> Tensor:
    if fast is not None:  # every objective a plain channel of one layer: one gather
        layer, idx = fast
        a = ctx.view(layer)
        O.check_channel(a, layer, int(idx.max()))
        rows = a[torch.arange(a.shape[0], device=a.device), idx.to(a.device)]
        return rows.reshape(rows.shape[0], -1).mean(1)
    values = torch.stack([o(ctx) for o in objs], 0)  # (K, N)
    return values.gather(0, ctx.groups[None]).squeeze(0)


class _Adam:
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's default update, for a few image tensors.

    Not ``torch.optim.Adam``: building any ``torch.optim`` optimizer imports ``torch._dynamo``,
    which costs 1.5-2.5 s of CPU the first time in a process (each report worker would pay it).
    """

    def __init__(self, params: Sequence[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = list(params), lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - b1**self.t)
        bc2_sqrt = (1 - b2**self.t) ** 0.5
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(self.eps), value=-step_size)


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


# --- main entry -----------------------------------------------------------------------------
#: Bytes held per byte of the synthesized images, at least: the parameterization, Adam's two moments,
#: the gradient, the transformed copies and the model's activations on them (a lower bound).
SYNTHESIS_MEMORY_FACTOR = 12


def check_synthesis_size(n: int, shape: Sequence[int], device: torch.device | str | None = None) -> None:
    """Refuse (:class:`~torchloupe.errors.ResourceLimitError`, one line) ``n`` synthesized inputs of
    ``shape`` whose memory cannot fit, before anything is allocated."""
    need = tensor_bytes((n, *shape)) * SYNTHESIS_MEMORY_FACTOR
    check_memory(need, f"maximize of {n} input(s) of shape {tuple(int(s) for s in shape)}", device=device,
                 hint="use a smaller input shape or batch")


def standard_transforms_for(model: nn.Module, input_shape: Sequence[int]) -> str:
    """``"standard-resized"`` for a model that takes images of ``input_shape`` but not of the size
    the standard transforms make (a ViT's patch grid, a flatten before a linear layer), else
    ``"standard"``. Two probing forwards of zero images."""
    from ..inputs import takes_shape

    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        return "standard"
    grown = tuple(T.standard(0.5, size=min(shape[-2:]))(torch.zeros(1, *shape), torch.Generator()).shape[1:])
    return "standard-resized" if takes_shape(model, shape) and not takes_shape(model, grown) else "standard"


def maximize(
    model: nn.Module,
    objective: O.ObjectiveLike | Sequence[O.ObjectiveLike],
    *,
    param: str = "fft",
    steps: int = 256,
    input_shape: Sequence[int] | None = None,
    transforms: Any = "standard",
    seed: int = 0,
    lr: float = 0.05,
    batch: int = 1,
    domain: InputDomain | dict | None = None,
    redirect_steps: int = 16,
    baseline_samples: int = 32,
    exemplars: Any = None,
    progress: bool = False,
    inputs: Any = None,
    wrt: int | str | None = None,
    channel_dim: int | dict[str, int] | None = None,
) -> SynthesisResult:
    """Synthesize inputs that maximize ``objective`` (one objective, or a list: one image each).

    ``objective``: an :class:`~torchloupe.synthesis.objectives.Objective` or a spec string
    (``"layer3:5"``, ``"layer3:5@(3,4)"``, ``"fc:7"``), or a list of them.
    ``param``: ``"fft"`` | ``"pixel"`` | ``"cppn"``. ``input_shape``: one input without the batch
    dim, e.g. ``(3, 64, 64)``; defaults to ``(C, 128, 128)`` when the first layer is a ``Conv2d``.
    ``transforms``: ``"standard"``, ``"standard-resized"`` (the same, resized back to the input size:
    for models that take one size only), ``None`` or a list of ``t(x, generator)`` callables.
    ``domain``: :class:`InputDomain` (value range, mean/std normalization the model expects).
    ``batch``: images per objective (use with :func:`~torchloupe.synthesis.objectives.diversity`).
    ``redirect_steps``: steps during which ReLU-family gradients are redirected (dead units).
    ``exemplars``: an :class:`~torchloupe.synthesis.ExemplarResult` of the same layer to report
    each channel's dataset top-1 beside the reached value.
    ``inputs`` / ``wrt``: for a model of several inputs, what ``model(...)`` takes (a tuple or a
    dict, see :class:`~torchloupe.inputs.Inputs`); input ``wrt`` is optimized (``input_shape``
    defaults to its shape without the batch) while the others stay fixed to their sample 0.
    ``channel_dim``: the channel axis of the objectives' layers (an int, or ``{layer: int}``);
    by default read from each layer's :class:`~torchloupe.layers.Layout` (the features of a
    ``(B, T, C)`` token layer, the last axis of a channels-last one), said in a warning when guessed.
    Returns a :class:`SynthesisResult`; the images are in the domain's range, un-normalized.
    """
    require_module(model)
    objs = [O.as_objective(o) for o in (objective if isinstance(objective, (list, tuple)) else [objective])]
    if not objs:
        raise ObjectiveSpecError("objective is an empty list; give at least one objective")
    if param not in PARAMS:
        raise ParamError(f"param={param!r} is not known; expected one of {', '.join(PARAMS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a positive int, got {steps!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a positive int, got {batch!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise UsageError(f"lr must be a finite number above 0 (the Adam step size), got {lr!r}")
    if isinstance(redirect_steps, bool) or not isinstance(redirect_steps, int) or redirect_steps < 0:
        raise UsageError(f"redirect_steps must be an int of at least 0, got {redirect_steps!r}")
    if baseline_samples < 1:
        raise UsageError(f"baseline_samples must be at least 1, got {baseline_samples}")
    fixed: Inputs | None = None
    if inputs is not None:
        fixed = Inputs.of(inputs)
        held = fixed.get(wrt)
        if not isinstance(held, Tensor) or not held.is_floating_point() or held.dim() < 1:
            hint = f"; {dtype_hint(held)}" if isinstance(held, Tensor) and held.dim() >= 1 else ""
            raise InputDtypeError(f"input {fixed.resolve(wrt)!r} to optimize must be a floating-point tensor with a "
                                  f"batch axis, got {held.dtype if isinstance(held, Tensor) else type(held).__name__}"
                                  f"{hint}")
        for key, t in fixed.tensors():
            check_finite(t, f"input {key}")
        fixed = fixed.slice(0, 1).to(_device_of(model))
        if input_shape is None:
            input_shape = tuple(held.shape[1:])
    shape = tuple(int(s) for s in (input_shape if input_shape is not None else _default_shape(model)))
    if not shape or any(s < 1 for s in shape):
        raise UsageError(f"input_shape must be positive sizes without the batch, e.g. (3, 64, 64), got {shape}")
    check_synthesis_size(len(objs) * batch, shape, _device_of(model))  # before any image is made
    # The shape against the model's first layer, before any step (a typed error naming both).
    found = first_layer(model)
    if fixed is None and found is not None and isinstance(found[1], nn.Embedding):
        raise UnsupportedModelError(
            f"{type(model).__name__} reads token ids (its first layer {found[0]!r} is an nn.Embedding); maximize "
            f"synthesizes a floating-point input, and ids cannot be optimized by gradient: maximize a model that "
            f"takes the embeddings (inputs_embeds), or use exemplars to find the texts that drive the unit")
    if fixed is None:
        needed = _required_inputs(model)
        if len(needed) > 1:
            raise UnsupportedModelError(
                f"{type(model).__name__}.forward takes {len(needed)} inputs ({', '.join(needed)}); pass inputs= "
                f"(a tuple or dict of example values) and wrt= (the one to optimize; the others stay fixed)")
        check_input(model, torch.zeros(1, *shape, device=_device_of(model)), name=f"an input of input_shape {shape}")
        if input_shape is None and fixed is None and not takes_shape(model, shape):
            raise InputShapeError(f"{type(model).__name__} does not run on inputs of shape {shape}, the default "
                                  f"read off its first layer (a model of one input size?); pass input_shape=")
    dom = _domain(domain)
    units = [o.unit for o in objs]
    if any(u is None for u in units):
        bad = next(o.name for o in objs if o.unit is None)
        raise ObjectiveSpecError(f"objective {bad!r} is only penalties; add a unit to maximize, e.g. 'layer3:5' - ...")
    layer_names = list(dict.fromkeys(name for o in objs for name in o.layers))
    modules = dict(find_layers(model, layer_names)) if layer_names else {}
    missing = [n for n in layer_names if n not in modules]
    if missing:  # a glob in an objective spec
        raise ObjectiveSpecError(f"objective layers must be exact names, got {missing}")
    tf = T.resolve(transforms, shape, dom.middle)

    device = _device_of(model)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    k = len(objs)
    n = k * batch
    groups = torch.arange(k, device=device).repeat_interleave(batch)
    names = tuple(objs[int(g)].name for g in groups)
    fast = None
    if all(o.channel is not None for o in objs) and len({o.channel[0] for o in objs}) == 1:
        fast = (objs[0].channel[0], torch.tensor([objs[int(g)].channel[1] for g in groups], device=device))
    unit_fast = fast  # plain channels are their own units

    acts: dict[str, Tensor] = {}
    state: dict[str, Any] = {"stop": None, "calls": {name: 0 for name in layer_names}, "order": []}

    def make_hook(name: str):
        def hook(module, args, output):
            if not isinstance(output, Tensor):
                raise TorchLoupeError(f"layer {name!r} returns {type(output).__name__}; objectives need a tensor output")
            state["calls"][name] += 1
            if state["stop"] is None:
                state["order"].append(name)
            last = state["stop"] == name
            # Clone: the next layer may be an in-place ReLU; the objective reads the pre-activation value.
            acts[name] = output if last else output.clone()
            if last and all(name in acts for name in layer_names):
                raise _StopForward

        return hook

    def forward(x: Tensor) -> None:
        acts.clear()
        try:
            x = standard_layout(x)  # a 1-channel image can come out of the transforms with channels-last strides
            run(x if fixed is None else fixed.repeat(x.shape[0]).replace(wrt, x))
        except _StopForward:
            pass
        if len(acts) < len(layer_names):
            raise TorchLoupeError(f"layers {[m for m in layer_names if m not in acts]} did not run in the forward pass")

    with session(model, freeze=True) as run:
        with hooks(forward={modules[name]: make_hook(name) for name in layer_names}):
            # Baseline on random inputs (a full forward: also tells whether each layer runs once).
            rand = dom.random((baseline_samples, *shape), gen, device)
            with torch.no_grad():
                forward(dom.normalize(rand))
                layouts = {
                    name: layout_of(acts[name], (baseline_samples, *shape), _channel_dim(channel_dim, name),
                                    module=modules[name])
                    for name in layer_names if acts[name].dim() >= 2
                }
                rctx = O.Context(acts=dict(acts), images=rand, groups=torch.zeros(baseline_samples, dtype=torch.long, device=device),
                                 layouts=layouts)
                baseline = torch.stack([u(rctx) for u in units], 0).amax(1)  # (K,)
            if all(c == 1 for c in state["calls"].values()) and layer_names:
                state["stop"] = state["order"][-1]  # each layer runs once: stop after the last of them
            params, image_f = PARAMS[param]((n, *shape), gen, device, dom)
            opt = _Adam(params, lr=lr)
            curve = torch.empty(steps, n, device=device)
            bar = _progress(steps, progress)
            for step in range(steps):
                with torch.enable_grad():
                    images = image_f()
                    x = dom.normalize(tf(images, gen))
                    if step < redirect_steps:
                        with redirected_relu():
                            forward(x)
                    else:
                        forward(x)
                    ctx = O.Context(acts=acts, images=images, groups=groups, layouts=layouts)
                    scores = _scores(objs, ctx, fast)
                    grads = torch.autograd.grad(-scores.sum(), params)
                opt.step(grads)
                curve[step] = scores.detach()
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            with torch.no_grad():
                final_images = image_f().detach()
                forward(dom.normalize(final_images))
                fctx = O.Context(acts=acts, images=final_images, groups=groups, layouts=layouts)
                final = _scores(units, fctx, unit_fast)
            acts.clear()

    base = baseline[groups]
    top1 = _dataset_top1(units, groups, exemplars, device)
    failed = ~(final > base) | ~torch.isfinite(final)
    return SynthesisResult(
        images=final_images,
        objective_curve=curve.detach(),
        final_activation=final.detach(),
        baseline_activation=base.detach(),
        dataset_top1=top1,
        failed=failed,
        names=names,
        groups=groups,
        param=param,
        steps=steps,
        seed=int(seed),
    )


def _channel_dim(channel_dim: Any, layer: str) -> int | None:
    if isinstance(channel_dim, dict):
        return channel_dim.get(layer)
    return channel_dim


def _dataset_top1(units, groups, exemplars, device) -> Tensor:
    out = torch.full((len(groups),), float("nan"), device=device)
    if exemplars is None:
        return out
    layer = getattr(exemplars, "layer", None)
    if getattr(exemplars, "reduce", None) != "mean" or getattr(exemplars, "negative", True):
        return out
    for i, g in enumerate(groups.tolist()):
        ch = units[g].channel
        if ch is not None and ch[0] == layer:
            chans = list(getattr(exemplars, "channels", []))
            if ch[1] in chans:
                row = chans.index(ch[1])
                out[i] = exemplars.values[row, 0].to(device)
    return out


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="maximize", leave=False)


def _required_inputs(model: nn.Module) -> list[str]:
    """Names of the positional parameters of ``model.forward`` that have no default."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # a builtin or scripted forward: nothing to read
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]
