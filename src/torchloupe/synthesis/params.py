"""Image parameterizations: ``make(shape, generator, device, domain) -> (params, image_f)``.

``image_f()`` returns ``(N, *input_shape)`` values inside the input domain's
range; the optimizer updates ``params``. As in Lucid / Lucent:

- ``pixel``: one free value per input element, squashed to the range by a sigmoid;
- ``fft``: a 1/f-scaled Fourier spectrum (Olah et al. 2017, "Feature Visualization"),
  decorrelated colour when there are 3 channels, sigmoid to the range;
- ``cppn``: a small random per-image CPPN of the pixel coordinates (Mordvintsev et al. 2018).

:class:`InputDomain` says what the model expects: the value range of a raw input
(``(0, 1)`` images by default) and the mean / std normalization applied before
the model (``mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)`` for ImageNet).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ParamError


@dataclass(frozen=True)
class InputDomain:
    """Valid raw inputs and the normalization the model applies to them.

    ``range``: ``(low, high)`` of raw values, or ``None`` for unbounded inputs (feature vectors);
    ``mean`` / ``std``: per-channel (dim 1) normalization, ``model_input = (x - mean) / std``.
    """

    range: tuple[float, float] | None = (0.0, 1.0)
    mean: Sequence[float] | float | None = None
    std: Sequence[float] | float | None = None

    def __post_init__(self):
        if self.range is not None:
            lo, hi = self.range
            if not float(lo) < float(hi):
                raise ParamError(f"input range {self.range} must be (low, high) with low < high")

    def squash(self, raw: Tensor) -> Tensor:
        """Map unbounded values into the range (sigmoid); identity when unbounded."""
        if self.range is None:
            return raw
        lo, hi = self.range
        return lo + (hi - lo) * torch.sigmoid(raw)

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` over dim 1 (a new tensor; ``x`` is not modified)."""
        if self.mean is None and self.std is None:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.mean is not None:
            x = x - torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape)
        if self.std is not None:
            x = x / torch.as_tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape)
        return x

    def random(self, shape: Sequence[int], generator: torch.Generator, device) -> Tensor:
        """Uniform random inputs over the range (standard normal when unbounded)."""
        if self.range is None:
            return torch.randn(*shape, generator=generator, device=device)
        lo, hi = self.range
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, device=device)

    @property
    def middle(self) -> float:
        return 0.0 if self.range is None else 0.5 * (self.range[0] + self.range[1])


# Lucid's colour correlation (ImageNet), square root of the covariance, columns normalized.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


def decorrelate(x: Tensor) -> Tensor:
    """Mix 3 decorrelated channels into correlated RGB: ``(N, 3, H, W) -> (N, 3, H, W)``."""
    return torch.einsum("nchw,dc->ndhw", x, _COLOR.to(x))


def pixel(shape: Sequence[int], generator: torch.Generator, device, domain: InputDomain,
          sd: float = 0.01, decorrelated: bool = True):
    """Free values per element; any input shape (images, sequences, vectors)."""
    raw = (torch.randn(*shape, generator=generator, device=device) * sd).requires_grad_(True)
    colour = decorrelated and len(shape) == 4 and shape[1] == 3

    def image_f() -> Tensor:
        return domain.squash(decorrelate(raw) if colour else raw)

    return [raw], image_f


def _freqs(h: int, w: int, device) -> Tensor:
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def fft(shape: Sequence[int], generator: torch.Generator, device, domain: InputDomain,
        sd: float = 0.01, decay_power: float = 1.0, decorrelated: bool = True):
    """1/f-scaled spectrum of each channel, inverse real FFT, colour decorrelation, sigmoid."""
    if len(shape) != 4:
        raise ParamError(
            f"param='fft' needs an image input shape (C, H, W), got {tuple(shape[1:])}; "
            f"use param='pixel' for other inputs"
        )
    n, c, h, w = shape
    freqs = _freqs(h, w, device)
    scale = 1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay_power
    spectrum = (torch.randn(n, c, *freqs.shape, 2, generator=generator, device=device) * sd).requires_grad_(True)
    colour = decorrelated and c == 3

    def image_f() -> Tensor:
        z = torch.view_as_complex(spectrum) * scale
        img = torch.fft.irfft2(z, s=(h, w), norm="ortho") / 4.0
        return domain.squash(decorrelate(img) if colour else img)

    return [spectrum], image_f


def cppn(shape: Sequence[int], generator: torch.Generator, device, domain: InputDomain,
         hidden: int = 16, layers: int = 6):
    """A per-image CPPN (x, y, r) -> channels with composite atan activations; weights are the params."""
    if len(shape) != 4:
        raise ParamError(f"param='cppn' needs an image input shape (C, H, W), got {tuple(shape[1:])}")
    n, c, h, w = shape
    ys = torch.linspace(-3 ** 0.5, 3 ** 0.5, h, device=device)
    xs = torch.linspace(-3 ** 0.5, 3 ** 0.5, w, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([xx, yy, (xx * xx + yy * yy).sqrt()], -1).reshape(1, h * w, 3).expand(n, -1, -1)
    params: list[Tensor] = []
    fan_in = 3
    for _ in range(layers):
        weight = torch.randn(n, fan_in, hidden, generator=generator, device=device) / math.sqrt(fan_in)
        params += [weight.requires_grad_(True), torch.zeros(n, 1, hidden, device=device).requires_grad_(True)]
        fan_in = 2 * hidden
    out_w = torch.zeros(n, fan_in, c, device=device).requires_grad_(True)
    params += [out_w, torch.zeros(n, 1, c, device=device).requires_grad_(True)]

    def image_f() -> Tensor:
        z = coords
        for i in range(layers):
            z = torch.baddbmm(params[2 * i + 1], z, params[2 * i])
            a = torch.atan(z)
            z = torch.cat([a / 0.67, a * a / 0.6], -1)
        img = torch.baddbmm(params[-1], z, params[-2])
        return domain.squash(img.transpose(1, 2).reshape(n, c, h, w))

    return params, image_f


PARAMS: dict[str, Callable] = {"pixel": pixel, "fft": fft, "cppn": cppn}
