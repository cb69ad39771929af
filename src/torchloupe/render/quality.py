"""Figures of explanation quality: deletion / insertion curves and randomization curves per method."""

from __future__ import annotations

from collections.abc import Mapping

from ..cam import METHODS, title_of
from .plain import figure_class
from ..errors import require
from ..evaluate.perturbation import CurveResult
from ..evaluate.randomization import RandomizationResult

Figure = figure_class()  # strings drawn without mathtext

_STYLE = {"linewidth": 1.8}

# One colour per method in every quality figure (the curves and the sanity check agree), in the
# order the report lists them (the CAM registry's, then the saliency methods); other names take
# the remaining colours of tab20 in order of appearance.
_SALIENCY = ("Gradient", "Guided backprop", "Deconvnet")
_RANDOM_COLOR = (0.45, 0.45, 0.45, 1.0)


def _colors(names: list[str]) -> list:
    colormaps = require("matplotlib", "render").colormaps

    # tab10 without its gray (random maps are gray), then tab20's light shades
    palette = [colormaps["tab10"](i) for i in range(10) if i != 7] + [colormaps["tab20"](i) for i in range(1, 20, 2)]
    order = [title_of(key) for key in METHODS] + list(_SALIENCY)
    known = {name: palette[i] for i, name in enumerate(order)}
    spare = iter(c for c in palette[len(order):] + palette * 4)
    return [_RANDOM_COLOR if n.startswith("Random") else known[n] if n in known else next(spare) for n in names]


def _same_as(curves: dict[str, list[float]], tol: float = 2e-3) -> dict[str, str]:
    """``{name: earlier name}`` for methods whose plotted line is within ``tol`` of an earlier one's
    everywhere (less than a line's width: the lines coincide), so the legend says which line hides
    it. On a model ending in global average pooling and a linear layer, CAM, Grad-CAM and others
    give the same map; their deletion curves then differ only by how float ties are ordered."""
    out: dict[str, str] = {}
    names = list(curves)
    for j, name in enumerate(names):
        for earlier in names[:j]:
            a, b = curves[name], curves[earlier]
            if earlier not in out and len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= tol:
                out[name] = earlier
                break
    return out


def curves_figure(deletion: Mapping[str, CurveResult], insertion: Mapping[str, CurveResult]) -> Figure:
    """Two panels: mean deletion and insertion curves per method, AUC in the legend."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    names = list(deletion)
    for ax, results, title, better in (
        (axes[0], deletion, "Deletion: most salient pixels removed first", "lower AUC is better"),
        (axes[1], insertion, "Insertion: most salient pixels revealed first", "higher AUC is better"),
    ):
        means = {name: results[name].curves.mean(0).cpu().tolist() for name in names}
        same = _same_as(means)
        for color, name in zip(_colors(names), names):
            r = results[name]
            hidden = f", = {same[name]}" if name in same else ""
            ax.plot(r.fractions.numpy(), means[name], color=color, label=f"{name} ({float(r.auc.mean()):.3f}{hidden})",
                    linestyle="--" if name.startswith("Random") else ":" if hidden else "-", **_STYLE)
        ax.set_title(f"{title}\n({better})", fontsize=10)
        ax.set_xlabel("fraction of pixels changed")
        ax.set_ylabel("probability of the target class")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), title="method (mean AUC)",
                  title_fontsize=8, frameon=False)
    return fig


def randomization_figure(results: Mapping[str, RandomizationResult]) -> Figure:
    """Similarity to the trained model's explanation as layers are re-initialised from the top."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots()
    names = list(results)
    labels: tuple[str, ...] = ()
    ys = {name: [1.0] + results[name].similarity.mean(0).tolist() for name in names}
    same = _same_as(ys)
    for j, (color, name) in enumerate(zip(_colors(names), names)):
        labels = results[name].layers
        y = ys[name]
        ax.plot(range(len(y)), y, marker="o", markersize=3, color=color, label=name + (f" (= {same[name]})" if name in same else ""),
                linestyle=":" if name in same else "-", **_STYLE)
        # each image's final value, just right of the last step, spread a little per method: the verdict
        # (every image below the line) can be read off the figure, not only the mean
        final = results[name].similarity[:, -1].tolist()
        ax.plot([len(y) - 1 + 0.12 + 0.5 * j / max(1, len(names))] * len(final), final, linestyle="none", marker="D",
                markersize=3.5, markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.0)
    if labels:
        ax.set_xlim(-0.3, len(labels) + 0.75)
        ax.set_xticks(range(len(labels) + 1))
        ax.set_xticklabels(["trained"] + [f"+ {lab}" for lab in labels], rotation=35, ha="right", fontsize=8)
        ax.axhline(next(iter(results.values())).threshold, color="0.4", linestyle=":", linewidth=1)
    ax.set_ylabel("rank correlation\nwith the trained map")
    ax.set_title("Sanity check: layers re-initialised from the output down (cumulative); lines: the mean over images,\n"
                 "open diamonds: each image's final value. A method passes when every diamond is below the dotted line.",
                 fontsize=10)
    low = min([min(y) for y in ys.values()] + [float(r.similarity.min()) for r in results.values()], default=0.0)
    ax.set_ylim(min(-0.35, low - 0.08), 1.05)  # every line stays inside the axes
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig
