"""Feature maps: what each channel of a layer responds to, for a batch of inputs.

:func:`feature_maps` runs one eval-mode forward (through :func:`torchloupe.probe.activations`)
and returns the layer's output arranged as ``(N, C, h, w)`` maps with the channels of every
sample ranked by mean activation, most active first::

    fm = tl.features.feature_maps(model, x, "features.conv2", top=8)
    fm.maps                 # (N, 8, h, w) detached: the 8 channels with the highest mean over the batch
    fm.channels             # (8,) which channels of the layer those are
    fm.order[n]             # positions in fm.maps of sample n's channels, by mean activation, descending
    fm.stats["mean"]        # (N, C) mean activation per channel

Layer outputs of other shapes are arranged sensibly: ``(N, C)`` vectors become
``(N, C, 1, 1)``; 1-D sequences ``(N, C, L)`` become ``(N, C, 1, L)``; token outputs
``(N, T, D)`` of transformers become ``(N, D, 1, T)``, or ``(N, D, s, s)`` when the tokens
form a square grid (a leading class token is dropped for the grid and reported in ``kind``);
volumes ``(N, C, D, H, W)`` are averaged over depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ChannelError, TorchLoupeError, UnsupportedModelError, UsageError
from .layers import Layout, LayerSpec, find_layers, layout_of, name_of
from .probe import activations, hooks, require_module, session

__all__ = ["FeatureMaps", "feature_maps", "feature_maps_of", "arrange", "layers_that_run"]


@dataclass(frozen=True)
class FeatureMaps:
    """A layer's output for a batch, as maps.

    ``maps``: ``(N, C, h, w)`` detached, on the model's device, in the output's floating dtype
    (float32 for integer, bfloat16 and float16 outputs) (only the selected channels when ``channels`` or
    ``top`` was given; ``channels`` lists which). ``order``: ``(N, C)`` positions into
    ``maps``' channel dimension, sorted by mean activation descending, per sample.
    ``stats``: ``"mean"``, ``"max"``, ``"std"`` each ``(N, C)``. ``kind``: how the output
    was arranged (``"spatial"``, ``"vector"``, ``"sequence"``, ``"tokens"``,
    ``"token-grid"``, ``"token-grid+cls"``, ``"volume"``, ``"channels-last"``). ``shape``: the raw
    output shape; ``layout``: the :class:`~torchloupe.layers.Layout` that decided it.
    """

    maps: Tensor
    layer: str
    order: Tensor
    channels: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)
    kind: str = "spatial"
    shape: tuple[int, ...] = ()
    #: How the layer output was read (see :func:`torchloupe.layers.layout_of`).
    layout: Layout | None = None

    def top_channels(self, sample: int = 0, k: int = 16) -> list[int]:
        """Channel numbers (of the layer) of the ``k`` most active channels of ``sample``."""
        pos = self.order[sample, :k]
        return [int(self.channels[p]) for p in pos]

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import png_of

        return png_of(self)


def arrange(output: Tensor, token_layout: bool | None = None) -> tuple[Tensor, str]:
    """A layer output as ``(N, C, h, w)`` maps and the name of the arrangement used."""
    if output.dim() == 4:
        return output, "spatial"
    if output.dim() == 2:
        return output[:, :, None, None], "vector"
    if output.dim() == 5:
        return output.mean(2), "volume"
    if output.dim() == 3:
        n, a, b = output.shape
        # (N, T, D) tokens when told so; otherwise channels-first (N, C, L) like Conv1d.
        if token_layout:
            t = a
            side = math.isqrt(t)
            if side * side == t and t > 1:
                return output.transpose(1, 2).reshape(n, b, side, side), "token-grid"
            side = math.isqrt(t - 1)
            if t > 2 and side * side == t - 1:
                return output[:, 1:].transpose(1, 2).reshape(n, b, side, side), "token-grid+cls"
            return output.transpose(1, 2)[:, :, None, :], "tokens"
        return output[:, :, None, :], "sequence"
    raise UnsupportedModelError(
        f"cannot show an output of shape {tuple(output.shape)} as feature maps; "
        f"expected (N, C, H, W), (N, C), (N, C, L), (N, T, D) or (N, C, D, H, W)"
    )


def feature_maps(
    model: nn.Module,
    x: Any,
    layer: LayerSpec,
    top: int | None = None,
    *,
    channels: Any = None,
    tokens: bool | None = None,
) -> FeatureMaps:
    """The output of ``layer`` for input ``x`` as ranked feature maps (one eval forward).

    ``top``: keep only the ``top`` channels with the highest mean activation over the
    batch (sample ranking within them is still per sample). ``channels``: keep these
    channel indices (a :class:`~torchloupe.errors.ChannelError` names a bad one and the
    layer's channel count). ``tokens``: treat a 3-D output as ``(N, T, D)`` tokens
    (default: the layer's :func:`~torchloupe.layers.layout_of`: linear / norm / attention /
    transformer layers give tokens, Conv1d and friends ``(N, C, L)``, else the input's shape
    decides; a channels-last ``(N, H, W, C)`` output is permuted to ``(N, C, H, W)``).
    A tuple output uses its first tensor. An empty batch gives empty maps.
    """
    found = find_layers(require_module(model), layer)
    if len(found) != 1:
        names = ", ".join(n for n, _ in found[:5])
        raise UsageError(f"layer spec {layer!r} matches {len(found)} layers ({names}...); expected one")
    _check_top(top)
    name, module = found[0]
    out = activations(model, x, [module])[name_of(model, module)]
    return _from_output(name, module, out, top, channels, tokens, _input_shape(x))


def feature_maps_of(
    model: nn.Module, x: Any, layers: Any, top: int | None = None, *, tokens: bool | None = None
) -> dict[str, FeatureMaps]:
    """:func:`feature_maps` of several layers from ONE forward: ``{layer name: FeatureMaps}``."""
    _check_top(top)
    found = find_layers(require_module(model), layers)
    outs = activations(model, x, [m for _, m in found])
    shape = _input_shape(x)
    return {n: _from_output(n, m, outs[n], top, None, tokens, shape) for n, m in found if n in outs}


def _input_shape(x: Any) -> tuple[int, ...] | None:
    from .inputs import Inputs

    try:
        first = Inputs.of(x).first
    except TorchLoupeError:  # activations() reports bad inputs; the shape only helps the guess
        return None
    return tuple(first.shape)


def _check_top(top: Any) -> None:
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
        raise UsageError(f"top must be a positive int or None, got {top!r}")


def _from_output(name: str, module: nn.Module, out: Any, top: int | None, channels: Any, tokens: bool | None,
                 input_shape: tuple[int, ...] | None = None) -> FeatureMaps:
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, Tensor)), None)
    if not isinstance(out, Tensor):
        raise UnsupportedModelError(f"layer {name!r} returned {type(out).__name__}, not a tensor")
    lay = None
    if out.dim() >= 2:
        channel_dim = None if tokens is None or out.dim() != 3 else (2 if tokens else 1)
        lay = layout_of(out, input_shape, channel_dim, module=module)
    token_layout = tokens if tokens is not None else (lay is not None and lay.kind == "tokens")
    if lay is not None and lay.kind == "channels_last" and out.dim() == 4:
        maps, kind = lay.to_bcs(out.detach()), "channels-last"
    elif token_layout and lay is not None and lay.grid is None and input_shape is not None and len(input_shape) != 4:
        # tokens of a sequence (not an image): the steps in a row, never a square grid by coincidence
        maps, kind = out.detach().transpose(1, 2)[:, :, None, :], "tokens"
    else:
        maps, kind = arrange(out.detach(), token_layout)
    # integer outputs, and bfloat16 / float16 ones (a half model, autocast), in float32: their
    # means over thousands of positions would lose the ranking in half precision
    maps = maps.float() if not maps.is_floating_point() or maps.dtype in (torch.bfloat16, torch.float16) else maps
    n, c = maps.shape[:2]
    index = torch.arange(c, device=maps.device)
    if channels is not None:
        sel = torch.as_tensor(channels, dtype=torch.long).reshape(-1)
        if sel.numel() and (int(sel.min()) < 0 or int(sel.max()) >= c):
            bad = int(sel.min()) if int(sel.min()) < 0 else int(sel.max())
            raise ChannelError(f"channel {bad} is out of range; layer {name!r} has {c} channels (0..{c - 1})")
        index = sel.to(maps.device)
    elif top is not None and top < c:
        batch_mean = maps.mean(dim=(0, 2, 3)) if n else torch.zeros(c, device=maps.device)
        index = torch.argsort(batch_mean, descending=True, stable=True)[:top]
    maps = maps.index_select(1, index)
    flat = maps.reshape(n, maps.shape[1], maps.shape[2] * maps.shape[3])
    if flat.numel():
        mean = flat.mean(-1)
        stats = {
            "mean": mean,
            "max": flat.amax(-1),
            "std": (flat - mean.unsqueeze(-1)).pow(2).mean(-1).sqrt(),
        }
    else:
        stats = {k: flat.new_zeros(flat.shape[:2]) for k in ("mean", "max", "std")}
    order = torch.argsort(stats["mean"], dim=1, descending=True, stable=True)
    return FeatureMaps(
        maps=maps, layer=name, order=order, channels=index.cpu(), stats=stats, kind=kind, shape=tuple(out.shape),
        layout=lay,
    )


def layers_that_run(model: nn.Module, x: Any, layers: Any) -> list[str]:
    """The names of ``layers`` (specs as in :func:`~torchloupe.layers.find_layers`) that run in an
    eval-mode forward of the first sample of ``x``, in model order: what a view may pick by default
    (googlenet's auxiliary classifiers never run in eval mode). Nothing is kept but the names."""
    from .inputs import Inputs

    found = find_layers(require_module(model), layers)
    ran: set[str] = set()

    def mark(name: str):
        def hook(module, args, output):
            ran.add(name)

        return hook

    inputs = Inputs.of(x)
    with session(model) as run, hooks(forward={m: mark(n) for n, m in found}), torch.no_grad():
        run(inputs.slice(0, 1))
    return [n for n, _ in found if n in ran]
