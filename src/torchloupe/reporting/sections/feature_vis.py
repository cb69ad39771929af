"""Feature visualization: synthesized inputs that maximize a few channels (or class logits), with
their reached value against random inputs, and their dataset exemplars when the subject has data."""

from __future__ import annotations

from torch import Tensor, nn

from ...inputs import takes_shape
from ...layers import find_layers, layout_of
from ..base import Figure, Finding, NotApplicable, Subject, Table, Text, register

_CACHE: dict = {}


def pick_layer(subject: Subject) -> tuple[str, int, str] | None:
    """``(layer, channels, kind)``: the last of ``subject.layers`` (else the last Conv2d, else the last
    Conv1d, else the last Linear), its channel count and ``"conv"`` for 4-D outputs, ``"sequence"``
    for 3-D ``(N, C, L)`` ones or ``"linear"``."""
    from ...probe import activations

    model = subject.model
    if subject.layers:
        layer = find_layers(model, list(subject.layers))[-1][0]
    else:
        from ...features import layers_that_run

        # only layers that run in eval mode (googlenet's auxiliary heads do not); a sequence model's Conv1d
        convs = ([n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
                 or [n for n, m in model.named_modules() if isinstance(m, nn.Conv1d)])
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        ran = layers_that_run(model, subject.inputs, convs + linears) if convs or linears else []
        convs, linears = [n for n in convs if n in ran], [n for n in linears if n in ran]
        if not convs and not linears:
            return None
        layer = (convs or linears)[-1]
    x = subject.inputs
    out = activations(model, x[:1], layer)[layer]
    if not isinstance(out, Tensor) or out.dim() < 2:
        return None
    # the channel count along the layer's own channel axis (an LSTM head's (B, T, C) output: C, not T)
    lay = layout_of(out, tuple(x.shape) if isinstance(x, Tensor) else None,
                    module=find_layers(model, layer)[0][1], warn=False)
    return layer, lay.channels, "conv" if out.dim() == 4 else "sequence" if out.dim() == 3 else "linear"


def subject_exemplars(subject: Subject, layer: str, channels: list[int], quick: bool):
    """Exemplars of ``layer`` over the first samples of ``subject.dataset`` (cached per report run)."""
    from ...synthesis import exemplars

    if subject.dataset is None:
        return None
    stop = 128 if quick else 512
    key = (id(subject.model), id(subject.dataset), layer, tuple(channels), stop)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = exemplars(subject.model, subject.dataset, layer, k=5, channels=channels, stop=stop,
                                batch_size=64)
    return _CACHE[key]


def _sequence_note(shape: tuple, channels_first: bool = False) -> str:
    """How a synthesized sequence input ``(T, F)`` (``(C, L)`` for a Conv1d) is drawn (see ``render.synthesis``)."""
    if len(shape) != 2:
        return ""
    if channels_first:
        return "; each input is a sequence: an input channels x steps heat map (red > 0 > blue)"
    if shape[-1] == 1:
        return "; each input is a sequence: the bars are its value at each step"
    return "; each input is a sequence: a features x steps heat map (red > 0 > blue)"


@register(
    "feature_vis",
    "Feature visualization",
    "Inputs synthesized to drive single channels as high as possible (gradient ascent from noise), "
    "each with the value it reached against the best of 32 random inputs; FAILED marks a unit that "
    "could not be driven above random inputs.",
    cost=3,
)
def build(subject: Subject, options: dict):
    from ...render.synthesis import curves_figure, units_figure
    from ...synthesis import maximize
    from ...synthesis.maximize import standard_transforms_for

    x = subject.inputs
    if not isinstance(x, Tensor) or x.dim() < 2:
        return NotApplicable("feature visualization needs a tensor input batch to take the input shape from")
    if not x.is_floating_point():
        return NotApplicable(f"the inputs are {x.dtype} (token ids): gradient ascent needs continuous inputs")
    picked = pick_layer(subject)
    if picked is None:
        return NotApplicable(f"{type(subject.model).__name__} has no Conv2d or Linear layer to visualize")
    layer, width, kind = picked
    quick = bool(options.get("quick", False))
    seed = int(options.get("seed", 0) or 0)
    shape = tuple(x.shape[1:])
    transforms = "standard"
    if kind == "conv" and x.dim() == 4:
        side = min(shape[-1], shape[-2], 64)
        small = (shape[0], side, side)
        # Small images are quick to optimize; a model that takes one input size only (a ViT's patch
        # grid, an MLP after the convolutions) gets its own size, and transforms that keep it.
        shape = small if takes_shape(subject.model, small) else shape
        transforms = standard_transforms_for(subject.model, shape)
        param = "fft"
    else:
        param = "pixel"
    n_units = 3 if quick else 4
    channels = list(range(min(n_units, width)))
    steps = 24 if quick else 32
    ex = subject_exemplars(subject, layer, channels, quick) if kind == "conv" else None
    res = maximize(subject.model, [f"{layer}:{c}" for c in channels], param=param, steps=steps, lr=0.1,
                   input_shape=shape, seed=seed, exemplars=ex, transforms=transforms)
    names = subject.labels if kind == "linear" and subject.labels is not None else None
    rows = []
    for i, (name, f, b, d, status) in enumerate(res.rows()):
        label = f"{name} ({names[channels[i]]})" if names is not None and channels[i] < len(names) else name
        rows.append([label, f"{f:.4g}", f"{b:.4g}", "" if d != d else f"{d:.4g}", status])
    failed = int(res.failed.sum())
    from ...inputs import first_layer

    first = first_layer(subject.model)
    channels_first = len(shape) == 2 and first is not None and isinstance(first[1], nn.Conv1d)
    table = Table(["unit", "reached", "best of 32 random", "dataset top-1", "status"], rows,
                  caption="Reached value of each unit on its synthesized input (no transforms) against random inputs.",
                  highlight=[(i, 4) for i, r in enumerate(rows) if r[4] == "FAILED"])
    blocks = [
        Figure(units_figure(res, ex, channels_first=channels_first),
               caption=f"{layer}: channels {channels[0]}..{channels[-1]}, {param} parameterization, {steps} steps, "
                       f"seed {seed}" + _sequence_note(shape, channels_first)),
        table,
        Figure(curves_figure(res), caption="Objective per step (on the randomly transformed images)."),
    ]
    driven = len(rows) - failed
    blocks.append(Finding(f"{driven} of {len(rows)} units of {layer} were driven above the best of 32 random inputs "
                          f"in {steps} steps" + ("; their images show what each prefers." if not failed else
                                                 f"; the other {failed} show nothing the unit prefers."), table))
    if failed:
        blocks.append(Text(f"{failed} of {len(rows)} units could not be driven above random inputs in "
                           f"{steps} steps; their images show nothing the unit prefers."))
    return blocks
