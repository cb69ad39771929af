"""The one base class of every class activation map (CAM) method.

:class:`BaseCAM` owns everything a method shares: input and target checks
(before any forward), the default layer, capture of the layer's output, the
gradient of the target score with respect to that output
(:func:`torch.autograd.grad`, never ``.backward()``), token / NHWC reshaping,
the ReLU, upsampling with :func:`torch.nn.functional.interpolate` on the whole
batch and per-sample min-max normalisation. A method overrides one method:
:meth:`GradientCAM.channel_weights` ``(N, C, *S), (N, C, *S) -> (N, C)`` or
:meth:`BaseCAM.cam_map` ``-> (N, *S)``.

Cost of a gradient CAM: one forward and one backward that stops at the target
layer. The layer's output is replaced (inside the call only) by a fresh leaf
tensor that requires grad, and the model runs in a frozen
:func:`~torchloupe.probe.session` (every ``requires_grad`` off for the call, restored
after), so nothing before the layer records a graph and no parameter gradient is
computed or stored.

Inputs are anything ``model(...)`` takes (:class:`~torchloupe.inputs.Inputs`); ``wrt``
names the input whose size the maps take. Targets and output selection follow
:mod:`torchloupe.targets`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import TargetError, UnsupportedModelError, UsageError
from ..inputs import Inputs, InputsLike, check_inputs
from ..layers import LayerSpec, find_layers, name_of
from ..probe import hooks, require_module, session
from ..targets import OutputSpec, Target, TargetLike, check_model_targets


@dataclass(frozen=True)
class CAMResult:
    """What a CAM call returns.

    ``maps`` ``(N, H, W)`` in [0, 1] at input size; ``raw`` ``(N, h, w)`` the method's map at
    layer resolution after its ReLU, before upsampling and normalisation (first layer when
    several were fused; all of them in ``raws``); ``targets`` ``(N,)`` class indices used
    (``-1`` for a callable target); ``scores`` ``(N,)`` the target scores of the model's output;
    ``layer`` the layer name(s) joined by ``'+'``; ``method`` the method's class name.
    """

    maps: Tensor
    raw: Tensor
    targets: Tensor
    layer: str
    method: str
    scores: Tensor | None = None
    raws: tuple[Tensor, ...] = ()

    def plot(self, images: Tensor | None = None, **kwargs):
        """A matplotlib ``Figure`` of the maps over ``images`` (see :func:`torchloupe.render.cam.plot_cam`)."""
        from ..render.cam import plot_cam

        return plot_cam(self, images, **kwargs)


@dataclass
class Run:
    """What one call knows, handed to :meth:`BaseCAM.cam_map` (Score-CAM and CAM read it)."""

    model: nn.Module
    inputs: Inputs  # what the model took
    wrt: int | str  # which of them the maps are laid on
    output: Any
    targets: Tensor  # (N,) class indices; -1 for a callable target
    target: Target  # the target and output selection, for other forwards (Score-CAM's masked ones)
    layer: nn.Module
    layer_name: str

    @property
    def x(self) -> Tensor:
        """The explained input."""
        return self.inputs.get(self.wrt)


def _grid(tokens: int, size: Sequence[int]) -> tuple[int, int, int] | None:
    """``(extra, h, w)``: the fewest leading extra tokens (class, registers) leaving an h x w grid."""
    H, W = size
    for extra in range(0, 9):
        n = tokens - extra
        if n < 1:
            return None
        h = max(1, round(math.sqrt(n * H / W)))
        for hh in (h - 1, h, h + 1):
            if hh >= 1 and n % hh == 0:
                ww = n // hh
                if abs(hh * W - ww * H) <= max(H, W) / max(hh, ww) and (hh > 1 or ww > 1):
                    return extra, hh, ww
    return None


def to_map(t: Tensor, size: Sequence[int], reshape: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """A layer output as ``(N, C, *S)``.

    ``(N, C, *S)`` passes; ``(N, h, w, C)`` (Swin-style, detected from the input's aspect ratio)
    is permuted; ``(N, T, C)`` tokens drop their leading class / register tokens and are laid on
    the patch grid. ``reshape`` overrides the guess.
    """
    if reshape is not None:
        return reshape(t)
    nd = len(size)
    if t.dim() == nd + 2 and nd == 2:
        H, W = size
        nchw = abs(t.shape[2] * W - t.shape[3] * H) <= max(H, W) / max(t.shape[2], t.shape[3])
        nhwc = abs(t.shape[1] * W - t.shape[2] * H) <= max(H, W) / max(t.shape[1], t.shape[2])
        if nhwc and not nchw:
            return t.permute(0, 3, 1, 2)
        return t
    if t.dim() == nd + 2:
        return t
    if t.dim() == 3 and nd == 2:
        g = _grid(t.shape[1], size)
        if g is not None:
            extra, h, w = g
            return t[:, extra:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)
    raise UnsupportedModelError(
        f"layer output of shape {tuple(t.shape)} is not a spatial map for an input of spatial size "
        f"{tuple(size)}; expected (N, C, *S), (N, H, W, C) or (N, tokens, C); pass reshape= to say how"
    )


def normalize_maps(maps: Tensor) -> Tensor:
    """Per-sample min-max to [0, 1]; a constant map (e.g. zero gradient) becomes all zeros."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
    return out.reshape(maps.shape)


_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_SKIP_DEFAULT = (
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.dropout._DropoutNd,
    nn.Identity,
    nn.Flatten,
)


class BaseCAM:
    """Base class: ``cam = Method(model, layer=None)``; ``cam(x, target=None) -> CAMResult``.

    ``layer``: a name, glob, module or list of them (several layers are fused by ``fuse``,
    ``"mean"`` or ``"max"`` of their normalised maps); ``None`` picks the last layer whose
    output is a spatial map (for vision transformers: the first LayerNorm of the last block).
    ``reshape``: ``fn(layer_output) -> (N, C, h, w)`` for layouts the automatic guess misses.
    ``target``: an int, a list / tensor of ints, a callable from the model's output to ``(N,)``
    scores, or ``None`` (the predicted class).
    """

    uses_gradients: ClassVar[bool] = True
    relu: ClassVar[bool] = True
    #: The method reads class indices (a row of the classifier), so a callable target cannot apply.
    needs_class_indices: ClassVar[bool] = False
    #: The method's name as its paper writes it, for figures and tables ("Grad-CAM++"); results
    #: keep the class name in ``CAMResult.method``. Subclasses without one show their class name.
    title: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | Sequence[LayerSpec] | None = None,
        *,
        reshape: Callable[[Tensor], Tensor] | None = None,
        fuse: str = "mean",
    ):
        require_module(model)
        if fuse not in ("mean", "max"):
            raise UsageError(f"fuse must be 'mean' or 'max', got {fuse!r}")
        self.model = model
        self.reshape = reshape
        self.fuse = fuse
        self._layers: list[tuple[str, nn.Module]] | None = None
        if layer is not None:
            specs = layer if isinstance(layer, (list, tuple)) else [layer]
            self._layers = [(n, m) for s in specs for n, m in find_layers(model, s)]

    # -- overridden by methods -------------------------------------------------------------
    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:
        """``(N, C, *S)`` activations (and gradients) -> ``(N, *S)`` map before the ReLU."""
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------
    @property
    def method(self) -> str:
        return type(self).__name__

    def layers(self, x: InputsLike | None = None, *, wrt: int | str = 0) -> list[tuple[str, nn.Module]]:
        """The ``(name, module)`` pairs this CAM reads (the default needs an example input ``x``)."""
        if self._layers is None:
            if x is None:
                raise UsageError("the default layer is found from an input; call with x")
            self._layers = [default_layer(self.model, x, wrt=wrt)]
        return self._layers

    def __call__(self, x: InputsLike, target: TargetLike = None, *, wrt: int | str = 0,
                 output: OutputSpec = None) -> CAMResult:
        """Maps for ``x`` (anything ``model(...)`` takes), laid on input ``wrt``; ``target`` and
        ``output`` as in :mod:`torchloupe.targets`."""
        return run_cams([self], x, target, wrt=wrt, output=output)[0]


