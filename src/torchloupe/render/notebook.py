"""How results show themselves in a notebook: each result's default figure as PNG, and as HTML (the
figure inline, with a one-line summary).

The result classes of the compute core have ``_repr_html_`` / ``_repr_png_`` methods that import this
module when called (``import torchloupe`` loads neither matplotlib nor Jinja2). :func:`figure_of`
picks the default figure per result type; :func:`png_of` and :func:`html_of` encode it. Jupyter asks
for the HTML and then the PNG of the same object: the PNG of the last object drawn is kept, so the
figure is drawn once per display.

Figures are capped so a display stays small and fast: at most :data:`MAX_SAMPLES` samples of a batch
(16 for per-sample rows), 16 channels of a feature map, 8 channels of exemplars, and drawn at
:data:`DPI`; a PNG over :data:`MAX_BYTES` is drawn again at a lower resolution.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import weakref
from collections.abc import Callable
from typing import Any

from torch import Tensor


from ..errors import require
from .png import figure_to_png

__all__ = ["figure_of", "png_of", "html_of", "summary_of"]

MAX_SAMPLES = 8
MAX_LAYERS = 6  # attention: layers, heads and tokens drawn
MAX_HEADS = 8
MAX_TOKENS = 32
DPI = 100
MAX_BYTES = 300_000

# (weak reference to the object, its PNG): the last picture drawn, reused by the next format request.
_last: tuple[Any, bytes] | None = None


def _new(w: float, h: float):
    Figure = require("matplotlib.figure", "render").Figure
    return Figure(figsize=(w, h), layout="constrained")


def _shape(t: Tensor | None) -> str:
    return "none" if t is None else "×".join(str(s) for s in t.shape)


def _first(t: Tensor, n: int = MAX_SAMPLES) -> Tensor:
    return t[:n].detach().float().cpu()


# --- default figures, one per result type -----------------------------------------------------------
def _cam(r) -> Any:
    from .cam import plot_cam

    maps = r.maps
    if maps.dim() == 3:
        return plot_cam(dataclasses.replace(r, maps=_first(maps), targets=r.targets[:MAX_SAMPLES]), size=2.0)
    fig = _new(7.5, 0.5 + 0.35 * min(MAX_SAMPLES, maps.shape[0]))  # (N, T): one strip per sample
    ax = fig.subplots()
    im = ax.imshow(_first(maps).reshape(min(MAX_SAMPLES, maps.shape[0]), -1).numpy(), cmap="jet", vmin=0, vmax=1,
                   aspect="auto", interpolation="nearest")
    ax.set_xlabel("position")
    ax.set_ylabel("sample")
    ax.set_title(f"{r.method} on {r.layer}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return fig


def _attention(r) -> Any | None:
    from .attention import maps_figure

    if not any(isinstance(v, Tensor) and v.numel() for v in r.values()):
        return None
    return maps_figure(r, tokens=getattr(r, "tokens", None), max_layers=MAX_LAYERS, max_heads=MAX_HEADS,
                       max_tokens=MAX_TOKENS)


def _features(r) -> Any:
    from .figures import feature_map_figure

    return feature_map_figure(r, sample=0, max_channels=16)


def _exemplars(r) -> Any | None:
    from .synthesis import exemplars_figure

    if r.samples is None:  # no crops (not `r.crops`: that would cut every channel's)
        return None  # vector layers: the table in the HTML says it all
    return exemplars_figure(r, rows=min(8, len(r.channels)), k=min(6, r.k))


def _synthesis(r) -> Any:
    from .synthesis import units_figure

    n = r.images.shape[0]
    if n > MAX_SAMPLES:
        cut = {f.name: getattr(r, f.name)[:MAX_SAMPLES] for f in dataclasses.fields(r)
               if isinstance(getattr(r, f.name), Tensor) and getattr(r, f.name).dim() and getattr(r, f.name).shape[0] == n}
        cut["objective_curve"] = r.objective_curve[:, :MAX_SAMPLES]
        r = dataclasses.replace(r, names=r.names[:MAX_SAMPLES], **cut)
    return units_figure(r)


def _recurrent(r) -> Any:
    from .recurrent import states_figure

    return states_figure(r.as_trace() if hasattr(r, "as_trace") else r)


def _fusion(r) -> Any:
    from .fusion import sample_shares_figure

    return sample_shares_figure({r.method: r}, n=16)


def _branch_maps(r) -> Any:
    from .fusion import branch_maps_figure

    return branch_maps_figure({b: None for b in r.maps}, r.maps, n=4)


def _cka(r) -> Any:
    from .fusion import cka_figure

    return cka_figure(r)


def _share_history(r) -> Any | None:
    from .fusion import share_curves_figure

    return share_curves_figure(r) if r.steps else None


def _curve(r) -> Any:
    fig = _new(4.8, 3.2)
    ax = fig.subplots()
    x = r.fractions.detach().float().cpu().numpy()
    curves = r.curves.detach().float().cpu()
    for c in curves[:32]:
        ax.plot(x, c.numpy(), color="0.75", linewidth=0.8)
    ax.plot(x, curves.mean(0).numpy(), color="C0", linewidth=2, label=f"mean of {curves.shape[0]} (AUC {float(r.auc.mean()):.3f})")
    better = "lower" if r.kind == "deletion" else "higher"
    ax.set_title(f"{r.kind} onto {r.substrate} ({better} AUC is better)", fontsize=9)
    ax.set_xlabel("fraction of pixels changed")
    ax.set_ylabel("target probability")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _randomization(r) -> Any:
    from .quality import randomization_figure

    return randomization_figure({"explanation": r})


def _road(r) -> Any:
    fig = _new(4.8, 3.2)
    ax = fig.subplots()
    p = list(r.percentages)
    scores = r.scores.detach().float().cpu()
    for s in scores[:32]:
        ax.plot(p, s.numpy(), color="0.75", linewidth=0.8, marker=".")
    ax.plot(p, scores.mean(0).numpy(), color="C0", linewidth=2, marker="o", label=f"mean of {scores.shape[0]}")
    ax.set_title(f"ROAD, {r.order}: target probability as pixels are removed", fontsize=9)
    ax.set_xlabel("% of pixels removed")
    ax.set_ylabel("target probability")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _weights(r) -> Any | None:
    from .weight_learning import plot_norms

    return plot_norms(r) if len(r.steps) else None


_FIGURES: dict[str, Callable[[Any], Any]] = {
    "CAMResult": _cam,
    "AttentionMaps": _attention,
    "FeatureMaps": _features,
    "ExemplarResult": _exemplars,
    "SynthesisResult": _synthesis,
    "RecurrentTrace": _recurrent,
    "CellTrace": _recurrent,
    "FusionResult": _fusion,
    "BranchMaps": _branch_maps,
    "CKAResult": _cka,
    "ShareHistory": _share_history,
    "CurveResult": _curve,
    "RandomizationResult": _randomization,
    "ROADResult": _road,
    "WeightHistory": _weights,
}


def figure_of(result: Any) -> Any | None:
    """The default matplotlib ``Figure`` of a torchloupe result (``None`` when it has nothing to draw:
    an empty history, exemplars of a layer without crops)."""
    draw = _FIGURES.get(type(result).__name__)
    return None if draw is None else draw(result)


# --- summaries ---------------------------------------------------------------------------------------
def _targets(t: Tensor | None, n: int = 8) -> str:
    if t is None:
        return ""
    vals = [int(v) for v in t.flatten()[:n].tolist()]
    return ", ".join(map(str, vals)) + (" ..." if t.numel() > n else "")


def _attention_summary(r) -> str:
    from ..attention import as_heads

    if not r:
        return "No attention captured (capture's warning says what it looked for)"
    reads = [k for k, v in r.items() if v.dim() <= 2 or (v.dim() == 4 and v.shape[1] == 1 and v.shape[2] == 1)]
    maps = [as_heads(v) for k, v in r.items() if k not in reads]
    parts = []
    if maps:
        heads = sorted({m.shape[1] for m in maps})
        shapes = {tuple(m.shape[-2:]) for m in maps}
        head_text = f"{heads[0]} head(s)" if len(heads) == 1 else f"{heads[0]}–{heads[-1]} heads"
        size = (f"{next(iter(shapes))[0]} queries × {next(iter(shapes))[1]} keys" if len(shapes) == 1
                else "queries × keys varying by layer")
        parts.append(f"{len(maps)} attention layer(s) × {head_text}, {size}, batch {maps[0].shape[0]}")
    if reads:
        parts.append(f"{len(reads)} memory read(s) ({', '.join(reads[:3])}{' ...' if len(reads) > 3 else ''})")
    shown = "" if len(r) <= MAX_LAYERS else f" (the first {MAX_LAYERS} layers)"
    return f"Attention: {'; '.join(parts)}; sample 0 drawn{shown}"


def summary_of(result: Any) -> str:
    """One plain line saying what the result holds (escaped when written into HTML)."""
    name = type(result).__name__
    r = result
    if name == "CAMResult":
        return f"{r.method} on {r.layer}: {r.maps.shape[0]} map(s) {_shape(r.maps[0])}, targets {_targets(r.targets)}"
    if name == "AttentionMaps":
        return _attention_summary(r)
    if name == "FeatureMaps":
        return (f"FeatureMaps of {r.layer} ({r.kind}): output {tuple(r.shape)}, {r.maps.shape[1]} channel(s) of "
                f"{r.maps.shape[0]} sample(s); sample 0's most active channels")
    if name == "ExemplarResult":
        return (f"Exemplars of {r.layer}: top {r.k} of {r.seen} samples for {len(r.channels)} channel(s), "
                f"{'lowest' if r.negative else 'highest'} {r.reduce}")
    if name == "SynthesisResult":
        failed = int(r.failed.sum())
        return (f"{r.images.shape[0]} synthesized image(s), {r.param} parameterization, {r.steps} steps; "
                f"{failed} not above the random baseline")
    if name in ("RecurrentTrace", "CellTrace"):
        gates = f"; gates {', '.join(r.gates)}" if r.gates else ""
        if name == "CellTrace":  # h: (B, calls, H)
            b, t, h = r.h.shape
            return f"{r.kind} cell: {b} sequence(s), {t} calls, {h} units{gates}; sample 0 drawn"
        layers, dirs, b, t, h = r.h.shape
        return (f"{r.kind}: {layers} layer(s) × {dirs} direction(s), {b} sequence(s) of {t} steps, {h} units{gates}; "
                f"sample 0, last layer drawn")
    if name == "FusionResult":
        means = ", ".join(f"{b} {float(s.mean()):.2f}" for b, s in r.shares.items())
        return f"Branch contributions ({r.method}, baseline {r.baseline}), mean shares: {means}; {r.targets.numel()} sample(s)"
    if name == "BranchMaps":
        return f"Grad-CAM per branch ({', '.join(r.maps)}), {r.targets.numel()} sample(s)"
    if name == "CKAResult":
        return f"Linear CKA between {', '.join(r.names)} at {r.point}"
    if name == "ShareHistory":
        return f"Branch shares at {len(r.steps)} recorded step(s) ({r.method or 'no method yet'})"
    if name == "CurveResult":
        return (f"{r.kind} curves of {r.curves.shape[0]} sample(s), {r.curves.shape[1] - 1} steps onto {r.substrate}: "
                f"mean AUC {float(r.auc.mean()):.3f}")
    if name == "RandomizationResult":
        passed = int(r.passed.sum())
        return (f"Randomization check ({r.mode}, {r.measure}): {passed} of {r.passed.numel()} sample(s) below "
                f"{r.threshold:g} after {len(r.layers)} step(s)")
    if name == "ROADResult":
        return f"ROAD ({r.order}) of {r.scores.shape[0]} sample(s) at {len(r.percentages)} removal percentages"
    if name == "WeightHistory":
        return f"Weight history: {len(r.names)} tensor(s), {len(r.steps)} recorded step(s)"
    return name


# --- encoding ----------------------------------------------------------------------------------------
def png_of(result: Any) -> bytes | None:
    """PNG bytes of the result's default figure (``None`` when there is none). Kept for the next call
    on the same object, so Jupyter's HTML and PNG of one display draw once."""
    global _last
    if _last is not None and _last[0]() is result:
        return _last[1]
    fig = figure_of(result)
    if fig is None:
        return None
    data = figure_to_png(fig, dpi=DPI)
    dpi = DPI
    while len(data) > MAX_BYTES and dpi > 30:
        dpi = int(dpi * 0.7)
        data = figure_to_png(fig, dpi=dpi)
    try:
        _last = (weakref.ref(result), data)
    except TypeError:  # an object without weak references: not kept
        _last = None
    return data


def _exemplar_table(r) -> str:
    rows = []
    for c in range(min(8, len(r.channels))):
        cells = "".join(
            f"<td>#{int(i)}: {float(v):.3g}</td>" if int(i) >= 0 else "<td>—</td>"
            for i, v in zip(r.indices[c, :6].tolist(), r.values[c, :6].tolist()))
        rows.append(f"<tr><th>{html.escape(f'{r.layer}:{r.channels[c]}')}</th>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def html_of(result: Any) -> str:
    """The result's default figure as an inline PNG ``<img>`` under a one-line summary (all escaped)."""
    summary = html.escape(summary_of(result))
    data = png_of(result)
    parts = [f'<div class="torchloupe-result"><div style="font:13px sans-serif;margin:2px 0 4px">{summary}</div>']
    if data is not None:
        b64 = base64.b64encode(data).decode("ascii")
        parts.append(f'<img src="data:image/png;base64,{b64}" alt="{summary}" style="max-width:100%;height:auto">')
    elif type(result).__name__ == "ExemplarResult":
        parts.append(_exemplar_table(result))
    else:
        parts.append('<div style="font:12px sans-serif;color:#555">nothing recorded to draw yet</div>')
    parts.append("</div>")
    return "".join(parts)
