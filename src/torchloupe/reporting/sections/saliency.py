"""Report section "Guided backpropagation / deconvnet": input-space gradients of the predicted class.

Computed as :class:`SaliencyData` (the plain, guided and deconvnet gradients and guided Grad-CAM of
the first inputs, how far the methods agree, and the share of saliency inside the object masks when
the subject has them), drawn by its ``render()``; options: :class:`SaliencyOptions`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...errors import TorchLoupeError
from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Text, register
from ..agreement import agreement_words, pairwise_correlation
from ..options import SectionOptions, check_int

MAX_IMAGES = 4
_SCALED = "(99th percentile scaled)"


@dataclass(frozen=True)
class SaliencyOptions(SectionOptions):
    """``images``: how many of the subject's first inputs get saliency maps."""

    images: int = MAX_IMAGES

    def check(self) -> None:
        check_int("saliency", "images", self.images)


@dataclass
class SaliencyData(SectionData):
    """The gradients of the predicted class of the first inputs.

    ``kind``: ``"images"`` (``(N, C, H, W)`` inputs), ``"flat-images"`` (flat vectors that hold
    images, drawn as such), ``"vectors"`` ``(N, F)`` or ``"sequences"`` ``(N, A, B)``. ``columns``:
    ``{method: gradient}`` in the inputs' shape (flat images: reshaped to images), on the CPU;
    ``images``: what the image kinds are drawn on; ``targets`` / ``names``: the predicted classes;
    ``shape``: one input's shape; ``channels_first``: a sequence read by a Conv1d as (channels,
    steps). ``agreement``: ``(M, M)`` the Pearson correlation of the methods' absolute maps (summed
    over colour channels), averaged over the inputs. With object masks (``subject.masks``):
    ``mask_share`` ``(n,)`` the fraction of each image the object covers and ``inside``
    ``{method: (n,)}`` the fraction of the method's absolute saliency that lies on the object.
    ``notes``: rectifiers without a guided rule, methods that do not apply."""

    section: ClassVar[str] = "saliency"
    kind: str
    columns: dict[str, Tensor]
    targets: Tensor
    names: list[str]
    shape: tuple[int, ...]
    agreement: Tensor
    images: Tensor | None = None
    channels_first: bool = False
    mask_share: Tensor | None = None
    inside: dict[str, Tensor] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> list:
        if self.kind in ("images", "flat-images"):
            from ...render.cam import plot_saliency

            fig = plot_saliency(self.images, self.columns, row_titles=self.names)
            if self.kind == "images":
                caption = ("Gray = 0; brighter / darker = positive / negative gradient " + _SCALED + ". On deep "
                           "networks the deconvnet map is nearly image-independent (Nie et al. 2018, "
                           "https://arxiv.org/abs/1805.07039): a known property of the method, not a fault.")
            else:
                c, h, w = self.images.shape[1:]
                caption = (f"The inputs are flat vectors of {self.shape[0]} values, drawn as the {h}x{w} images they "
                           f"hold (a guess from the size: pass Subject(images=...) to draw others). Gray = 0; "
                           f"brighter / darker = positive / negative gradient {_SCALED}.")
        else:
            from ...render.figures import sequence_panels_figure

            if self.kind == "vectors":  # (N, F): one row per sample
                fig = sequence_panels_figure(dict(self.columns), ylabel="sample", xlabel="feature",
                                             row_labels=self.names,
                                             title="input gradients of the predicted class, one row per sample")
                what = "each row a sample, each column an input feature"
            else:  # (N, C, L) for a Conv1d, else (N, T, F): drawn as features x steps, sample 0
                panels = {k: (v[0] if self.channels_first else v[0].transpose(0, 1)) for k, v in self.columns.items()}
                fig = sequence_panels_figure(panels, ylabel="input channel" if self.channels_first else "feature",
                                             xlabel="step",
                                             title=f"sample 0 ({self.names[0]}): input gradients over steps")
                what = ("input channels (rows) over steps (columns), as the Conv1d reads them" if self.channels_first
                        else "features (rows) over steps (columns)")
            caption = (f"Saliency of the predicted class on {self.shape} inputs: {what}. "
                       f"Blue < 0 < red, each panel on its own scale (stated in its title).")
        figure = Figure(fig, caption=caption)
        blocks: list = [figure, *[Text(n) for n in self.notes]]
        text = self.agreement_sentence()
        if text:
            blocks.append(Finding(text, figure))
        if self.inside:
            blocks.append(Finding(self.mask_sentence(), figure))
        return blocks

    def agreement_sentence(self) -> str:
        """How far the methods agree on where the evidence is ("" with fewer than 2 methods)."""
        names, m = list(self.columns), len(self.columns)
        if m < 2:
            return ""
        level, overall, outlier = agreement_words(names, self.agreement)
        where = "pixels" if self.kind in ("images", "flat-images") else "inputs"
        n = len(self.targets)
        text = (f"The {m} saliency methods {level} on which {where} matter: mean pairwise correlation of their "
                f"absolute maps {overall:.2f} over {n} input{'s' if n != 1 else ''}{outlier}")
        plain = self.columns.get("gradient")
        same = [k for k, v in self.columns.items() if k != "gradient" and plain is not None and torch.equal(v, plain)]
        if same:
            text += (f"; {' and '.join(same)} {'is' if len(same) == 1 else 'are'} exactly the plain gradient here "
                     f"(no rectifier to guide), which is why {'it agrees' if len(same) == 1 else 'they agree'} with it")
        return text + "."

    def mask_sentence(self) -> str:
        """The share of each method's saliency on the object, against the share of the image it covers."""
        area = float(self.mask_share.mean())
        shares = {k: float(v.mean()) for k, v in self.inside.items()}
        n = len(self.mask_share)
        listed = ", ".join(f"{k} {_percent(v)}" for k, v in shares.items())
        best = max(shares, key=shares.get)
        text = (f"The object masks cover {_percent(area)} of the image on average and hold this share of the "
                f"saliency over {n} image{'s' if n != 1 else ''}: {listed}")
        if area > 0:
            text += f"; {best} is the most on the object ({shares[best] / area:.1f}x its area)"
            blind = [k for k, v in shares.items() if v <= 1.1 * area]
            if blind:
                text += f", {' and '.join(blind)} no more than the area gives by chance"
        return text + "."


