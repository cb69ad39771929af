"""Every time step of an RNN / LSTM / GRU: hidden and cell states and gates.

The fused ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` kernels return only the last layer's
outputs and the final states. :func:`trace` re-runs the module step by step from its own
weights (the input projection batched over all time steps, a Python loop only over time)
and returns every layer's and direction's states and gates in time order. It never runs
the module itself, so it neither flips its mode nor touches cuDNN; it computes the eval
forward (no inter-layer dropout).

For ``nn.LSTMCell`` / ``nn.GRUCell`` / ``nn.RNNCell`` called in the user's own loop,
:func:`trace_cells` runs the model once and records every call by hooks.

PyTorch's gate layout: LSTM rows ``[input, forget, cell, output]``; GRU rows
``[reset, update, new]``::

    LSTM  i,f,o = σ(W_i x + b_i + U_i h + c_i)   g = tanh(...)   c' = f·c + i·g   h' = P(o·tanh c')
    GRU   r,z = σ(...)   n = tanh(W_n x + b_in + r·(U_n h + b_hn))   h' = (1 − z)·n + z·h
    RNN   h' = tanh/relu(W x + b_ih + U h + b_hh)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .errors import InputShapeError, UnsupportedModelError, UsageError
from .inputs import Inputs, check_finite
from .layers import LayerSpec, find_layers
from .probe import hooks, require_module, session

__all__ = ["trace", "RecurrentTrace", "trace_cells", "CellTrace", "GATES", "saturation", "correlate"]

GATES = {
    "LSTM": ("input", "forget", "cell", "output"),
    "GRU": ("reset", "update", "new"),
    "RNN": (),
}


@dataclass(frozen=True)
class RecurrentTrace:
    """States of every layer, direction and time step of one recurrent module.

    ``h``: ``(layers, directions, B, T, H_out)``; ``c`` (LSTM, else ``None``):
    ``(layers, directions, B, T, H)``; ``gates[name]``: ``(layers, directions, B, T, H)``
    (activated: sigmoid for input/forget/output/reset/update, tanh for cell/new). Time
    order is the input's for both directions (the reverse direction's state at ``t`` has
    seen ``t..T-1``). Steps past a sequence's length (``PackedSequence``) hold zeros.
    ``output``, ``h_n``, ``c_n`` are what the module returns, ``output`` padded and in the
    module's layout. ``lengths``: ``(B,)`` or ``None``.
    """

    kind: str
    h: Tensor
    c: Tensor | None
    gates: dict[str, Tensor]
    output: Tensor
    h_n: Tensor
    c_n: Tensor | None
    lengths: Tensor | None = None
    batch_first: bool = False

    @property
    def num_layers(self) -> int:
        return self.h.shape[0]

    @property
    def num_directions(self) -> int:
        return self.h.shape[1]

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import png_of

        return png_of(self)


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.LSTM):
        return "LSTM"
    if isinstance(module, nn.GRU):
        return "GRU"
    if isinstance(module, nn.RNN):
        return "RNN"
    raise UnsupportedModelError(
        f"trace expects an nn.LSTM, nn.GRU or nn.RNN, got {type(module).__name__}; "
        "for LSTMCell/GRUCell/RNNCell loops use tl.recurrent.trace_cells(model, inputs)"
    )


def _param(module: nn.Module, name: str) -> Tensor | None:
    return getattr(module, name, None)


def _step_lstm(xp: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh, w_hr):
    g = xp + h @ w_hh.T
    if b_hh is not None:
        g = g + b_hh
    i, f, gg, o = g.chunk(4, dim=-1)
    i, f, gg, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(gg), torch.sigmoid(o)
    c_new = f * c + i * gg
    h_new = o * torch.tanh(c_new)
    if w_hr is not None:
        h_new = h_new @ w_hr.T
    return h_new, c_new, (i, f, gg, o)


def _step_gru(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh):
    gh = h @ w_hh.T
    if b_hh is not None:
        gh = gh + b_hh
    xr, xz, xn = xp.chunk(3, dim=-1)
    hr, hz, hn = gh.chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h_new = (1 - z) * n + z * h
    return h_new, (r, z, n)


def _step_rnn(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh, act):
    pre = xp + h @ w_hh.T
    if b_hh is not None:
        pre = pre + b_hh
    return act(pre)


def _prepare(module: nn.Module, x) -> tuple[Tensor, Tensor | None, bool, bool]:
    """x -> (T, B, I) padded, lengths or None, was_unbatched, was_packed."""
    if isinstance(x, PackedSequence):
        padded, lengths = pad_packed_sequence(x, batch_first=False)
        check_finite(padded)
        return padded, lengths.to(padded.device), False, True
    if not isinstance(x, Tensor):
        raise InputShapeError(f"expected a tensor or PackedSequence input, got {type(x).__name__}")
    check_finite(x)
    if x.dim() == 2:
        x3 = x.unsqueeze(1)
        unbatched = True
    elif x.dim() == 3:
        x3 = x.transpose(0, 1) if module.batch_first else x
        unbatched = False
    else:
        layout = "(B, T, I)" if module.batch_first else "(T, B, I)"
        raise InputShapeError(f"input of shape {tuple(x.shape)}; expected {layout} or unbatched (T, I)")
    if x3.shape[-1] != module.input_size:
        raise InputShapeError(
            f"input has {x3.shape[-1]} features per step; {type(module).__name__} expects input_size={module.input_size}"
        )
    return x3, None, unbatched, False


def trace(module: nn.Module, x, h0=None) -> RecurrentTrace:
    """Re-run ``module`` (``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``) step by step on ``x``.

    ``x``: ``(T, B, I)`` (``(B, T, I)`` when ``batch_first``), unbatched ``(T, I)``, or a
    ``PackedSequence``. ``h0``: what the module takes (``(h0, c0)`` for LSTM), batch in
    the input's original order. Equals the fused module's outputs and final states (float32
    within ~1e-6) in eval semantics; returns a :class:`RecurrentTrace` of detached tensors.
    """
    kind = _kind(module)
    seq, lengths, unbatched, packed = _prepare(module, x)
    T, B, _ = seq.shape
    D = 2 if module.bidirectional else 1
    L = module.num_layers
    H = module.hidden_size
    proj = getattr(module, "proj_size", 0) or 0
    H_out = proj if proj > 0 else H
    dtype = next(module.parameters()).dtype
    seq = seq.to(dtype)
    device = seq.device

    hx, cx = (h0 if isinstance(h0, tuple) else (h0, None)) if h0 is not None else (None, None)
    if hx is not None:
        hx = hx.unsqueeze(1) if unbatched else hx
        if tuple(hx.shape) != (L * D, B, H_out):
            raise InputShapeError(f"h0 has shape {tuple(hx.shape)}; expected {(L * D, B, H_out)}")
    if cx is not None:
        cx = cx.unsqueeze(1) if unbatched else cx
        if tuple(cx.shape) != (L * D, B, H):
            raise InputShapeError(f"c0 has shape {tuple(cx.shape)}; expected {(L * D, B, H)}")
    act = torch.relu if getattr(module, "nonlinearity", "tanh") == "relu" else torch.tanh
    masks = None
    if lengths is not None:
        masks = (torch.arange(T, device=device)[:, None] < lengths[None, :])[..., None]  # (T, B, 1) bool

    hs, cs, gates = [], [], {g: [] for g in GATES[kind]}
    h_n, c_n = [], []
    inp = seq
    with torch.no_grad():
        for layer in range(L):
            outs = []
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                w_ih, w_hh = _param(module, "weight_ih" + sfx), _param(module, "weight_hh" + sfx)
                b_ih, b_hh = _param(module, "bias_ih" + sfx), _param(module, "bias_hh" + sfx)
                w_hr = _param(module, "weight_hr" + sfx) if proj > 0 else None
                xp = inp @ w_ih.T
                if b_ih is not None:
                    xp = xp + b_ih
                k = layer * D + d
                h = hx[k] if hx is not None else seq.new_zeros(B, H_out)
                c = (cx[k] if cx is not None else seq.new_zeros(B, H)) if kind == "LSTM" else None
                h_t: list = [None] * T
                c_t: list = [None] * T
                g_t: dict[str, list] = {g: [None] * T for g in GATES[kind]}
                steps = range(T) if d == 0 else range(T - 1, -1, -1)
                for t in steps:
                    if kind == "LSTM":
                        h_new, c_new, gs = _step_lstm(xp[t], h, c, w_hh, b_hh, w_hr)
                    elif kind == "GRU":
                        h_new, gs = _step_gru(xp[t], h, w_hh, b_hh)
                        c_new = None
                    else:
                        h_new, gs, c_new = _step_rnn(xp[t], h, w_hh, b_hh, act), (), None
                    if masks is not None:
                        m = masks[t]
                        h = torch.where(m, h_new, h)  # keeps the state past a sequence's end
                        h_new, gs = h_new * m, tuple(g * m for g in gs)
                        if c_new is not None:
                            c = torch.where(m, c_new, c)
                            c_new = c_new * m
                    else:
                        h, c = h_new, c_new
                    h_t[t] = h_new
                    c_t[t] = c_new
                    for name, g in zip(GATES[kind], gs):
                        g_t[name][t] = g
                out_d = torch.stack(h_t)  # (T, B, H_out)
                outs.append(out_d)
                hs.append(out_d)
                if kind == "LSTM":
                    cs.append(torch.stack(c_t))
                for name in GATES[kind]:
                    gates[name].append(torch.stack(g_t[name]))
                h_n.append(h)
                if kind == "LSTM":
                    c_n.append(c)
            inp = torch.cat(outs, dim=-1) if D == 2 else outs[0]

    def arrange(parts: list[Tensor]) -> Tensor:  # L*D x (T, B, X) -> (L, D, B, T, X)
        st = torch.stack(parts).reshape(L, D, T, B, parts[0].shape[-1])  # explicit: B or T may be 0
        return st.transpose(2, 3).contiguous()

    output = inp
    hn = torch.stack(h_n)
    cn = torch.stack(c_n) if kind == "LSTM" else None
    if unbatched:
        output, hn = output.squeeze(1), hn.squeeze(1)
        cn = cn.squeeze(1) if cn is not None else None
    elif module.batch_first:
        output = output.transpose(0, 1)
    return RecurrentTrace(
        kind=kind,
        h=arrange(hs),
        c=arrange(cs) if kind == "LSTM" else None,
        gates={name: arrange(v) for name, v in gates.items()},
        output=output,
        h_n=hn,
        c_n=cn,
        lengths=lengths,
        batch_first=bool(module.batch_first) and not unbatched,
    )


def _valid(tr: RecurrentTrace) -> Tensor:
    """(B, T) bool: the steps inside each sequence."""
    B, T = tr.h.shape[2], tr.h.shape[3]
    if tr.lengths is None:
        return torch.ones(B, T, dtype=torch.bool, device=tr.h.device)
    return torch.arange(T, device=tr.h.device)[None, :] < tr.lengths.to(tr.h.device)[:, None]


_TANH_GATES = ("cell", "new")


def saturation(tr: RecurrentTrace, low: float = 0.1, high: float = 0.9) -> dict[str, Tensor]:
    """Per gate, the fraction of time steps each unit is saturated: ``{gate: (2, layers, dirs, H)}``.

    Row 0 is left saturation (sigmoid gates ``< low``, tanh gates ``< -high``), row 1 right
    saturation (``> high``), counted over every sample's valid steps (Karpathy et al. 2015).
    """
    valid = _valid(tr)[None, None, :, :, None]
    n = valid.sum(dim=(2, 3)).clamp(min=1)
    out = {}
    for name, g in tr.gates.items():
        lo = -high if name in _TANH_GATES else low
        left = ((g < lo) & valid).sum(dim=(2, 3)) / n
        right = ((g > high) & valid).sum(dim=(2, 3)) / n
        out[name] = torch.stack([left, right]).to(g.dtype)
    return out


def correlate(tr: RecurrentTrace, signal: Tensor, state: str = "h") -> Tensor:
    """Pearson correlation of every unit's ``h`` (or ``c``) with ``signal`` ``(B, T)``: ``(layers, dirs, H)``.

    Only each sequence's valid steps count. Units (or signals) that never change get 0.
    """
    x = tr.h if state == "h" else tr.c if state == "c" else None
    if x is None:
        raise UsageError(f"state={state!r}; expected 'h' or 'c' (and 'c' only for LSTM)")
    B, T = x.shape[2], x.shape[3]
    if tuple(signal.shape) != (B, T):
        raise InputShapeError(f"signal has shape {tuple(signal.shape)}; expected (B, T) = {(B, T)}")
    valid = _valid(tr)
    s = signal.to(x.dtype)[valid]  # (N,)
    v = x[:, :, valid]  # (L, D, N, H)
    s = s - s.mean()
    v = v - v.mean(dim=2, keepdim=True)
    cov = (v * s[None, None, :, None]).mean(dim=2)
    denom = v.pow(2).mean(dim=2).sqrt() * s.pow(2).mean().sqrt()
    return torch.where(denom > 0, cov / denom.clamp(min=1e-30), torch.zeros_like(cov))


# -- cells called in the user's loop ---------------------------------------------------------


@dataclass(frozen=True)
class CellTrace:
    """Every call of one ``LSTMCell`` / ``GRUCell`` / ``RNNCell`` during a forward.

    ``h``, ``c`` (LSTM) and each ``gates[name]``: ``(B, calls, H)``, in call order.
    """

    kind: str
    h: Tensor
    c: Tensor | None
    gates: dict[str, Tensor] = field(default_factory=dict)

    def as_trace(self) -> RecurrentTrace:
        """The same steps as a one-layer, one-direction :class:`RecurrentTrace` (calls as time)."""
        lift = lambda t: None if t is None else t[None, None]  # noqa: E731
        return RecurrentTrace(
            kind=self.kind,
            h=lift(self.h),
            c=lift(self.c),
            gates={k: lift(v) for k, v in self.gates.items()},
            output=self.h,
            h_n=self.h[:, -1][None],
            c_n=None if self.c is None else self.c[:, -1][None],
            batch_first=True,
        )

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from .render.notebook import png_of

        return png_of(self)


def _cell_kind(m: nn.Module) -> str | None:
    if isinstance(m, nn.LSTMCell):
        return "LSTM"
    if isinstance(m, nn.GRUCell):
        return "GRU"
    if isinstance(m, nn.RNNCell):
        return "RNN"
    return None


def trace_cells(
    model: nn.Module,
    *inputs,
    cells: LayerSpec | list[LayerSpec] | None = None,
    **kwargs,
) -> dict[str, CellTrace]:
    """Run ``model(*inputs, **kwargs)`` once (eval, no autograd) and record every call of its cells.

    ``cells``: layer specs of the cells (default: every ``LSTMCell``/``GRUCell``/``RNNCell``).
    Each call's gates are recomputed from the call's own input, state and the cell's weights.
    Returns ``{cell name: CellTrace}``; the model's modes and hooks are restored.
    """
    require_module(model)
    if inputs and isinstance(inputs[0], Tensor):  # the data; later arguments may be masks or states
        check_finite(inputs[0])
    if cells is None:
        found = [(n, m) for n, m in model.named_modules() if _cell_kind(m) is not None]
        if not found:
            raise UnsupportedModelError(f"{type(model).__name__} has no LSTMCell, GRUCell or RNNCell")
    else:
        found = find_layers(model, cells)
        for n, m in found:
            if _cell_kind(m) is None:
                raise UnsupportedModelError(f"{n!r} is a {type(m).__name__}; expected an LSTMCell, GRUCell or RNNCell")
    calls: dict[str, list] = {n: [] for n, _ in found}

    def make(name: str, kind: str):
        def hook(cell, args, output):
            x = args[0]
            hx = args[1] if len(args) > 1 else None
            unbatched = x.dim() == 1
            x = x.unsqueeze(0) if unbatched else x
            B = x.shape[0]
            xp = x @ cell.weight_ih.T + (cell.bias_ih if cell.bias_ih is not None else 0)
            if kind == "LSTM":
                h, c = hx if hx is not None else (x.new_zeros(B, cell.hidden_size), x.new_zeros(B, cell.hidden_size))
                h, c = (h.unsqueeze(0), c.unsqueeze(0)) if unbatched else (h, c)
                h_new, c_new, gs = _step_lstm(xp, h, c, cell.weight_hh, cell.bias_hh, None)
                calls[name].append((h_new, c_new, gs))
            elif kind == "GRU":
                h = hx if hx is not None else x.new_zeros(B, cell.hidden_size)
                h = h.unsqueeze(0) if unbatched else h
                h_new, gs = _step_gru(xp, h, cell.weight_hh, cell.bias_hh)
                calls[name].append((h_new, None, gs))
            else:
                h = hx if hx is not None else x.new_zeros(B, cell.hidden_size)
                h = h.unsqueeze(0) if unbatched else h
                act = torch.relu if cell.nonlinearity == "relu" else torch.tanh
                calls[name].append((_step_rnn(xp, h, cell.weight_hh, cell.bias_hh, act), None, ()))

        return hook

    with session(model) as run, torch.no_grad():
        with hooks(forward={m: make(n, _cell_kind(m)) for n, m in found}):
            run(Inputs(inputs, kwargs))
    result = {}
    for n, m in found:
        kind = _cell_kind(m)
        steps = calls[n]
        if not steps:
            continue
        h = torch.stack([s[0] for s in steps], dim=1)
        c = torch.stack([s[1] for s in steps], dim=1) if kind == "LSTM" else None
        gates = {g: torch.stack([s[2][i] for s in steps], dim=1) for i, g in enumerate(GATES[kind])}
        result[n] = CellTrace(kind=kind, h=h, c=c, gates=gates)
    return result
