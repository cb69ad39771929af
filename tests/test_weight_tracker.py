"""WeightTracker on a real training run (an MLP on scikit-learn's digits) and on tiny models with set weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from torchloupe.errors import CheckpointError, LayerNotFoundError, UnsupportedModelError
from torchloupe.weights.tracker import STATS, TrackerError, WeightHistory, WeightTracker


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread gives the same numbers and is far faster on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


STEPS, EVERY = 60, 5


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _train(with_tracker: bool, steps=STEPS, seed=0, **tracker_kw):
    """The user's loop. Returns losses, per-step weight/grad copies, the tracker and the model."""
    X, y = _digits()
    model = _mlp(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    tracker = WeightTracker(model, every=EVERY, input_shape=(8, 8), **tracker_kw) if with_tracker else None
    states = {0: {n: p.detach().clone() for n, p in model.named_parameters()}}
    grads, losses, grad_ids_ok = {}, [], True
    for k in range(1, steps + 1):
        idx = torch.randint(0, len(X), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())
        if tracker is not None:
            ids = [(id(p.grad), p.grad.clone()) for p in model.parameters()]
            tracker.step()
            grad_ids_ok &= all(
                id(p.grad) == i and torch.equal(p.grad, c) for p, (i, c) in zip(model.parameters(), ids)
            )
        states[k] = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads[k] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    if tracker is not None:
        tracker.close()
    return losses, states, grads, tracker, model, grad_ids_ok


@pytest.fixture(scope="module")
def run():
    return _train(True)


def test_losses_bitwise_equal_with_and_without_tracker(run):
    losses, *_ = run
    bare, *_ = _train(False)
    assert len(losses) == len(bare) == STEPS
    assert all(torch.equal(a, b) for a, b in zip(losses, bare))


def test_no_hooks_and_grads_untouched(run):
    *_, tracker, model, grad_ids_ok = run
    assert grad_ids_ok, "tracker.step() replaced or changed a .grad"
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            assert len(getattr(m, attr)) == 0, (m, attr)
    for p in model.parameters():
        assert p._backward_hooks is None or len(p._backward_hooks) == 0


def test_step_numbering_and_every_snapshot_bit_exact(run):
    _, states, _, tracker, model, _ = run
    h = tracker.history
    assert h.steps.tolist() == list(range(0, STEPS + 1, EVERY))
    assert h.snapshot_steps.tolist() == h.steps.tolist()
    assert h.thinned == ()
    # defaults for an MLP: the first and the last Linear, weight and bias
    assert list(h.snapshots) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name in h.snapshots:
        assert h[name].shape == (len(h.steps), *dict(model.named_parameters())[name].shape)
        for i, step in enumerate(h.snapshot_steps.tolist()):
            assert torch.equal(h[name][i], states[step][name]), (name, step)
    # the last snapshot is the model as it is now
    assert torch.equal(h["2.weight"][-1], model[2].weight)


def test_statistics_match_a_float64_reference(run):
    _, states, grads, tracker, _, _ = run
    h = tracker.history
    assert h.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    for name in h.names:
        prev = None
        for r, step in enumerate(h.steps.tolist()):
            w = states[step][name].double()
            got = {k: float(h.stat(name, k)[r]) for k in STATS}
            assert got["norm"] == pytest.approx(float(w.norm()), rel=1e-5)
            assert got["mean"] == pytest.approx(float(w.mean()), rel=1e-4, abs=1e-7)
            assert got["std"] == pytest.approx(float(w.std(unbiased=False)), rel=1e-4)
            assert got["min"] == float(w.min()) and got["max"] == float(w.max())
            if prev is None:
                assert math.isnan(got["update_ratio"])
            else:
                want = float((w - prev).norm() / prev.norm())
                assert got["update_ratio"] == pytest.approx(want, rel=1e-4)
            if step == 0:
                assert math.isnan(got["grad_norm"])  # no .grad before the first backward
            else:
                assert got["grad_norm"] == pytest.approx(float(grads[step][name].double().norm()), rel=1e-5)
            # histogram: 64 bins over [min, max], every element counted once
            counts = h.hist[r, h.index(name)]
            assert counts.shape == (64,) and int(counts.sum()) == w.numel()
            ref, _ = np.histogram(w.numpy(), bins=64, range=(float(w.min()), float(w.max())))
            assert np.abs(counts.numpy() - ref).sum() <= 4  # float32 vs float64 bin edges
            assert h.hist_range[r, h.index(name)].tolist() == [got["min"], got["max"]]
            prev = w


def test_hand_computed_values_on_a_tiny_linear():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    t = WeightTracker(lin, every=1, bins=4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    lin.weight.grad = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    t.step()
    h = t.history
    norm, mean, std, lo, hi, ratio, gnorm = h.stats[0, 0].tolist()
    assert norm == pytest.approx(math.sqrt(30)) and mean == 2.5 and std == pytest.approx(math.sqrt(1.25))
    assert (lo, hi) == (1.0, 4.0) and math.isnan(ratio) and math.isnan(gnorm)
    assert h.hist[0, 0].tolist() == [1.0, 1.0, 1.0, 1.0]
    norm, mean, std, lo, hi, ratio, gnorm = h.stats[1, 0].tolist()
    assert ratio == pytest.approx(2 / math.sqrt(30)) and gnorm == pytest.approx(5.0)
    assert (lo, hi) == (1.0, 6.0) and h.hist[1, 0].tolist() == [2.0, 1.0, 0.0, 1.0]
    # all-equal tensor: histc spans [v - 1, v + 1]
    z = nn.Linear(3, 1, bias=False)
    nn.init.constant_(z.weight, 0.5)
    hz = WeightTracker(z).history
    assert hz.hist_range[0, 0].tolist() == [-0.5, 1.5] and hz.hist[0, 0, 32] == 3


def test_step_numbering_rules():
    m = _mlp()
    t = WeightTracker(m, every=10)
    recorded = [t.step() for _ in range(25)]
    assert [k + 1 for k, r in enumerate(recorded) if r] == [10, 20]
    assert t.history.steps.tolist() == [0, 10, 20]
    t.close()
    assert t.history.steps.tolist() == [0, 10, 20, 25] and t.current_step == 25
    t.close()  # idempotent
    assert t.history.steps.tolist() == [0, 10, 20, 25]
    t2 = WeightTracker(m, every=3, record_initial=False, start_step=100)
    for _ in range(7):
        t2.step()
    assert t2.history.steps.tolist() == [102, 105]


def test_context_manager_and_on_step_callback():
    m = _mlp()
    with WeightTracker(m, every=4) as t:
        for _ in range(10):
            t.on_step(None, loss=1.0)
    assert t.history.steps.tolist() == [0, 4, 8, 10]
    assert t.history.snapshot_steps.tolist() == [0, 4, 8, 10]


def test_budget_thins_evenly_and_records_what_was_dropped():
    _, states, _, _, _, _ = _train(False, steps=40)
    m = _mlp()
    per = sum(p.numel() * 4 for n, p in m.named_parameters() if n.startswith("2."))
    t = WeightTracker(m, every=1, snapshots=["2"], budget=per * 4)
    peak = 0
    for k in range(1, 41):
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.copy_(states[k][n])
        t.step()
        peak = max(peak, t.memory["snapshots"])
    assert peak <= t.budget == per * 4
    h = t.history
    assert h.steps.tolist() == list(range(41))
    # 41 records into 4 slots: full at 4, 8, 16, 32 -> keep every second, stride 2, 4, 8, 16
    assert h.snapshot_steps.tolist() == [0, 16, 32]
    assert h.thinned == (1, 2, 3, 4, 6, 8, 12, 24)
    for i, s in enumerate(h.snapshot_steps.tolist()):
        assert torch.equal(h["2.weight"][i], states[s]["2.weight"])
    t.close()  # the final state is kept too
    assert t.history.snapshot_steps.tolist()[-1] == 40
    assert torch.equal(t.history["2.weight"][-1], states[40]["2.weight"])
    assert t.memory["snapshots"] <= t.budget


def test_bad_inputs_raise_clear_errors(tmp_path):
    m = _mlp()
    with pytest.raises(LayerNotFoundError, match=r"'22' is not a module of Sequential; closest: '2'"):
        WeightTracker(m, layers=["0", "22"])
    with pytest.raises(LayerNotFoundError, match="closest: 'fc'"):
        WeightTracker(_Named(), snapshots="fcc")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(TrackerError, match="every"):
            WeightTracker(m, every=bad)
    with pytest.raises(TrackerError, match=r"cannot hold one snapshot.*at least 1320 bytes"):
        WeightTracker(m, snapshots="2", budget=1000)
    with pytest.raises(TrackerError, match="budget"):
        WeightTracker(m, budget="lots")
    assert WeightTracker(m, snapshots="2", budget="1.5KiB").budget == 1536
    with pytest.raises(KeyError, match="no snapshots.*closest"):
        WeightTracker(m).history["2.weights"]
    with pytest.raises(TypeError, match="nn.Module"):
        WeightTracker({"w": torch.zeros(2)})
    with pytest.raises(UnsupportedModelError, match="WeightTracker's model: expected an nn.Module, got dict"):
        WeightTracker({"w": torch.zeros(2)})
    with pytest.raises(TrackerError, match="sink object has no on_record"):
        WeightTracker(m, sinks=[object()])
    with pytest.raises(LayerNotFoundError, match=r"'2.weights' is not a tracked tensor; closest: '2.weight'") as info:
        WeightTracker(m).history.index("2.weights")
    assert info.value.closest[0] == "2.weight"
    # checkpoints that are not state dicts
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list.pt: is not a state dict \(got list\)"):
        WeightTracker.from_checkpoints([tmp_path / "list.pt"])
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="non-tensor entries"):
        WeightTracker.from_checkpoints([tmp_path / "meta.pt"])
    torch.save(m, tmp_path / "module.pt")  # a pickled module: refused by weights_only=True
    with pytest.raises(CheckpointError, match="weights_only=True"):
        WeightTracker.from_checkpoints([tmp_path / "module.pt"])
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        WeightTracker.from_checkpoints([tmp_path / "missing.pt"])
    torch.save(m.state_dict(), tmp_path / "ok.pt")
    with pytest.raises(TrackerError, match="one step per path"):
        WeightTracker.from_checkpoints([tmp_path / "ok.pt"], steps=[0, 1])


class _Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


def test_layers_select_tracked_tensors():
    m = _mlp()
    t = WeightTracker(m, layers="2", snapshots=[])
    assert t.names == ("2.weight", "2.bias") and t.history.snapshots == {}
    t = WeightTracker(m, layers="2", snapshots="0")
    assert t.shapes == {"2.weight": (10, 32), "2.bias": (10,), "0.weight": (32, 64), "0.bias": (32,)}
    assert t.history.shapes == t.shapes
    t = WeightTracker(m, layers=nn.Linear, snapshots=nn.Linear)
    assert t.names == ("0.weight", "0.bias", "2.weight", "2.bias")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_and_load_round_trip(run, tmp_path, suffix):
    h = run[3].history
    path = tmp_path / f"history{suffix}"
    h.save(path)
    if suffix == ".pt":  # tensors, strings and numbers only
        torch.load(path, weights_only=True)
    back = WeightHistory.load(path)
    assert back.names == h.names and back.every == h.every and back.input_shape == (8, 8)
    for field in ("steps", "stats", "hist", "hist_range", "snapshot_steps"):
        assert torch.equal(getattr(back, field), getattr(h, field)) or (
            field == "stats" and torch.equal(back.stats.nan_to_num(-9), h.stats.nan_to_num(-9))
        )
    assert back.snapshots.keys() == h.snapshots.keys()
    assert all(torch.equal(back[n], h[n]) for n in h.snapshots)


def test_from_checkpoints_gives_the_same_history(run, tmp_path):
    _, states, _, tracker, model, _ = run
    h = tracker.history
    paths = []
    for step in h.steps.tolist():
        p = tmp_path / f"ckpt_{step}.pt"
        torch.save({"state_dict": states[step]}, p)
        paths.append(p)
    from_files = WeightTracker.from_checkpoints(paths, steps=h.steps.tolist(), model=_mlp(1), input_shape=(8, 8))
    g = from_files.history
    assert g.steps.tolist() == h.steps.tolist() and g.names == h.names and g.every == EVERY
    gi = STATS.index("grad_norm")
    keep = [i for i in range(len(STATS)) if i != gi]
    assert torch.equal(g.stats[..., keep].nan_to_num(-9), h.stats[..., keep].nan_to_num(-9))
    assert torch.isnan(g.stats[..., gi]).all()
    assert torch.equal(g.hist, h.hist) and torch.equal(g.hist_range, h.hist_range)
    assert all(torch.equal(g[n], h[n]) for n in h.snapshots) and list(g.snapshots) == list(h.snapshots)
    # without the model: every float tensor tracked, defaults chosen from names and shapes
    with pytest.raises(TrackerError, match="needs a live model"):
        from_files.step()
    raw = WeightTracker.from_checkpoints(paths).history
    assert raw.names == h.names and list(raw.snapshots) == list(h.snapshots)
    assert raw.steps.tolist() == list(range(len(paths)))


def test_history_is_read_only_copy(run):
    tracker = run[3]
    h = tracker.history
    h["2.weight"][0].zero_()
    assert not torch.equal(tracker.history["2.weight"][0], h["2.weight"][0])
