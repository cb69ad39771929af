"""exemplars: exact equality with brute force and with main before the speed work, merging, resuming, data
forms, crops, the command line's --save / --merge / --start / --stop (torchrun: tests/test_distributed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import torchloupe as tl
from tests.helpers import assert_same_state, model_state, tiny_cnn
from torchloupe.errors import (ChannelError, InputError, InputShapeError, LayerNotFoundError, UnsupportedModelError,
                               UsageError)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup():
    model = tiny_cnn(seed=0)
    data = torch.rand(53, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return model, data


def _brute(model, data, layer, batch, reduce, negative):
    """Full activation table, batched as exemplars batches it, then one stable sort."""
    acts = torch.cat([tl.activations(model, d, layer)[layer] for d in data.split(batch)])
    flat = acts.flatten(2)
    if reduce == "mean":
        v = flat.mean(-1)
    else:
        v = flat.amin(-1) if negative else flat.amax(-1)
    v = v.T  # (C, N)
    idx = torch.sort(v, dim=1, descending=not negative, stable=True).indices
    loc = (flat.argmin(-1) if negative else flat.argmax(-1)).T  # (C, N)
    return v, idx, loc, acts.shape[-1]


@pytest.mark.parametrize("reduce", ["mean", "max"])
@pytest.mark.parametrize("negative", [False, True])
def test_equals_brute_force(setup, reduce, negative):
    model, data = setup
    ex = tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=5, reduce=reduce,
                                negative=negative, batch_size=8)
    v, idx, loc, w = _brute(model, data, "features.3", 8, reduce, negative)
    top = idx[:, :5]
    assert torch.equal(ex.indices, top)
    assert torch.equal(ex.values, v.gather(1, top))
    l = loc.gather(1, top)
    assert torch.equal(ex.locations, torch.stack([l // w, l % w], -1))
    assert ex.channels == tuple(range(16)) and ex.seen == 53 and ex.layer == "features.3"
    # crops are the input under the boxes
    for c in (0, 7):
        for j in (0, 4):
            y0, x0, y1, x1 = ex.boxes[c, j].tolist()
            assert (y1 - y0, x1 - x0) == (5, 5)  # two 3x3 convs
            assert torch.equal(ex.crops[c, j], data[int(ex.indices[c, j]), :, y0:y1, x0:x1])


def test_receptive_field_box_is_centred_on_the_argmax():
    from torchloupe.synthesis.exemplars import receptive_field

    model, data = tiny_cnn(seed=0).eval(), torch.rand(4, 3, 16, 16)
    rh, rw, y0, x0, sy, sx = receptive_field(model, model.features[3], data[:1])
    assert (rh, rw, sy, sx) == (5, 5, 1.0, 1.0)
    assert (y0, x0) == (-2.0, -2.0)  # unit (i, j) sees input rows i-2 .. i+2


def test_receptive_field_of_a_model_in_training_mode_is_measured_in_eval_mode():
    # In training mode BatchNorm normalizes with batch statistics: every output would depend on
    # every input pixel (a 16x16 "field") and the running statistics would move. The measurement
    # runs in a session: eval mode, the same box as above, the model back as it was.
    from torchloupe.synthesis.exemplars import receptive_field

    model, data = tiny_cnn(seed=0), torch.rand(4, 3, 16, 16)
    before = model_state(model)
    assert receptive_field(model, model.features[3], data[:1]) == (5, 5, -2.0, -2.0, 1.0, 1.0)
    assert_same_state(before, model_state(model))


def test_preactivation_of_conv_before_inplace_relu(setup):
    model, data = setup  # features.0 is followed by ReLU(inplace=True)
    ex = tl.synthesis.exemplars(model, data.split(10), "features.0", k=3, negative=True, crops=False)
    with torch.no_grad():
        conv = model.features[0](data).mean((2, 3)).T
    assert (ex.values[:, 0] < 0).any()
    assert torch.allclose(ex.values, torch.sort(conv, 1).values[:, :3], atol=1e-6)
    assert ex.crops is None and ex.boxes is None


def test_data_forms_merge_and_resume(setup):
    model, data = setup
    full = tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=4, batch_size=10)
    labels = torch.arange(53)
    forms = [
        DataLoader(TensorDataset(data, labels), batch_size=10),
        [(d, l) for d, l in zip(data.split(10), labels.split(10))],
        iter(data.split(10)),
    ]
    for form in forms:
        ex = tl.synthesis.exemplars(model, form, "features.3", k=4)
        assert torch.equal(ex.indices, full.indices) and torch.equal(ex.values, full.values)
        assert torch.equal(ex.crops, full.crops)
    a = tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=4, batch_size=10, stop=30)
    b = tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=4, batch_size=10, start=30)
    m = tl.synthesis.merge(b, a)
    assert torch.equal(m.indices, full.indices) and torch.equal(m.crops, full.crops) and m.seen == 53
    assert a.seen == 30 and int(a.indices.max()) < 30 and int(b.indices.min()) >= 30


def test_fewer_samples_than_k_and_channels_subset_and_linear_layer(setup):
    model, data = setup
    ex = tl.synthesis.exemplars(model, data[:3].split(2), "fc", k=5, channels=[2, 0])
    with torch.no_grad():
        logits = model.eval()(data[:3])
    model.train()
    assert ex.channels == (2, 0)
    assert ex.indices[:, 3:].eq(-1).all() and ex.locations is None and ex.crops is None
    assert torch.equal(ex.indices[0, :3], torch.sort(logits[:, 2], descending=True, stable=True).indices)
    assert torch.allclose(ex.values[1, :3], torch.sort(logits[:, 0], descending=True).values)


def test_errors_and_no_global_rng(setup):
    model, data = setup
    with pytest.raises(LayerNotFoundError):
        tl.synthesis.exemplars(model, [data], "features.9")
    with pytest.raises(ChannelError, match="16 channels"):
        tl.synthesis.exemplars(model, [data], "features.3", channels=[16])
    with pytest.raises(ValueError, match="reduce"):
        tl.synthesis.exemplars(model, [data], "features.3", reduce="median")
    with pytest.raises(UsageError, match="reduce='median' is not known; expected 'mean' or 'max'"):
        tl.synthesis.exemplars(model, [data], "features.3", reduce="median")
    with pytest.raises(UsageError, match="k must be a positive int, got 0"):
        tl.synthesis.exemplars(model, [data], "features.3", k=0)
    with pytest.raises(UsageError, match="batch_size must be positive, got 0"):
        tl.synthesis.exemplars(model, TensorDataset(data), "features.3", batch_size=0)
    with pytest.raises(UsageError, match="need 0 <= start <= stop, got start=5, stop=2"):
        tl.synthesis.exemplars(model, [data], "features.3", start=5, stop=2)
    with pytest.raises(InputError, match="data must be a Dataset, a DataLoader or an iterable of batches, got int"):
        tl.synthesis.exemplars(model, 3, "features.3")
    with pytest.raises(UnsupportedModelError, match="model: expected an nn.Module, got str"):
        tl.synthesis.exemplars("model", [data], "features.3")
    one = tl.synthesis.exemplars(model, [data[:4]], "features.3", k=2)
    other = tl.synthesis.exemplars(model, [data[:4]], "features.3", k=3)
    with pytest.raises(UsageError, match="merge needs at least one ExemplarResult"):
        tl.synthesis.merge()
    with pytest.raises(UsageError, match=r"cannot merge exemplars with k=3 into exemplars with k=2; merged results need the same layer"):
        tl.synthesis.merge(one, other)
    state = torch.get_rng_state()
    tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=2)
    assert torch.equal(torch.get_rng_state(), state)


def test_receptive_field_covering_the_input_crops_whole_samples():
    model = tiny_cnn(seed=0)
    data = torch.rand(9, 3, 4, 4, generator=torch.Generator().manual_seed(1))  # RF 5x5 > 4x4
    ex = tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=3, batch_size=4)
    it = tl.synthesis.exemplars(model, data.split(4), "features.3", k=3)  # streamed crops
    assert torch.equal(ex.crops, data[ex.indices]) and torch.equal(it.crops, ex.crops)
    assert ex.boxes[0, 0].tolist() == [0, 0, 4, 4]


# --- every layout -------------------------------------------------------------------------
def test_conv1d_planted_spikes_give_step_locations_and_windows():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1),
                                torch.nn.Flatten(), torch.nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[0.1, 1.0, 0.1]], [[-0.1, -1.0, -0.1]]]))
        model[0].bias.zero_()
    steps = [(7 * i + 3) % 29 + 1 for i in range(20)]  # 1..29: windows inside the 32 steps
    x = torch.zeros(20, 1, 32)
    for i, t in enumerate(steps):
        x[i, 0, t] = 1.0 + 0.1 * i
    ex = tl.synthesis.exemplars(model, TensorDataset(x), "0", k=3, reduce="max", batch_size=6)
    assert ex.layout.kind == "conv" and ex.channels == (0, 1)
    assert ex.indices[0].tolist() == [19, 18, 17]  # the highest spikes, by construction
    assert ex.locations.shape == (2, 3, 1)
    assert ex.locations[0, :, 0].tolist() == [steps[19], steps[18], steps[17]]
    torch.testing.assert_close(ex.values[0], torch.tensor([2.9, 2.8, 2.7]))
    # a step sees a window of 3 steps centred on it: the crop is the spike with its neighbours
    for j in range(3):
        t = steps[19 - j]
        assert ex.boxes[0, j].tolist() == [t - 1, t + 2]
        assert torch.equal(ex.crops[0, j], x[19 - j, :, t - 1:t + 2])
    # channel 1 is the negated detector: its lowest samples are the same, with the same steps
    neg = tl.synthesis.exemplars(model, x.split(7), "0", k=2, reduce="max", negative=True, channels=[1])
    assert neg.indices[0].tolist() == [19, 18]
    assert neg.locations[0, :, 0].tolist() == [steps[19], steps[18]]


def test_conv3d_planted_voxels():
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 1, 3, padding=1), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    with torch.no_grad():
        w = torch.full((1, 1, 3, 3, 3), 0.01)
        w[0, 0, 1, 1, 1] = 1.0
        model[0].weight.copy_(w)
        model[0].bias.zero_()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(9, 1, 5, 6, 7, generator=g) * 0.1
    voxels = [(1 + i % 3, 1 + (2 * i) % 4, 1 + (3 * i) % 5) for i in range(9)]
    for i, v in enumerate(voxels):
        x[i, 0, v[0], v[1], v[2]] = 2.0 + i
    model(x[:1])  # materialize the lazy head
    ex = tl.synthesis.exemplars(model, TensorDataset(x), "0", k=4, reduce="max", batch_size=4)
    assert ex.indices[0].tolist() == [8, 7, 6, 5]
    assert [tuple(v) for v in ex.locations[0].tolist()] == [voxels[i] for i in (8, 7, 6, 5)]
    # the 3x3x3 neighbourhood of the voxel
    for j, i in enumerate((8, 7, 6, 5)):
        d, h, w_ = voxels[i]
        assert ex.boxes[0, j].tolist() == [d - 1, h - 1, w_ - 1, d + 2, h + 2, w_ + 2]
        assert torch.equal(ex.crops[0, j], x[i, :, d - 1:d + 2, h - 1:h + 2, w_ - 1:w_ + 2])
    # brute force over the layer's values (mean over voxels)
    mean = tl.synthesis.exemplars(model, TensorDataset(x), "0", k=9, crops=False)
    with torch.no_grad():
        want = model[0](x).mean((1, 2, 3, 4))
    assert torch.equal(mean.indices[0], torch.sort(want, descending=True, stable=True).indices)


class TinyViT(torch.nn.Module):
    """Patches of 8x8 -> one token each (feature c = mean of colour c over the patch), a class token,
    an identity Linear over the features."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 3, 8, stride=8, bias=False)
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, 3))
        self.proj = torch.nn.Linear(3, 3)
        self.head = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.patch.weight.zero_()
            for c in range(3):
                self.patch.weight[c, c] = 1 / 64
            self.proj.weight.copy_(torch.eye(3))
            self.proj.bias.zero_()

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, 3)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)
        return self.head(self.proj(t).mean(1))


