"""Report section "Attention": per layer and head, token to token, rollout, memory reads.

Attention and memory reads are shown together: every attention :func:`torchloupe.attention.capture`
finds (a read, one query per sample over memory slots, as bars; the rest per layer and head).
Reads from ``subject.extras`` (all optional): ``tokens`` (per sample, a list of strings),
``memory`` (layer spec of a memory module: every softmax inside it is shown as it is, also one
that multiplies nothing) with ``slot`` (``(B,)`` true slots), ``attend_back`` (an int k: the table shows each head's
mean weight on the token k places back).
"""

from __future__ import annotations

from torchloupe.reporting.options import SectionOptions

from dataclasses import dataclass

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from torchloupe import attention
from torchloupe.inputs import Inputs
from torchloupe.reporting.base import Figure, Finding, Html, NotApplicable, Subject, Table, Text, register


def _call_capture(subject: Subject, **kw: Any) -> dict[str, Tensor]:
    x = subject.inputs
    if isinstance(x, dict):
        return attention.capture(subject.model, **x, **kw)
    if isinstance(x, (tuple, list)):
        return attention.capture(subject.model, *x, **kw)
    return attention.capture(subject.model, x, **kw)


def _tokens(subject: Subject, T: int) -> list[str] | None:
    toks = subject.tokens
    if toks is None:
        return None
    first = list(toks[0]) if toks and isinstance(toks[0], (list, tuple)) else list(toks)
    return [str(t) for t in first][:T]


def _all_tokens(subject: Subject, T: int) -> list[list[str]] | list[str]:
    """The tokens per sample (``subject.tokens`` as a list per sample, or one list for all)."""
    toks = subject.tokens
    if toks and isinstance(toks[0], (list, tuple)):
        return [[str(t) for t in seq][:T] for seq in toks]
    return [str(t) for t in toks][:T]


@dataclass(frozen=True)
class AttentionOptions(SectionOptions):
    """``memory``: the layer spec of a memory module (every softmax inside it is shown as it is, also
    one that multiplies nothing); ``slot``: ``(B,)`` the true slot of each memory read; ``attend_back``:
    an int k, the table shows each head's mean weight on the token k places back."""

    memory: str | None = None
    slot: Any = None
    attend_back: int | None = None

@register(
    "attention",
    "Attention",
    "Where each layer and head looks, token to token, and how attention composes through the layers.",
    cost=2,
    options=AttentionOptions,
)
def build(subject: Subject, options: dict):
    from torchloupe.render import attention as draw

    model: nn.Module = subject.model
    memory = options.memory
    with warnings.catch_warnings():  # nothing found is said below, in the section
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
    blocks: list = []
    truth = options.slot
    for name, w in reads.items():
        t = None
        if truth is not None:
            t = torch.as_tensor(truth)
            if t.shape != (w.shape[0],) or int(t.max()) >= w.shape[1]:
                t = None  # the truth is about another read
        fig = Figure(draw.read_weights_figure(w, t), caption=f"read weights of {name}")
        blocks.append(fig)
        if t is not None:
            hit = float((w.argmax(-1).cpu() == t).float().mean())
            blocks.append(Finding(f"The read weight of {name} peaks on the slot holding the answer in {hit:.1%} of "
                                  f"{w.shape[0]} samples.", fig))
    if not maps:
        if blocks:
            return blocks
        return NotApplicable(f"{type(model).__name__} computed no attention (no MultiheadAttention, SDPA or transformers "
                             "attention ran, and no softmax result was multiplied by a tensor)")
    first = next(iter(maps.values()))
    B, H, T, S = first.shape
    tokens = _tokens(subject, T)
    heads = sorted({v.shape[1] for v in maps.values()})
    shapes = {tuple(v.shape[-2:]) for v in maps.values()}
    head_text = f"{H} heads" if len(heads) == 1 else f"{heads[0]}–{heads[-1]} heads"
    size_text = f"{T} queries × {S} keys" if len(shapes) == 1 else "queries × keys varying by layer"
    blocks.append(Text(f"{len(maps)} attention layers × {head_text}, {size_text}; captured in eval mode (no dropout)."))
    n = Inputs.of(subject.inputs).batch_size  # the capture above ran on these inputs
    windows = " (windows folded into the batch: the first window of sample 0)" if any(
        v.shape[0] != n for v in maps.values()) else ""
    if len(maps) <= 2:
        caption = "attention of sample 0 per layer (rows) and head (columns)" + windows
        blocks.append(Figure(draw.heads_grid(maps, tokens=tokens), caption=caption))
    else:  # one layer at a time, its heads large enough for token names, one scale across layers
        from torchloupe.reporting.blocks import data_uri

        images = []
        for name, fig in draw.layer_figures(maps, tokens=tokens):
            a = maps[name]
            alt = (f"{a.shape[1]} heat maps, one per head of {name}: rows are the {a.shape[2]} query tokens, "
                   f"columns the {a.shape[3]} keys, brighter is more attention")
            png, w, h = draw.palette_png(fig)
            images.append((name, data_uri(png, "image/png"), alt, w, h))
        blocks.append(Text(f"Attention of sample 0, one layer at a time (choose the layer above the figure); every "
                           f"head of the layer side by side, all {len(maps)} layers on one colour scale{windows}."))
        blocks.append(Html(draw.layer_picker_html(images)))
    self_attn = {k: v for k, v in maps.items() if v.shape[-1] == v.shape[-2] and v.shape[-1] == T}
    if tokens is not None and self_attn:
        blocks.append(Html(draw.token_view_html(self_attn, _all_tokens(subject, T), assets=False)))
    back = options.attend_back
    same = len({tuple(v.shape) for v in maps.values()}) == 1
    if back is not None and T > back and same:
        t = torch.arange(back, T)
        rows = []
        for name, a in maps.items():
            mass = a[:, :, t, t - back].mean(dim=(0, 2)).cpu()
            rows.append([name] + [f"{float(m):.3f}" for m in mass])
        best = [(r, 1 + max(range(H), key=lambda h: float(rows[r][1 + h]))) for r in range(len(rows))]
        blocks.append(Table(["layer"] + [f"head {h}" for h in range(H)], rows,
                            caption=f"mean weight on the token {back} places back (the correct attention)", highlight=best))
    if len(self_attn) == len(maps) and len({v.shape[0] for v in maps.values()}) == 1:
        roll = attention.rollout(maps)
        blocks.append(Figure(draw.matrix_figure(roll[0], tokens, title="attention rollout, sample 0 (Abnar & Zuidema 2020)"),
                             caption="how much each output token draws on each input token through all layers"))
        images = subject.display_images
        if images is not None and draw.patch_grid(T) is not None and roll.shape[0] == images.shape[0]:
            blocks.append(Figure(draw.patch_overlay(images, roll), caption="rollout over the image patches"))
    return blocks
