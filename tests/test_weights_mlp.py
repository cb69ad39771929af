"""Weight learning on a 784-128-64-10 MLP (issue 17, item 5): by default the tracker keeps the
whole Linear chain, the class templates are the effective input-space templates W3 @ W2 @ W1
drawn at the input's shape (1, 28, 28), in the report, animate() and TensorBoard; axis labels
say "hidden unit" for hidden units and "class" only for classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchloupe.render import weight_learning as wl
from torchloupe.weights import WeightTracker, effective_templates
from tests.blog_models import MLP  # the 784-128-64-10 MLP as the articles write it


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _train(steps: int = 6, **kw):
    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    tracker = WeightTracker(model, every=2, **kw)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tracker.step()
    tracker.close()
    return model, tracker


def _product(model) -> torch.Tensor:
    return (model.fc3.weight.double() @ model.fc2.weight.double() @ model.fc1.weight.double())


@pytest.mark.parametrize("kw", [{}, {"input_shape": (1, 28, 28)}], ids=["default", "input_shape"])
def test_templates_are_the_effective_product_at_the_input_shape(kw):
    model, tracker = _train(**kw)
    assert tracker.snapshot_names == ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
    h = tracker.history
    got, kind = wl.template_tensor(h, -1)  # the last snapshot is the model's state now
    assert kind == "effective" and got.dtype == torch.float64
    assert torch.equal(got, _product(model).reshape(10, 1, 28, 28))
    first, _ = wl.template_tensor(h, 0)  # and at step 0: the first snapshot's own product
    want0 = (h["fc3.weight"][0].double() @ h["fc2.weight"][0].double() @ h["fc1.weight"][0].double())
    assert torch.equal(first, want0.reshape(10, 1, 28, 28))
    assert torch.equal(effective_templates([model.fc1, model.fc2, model.fc3], (1, 28, 28)), got)
    # animate() / TensorBoard / Visdom draw frame_images: ten 28x28 templates, not 8x8 head rows
    frames, what = wl.frame_images(h, max_tiles=10, min_tile=28)
    assert what == "templates"
    assert tuple(frames[-1].shape) == (3, 28 + 2, 10 * 29 + 1)  # one row of ten 28-px tiles, 1-px gaps


def test_frames_are_the_templates_pixel_for_pixel():
    model, tracker = _train()
    frames, what = wl.frame_images(tracker.history, max_tiles=10, min_tile=28)
    t = _product(model).reshape(10, 1, 28, 28)
    scale = t.abs().amax()
    from torchloupe.render.colormaps import SIGNED, colorize

    rgb = colorize((t / scale)[:, 0].float(), SIGNED, -1.0, 1.0)  # the still figures' signed colormap
    tile3 = frames[-1][:, 1:29, 1 + 3 * 29: 1 + 3 * 29 + 28]  # class 3's tile
    assert what == "templates" and torch.allclose(tile3, rgb[3], atol=1e-6)


def test_budget_too_small_for_the_chain_keeps_first_and_last_and_draws_no_fake_images():
    chain = sum(p.numel() * 4 for p in MLP().parameters())
    first_last = (784 * 128 + 128 + 64 * 10 + 10) * 4
    model, tracker = _train(budget=first_last)
    assert chain > first_last
    assert tracker.snapshot_names == ("fc1.weight", "fc1.bias", "fc3.weight", "fc3.bias")
    h = tracker.history
    assert wl.template_tensor(h, -1) is None  # fc3's rows are 64 hidden units, not an 8x8 image
    fig = wl.plot_templates(h)  # the head matrix instead, columns labelled as hidden units
    assert {ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()} == {"hidden unit"}
    assert {ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()} == {"class"}
    frames, what = wl.frame_images(h)  # first-layer hidden units, at 28x28
    assert what == "kernels" and frames[0].shape[1] >= 28


def test_kernel_view_of_an_mlp_says_hidden_units():
    _, tracker = _train()
    fig = wl.plot_kernels(tracker.history)
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]
    assert any("hidden units 0..15" in t for t in texts) and not any("class" in t for t in texts)


def test_tensorboard_image_is_the_28x28_templates(tmp_path):
    from tests.helpers import peer

    peer("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.integrations.tensorboard import log_weights

    _, tracker = _train()
    with SummaryWriter(tmp_path) as w:
        log_weights(w, tracker)
    ea = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    ea.Reload()
    assert "weights_images/templates" in ea.Tags()["images"]
    img = ea.Images("weights_images/templates")[-1]
    frames, _ = wl.frame_images(tracker.history)
    assert (img.height, img.width) == tuple(frames[-1].shape[1:])
    assert img.width >= 10 * 28  # ten 28-px tiles (or larger), not 8x8


def test_report_sections_show_effective_templates_labelled_by_class():
    from torchloupe.reporting.base import Figure, Subject
    from tests.section_blocks import blocks_of
    from torchloupe.reporting.sections import weight_learning, weights

    model, tracker = _train()
    subject = Subject("mlp", model, torch.rand(4, 1, 28, 28), extras={"tracker": tracker})
    blocks = blocks_of(weight_learning.build(subject, {"quick": True, "seed": 0}))
    fig = next(b.figure for b in blocks if isinstance(b, Figure) and "class templates" in b.caption.lower())
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]
    assert "effective input-space templates (W_L···W_1)" in texts and [str(c) for c in range(10)] == \
        [t for t in texts if t.isdigit()][:10]
    # the static weights section on flat 784 inputs: effective templates at 28x28, hidden units named so
    static = blocks_of(weights.build(Subject("mlp", model, torch.rand(4, 784)), {"quick": False, "seed": 0}))
    shown = [b for b in static if isinstance(b, Figure)]  # a large matrix: its summary, the whole one on demand
    shown += [f for b in static if type(b).__name__ == "Details" for f in b.blocks if isinstance(f, Figure)]
    figs = {b.caption.split(":")[0]: b.figure for b in shown}
    eff = next(b for b in static if isinstance(b, Figure) and b.caption.startswith("Effective class templates"))
    assert "fc3.W @ fc2.W @ fc1.W" in eff.caption and "(1, 28, 28)" in eff.caption
    texts = [t.get_text() for t in eff.figure.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]
    assert [str(c) for c in range(10)] == [t for t in texts if t.isdigit()][:10]
    labels = {ax.get_ylabel() for f in figs.values() for ax in f.axes}
    assert "hidden unit (128)" in labels and "class (10)" in labels
