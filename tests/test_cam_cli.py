"""``loupe cam`` end to end, in process."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from torchloupe.app.cli import main


@pytest.fixture
def photos(tmp_path):
    from skimage import data

    paths = []
    for name in ("chelsea", "coffee"):
        p = tmp_path / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(p)
        paths.append(str(p))
    return paths


def test_cam_command_on_efficientnet(tmp_path, photos, capsys):
    out = tmp_path / "out"
    rc = main(["cam", "--model", "efficientnet-lite0", "--input", *photos, "--method", "gradcam,eigencam",
               "--layer", "_blocks.15", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed == f"wrote 4 overlays, grid.png and index.html to {out} (layer _blocks.15)\n"
    files = sorted(p.name for p in out.iterdir())
    assert files == ["chelsea_eigencam.png", "chelsea_gradcam.png", "coffee_eigencam.png", "coffee_gradcam.png",
                     "grid.png", "index.html"]
    page = (out / "index.html").read_text()
    assert "Egyptian cat" in page and "espresso" in page
    im = np.asarray(Image.open(out / "chelsea_gradcam.png"))
    assert im.shape == (224, 224, 3)


def test_cam_command_errors(tmp_path, photos, capsys):
    rc = main(["cam", "--model", "efficientnet-lite0", "--input", photos[0], "--method", "gradcum", "--out", str(tmp_path)])
    assert rc == 2
    assert "unknown --method 'gradcum'; expected all or any of: cam, gradcam" in capsys.readouterr().err
    rc = main(["cam", "--model", "efficientnet-lite0", "--input", photos[0], "--layer", "_blocks.99", "--out", str(tmp_path)])
    assert rc == 2
    assert "'_blocks.99' is not a module of EfficientNet" in capsys.readouterr().err


def test_images_of_the_same_name_keep_their_own_overlays(tmp_path, photos, capsys):
    import shutil

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = [shutil.copy(photos[0], tmp_path / "a" / "img.png"), shutil.copy(photos[1], tmp_path / "b" / "img.png")]
    out = tmp_path / "dup"
    assert main(["cam", "--model", "efficientnet-lite0", "--input", *map(str, same), "--method", "gradcam",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    a, b = np.asarray(Image.open(out / "img_gradcam.png")), np.asarray(Image.open(out / "img-2_gradcam.png"))
    assert a.shape == b.shape and not np.array_equal(a, b)


GRAY_NET = """
import torch
from torch import nn

def gray():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2, 3))
"""


def test_cam_command_runs_a_registered_method_on_a_gray_model(tmp_path, capsys):
    """A method registered by one line is a --method choice; images are read as the first layer wants
    them (gray here), through the input code every subcommand shares."""
    import torch

    import torchloupe as tl
    from torchloupe.app.images import load_images
    from torchloupe.app.models import load_model
    from torchloupe.render.image import overlay
    from torchloupe.render.png import to_png

    class MaxGradCAM(tl.cam.GradientCAM):
        title = "Max-Grad-CAM"

        def channel_weights(self, acts, grads):
            return grads.flatten(2).amax(2)

    (tmp_path / "net.py").write_text(GRAY_NET)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "cat.png")
    spec, out = f"{tmp_path}/net.py:gray", tmp_path / "out"
    tl.cam.register("maxgradcam", MaxGradCAM)
    try:
        rc = main(["cam", "--model", spec, "--input", str(tmp_path / "cat.png"), "--method", "maxgradcam,gradcam",
                   "--out", str(out)])
    finally:
        tl.cam.METHODS.unregister("maxgradcam")
    assert rc == 0 and capsys.readouterr().out == f"wrote 2 overlays, grid.png and index.html to {out} (layer 1)\n"
    images = load_images([tmp_path / "cat.png"], mode="L")
    model = load_model(spec)
    assert images.shape == (1, 1, 12, 12)
    res = MaxGradCAM(model, "1")(images)
    assert (out / "cat_maxgradcam.png").read_bytes() == to_png(overlay(images, res.maps)[0])
    assert (out / "cat_gradcam.png").read_bytes() == to_png(overlay(images, tl.cam.GradCAM(model, "1")(images).maps)[0])
    assert "Max-Grad-CAM" in (out / "index.html").read_text()
    with torch.no_grad():
        assert res.targets.tolist() == model(images).argmax(1).tolist()


def test_cam_command_checks_its_output_folder_first(tmp_path, capsys):
    (tmp_path / "net.py").write_text(GRAY_NET)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "cat.png")
    base = ["cam", "--model", f"{tmp_path}/net.py:gray", "--input", str(tmp_path / "cat.png"), "--out"]
    a_file = tmp_path / "cat.png"
    assert main([*base, str(a_file)]) == 2
    assert capsys.readouterr().err == f"loupe: error: --out '{a_file}' is a file; expected a folder\n"
    assert main([*base, str(a_file / "sub")]) == 2
    assert capsys.readouterr().err == (f"loupe: error: --out '{a_file / 'sub'}': cannot make this folder "
                                       f"('{a_file}' is not a directory)\n")
