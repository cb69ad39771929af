"""Report section "Attention": per layer and head, token to token, rollout, memory reads.

Attention and memory reads are shown together: every attention :func:`torchloupe.attention.capture`
finds (a read, one query per sample over memory slots, as bars; the rest per layer and head).
Computed as :class:`AttentionData` (the reads, the maps of the samples shown, each head's focus, the
weight on the token k places back, the rollout), drawn by its ``render()``; options:
:class:`AttentionOptions`. Tokens are ``subject.tokens`` (per sample, a list of strings, or one list).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...errors import UsageError
from ..base import Figure, Finding, Html, NotApplicable, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int


@dataclass(frozen=True)
class AttentionOptions(SectionOptions):
    """``memory``: the layer spec of a memory module (every softmax inside it is shown as it is, also
    one that multiplies nothing); ``slot``: ``(B,)`` the true slot of each memory read; ``attend_back``:
    an int k, the table shows each head's mean weight on the token k places back.

    Drawing limits: ``grid_layers``: up to this many layers are drawn in one grid (layers × heads),
    more one layer at a time with a layer picker; ``max_heads`` and ``max_tokens``: the heads and the
    first queries and keys drawn per map; ``read_samples``: the samples whose memory reads are drawn
    as bars; ``patch_images``: the images the rollout is laid over (a ViT); ``view_tokens`` and
    ``view_values``: the token-to-token view's first tokens and its budget of values (heads are
    averaged, then samples left out, above it)."""

    memory: str | None = None
    slot: Any = None
    attend_back: int | None = None
    grid_layers: int = 2
    max_heads: int = 12
    max_tokens: int = 48
    read_samples: int = 8
    patch_images: int = 4
    view_tokens: int = 64
    view_values: int = 250_000

    def check(self) -> None:
        if self.memory is not None and not isinstance(self.memory, str):
            raise UsageError(f"attention option memory={self.memory!r}: expected a module path such as 'memory'")
        if self.attend_back is not None:
            check_int("attention", "attend_back", self.attend_back)
        for name in ("grid_layers", "max_heads", "max_tokens", "read_samples", "patch_images", "view_tokens",
                     "view_values"):
            check_int("attention", name, getattr(self, name))
        if self.slot is not None:
            try:
                t = torch.as_tensor(self.slot)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise UsageError(f"attention option slot: expected (B,) slot indices, got {type(self.slot).__name__}") from exc
            if t.dim() != 1 or t.is_floating_point() or t.is_complex() or (t.numel() and int(t.min()) < 0):
                raise UsageError(f"attention option slot: expected (B,) slot indices >= 0, got a {t.dtype} tensor "
                                 f"of shape {tuple(t.shape)}")


@dataclass
class AttentionData(SectionData):
    """What the attention section computed: ``reads`` ``{module: (B, slots)}`` memory read weights
    with ``truth`` ``{module: (B,)}`` the true slots where ``slot`` fits that read; ``maps``
    ``{layer: (b, heads, T, S)}`` of the samples shown (sample 0, its windows when they are folded
    into the batch; with tokens, the samples the token view offers); ``batch``: the inputs' batch size
    and ``folded`` whether windows are folded into it; ``tokens``: per sample (or one list) cut to
    ``T``; over all samples: ``focus`` ``{layer: (heads,)}`` the mean largest weight of a query (1
    is one key, 1/S spread evenly), ``back_weight`` ``{layer: (heads,)}`` the mean weight on the
    token ``back`` places back, ``rollout`` ``(B, T, T)`` (Abnar & Zuidema 2020); ``images`` the
    first display images (rollout over patches); ``options`` the drawing limits."""

    section: ClassVar[str] = "attention"
    reads: dict[str, Tensor] = field(default_factory=dict)
    truth: dict[str, Tensor] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)
    batch: int = 0
    folded: bool = False
    tokens: list | None = None
    focus: dict[str, Tensor] = field(default_factory=dict)
    back: int | None = None
    back_weight: dict[str, Tensor] = field(default_factory=dict)
    rollout: Tensor | None = None
    images: Tensor | None = None
    options: AttentionOptions = field(default_factory=AttentionOptions)

    # -- what the figures read ------------------------------------------------------------------------
    def _first_tokens(self) -> list[str] | None:
        if self.tokens is None:
            return None
        return list(self.tokens[0]) if self.tokens and isinstance(self.tokens[0], list) else list(self.tokens)

    def _self_attn(self) -> dict[str, Tensor]:
        if not self.maps:
            return {}
        T = next(iter(self.maps.values())).shape[-2]
        return {k: v for k, v in self.maps.items() if v.shape[-1] == v.shape[-2] and v.shape[-1] == T}

    def render(self) -> list:
        from ...render import attention as draw

        o = self.options
        blocks: list = []
        for name, w in self.reads.items():
            t = self.truth.get(name)
            fig = Figure(draw.read_weights_figure(w, t, n=o.read_samples), caption=f"read weights of {name}")
            blocks.append(fig)
            blocks.append(Finding(read_finding(name, w, t), fig))
        if not self.maps:
            return blocks
        first = next(iter(self.maps.values()))
        _, H, T, S = first.shape
        tokens = self._first_tokens()
        heads = sorted({v.shape[1] for v in self.maps.values()})
        shapes = {tuple(v.shape[-2:]) for v in self.maps.values()}
        head_text = f"{H} heads" if len(heads) == 1 else f"{heads[0]}–{heads[-1]} heads"
        size_text = f"{T} queries × {S} keys" if len(shapes) == 1 else "queries × keys varying by layer"
        blocks.append(Text(f"{len(self.maps)} attention layers × {head_text}, {size_text}; captured in eval mode (no dropout)."))
        windows = " (windows folded into the batch: the first window of sample 0)" if self.folded else ""
        if len(self.maps) <= o.grid_layers:
            caption = "attention of sample 0 per layer (rows) and head (columns)" + windows
            heads_fig = Figure(draw.heads_grid(self.maps, tokens=tokens, max_tokens=o.max_tokens, max_heads=o.max_heads),
                               caption=caption)
            blocks.append(heads_fig)
        else:  # one layer at a time, its heads large enough for token names, one scale across layers
            from ..blocks import data_uri

            images = []
            for name, fig in draw.layer_figures(self.maps, tokens=tokens, max_tokens=o.max_tokens, max_heads=o.max_heads):
                a = self.maps[name]
                alt = (f"{a.shape[1]} heat maps, one per head of {name}: rows are the {a.shape[2]} query tokens, "
                       f"columns the {a.shape[3]} keys, brighter is more attention")
                png, w, h = draw.palette_png(fig)
                images.append((name, data_uri(png, "image/png"), alt, w, h))
            blocks.append(Text(f"Attention of sample 0, one layer at a time (choose the layer above the figure); every "
                               f"head of the layer side by side, all {len(self.maps)} layers on one colour scale{windows}."))
            heads_fig = Html(draw.layer_picker_html(images))
            blocks.append(heads_fig)
        focus = focus_finding(self.focus, {k: v.shape[-1] for k, v in self.maps.items()})
        if focus:
            blocks.append(Finding(focus, heads_fig))
        self_attn = self._self_attn()
        if self.tokens is not None and self_attn:
            blocks.append(Html(draw.token_view_html(self_attn, self.tokens, max_tokens=o.view_tokens,
                                                    max_values=o.view_values, assets=False,
                                                    total=None if self.folded else self.batch)))
        if self.back_weight:
            rows = [[name] + [f"{float(m):.3f}" for m in mass] for name, mass in self.back_weight.items()]
            best = [(r, 1 + max(range(H), key=lambda h: float(rows[r][1 + h]))) for r in range(len(rows))]
            table = Table(["layer"] + [f"head {h}" for h in range(H)], rows,
                          caption=f"mean weight on the token {self.back} places back (the correct attention)",
                          highlight=best)
            blocks.append(table)
            blocks.append(Finding(back_finding(self.back_weight, self.back, T, self.batch), table))
        if self.rollout is not None:
            roll_fig = Figure(draw.matrix_figure(self.rollout[0], tokens, title="attention rollout, sample 0 (Abnar & Zuidema 2020)",
                                                 max_tokens=o.max_tokens),
                              caption="how much each output token draws on each input token through all layers")
            blocks.append(roll_fig)
            blocks.append(Finding(rollout_finding(self.rollout, len(self.maps), self.tokens), roll_fig))
            if self.images is not None and draw.patch_grid(T) is not None:
                blocks.append(Figure(draw.patch_overlay(self.images, self.rollout[: self.images.shape[0]],
                                                        n=o.patch_images), caption="rollout over the image patches"))
        return blocks


# -- findings: one sentence each, from the numbers --------------------------------------------------
def read_finding(name: str, w: Tensor, truth: Tensor | None) -> str:
    """How often the read weight of ``name`` peaks on the true slot; without the true slots, how much
    of the weight its peak slot takes (against an even spread)."""
    if truth is not None:
        hit = float((w.argmax(-1).cpu() == truth.cpu()).float().mean())
        return f"The read weight of {name} peaks on the slot holding the answer in {hit:.1%} of {w.shape[0]} samples."
    peak, S = float(w.float().amax(-1).mean()), w.shape[-1]
    how = "reads mostly one slot" if peak >= 0.5 else "spreads its read over several slots"
    return (f"{name} {how}: its peak slot takes {peak:.2f} of the read weight on average over {w.shape[0]} samples "
            f"(spread evenly over {S} slots it would be {1 / S:.2f}; give the true slots as option slot to check "
            f"that the peak is the right one).")


def focus_finding(focus: dict[str, Tensor], keys: dict[str, int]) -> str:
    """The most and the least focused heads: the mean largest weight of a query (``focus``), against
    what a query spread evenly over its ``keys[layer]`` keys would give (under 1.5 times that: no head
    focuses)."""
    heads = [(float(v), name, h) for name, f in focus.items() for h, v in enumerate(f.tolist())]
    if not heads:
        return ""
    top = max(heads)
    even = f"spread evenly over {keys[top[1]]} keys it would be {1 / keys[top[1]]:.2f}"
    if top[0] < 1.5 / keys[top[1]]:
        head = f"head {top[2]} of {top[1]}" if len(heads) > 1 else f"the one head of {top[1]}"
        return (f"No head focuses: the most focused, {head}, puts only {top[0]:.2f} of a query's weight on a single "
                f"key on average ({even}).")
    if len(heads) == 1:
        return f"The one head of {top[1]} puts {top[0]:.2f} of each query's weight on a single key on average ({even})."
    low = min(heads)
    return (f"The most focused head is head {top[2]} of {top[1]}: its queries put {top[0]:.2f} of their weight on a "
            f"single key on average ({even}); the most spread out is head {low[2]} of {low[1]} at {low[0]:.2f}.")


def back_finding(back_weight: dict[str, Tensor], back: int, T: int, batch: int) -> str:
    """The head that puts the most weight on the token ``back`` places back (half its weight or more:
    it attends there)."""
    v, name, h = max((float(m), name, h) for name, mass in back_weight.items() for h, m in enumerate(mass.tolist()))
    where = f"over {batch} samples × {T - back} positions (spread evenly over {T} tokens it would be {1 / T:.2f})"
    if v >= 0.5:
        return f"Head {h} of {name} attends to the token {back} places back: {v:.2f} of its weight on average {where}."
    return (f"No head attends mainly to the token {back} places back: the most, head {h} of {name}, puts {v:.2f} of "
            f"its weight there on average {where}.")


def _token_name(tokens: list | None, j: int) -> str:
    """``'tok'`` for position ``j`` when every sample has the same token there, else ``position j``."""
    if tokens:
        seqs = tokens if isinstance(tokens[0], list) else [tokens]
        names = {seq[j] for seq in seqs if j < len(seq)}
        if len(names) == 1:
            return f"token {j} ({next(iter(names))!r})"
    return f"token {j}"


def rollout_finding(rollout: Tensor, layers: int, tokens: list | None) -> str:
    """The input token every token draws on most through all layers (the mean column of the rollout;
    under 1.5 times an even share, none stands out)."""
    B, T, _ = rollout.shape
    col = rollout.float().mean(dim=(0, 1))  # (T,): mean over samples and query tokens
    j = int(col.argmax())
    v, even = float(col[j]), f"spread evenly it would be {1 / T:.2f}"
    through = f"all {layers} layers" if layers > 1 else "its one layer"
    if v < 1.5 / T:
        return (f"Through {through} (attention rollout) no input token stands out: the most drawn on, "
                f"{_token_name(tokens, j)}, gets {v:.2f} of each token's rollout on average over {B} samples ({even}).")
    return (f"Through {through} (attention rollout), {_token_name(tokens, j)} is drawn on most: on average "
            f"{v:.2f} of each token's rollout over {B} samples ends on it ({even}).")


# -- build --------------------------------------------------------------------------------------------
def _call_capture(subject: Subject, **kw: Any) -> dict[str, Tensor]:
    from ... import attention

    x = subject.inputs
    if isinstance(x, dict):
        return attention.capture(subject.model, **x, **kw)
    if isinstance(x, (tuple, list)):
        return attention.capture(subject.model, *x, **kw)
    return attention.capture(subject.model, x, **kw)


def _tokens(subject: Subject, T: int) -> list | None:
    """The tokens cut to ``T``: a list of strings per sample (``subject.tokens`` per sample), or one list."""
    toks = subject.tokens
    if toks is None:
        return None
    if toks and isinstance(toks[0], (list, tuple)):
        return [[str(t) for t in seq][:T] for seq in toks]
    return [str(t) for t in toks][:T]


def _view_samples(self_attn: dict[str, Tensor], tokens: list, B: int, options: AttentionOptions) -> int:
    """How many samples the token view offers (its rule: per-head matrices while they fit in
    ``view_values``, else the heads' mean; then as many samples as the budget allows)."""
    per_sample = bool(tokens) and isinstance(tokens[0], list)
    full = next(iter(self_attn.values())).shape[-1]
    chosen = [b for b in range(B) if not per_sample or b < len(tokens)]
    lengths = [len(tokens[b]) for b in chosen] if per_sample else [len(tokens)]
    T = min(full, options.view_tokens, *lengths) if lengths else min(full, options.view_tokens)
    heads = sum(a.shape[1] for a in self_attn.values())
    cost = (heads if heads * T * T <= options.view_values else len(self_attn)) * T * T
    return max(1, min(len(chosen), options.view_values // max(cost, 1)))


def _first_samples(v: Tensor, n: int, batch: int) -> Tensor:
    """The rows of the first ``n`` samples of ``v``, its windows too when they are folded into the batch."""
    fold = v.shape[0] // batch if batch and v.shape[0] % batch == 0 else 1
    return v[: n * fold]


@register(
    "attention",
    "Attention",
    "Where each layer and head looks, token to token, and how attention composes through the layers.",
    cost=2,
    options=AttentionOptions,
)
def build(subject: Subject, options: AttentionOptions) -> AttentionData | NotApplicable:
    from ... import attention
    from ...inputs import Inputs

    memory = options.memory
    with warnings.catch_warnings():  # nothing found is said in the section
        warnings.filterwarnings("ignore", message="tl.attention.capture found no attention")
        found = _call_capture(subject, softmax=memory is not None, within=memory)
    # memory reads (one query per sample: a softmax over slots) and attention (queries x keys), together
    reads: dict[str, Tensor] = {}
    maps: dict[str, Tensor] = {}
    for name, v in found.items():
        if v.dim() == 2:
            reads[name] = v
        elif v.dim() == 4 and v.shape[1] == 1 and v.shape[2] == 1:
            reads[name] = v[:, 0, 0]
        elif v.dim() >= 3:
            maps[name] = attention.as_heads(v)
    truth: dict[str, Tensor] = {}
    if options.slot is not None:
        t = torch.as_tensor(options.slot).cpu()
        for name, w in reads.items():
            if t.shape == (w.shape[0],) and int(t.max()) < w.shape[1]:  # else the truth is about another read
                truth[name] = t
    reads = {k: v.detach().float().cpu() for k, v in reads.items()}
    if not maps and not reads:
        return NotApplicable(f"{type(subject.model).__name__} computed no attention (no MultiheadAttention, SDPA or "
                             "transformers attention ran, and no softmax result was multiplied by a tensor)")
    data = AttentionData(reads=reads, truth=truth, options=options)
    if not maps:
        return data
    n = Inputs.of(subject.inputs).batch_size  # the capture above ran on these inputs
    first = next(iter(maps.values()))
    T = first.shape[-2]
    tokens = _tokens(subject, T)
    self_attn = {k: v for k, v in maps.items() if v.shape[-1] == v.shape[-2] and v.shape[-1] == T}
    # over all samples: each head's focus, the weight k tokens back, the rollout
    data.focus = {k: v.float().amax(dim=-1).mean(dim=(0, 2)).cpu() for k, v in maps.items()}
    back = options.attend_back
    if back is not None and T > back and len({tuple(v.shape) for v in maps.values()}) == 1:
        t = torch.arange(back, T)
        data.back = back
        data.back_weight = {k: v[:, :, t, t - back].float().mean(dim=(0, 2)).cpu() for k, v in maps.items()}
    if len(self_attn) == len(maps) and len({v.shape[0] for v in maps.values()}) == 1:
        data.rollout = attention.rollout(maps).float().cpu()
        images = subject.display_images
        if images is not None and data.rollout.shape[0] == images.shape[0]:
            data.images = images[: options.patch_images].detach().float().cpu()
    shown = _view_samples(self_attn, tokens, n, options) if tokens is not None and self_attn else 1
    data.maps = {k: _first_samples(v, shown, n).detach().float().cpu() for k, v in maps.items()}
    data.batch = n
    data.folded = any(v.shape[0] != n for v in maps.values())
    data.tokens = tokens
    return data


__all__ = ["AttentionOptions", "AttentionData", "build"]
