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

from ..errors import TargetError, TorchLoupeError, UnsupportedModelError, UsageError
from ..inputs import Inputs, InputsLike, check_inputs
from ..layers import LayerSpec, Layout, find_layers, layout_of, name_of
from ..probe import hooks, require_module, session
from ..targets import OutputSpec, Target, TargetLike, check_model_targets


@dataclass(frozen=True)
class CAMResult:
    """What a CAM call returns.

    ``maps`` ``(N, H, W)`` in [0, 1] at input size (``(N, T)`` on the tokens of a ``(N, T, F)``
    sequence input), on the model's device, in the layer output's floating dtype, except float32
    for a bfloat16 / float16 model (the maps are computed in float32 from its activations and
    gradients); ``raw`` ``(N, h, w)`` the method's map at
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
    #: How each layer's output was read (``None`` where ``reshape=`` said it): see
    #: :func:`torchloupe.layers.layout_of`.
    layouts: tuple[Layout | None, ...] = ()

    @property
    def layout(self) -> Layout | None:
        """The layout of the (first) layer's output."""
        return self.layouts[0] if self.layouts else None

    def plot(self, images: Tensor | None = None, **kwargs):
        """A matplotlib ``Figure`` of the maps over ``images`` (see :func:`torchloupe.render.cam.plot_cam`)."""
        from ..render.cam import plot_cam

        return plot_cam(self, images, **kwargs)

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


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


def to_map(t: Tensor, size: Sequence[int], reshape: Callable[[Tensor], Tensor] | None = None, *,
           layout: Layout | None = None) -> Tensor:
    """A layer output as ``(N, C, *S)``, through its :class:`~torchloupe.layers.Layout`.

    ``layout``: the layout to use (``run_cams`` finds it from the layer and the whole input);
    else it is read from the shapes for an input of spatial ``size``: ``(N, C, *S)`` passes;
    ``(N, h, w, C)`` (Swin-style, detected from the input's aspect ratio) is permuted; ``(N, T, C)``
    tokens drop their leading class / register tokens and are laid on the patch grid.
    ``reshape`` overrides both.
    """
    if reshape is not None:
        return reshape(t)
    lay = layout if layout is not None else map_layout(t.shape, (t.shape[0], 0, *size), warn=False)
    return lay.to_bcs(t)


def map_layout(shape: Sequence[int], input_shape: Sequence[int], module: nn.Module | None = None, *,
               channel_dim: int | None = None, warn: bool = True) -> Layout:
    """The layout of a layer output a CAM can lay on the explained input (of full shape
    ``input_shape``): positions on an image's grid, or a sequence's steps / tokens; else
    :class:`UnsupportedModelError`."""
    shape = tuple(shape)
    size = tuple(input_shape[2:])
    try:
        lay = layout_of(shape, input_shape, channel_dim, module=module, warn=warn)
    except UsageError as exc:
        raise UnsupportedModelError(str(exc)) from exc
    image = len(size) == 2
    ok = lay.kind != "vector" and (
        (lay.kind == "tokens" and (lay.grid is not None or not image))
        or (lay.kind != "tokens" and len(lay.positions) == len(size))
    )
    if not ok:
        raise UnsupportedModelError(
            f"layer output of shape {shape} is not a spatial map for an input of spatial size "
            f"{size}; expected (N, C, *S), (N, H, W, C) or (N, tokens, C); pass reshape= to say how"
        )
    return lay


def map_size(lay: Layout, x: Tensor) -> tuple[int, ...]:
    """The size the maps of a layer of layout ``lay`` take on the explained input ``x``: its spatial
    size, or its token axis for tokens of a sequence input ``(N, T, F)`` or of token ids ``(N, T)``."""
    if lay.kind == "tokens" and lay.grid is None and x.dim() in (2, 3):  # (N, T, F) steps or (N, T) token ids
        return (int(x.shape[1]),)
    return tuple(x.shape[2:])


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
    ``reshape``: ``fn(layer_output) -> (N, C, h, w)`` for layouts the automatic guess misses;
    ``channel_dim``: the channel axis of the layer output (see :func:`~torchloupe.layers.layout_of`).
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
        channel_dim: int | None = None,
    ):
        require_module(model)
        if fuse not in ("mean", "max"):
            raise UsageError(f"fuse must be 'mean' or 'max', got {fuse!r}")
        self.model = model
        self.reshape = reshape
        self.fuse = fuse
        self.channel_dim = channel_dim
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

    def layers(self, x: InputsLike | None = None, *, wrt: int | str | None = None, target: TargetLike = None,
               output: OutputSpec = None) -> list[tuple[str, nn.Module]]:
        """The ``(name, module)`` pairs this CAM reads (the default needs an example input ``x``)."""
        if self._layers is None:
            if x is None:
                raise UsageError("the default layer is found from an input; call with x")
            self._layers = [default_layer(self.model, x, wrt=wrt, target=target, output=output)]
        return self._layers

    def __call__(self, x: InputsLike, target: TargetLike = None, *, wrt: int | str | None = None,
                 output: OutputSpec = None) -> CAMResult:
        """Maps for ``x`` (anything ``model(...)`` takes), laid on input ``wrt``; ``target`` and
        ``output`` as in :mod:`torchloupe.targets`."""
        return run_cams([self], x, target, wrt=wrt, output=output)[0]


