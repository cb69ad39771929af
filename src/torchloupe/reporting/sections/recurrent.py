"""Report section "Recurrent memory": states over time, gate saturation, units tracking a signal.

Reads ``subject.extras["signal"]`` (``(B, T)``, optional): the units most correlated with it
are shown.
"""

from __future__ import annotations

import torch
from torch import nn

from torchloupe import recurrent
from torchloupe.probe import capture, session
from torchloupe.reporting.base import Figure, Finding, NotApplicable, Subject, Text, register

_RNNS = (nn.LSTM, nn.GRU, nn.RNN)
_CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)


@register(
    "recurrent",
    "Recurrent memory",
    "What a recurrent layer remembers: hidden and cell states over time, gate saturation, and the units that track a signal.",
    cost=1.5,
)
def build(subject: Subject, options: dict):
    from torchloupe.render import recurrent as draw

    model = subject.model
    rnns = [(n, m) for n, m in model.named_modules() if isinstance(m, _RNNS)]
    cells = [(n, m) for n, m in model.named_modules() if isinstance(m, _CELLS)]
    if not rnns and not cells:
        return NotApplicable(f"{type(model).__name__} has no LSTM, GRU or RNN")
    blocks: list = []
    signal = subject.signal
    if rnns:
        with session(model) as run, capture(model, [m for _, m in rnns], inputs=True) as rec, torch.no_grad():
            run(subject.inputs)
        for name, module in rnns[:2]:
            args = rec.inputs.get(name)
            if not args:
                continue
            tr = recurrent.trace(module, args[0], args[1] if len(args) > 1 else None)
            B, T = tr.h.shape[2], tr.h.shape[3]
            sig = signal if signal is not None and tuple(signal.shape) == (B, T) else None
            blocks.append(Text(f"{name}: {type(module).__name__}, {tr.num_layers} layer(s) × {tr.num_directions} direction(s), "
                               f"{tr.h.shape[-1]} units, {T} steps; re-run step by step from its weights (equal to the fused module)."))
            blocks.append(Figure(draw.states_figure(tr, signal=sig), caption=f"{name}: states over time"))
            if tr.gates:
                blocks.append(Figure(draw.saturation_figure(recurrent.saturation(tr)), caption=f"{name}: gate saturation"))
            if sig is not None:
                state = "c" if tr.c is not None else "h"
                corr = recurrent.correlate(tr, sig, state=state)
                fig = Figure(draw.units_figure(tr, sig, corr, state=state), caption=f"{name}: the units most correlated with the signal")
                blocks.append(fig)
                flat = corr.detach().float().cpu().flatten()
                if flat.numel():
                    r = float(flat[int(flat.abs().argmax())])
                    strong = sum(1 for v in flat.tolist() if abs(v) >= 0.8)
                    blocks.append(Finding(f"{name}: the unit that tracks the signal best has correlation r = {r:.2f} "
                                          f"with it over {B} samples × {T} steps; {strong} of {flat.numel()} units "
                                          f"reach |r| ≥ 0.8.", fig))
            else:
                blocks.append(Text("Give Subject(..., signal=...) as a (B, T) tensor to see the units that track it."))
    if cells:
        x = subject.inputs
        traces = (recurrent.trace_cells(model, **x) if isinstance(x, dict)
                  else recurrent.trace_cells(model, *x) if isinstance(x, (tuple, list)) else recurrent.trace_cells(model, x))
        for name, ct in list(traces.items())[:2]:
            tr = ct.as_trace()
            blocks.append(Figure(draw.states_figure(tr), caption=f"{name}: {ct.kind} cell, {ct.h.shape[1]} calls"))
            if tr.gates:
                blocks.append(Figure(draw.saturation_figure(recurrent.saturation(tr)), caption=f"{name}: gate saturation"))
    return blocks
