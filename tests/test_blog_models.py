"""The models the blog articles write (tests/blog_models.py) through every public Python entry point
that applies to them, with values known by construction (set weights, planted patterns) or computed
by hand / by plain autograd (issue 17, item 8; the CLI side is tests/test_cli_models.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchloupe as tl
from torchloupe import errors

from .blog_models import (
    MLP,
    ConvNet,
    DictOutputCNN,
    KeywordFusion,
    LeNet,
    LinearFusionHead,
    LSTMClassifier,
    SeqAttentionMemory,
    TwoBranchCNN,
    seeded,
)
from .helpers import model_state


def assert_unchanged(model, before):
    after = model_state(model)
    assert after.keys() == before.keys()
    for k in before:
        a, b = before[k], after[k]
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k
        else:
            assert a == b, k


# --- models with set weights -------------------------------------------------------------------------
def identity_conv(conv: nn.Conv2d, channel: int = 0, sign: float = 1.0) -> None:
    """Make output ``channel`` of ``conv`` copy input channel 0 (centre tap ``sign``), zero elsewhere."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        kh, kw = conv.kernel_size
        conv.weight[channel, 0, kh // 2, kw // 2] = sign


def planted_convnet() -> ConvNet:
    """ConvNet whose conv1 channel 0 copies the image and whose class 0 sums that channel after pooling."""
    m = seeded(ConvNet)
    identity_conv(m.conv1, 0)
    with torch.no_grad():
        m.fc1.weight.zero_()
        m.fc1.bias.zero_()
        m.fc1.weight[0, : 14 * 14] = 1.0  # class 0 reads channel 0 of the pooled map (view order: c, h, w)
        m.fc1.weight[1, 14 * 14: 2 * 14 * 14] = 1.0  # class 1 reads channel 1 (all zero)
    return m


def patch_images(n: int, size: int, box=(4, 10, 16, 22)) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 1-channel images, zero but for a bright rectangle ``box`` (y0, y1, x0, x1); and its mask."""
    y0, y1, x0, x1 = box
    x = torch.zeros(n, 1, size, size)
    x[:, :, y0:y1, x0:x1] = 1.0
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    mask[:, y0:y1, x0:x1] = True
    return x, mask


def two_branch_planted() -> TwoBranchCNN:
    """cnn2's conv channel 0 copies the depth image; class 0 reads that channel's mean only."""
    m = seeded(TwoBranchCNN)
    identity_conv(m.cnn2[0], 0)
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.bias.zero_()
        m.fc.weight[0, 4] = 1.0
    return m


# === the two-branch CNN fused by torch.cat, forward(self, x1, x2) ======================================
def test_two_branch_trace_and_find_name_the_cat_and_its_channel_ranges():
    m = seeded(TwoBranchCNN)
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 12, 12)
    g = tl.trace(m, x1, x2)
    assert [n.name for n in g.inputs] == ["x1", "x2"]
    cat = g.find(type="cat")
    assert len(cat) == 1
    assert sorted(g.nodes[p].name for p in g.predecessors(cat[0].id)) == ["cnn1.3", "cnn2.3"]
    assert g.total_params == sum(p.numel() for p in m.parameters())
    (point,) = tl.fusion.find(m, x1, x2)
    assert (point.op, point.kind, point.dim) == ("cat", "late", 1)
    assert [(i.module, i.channels) for i in point.inputs] == [("cnn1", (0, 4)), ("cnn2", (4, 8))]
    assert point.branches == {"cnn1": "cnn1", "cnn2": "cnn2"}


def test_two_branch_contributions_are_the_head_rows_times_the_branch_features():
    m = seeded(TwoBranchCNN)
    x1, x2 = torch.rand(3, 3, 16, 16), torch.rand(3, 1, 12, 12)
    before = model_state(m)
    res = tl.fusion.contributions(m, (x1, x2))  # branches found from the traced cat
    assert_unchanged(m, before)
    assert res.method == "exact" and res.branches == ["cnn1", "cnn2"]
    with torch.no_grad():
        f1, f2 = m.cnn1(x1), m.cnn2(x2)
        logits = m.fc(torch.cat((f1, f2), 1))
    t = logits.argmax(1)
    W = m.fc.weight.detach()
    a = (W[t, :4] * f1).sum(1)
    b = (W[t, 4:] * f2).sum(1)
    torch.testing.assert_close(res.targets, t)
    torch.testing.assert_close(res.values["cnn1"], a)
    torch.testing.assert_close(res.values["cnn2"], b)
    torch.testing.assert_close(res.shares["cnn1"], a.abs() / (a.abs() + b.abs()))
    # completeness: the values sum to the score minus the score of zero branch outputs (the bias)
    torch.testing.assert_close(a + b, logits[torch.arange(3), t] - m.fc.bias.detach()[t])


def test_linear_fusion_head_shares_with_set_weights_by_hand():
    m = LinearFusionHead()
    with torch.no_grad():
        m.head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 2.0, 0.5]]))
        m.head.bias.copy_(torch.tensor([0.25, -3.0]))
    x1 = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    x2 = torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    res = tl.fusion.contributions(m, (x1, x2), branches={"a": "branch_a", "b": "branch_b"}, target=0)
    # class 0: a = 1*x1[0] + 2*x1[1]; b = 3*x2[0] + 4*x2[1]
    torch.testing.assert_close(res.values["a"], torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(res.values["b"], torch.tensor([-1.0, 4.0]))
    torch.testing.assert_close(res.shares["a"], torch.tensor([0.75, 2.0 / 6.0]))
    torch.testing.assert_close(res.shares["b"], torch.tensor([0.25, 4.0 / 6.0]))
    torch.testing.assert_close(res.scores, torch.tensor([2.25, 6.25]))
    # the same on inputs named by position: branches "input:0" / "input:1"
    res_in = tl.fusion.contributions(m, (x1, x2), branches={"a": "input:0", "b": "input:1"}, target=0)
    torch.testing.assert_close(res_in.values["a"], res.values["a"])
    torch.testing.assert_close(res_in.values["b"], res.values["b"])


def test_linear_fusion_head_gradient_wrt_each_input_is_its_weight_block():
    m = LinearFusionHead()
    with torch.no_grad():
        m.head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 2.0, 0.5]]))
    x1, x2 = torch.randn(3, 2), torch.randn(3, 2)
    g0 = tl.saliency.gradient(m, (x1, x2), target=[0, 1, 1], wrt=0)
    g1 = tl.saliency.gradient(m, (x1, x2), target=[0, 1, 1], wrt=1)
    W = m.head.weight.detach()
    torch.testing.assert_close(g0, W[[0, 1, 1], :2])
    torch.testing.assert_close(g1, W[[0, 1, 1], 2:])


def test_two_branch_gradcam_wrt_the_second_input_peaks_on_the_planted_patch():
    m = two_branch_planted()
    x1 = torch.rand(2, 3, 16, 16)
    x2, mask = patch_images(2, 12, box=(2, 6, 5, 10))
    before = model_state(m)
    res = tl.cam.GradCAM(m, layer="cnn2.0")((x1, x2), target=0, wrt=1)
    assert_unchanged(m, before)
    assert res.maps.shape == (2, 12, 12)  # at the size of input 1, not input 0
    # d score / d A0 = 1/144 where A0 > 0: alpha_0 > 0 and the map is A0 = x2, i.e. the patch itself
    torch.testing.assert_close(res.maps, mask.float())
    hits = tl.evaluate.pointing_game(res.maps, mask, tolerance=0)
    assert hits.tolist() == [True, True]


def test_two_branch_saliency_wrt_is_the_autograd_gradient_of_that_input():
    m = seeded(TwoBranchCNN)
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 12, 12)
    g = tl.saliency.gradient(m, (x1, x2), target=1, wrt=1)
    x2r = x2.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(m(x1, x2r)[:, 1].sum(), [x2r])
    torch.testing.assert_close(g, ref)
    assert torch.equal(x2, x2r.detach())  # inputs are not mutated


class _FixedFirst(nn.Module):
    """``two(x1, x2)`` with x1 fixed: the single-input peer of a wrt=1 evaluation."""

    def __init__(self, two, x1):
        super().__init__()
        self.two, self.x1 = two, x1

    def forward(self, x2):
        return self.two(self.x1.expand(x2.shape[0], *self.x1.shape[1:]), x2)


def test_two_branch_deletion_wrt_the_second_input_equals_the_single_input_peer():
    m = two_branch_planted()
    x1 = torch.rand(1, 3, 16, 16)
    x2, mask = patch_images(1, 12, box=(2, 6, 5, 10))
    maps = mask.float() + 0.01 * torch.rand(1, 12, 12)
    auc = tl.evaluate.deletion(m, (x1, x2), maps, target=0, steps=8, wrt=1)
    ref = tl.evaluate.deletion(_FixedFirst(m, x1), x2, maps, target=0, steps=8)
    torch.testing.assert_close(auc, ref)


def test_two_branch_exemplars_stream_tuple_batches():
    m = seeded(TwoBranchCNN)
    identity_conv(m.cnn1[0], 0)
    x1 = torch.arange(6.0).reshape(6, 1, 1, 1).expand(6, 3, 8, 8).contiguous() / 6
    x2 = torch.rand(6, 1, 8, 8)
    # batches ((x1, x2), y): the model's two inputs first (a TensorDataset(x1, x2) reads as (x, label))
    batches = [((x1[:4], x2[:4]), torch.zeros(4)), ((x1[4:], x2[4:]), torch.zeros(2))]
    ex = tl.synthesis.exemplars(m, batches, layer="cnn1.0", k=2, channels=[0])
    assert ex.indices[0].tolist() == [5, 4]
    torch.testing.assert_close(ex.values[0], torch.tensor([5 / 6, 4 / 6]))


def test_two_branch_report_shows_the_fusion_of_the_two_branches(tmp_path):
    m = seeded(TwoBranchCNN)
    x1, x2 = torch.rand(4, 3, 16, 16), torch.rand(4, 1, 12, 12)
    info = tl.report(m, (x1, x2), tmp_path / "r.html", sections=["fusion"], progress=False)
    (run,) = info.runs
    assert run.status == "ok", run.message
    html = (tmp_path / "r.html").read_text()
    assert "cnn1" in html and "cnn2" in html


def test_two_branch_report_explains_the_first_input(tmp_path):
    m = seeded(TwoBranchCNN)
    x1, x2 = torch.rand(4, 3, 16, 16), torch.rand(4, 1, 16, 16)
    info = tl.report(m, (x1, x2), tmp_path / "r.html", sections=["cam", "saliency"], progress=False)
    assert {r.section: r.status for r in info.runs} == {"cam": "ok", "saliency": "ok"}


# === the 1-channel MNIST ConvNet with x.view(-1, 32*14*14) ============================================
def test_convnet_gradcam_of_a_planted_pattern_is_the_pattern():
    m = planted_convnet()
    x, mask = patch_images(2, 28)
    res = tl.cam.GradCAM(m, layer="conv1")(x, target=0)
    assert res.layer == "conv1" and res.maps.shape == (2, 28, 28)
    torch.testing.assert_close(res.maps, mask.float())
    assert tl.evaluate.pointing_game(res.maps, mask, tolerance=0).all()
    # channels-last inputs (what a 1-channel permute(...).contiguous() gives) work the same (issue 17 item 1)
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(tl.cam.GradCAM(m, layer="conv1")(xc, target=0).maps, mask.float())


def test_convnet_default_cam_layer_is_said():
    m = planted_convnet()
    x, _ = patch_images(1, 28)
    res = tl.cam.GradCAM(m)(x, target=0)
    assert res.layer == "conv1"  # the only spatial layer before the view: the guess is on the result


def test_convnet_feature_maps_rank_the_planted_channels():
    m = planted_convnet()
    identity_conv(m.conv1, 0)
    with torch.no_grad():
        m.conv1.weight[1, 0, 1, 1] = -1.0  # channel 1 = -image
        m.conv1.weight[2, 0, 1, 1] = 0.5  # channel 2 = image / 2
    x = torch.rand(2, 1, 28, 28)
    fm = tl.features.feature_maps(m, x, "conv1")
    assert fm.kind == "spatial" and fm.maps.shape == (2, 32, 28, 28)
    torch.testing.assert_close(fm.maps[:, 0], x[:, 0])
    torch.testing.assert_close(fm.maps[:, 1], -x[:, 0])
    torch.testing.assert_close(fm.stats["mean"][:, 2], x.mean((1, 2, 3)) / 2)
    assert fm.top_channels(0, 2) == [0, 2]
    assert fm.top_channels(1, 2) == [0, 2]
    top = tl.features.feature_maps(m, x, "conv1", top=1)
    assert top.channels.tolist() == [0]


def test_convnet_deconvnet_of_one_feature_map_through_a_callable_target():
    """Deconvnet of one feature map: explain the map's sum through a truncated model."""
    m = planted_convnet()
    x = torch.rand(2, 1, 28, 28)
    upto = nn.Sequential(m.conv1, nn.ReLU())  # the model up to the feature map
    g = tl.saliency.deconvnet(upto, x, target=lambda out: out[:, 0].sum((1, 2)))
    # channel 0 copies the image: deconvnet passes relu(grad) = 1 through the ReLU, the conv's transpose
    # puts its centre tap (1) back on every pixel
    torch.testing.assert_close(g, torch.ones_like(x))


def test_convnet_kernels_and_class_templates_are_the_weights_reshaped():
    m = seeded(ConvNet)
    k = tl.weights.kernels(m.conv1)
    assert torch.equal(k, m.conv1.weight.detach())
    t = tl.weights.class_templates(m.fc1, (32, 14, 14))
    assert torch.equal(t, m.fc1.weight.detach().view(10, 32, 14, 14))
    with pytest.raises(errors.TemplateShapeError, match="6272"):
        tl.weights.class_templates(m.fc1, (1, 28, 28))


def test_convnet_maximize_drives_the_copy_channel_to_the_top_of_the_range():
    m = planted_convnet()
    res = tl.synthesis.maximize(m, "conv1:0", param="pixel", steps=48, lr=0.2, input_shape=(1, 28, 28),
                                transforms=None, baseline_samples=8)
    # channel 0 is the image itself, so its mean is at most 1 (the top of the [0, 1] domain)
    assert not bool(res.failed[0])
    assert 0.9 < float(res.final_activation[0]) <= 1.0
    assert float(res.final_activation[0]) > float(res.baseline_activation[0])
    torch.testing.assert_close(res.images.mean(), res.final_activation[0], atol=1e-4, rtol=0)


def test_convnet_maximize_standard_resized_on_a_view_model():
    m = planted_convnet()
    res = tl.synthesis.maximize(m, "fc1:0", steps=4, input_shape=(1, 28, 28), transforms="standard-resized",
                                baseline_samples=4)
    assert res.images.shape == (1, 1, 28, 28)


def test_convnet_exemplars_are_the_brightest_images():
    m = planted_convnet()
    levels = torch.tensor([0.3, 0.9, 0.1, 0.7, 0.5])
    data = levels.reshape(5, 1, 1, 1).expand(5, 1, 28, 28).contiguous()
    ex = tl.synthesis.exemplars(m, torch.utils.data.TensorDataset(data), layer="conv1", k=3, channels=[0],
                                batch_size=2)
    assert ex.indices[0].tolist() == [1, 3, 4]
    torch.testing.assert_close(ex.values[0], torch.tensor([0.9, 0.7, 0.5]))
    assert ex.seen == 5


def test_convnet_deletion_ranks_the_right_map_above_its_inverse():
    m = planted_convnet()
    x, mask = patch_images(2, 28)
    good = tl.cam.GradCAM(m, layer="conv1")(x, target=0).maps + 0.01 * torch.rand(2, 28, 28)
    bad = 1.0 - good
    d_good = tl.evaluate.deletion(m, x, good, target=0, steps=8)
    d_bad = tl.evaluate.deletion(m, x, bad, target=0, steps=8)
    assert (d_good < d_bad).all()


def test_convnet_weight_tracker_snapshots_conv1_and_the_head_during_training():
    m = seeded(ConvNet).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    tr = tl.weights.WeightTracker(m, every=2)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
        tr.step()
    tr.close()
    h = tr.history
    assert h.steps.tolist() == [0, 2, 3]
    assert set(tr.snapshot_names) >= {"conv1.weight", "fc1.weight"}
    assert torch.equal(h["conv1.weight"][-1], m.conv1.weight.detach())
    assert torch.equal(h["fc1.weight"][-1], m.fc1.weight.detach())
    torch.testing.assert_close(h.stat("fc1.weight", "norm")[-1], m.fc1.weight.detach().norm())


# === the 784-128-64-10 MLP =============================================================================
def test_mlp_activations_and_feature_maps_are_the_linear_layers():
    m = seeded(MLP)
    x = torch.rand(3, 784)
    acts = tl.activations(m, x, ["fc1", "fc2"])
    h1 = m.fc1(x)
    torch.testing.assert_close(acts["fc1"], h1.detach())
    torch.testing.assert_close(acts["fc2"], m.fc2(F.relu(h1)).detach())
    fm = tl.features.feature_maps(m, x.view(3, 1, 28, 28), "fc1")
    assert fm.kind == "vector" and fm.maps.shape == (3, 128, 1, 1)
    torch.testing.assert_close(fm.maps[..., 0, 0], h1.detach())


def test_mlp_first_layer_templates_are_rows_reshaped():
    m = seeded(MLP)
    t = tl.weights.class_templates(m.fc1, (1, 28, 28))
    assert torch.equal(t, m.fc1.weight.detach().view(128, 1, 28, 28))


def _effective(m: MLP) -> torch.Tensor:
    w1, w2, w3 = (layer.weight.detach().double() for layer in (m.fc1, m.fc2, m.fc3))
    return (w3 @ w2 @ w1).reshape(10, 1, 28, 28)


def test_mlp_effective_templates_with_the_whole_chain_snapshotted():
    from torchloupe.weights.learned import template_tensor

    m = seeded(MLP)
    tr = tl.weights.WeightTracker(m, snapshots=["fc1", "fc2", "fc3"], input_shape=(1, 28, 28))
    t, kind = template_tensor(tr.history)
    assert kind == "effective"
    torch.testing.assert_close(t, _effective(m))


def test_mlp_effective_templates_by_default():
    from torchloupe.weights.learned import template_tensor

    m = seeded(MLP)
    tr = tl.weights.WeightTracker(m, input_shape=(1, 28, 28))
    got = template_tensor(tr.history)
    assert got is not None
    t, kind = got
    assert kind == "effective"
    torch.testing.assert_close(t, _effective(m))


def test_mlp_gradient_is_the_autograd_gradient_in_the_input_shape():
    m = seeded(MLP)
    x = torch.rand(2, 1, 28, 28)
    g = tl.saliency.gradient(m, x, target=3)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(m(xr)[:, 3].sum(), [xr])
    assert g.shape == x.shape
    torch.testing.assert_close(g, ref)


def test_mlp_has_no_cam_layer_and_says_so():
    m = seeded(MLP)
    with pytest.raises(errors.UnsupportedModelError, match="spatial"):
        tl.cam.GradCAM(m)(torch.rand(1, 784))


def test_mlp_maximize_a_class_beats_random_inputs():
    m = seeded(MLP)
    res = tl.synthesis.maximize(m, "fc3:3", param="pixel", steps=32, lr=0.2, input_shape=(784,), transforms=None,
                                baseline_samples=8)
    assert res.images.shape == (1, 784)
    assert not bool(res.failed[0])
    with torch.no_grad():
        assert float(m(res.images)[0, 3]) == pytest.approx(float(res.final_activation[0]), abs=1e-4)


def test_mlp_exemplars_of_a_hidden_unit_are_its_top_inputs():
    m = seeded(MLP)
    data = torch.rand(12, 784)
    ex = tl.synthesis.exemplars(m, [data[:5], data[5:]], layer="fc2", k=3, channels=[5])  # an iterable of batches
    with torch.no_grad():
        h = m.fc2(F.relu(m.fc1(data)))[:, 5]
    top = h.topk(3)
    assert ex.indices[0].tolist() == top.indices.tolist()
    torch.testing.assert_close(ex.values[0], top.values)


# === Conv1d + hand-written attention + memory on (B, 10, 300) ==========================================
def _hand_attention(m: SeqAttentionMemory, x: torch.Tensor):
    with torch.no_grad():
        h = F.relu(m.conv(x.transpose(1, 2))).transpose(1, 2)
        att = m.attention.weights(h)
        h2 = h + att @ m.attention.v(h)
        mem = F.softmax(h2 @ m.memory.keys.T, dim=-1)
    return att, mem


def test_seq_hand_written_attention_is_captured():
    m = seeded(SeqAttentionMemory)
    x = torch.randn(2, 10, 300)
    maps = tl.attention.capture(m, x)
    att, _ = _hand_attention(m, x)
    assert list(maps) == ["attention", "memory"]  # the memory read is a softmax times a tensor too
    torch.testing.assert_close(maps["attention"], att[:, None])


def test_seq_softmax_capture_records_the_hand_written_attention_weights():
    m = seeded(SeqAttentionMemory)
    x = torch.randn(2, 10, 300)
    maps = tl.attention.capture(m, x, softmax=True)
    att, _ = _hand_attention(m, x)
    torch.testing.assert_close(maps["attention"].reshape(att.shape), att)


def test_seq_memory_read_is_filed_under_the_memory_module():
    m = seeded(SeqAttentionMemory)
    x = torch.randn(2, 10, 300)
    maps = tl.attention.capture(m, x, softmax=True)
    _, mem = _hand_attention(m, x)
    torch.testing.assert_close(maps["memory"], mem)


def test_seq_conv1d_feature_maps_are_over_the_ten_steps():
    m = seeded(SeqAttentionMemory)
    x = torch.randn(2, 10, 300)
    fm = tl.features.feature_maps(m, x, "conv")
    assert fm.kind == "sequence" and fm.maps.shape == (2, 16, 1, 10)
    with torch.no_grad():
        torch.testing.assert_close(fm.maps[:, :, 0], m.conv(x.transpose(1, 2)))


def test_seq_gradient_over_steps_and_features_is_the_autograd_gradient():
    m = seeded(SeqAttentionMemory)
    x = torch.randn(2, 10, 300)
    g = tl.saliency.gradient(m, x, target=2)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(m(xr)[:, 2].sum(), [xr])
    torch.testing.assert_close(g, ref)


def test_seq_exemplars_on_the_conv1d_layer():
    m = seeded(SeqAttentionMemory)
    data = torch.randn(8, 10, 300)
    ex = tl.synthesis.exemplars(m, torch.utils.data.TensorDataset(data), layer="conv", k=2, channels=[3])
    with torch.no_grad():
        score = m.conv(data.transpose(1, 2))[:, 3].mean(-1)
    top = score.topk(2)
    assert ex.indices[0].tolist() == top.indices.tolist()
    torch.testing.assert_close(ex.values[0], top.values)


def test_seq_maximize_a_class_over_a_sequence_input():
    m = seeded(SeqAttentionMemory)
    res = tl.synthesis.maximize(m, "fc:1", param="pixel", steps=24, lr=0.2, input_shape=(10, 300), transforms=None,
                                baseline_samples=8)
    assert res.images.shape == (1, 10, 300)
    assert not bool(res.failed[0])
    with torch.no_grad():
        assert float(m(res.images)[0, 1]) == pytest.approx(float(res.final_activation[0]), abs=1e-4)


# === LeNet fed to TensorBoard's add_graph ==============================================================
def test_lenet_trace_counts_the_parameters_and_the_functional_ops():
    m = seeded(LeNet)
    g = tl.trace(m, torch.rand(1, 1, 32, 32))
    assert g.total_params == 61706  # 156 + 2416 + 48120 + 10164 + 850
    assert [n.name for n in g.nodes if n.kind == "module"] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert len(g.find(type="max_pool2d")) == 2
    assert "61,706" in g.summary()


def test_lenet_tensorboard_add_graph_writes_its_layers(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    m = seeded(LeNet)
    with SummaryWriter(str(tmp_path)) as w:
        method = tl.integrations.tensorboard.add_graph(w, m, torch.rand(1, 1, 32, 32))
    assert method in ("torch", "torchloupe")
    ea = EventAccumulator(str(tmp_path))
    ea.Reload()
    names = " ".join(n.name for n in ea.Graph().node)
    for layer in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        assert layer in names


def test_lenet_gradcam_equals_a_literal_autograd_computation():
    m = seeded(LeNet)
    x = torch.rand(2, 1, 32, 32)
    res = tl.cam.GradCAM(m, layer="conv2")(x, target=4)
    acts = {}
    h = m.conv2.register_forward_hook(lambda mod, i, o: acts.setdefault("a", o))
    try:
        out = m(x)
    finally:
        h.remove()
    (grad,) = torch.autograd.grad(out[:, 4].sum(), [acts["a"]])
    raw = F.relu((grad.mean((2, 3), keepdim=True) * acts["a"]).sum(1)).detach()
    torch.testing.assert_close(res.raw, raw)


# === variants: dict output, keyword inputs, an LSTM ====================================================
class _Logits(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x)["logits"]


def test_dict_output_cam_saliency_and_deletion_equal_the_logits_peer():
    m = seeded(DictOutputCNN)
    peer = _Logits(m)
    x = torch.rand(2, 1, 12, 12)
    a = tl.cam.GradCAM(m, layer="conv")(x, output="logits")
    b = tl.cam.GradCAM(peer, layer="m.conv")(x)
    torch.testing.assert_close(a.maps, b.maps)
    assert torch.equal(a.targets, b.targets)
    torch.testing.assert_close(tl.saliency.gradient(m, x, target=1, output="logits"),
                               tl.saliency.gradient(peer, x, target=1))
    torch.testing.assert_close(tl.evaluate.deletion(m, x, a.maps, target=1, steps=4, output="logits"),
                               tl.evaluate.deletion(peer, x, a.maps, target=1, steps=4))


def test_dict_output_reads_logits_by_default_and_a_wrong_key_names_the_keys():
    m = seeded(DictOutputCNN)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(tl.saliency.gradient(m, x, target=0),
                               tl.saliency.gradient(m, x, target=0, output="logits"))
    with pytest.raises(errors.TargetError, match="features") as info:
        tl.saliency.gradient(m, x, target=0, output="scores")
    assert "logits" in str(info.value)


def test_keyword_inputs_trace_saliency_and_contributions():
    m = seeded(KeywordFusion)
    image, depth = torch.rand(2, 3, 10, 10), torch.rand(2, 1, 10, 10)
    g = tl.trace(m, image=image, depth=depth)
    assert {n.name for n in g.inputs} == {"image", "depth"}
    assert len(g.find(type="cat")) == 1
    d = tl.saliency.gradient(m, {"image": image, "depth": depth}, target=2, wrt="depth")
    dr = depth.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(m(image=image, depth=dr)[:, 2].sum(), [dr])
    torch.testing.assert_close(d, ref)
    res = tl.fusion.contributions(m, {"image": image, "depth": depth}, branches={"rgb": "rgb", "depth": "depth"},
                                  target=2)
    with torch.no_grad():
        a, b = m.rgb(image).mean((2, 3)), m.depth(depth).mean((2, 3))
    W = m.fc.weight.detach()
    torch.testing.assert_close(res.values["rgb"], a @ W[2, :4])
    torch.testing.assert_close(res.values["depth"], b @ W[2, 4:])
    cam = tl.cam.GradCAM(m, layer="depth.0")({"image": image, "depth": depth}, target=2, wrt="depth")
    assert cam.maps.shape == (2, 10, 10)


def test_lstm_recurrent_trace_equals_the_fused_module():
    m = seeded(LSTMClassifier)
    x = torch.randn(3, 7, 5)
    tr = tl.recurrent.trace(m.lstm, x)
    with torch.no_grad():
        out, (h, c) = m.lstm(x)
    torch.testing.assert_close(tr.h[-1, 0], out)
    torch.testing.assert_close(tr.c[-1, 0, :, -1], c[-1])
    # the gates recompute the cell: c_t = f * c_{t-1} + i * g
    i, f, gg = tr.gates["input"][-1, 0], tr.gates["forget"][-1, 0], tr.gates["cell"][-1, 0]
    c_prev = torch.cat([torch.zeros(3, 1, 8), tr.c[-1, 0, :, :-1]], 1)
    torch.testing.assert_close(tr.c[-1, 0], f * c_prev + i * gg)


# === the report on each model ==========================================================================
@pytest.mark.parametrize("make, x", [
    (ConvNet, lambda: torch.rand(2, 1, 28, 28)),
    (MLP, lambda: torch.rand(2, 784)),
    (SeqAttentionMemory, lambda: torch.randn(2, 10, 300)),
    (LeNet, lambda: torch.rand(2, 1, 32, 32)),
])
def test_report_runs_without_an_error_section(tmp_path, make, x):
    m = seeded(make)
    before = model_state(m)
    info = tl.report(m, x(), tmp_path / "r.html", sections=["overview", "architecture", "feature_maps", "weights"],
                     progress=False)
    assert_unchanged(m, before)
    status = {r.section: r.status for r in info.runs}
    assert "error" not in status.values(), [r.message for r in info.runs if r.status == "error"]
    assert status["architecture"] == "ok"
    html = (tmp_path / "r.html").read_text()
    assert type(m).__name__ in html


def test_report_cam_section_on_the_convnet(tmp_path):
    m = planted_convnet()
    x, _ = patch_images(2, 28)
    info = tl.report(m, x, tmp_path / "r.html", sections=["cam"], progress=False)
    (run,) = info.runs
    assert run.status == "ok", run.message


def test_report_attention_section_on_the_sequence_model(tmp_path):
    m = seeded(SeqAttentionMemory)
    info = tl.report(m, torch.randn(2, 10, 300), tmp_path / "r.html", sections=["attention"], progress=False)
    (run,) = info.runs
    assert run.status == "ok", run.message