def _percent(p: float) -> str:
    return f"{100 * p:.0f}%"


def _label(labels: Any, t: int) -> str:
    return str(labels[t]) if labels is not None and t < len(labels) else f"class {t}"


@register(
    "saliency",
    "Guided backpropagation / deconvnet",
    "The predicted class's gradient projected back to the pixels: plain, guided, deconvnet and guided Grad-CAM.",
    cost=1.5,
    options=SaliencyOptions,
)
def build(subject: Subject, options: SaliencyOptions) -> SaliencyData | NotApplicable:
    count = options.images
    x = subject.inputs
    images = subject.display_images
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() in (2, 3) and x.shape[0] > 0:
        return _non_image(subject, x[:count])
    first = subject.explained_input
    if not isinstance(first, torch.Tensor) or first.dim() != 4 or images is None:
        return NotApplicable("the inputs are not a batch of images, flat vectors (N, F) or sequences (N, T, F)")
    if not isinstance(x, torch.Tensor):  # a multi-input model: input 0 is explained, the others held
        from ...inputs import Inputs

        x = Inputs.of(x)
    x, images = (x[:count] if isinstance(x, torch.Tensor) else x.slice(0, count)), images[:count]
    from ...cam import GradCAM

    got = _gradients(subject, x)
    if isinstance(got, NotApplicable):
        return got
    targets, columns, notes = got
    try:  # saliency.guided_gradcam's product, reusing the guided backprop above
        from .cam import cam_layer

        cam = GradCAM(subject.model, cam_layer(subject, x))(x, targets, output=subject.output)
        gb = columns["guided backprop"]
        columns["guided Grad-CAM"] = gb * cam.maps.unsqueeze(1).to(gb.dtype)
    except TorchLoupeError as exc:
        notes.append(f"guided Grad-CAM does not apply: {exc}")
    columns = {k: v.detach().cpu() for k, v in columns.items()}
    first = x if isinstance(x, torch.Tensor) else x.get(0)
    data = SaliencyData(kind="images", columns=columns, targets=targets.cpu(), names=_names(subject, targets),
                        shape=tuple(first.shape[1:]), agreement=agreement(columns, spatial=True),
                        images=images.detach().cpu(), notes=notes)
    _masks(data, subject.masks)
    return data


def _names(subject: Subject, targets: Tensor) -> list[str]:
    return [_label(subject.labels, int(t)) for t in targets]


