"""Bundled demo data and models: synthetic shapes with object masks, scikit-learn digits,
and small CNNs trained on them in seconds (cached in the user's cache directory).

::

    ds = tl.demo.shapes_dataset(1000, size=64, seed=0)   # (image (3,64,64), label, mask (64,64))
    images, labels, masks = tl.demo.shapes_tensors(1000)  # the same, as whole tensors
    model = tl.demo.train_shapes_model(seed=0)           # ShapesCNN, eval mode, >= 97% held out
    x_train, y_train, x_test, y_test = tl.demo.digits_split()
    digits_model = tl.demo.train_digits_model()

Cache helpers for other demo models live in :mod:`torchloupe.demo.cache`.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "SHAPE_CLASSES": "shapes",
    "ShapesDataset": "shapes",
    "ShapesTensors": "shapes",
    "shapes_dataset": "shapes",
    "shapes_tensors": "shapes",
    "shape_geometry": "shapes",
    "SHAPE_AREA": "shapes",
    "DIGIT_CLASSES": "digits",
    "digits_dataset": "digits",
    "digits_tensors": "digits",
    "digits_split": "digits",
    "ShapesCNN": "models",
    "DigitsMLP": "models",
    "train_shapes_model": "models",
    "train_digits_model": "models",
    "shapes_splits": "models",
    "cache_dir": "cache",
    "load_or_train": "cache",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