def run_cams(cams: Sequence[BaseCAM], x: InputsLike, target: TargetLike = None, *, wrt: int | str | None = None,
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
    # copies: a model that edits its input in place (x.mul_) must not edit the caller's tensors
    inputs = check_inputs(model, x, wrt=wrt).map(lambda t: t.detach().clone())
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
    layers = first.layers(inputs, wrt=wrt, target=tgt.target, output=tgt.output)
    for c in cams[1:]:
        if c._layers is None:
            c._layers = list(layers)
        elif [m for _, m in c.layers(inputs, wrt=wrt)] != [m for _, m in layers]:
            raise UsageError("run_cams: every CAM must read the same layers")
    uses_gradients = any(c.uses_gradients for c in cams)
    with session(model, freeze=True, fastpath=False) as run_model:
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
        layouts: list[Layout | None] = []
        sizes = set()
        for i, (nm, m) in enumerate(layers):
            if first.reshape is not None:
                layouts.append(None)
                sizes.add(size)
                continue
            lay = map_layout(outs[i].shape, x.shape, m, channel_dim=first.channel_dim)
            layouts.append(lay)
            sizes.add(map_size(lay, x))
        if len(sizes) > 1:
            raise UsageError(f"the layers {', '.join(nm for nm, _ in layers)} lay their maps on different "
                             f"axes of the input ({', '.join(str(s) for s in sorted(sizes))}); fuse layers of one kind")
        size = sizes.pop()
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
                    # a half-precision model's activations and gradients are combined, upsampled and
                    # normalised in float32: bfloat16 sums over channels lose two digits
                    acts = working(to_map(outs[i], size, c.reshape, layout=layouts[i]))
                    g = None if grads[i] is None or not c.uses_gradients else working(
                        to_map(grads[i], size, c.reshape, layout=layouts[i]))
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
                layouts=tuple(layouts),
            ))
    return results


