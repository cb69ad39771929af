"""Report section "Recurrent memory": states over time, gate saturation, units tracking a signal.

Computed as :class:`RecurrentData` (per recurrent module: its trace re-run step by step, its gates'
saturation and, given ``subject.signal`` ``(B, T)``, every unit's correlation with the signal), drawn
by its ``render()``; options: :class:`RecurrentOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Text, register
from ..base import on_cpu
from ..options import SectionOptions, check_int

_RNNS = (nn.LSTM, nn.GRU, nn.RNN)
_CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)


@dataclass(frozen=True)
class RecurrentOptions(SectionOptions):
    """``modules``: how many ``LSTM`` / ``GRU`` / ``RNN`` modules are shown (the first, in model
    order), ``cells``: how many ``LSTMCell`` / ``GRUCell`` / ``RNNCell`` modules; ``units``: the first
    units drawn in the state maps; ``top_units``: the units most correlated with the signal drawn over
    time; ``strong``: the |r| from which a unit counts as tracking the signal; ``low`` and ``high``: a
    sigmoid gate is saturated below ``low`` or above ``high`` (a tanh gate below ``-high`` or above
    ``high``; Karpathy et al. 2015)."""

    modules: int = 2
    cells: int = 2
    units: int = 64
    top_units: int = 3
    strong: float = 0.8
    low: float = 0.1
    high: float = 0.9

    def check(self) -> None:
        for name in ("modules", "cells", "units", "top_units"):
            check_int("recurrent", name, getattr(self, name))
        for name in ("strong", "low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                raise UsageError(f"recurrent option {name}={v!r}: expected a number between 0 and 1")
        if self.low >= self.high:
            raise UsageError(f"recurrent options low={self.low!r}, high={self.high!r}: expected low < high")


@dataclass
class RecurrentPart:
    """One recurrent module: ``name``, ``trace`` (:class:`~torchloupe.recurrent.RecurrentTrace`, or
    :class:`~torchloupe.recurrent.CellTrace` for a cell called in the model's loop), ``saturation``
    ``{gate: (2, layers, directions, units)}`` (fractions of steps left / right saturated), and given a
    signal of its shape: ``signal`` ``(B, T)`` (T: the steps, or a cell's calls), ``state`` (``"c"`` for
    an LSTM, else ``"h"``) and ``corr`` ``(layers, directions, units)`` each unit's correlation with
    it; else ``note`` says why there is none."""

    name: str
    trace: Any
    saturation: dict[str, Tensor] = field(default_factory=dict)
    signal: Tensor | None = None
    state: str = "h"
    corr: Tensor | None = None
    note: str = ""

    @property
    def cell(self) -> bool:
        return hasattr(self.trace, "as_trace")


@dataclass
class RecurrentData(SectionData):
    """The recurrent modules shown (``parts``, :class:`RecurrentPart`: the modules, then the cells) and
    the limits ``units``, ``top_units``, ``strong``, ``low``, ``high`` (:class:`RecurrentOptions`)."""

    section: ClassVar[str] = "recurrent"
    parts: list[RecurrentPart] = field(default_factory=list)
    units: int = 64
    top_units: int = 3
    strong: float = 0.8
    low: float = 0.1
    high: float = 0.9

    def render(self) -> list:
        from ...render import recurrent as draw

        blocks: list = []
        for part in self.parts:
            name = part.name
            if part.cell:
                tr = part.trace.as_trace()
                states = Figure(draw.states_figure(tr, signal=part.signal, max_units=self.units),
                                caption=f"{name}: {part.trace.kind} cell, {part.trace.h.shape[1]} calls")
            else:
                tr = part.trace
                T = tr.h.shape[3]
                blocks.append(Text(f"{name}: {tr.kind}, {tr.num_layers} layer(s) × {tr.num_directions} direction(s), "
                                   f"{tr.h.shape[-1]} units, {T} steps; re-run step by step from its weights (equal to "
                                   f"the fused module)."))
                states = Figure(draw.states_figure(tr, signal=part.signal, max_units=self.units),
                                caption=f"{name}: states over time")
            blocks.append(states)
            if part.saturation:
                sat = Figure(draw.saturation_figure(part.saturation), caption=f"{name}: gate saturation")
                blocks.append(sat)
                blocks.append(Finding(saturation_finding(name, part.saturation, self.low, self.high), sat))
            if part.corr is not None:
                fig = Figure(draw.units_figure(tr, part.signal, part.corr, k=self.top_units, state=part.state),
                             caption=f"{name}: the units most correlated with the signal")
                blocks.append(fig)
                text = tracking_finding(name, part.corr, part.signal.shape, self.strong)
                if text:
                    blocks.append(Finding(text, fig))
            else:
                if part.note:
                    blocks.append(Text(part.note))
                if not part.saturation:
                    blocks.append(Finding(f"{name}: nothing can be concluded about what its units track: no signal "
                                          f"of its shape was given and a plain {tr.kind} has no gates to read.", states))
        return blocks


# -- findings -----------------------------------------------------------------------------------------
def tracking_finding(name: str, corr: Tensor, shape: tuple, strong: float = 0.8) -> str:
    """The unit that tracks the signal best (its r) and how many reach ``|r| >= strong``."""
    flat = corr.detach().float().cpu().flatten()
    if not flat.numel():
        return ""
    B, T = shape
    r = float(flat[int(flat.abs().argmax())])
    n = sum(1 for v in flat.tolist() if abs(v) >= strong)
    return (f"{name}: the unit that tracks the signal best has correlation r = {r:.2f} with it over {B} samples × "
            f"{T} steps; {n} of {flat.numel()} units reach |r| ≥ {strong:g}.")


def saturation_finding(name: str, saturation: dict[str, Tensor], low: float, high: float) -> str:
    """The gate whose units are saturated most often (mean over units of the fraction of steps), how
    many of its units are saturated more than half the time, and the least saturated gate."""
    total = {g: s.float().sum(dim=0).flatten() for g, s in saturation.items()}  # (units,): left + right
    mean = {g: float(t.mean()) for g, t in total.items()}
    top = max(mean, key=mean.get)
    units = total[top]
    most = int((units > 0.5).sum())
    left, right = (float(x) for x in saturation[top].float().flatten(1).mean(dim=1))
    lo = -high if top in ("cell", "new") else low  # tanh gates (torchloupe.recurrent.saturation)
    if mean[top] < 0.1:
        share = float(100 * mean[top])
        when = "in no step" if share == 0 else (f"in only {share:.0f}% of steps on average" if share >= 0.5
                                                 else f"in under 1% of steps on average ({share:.2f}%)")
        return (f"{name}: its gates rarely saturate: even the most saturated, the {top} gate, is below {lo:g} or "
                f"above {high:g} {when}.")
    text = (f"{name}: the {top} gate is saturated most often, below {lo:g} or above {high:g} in {100 * mean[top]:.0f}% "
            f"of steps on average ({100 * left:.0f}% low, {100 * right:.0f}% high); {most} of {units.numel()} units "
            f"are saturated more than half the time")
    least = min(mean, key=mean.get)
    if least != top:
        text += f"; the least saturated is the {least} gate, {100 * mean[least]:.0f}%"
    return text + "."


# -- build --------------------------------------------------------------------------------------------


@register(
    "recurrent",
    "Recurrent memory",
    "What a recurrent layer remembers: hidden and cell states over time, gate saturation, and the units that track a signal.",
    cost=1.5,
    options=RecurrentOptions,
)
def build(subject: Subject, options: RecurrentOptions) -> RecurrentData | NotApplicable:
    from ... import recurrent
    from ...probe import capture, session

    model = subject.model
    rnns = [(n, m) for n, m in model.named_modules() if isinstance(m, _RNNS)]
    cells = [(n, m) for n, m in model.named_modules() if isinstance(m, _CELLS)]
    if not rnns and not cells:
        return NotApplicable(f"{type(model).__name__} has no LSTM, GRU or RNN")
    data = RecurrentData(units=options.units, top_units=options.top_units, strong=options.strong,
                         low=options.low, high=options.high)
    signal = subject.signal
    if rnns:
        with session(model) as run, capture(model, [m for _, m in rnns], inputs=True) as rec, torch.no_grad():
            run(subject.inputs)
        for name, module in rnns[: options.modules]:
            args = rec.inputs.get(name)
            if not args:
                continue
            tr = on_cpu(recurrent.trace(module, args[0], args[1] if len(args) > 1 else None))
            data.parts.append(_part(name or type(module).__name__, tr, tr, signal, options))
    if cells:
        x = subject.inputs
        traces = (recurrent.trace_cells(model, **x) if isinstance(x, dict)
                  else recurrent.trace_cells(model, *x) if isinstance(x, (tuple, list)) else recurrent.trace_cells(model, x))
        for name, ct in list(traces.items())[: options.cells]:
            ct = on_cpu(ct)
            data.parts.append(_part(name, ct, ct.as_trace(), signal, options))
    return data


def _part(name: str, shown: Any, tr: Any, signal: Tensor | None, options: RecurrentOptions) -> RecurrentPart:
    """The :class:`RecurrentPart` of one module: its gates' saturation and, given a ``(B, T)`` signal
    of its shape, each unit's correlation with it."""
    from ... import recurrent

    part = RecurrentPart(name, shown, recurrent.saturation(tr, options.low, options.high) if tr.gates else {})
    B, T = tr.h.shape[2], tr.h.shape[3]
    if signal is not None and tuple(signal.shape) == (B, T):
        part.signal = signal.detach().float().cpu()
        part.state = "c" if tr.c is not None else "h"
        part.corr = recurrent.correlate(tr, part.signal, state=part.state)
    elif signal is not None:
        part.note = (f"The signal has shape {tuple(signal.shape)}, not this module's (B, T) = ({B}, {T}): give one "
                     f"value per sample and step to see the units that track it.")
    elif not hasattr(shown, "as_trace"):
        part.note = "Give Subject(..., signal=...) as a (B, T) tensor to see the units that track it."
    return part


__all__ = ["RecurrentOptions", "RecurrentData", "RecurrentPart", "build"]
