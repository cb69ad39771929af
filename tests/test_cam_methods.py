"""Eigen-CAM's sign rule, tl.cam.compare skipping what cannot apply, Score-CAM's estimate, progress and cap."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import torchloupe as tl
from torchloupe.cam.eigencam import eigen_projection
from tests.helpers import peer, tiny_cnn
from tests.section_blocks import blocks_of


# -- Eigen-CAM -------------------------------------------------------------------------------------

def _densenet_like() -> torch.Tensor:
    """(1, 3, 1, 3), every activation positive; centred, the rows are (-2, 3, -2), 0, (2, -3, 2), so the
    principal direction is v = ±(-2, 3, -2)/√17 and A v = (314, 297, 280)/√17: all positive, falling
    left to right, while the channel mean (36, 36.33, 36.67) rises: it correlates negatively."""
    a = torch.tensor([[1.0, 3.0, 5.0], [106.0, 103.0, 100.0], [1.0, 3.0, 5.0]], dtype=torch.float64)
    return a.reshape(1, 3, 1, 3)


def test_eigencam_all_positive_projection_is_never_zeroed():
    a = _densenet_like()
    want = torch.tensor([314.0, 297.0, 280.0], dtype=torch.float64) / math.sqrt(17)
    # the construction is the failure case: rule 1 alone (correlate with the channel mean) flips it
    flat = a.reshape(3, 3).T
    assert float(torch.corrcoef(torch.stack([want, flat.mean(1)]))[0, 1]) < 0
    torch.testing.assert_close(eigen_projection(a).reshape(3), want)
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(9, 2)).double()
    res = tl.cam.EigenCAM(model, "0")(a)
    torch.testing.assert_close(res.raw.reshape(3), want)
    torch.testing.assert_close(res.maps.reshape(3), (want - want.min()) / (want.max() - want.min()))


def test_eigencam_all_negative_projection_is_turned_positive():
    # negate the middle channel: v's orientation flips with it and A v = -(314, 297, 280)/√17 one way
    # round; whatever rule 1 says, the map is the positive orientation
    a = _densenet_like()
    b = torch.cat([a[:, :1], -a[:, 1:2], a[:, 2:]], dim=1)
    p = eigen_projection(b).reshape(3)
    assert bool((p > 0).all()) or bool((p < 0).all())
    assert float(p.max()) > 0


def test_eigencam_densenet121_norm5_is_not_zero():
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    acts = tl.activations(model, x, ["features.norm5"])["features.norm5"].double()
    flat = acts.reshape(1, acts.shape[1], -1).transpose(1, 2)[0]
    _, _, vh = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)
    proj = flat @ vh[0]
    proj = proj if float(proj.sum()) > 0 else -proj
    assert bool((proj > 0).all())  # the case of the issue: an all-positive projection ...
    assert float(torch.corrcoef(torch.stack([proj, flat.mean(1)]))[0, 1]) < 0  # ... rule 1 alone would flip
    res = tl.cam.EigenCAM(model, "features.norm5")(x)
    torch.testing.assert_close(res.raw.double().reshape(-1), proj, rtol=1e-4, atol=1e-4)
    assert float(res.maps.max()) == 1.0 and float(res.maps.min()) == 0.0


def test_eigencam_equals_pytorch_grad_cam_up_to_its_sign():
    """pytorch-grad-cam projects the centred activations with LAPACK's sign: its projection equals ours
    centred where its sign is right (the planted bright spot positive), and its negative elsewhere."""
    svd = peer("pytorch_grad_cam.utils.svd_on_activations")
    g = torch.Generator().manual_seed(3)
    a = torch.rand(8, 16, 5, 5, generator=g, dtype=torch.float64) * 0.3
    spots = torch.randint(0, 25, (8,), generator=g)
    a.view(8, 16, 25)[torch.arange(8), :, spots] += 2.0 + torch.rand(8, 16, generator=g, dtype=torch.float64)
    ours = eigen_projection(a).reshape(8, 25)
    assert torch.equal(ours.argmax(1), spots)  # ours always points at the spot
    theirs = torch.from_numpy(svd.get_2d_projection(a.numpy()).astype(np.float64)).reshape(8, 25)
    centred = ours - ours.mean(1, keepdim=True)
    right = theirs.argmax(1) == spots
    assert 0 < int(right.sum()) < 8 or bool(right.all())  # at least one sample where the peer is right
    for i in range(8):
        sign = 1.0 if right[i] else -1.0
        torch.testing.assert_close(centred[i], sign * theirs[i], rtol=1e-4, atol=1e-5)


def test_eigencam_peer_full_method_on_resnet18_where_it_is_right():
    """The peer's whole method on a model: where its orientation matches ours, its map equals ReLU of our
    centred projection, min-max scaled (its definition), at the layer's resolution."""
    gc = peer("pytorch_grad_cam")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    layer = model.layer4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = gc.EigenCAM(model, [layer])(input_tensor=x, targets=None)  # (2, 64, 64), resized from 2 x 2
    acts = tl.activations(model, x, ["layer4"])["layer4"]
    ours = eigen_projection(acts)
    centred = ours - ours.mean(dim=(1, 2), keepdim=True)
    checked = 0
    for i in range(2):
        for sign in (1.0, -1.0):
            r = torch.relu(sign * centred[i])
            r = (r - r.min()) / (r.max() - r.min() + 1e-7)
            up = torch.nn.functional.interpolate(r[None, None], size=(64, 64), mode="bilinear")[0, 0]
            if np.corrcoef(up.flatten().numpy(), theirs[i].flatten())[0, 1] > 0.99:
                checked += sign > 0
                break
        else:
            pytest.fail(f"sample {i}: the peer's map is neither orientation of our projection")
    assert checked >= 1


