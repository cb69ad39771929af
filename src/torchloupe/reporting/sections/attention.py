"""Report section "Attention": per layer and head, token to token, rollout, memory reads.

Reads from ``subject.extras`` (all optional): ``tokens`` (per sample, a list of strings),
``memory`` (layer spec of a memory module: its softmax read weights are shown) with
``slot`` (``(B,)`` true slots), ``attend_back`` (an int k: the table shows each head's
mean weight on the token k places back).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from torchloupe import attention
from torchloupe.reporting.base import Figure, Html, NotApplicable, Subject, Table, Text, register


def _call_capture(subject: Subject, **kw: Any) -> dict[str, Tensor]:
    x = subject.inputs
    if isinstance(x, dict):
        return attention.capture(subject.model, **x, **kw)
    if isinstance(x, (tuple, list)):
        return attention.capture(subject.model, *x, **kw)
    return attention.capture(subject.model, x, **kw)


def _tokens(subject: Subject, T: int) -> list[str] | None:
    toks = subject.extras.get("tokens")
    if toks is None:
        return None
    first = list(toks[0]) if toks and isinstance(toks[0], (list, tuple)) else list(toks)
    return [str(t) for t in first][:T]


@register(
    "attention",
    "Attention",
    "where each layer and head looks, token to token, and how attention composes through the layers",
    70,
    cost=2,
)
def build(subject: Subject, options: dict):
    from torchloupe.render import attention as draw

    model: nn.Module = subject.model
    blocks: list = []
    memory = subject.extras.get("memory")
    if memory is not None:
        reads = _call_capture(subject, softmax=True, within=memory)
        reads = {k: v for k, v in reads.items() if v.dim() == 2}
        for name, w in reads.items():
            truth = subject.extras.get("slot")
            blocks.append(Figure(draw.read_weights_figure(w, truth), caption=f"read weights of {name}"))
            if truth is not None:
                hit = float((w.argmax(-1).cpu() == torch.as_tensor(truth)).float().mean())
                blocks.append(Text(f"The read weight of {name} peaks on the slot holding the answer in {hit:.1%} of {w.shape[0]} samples."))
        if blocks:
            return blocks
    maps = _call_capture(subject)
    maps = {k: v for k, v in maps.items() if v.dim() == 4}
    if not maps:
        return NotApplicable(f"{type(model).__name__} computed no attention (no MultiheadAttention, SDPA or transformers attention ran)")
    first = next(iter(maps.values()))
    B, H, T, S = first.shape
    tokens = _tokens(subject, T)
    blocks.append(Text(f"{len(maps)} attention layers × {H} heads, {T} queries × {S} keys; captured in eval mode (no dropout)."))
    blocks.append(Figure(draw.heads_grid(maps, tokens=tokens), caption="attention of sample 0 per layer (rows) and head (columns)"))
    self_attn = {k: v for k, v in maps.items() if v.shape[-1] == v.shape[-2] and v.shape[-1] == T}
    if tokens is not None and self_attn:
        blocks.append(Html(draw.token_view_html(self_attn, tokens)))
    back = subject.extras.get("attend_back")
    if back is not None and T > back:
        t = torch.arange(back, T)
        rows = []
        for name, a in maps.items():
            mass = a[:, :, t, t - back].mean(dim=(0, 2)).cpu()
            rows.append([name] + [f"{float(m):.3f}" for m in mass])
        best = [(r, 1 + max(range(H), key=lambda h: float(rows[r][1 + h]))) for r in range(len(rows))]
        blocks.append(Table(["layer"] + [f"head {h}" for h in range(H)], rows,
                            caption=f"mean weight on the token {back} places back (the correct attention)", highlight=best))
    if len(self_attn) == len(maps):
        roll = attention.rollout(maps)
        blocks.append(Figure(draw.matrix_figure(roll[0], tokens, title="attention rollout, sample 0 (Abnar & Zuidema 2020)"),
                             caption="how much each output token draws on each input token through all layers"))
        images = subject.display_images
        if images is not None and draw.patch_grid(T) is not None:
            blocks.append(Figure(draw.patch_overlay(images, roll), caption="rollout over the image patches"))
    return blocks
