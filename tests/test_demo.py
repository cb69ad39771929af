"""Bundled demo data and models: shapes with exact masks, digits, cached training."""

from __future__ import annotations

import os
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import torchloupe as tl
from torchloupe.demo import cache as demo_cache
from torchloupe.demo.shapes import SHAPE_AREA, SHAPE_CLASSES, render_shapes, shape_geometry, shapes_tensors
from torchloupe.errors import CheckpointError


@pytest.fixture(scope="module")
def shapes():
    return shapes_tensors(200, size=64, seed=3)


def test_items_have_the_contract_types(shapes):
    ds = tl.demo.shapes_dataset(12, size=48, seed=1)
    image, label, mask = ds[5]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert isinstance(label, int) and 0 <= label < len(SHAPE_CLASSES)
    assert mask.shape == (48, 48) and mask.dtype == torch.bool
    assert len(ds) == 12 and ds[-1][1] == ds[11][1]
    with pytest.raises(IndexError, match="index 12 is out of range"):
        ds[12]
    assert tl.demo.SHAPE_CLASSES == ("circle", "square", "triangle", "star", "cross")


def test_deterministic_per_seed_and_index():
    a = tl.demo.shapes_dataset(30, seed=7)
    whole = a.tensors()
    # an item is the same alone, in any batch, and in the whole set
    for i in (0, 13, 29):
        image, label, mask = a[i]
        assert torch.equal(image, whole.images[i]) and label == int(whole.labels[i]) and torch.equal(mask, whole.masks[i])
    part = render_shapes(7, [29, 4])
    assert torch.equal(part.images[1], whole.images[4])
    again = tl.demo.shapes_dataset(30, seed=7).tensors()
    assert all(torch.equal(x, y) for x, y in zip(whole, again))
    other = tl.demo.shapes_dataset(30, seed=8).tensors()
    assert not torch.equal(whole.images, other.images)
    # no global RNG side effects
    torch.manual_seed(123)
    state = torch.get_rng_state()
    tl.demo.shapes_tensors(5)
    assert torch.equal(state, torch.get_rng_state())


def test_labels_are_balanced(shapes):
    counts = torch.bincount(shapes.labels, minlength=len(SHAPE_CLASSES))
    assert counts.tolist() == [40] * 5
    # every run of 5 consecutive indices holds each class once
    assert all(sorted(shapes.labels[i : i + 5].tolist()) == [0, 1, 2, 3, 4] for i in range(0, 200, 5))


def test_mask_area_and_centre_match_the_drawn_geometry(shapes):
    geo = shape_geometry(3, range(200))
    assert torch.equal(geo["label"], shapes.labels)
    area = shapes.masks.flatten(1).sum(1).float()
    for i in range(200):
        name = SHAPE_CLASSES[int(shapes.labels[i])]
        r = float(geo["radius"][i])
        expected = SHAPE_AREA[name] * r * r
        assert abs(float(area[i]) - expected) < 0.08 * expected + 6, (i, name, float(area[i]), expected)
        ys, xs = torch.nonzero(shapes.masks[i], as_tuple=True)
        centroid = torch.stack([xs.float().mean() + 0.5, ys.float().mean() + 0.5])
        assert torch.allclose(centroid, geo["center"][i], atol=1.0), (i, name)
    # the whole object fits in the image: the mask never touches the border
    assert not shapes.masks[:, 0].any() and not shapes.masks[:, -1].any()
    assert not shapes.masks[:, :, 0].any() and not shapes.masks[:, :, -1].any()


def test_mask_pixels_have_the_object_colour(shapes):
    """Inside the mask the colour differs from the background right around the object."""
    for i in range(0, 200, 7):
        img, mask = shapes.images[i], shapes.masks[i]
        grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 7, stride=1, padding=3)[0, 0].bool()
        ring = grown & ~mask
        inside = img[:, mask].median(dim=1).values
        around = img[:, ring].median(dim=1).values
        assert float((inside - around).abs().max()) > 0.3, i
        # the object is one colour (plus shading and noise): small spread inside the mask
        assert float(img[:, mask].std(dim=1).max()) < 0.12, i


def test_generation_is_fast():
    start = time.perf_counter()
    tl.demo.shapes_tensors(1000)
    # ~0.5 s on an idle 2-core machine; the bound leaves room for a machine shared with others
    assert time.perf_counter() - start < 20.0


def test_dataloader_batches():
    loader = DataLoader(tl.demo.shapes_dataset(10), batch_size=4)
    images, labels, masks = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and labels.shape == (4,) and masks.shape == (4, 64, 64)
    assert torch.equal(images[2], tl.demo.shapes_dataset(10)[2][0])


