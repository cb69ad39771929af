"""Figures for :mod:`torchloupe.fusion` results (matplotlib ``Figure`` objects, never pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .plain import figure_class
from ..errors import require
from .colormaps import CAM, MAGNITUDE

Figure = figure_class()  # strings drawn without mathtext
_patches = require("matplotlib.patches", "render")
FancyArrowPatch, FancyBboxPatch = _patches.FancyArrowPatch, _patches.FancyBboxPatch

__all__ = ["points_figure", "shares_figure", "sample_shares_figure", "branch_maps_figure", "provenance_figure",
           "cka_figure", "share_curves_figure"]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_KIND_COLOUR = {"early": "#2ca02c", "late": "#1f77b4", "iterative": "#9467bd"}


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def points_figure(points: Sequence, title: str = "", max_points: int = 12) -> Figure:
    """Fusion points in execution order: each op node with its incoming branches (channel ranges in a ``cat``)."""
    pts = list(points)[:max_points]
    rows = max(1, sum(max(2, len(p.inputs)) for p in pts))
    fig = Figure(figsize=(7.5, 0.42 * rows + 0.9))
    ax = fig.add_axes((0, 0, 1, 0.92 if title else 1))
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    if not pts:
        ax.text(0.5, 0.5, "no fusion points", ha="center", va="center")
        return fig
    ax.set_xlim(0, 10)
    ax.set_ylim(-rows, 0.6)
    y = 0.0
    for p in pts:
        n = max(2, len(p.inputs))
        centre = y - (n - 1) / 2
        kc = _KIND_COLOUR.get(p.kind, "#555555")
        ax.add_patch(FancyBboxPatch((6.3, centre - 0.3), 1.4, 0.6, boxstyle="round,pad=0.05", fc=kc, ec="none", alpha=0.85))
        ax.text(7.0, centre, p.op, ha="center", va="center", color="white", fontsize=9, weight="bold")
        shape = "x".join(str(s) for s in p.output_shape[1:]) if p.output_shape else ""
        ax.text(7.85, centre + 0.12, f"{p.kind}", color=kc, fontsize=8, va="center", weight="bold")
        ax.text(7.85, centre - 0.18, f"{p.name}  {shape}", fontsize=8, va="center", color="#333333")
        for k, inp in enumerate(p.inputs):
            yy = y - k * (n - 1) / max(1, len(p.inputs) - 1) if len(p.inputs) > 1 else centre
            label = inp.label
            if len(label) > 34:
                label = "..." + label[-31:]
            rng = f" [{inp.channels[0]}:{inp.channels[1]})" if inp.channels else ""
            ax.add_patch(FancyBboxPatch((0.2, yy - 0.17), 4.6, 0.34, boxstyle="round,pad=0.03", fc="#f2f2f2",
                                        ec=_colour(k), lw=1.5))
            ax.text(0.35, yy, label + rng, fontsize=7.5, va="center", family="monospace")
            ax.add_patch(FancyArrowPatch((4.85, yy), (6.25, centre), arrowstyle="-|>", mutation_scale=9,
                                         color=_colour(k), lw=1.2))
        y -= n + 0.0
    return fig


def shares_figure(results: Mapping[str, object], labels: Tensor, class_names: Sequence[str], title: str = "") -> Figure:
    """Mean branch shares per class (rows of stacked bars), one panel per method, side by side."""
    methods = list(results)
    first = results[methods[0]]
    branches = list(first.shares)
    classes = [c for c in range(len(class_names)) if bool((labels == c).any())]
    fig = Figure(figsize=(3.2 * len(methods) + 1.2, 0.34 * len(classes) + 1.3))
    axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for ax, m in zip(axes, methods):
        res = results[m]
        left = torch.zeros(len(classes))
        for bi, b in enumerate(branches):
            share = res.shares[b].detach().float().cpu()  # results of a CUDA model are drawn from the CPU
            vals = torch.stack([share[labels.cpu() == c].mean() for c in classes])
            ax.barh(range(len(classes)), vals.numpy(), left=left.numpy(), color=_colour(bi), label=b, height=0.75)
            for ci, v in enumerate(vals.tolist()):
                if v > 0.12:
                    ax.text(float(left[ci]) + v / 2, ci, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white")
            left += vals
        ax.set_xlim(0, 1)
        ax.set_title(res.method.replace("_", " "), fontsize=9)
        ax.set_xlabel("share of |contribution|", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(range(len(classes)))
    axes[0].set_yticklabels([class_names[c] for c in classes], fontsize=8)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sample_shares_figure(results: Mapping[str, object], n: int = 16, names: Sequence[str] | None = None) -> Figure:
    """Per-sample share of each branch (first ``n`` samples), methods side by side."""
    methods = list(results)
    branches = list(results[methods[0]].shares)
    B = min(n, results[methods[0]].targets.shape[0])
    fig = Figure(figsize=(3.0 * len(methods) + 1.4, 0.26 * B + 1.2))
    axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for ax, m in zip(axes, methods):
        res = results[m]
        left = torch.zeros(B)
        for bi, b in enumerate(branches):
            v = res.shares[b][:B].detach().float().cpu()
            ax.barh(range(B), v.numpy(), left=left.numpy(), color=_colour(bi), label=b, height=0.8)
            left += v
        ax.set_xlim(0, 1)
        ax.set_title(res.method.replace("_", " "), fontsize=9)
        ax.set_xlabel("share of |contribution|", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(range(B))
    axes[0].set_yticklabels([f"#{i} {names[i]}" if names is not None else f"#{i}" for i in range(B)], fontsize=8)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _img(t: Tensor):
    t = t.detach().float().cpu()
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.permute(1, 2, 0).clamp(0, 1).numpy()


def branch_maps_figure(backgrounds: Mapping[str, Tensor | None], maps: Mapping[str, Tensor], n: int = 4,
                       row_names: Sequence[str] | None = None) -> Figure:
    """Rows: samples; per branch, its view and its Grad-CAM map (jointly normalized) overlaid.

    A branch whose background is ``None`` (no image feeds it) gets its map alone, one column."""
    import torch.nn.functional as F

    from .colormaps import colorize
    from .figures import mosaic_figure

    branches = list(maps)
    N = min(n, next(iter(maps.values())).shape[0])
    tiles = []
    for i in range(N):
        for b in branches:
            m = maps[b][i].detach().float().cpu()
            view = backgrounds.get(b)
            if view is None:
                tiles.append(colorize(m.clamp(0, 1), CAM))
                continue
            bg = torch.from_numpy(_img(view[i])).permute(2, 0, 1)
            if tuple(m.shape[-2:]) != tuple(bg.shape[-2:]):
                m = F.interpolate(m.reshape(1, 1, *m.shape[-2:]), size=bg.shape[-2:], mode="bilinear")[0, 0]
            # The map over the view in gray: over a coloured view the heat map's hue would shift.
            gray = (0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]).expand(3, -1, -1)
            tiles += [bg, (0.4 * gray + 0.6 * colorize(m.clamp(0, 1), CAM)).clamp(0, 1)]
    heads = [f"{b} {what}" for b in branches
             for what in (("view", "map") if backgrounds.get(b) is not None else ("map",))]
    ScalarMappable = require("matplotlib.cm", "render").ScalarMappable
    Normalize = require("matplotlib.colors", "render").Normalize

    scale = ScalarMappable(Normalize(0.0, 1.0), CAM)
    return mosaic_figure(tiles, None, len(heads), tile_w=1.9, tile_h=1.9, title_h=0.06, fontsize=8,
                          col_titles=heads, row_titles=[str(r) for r in row_names[:N]] if row_names is not None else None,
                          colorbar=scale, colorbar_label="relevance (jointly scaled per sample)")


def provenance_figure(fused: Tensor, ranges: Mapping[str, tuple[int, int]], per_branch: int = 8, title: str = "") -> Figure:
    """Channels of the fused tensor ``(C, h, w)`` (one sample), grouped by the branch that produced them."""
    branches = list(ranges)
    top = float(fused.detach().float().abs().max()) or 1.0  # one scale for all: an idle branch looks dark
    to_rgb = require("matplotlib.colors", "render").to_rgb

    from .colormaps import colorize
    from .figures import mosaic_figure

    lo = 0.0 if float(fused.min()) >= 0 else -top
    k = max(1, -(-48 // max(fused.shape[-2:])))  # enlarge small maps first so the frame stays thin
    blank = torch.ones(3, fused.shape[-2] * k, fused.shape[-1] * k)
    per_branch = max(1, min(per_branch, max(e - s for s, e in ranges.values())))  # no column left blank
    tiles, titles = [], []
    for bi, b in enumerate(branches):
        s, e = ranges[b]
        acts = fused[s:e].detach().float().cpu()
        order = acts.flatten(1).abs().mean(1).argsort(descending=True)[:per_branch]
        frame = torch.tensor(to_rgb(_colour(bi))).view(3, 1, 1)  # each tile framed in its branch's colour
        for j in range(per_branch):
            if j < len(order):
                c = int(order[j])
                t = F.pad(colorize(acts[c], MAGNITUDE, lo, top).repeat_interleave(k, 1).repeat_interleave(k, 2),
                          (2, 2, 2, 2))
                t[:, :2], t[:, -2:], t[:, :, :2], t[:, :, -2:] = frame, frame, frame, frame
                tiles.append(t)
                titles.append(f"ch {s + c}")
            else:
                tiles.append(F.pad(blank, (2, 2, 2, 2), value=1.0))
                titles.append("")
    ScalarMappable = require("matplotlib.cm", "render").ScalarMappable
    Normalize = require("matplotlib.colors", "render").Normalize

    return mosaic_figure(tiles, titles, per_branch, tile_w=0.95, tile_h=0.95, title_h=0.25, fontsize=8,
                          suptitle=(title + "; " if title else "") + "one colour scale for all channels",
                          colorbar=ScalarMappable(Normalize(lo, top), MAGNITUDE), colorbar_label="activation",
                          suptitle_size=9, row_titles=[f"{b}\n[{ranges[b][0]}:{ranges[b][1]})" for b in branches],
                          row_colors=[_colour(bi) for bi in range(len(branches))])


def cka_figure(result, title: str = "linear CKA (similarity, not contribution)") -> Figure:
    """Heatmap of the CKA matrix between branch outputs and the fused features."""
    mat = result.matrix.detach().float().cpu().numpy()
    k = len(result.names)
    fig = Figure(figsize=(1.0 * k + 1.6, 0.9 * k + 0.9))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(mat, cmap=MAGNITUDE, vmin=0, vmax=1)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(result.names, fontsize=8, rotation=30, ha="right")
    ax.set_yticklabels(result.names, fontsize=8)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if mat[i, j] > 0.5 else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, label="linear CKA")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def share_curves_figure(history, groups: Mapping[str, Tensor] | None = None, title: str = "") -> Figure:
    """Mean share of each branch over training steps; one panel per group of probe samples (boolean masks)."""
    groups = dict(groups) if groups else {"all probe samples": None}
    fig = Figure(figsize=(3.0 * len(groups) + 0.6, 2.6))
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    for ax, (g, mask) in zip(axes, groups.items()):
        for bi, (b, v) in enumerate(history.mean_shares(mask).items()):
            ax.plot(history.steps, v.detach().float().cpu().numpy(), color=_colour(bi), label=b, lw=1.8)
        ax.set_ylim(0, 1)
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean share", fontsize=8)
    axes[-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
