"""Model, checkpoint, image and label loading for the command line (torchloupe.app)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from torchloupe.app import images as image_files
from torchloupe.app import models as loading
from torchloupe.errors import CheckpointError, InputFileError, TorchLoupeError, UsageError
from torchloupe.app.checkpoints import load_checkpoint, load_weights
from torchloupe.app.images import load_images, load_labels
from torchloupe.app.models import BuiltinModel, build_model, load_model

FACTORY_SRC = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))

def build():
    return Net()

def not_a_model():
    return [1, 2]

VALUE = 3
"""


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(FACTORY_SRC)
    return path


class Marker:
    """Unpickling this calls os.mkdir(path): the marker appears iff the pickle's code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# ----------------------------------------------------------------------------- model specs


def test_torchvision_spec_builds_random_init_deterministically_without_touching_global_rng():
    state = torch.get_rng_state()
    a = load_model("torchvision:squeezenet1_1")
    assert torch.equal(torch.get_rng_state(), state), "building a model changed the global RNG"
    b = load_model("torchvision:squeezenet1_1")
    assert type(a).__name__ == "SqueezeNet" and not a.training
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_torchvision_unknown_name_names_the_closest():
    with pytest.raises(UsageError, match=r"torchvision has no model 'resnet'; closest: .*resnet18"):
        load_model("torchvision:resnet")
    with pytest.raises(UsageError, match=r"torchvision has no model 'squeezenet1_3'; closest: squeezenet1_1, squeezenet1_0"):
        load_model("torchvision:squeezenet1_3")


def test_file_factory_spec(factory_file):
    model = load_model(f"{factory_file}:build")
    assert type(model).__name__ == "Net" and not model.training
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 3)


def test_file_factory_errors(factory_file, tmp_path):
    with pytest.raises(InputFileError, match=r"model file '.*nothere\.py' does not exist"):
        load_model(f"{tmp_path / 'nothere.py'}:build")
    with pytest.raises(UsageError, match=r"has no attribute 'buidl'; callables there: build"):
        load_model(f"{factory_file}:buidl")
    with pytest.raises(UsageError, match=r"returned a list, expected an nn.Module"):
        load_model(f"{factory_file}:not_a_model")
    with pytest.raises(UsageError, match=r"is a int, expected a function returning an nn.Module"):
        load_model(f"{factory_file}:VALUE")
    broken = tmp_path / "broken.py"
    broken.write_text("def build(:\n")
    with pytest.raises(InputFileError, match=r"cannot import model file '.*broken\.py': SyntaxError"):
        load_model(f"{broken}:build")


def test_module_factory_spec():
    assert isinstance(load_model("torch.nn:Identity"), nn.Identity)
    assert type(load_model("tests.helpers:tiny_cnn")).__name__ == "TinyCNN"
    with pytest.raises(UsageError, match=r"cannot import module 'no_such_pkg.mod'"):
        load_model("no_such_pkg.mod:build")
    with pytest.raises(UsageError, match=r"returned a OrderedDict, expected an nn.Module"):
        load_model("collections:OrderedDict")


def test_builtin_names(monkeypatch):
    monkeypatch.setattr(loading, "BUILTINS", {})
    loading.register_model(BuiltinModel("tiny", lambda: nn.Linear(2, 2), labels=lambda: ("yes", "no")))
    loading.register_model(BuiltinModel("tiny-lazy", "tests.helpers:tiny_cnn", normalize="imagenet"))
    with pytest.raises(UsageError, match=r"unknown normalization 'imagnet'"):
        loading.register_model(BuiltinModel("typo", "tests.helpers:tiny_cnn", normalize="imagnet"))
    assert BuiltinModel("absent", "x:y", requires=("no_such_package_here",)).available() is False
    assert isinstance(load_model("tiny"), nn.Linear)
    assert type(load_model("tiny-lazy")).__name__ == "TinyCNN"
    assert loading.default_normalization("tiny-lazy") == "imagenet"
    assert loading.default_normalization("tiny") is None
    assert loading.default_normalization("torchvision:resnet18") == "imagenet"
    assert loading.default_labels("tiny") == ["yes", "no"] and loading.default_labels("tiny-lazy") is None
    with pytest.raises(UsageError, match=r"unknown model spec 'tinny' \(did you mean 'tiny'\?\).*built-in name \(tiny, tiny-lazy\)"):
        load_model("tinny")


def test_unknown_spec_lists_the_forms():
    with pytest.raises(UsageError) as info:
        load_model("resnet18")
    msg = str(info.value)
    assert msg.startswith("unknown model spec 'resnet18'")
    for form in ("torchvision:NAME", "path/file.py:factory", "package.module:factory"):
        assert form in msg
    assert isinstance(info.value, TorchLoupeError) and isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture
def net_and_state(factory_file):
    model = load_model(f"{factory_file}:build")
    torch.manual_seed(5)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    return factory_file, state


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "module-prefix", "safetensors"])
def test_checkpoint_forms_load(net_and_state, tmp_path, wrap):
    factory_file, state = net_and_state
    if wrap == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "ckpt.safetensors"
        save_file(state, str(path))
    else:
        obj = {
            "raw": state,
            "state_dict": {"state_dict": state, "epoch": 3},
            "model": {"model": state, "optimizer": {"lr": 0.1}},
            "module-prefix": {f"module.{k}": v for k, v in state.items()},
        }[wrap]
        path = tmp_path / "ckpt.pt"
        torch.save(obj, path)
    model = load_model(f"{factory_file}:build", weights=path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_checkpoint_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint '.*missing\.pt': no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint '.*corrupt\.pt': not a PyTorch checkpoint"):
        load_checkpoint(bad)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.pt"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match=r"not a file"):
        load_checkpoint(tmp_path)
    garbage = tmp_path / "garbage.pt"  # a pickle header and then junk: damaged, not dangerous
    garbage.write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match=r"garbage\.pt': not a file torch\.save wrote \(a plain pickle, which "
                                              r"could run code, or damaged data; the safe loader stopped at: "
                                              r"Unsupported operand 103\); it was not loaded"):
        load_checkpoint(garbage)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_plain_pickle_with_code_is_never_run_and_is_named_as_such(tmp_path, protocol):
    import os
    import pickle

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil(), protocol=protocol))
    with pytest.raises(CheckpointError, match="could run code") as err:
        load_checkpoint(path)
    assert "--unsafe-pickle" in str(err.value) and not marker.exists()


def test_checkpoint_that_does_not_fit(net_and_state, tmp_path):
    factory_file, state = net_and_state
    model = load_model(f"{factory_file}:build")
    path = tmp_path / "partial.pt"
    torch.save({k: v for k, v in state.items() if k != "fc.bias"} | {"extra.w": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=r"does not fit Net: missing keys: fc.bias; unexpected keys: extra.w"):
        load_weights(model, path)
    path2 = tmp_path / "shape.pt"
    torch.save({**state, "fc.weight": torch.zeros(5, 4)}, path2)
    with pytest.raises(CheckpointError, match=r"shape mismatch .* fc.weight \(5, 4\) vs \(3, 4\)"):
        load_weights(model, path2)
    path3 = tmp_path / "list.pt"
    torch.save([1, 2, 3], path3)
    with pytest.raises(CheckpointError, match=r"holds a list; expected a state dict"):
        load_checkpoint(path3)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_malicious_pickle_does_not_run(net_and_state, tmp_path, fmt):
    factory_file, state = net_and_state
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": state, "x": Marker(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=(fmt == "zip"))
    with pytest.raises(CheckpointError, match=r"checkpoint '.*evil\.pt' holds Python objects other than tensors.*--unsafe-pickle"):
        load_model(f"{factory_file}:build", weights=path)
    assert not marker.exists(), "the checkpoint's code ran under the safe default"

    # The same file with the opt-out does run its code (so the payload above was real) and warns.
    with pytest.warns(UserWarning, match=r"weights_only=False: any code it holds runs"):
        model = load_model(f"{factory_file}:build", weights=path, unsafe_pickle=True)
    assert marker.exists()
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


def test_safe_checkpoint_does_not_warn(net_and_state, tmp_path):
    _, state = net_and_state
    path = tmp_path / "ok.pt"
    torch.save(state, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_checkpoint(path).keys() == state.keys()


# ----------------------------------------------------------------------------- images and labels


def _save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_load_images_exact_values(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)
    a[1, 2] = (255, 128, 0)
    b = np.full((4, 6, 3), 51, np.uint8)
    x = load_images([_save(tmp_path / "a.png", a), _save(tmp_path / "b.bmp", b)])
    assert x.shape == (2, 3, 4, 6) and x.dtype == torch.float32
    assert torch.equal(x[0, :, 1, 2], torch.tensor([255, 128, 0]) / 255.0)
    assert float(x[0].sum()) == pytest.approx((255 + 128) / 255)
    assert torch.allclose(x[1], torch.full((3, 4, 6), 0.2))


def test_load_images_sizes_and_modes(tmp_path):
    big = _save(tmp_path / "big.png", np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    small = _save(tmp_path / "small.png", np.zeros((20, 30, 3), np.uint8))
    assert load_images([big, small]).shape == (2, 3, 20, 20)  # differing sizes: squares of the smallest side
    assert load_images([big], size=16).shape == (1, 3, 16, 16)
    gray = load_images([big], mode="L")
    assert gray.shape == (1, 1, 40, 60)
    # center crop keeps the middle: with no resize needed, a 40x40 crop of the 40x60 image starts at column 10
    crop = load_images([big], size=40)
    assert torch.equal(crop[0], load_images([big])[0, :, :, 10:50])


def test_load_images_normalization(tmp_path):
    path = _save(tmp_path / "g.png", np.full((2, 2, 3), 255, np.uint8))
    x = load_images([path], normalize="imagenet")
    mean, std = image_files.NORMALIZATIONS["imagenet"]
    expected = torch.tensor([(1 - m) / s for m, s in zip(mean, std)])
    assert torch.allclose(x[0, :, 0, 0], expected)
    raw = load_images([path])
    before = raw.clone()
    image_files.normalize_images(raw, ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    assert torch.equal(raw, before), "normalization modified its input"
    with pytest.raises(UsageError, match=r"unknown normalization 'imagenot'"):
        image_files.normalize_images(raw, "imagenot")


def test_load_images_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputFileError, match=r"^cannot read image '.*bad\.png': not an image Pillow can read$"):
        load_images([bad])
    with pytest.raises(InputFileError, match=r"^cannot read image '.*gone\.jpg': no such file$"):
        load_images([tmp_path / "gone.jpg"])
    with pytest.raises(UsageError, match="no input images"):
        load_images([])


def test_load_labels(tmp_path):
    txt = tmp_path / "labels.txt"
    txt.write_text("cat\n dog \n<b>bird</b>\n\n")
    assert load_labels(txt) == ["cat", "dog", "<b>bird</b>"]
    js = tmp_path / "labels.json"
    js.write_text(json.dumps(["a", "b"]))
    assert load_labels(js) == ["a", "b"]
    imagenet = tmp_path / "imagenet_class_index.json"
    imagenet.write_text(json.dumps({"1": ["n01443537", "goldfish"], "0": ["n01440764", "tench"]}))
    assert load_labels(imagenet) == ["tench", "goldfish"]
    with pytest.raises(InputFileError, match=r"cannot read labels '.*nope\.txt': no such file"):
        load_labels(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputFileError, match=r"holds no class names"):
        load_labels(empty)
    badjs = tmp_path / "bad.json"
    badjs.write_text("[1, 2")
    with pytest.raises(InputFileError, match=r"invalid JSON"):
        load_labels(badjs)


def test_torchvision_models_with_a_backbone_build_without_downloading(monkeypatch):
    # Segmentation and detection builders default to ImageNet backbone weights (a download); the
    # spec promises random init, so the backbone is random too. Any network access fails the test.
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    model = build_model("torchvision:lraspp_mobilenet_v3_large")
    assert type(model).__name__ == "LRASPP"