def run_cams(cams: Sequence[BaseCAM], x: InputsLike, target: TargetLike = None, *, wrt: int | str = 0,
             output: OutputSpec = None) -> list[CAMResult]:
    """Every CAM of ``cams`` on ``x`` from one forward (and one backward when any of them uses
    gradients): what each would return alone. All must read the same model and layers."""
    if not cams:
        return []
    first = cams[0]
    model = first.model
    for c in cams[1:]:
        if c.model is not model:
            raise UsageError("run_cams: every CAM must explain the same model")
    inputs = check_inputs(model, x, wrt=wrt).detach()
    x = inputs.get(wrt)
    if not isinstance(x, Tensor):
        raise UsageError(f"input {wrt!r} is a {type(x).__name__}; maps are laid on a tensor input")
    n = inputs.batch_size
    tgt = Target.of(target, output)
    if tgt.is_callable:
        for c in cams:
            if c.needs_class_indices:
                raise TargetError(f"{c.method} needs class-index targets (it reads the classifier's row of the "
                                  f"class), not a callable; pass an int, a list or tensor of ints, or None")
    if tgt.is_fixed:
        check_model_targets(model, inputs, tgt.target, device=x.device, output=tgt.output)
    size = tuple(x.shape[2:])
    if n == 0:
        empty = x.new_zeros((0, *size), dtype=torch.float32 if not x.is_floating_point() else x.dtype)
        return [CAMResult(empty, empty, torch.zeros(0, dtype=torch.long), "", c.method, empty.new_zeros(0))
                for c in cams]
    layers = first.layers(inputs, wrt=wrt)
    for c in cams[1:]:
        if c._layers is None:
            c._layers = list(layers)
        elif [m for _, m in c.layers(inputs, wrt=wrt)] != [m for _, m in layers]:
            raise UsageError("run_cams: every CAM must read the same layers")
    uses_gradients = any(c.uses_gradients for c in cams)
    with session(model, freeze=True) as run_model:
        outs: dict[int, Tensor] = {}
        leaves: dict[int, Tensor] = {}

        def make_hook(i: int, name: str):
            def hook(module, args, output):
                if not isinstance(output, Tensor):
                    raise UnsupportedModelError(
                        f"layer {name!r} returns {type(output).__name__}, not a tensor; pick a layer "
                        f"whose output is a feature map"
                    )
                if not uses_gradients:
                    outs[i] = output.detach()
                    return output.clone()  # the model may rewrite its output in place next
                # The first hooked layer starts the graph (a fresh leaf: nothing before it is
                # recorded); a later one is already on the graph and stays connected.
                tracked = output if output.requires_grad else output.detach().requires_grad_(True)
                outs[i] = tracked.detach()
                leaves[i] = tracked
                return tracked.clone()  # a later in-place op (ReLU(inplace=True)) must not touch it

            return hook

        with hooks(forward={m: make_hook(i, nm) for i, (nm, m) in enumerate(layers)}):
            with torch.set_grad_enabled(uses_gradients):
                out = run_model(inputs)
        for i, (nm, _) in enumerate(layers):
            if i not in outs:
                raise UnsupportedModelError(f"layer {nm!r} did not run during the forward pass")
        targets, score_fn = tgt.resolve(out, n)
        scores = score_fn(out)
        grads: list[Tensor | None] = [None] * len(layers)
        if uses_gradients:
            wanted = [leaves[i] for i in range(len(layers))]
            if not scores.requires_grad:
                raise UnsupportedModelError(
                    f"the target score does not depend on layer(s) {', '.join(nm for nm, _ in layers)}"
                )
            got = torch.autograd.grad(scores.sum(), wanted, allow_unused=True)
            grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wanted, got)]
        scores = scores.detach()
        detached = detach_output(out)
        all_raws: list[list[Tensor]] = []
        with torch.no_grad():
            for c in cams:
                raws = []
                for i, (nm, m) in enumerate(layers):
                    acts = to_map(outs[i], size, c.reshape)
                    g = None if grads[i] is None or not c.uses_gradients else to_map(grads[i], size, c.reshape)
                    run = Run(model, inputs, wrt, detached, targets, tgt, m, nm)
                    raw = c.cam_map(acts, g, run)
                    raws.append(F.relu(raw) if c.relu else raw)
                all_raws.append(raws)
    results = []
    with torch.no_grad():
        for c, raws in zip(cams, all_raws):
            maps = torch.stack([normalize_maps(upsample(r, size)) for r in raws])
            maps = maps.mean(0) if c.fuse == "mean" else maps.amax(0)
            if len(raws) > 1:
                maps = normalize_maps(maps)
            results.append(CAMResult(
                maps=maps,
                raw=raws[0],
                targets=targets,
                layer="+".join(nm for nm, _ in layers),
                method=c.method,
                scores=scores,
                raws=tuple(raws),
            ))
    return results