def test_digits():
    x, y = tl.demo.digits_tensors()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    ds = tl.demo.digits_dataset()
    assert len(ds) == 1797 and ds[0][0].shape == (1, 8, 8)
    split = tl.demo.digits_split(seed=0)
    again = tl.demo.digits_split(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(split, again))
    assert len(split.y_train) + len(split.y_test) == 1797
    assert abs(len(split.y_test) - 0.25 * 1797) < 6
    counts = torch.bincount(split.y_test, minlength=10)
    assert int(counts.min()) >= 44 and int(counts.max()) <= 46  # stratified
    # train and test are disjoint sets of images
    tr = {tuple(v.flatten().tolist()) + (int(c),) for v, c in zip(split.x_train, split.y_train)}
    te = [tuple(v.flatten().tolist()) + (int(c),) for v, c in zip(split.x_test, split.y_test)]
    assert sum(t in tr for t in te) < 5  # the raw set holds a few duplicate images
    assert tl.demo.DIGIT_CLASSES == tuple("0123456789")


def test_digits_cached_copy_equals_scikit_learn(monkeypatch, tmp_path):
    from sklearn.datasets import load_digits

    from torchloupe.demo import digits as digits_mod

    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    ref = load_digits()
    first = digits_mod.digits_tensors()
    assert (tmp_path / "sklearn-digits-v1.pt").exists()

    def no_sklearn():
        raise AssertionError("scikit-learn loaded although the cached copy exists")

    monkeypatch.setattr(digits_mod, "_load_sklearn", no_sklearn)
    second = digits_mod.digits_tensors()
    want_x = torch.as_tensor(ref.images, dtype=torch.float32).div(16.0).unsqueeze(1)
    for x, y in (first, second):
        assert torch.equal(x, want_x) and torch.equal(y, torch.as_tensor(ref.target))
    (tmp_path / "sklearn-digits-v1.pt").write_bytes(b"truncated")  # a broken copy is replaced
    monkeypatch.undo()
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    assert torch.equal(digits_mod.digits_tensors()[0], want_x)
    assert torch.load(tmp_path / "sklearn-digits-v1.pt", weights_only=True)["images"].shape == (1797, 8, 8)


# ---------------------------------------------------------------- cache

def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo_cache.cache_dir() == tmp_path / "a" and (tmp_path / "a").is_dir()
    monkeypatch.delenv("TORCHLOUPE_CACHE")
    assert demo_cache.cache_dir() == tmp_path / "xdg" / "torchloupe"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert demo_cache.cache_dir(create=False) == tmp_path / "home" / ".cache" / "torchloupe"
    with pytest.raises(ValueError, match="cache key '../evil'"):
        demo_cache.cache_path("../evil")


def test_load_or_train_trains_once_then_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    calls = []

    def build():
        return nn.Linear(3, 2)

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        model.train()

    first = demo_cache.load_or_train("toy-v1", build, train)
    assert calls == [1] and not first.training
    assert (tmp_path / "toy-v1.pt").exists()
    second = demo_cache.load_or_train("toy-v1", build, train)
    assert calls == [1] and torch.equal(second.weight, torch.full((2, 3), 0.5)) and not second.training
    demo_cache.load_or_train("toy-v1", build, train, retrain=True)
    assert calls == [1, 1]
    # a truncated or unfitting file is retrained and overwritten
    (tmp_path / "toy-v1.pt").write_bytes(b"not a checkpoint")
    demo_cache.load_or_train("toy-v1", build, train)
    assert calls == [1, 1, 1]
    with pytest.raises(CheckpointError, match="toy-v1.pt"):
        demo_cache.load_state(nn.Linear(4, 4), tmp_path / "toy-v1.pt")


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['LOUPE_MARKER']}",))


def test_cached_weights_load_with_weights_only(monkeypatch, tmp_path):
    """A malicious pickle in the cache is never executed: weights_only refuses it, we retrain."""
    marker = tmp_path / "pwned"
    monkeypatch.setenv("LOUPE_MARKER", str(marker))
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    torch.save({"weight": _Payload()}, tmp_path / "toy-v2.pt")
    trained = []
    model = demo_cache.load_or_train("toy-v2", lambda: nn.Linear(2, 2), lambda m: trained.append(1))
    assert not marker.exists()
    assert trained == [1] and isinstance(model, nn.Linear)


# ---------------------------------------------------------------- trained models

