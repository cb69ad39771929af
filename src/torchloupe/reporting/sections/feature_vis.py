"""Report section "Feature visualization": synthesized inputs that maximize a few channels (or class
logits), with their reached value against random inputs, and their dataset exemplars when the subject
has data.

Computed as :class:`FeatureVisData` (the :class:`~torchloupe.synthesis.SynthesisResult` and the
exemplars beside it), drawn by its ``render()``; options: :class:`FeatureVisOptions`. The exemplars
are the subject's shared ones (``subject.shared.exemplars``), searched once for this section and the
exemplars section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ...errors import UsageError
from ...inputs import takes_shape
from ...layers import find_layers, layout_of
from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int

QUICK_UNITS, QUICK_STEPS, QUICK_SAMPLES = 3, 24, 128


def units_option(section: str, name: str, value: Any) -> None:
    """Refuse a channel selection that is neither a count (int >= 1) nor a non-empty list of channel indices."""
    if isinstance(value, int) and not isinstance(value, bool):
        check_int(section, name, value)
        return
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)):
        raise UsageError(f"{section} option {name}={value!r}: expected a count of channels (an integer >= 1) "
                         f"or a list of channel indices >= 0")


def pick_channels(section: str, name: str, value: int | Sequence[int], width: int, layer: str,
                  quick: bool) -> list[int]:
    """The channels a ``units`` / ``channels`` option selects in a layer of ``width`` channels: the
    first ``value`` (at most :data:`QUICK_UNITS` in quick mode) or the listed ones (checked against ``width``)."""
    if isinstance(value, int):
        return list(range(min(min(value, QUICK_UNITS) if quick else value, width)))
    wrong = [c for c in value if c >= width]
    if wrong:
        raise UsageError(f"{section} option {name}: channel {wrong[0]} is not a channel of {layer} "
                         f"({width} channels: 0..{width - 1})")
    return [int(c) for c in value]


def on_cpu(result: Any) -> Any:
    """A dataclass result (synthesis, exemplars) with its tensors on the CPU (itself when they are)."""
    if result is None:
        return None
    import dataclasses

    moved = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, Tensor) and value.device.type != "cpu":
            moved[f.name] = value.detach().cpu()
    return dataclasses.replace(result, **moved) if moved else result


@dataclass(frozen=True)
class FeatureVisOptions(SectionOptions):
    """``units``: the channels that get a synthesized input: a count (the first ones; quick: at most
    3) or a list of channel indices; ``steps``: gradient-ascent steps (quick: at most 24); ``lr``:
    their learning rate; ``baseline``: how many random inputs each unit's reached value is compared
    with (a unit not above the best of them is FAILED); ``side``: the largest image side optimized
    for a convolutional model (smaller inputs keep their size; a model that takes one size only gets
    it); ``k``: the dataset exemplars drawn beside each image; ``samples``: how many samples of the
    subject's dataset are searched for them (the first ones; quick: at most 128); ``batch_size``:
    the batch size of that search."""

    units: int | tuple[int, ...] = 4
    steps: int = 32
    lr: float = 0.1
    baseline: int = 32
    side: int = 64
    k: int = 5
    samples: int = 512
    batch_size: int = 64

    def check(self) -> None:
        units_option("feature_vis", "units", self.units)
        for name in ("steps", "baseline", "side", "k", "samples", "batch_size"):
            check_int("feature_vis", name, getattr(self, name))
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UsageError(f"feature_vis option lr={self.lr!r}: expected a number > 0")


@dataclass
class FeatureVisData(SectionData):
    """The synthesized inputs of ``channels`` of ``layer`` (``kind``: ``"conv"``, ``"sequence"`` or
    ``"linear"``): ``result`` (:class:`~torchloupe.synthesis.SynthesisResult`: images, objective
    curves, reached and random-baseline values, FAILED units), ``units`` (the table's name of each
    unit: a class logit's class name when known), the ``exemplars`` drawn beside them
    (:class:`~torchloupe.synthesis.ExemplarResult` or None), and how they were made (``param``,
    ``steps``, ``seed``, ``shape`` of one input, ``baseline`` random inputs, ``k`` exemplars each)."""

    section: ClassVar[str] = "feature_vis"
    layer: str
    kind: str
    channels: list[int]
    units: list[str]
    result: Any
    exemplars: Any
    param: str
    steps: int
    seed: int
    shape: tuple
    channels_first: bool
    baseline: int = 32
    k: int = 5

    @property
    def failed(self) -> int:
        """How many units were not driven above the best random input."""
        return int(self.result.failed.sum())

    def render(self) -> list:
        from ...render.synthesis import curves_figure, units_figure

        rows = [[label, f"{f:.4g}", f"{b:.4g}", "" if d != d else f"{d:.4g}", status]
                for label, (_, f, b, d, status) in zip(self.units, self.result.rows())]
        table = Table(["unit", "reached", f"best of {self.baseline} random", "dataset top-1", "status"], rows,
                      caption="Reached value of each unit on its synthesized input (no transforms) against random inputs.",
                      highlight=[(i, 4) for i, r in enumerate(rows) if r[4] == "FAILED"])
        blocks = [
            Figure(units_figure(self.result, self.exemplars, k=self.k, channels_first=self.channels_first),
                   caption=f"{self.layer}: channels {_channels_text(self.channels)}, {self.param} "
                           f"parameterization, {self.steps} steps, seed {self.seed}"
                           + _sequence_note(self.shape, self.channels_first)),
            table,
            Figure(curves_figure(self.result), caption="Objective per step (on the randomly transformed images)."),
        ]
        failed, n = self.failed, len(rows)
        blocks.append(Finding(f"{n - failed} of {n} units of {self.layer} were driven above the best of "
                              f"{self.baseline} random inputs in {self.steps} steps"
                              + ("; their images show what each prefers." if not failed else
                                 f"; the other {failed} show nothing the unit prefers."), table))
        if failed:
            blocks.append(Text(f"{failed} of {n} units could not be driven above random inputs in "
                               f"{self.steps} steps; their images show nothing the unit prefers."))
        return blocks


def _channels_text(channels: Sequence[int]) -> str:
    """``0..3`` for a run of consecutive channels, else ``0, 2, 5``."""
    run = list(channels) == list(range(channels[0], channels[0] + len(channels)))
    return f"{channels[0]}..{channels[-1]}" if run and len(channels) > 1 else ", ".join(map(str, channels))


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
    options=FeatureVisOptions,
    shares="exemplars",  # its exemplars are the exemplars section's: one process computes them once
)
def build(subject: Subject, options: FeatureVisOptions) -> FeatureVisData | NotApplicable:
    from ...inputs import first_layer
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
    quick = bool(options.quick)
    shape = tuple(x.shape[1:])
    transforms = "standard"
    if kind == "conv" and x.dim() == 4:
        side = min(shape[-1], shape[-2], options.side)
        small = (shape[0], side, side)
        # Small images are quick to optimize; a model that takes one input size only (a ViT's patch
        # grid, an MLP after the convolutions) gets its own size, and transforms that keep it.
        shape = small if takes_shape(subject.model, small) else shape
        transforms = standard_transforms_for(subject.model, shape)
        param = "fft"
    else:
        param = "pixel"
    channels = pick_channels("feature_vis", "units", options.units, width, layer, quick)
    steps = min(options.steps, QUICK_STEPS) if quick else options.steps
    stop = min(options.samples, QUICK_SAMPLES) if quick else options.samples
    ex = (subject.shared.exemplars(layer, channels, stop, k=options.k, batch_size=options.batch_size)
          if kind == "conv" else None)
    from ...synthesis.objectives import channels as channel_objectives  # objects: a layer name may hold ':' or ' '

    res = maximize(subject.model, channel_objectives(layer, channels), param=param, steps=steps, lr=options.lr,
                   input_shape=shape, seed=options.seed, exemplars=ex, transforms=transforms,
                   baseline_samples=options.baseline)
    names = subject.labels if kind == "linear" and subject.labels is not None else None
    units = [f"{name} ({names[c]})" if names is not None and c < len(names) else name
             for name, c in zip(res.names, channels)]
    first = first_layer(subject.model)
    channels_first = len(shape) == 2 and first is not None and isinstance(first[1], nn.Conv1d)
    return FeatureVisData(layer=layer, kind=kind, channels=channels, units=units, result=on_cpu(res), exemplars=on_cpu(ex),
                          param=param, steps=steps, seed=options.seed, shape=shape, channels_first=channels_first,
                          baseline=options.baseline, k=options.k)