def detach_output(output: Any) -> Any:
    return output.detach() if isinstance(output, Tensor) else output


def upsample(raw: Tensor, size: Sequence[int]) -> Tensor:
    """``(N, *S)`` -> ``(N, *size)``, linear interpolation on the whole batch."""
    if tuple(raw.shape[1:]) == tuple(size):
        return raw
    mode = _MODES[len(size)]
    return F.interpolate(raw.unsqueeze(1), size=tuple(size), mode=mode, align_corners=False).squeeze(1)


def default_layer(model: nn.Module, x: InputsLike, *, wrt: int | str = 0) -> tuple[str, nn.Module]:
    """The layer a CAM reads when none is given, found from one small no-grad forward.

    The last module (in execution order, called once, not a pooling / dropout / identity)
    whose output is a spatial map of more than one position; for vision transformers
    (token outputs and ``nn.MultiheadAttention``) the LayerNorm run just before the last
    attention module, whose gradients reach every token.
    """
    order: list[tuple[nn.Module, Any]] = []
    counts: dict[int, int] = {}

    def hook(module, args, output):
        counts[id(module)] = counts.get(id(module), 0) + 1
        order.append((module, output.shape if isinstance(output, Tensor) else None))

    modules = [m for n, m in model.named_modules() if n]
    inputs = Inputs.of(x)
    x = inputs.get(wrt)
    size = tuple(x.shape[2:])
    with session(model) as run_model:
        with hooks(forward={m: hook for m in modules}), torch.no_grad():
            run_model(inputs.slice(0, 1))

    def spatial(shape) -> bool:
        if shape is None:
            return False
        try:
            t = to_map(torch.empty(shape, device="meta"), size)
        except UnsupportedModelError:
            return False
        return math.prod(t.shape[2:]) > 1

    attn = [i for i, (m, _) in enumerate(order) if isinstance(m, nn.MultiheadAttention)]
    if attn and any(s is not None and len(s) == 3 for _, s in order):
        for m, s in reversed(order[: attn[-1]]):
            if isinstance(m, nn.LayerNorm) and spatial(s) and counts[id(m)] == 1:
                return name_of(model, m), m
    for m, s in reversed(order):
        if counts[id(m)] == 1 and not isinstance(m, _SKIP_DEFAULT) and spatial(s):
            return name_of(model, m), m
    raise UnsupportedModelError(
        f"{type(model).__name__} has no layer whose output is a spatial map for an input of shape "
        f"{tuple(x.shape)}; pass layer= explicitly"
    )


class GradientCAM(BaseCAM):
    """A CAM whose map is ``sum_c w_c A_c`` with weights from the gradient; override :meth:`channel_weights`."""

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:  # (N,C,*S) -> (N,C)
        raise NotImplementedError

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:
        w = self.channel_weights(acts, grads)
        return torch.einsum("nc,nc...->n...", w, acts)


def spatial_dims(t: Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.dim()))
