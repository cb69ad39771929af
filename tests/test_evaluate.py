"""Explanation-quality metrics: hand-computed values, literal references, and peers where definitions match."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import torchloupe.evaluate as ev
from tests.helpers import tiny_cnn, peer
from tests.reference import ref_evaluate
from torchloupe.errors import InputError, TargetError


def linear_model(weight: torch.Tensor) -> nn.Module:
    """Flatten + Linear with set weights: logits are exact sums of pixel values."""
    k, d = weight.shape
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    with torch.no_grad():
        m[1].weight.copy_(weight)
        m[1].bias.zero_()
    return m.eval()


def test_deletion_hand_computed_two_pixels():
    # 1x1x1x2 image (two pixels, both 1.0); class 0 logit = 2*p0 + 1*p1, class 1 logit = 0.
    m = linear_model(torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
    x = torch.ones(1, 1, 1, 2)
    maps = torch.tensor([[[0.2, 0.9]]])  # pixel 1 is more salient: deleted first
    r = ev.deletion_curve(m, x, maps, target=0, steps=2, substrate="zero")
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731  softmax of (z, 0)
    expected = [sig(3.0), sig(2.0), sig(0.0)]
    assert torch.allclose(r.curves[0], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(r.fractions, torch.tensor([0.0, 0.5, 1.0]))
    want_auc = 0.5 * (expected[0] + expected[1]) / 2 + 0.5 * (expected[1] + expected[2]) / 2
    assert r.auc.item() == pytest.approx(want_auc, abs=1e-6)
    ins = ev.insertion_curve(m, x, maps, target=0, steps=2, substrate="zero")
    assert torch.allclose(ins.curves[0], torch.tensor([sig(0.0), sig(1.0), sig(3.0)]), atol=1e-6)


@pytest.mark.parametrize("substrate", ["zero", "blur", "mean"])
def test_deletion_matches_literal_reference(substrate):
    torch.manual_seed(1)
    m = tiny_cnn().eval()
    x = torch.rand(3, 3, 12, 12)
    maps = torch.rand(3, 12, 12)
    r = ev.deletion_curve(m, x, maps, steps=7, substrate=substrate)
    base = ev.perturbation._substrate(x, substrate)
    for i in range(3):
        ref = ref_evaluate.deletion_curve(m, x[i], maps[i], int(r.targets[i]), 7, base[i])
        np.testing.assert_allclose(r.curves[i].numpy(), ref, atol=1e-5)
        assert r.auc[i].item() == pytest.approx(ref_evaluate.auc(ref, r.fractions.numpy()), abs=1e-5)


def test_model_that_views_a_conv_output_falls_back_to_contiguous_batches():
    """CPU batches go in channels-last; ``x.view(n, -1)`` on such a conv output raises, and the
    metric must then rerun contiguous and give the same numbers as the literal reference."""

    class ViewFlatten(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 3)
            self.layouts = []

        def forward(self, x):
            y = self.conv(x)
            self.layouts.append(y.is_contiguous())
            return self.fc(y.view(y.shape[0], -1))

    torch.manual_seed(3)
    m = ViewFlatten().eval()
    x = torch.rand(2, 3, 8, 8)
    maps = torch.rand(2, 8, 8)
    r = ev.deletion_curve(m, x, maps, target=[0, 2], steps=4, substrate="zero")
    first = m.layouts.index(False)  # tried channels-last once (after the contiguous target check) ...
    assert all(m.layouts[first + 1 :]) and len(m.layouts) > first + 1  # ... then contiguous to the end
    for i in range(2):
        ref = ref_evaluate.deletion_curve(m, x[i], maps[i], [0, 2][i], 4, torch.zeros_like(x[i]))
        np.testing.assert_allclose(r.curves[i].numpy(), ref, atol=1e-6)


def test_repeated_images_run_their_unchanged_ends_once():
    """Several methods' maps on one image (a repeated batch): same curves as one call per map,
    and the all-kept / all-changed images are forwarded once per distinct image."""

    class Counting(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.images = inner, 0

        def forward(self, x):
            self.images += x.shape[0]
            return self.inner(x)

    torch.manual_seed(5)
    m = Counting(tiny_cnn().eval()).eval()
    x = torch.rand(2, 3, 12, 12)
    xs = torch.cat([x, x, x])  # three "methods" on two images
    maps = torch.rand(6, 12, 12)
    for curve in (ev.deletion_curve, ev.insertion_curve):
        m.images = 0
        r = curve(m, xs, maps, target=[0, 1] * 3, steps=5, substrate="blur")
        assert m.images == 2 + 2 + 6 * 4  # two distinct images at both ends, 4 inner steps of each row
        for i in range(6):
            one = curve(m, xs[i : i + 1], maps[i : i + 1], target=[0, 1][i % 2], steps=5, substrate="blur")
            assert torch.allclose(r.curves[i], one.curves[0], atol=1e-6)


def test_insertion_reveals_onto_blur_and_ends_at_original():
    m = tiny_cnn().eval()
    x = torch.rand(2, 3, 16, 16)
    maps = torch.rand(2, 16, 16)
    r = ev.insertion_curve(m, x, maps, steps=5)
    with torch.no_grad():
        p_full = m(x).softmax(1).gather(1, r.targets[:, None])[:, 0]
        p_blur = m(ev.gaussian_blur(x)).softmax(1).gather(1, r.targets[:, None])[:, 0]
    assert torch.allclose(r.curves[:, -1], p_full, atol=1e-6)
    assert torch.allclose(r.curves[:, 0], p_blur, atol=1e-6)


def test_deletion_equals_quantus_pixel_flipping():
    quantus = peer("quantus")
    torch.manual_seed(2)
    # One channel: Quantus flips single features of the flattened input, so pixels == features.
    m = tiny_cnn(in_ch=1).eval()
    x = torch.rand(2, 1, 8, 8)
    x[:, :, 0, 0] = 0.0  # Quantus's "black" baseline is the per-sample minimum: make it 0
    maps = torch.rand(2, 8, 8)
    targets = m(x).argmax(1)
    ours = ev.deletion_curve(m, x, maps, target=targets, steps=16, substrate="zero")
    metric = quantus.PixelFlipping(
        features_in_step=4, perturb_baseline="black", normalise=False, disable_warnings=True
    )
    theirs = metric(
        model=m,
        x_batch=x.numpy(),
        y_batch=targets.numpy(),
        a_batch=maps[:, None].numpy(),
        softmax=True,
        device="cpu",
        channel_first=True,
    )
    # Quantus records the curve after each step, without the unperturbed point.
    np.testing.assert_allclose(np.array(theirs), ours.curves[:, 1:].numpy(), atol=1e-5)


def test_pointing_game_tolerance_and_ties():
    maps = torch.zeros(3, 40, 40)
    maps[:, 20, 5] = 1.0
    masks = torch.zeros(3, 40, 40, dtype=torch.bool)
    masks[0, 20, 20] = True  # 15 px away: hit at tolerance 15
    masks[1, 20, 21] = True  # 16 px away: miss
    masks[2, 20, 5] = True  # on the point
    hits = ev.pointing_game(maps, masks, tolerance=15)
    assert hits.tolist() == [True, False, True]
    assert ev.pointing_game(maps, masks, tolerance=0).tolist() == [False, False, True]


def test_pointing_game_equals_quantus_at_zero_tolerance():
    quantus = peer("quantus")
    torch.manual_seed(3)
    maps = torch.rand(6, 16, 16)
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[:, 4:10, 4:10] = True
    ours = ev.pointing_game(maps, masks, tolerance=0)
    metric = quantus.PointingGame(disable_warnings=True)
    theirs = metric.evaluate_batch(a_batch=maps[:, None].numpy(), s_batch=masks[:, None].numpy())
    assert ours.tolist() == [bool(t) for t in theirs]


def test_average_drop_and_increase_match_pytorch_grad_cam():
    peer("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(4)
    m = tiny_cnn().eval()
    x = torch.rand(4, 3, 16, 16)
    maps = torch.rand(4, 16, 16)
    t = m(x).argmax(1)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    drop_theirs = DropInConfidence()(x, maps.numpy(), targets, m)
    inc_theirs = IncreaseInConfidence()(x, maps.numpy(), targets, m)
    y = m(x).softmax(1).gather(1, t[:, None])[:, 0].detach()
    # pytorch-grad-cam reports max(0, Y - O); the paper (and we) divide by Y and use percent.
    ours = ev.average_drop(m, x, maps, target=t)
    np.testing.assert_allclose((ours * y / 100).numpy(), drop_theirs, atol=1e-6)
    np.testing.assert_allclose(ev.increase_in_confidence(m, x, maps, target=t).numpy(), inc_theirs)


def test_road_matches_pytorch_grad_cam_without_noise():
    peer("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(5)
    m = tiny_cnn().eval()
    x = torch.rand(2, 3, 16, 16)
    maps = torch.rand(2, 16, 16)
    t = m(x).argmax(1)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in t]
    for order, remover in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        ours = ev.road(m, x, maps, target=t, percentages=(20, 50, 80), order=order, noise=0.0)
        for j, p in enumerate((20, 50, 80)):
            metric = PerturbationConfidenceMetric(remover(100 - p, NoisyLinearImputer(noise=0.0)))
            theirs = metric(x, maps.numpy(), targets, m, return_diff=False)
            np.testing.assert_allclose(ours.scores[:, j].numpy(), theirs, atol=1e-4)


def test_road_imputation_is_the_neighbour_mean():
    x = torch.rand(1, 1, 10, 10)
    missing = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    missing[0, 0, 3:7, 3:7] = True
    filled = ev.remove_and_debias._impute(x, missing, noise=0.0, generator=None).double()
    k = ev.remove_and_debias._ROAD_KERNEL.double()
    for i in range(3, 7):
        for j in range(3, 7):
            nb = sum(k[a, b] * filled[0, 0, i + a - 1, j + b - 1] for a in range(3) for b in range(3))
            assert filled[0, 0, i, j].item() == pytest.approx(nb.item() / k.sum().item(), abs=1e-5)
    assert torch.equal(filled[~missing.expand_as(filled)].float(), x[~missing])


def test_spearman_and_ssim_match_scipy_and_skimage():
    scipy_stats = peer("scipy.stats")
    skm = peer("skimage.metrics")
    torch.manual_seed(6)
    a = torch.rand(3, 20, 20)
    b = a + 0.3 * torch.rand(3, 20, 20)
    b[0] = torch.round(b[0] * 4)  # ties
    ours = ev.spearman(a, b)
    for i in range(3):
        ref = scipy_stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    s = ev.ssim(a, b)
    for i in range(3):
        na = (a[i] - a[i].min()) / (a[i].max() - a[i].min())
        nb = (b[i] - b[i].min()) / (b[i].max() - b[i].min())
        ref = skm.structural_similarity(
            na.double().numpy(), nb.double().numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
        assert s[i].item() == pytest.approx(ref, abs=1e-3)


def test_randomization_check_gradient_changes_and_model_untouched():
    torch.manual_seed(7)
    m = tiny_cnn().eval()
    x = torch.rand(2, 3, 16, 16)

    def grad_explain(model, inp, t):
        inp = inp.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(inp).gather(1, t[:, None]).sum(), inp)
        return g

    r = ev.randomization_check(m, x, grad_explain, layers="cascade")
    assert r.layers == ("fc", "features.4", "features.3", "features.1", "features.0")
    assert r.similarity.shape == (2, 5)
    ind = ev.randomization_check(m, x, grad_explain, layers="independent", similarity="ssim")
    assert ind.similarity.shape == (2, 5)
    # An explanation that ignores the weights never changes: similarity 1, never passes.
    const = ev.randomization_check(m, x, lambda model, inp, t: inp.sum(1), layers="cascade")
    assert torch.allclose(const.similarity, torch.ones(2, 5))
    assert not const.passed.any()
    # A precomputed explanation of the trained model gives the same check without recomputing it.
    t = m(x).argmax(1)
    given = ev.randomization_check(m, x, grad_explain, layers="cascade", original=grad_explain(m, x, t))
    assert torch.allclose(given.similarity, r.similarity, atol=1e-6)
    with pytest.raises(InputError, match="original must be the explanation of x"):
        ev.randomization_check(m, x, grad_explain, original=torch.zeros(3, 16, 16))
    # Several methods on the same randomized copies: each equals its own single check.
    doubled = lambda model, inp, t: 2 * grad_explain(model, inp, t)  # noqa: E731
    for mode in ("cascade", "independent"):
        both = ev.randomization_check(m, x, {"grad": grad_explain, "x2": doubled}, layers=mode)
        for name, fn in (("grad", grad_explain), ("x2", doubled)):
            alone = ev.randomization_check(m, x, fn, layers=mode)
            assert torch.allclose(both[name].similarity, alone.similarity, atol=1e-6)
            assert torch.equal(both[name].passed, alone.passed) and both[name].layers == alone.layers
    with pytest.raises(InputError, match=r"explain\['bad'\] must be a callable"):
        ev.randomization_check(m, x, {"grad": grad_explain, "bad": 3})
    # A callable returning {name: maps} (several methods from one pass) is checked per name, and a
    # given original of one of its names is used as it is.
    pair = lambda model, inp, t: {"grad": grad_explain(model, inp, t), "x2": doubled(model, inp, t)}  # noqa: E731
    grouped = ev.randomization_check(m, x, {"pair": pair, "same": lambda model, inp, t: inp.sum(1)},
                                     original={"x2": doubled(m, x, t)})
    assert list(grouped) == ["grad", "x2", "same"]
    for name, fn in (("grad", grad_explain), ("x2", doubled)):
        alone = ev.randomization_check(m, x, fn)
        assert torch.allclose(grouped[name].similarity, alone.similarity, atol=1e-6)
    assert torch.allclose(grouped["same"].similarity, torch.ones(2, 5))
    # The group's trained-model maps given under the group's name: it then runs once per step only.
    calls = []
    counted = lambda model, inp, tt: calls.append(1) or pair(model, inp, tt)  # noqa: E731
    given_group = ev.randomization_check(m, x, {"pair": counted}, original={"pair": {"grad": grad_explain(m, x, t),
                                                                                     "x2": doubled(m, x, t)}})
    assert len(calls) == 5 and list(given_group) == ["grad", "x2"]
    assert torch.allclose(given_group["grad"].similarity, grouped["grad"].similarity, atol=1e-6)
    with pytest.raises(InputError, match=r"two explanations are named 'grad'"):
        ev.randomization_check(m, x, {"pair": pair, "grad": grad_explain})
    flaky = iter([{"grad": grad_explain(m, x, t)}] + [{}] * 9)
    with pytest.raises(InputError, match=r"explain returned nothing for 'grad' after randomising 'fc'"):
        ev.randomization_check(m, x, lambda model, inp, tt: next(flaky))


def test_batch_equals_one_by_one():
    m = tiny_cnn().eval()
    x = torch.rand(3, 3, 12, 12)
    maps = torch.rand(3, 12, 12)
    whole = ev.deletion(m, x, maps, steps=6)
    single = torch.cat([ev.deletion(m, x[i : i + 1], maps[i : i + 1], steps=6) for i in range(3)])
    assert torch.allclose(whole, single, atol=1e-6)


def test_memory_budget_bounds_the_chunks():
    class Counting(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.sizes = []

        def forward(self, x):
            self.sizes.append(x.shape[0])
            return self.inner(x)

    m = Counting(tiny_cnn().eval()).eval()
    x = torch.rand(4, 3, 8, 8)
    maps = torch.rand(4, 8, 8)
    per_sample = 3 * 8 * 8 * 4
    small = ev.deletion(m, x, maps, steps=10, memory_budget=per_sample * 8)
    assert max(m.sizes) <= 8
    m.sizes.clear()
    big = ev.deletion(m, x, maps, steps=10)
    assert torch.allclose(small, big, atol=1e-6)


def test_bad_inputs_are_named():
    m = tiny_cnn().eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(InputError, match=r"maps have shape \(3, 8, 8\)"):
        ev.deletion(m, x, torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="steps must be a positive int"):
        ev.deletion(m, x, torch.rand(2, 8, 8), steps=0)
    with pytest.raises(InputError, match="substrate 'gray'"):
        ev.deletion(m, x, torch.rand(2, 8, 8), substrate="gray")
    with pytest.raises(TargetError, match="target class 9 is out of range; the model has 4 classes"):
        ev.insertion(m, x, torch.rand(2, 8, 8), target=9)
    with pytest.raises(InputError, match="order must be 'morf' or 'lerf'"):
        ev.road(m, x, torch.rand(2, 8, 8), order="up")
    with pytest.raises(InputError, match="layers must be 'cascade' or 'independent'"):
        ev.randomization_check(m, x, lambda *a: None, layers="all")


def test_empty_batch_gives_empty_results():
    m = tiny_cnn().eval()
    r = ev.deletion(m, torch.rand(0, 3, 8, 8), torch.rand(0, 8, 8))
    assert r.shape == (0,)


def test_layer_groups_split_evenly_and_grouped_steps_randomise_together():
    m = tiny_cnn().eval()
    assert ev.layer_groups(m) == [["features.0"], ["features.1"], ["features.3"], ["features.4"], ["fc"]]
    assert ev.layer_groups(m, 2) == [["features.0", "features.1"], ["features.3", "features.4", "fc"]]
    x = torch.rand(2, 3, 16, 16)
    r = ev.randomization_check(m, x, lambda model, inp, t: model.features(inp).sum(1), blocks=ev.layer_groups(m, 2))
    assert r.layers == ("features.3 … fc", "features.0 … features.1")
    # Randomising the first group changes conv features: similarity drops well below 1 at the last step.
    assert r.similarity[:, -1].max() < 0.9


def test_distinct_groups_exact_copies_only():
    a, b, c = torch.rand(3, 3, 5, 5).unbind(0)
    near_a = a.clone()
    near_a[0, 0, 0] += 1e-6  # a different image, however close
    x = torch.stack([a, b, a, c, b, near_a])
    uniq, inverse = ev.perturbation._distinct(x)
    assert uniq.shape[0] == 4 and torch.equal(uniq[inverse], x)
    assert inverse[0] == inverse[2] and inverse[1] == inverse[4] and inverse[5] != inverse[0]


# -- inputs and outputs other than one tensor in, one tensor out ------------------------------------


class TwoImages(nn.Module):
    """``forward(a, b)``: class 0 reads image ``a`` (``2 a0 + a1``), class 1 image ``b`` (``b0 + 3 b1``)."""

    def __init__(self):
        super().__init__()
        self.fa = nn.Linear(2, 2, bias=False)
        self.fb = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fa.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
            self.fb.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 3.0]]))

    def forward(self, a, b):
        return self.fa(a.flatten(1)) + self.fb(b.flatten(1))


def _two_image_curve(a, b, maps, wrt, target):
    """Literal deletion on 1 x 2 images, two steps: zero the more salient pixel, then both."""
    order = [int(maps[1] > maps[0]), int(maps[1] <= maps[0])]  # most salient first
    a, b = a.flatten().tolist(), b.flatten().tolist()
    curve = []
    for k in range(3):
        img = list((a, b)[wrt])
        for j in order[:k]:
            img[j] = 0.0
        aa, bb = (img, b) if wrt == 0 else (a, img)
        z0, z1 = 2 * aa[0] + aa[1], bb[0] + 3 * bb[1]
        p = 1 / (1 + math.exp(-(z0 - z1)))
        curve.append(p if target == 0 else 1 - p)
    return curve


def test_two_input_model_deletion_perturbs_input_wrt_and_keeps_the_other():
    m = TwoImages().eval()
    a = torch.tensor([[1.0, 1.0], [0.5, 2.0], [1.5, 0.25]]).view(3, 1, 1, 2)
    b = torch.tensor([[1.0, 1.0], [0.75, 0.5], [2.0, 0.0]]).view(3, 1, 1, 2)
    maps = torch.tensor([[0.2, 0.9], [0.8, 0.1], [0.3, 0.4]]).view(3, 1, 2)
    for wrt, target in ((0, 0), (1, 1), (0, 1)):
        # 8 bytes an image: forwards of two images, so every curve spans several chunks
        r = ev.deletion_curve(m, (a, b), maps, target=target, steps=2, substrate="zero", wrt=wrt, memory_budget=16)
        for i in range(3):
            want = _two_image_curve(a[i], b[i], maps[i].flatten(), wrt, target)
            assert torch.allclose(r.curves[i], torch.tensor(want), atol=1e-6), (wrt, target, i)
            auc = 0.5 * (want[0] + want[1]) / 2 + 0.5 * (want[1] + want[2]) / 2
            assert r.auc[i].item() == pytest.approx(auc, abs=1e-6)
        assert torch.equal(ev.deletion(m, (a, b), maps, target=target, steps=2, wrt=wrt), r.auc)
        # keyword inputs: the same model called as m(a=..., b=...), the input named by wrt
        kw = ev.deletion(m, {"a": a, "b": b}, maps, target=target, steps=2, wrt="ab"[wrt])
        assert torch.allclose(kw, r.auc, atol=1e-7)
    # the predicted class is read off the unperturbed pair
    pred = ev.deletion_curve(m, (a, b), maps, steps=2, wrt=1)
    with torch.no_grad():
        assert torch.equal(pred.targets, m(a, b).argmax(1))


class DictOut(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return {"features": x.flatten(1), "logits": self.inner(x)}


class TupleOut(DictOut):
    def forward(self, x):
        return (self.inner(x), x.flatten(1))


def test_dict_and_tuple_outputs_give_the_plain_models_values():
    torch.manual_seed(11)
    inner = tiny_cnn().eval()
    x = torch.rand(3, 3, 12, 12)
    maps = torch.rand(3, 12, 12)
    calls = {
        "deletion": lambda m, **kw: ev.deletion(m, x, maps, steps=5, **kw),
        "insertion": lambda m, **kw: ev.insertion(m, x, maps, target=[0, 1, 2], steps=5, **kw),
        "average_drop": lambda m, **kw: ev.average_drop(m, x, maps, **kw),
        "road": lambda m, **kw: ev.road(m, x, maps, percentages=(30, 70), **kw).scores,
    }
    for name, call in calls.items():
        plain = call(inner)
        assert torch.equal(call(DictOut(inner), output="logits"), plain), name
        assert torch.equal(call(DictOut(inner)), plain), name  # a "logits" key is found by itself
        assert torch.equal(call(TupleOut(inner), output=0), plain), name
    r = ev.randomization_check(DictOut(inner), x, lambda model, inp, t: inp.sum(1) * t.view(-1, 1, 1),
                               output="logits")
    with torch.no_grad():
        assert torch.equal(r.original, x.sum(1) * inner(x).argmax(1).view(-1, 1, 1).float())


def test_wrong_output_selection_and_callable_targets_are_target_errors():
    inner = tiny_cnn().eval()
    x, maps = torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8)
    with pytest.raises(TargetError, match=r"output='logit' is not part of the model's output, dict with "
                                          r"features: tensor of shape \(\d+, 192\), logits: tensor of shape \(\d+, 4\)"):
        ev.deletion(DictOut(inner), x, maps, output="logit")
    with pytest.raises(TargetError, match=r"need \(N, classes\) scores, but the model returned tuple .*pass output="):
        ev.average_drop(TupleOut(inner), x, maps)

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            return self.inner(x)

    m = Counting()
    for metric in (ev.deletion, ev.insertion, ev.average_drop, ev.road):
        with pytest.raises(TargetError, match="needs class indices; a callable target gives scores only"):
            metric(m, x, maps, target=lambda out: out[:, 0])
    with pytest.raises(TargetError, match="needs class indices"):
        ev.randomization_check(m, x, lambda *a: None, target=lambda out: out[:, 0])
    assert m.calls == 0  # rejected before any forward
