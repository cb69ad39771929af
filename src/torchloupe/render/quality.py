"""Figures of explanation quality: deletion / insertion curves and randomization curves per method."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from ..evaluate import CurveResult, RandomizationResult

_STYLE = {"linewidth": 1.8}


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def curves_figure(deletion: Mapping[str, CurveResult], insertion: Mapping[str, CurveResult]) -> Figure:
    """Two panels: mean deletion and insertion curves per method, AUC in the legend."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    names = list(deletion)
    for ax, results, title, better in (
        (axes[0], deletion, "Deletion: most salient pixels removed first", "lower AUC is better"),
        (axes[1], insertion, "Insertion: most salient pixels revealed first", "higher AUC is better"),
    ):
        for color, name in zip(_colors(len(names)), names):
            r = results[name]
            ax.plot(r.fractions.numpy(), r.curves.mean(0).cpu().numpy(), color=color,
                    label=f"{name} ({float(r.auc.mean()):.3f})", linestyle="--" if name.startswith("Random") else "-", **_STYLE)
        ax.set_title(f"{title}\n({better})", fontsize=10)
        ax.set_xlabel("fraction of pixels changed")
        ax.set_ylabel("probability of the target class")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="method (mean AUC)",
                  title_fontsize=7, frameon=False)
    return fig


def randomization_figure(results: Mapping[str, RandomizationResult]) -> Figure:
    """Similarity to the trained model's explanation as layers are re-initialised from the top."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots()
    names = list(results)
    labels: tuple[str, ...] = ()
    for color, name in zip(_colors(len(names)), names):
        r = results[name]
        labels = r.layers
        y = [1.0] + r.similarity.mean(0).tolist()
        ax.plot(range(len(y)), y, marker="o", markersize=3, color=color, label=name, **_STYLE)
    if labels:
        ax.set_xticks(range(len(labels) + 1))
        ax.set_xticklabels(["trained"] + [f"+ {lab}" for lab in labels], rotation=35, ha="right", fontsize=7)
        ax.axhline(next(iter(results.values())).threshold, color="0.4", linestyle=":", linewidth=1)
    ax.set_ylabel("rank correlation\nwith the trained map")
    ax.set_title("Sanity check: layers re-initialised from the output down (cumulative).\n"
                 "A method that depends on the weights falls below the dotted line.", fontsize=10)
    ax.set_ylim(-0.35, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig
