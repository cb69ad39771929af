"""Views of a WeightHistory (render), the report section and the demo run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from torchloupe.render import weight_learning as wl
from torchloupe.weights.tracker import WeightHistory, WeightTracker


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread gives the same numbers and is far faster on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)



def _mlp_history(steps=6):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))
    t = WeightTracker(m, every=2, input_shape=(1, 4, 4))
    for k in range(steps):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        t.step()
    t.close()
    return m, t.history


def test_effective_template_is_the_linear_path_product():
    m, h = _mlp_history()
    got, kind = wl.template_tensor(h, -1)
    assert kind == "effective" and got.shape == (3, 1, 4, 4)
    want = (m[3].weight.double() @ m[1].weight.double()).reshape(3, 1, 4, 4)
    assert torch.equal(got, want)
    assert h.linear_chain() == ["1.weight", "3.weight"]
    # head rows are not input-shaped here (6 features) -> no head templates
    assert wl.template_tensor(h, -1, kind="head") is None
    k, name = wl.kernel_tensor(h, 0)  # an MLP's "kernels": first-layer rows as images
    assert name == "1.weight" and torch.equal(k, h["1.weight"][0].reshape(6, 1, 4, 4))


def test_class_similarity_by_hand():
    h = WeightHistory(
        steps=torch.tensor([0]), names=("fc.weight",), stats=torch.zeros(1, 1, 7), hist=torch.zeros(1, 1, 4),
        hist_range=torch.zeros(1, 1, 2), snapshot_steps=torch.tensor([0]),
        snapshots={"fc.weight": torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]]])},
        shapes={"fc.weight": (3, 2)},
    )
    s = wl.class_similarity(h)[0]
    r = 2**-0.5
    assert torch.allclose(s, torch.tensor([[1, r, 0], [r, 1, -r], [0, -r, 1]], dtype=torch.float64))
    assert wl.template_tensor(h) is None  # 2 features are not an input shape we know


def test_conv_kernels_and_head_matrix_views():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    t = WeightTracker(m, every=1)
    assert t.snapshot_names == ("0.weight", "0.bias", "4.weight", "4.bias")
    t.step()
    h = t.history
    frames, what = wl.frame_images(h)
    assert what == "kernels" and len(frames) == 2 and frames[0].shape[0] == 3
    assert 0.0 <= float(frames[0].min()) and float(frames[0].max()) <= 1.0
    assert wl.template_tensor(h) is None  # head after pooling: shown as a matrix
    for fig in (wl.plot_templates(h), wl.plot_kernels(h), wl.plot_similarity(h), wl.plot_norms(h),
                wl.plot_histograms(h)):
        assert fig.axes


def test_figures_and_gif(tmp_path):
    from PIL import Image

    _, h = _mlp_history()
    assert wl.pick_steps(h) == [0, 2, 3] and h.snapshot_steps.tolist() == [0, 2, 4, 6]
    fig = wl.plot_templates(h, labels=["a", "b", "c"])
    texts = fig.axes[0].texts  # one composed image: column heads are classes, row labels are steps
    assert [t.get_text() for t in texts if t.get_rotation() == 0] == ["a", "b", "c"]
    rows = [t.get_text() for t in texts if t.get_rotation() == 90]
    assert [r.split("\n")[0] for r in rows] == ["step 0", "step 4", "step 6"] and all("±" in r for r in rows)
    fig = wl.plot_norms(h)
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["1.weight", "3.weight"]
    assert list(lines[0].get_ydata()) == h.stat("1.weight", "norm").tolist()
    path = wl.animate(h, tmp_path / "t.gif", fps=5)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 4 and im.info["duration"] == 200
    with pytest.raises(ValueError, match="what='maps'"):
        wl.frame_images(h, "maps")


def test_report_section(tmp_path, monkeypatch):
    from tests.section_blocks import blocks_of
    from torchloupe.reporting.base import Figure, Finding, Image, NotApplicable, Subject, Table, Text
    from torchloupe.reporting.sections.weight_learning import build

    m, h = _mlp_history()
    assert isinstance(build(Subject("x", m, torch.rand(2, 1, 4, 4)), {"quick": True, "seed": 0}), NotApplicable)
    blocks = blocks_of(build(Subject("x", m, torch.rand(2, 1, 4, 4), extras={"tracker": h}), {"quick": True, "seed": 0}))
    kinds = [type(b) for b in blocks]
    assert kinds == [Text, Figure, Figure, Figure, Figure, Figure, Image, Table, Table, Finding]
    gif = next(b for b in blocks if isinstance(b, Image))
    assert gif.mime == "image/gif" and gif.data[:6] == b"GIF89a"
    assert "4 steps" in blocks[0].text


def test_demo_run_is_the_demo_model_bit_for_bit_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path))
    from torchloupe.demo.models import train_digits_model
    from torchloupe.app.subjects.digits import digits_subject
    from torchloupe.demo.weight_run import digits_run

    model, h = digits_run(seed=0, hidden=0, every=10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic either way; one thread is just faster on a busy machine
    try:
        demo = train_digits_model(0, hidden=0, progress=False)  # the demo's own recipe, no tracker
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(model.fc.weight, demo.fc.weight) and torch.equal(model.fc.bias, demo.fc.bias)
    steps = h.steps.tolist()
    assert steps == list(range(0, 25 * 22 + 1, 10))  # 22 batches an epoch, 25 epochs: 550 ends on a record
    assert list(h.snapshots) == ["fc.weight", "fc.bias"]
    assert torch.equal(h["fc.weight"][-1], model.fc.weight) and not model.training
    assert all(p.grad is None for p in model.parameters())
    model2, h2 = digits_run(seed=0, hidden=0, every=10)  # from the cache
    assert torch.equal(h2.stats.nan_to_num(-1), h.stats.nan_to_num(-1)) and torch.equal(h2["fc.weight"], h["fc.weight"])
    assert torch.equal(model2.fc.weight, model.fc.weight)
    s = digits_subject(0, 10, 0, "digits linear classifier", ["fc"])
    assert s.tracker.every == 10 and s.model(s.inputs).shape == (10, 10)


def test_tracker_imports_no_matplotlib():
    code = "import sys, torchloupe.weights as w; w.WeightTracker; import torchloupe.integrations.visdom; " \
           "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_similarity_figure_keeps_its_class_labels_inside():
    # Constrained layout placed the first matrix's row labels (class names) off the left edge.
    from torchloupe.render.png import figure_to_png

    _, h = _mlp_history()
    fig = wl.plot_similarity(h, labels=["a", "b", "c"])
    figure_to_png(fig)
    renderer = fig.canvas.get_renderer()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b", "c"]
    width = fig.bbox.width
    for ax in fig.axes:
        box = ax.get_tightbbox(renderer)
        assert box.x0 >= 0 and box.x1 <= width