def test_token_layer_channels_are_features_and_locations_tokens_with_their_patch():
    model = TinyViT()
    x = torch.zeros(12, 3, 32, 32)
    planted = [(i % 3, (5 * i) % 16, 0.5 + 0.05 * i) for i in range(12)]  # colour, patch, brightness
    for i, (c, p, v) in enumerate(planted):
        r, q = divmod(p, 4)
        x[i, c, 8 * r:8 * r + 8, 8 * q:8 * q + 8] = v
    ex = tl.synthesis.exemplars(model, TensorDataset(x), "proj", k=2, reduce="max", batch_size=5)
    lay = ex.layout
    assert (lay.kind, lay.extra, lay.grid, lay.channels) == ("tokens", 1, (4, 4), 3)
    assert ex.channels == (0, 1, 2)  # features, not 17 tokens
    for c in range(3):
        best = sorted((i for i in range(12) if planted[i][0] == c), key=lambda i: -planted[i][2])[:2]
        assert ex.indices[c].tolist() == best
        for j, i in enumerate(best):
            p = planted[i][1]
            assert ex.locations[c, j].tolist() == [1 + p]  # the token, after the class token
            torch.testing.assert_close(ex.values[c, j], torch.tensor(planted[i][2]))
            r, q = divmod(p, 4)
            assert ex.boxes[c, j].tolist() == [8 * r, 8 * q, 8 * r + 8, 8 * q + 8]
            assert torch.equal(ex.crops[c, j], x[i, :, 8 * r:8 * r + 8, 8 * q:8 * q + 8])


