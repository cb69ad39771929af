"""Pictures of recurrent memory: hidden and cell states over time, gate saturation, and the
time lines of the units most correlated with a signal."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .plain import figure_class
from .colormaps import SIGNED

Figure = figure_class()  # strings drawn without mathtext

__all__ = ["states_figure", "saturation_figure", "units_figure"]


def _heat(ax, m: Tensor, title: str, cmap: str = SIGNED) -> None:
    m = m.detach().float().cpu()
    lim = float(m.abs().max()) or 1.0
    im = ax.imshow(m.T.numpy(), aspect="auto", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("time step")
    ax.set_ylabel("unit")
    ax.figure.colorbar(im, ax=ax, shrink=0.85, label="state (0 = white)")


def states_figure(tr, sample: int = 0, layer: int = -1, direction: int = 0, max_units: int = 64, signal: Tensor | None = None) -> Figure:
    """Heat maps (units × time) of ``h`` and, for an LSTM, ``c`` of one sample, layer and direction.

    ``signal`` ``(B, T)``: drawn above the maps as the reference time line.
    """
    panels = [("hidden state h", tr.h)] + ([("cell state c", tr.c)] if tr.c is not None else [])
    rows = len(panels) + (1 if signal is not None else 0)
    fig = Figure(figsize=(7.5, 1.2 + 2.1 * rows), layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    i = 0
    if signal is not None:
        s = signal[sample].detach().float().cpu()
        axes[0].plot(range(s.shape[0]), s.numpy(), color="#222")
        axes[0].set_xlim(-0.5, s.shape[0] - 0.5)
        axes[0].set_title("signal", fontsize=9)
        i = 1
    where = f"layer {layer % tr.h.shape[0]}" + (", reverse" if direction == 1 else "")
    for title, x in panels:
        _heat(axes[i], x[layer, direction, sample, :, :max_units], f"{title} ({where}, sample {sample})")
        i += 1
    return fig


def saturation_figure(sat: Mapping[str, Tensor], layer: int = -1, direction: int = 0) -> Figure:
    """Per gate, every unit as a point: fraction of time left-saturated vs right-saturated (Karpathy et al. 2015)."""
    gates = list(sat)
    fig = Figure(figsize=(2.6 * max(1, len(gates)), 2.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(gates)), squeeze=False)[0]
    for ax, g in zip(axes, gates):
        s = sat[g][:, layer, direction].detach().float().cpu()
        ax.scatter(s[0].numpy(), s[1].numpy(), s=14, alpha=0.7, color="#4c72b0")
        ax.plot([0, 1], [1, 0], color="#bbb", lw=0.8)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("fraction left-saturated", fontsize=8)
        ax.set_ylabel("fraction right-saturated", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle("gate saturation: one point per unit", fontsize=9)
    return fig


def units_figure(tr, signal: Tensor, corr: Tensor, k: int = 3, sample: int = 0, state: str = "h") -> Figure:
    """The ``k`` units whose ``state`` correlates most (in |r|) with ``signal``, over time, beside it."""
    x = tr.h if state == "h" else tr.c
    L, D, H = corr.shape
    flat = corr.abs().reshape(-1)
    top = flat.topk(min(k, flat.numel())).indices
    fig = Figure(figsize=(7.5, 1.0 + 1.5 * (len(top) + 1)), layout="constrained")
    axes = fig.subplots(len(top) + 1, 1, squeeze=False, sharex=True)[:, 0]
    s = signal[sample].detach().float().cpu()
    axes[0].plot(s.numpy(), color="#222")
    axes[0].set_title("signal", fontsize=9)
    for ax, idx in zip(axes[1:], top.tolist()):
        l, rem = divmod(idx, D * H)
        d, u = divmod(rem, H)
        ax.plot(x[l, d, sample, :, u].detach().float().cpu().numpy(), color="#dd5522")
        where = f"layer {l}" + (" reverse" if d else "")
        ax.set_title(f"{state} unit {u} ({where}): r = {float(corr[l, d, u]):+.3f}", fontsize=9)
    axes[-1].set_xlabel("time step")
    return fig
