"""Demo subject: EfficientNet-Lite0 (real ImageNet weights, offline) on scikit-image's sample photos."""

from __future__ import annotations

from ...reporting.base import Subject


def subjects(options) -> list[Subject]:
    from ...demo import imagenet_data

    if not imagenet_data.available():
        return []
    model = imagenet_data.efficientnet_lite0()
    x, display, names = imagenet_data.sample_photos()
    return [
        Subject(
            name="EfficientNet-Lite0 (ImageNet) on scikit-image photos",
            model=model,
            inputs=x,
            labels=imagenet_data.imagenet_classes(),
            images=display,
            files=[f"skimage.data.{n}()" for n in names],
        )
    ]