# -- compare: skip what cannot apply, with a note -----------------------------------------------------

class FlatHead(nn.Module):
    """conv -> ReLU -> flatten -> Linear(C·H·W): no global average pooling, so CAM cannot apply."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def _alone(model, key, x, target, layer, **kw):
    return tl.cam.METHODS[key](model, layer, **kw)(x, target)


def test_compare_all_skips_cam_without_a_gap_linear_head_and_keeps_the_rest():
    model = FlatHead().eval()
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note is in the result, no warning
        res = tl.cam.compare(model, x, "all", "relu", [0, 2])
    assert list(res) == [k for k in tl.cam.METHODS if k != "cam"]
    assert list(res.skipped) == ["cam"] and "global average pooling + nn.Linear" in res.skipped["cam"]
    assert isinstance(res, dict)
    for key in ("gradcam", "scorecam", "eigencam"):
        alone = _alone(model, key, x, [0, 2], "relu")
        torch.testing.assert_close(res[key].raw, alone.raw, rtol=0, atol=0)
    assert float(res["gradcam"].raw.max()) > 0


def test_compare_callable_target_skips_class_index_methods_and_says_so():
    model = tiny_cnn().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))

    def score(out):
        return out[:, 1] - out[:, 0]

    res = tl.cam.compare(model, x, "all", target=score)
    assert "cam" not in res and "needs class-index targets" in res.skipped["cam"]
    torch.testing.assert_close(res["gradcam"].raw, _alone(model, "gradcam", x, score, None).raw, rtol=0, atol=0)
    named = tl.cam.compare(model, x, ["cam", "layercam"], target=score)
    assert list(named) == ["layercam"] and list(named.skipped) == ["cam"]
    with pytest.raises(tl.errors.TargetError, match="cam: CAM needs class-index targets"):
        tl.cam.compare(model, x, ["cam"], target=score)
    with pytest.raises(tl.errors.UnsupportedModelError, match="no CAM method applies: cam: CAM needs a model ending"):
        tl.cam.compare(FlatHead().eval(), torch.rand(1, 3, 6, 6), ["cam"], "relu", 0)


def test_compare_options_reach_their_method_and_unknown_ones_are_refused():
    model = tiny_cnn().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with pytest.warns(UserWarning, match="keeps the 5 strongest of 16 channels"):
        res = tl.cam.compare(model, x, ["gradcam", "scorecam"], target=[1, 3], options={"scorecam": {"max_masks": 5}})
    with pytest.warns(UserWarning, match="keeps the 5 strongest of 16 channels"):
        alone = _alone(model, "scorecam", x, [1, 3], res["scorecam"].layer, max_masks=5)
    torch.testing.assert_close(res["scorecam"].raw, alone.raw, rtol=0, atol=0)
    with pytest.raises(tl.errors.UsageError, match="options for 'eigencam', which is not among the methods compared"):
        tl.cam.compare(model, x, ["gradcam"], options={"eigencam": {}})


# -- Score-CAM: estimate up front, progress, max_masks -------------------------------------------------

def _scorecam_literal(model, x, layer, targets, keep):
    """The paper's sum over the channels in keep[n], one float64 forward per channel (no dedup)."""
    m = __import__("copy").deepcopy(model).double().eval()
    acts = tl.activations(m, x.double(), [layer])[layer]
    out = torch.zeros(x.shape[0], *acts.shape[2:], dtype=torch.float64)
    with torch.no_grad():
        for n in range(x.shape[0]):
            for c in keep[n]:
                up = torch.nn.functional.interpolate(acts[n, c][None, None], size=x.shape[2:], mode="bilinear",
                                                     align_corners=False)[0, 0]
                lo, hi = float(up.min()), float(up.max())
                mask = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
                p = torch.softmax(m(x[n : n + 1].double() * mask), 1)[0, targets[n]]
                out[n] += p * acts[n, c]
    return torch.relu(out), acts


