"""Hand-made report subjects and sections with fixed blocks and hostile names (shared by the report tests)."""

from __future__ import annotations

import io

import torch
from torch import nn

from torchloupe.reporting import Figure, Html, Image, NotApplicable, Section, Subject, Table, Text
from torchloupe.reporting.template import render_fragment

XSS_SCRIPT = "<script>document.title='PWNED'</script>"
XSS_ATTR = "\"><img src=x onerror=\"document.title='PWNED'\">"
HOSTILE_SUBJECT = f"net {XSS_SCRIPT}"
HOSTILE_LABELS = ["zero", XSS_ATTR, XSS_SCRIPT]
SUBJECTS_TITLES = ("Overview", "Fixed blocks", "Attention-ish", "Always broken", "After the broken one")


def linear_model() -> nn.Module:
    """Flatten + Linear(4, 3) with set weights: input e_0 gives logits (2, 1, 0), e_1 gives (0, 2, 1)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, 0, 0, 0], [1.0, 2.0, 0, 0], [0, 1.0, 0, 0]]))
        model[1].bias.zero_()
    return model


def png_bytes(width: int, height: int, color=(200, 30, 30)) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def gif_bytes() -> bytes:
    from PIL import Image as PILImage

    frames = [PILImage.new("P", (24, 16), c) for c in (1, 5, 9)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="60" height="30">'
       b'<rect width="60" height="30" fill="#36c"/></svg>')


def fixed_blocks(subject: Subject, options: dict):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(4, 2.5), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(torch.arange(64.0).reshape(8, 8).numpy(), cmap="viridis")
    ax.set_title(f"layer {XSS_SCRIPT}")
    big = MplFigure(figsize=(30, 4), dpi=100)  # 3000 px wide: must be downscaled
    big.add_subplot().plot([0, 1, 0, 1])
    vec = MplFigure(figsize=(3, 2), dpi=100)
    vec.add_subplot().plot([1, 3, 2])
    return [
        Figure(fig, caption=f"feature maps of {XSS_SCRIPT}"),
        Figure(big, caption="a very wide figure"),
        Figure(vec, caption="vector figure", format="svg"),
        Image(png_bytes(40, 20), caption="solid png", alt=XSS_ATTR),
        Image(gif_bytes(), mime="image/gif", caption="animated gif"),
        Image(SVG, mime="image/svg+xml", caption="hand svg"),
        Table(["layer", "channels", "score"], [["conv1", 8, 0.123456], [XSS_ATTR, 16, 1e-5]],
              caption=f"table {XSS_SCRIPT}", highlight=[(0, 2)]),
        Text(f"plain text with {XSS_SCRIPT} inside"),
        Html(render_fragment("<p class='frag'>{{ name }}</p>", name=subject.name)),
    ]


def attention_ish(subject: Subject, options: dict):
    if subject.name.startswith("net"):
        return NotApplicable(f"no attention layers in {XSS_SCRIPT}")
    return [Text(f"seed={options['seed']} draw={torch.rand(1).item():.6f}")]


def always_broken(subject: Subject, options: dict):
    raise ValueError(f"boom {XSS_SCRIPT}\nsecond line")


def after_broken(subject: Subject, options: dict):
    return [Text("still here")]


def sections(overview: Section) -> list[Section]:
    return [
        overview,
        Section("fixed", "Fixed blocks", "Every kind of block, with hostile strings.", 30, fixed_blocks),
        Section("attn", "Attention-ish", f"Applies to one subject only {XSS_SCRIPT}.", 70, attention_ish),
        Section("broken", "Always broken", "Raises every time.", 80, always_broken),
        Section("after", "After the broken one", "Runs after the failure.", 85, after_broken),
    ]


def subjects() -> list[Subject]:
    x = torch.eye(4)[:2].reshape(2, 1, 2, 2)  # inputs e_0, e_1
    return [
        Subject(HOSTILE_SUBJECT, linear_model(), x, labels=HOSTILE_LABELS, extras={"targets": [0, 2]}),
        Subject("plain", linear_model(), torch.rand(3, 1, 2, 2)),
    ]