def test_digits_models_train_fast_and_accurately(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    split = tl.demo.digits_split()
    from torchloupe.demo.models import accuracy

    threads = torch.get_num_threads()
    start = time.perf_counter()
    mlp = tl.demo.train_digits_model(progress=True)
    assert torch.get_num_threads() == threads  # the training thread setting is restored
    assert time.perf_counter() - start < 60  # ~2 s on an idle machine
    assert "training digits MLP" in capsys.readouterr().err  # the progress bar, on stderr
    assert accuracy(mlp, split.x_test, split.y_test) >= 0.95
    assert [n for n, _ in mlp.named_children()] == ["flatten", "fc1", "relu", "fc2"]
    linear = tl.demo.train_digits_model(hidden=0, progress=False)
    assert capsys.readouterr().err == ""
    assert accuracy(linear, split.x_test, split.y_test) >= 0.93
    # cached: the second call loads the same weights without training
    again = tl.demo.train_digits_model(progress=True)
    assert capsys.readouterr().err == ""
    assert all(torch.equal(a, b) for a, b in zip(mlp.state_dict().values(), again.state_dict().values()))


@pytest.fixture(scope="module")
def shapes_model():
    # Uses the user's cache directory: trained once per machine (about 10-20 s on 2 cores).
    return tl.demo.train_shapes_model(0, progress=False)


def test_shapes_model_is_accurate_on_held_out_images(shapes_model):
    from torchloupe.demo.models import accuracy, shapes_splits

    _, held_out = shapes_splits(0)
    acc = accuracy(shapes_model, held_out.images, held_out.labels)
    assert acc >= 0.97, acc
    assert not shapes_model.training


def test_shapes_model_ends_in_gap_and_linear(shapes_model):
    names = [n for n, _ in shapes_model.named_modules()]
    for n in ("features.conv1", "features.relu4", "gap", "fc"):
        assert n in names
    assert isinstance(shapes_model.gap, nn.AdaptiveAvgPool2d) and isinstance(shapes_model.fc, nn.Linear)
    x = tl.demo.shapes_tensors(4).images
    acts = tl.activations(shapes_model, x, ["features.relu4", "fc"])
    # CAM applies: the logits are the linear layer on the spatial mean of the last feature maps
    cam_logits = acts["features.relu4"].mean(dim=(2, 3)) @ shapes_model.fc.weight.T + shapes_model.fc.bias
    assert torch.allclose(cam_logits, acts["fc"], atol=1e-4)


def test_subjects(shapes_model):
    from torchloupe.app.subjects import digits as digits_subjects
    from torchloupe.app.subjects import shapes as shapes_subjects

    s = shapes_subjects.shapes_subject(0, n=8, progress=False)
    assert s.inputs.shape == (8, 3, 64, 64) and s.masks.shape == (8, 64, 64)
    assert s.labels == list(SHAPE_CLASSES) and torch.equal(s.display_images, s.inputs)
    assert all(tl.find_layer(s.model, n) is not None for n in s.layers)
    held = s.dataset
    assert torch.equal(held[3][0], s.inputs[3]) and int(s.targets[3]) == held[3][1]
    d = digits_subjects.digits_subjects(0)
    assert [x.name for x in d] == ["digits MLP", "digits linear classifier"]
    assert d[0].inputs.shape == (8, 1, 8, 8) and d[0].targets.tolist() == list(range(8))


def test_uncached_demo_models_are_deferred_to_the_worker_that_runs_their_sections(monkeypatch, tmp_path):
    """With an empty cache the demo families return DeferredSubjects without training anything;
    loading one trains and caches its model, after which the family returns it as a plain Subject."""
    from torchloupe.demo.cache import NotCached, cached_only, load_or_train
    from torchloupe.app.subjects import sequences, shapes
    from torchloupe.reporting import DeferredSubject, Subject

    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    with cached_only(), pytest.raises(NotCached, match="tiny-v1 is not in the cache"):
        load_or_train("tiny-v1", build=lambda: torch.nn.Linear(2, 2), train=lambda m: None)
    assert load_or_train("tiny-v1", build=lambda: torch.nn.Linear(2, 2), train=lambda m: None).training is False
    with cached_only():  # cached: loads
        load_or_train("tiny-v1", build=lambda: torch.nn.Linear(2, 2), train=lambda m: None)
    (s,) = shapes.subjects({"seed": 0, "progress": False})
    assert isinstance(s, DeferredSubject) and s.name == "shapes CNN" and s.sections is None
    seq = sequences.subjects({"seed": 0})
    assert all(isinstance(x, DeferredSubject) for x in seq)
    assert [x.name for x in seq][:3] == [sequences.COPY, sequences.LSTM, sequences.MEMORY]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-v1.pt"]  # nothing trained
    lstm = seq[1].load()
    assert isinstance(lstm, Subject) and lstm.name == sequences.LSTM and tuple(lstm.sections) == sequences.RECURRENT
    again = sequences.subjects({"seed": 0})
    assert isinstance(again[1], Subject) and isinstance(again[0], DeferredSubject)
    for a, b in zip(again[1].model.state_dict().values(), lstm.model.state_dict().values()):
        assert torch.equal(a, b)