def test_scorecam_max_masks_at_least_the_channels_is_exactly_uncapped():
    model = tiny_cnn().eval()  # features.5: 16 channels
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    plain = tl.cam.ScoreCAM(model, "features.5")
    ref = plain(x, [0, 1, 2])
    for k in (16, 40):
        cam = tl.cam.ScoreCAM(model, "features.5", max_masks=k)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing dropped: no approximation to announce
            got = cam(x, [0, 1, 2])
        assert torch.equal(got.raw, ref.raw) and torch.equal(got.maps, ref.maps)
        assert cam.forwards == plain.forwards == cam.planned and not cam.capped


def test_scorecam_max_masks_caps_the_forwards_to_the_strongest_channels():
    model = tiny_cnn().eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    cam = tl.cam.ScoreCAM(model, "features.5", max_masks=4, batch_size=5)
    with pytest.warns(UserWarning, match=r"keeps the 4 strongest of 16 channels per image \(max_masks=4\): an "
                                         r"approximation"):
        res = cam(x, [0, 1, 2])
    assert cam.capped and cam.planned == cam.forwards <= 3 * 4
    full = tl.cam.ScoreCAM(model, "features.5")
    full(x, [0, 1, 2])
    assert full.forwards > cam.forwards
    acts = tl.activations(model, x, ["features.5"])["features.5"]
    keep = acts.mean(dim=(2, 3)).topk(4, dim=1).indices.tolist()
    want, _ = _scorecam_literal(model, x, "features.5", [0, 1, 2], keep)
    torch.testing.assert_close(res.raw.double(), want, rtol=1e-4, atol=1e-6)


def test_scorecam_says_its_masked_forwards_up_front_and_shows_progress(capsys):
    model = tiny_cnn().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    quiet = tl.cam.ScoreCAM(model, "features.5")
    ref = quiet(x, [0, 1])
    n = quiet.planned
    assert n == quiet.forwards and 2 < n <= 2 * 16
    cam = tl.cam.ScoreCAM(model, "features.5", warn_above=n - 1, progress=True)
    with pytest.warns(UserWarning, match=rf"Score-CAM on 'features.5' runs {n} masked forwards \(2 image\(s\) x up "
                                         rf"to 16 channels\); pass max_masks="):
        res = cam(x, [0, 1])
    assert torch.equal(res.raw, ref.raw)
    assert f"/{n}" in capsys.readouterr().err  # tqdm's bar over the planned forwards
    with pytest.raises(tl.errors.UsageError, match="max_masks must be a positive int"):
        tl.cam.ScoreCAM(model, max_masks=0)


def test_report_cam_section_keeps_the_others_and_says_which_does_not_apply():
    from torchloupe.reporting.base import Subject, Text
    from torchloupe.reporting.sections import cam as section

    model = FlatHead().eval()
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    blocks = blocks_of(section.build(Subject("flat", model, x, images=x, layers=["relu"]), {"quick": True, "seed": 0}))
    texts = [b.text for b in blocks if isinstance(b, Text)]
    assert any(t.startswith("CAM does not apply: CAM needs a model ending in global average pooling") for t in texts)
    assert blocks[0].caption.startswith("Layer relu;")


def test_eigencam_sign_does_not_follow_float_noise_when_the_channel_mean_is_flat():
    """After a LayerNorm over channels every position has the same channel mean: rule 1 of the sign
    reads only float noise there, so the largest deviation of the projection decides, and a sample's
    map is the same alone and in a batch."""
    from torchloupe.cam.eigencam import eigen_projection

    torch.manual_seed(0)
    tokens = torch.nn.functional.layer_norm(torch.randn(3, 12, 16), (16,))  # (N, T, C): mean 0 at every token
    acts = tokens.transpose(1, 2)  # (N, C, T)
    p = eigen_projection(acts.double())
    for n in range(3):  # the largest deviation from the mean is positive, whatever LAPACK's sign was
        dev = p[n] - p[n].mean()
        assert float(dev[dev.abs().argmax()]) > 0
    noisy = acts + 1e-7 * torch.randn_like(acts)  # what a different batch size's kernels change
    assert torch.allclose(eigen_projection(noisy.double()), p, atol=1e-5)
    assert torch.allclose(eigen_projection(acts[:1].double()), p[:1], atol=1e-12)
