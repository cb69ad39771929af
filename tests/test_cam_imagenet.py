"""A real pretrained network, offline: EfficientNet-Lite0 on scikit-image's chelsea() photo."""

from __future__ import annotations

import pytest
import torch
from skimage import data

import torchloupe as tl
from torchloupe.demo import imagenet_data

# The cat's face in chelsea() (451 x 300 pixels: x from the left, y from the top): eyes, nose, muzzle.
FACE_BOX = (100, 40, 380, 290)  # x0, y0, x1, y1 in the original photo's pixels


@pytest.fixture(scope="module")
def lite0():
    model = imagenet_data.efficientnet_lite0()
    x, display = imagenet_data.preprocess(data.chelsea())
    return model, x, display


def test_chelsea_is_a_cat(lite0):
    model, x, _ = lite0
    with torch.no_grad():
        p = model(x).softmax(1)[0]
    top = int(p.argmax())
    assert top in imagenet_data.CAT_CLASSES
    assert imagenet_data.imagenet_classes()[top] == "Egyptian cat"
    assert float(p[top]) > 0.7


def test_bundled_class_names_are_torchvisions():
    from torchvision.models import ResNet18_Weights

    assert imagenet_data.imagenet_classes() == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_gradcam_peak_on_the_cat_face(lite0):
    model, x, _ = lite0
    res = tl.cam.GradCAM(model)(x)
    assert res.layer == "_bn1" and res.raw.shape == (1, 7, 7)
    assert int(res.targets[0]) in imagenet_data.CAT_CLASSES
    i = int(res.maps[0].argmax())
    y, xx = i // 224 * 300 / 224, i % 224 * 451 / 224  # back to the photo's pixels
    x0, y0, x1, y1 = FACE_BOX
    assert x0 <= xx <= x1 and y0 <= y <= y1, (xx, y)
    # and the map is not flat: the face carries more than the photo's border
    m = res.maps[0]
    assert float(m[60:200, 50:190].mean()) > 2 * float(torch.cat([m[:15].flatten(), m[-15:].flatten()]).mean())


def test_preprocess_does_not_mutate_and_ranges():
    arr = data.chelsea()
    before = arr.copy()
    x, display = imagenet_data.preprocess(arr)
    assert (arr == before).all()
    assert x.shape == display.shape == (1, 3, 224, 224)
    assert 0.0 <= float(display.min()) and float(display.max()) <= 1.0


def test_sample_photos_cached_copy_equals_scikit_image(monkeypatch, tmp_path):
    """The demo keeps scikit-image's photos in its cache: later runs read them without skimage,
    get the same pixels, and a broken copy is replaced."""
    from skimage import data

    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    first = imagenet_data.sample_photos(("chelsea", "coffee"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skimage-photo-chelsea-v1.pt", "skimage-photo-coffee-v1.pt"]

    def no_skimage(*args, **kwargs):
        raise AssertionError("scikit-image loaded although the cached copy exists")

    monkeypatch.setattr(imagenet_data, "require", no_skimage)
    second = imagenet_data.sample_photos(("chelsea", "coffee"))
    want_x, want_display = imagenet_data.preprocess([data.chelsea(), data.coffee()])
    for x, display, names in (first, second):
        assert torch.equal(x, want_x) and torch.equal(display, want_display) and names == ["chelsea", "coffee"]
    (tmp_path / "skimage-photo-coffee-v1.pt").write_bytes(b"truncated")
    monkeypatch.undo()
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    assert torch.equal(imagenet_data.sample_photos(("coffee",))[1], want_display[1:])
    assert torch.load(tmp_path / "skimage-photo-coffee-v1.pt", weights_only=True)["image"].shape == data.coffee().shape