def agreement(columns: dict[str, Tensor], spatial: bool) -> Tensor:
    """``(M, M)``: the Pearson correlation of every two methods' absolute maps, averaged over the
    inputs; image maps ``(N, C, H, W)`` are summed over colour channels first (``spatial``)."""
    maps = []
    for v in columns.values():
        a = v.detach().float().abs()
        a = a.sum(dim=1) if spatial and a.dim() == 4 else a
        maps.append(a.reshape(len(a), -1))
    return pairwise_correlation(torch.stack(maps))  # (M, N, P) -> (M, M)


def _masks(data: SaliencyData, masks: Tensor | None) -> None:
    """``data.mask_share`` and ``data.inside`` from the subject's ``(N, H, W)`` object masks (resized
    to the maps by nearest neighbour when their size differs); nothing when there are none."""
    if masks is None or data.kind not in ("images", "flat-images"):
        return
    n = len(data.targets)
    masks = torch.as_tensor(masks)
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3 or len(masks) < n:
        data.notes.append(f"The object masks {tuple(masks.shape)} are not (N, H, W) for these {n} inputs, so the "
                          f"saliency on the object is not measured.")
        return
    size = next(iter(data.columns.values())).shape[-2:]
    m = masks[:n].detach().cpu().float()
    if tuple(m.shape[-2:]) != tuple(size):
        m = torch.nn.functional.interpolate(m[:, None], size=tuple(size), mode="nearest")[:, 0]
    m = m > 0.5
    data.mask_share = m.float().mean(dim=(1, 2))
    for k, v in data.columns.items():
        a = v.detach().float().abs().sum(dim=1)  # (n, H, W)
        total = a.sum(dim=(1, 2))
        data.inside[k] = torch.where(total > 0, (a * m).sum(dim=(1, 2)) / total.clamp_min(1e-30),
                                     torch.zeros_like(total))


def _gradients(subject: Subject, x):
    """``(targets, {method: gradient}, notes)``: the predicted classes of ``x`` and the plain, guided and
    deconvnet gradients of them (the notes name rectifiers without a guided rule); or why not."""
    from ... import saliency

    preds = subject.shared.predictions()  # x is the first inputs of the subject's batch
    if preds.scores is None:
        return NotApplicable(subject.no_scores())
    n = x.shape[0] if isinstance(x, torch.Tensor) else x.batch_size
    targets, out = preds.top[:n], subject.output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", saliency.GuidedFallbackWarning)
        columns = {
            "gradient": saliency.gradient(subject.model, x, targets, output=out),
            "guided backprop": saliency.guided_backprop(subject.model, x, targets, output=out),
            "deconvnet": saliency.deconvnet(subject.model, x, targets, output=out),
        }
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, saliency.GuidedFallbackWarning)})
    return targets, columns, notes


def _non_image(subject: Subject, x: torch.Tensor) -> SaliencyData | NotApplicable:
    """Flat vectors ``(N, F)`` and sequences ``(N, A, B)``: the same three gradients, drawn as images
    when a vector holds one (784 -> 1 x 28 x 28), else as maps over steps and features."""
    from ...inputs import first_layer
    from ...render.image import image_shape, normalize

    got = _gradients(subject, x)
    if isinstance(got, NotApplicable):
        return got
    targets, columns, notes = got
    columns = {k: v.detach().cpu() for k, v in columns.items()}
    names, shape = _names(subject, targets), tuple(x.shape[1:])
    picture = image_shape(x.shape[1]) if x.dim() == 2 else None
    if picture is not None:  # flat vectors that are images: drawn as the images they hold
        imgs = x.detach().cpu().reshape(len(x), *picture)
        lo, hi = float(imgs.min()), float(imgs.max())
        imgs = imgs if lo >= 0.0 and hi <= 1.0 else normalize(imgs)
        columns = {k: v.reshape(len(v), *picture) for k, v in columns.items()}
        data = SaliencyData(kind="flat-images", columns=columns, targets=targets.cpu(), names=names, shape=shape,
                            agreement=agreement(columns, spatial=True), images=imgs, notes=notes)
        _masks(data, subject.masks)
        return data
    first = first_layer(subject.model)
    channels_first = x.dim() == 3 and first is not None and isinstance(first[1], torch.nn.Conv1d)
    return SaliencyData(kind="vectors" if x.dim() == 2 else "sequences", columns=columns, targets=targets.cpu(),
                        names=names, shape=shape, agreement=agreement(columns, spatial=False),
                        channels_first=channels_first, notes=notes)
