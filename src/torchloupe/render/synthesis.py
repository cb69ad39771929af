"""Figures for activation maximization and dataset exemplars (matplotlib ``Figure`` objects, no pyplot)."""

from __future__ import annotations

from torch import Tensor

from .plain import figure_class
from ..errors import require
from .colormaps import SIGNED
from .figures import SMALL

__all__ = ["units_figure", "curves_figure", "to_display"]


def to_display(x: Tensor) -> Tensor:
    """``(C, H, W)`` -> ``(H, W, 3)`` or ``(H, W)`` in [0, 1] for imshow (min-max only if outside [0, 1])."""
    x = x.detach().float().cpu()
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        x = (x - lo) / max(hi - lo, 1e-12)
    if x.dim() == 3 and x.shape[0] == 1:
        return x[0]
    if x.dim() == 3 and x.shape[0] == 3:
        return x.permute(1, 2, 0)
    if x.dim() == 3:
        return x.mean(0)
    return x


def _show(ax, img: Tensor, channels_first: bool = False) -> None:
    """An image sample ``(C, H, W)`` as a picture (a flat vector of ``s * s`` or ``3 * s * s`` values
    too: the image it holds); a sequence sample ``(T, F)`` (recurrent and sequence models) or another
    vector ``(F,)`` as what it is: bars over steps or features, or a
    features x steps heat map when each step has several features."""
    if img.dim() == 1:  # a flat vector that holds an image (784 -> 1 x 28 x 28) is drawn as that image
        from .image import image_shape

        shape = image_shape(img.numel())
        if shape is not None:
            img = img.reshape(shape)
    if img.dim() in (1, 2):
        v = img.detach().float().cpu()
        _show_sequence(ax, v.t() if channels_first and v.dim() == 2 else v, "channel" if channels_first else "feature")
        return
    d = to_display(img)
    ax.imshow(d.numpy(), cmap="gray" if d.dim() == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _show_sequence(ax, v: Tensor, rows: str = "feature") -> None:
    ax.axis("on")
    if v.dim() == 2 and v.shape[1] > 1:
        top = float(v.abs().max()) or 1.0
        im = ax.imshow(v.t().numpy(), cmap=SIGNED, vmin=-top, vmax=top, aspect="auto", interpolation="nearest")
        ax.set_ylabel(rows, fontsize=8, labelpad=1)
        bar = ax.figure.colorbar(im, ax=ax, fraction=0.05, pad=0.02)  # which colour is high, which low
        bar.ax.tick_params(labelsize=SMALL, length=2, pad=1)
    else:
        values = v.reshape(-1).numpy()
        ax.bar(range(len(values)), values, width=0.8, color="#4c72b0")
        ax.axhline(0.0, color="#888888", lw=0.6)
        ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_xlabel("step" if v.dim() == 2 else "feature", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=SMALL, length=2, pad=1)
    ticker = require("matplotlib.ticker", "render")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(6, integer=True))  # a 300-feature axis: 6 ticks, not 300
    ax.yaxis.set_major_locator(ticker.MaxNLocator(5, integer=True))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _unit_label(result, i: int) -> tuple[str, bool]:
    f, b = float(result.final_activation[i]), float(result.baseline_activation[i])
    failed = bool(result.failed[i])
    label = f"{result.names[i]}\n{f:.3g} vs random {b:.3g}"
    top1 = float(result.dataset_top1[i])
    if top1 == top1:  # not NaN
        label += f"\ndataset top-1 {top1:.3g}"
    if failed:
        label += "\nFAILED"
    return label, failed