def test_class_token_winner_has_the_whole_image_as_box_and_no_crop():
    model = TinyViT()
    with torch.no_grad():
        model.cls.fill_(5.0)  # the class token beats every patch
    x = torch.rand(4, 3, 32, 32)
    ex = tl.synthesis.exemplars(model, TensorDataset(x), "proj", k=2, reduce="max", channels=[0])
    assert ex.locations[0, :, 0].tolist() == [0, 0]
    assert ex.boxes[0].tolist() == [[0, 0, 32, 32]] * 2
    assert torch.equal(ex.crops[0], torch.zeros(2, 3, 8, 8))


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Linear(5, 4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, img, vec):
        h = torch.relu(self.a(img) + self.b(vec)[:, :, None, None])
        return self.fc(h.mean((2, 3)))


def test_multi_input_tuple_and_dict_items_equal_brute_force():
    torch.manual_seed(0)
    model = TwoInputs()
    g = torch.Generator().manual_seed(3)
    img, vec = torch.rand(11, 3, 8, 8, generator=g), torch.randn(11, 5, generator=g)
    with torch.no_grad():
        want = tl.activations(model, (img, vec), ["a"])["a"]
    order = torch.sort(want.mean((2, 3)).T, dim=1, descending=True, stable=True).indices[:, :3]

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 11

        def __getitem__(self, i):
            return (img[i], vec[i]), i % 2

    class Dicts(Pairs):
        def __getitem__(self, i):
            return {"img": img[i], "vec": vec[i]}

    forms = [Pairs(), Dicts(), [((img[:6], vec[:6]), torch.zeros(6)), ((img[6:], vec[6:]), torch.zeros(5))],
             DataLoader(Dicts(), batch_size=4)]
    for form in forms:
        ex = tl.synthesis.exemplars(model, form, "a", k=3, batch_size=4)
        assert torch.equal(ex.indices, order)
        # crops are cut from the image input (wrt=0 / "img"): 3x3 windows
        assert ex.crops.shape == (4, 3, 3, 3, 3)
        y0, x0, y1, x1 = ex.boxes[1, 0].tolist()
        assert torch.equal(ex.crops[1, 0], img[int(ex.indices[1, 0]), :, y0:y1, x0:x1])
    with pytest.raises(InputError, match="wrt=2"):
        tl.synthesis.exemplars(model, Pairs(), "a", k=3, wrt=2)


