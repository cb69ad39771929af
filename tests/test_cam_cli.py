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