def _units_grid(result, title: str | None, max_cols: int | None = None, channels_first: bool = False):
    """Synthesized images alone (no exemplars to pair with): a compact grid, labels above each."""
    Figure = figure_class()  # strings drawn without mathtext

    n = result.images.shape[0]
    sequences = result.images.dim() in (2, 3)
    # a sequence is a heat map of features x steps (or bars): it needs room for its axes to be read
    w, h = (3.0, 2.6) if sequences else (1.8, 2.15)
    from .figures import PAGE_WIDTH

    cols = max(1, min(n, max_cols or int((PAGE_WIDTH - 0.2) // w)))  # at most the page column wide
    rows = -(-n // cols)
    fig = Figure(figsize=(w * cols + 0.2, h * rows + 0.4), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        _show(ax, result.images[i], channels_first)
        label, failed = _unit_label(result, i)
        ax.set_title(label, fontsize=8, color="#c0392b" if failed else "black")
    if title:
        fig.suptitle(title, fontsize=9)
    if sequences:  # room for ticks and labels
        fig.subplots_adjust(left=0.12 / cols, right=1 - 0.35 / (w * cols), bottom=0.16 / rows, top=1 - 0.75 / (h * rows + 0.4),
                            wspace=0.35, hspace=0.9)
    else:
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.75 / (h * rows + 0.4), wspace=0.12,
                            hspace=0.62)
    return fig


def units_figure(result, exemplars=None, k: int = 5, title: str | None = None, channels_first: bool = False):
    """One row per synthesized image: the image (name, reached value vs random baseline, FAILED
    in red) and, when ``exemplars`` covers its channel, the top-``k`` exemplar crops with values.
    ``channels_first``: sequence inputs are ``(C, L)`` (a Conv1d's), drawn as channels x steps;
    else ``(T, F)``."""
    Figure = figure_class()  # strings drawn without mathtext

    n = result.images.shape[0]
    ex_rows: dict[int, int] = {}
    if exemplars is not None:
        chans = list(exemplars.channels)
        for i, name in enumerate(result.names):
            layer, _, ch = name.partition(":")
            if layer == exemplars.layer and ch.isdigit() and int(ch) in chans:
                ex_rows[i] = chans.index(int(ch))
    k = min(k, exemplars.k) if exemplars is not None else 0
    if not ex_rows:
        return _units_grid(result, title, channels_first=channels_first)
    cols = 1 + k
    height = 2.1 * n + 0.6
    fig = Figure(figsize=(1.75 * cols + 0.2, height), dpi=100)
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        _show(ax, result.images[i], channels_first)
        label, failed = _unit_label(result, i)
        ax.set_title(label, fontsize=8, color="#c0392b" if failed else "black")
        for j in range(1, cols):
            ax = axes[i, j]
            ax.axis("off")
            if i in ex_rows and exemplars is not None:
                row = ex_rows[i]
                idx = int(exemplars.indices[row, j - 1])
                if idx < 0:
                    continue
                crop = exemplars.crop(row, j - 1)  # one crop cut, not every channel's
                if crop is not None:
                    _show(ax, crop)
                    ax.axis("on")
                ax.set_title(f"#{idx}: {float(exemplars.values[row, j - 1]):.3g}", fontsize=8)
    if ex_rows:
        note = "left: synthesized input; right: dataset exemplars (receptive-field crops, #index: value)"
        title = f"{title}\n{note}" if title else note
    if title:
        fig.suptitle(title, fontsize=9)
    top = 1 - 0.95 / height
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=top, wspace=0.12, hspace=0.62)
    return fig


def curves_figure(result):
    """Objective per image against step."""
    Figure = figure_class()  # strings drawn without mathtext

    curve = result.objective_curve.detach().cpu()
    legend = 0 < curve.shape[1] <= 8
    fig = Figure(figsize=(6.5 if legend else 5.2, 3.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    lines = [ax.plot(range(1, curve.shape[0] + 1), curve[:, i].numpy(), lw=1.2)[0] for i in range(curve.shape[1])]
    ax.set_xlabel("step")
    ax.set_ylabel("objective (transformed images)")
    if legend:  # handles and labels given: names such as "_conv_head:0" would otherwise be left out
        ax.legend(lines, [str(n) for n in result.names], fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def exemplars_figure(exemplars, rows: int = 8, k: int = 6, dataset_images=None, names=None):
    """Grid: one row per channel, its top-``k`` crops (or full inputs from ``dataset_images``).
    ``names``: ``index -> str`` (e.g. a file name) shown above each sample with its value."""
    Figure = figure_class()  # strings drawn without mathtext

    rows = min(rows, len(exemplars.channels))
    k = min(k, exemplars.k)
    fig = Figure(figsize=(1.7 * k + 0.9, 1.8 * rows + 0.1), dpi=100)
    axes = fig.subplots(rows, k, squeeze=False)
    for r in range(rows):
        for j in range(k):
            ax = axes[r, j]
            idx = int(exemplars.indices[r, j])
            if idx < 0:
                ax.axis("off")
                continue
            crop = exemplars.crop(r, j)  # one crop cut, not every channel's
            if crop is not None:
                _show(ax, crop)
            elif dataset_images is not None:
                _show(ax, dataset_images[idx])
            else:
                ax.axis("off")
            if names is not None:
                name = str(names(idx))
                name = name if len(name) <= 22 else "…" + name[-21:]
                ax.set_title(f"{name}\n{float(exemplars.values[r, j]):.3g}", fontsize=SMALL)
            else:
                ax.set_title(f"#{idx}: {float(exemplars.values[r, j]):.3g}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{exemplars.layer}:{exemplars.channels[r]}", fontsize=8)
    fig.tight_layout()
    return fig


__all__.append("exemplars_figure")