# --- the same answers as before, faster; merging and resuming -----------------------------
def _main_cases():
    """The cases of tests/data/exemplars_main.pt: written by main at d28f63c, before crops were cut on
    demand (every field of every case, crops included, as that code computed them)."""
    model = tiny_cnn(seed=0)
    data = torch.rand(53, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for reduce in ("mean", "max"):
        for neg in (False, True):
            kw = dict(k=4, reduce=reduce, negative=neg)
            yield f"ds-{reduce}-{neg}", lambda kw=kw: tl.synthesis.exemplars(model, TensorDataset(data), "features.3",
                                                                              batch_size=8, **kw)
            yield f"it-{reduce}-{neg}", lambda kw=kw: tl.synthesis.exemplars(model, data.split(7), "features.3", **kw)
    small = torch.rand(9, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    yield "whole-ds", lambda: tl.synthesis.exemplars(model, TensorDataset(small), "features.3", k=3, batch_size=4)
    yield "whole-it", lambda: tl.synthesis.exemplars(model, small.split(4), "features.3", k=3)
    yield "few", lambda: tl.synthesis.exemplars(model, TensorDataset(data[:3]), "features.3", k=5, channels=[3, 1],
                                                batch_size=2)
    vit = TinyViT()
    with torch.no_grad():
        vit.cls.fill_(0.6)  # the class token wins some rows: zero crops among real ones
    x = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    yield "vit-ds", lambda: tl.synthesis.exemplars(vit, TensorDataset(x), "proj", k=3, reduce="max", batch_size=5)
    yield "vit-it", lambda: tl.synthesis.exemplars(vit, x.split(5), "proj", k=3, reduce="max")


def test_bit_identical_to_main_before_the_speed_work():
    want = torch.load(ROOT / "tests" / "data" / "exemplars_main.pt", weights_only=True)
    names = []
    for name, run in _main_cases():
        ex = run()
        names.append(name)
        for field, w in want[name].items():
            got = getattr(ex, field)
            if not isinstance(w, torch.Tensor):
                assert got == w, (name, field)
                continue
            assert got.dtype == w.dtype and got.shape == w.shape, (name, field)
            assert torch.equal(got.isnan(), w.isnan()) and torch.equal(got.nan_to_num(), w.nan_to_num()), (name, field)
    assert sorted(names) == sorted(want)
    vit = want["vit-it"]
    assert (vit["indices"] >= 0).all() and not vit["crops"].flatten(2).any(-1).all()  # some zero crops, by design


def test_crops_are_cut_from_the_winners_inputs_once_each(setup):
    model, data = setup
    ex = tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=4, batch_size=10)
    used = torch.unique(ex.indices)
    assert ex.samples.shape == (len(used), 3, 16, 16)  # each winner's input once, by dataset index
    assert torch.equal(ex.samples, data[used]) and torch.equal(used[ex.sample_of], ex.indices)
    for c, j in ((0, 0), (5, 3), (15, 2)):
        assert torch.equal(ex.crop(c, j), ex.crops[c, j])
    off = tl.synthesis.exemplars(model, TensorDataset(data), "features.3", k=4, batch_size=10, crops=False)
    assert off.crops is None and off.samples is None and off.crop(0, 0) is None
    assert torch.equal(off.indices, ex.indices)


def test_merge_of_ranges_equals_the_full_run_and_refuses_what_does_not_fit(setup):
    model, data = setup
    ds = TensorDataset(data)
    full = tl.synthesis.exemplars(model, ds, "features.3", k=4, batch_size=10)
    parts = [tl.synthesis.exemplars(model, ds, "features.3", k=4, batch_size=10, start=a, stop=b)
             for a, b in ((30, 53), (0, 10), (10, 30))]
    m = tl.synthesis.merge(*parts)
    for f in ("values", "indices", "locations", "boxes", "samples", "sample_of", "crops"):
        assert torch.equal(getattr(m, f), getattr(full, f)), f
    assert m.spans == full.spans == ((0, 53),) and m.seen == 53 and m.model == full.model
    back = tl.synthesis.ExemplarResult.from_dict(torch.load(_saved(full), weights_only=True))
    assert torch.equal(back.crops, full.crops) and back.layout == full.layout and back.spans == full.spans
    with pytest.raises(UsageError, match=r"share samples \[5, 10\); each sample must be in one result"):
        tl.synthesis.merge(parts[1], tl.synthesis.exemplars(model, ds, "features.3", k=4, batch_size=10, start=5,
                                                            stop=20))
    other = tiny_cnn(seed=1)
    theirs = tl.synthesis.exemplars(other, ds, "features.3", k=4, batch_size=10, start=30)
    with pytest.raises(UsageError, match=r"cannot merge exemplars with model='TinyCNN \(1,508 parameters, [0-9a-f]+\)'"):
        tl.synthesis.merge(parts[1], theirs)
    with pytest.raises(UsageError, match="cannot merge exemplars with layer='features.0'"):
        tl.synthesis.merge(parts[1], tl.synthesis.exemplars(model, ds, "features.0", k=4, start=30))
    with pytest.raises(UsageError, match="cannot merge exemplars with reduce='max'"):
        tl.synthesis.merge(parts[1], tl.synthesis.exemplars(model, ds, "features.3", k=4, start=30, reduce="max"))
    with pytest.raises(UsageError, match="cannot merge a result with crops and one without"):
        tl.synthesis.merge(parts[1], tl.synthesis.exemplars(model, ds, "features.3", k=4, start=30, crops=False))


def _saved(ex):
    import io

    buf = io.BytesIO()
    torch.save(ex.to_dict(), buf)
    buf.seek(0)
    return buf


def test_receptive_field_is_measured_again_when_the_weights_change():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1, bias=False), torch.nn.Flatten())
    data = TensorDataset(torch.rand(6, 1, 9, 9, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 1, 1] = 1.0  # only the centre tap: each position sees one pixel
    one = tl.synthesis.exemplars(model, data, "0", k=2, reduce="max")
    assert one.crop_size == (1, 1)
    with torch.no_grad():
        model[0].weight.fill_(0.5)  # in place, the same tensor: all nine taps
    three = tl.synthesis.exemplars(model, data, "0", k=2, reduce="max")
    assert three.crop_size == (3, 3)
    for ex, r in ((one, 0), (three, 1)):  # the box: the position and r pixels around it, inside the 9 x 9 input
        y, x = ex.locations[0, 0].tolist()
        y0, x0 = min(max(y - r, 0), 8 - 2 * r), min(max(x - r, 0), 8 - 2 * r)
        assert ex.boxes[0, 0].tolist() == [y0, x0, y0 + 2 * r + 1, x0 + 2 * r + 1]
        i = int(ex.indices[0, 0])
        assert torch.equal(ex.crop(0, 0), data.tensors[0][i, :, y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1])


def test_batches_of_another_input_shape_with_crops_are_one_line():
    model = tiny_cnn(seed=0)
    batches = [torch.rand(4, 3, 16, 16), torch.rand(4, 3, 12, 12)]
    with pytest.raises(InputShapeError, match=r"the data batch at sample 4 has inputs of shape \(3, 12, 12\) but "
                                              r"the first had \(3, 16, 16\); crops need one input shape"):
        tl.synthesis.exemplars(model, batches, "features.3", k=2)
    ex = tl.synthesis.exemplars(model, batches, "features.3", k=2, crops=False)  # no crops: any size
    assert ex.seen == 8


# --- the command line: --start / --stop / --save / --merge ------------------------------
MODEL = """
import torch
from torch import nn

def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 5, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
"""


def test_cli_ranges_saved_then_merged_equal_the_full_run(tmp_path, capsys):
    from torchloupe.app.cli import main

    (tmp_path / "m.py").write_text(MODEL)
    spec = f"{tmp_path / 'm.py'}:factory"
    torch.save(torch.rand(23, 3, 10, 10, generator=torch.Generator().manual_seed(0)), tmp_path / "d.pt")
    base = ["exemplars", "--model", spec, "--data", str(tmp_path / "d.pt"), "--layer", "2", "--k", "3",
            "--batch-size", "4", "--no-progress"]
    for name, rng in (("all", []), ("a", ["--stop", "10"]), ("b", ["--start", "10", "--stop", "17"]),
                      ("c", ["--start", "17"])):
        assert main([*base, *rng, "--save", str(tmp_path / f"{name}.pt")]) == 0
    capsys.readouterr()
    assert main(["exemplars", "--merge", *(str(tmp_path / f"{n}.pt") for n in "cab"), "--save",
                 str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2: top-3 of 23 samples, reduce=mean, merged from 3 files: samples [0, 23)"
    full, merged = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("all", "m"))
    for f in ("values", "indices", "locations", "boxes", "samples", "sample_of", "seen", "spans", "model"):
        w, g = full[f], merged[f]
        assert torch.equal(w, g) if isinstance(w, torch.Tensor) else w == g, f
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["exemplars", "--merge", str(tmp_path / "a.pt"), str(tmp_path / "all.pt")]) == 2
    assert "share samples [0, 10)" in capsys.readouterr().err
    torch.save({"x": torch.zeros(1)}, tmp_path / "junk.pt")
    assert main(["exemplars", "--merge", str(tmp_path / "junk.pt")]) == 2
    assert capsys.readouterr().err.strip() == (f"loupe: error: --merge {str(tmp_path / 'junk.pt')!r} is not a result "
                                               f"loupe exemplars --save wrote")
    assert main(["exemplars", "--data", str(tmp_path / "d.pt"), "--layer", "2"]) == 2
    assert "--model required (only --merge runs without a model)" in capsys.readouterr().err


def test_a_plain_tensor_of_samples_is_a_dataset():
    """``exemplars(model, x)`` with ``x`` of shape (N, ...): the same result as its TensorDataset."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    x = torch.randn(10, 3, 8, 8)
    a = tl.synthesis.exemplars(model, x, "1", k=3, batch_size=4, progress=False)
    b = tl.synthesis.exemplars(model, TensorDataset(x), "1", k=3, batch_size=4, progress=False)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    brute = model[:2](x).mean((2, 3)).T  # (channels, N): the top-3 per channel by hand
    assert torch.equal(a.indices, brute.topk(3, dim=1).indices)
    with pytest.raises(tl.errors.InputShapeError, match="expected \\(N, ...\\)"):
        tl.synthesis.exemplars(model, torch.randn(10), "1", progress=False)
