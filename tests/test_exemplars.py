"""exemplars: exact equality with brute force, merging, data forms, crops, torchrun with 2 ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import torchloupe as tl
from tests.helpers import assert_same_state, model_state, tiny_cnn
from torchloupe.errors import ChannelError, InputError, LayerNotFoundError, UnsupportedModelError, UsageError

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


def test_torchrun_two_ranks_equal_single_process(setup, tmp_path):
    model, _ = setup
    data = TensorDataset(torch.rand(53, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    single = tl.synthesis.exemplars(tiny_cnn(seed=0), data, "features.3", k=4, reduce="max", batch_size=8)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "_dist_exemplars.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["multi"] is True and got["world"] == 2
        assert torch.equal(got["indices"], single.indices)
        assert torch.equal(got["values"], single.values)
        assert torch.equal(got["locations"], single.locations)
        assert torch.equal(got["crops"], single.crops)
        assert got["seen"] == 53


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
