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
    with pytest.raises(UsageError, match=r"cannot merge exemplars of 'features.3' \(reduce=mean, negative=False, k=3\)"):
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