def working(t: Tensor) -> Tensor:
    """``t`` in the dtype CAM arithmetic runs in: float32 for bfloat16 / float16 tensors (a
    half-precision model), else its own floating dtype."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def detach_output(output: Any) -> Any:
    return output.detach() if isinstance(output, Tensor) else output


def upsample(raw: Tensor, size: Sequence[int]) -> Tensor:
    """``(N, *S)`` -> ``(N, *size)``, linear interpolation on the whole batch."""
    if tuple(raw.shape[1:]) == tuple(size):
        return raw
    mode = _MODES[len(size)]
    return F.interpolate(raw.unsqueeze(1), size=tuple(size), mode=mode, align_corners=False).squeeze(1)


def _is_attention(m: nn.Module) -> bool:
    return isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) or "LayerNorm" in type(m).__name__ or "RMSNorm" in type(m).__name__


def _seeing(run_model: Callable, modules: list, one: Inputs, wrt: int | str | None, order: list, cands: list) -> list:
    """The candidates whose output depends on input ``wrt``: run again with that input changed
    (every element moved by a different amount) and keep the layers whose output changed. A branch fed
    only by another input of a multi-input model is left out: its map lies over the wrong image."""
    xw = one.get(wrt)
    if not (isinstance(xw, Tensor) and xw.is_floating_point()):
        return cands
    moved = xw.detach() + torch.linspace(0.5, 1.5, xw.numel(), device=xw.device, dtype=xw.dtype).reshape(xw.shape)
    again: dict[int, Tensor] = {}

    def hook(module, args, out):
        if isinstance(out, Tensor):
            again.setdefault(id(module), out.detach().clone())

    with hooks(forward={m: hook for m in modules}), torch.no_grad():
        run_model(one.replace(wrt, moved))
    kept = []
    for i, m, lay in cands:
        t2 = again.get(id(m))
        if t2 is None or t2.shape != order[i][1].shape or not torch.equal(t2, order[i][1].detach()):
            kept.append((i, m, lay))
    return kept


def default_layer(model: nn.Module, x: InputsLike, *, wrt: int | str | None = None, target: TargetLike = None,
                  output: OutputSpec = None) -> tuple[str, nn.Module]:
    """The layer a CAM reads when none is given, found from one forward and one backward of the
    first sample (eval mode, the attention fast path off).

    The last module (in execution order, called once, not a pooling / dropout / identity) whose
    output has more than one position the maps can be laid on (see :func:`map_layout`) and a
    gradient from the target score at those positions; for transformers (token outputs and
    attention modules: ``nn.MultiheadAttention`` or a class named ``*Attention*``) the norm of all
    tokens run just before the last attention module starts (the last block's input-side norm), not
    a final norm whose only gradient is the class token's. A layer that never runs in eval mode is
    never chosen. When the target cannot be read from the output, or no layer gets a gradient (a
    zeroed head), the shapes alone decide.
    """
    order: list[tuple[nn.Module, Tensor | None]] = []
    counts: dict[int, int] = {}
    starts: list[tuple[nn.Module, int]] = []

    def hook(module, args, out):
        counts[id(module)] = counts.get(id(module), 0) + 1
        if isinstance(out, Tensor):
            order.append((module, out))
            return out.clone()  # a later in-place op must not rewrite what was recorded
        order.append((module, None))
        return None

    def pre(module, args):
        starts.append((module, len(order)))

    modules = [m for n, m in model.named_modules() if n]
    inputs = Inputs.of(x)
    xw = inputs.get(wrt)
    if not isinstance(xw, Tensor):
        raise UsageError(f"input {wrt!r} is a {type(xw).__name__}; maps are laid on a tensor input")
    shape = (1, *xw.shape[1:])
    one = inputs.slice(0, 1)
    tgt = Target.of(target, output)
    if not tgt.is_callable and tgt.target is not None and not isinstance(tgt.target, int):
        first = torch.as_tensor(tgt.target).reshape(-1)[:1]  # a list, a (B,) tensor or a 0-d tensor
        tgt = Target(int(first) if first.numel() else None, tgt.output)

    def layout(m: nn.Module, t: Tensor | None) -> Layout | None:
        if t is None or not t.is_floating_point() or t.dim() < 3:
            return None
        try:
            lay = map_layout(t.shape, shape, m, warn=False)
        except UnsupportedModelError:
            return None
        return lay if math.prod(lay.spatial) > 1 else None

    with session(model, fastpath=False) as run_model:
        attn = [m for m in modules if _is_attention(m)]
        with hooks(forward={m: hook for m in modules}, forward_pre={m: pre for m in attn}), torch.enable_grad():
            out = run_model(one)
        cands = [(i, m, lay) for i, (m, t) in enumerate(order)
                 if counts[id(m)] == 1 and (lay := layout(m, t)) is not None]
        if len(inputs.tensors()) > 1:  # several inputs: only layers that see the explained one
            cands = _seeing(run_model, modules, one, wrt, order, cands)
        reached: dict[int, bool] = {}
        score = None
        try:
            score = tgt.resolve(out, 1)[1](out)
        except TorchLoupeError:
            score = None
        live = [(i, m, lay) for i, m, lay in cands if order[i][1].requires_grad]
        if score is not None and score.requires_grad and live:
            grads = torch.autograd.grad(score.sum(), [order[i][1] for i, _, _ in live], allow_unused=True)
            for (i, _, lay), g in zip(live, grads):
                reached[i] = g is not None and bool(lay.to_bcs(g).ne(0).any())
        use_grad = any(reached.values())  # no gradient anywhere (a zeroed head): shapes alone decide

    def ok(i: int) -> bool:
        return reached.get(i, False) if use_grad else True

    if starts:
        last_start = starts[-1][1]
        for i, m, lay in reversed(cands):
            if i < last_start and _is_norm(m) and lay.kind == "tokens" and ok(i):
                return name_of(model, m), m
    for i, m, lay in reversed(cands):
        if not isinstance(m, _SKIP_DEFAULT) and ok(i):
            return name_of(model, m), m
    why = " with a gradient from the target" if use_grad else ""
    raise UnsupportedModelError(
        f"{type(model).__name__} has no layer run in eval mode whose output is a spatial map{why} for an input of shape "
        f"{tuple(xw.shape)}; pass layer= explicitly"
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
