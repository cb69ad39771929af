"""tl.fusion on tiny models with set weights: values known by construction or by hand."""

from __future__ import annotations

import pytest

from tests.helpers import peer
import torch
from torch import nn

import torchloupe as tl
from torchloupe.errors import InputError, LayerNotFoundError, TargetError, UnsupportedModelError
from tests.reference import ref_fusion


class TwoBranch(nn.Module):
    """Two identical CNN branches, cat, optional nonlinearity, linear head with planted weights.

    Class 0 reads only branch A, class 1 only branch B, class 2 both with equal weights.
    """

    def __init__(self, nonlinear: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.b.load_state_dict(self.a.state_dict())
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
            self.head.weight[0, :4] = torch.rand(4) + 0.5
            self.head.weight[1, 4:] = torch.rand(4) + 0.5
            self.head.weight[2, :4] = torch.rand(4) + 0.5
            self.head.weight[2, 4:] = self.head.weight[2, :4]
        self.nonlinear = nonlinear

    def forward(self, x):
        h = torch.cat([self.a(x), self.b(x)], 1)
        if self.nonlinear:
            h = torch.tanh(h)
        return self.head(h)


BRANCHES = {"A": "a", "B": "b"}


@pytest.fixture(scope="module")
def x():
    return torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", ["exact", "shapley", "integrated_gradients"])
@pytest.mark.parametrize("nonlinear", [False, True])
def test_by_construction_shares(method, nonlinear, x):
    model = TwoBranch(nonlinear)
    if nonlinear and method == "exact":
        with pytest.raises(UnsupportedModelError, match="tanh"):
            tl.fusion.contributions(model, x, BRANCHES, target=0, method=method)
        return
    for target, want in [(0, (1.0, 0.0)), (1, (0.0, 1.0)), (2, (0.5, 0.5))]:
        res = tl.fusion.contributions(model, x, BRANCHES, target=target, method=method)
        assert res.method == method
        assert torch.allclose(res.shares["A"], torch.full((5,), want[0]), atol=0.02)
        assert torch.allclose(res.shares["B"], torch.full((5,), want[1]), atol=0.02)
        assert torch.allclose(res.shares["A"] + res.shares["B"], torch.ones(5), atol=1e-6)


def test_auto_picks_exact_on_linear_head_and_shapley_otherwise(x):
    assert tl.fusion.contributions(TwoBranch(False), x, BRANCHES, target=2).method == "exact"
    assert tl.fusion.contributions(TwoBranch(True), x, BRANCHES, target=2).method == "shapley"


def test_exact_matches_head_weights_by_hand(x):
    model = TwoBranch(False)
    res = tl.fusion.contributions(model, x, BRANCHES, target=[0, 1, 2, 2, 0], method="exact")
    za, zb = model.a(x).detach(), model.b(x).detach()
    W = model.head.weight.detach()
    t = torch.tensor([0, 1, 2, 2, 0])
    assert torch.allclose(res.values["A"], (W[t, :4] * za).sum(1), atol=1e-6)
    assert torch.allclose(res.values["B"], (W[t, 4:] * zb).sum(1), atol=1e-6)
    assert float(res.completeness.max()) < 1e-5
    # completeness against the bias: f(z) - f(0) = sum of values
    assert torch.allclose(res.scores - res.baseline_scores, res.values["A"] + res.values["B"], atol=1e-5)


class Product(nn.Module):
    """f = za * zb + za with za = 2 x0, zb = 3 x1: a multiplicative fusion with hand-known Shapley values."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 1, bias=False)
        self.b = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[2.0, 0.0]]))
            self.b.weight.copy_(torch.tensor([[0.0, 3.0]]))

    def forward(self, x):
        za, zb = self.a(x), self.b(x)
        f = za * zb + za
        return torch.cat([f, -f], 1)


def test_shapley_and_ig_by_hand_on_a_product():
    x = torch.tensor([[1.0, 1.0], [0.5, -2.0], [-1.0, 0.25]])
    za, zb = 2 * x[:, 0], 3 * x[:, 1]
    # v({}) = 0, v(a) = za, v(b) = 0, v(ab) = za zb + za  ->  phi_a = za + za zb / 2, phi_b = za zb / 2
    want_a, want_b = za + za * zb / 2, za * zb / 2
    m = Product()
    for method in ("shapley", "integrated_gradients"):
        res = tl.fusion.contributions(m, x, {"a": "a", "b": "b"}, target=0, method=method)
        assert torch.allclose(res.values["a"], want_a, atol=1e-5), method
        assert torch.allclose(res.values["b"], want_b, atol=1e-5), method
    abl = tl.fusion.contributions(m, x, {"a": "a", "b": "b"}, target=0, method="ablation")
    assert torch.allclose(abl.values["a"], za * zb + za, atol=1e-6)  # v(ab) - v(b)
    assert torch.allclose(abl.values["b"], za * zb, atol=1e-6)  # v(ab) - v(a)
    gxa = tl.fusion.contributions(m, x, {"a": "a", "b": "b"}, target=0, method="gradient_x_activation")
    assert torch.allclose(gxa.values["a"], (zb + 1) * za, atol=1e-5)
    assert torch.allclose(gxa.values["b"], za * zb, atol=1e-5)
    with pytest.raises(UnsupportedModelError, match="mul"):
        tl.fusion.contributions(m, x, {"a": "a", "b": "b"}, target=0, method="exact")


class FourBranch(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.br = nn.ModuleList([nn.Sequential(nn.Linear(5, 3), nn.Tanh()) for _ in range(4)])
        self.head = nn.Sequential(nn.Linear(12, 6), nn.Softplus(), nn.Linear(6, 3))

    def forward(self, x):
        return self.head(torch.cat([b(x) for b in self.br], 1))


def test_shapley_efficiency_and_reference_over_four_branches():
    m = FourBranch()
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))
    branches = {f"b{i}": f"br.{i}" for i in range(4)}
    res = tl.fusion.contributions(m, x, branches, target=1, method="shapley", baseline="mean", batch_size=7)
    total = sum(res.values.values())
    assert torch.allclose(total.double(), (res.scores - res.baseline_scores).double(), atol=1e-5)
    # slow reference: marginal contributions over all 24 orderings, branches replaced by hand
    with torch.no_grad():
        z = [b(x) for b in m.br]
        zbar = [t.mean(0, keepdim=True).expand_as(t) for t in z]
        for i in range(3):
            def value(S, i=i):
                parts = [z[k][i] if k in S else zbar[k][i] for k in range(4)]
                return float(m.head(torch.cat(parts).unsqueeze(0))[0, 1])

            ref = ref_fusion.shapley_by_permutations(value, 4)
            got = [float(res.values[f"b{k}"][i]) for k in range(4)]
            assert got == pytest.approx(ref, abs=1e-5)


def test_ig_completeness_is_reported_and_under_tolerance():
    m = FourBranch()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(4))
    branches = {f"b{i}": f"br.{i}" for i in range(4)}
    res = tl.fusion.contributions(m, x, branches, target=0, method="integrated_gradients", tol=1e-4)
    gap = (sum(res.values.values()) - (res.scores - res.baseline_scores)).abs()
    assert torch.allclose(res.completeness, gap, atol=1e-6)
    assert float(res.completeness.max()) <= 1e-4 * float((res.scores - res.baseline_scores).abs().max()) + 1e-6
    assert res.steps >= 8


def test_input_branches_match_captum_shapley_values():
    captum = peer("captum.attr")

    class Early(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, u, v):
            return self.body(torch.cat([u, v], 1))

    m = Early().eval()
    u, v = torch.randn(4, 3), torch.randn(4, 3)
    ours = tl.fusion.contributions(m, (u, v), {"u": "input:0", "v": "input:1"}, target=2, method="shapley")
    sv = captum.ShapleyValues(m)
    mask = (torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    theirs = sv.attribute((u, v), target=2, feature_mask=mask, baselines=(torch.zeros(1, 3), torch.zeros(1, 3)))
    assert torch.allclose(ours.values["u"], theirs[0][:, 0], atol=1e-5)
    assert torch.allclose(ours.values["v"], theirs[1][:, 0], atol=1e-5)


def test_baselines_mean_dict_and_input_tensor(x):
    m = TwoBranch(False)
    res_mean = tl.fusion.contributions(m, x, BRANCHES, target=0, method="shapley", baseline="mean")
    za = m.a(x).detach()
    W = m.head.weight.detach()[0, :4]
    assert torch.allclose(res_mean.values["A"], ((za - za.mean(0)) * W).sum(1), atol=1e-5)
    res_dict = tl.fusion.contributions(m, x, BRANCHES, target=0, method="shapley",
                                       baseline={"A": za.mean(0), "B": torch.zeros(4)})
    assert torch.allclose(res_dict.values["A"], res_mean.values["A"], atol=1e-5)
    ref_img = torch.full((1, 3, 8, 8), 0.5)
    res_in = tl.fusion.contributions(m, x, BRANCHES, target=0, method="exact", baseline=ref_img)
    zr = m.a(ref_img).detach()
    assert torch.allclose(res_in.values["A"], ((za - zr) * W).sum(1), atol=1e-5)
    assert res_in.baseline == "input tensor"


def test_predicted_target_and_shares_sum_to_one(x):
    m = TwoBranch(True)
    res = tl.fusion.contributions(m, x, BRANCHES, method="ablation")
    with torch.no_grad():
        assert torch.equal(res.targets, m(x).argmax(1))
    assert torch.allclose(res.share_matrix().sum(1), torch.ones(5), atol=1e-6)


def test_clear_errors(x):
    m = TwoBranch(False)
    with pytest.raises(LayerNotFoundError):
        tl.fusion.contributions(m, x, {"A": "a", "B": "nope"})
    with pytest.raises(UnsupportedModelError, match="method"):
        tl.fusion.contributions(m, x, BRANCHES, method="lime")
    with pytest.raises(TargetError, match="out of range"):
        tl.fusion.contributions(m, x, BRANCHES, target=7)
    with pytest.raises(InputError, match="baseline"):
        tl.fusion.contributions(m, x, BRANCHES, baseline="median")
    with pytest.raises(InputError, match="input:3"):
        tl.fusion.contributions(m, x, {"A": "a", "B": "input:3"})
    with pytest.raises(UnsupportedModelError, match="two or more"):
        tl.fusion.contributions(m, x, {"A": "a"})


def test_branches_none_uses_the_last_fusion_point(x):
    res = tl.fusion.contributions(TwoBranch(False), x, None, target=0)
    assert res.branches == ["a", "b"]
    assert torch.allclose(res.shares["a"], torch.ones(5), atol=1e-6)


def test_branch_maps_come_from_each_branch_channels():
    class Spatial(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 1, bias=False)
            self.b = nn.Conv2d(1, 1, 1, bias=False)
            self.head = nn.Linear(2, 2, bias=False)
            with torch.no_grad():
                self.a.weight.fill_(1.0)
                self.b.weight.fill_(1.0)
                self.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))

        def forward(self, x):
            return self.head(torch.cat([self.a(x), self.b(x.flip(-1))], 1).mean((2, 3)))

    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 0] = 1.0  # one hot pixel, left column
    bm = tl.fusion.branch_maps(Spatial(), x, {"a": "a", "b": "b"}, target=0)
    assert bm.maps["a"][0, 1, 0] == pytest.approx(1.0)
    assert float(bm.maps["b"].max()) == 0.0  # class 0 does not read branch b
    bm = tl.fusion.branch_maps(Spatial(), x, {"a": "a", "b": "b"}, target=1)
    assert bm.raw["a"][0, 1, 0] == pytest.approx(1.0 / 32)  # weight 0.5 / 16 pixels, activation 1
    assert bm.raw["b"][0, 1, 3] == pytest.approx(1.0 / 32)  # branch b saw the flipped image
    assert bm.maps["a"].shape == (1, 4, 4)


def test_hsic_matches_the_u_statistic_reference():
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)
    Y = Y + X[:, :2]
    assert float(tl.fusion.hsic1(X, Y)) == pytest.approx(ref_fusion.hsic_u_statistic(X, Y), rel=1e-9)


def test_linear_cka_invariances_and_limit():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(200, 10, generator=g)
    Q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g))
    assert float(tl.fusion.linear_cka(X, X @ Q * 3.0)) == pytest.approx(1.0, abs=1e-9)
    # population CKA of X ~ N(0, I10), Y = N(0, I7) + X[:, :7] / 2: ||S_xy||^2 / (||S_xx|| ||S_yy||)
    truth = 7 * 0.25 / ((10 ** 0.5) * (7 * 1.25 ** 2) ** 0.5)
    X2 = torch.randn(2000, 10, generator=g)
    Y2 = torch.randn(2000, 7, generator=g) + X2[:, :7] * 0.5
    assert float(tl.fusion.linear_cka(X2, Y2)) == pytest.approx(truth, abs=0.02)
    assert float(tl.fusion.linear_cka(X2, Y2, batch_size=250)) == pytest.approx(truth, abs=0.02)
    # the biased estimator overshoots on few samples; the unbiased one much less
    Y = torch.randn(200, 7, generator=g) + X[:, :7] * 0.5
    assert abs(float(tl.fusion.linear_cka(X, Y)) - truth) < abs(ref_fusion.cka_biased(X, Y) - truth)
    indep = tl.fusion.linear_cka(X, torch.randn(200, 7, generator=g))
    assert abs(float(indep)) < 0.05


def test_similarity_panel_identical_branches(x):
    res = tl.fusion.similarity(TwoBranch(False), torch.rand(12, 3, 8, 8), BRANCHES)
    assert res.names == ["A", "B", "fused"]
    assert torch.allclose(res.matrix, torch.ones(3, 3, dtype=torch.float64), atol=1e-9)
    assert res.point == "cat"


def test_share_tracker_records_every_n_steps(x):
    m = TwoBranch(False)
    tracker = tl.fusion.ShareTracker(m, x, BRANCHES, every=3, target=2)
    recorded = [tracker.step() for _ in range(7)]
    assert recorded == [True, False, False, True, False, False, True]
    assert tracker.history.steps == [0, 3, 6]
    assert tracker.history.shares["A"].shape == (3, 5)
    assert torch.allclose(tracker.history.mean_shares()["A"], torch.full((3,), 0.5), atol=1e-5)
    with pytest.raises(InputError):
        tl.fusion.ShareTracker(m, x, BRANCHES, every=0)


@pytest.mark.parametrize("method", ["exact", "shapley", "integrated_gradients", "gradient_x_activation"])
def test_a_batch_equals_its_samples_one_by_one(method, x):
    m = TwoBranch(method != "exact")
    whole = tl.fusion.contributions(m, x, BRANCHES, target=2, method=method)
    for i in range(x.shape[0]):
        one = tl.fusion.contributions(m, x[i:i + 1], BRANCHES, target=2, method=method)
        for b in BRANCHES:
            assert torch.allclose(one.values[b], whole.values[b][i:i + 1], atol=1e-5)


def test_fused_features_is_the_cat_output(x):
    m = TwoBranch(False)
    point, fused = tl.fusion.fused_features(m, x, BRANCHES)
    assert point.op == "cat" and point.kind == "late"
    with torch.no_grad():
        assert torch.equal(fused, torch.cat([m.a(x), m.b(x)], 1))


def test_expand_mode_and_its_fallback_give_the_same_shapley_values():
    class Skip(nn.Module):
        """The raw input meets the fused features after the head: the branch replicas cannot expand alone."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.a, self.b = nn.Linear(5, 3), nn.Linear(5, 3)
            self.head = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))

        def forward(self, x):
            return self.head(torch.cat([self.a(x), self.b(x)], 1)) + x[:, :3]

    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    for model in (FourBranch(), Skip()):
        spec = {f"b{i}": f"br.{i}" for i in range(4)} if isinstance(model, FourBranch) else {"a": "a", "b": "b"}
        one_by_one = tl.fusion.contributions(model, x, spec, target=1, method="shapley", batch_size=4)  # r = 1
        batched = tl.fusion.contributions(model, x, spec, target=1, method="shapley", batch_size=64)
        for b in spec:
            assert torch.allclose(one_by_one.values[b], batched.values[b], atol=1e-6)
    from torchloupe.fusion.contrib import Engine
    from torchloupe.inputs import Inputs

    for model, spec, mode in ((FourBranch(), {f"b{i}": f"br.{i}" for i in range(4)}, "expand"),
                              (Skip(), {"a": "a", "b": "b"}, "replicate")):
        with tl.probe.session(model) as run:
            eng = Engine(run, Inputs.of(x), spec, "zero", 64)
            eng.masked(torch.tensor([[True] * len(spec), [False] * len(spec)]))
        assert eng.mode == mode


# -- inputs and outputs other than one tensor in, one tensor out ------------------------------------


class TwoInputs(nn.Module):
    """``forward(u, v) = head(cat(fu(u), fv(v)))`` with set weights: linear, so every method is exact."""

    def __init__(self):
        super().__init__()
        self.fu = nn.Linear(2, 2, bias=False)
        self.fv = nn.Linear(3, 2, bias=False)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.fu.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
            self.fv.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [2.0, 0.0, 0.0]]))
            self.head.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, 0.0], [0.0, 1.0, 1.0, 2.0]]))
            self.head.bias.copy_(torch.tensor([0.1, -0.2]))

    def forward(self, u, v):
        return self.head(torch.cat([self.fu(u), self.fv(v)], 1))


def test_two_input_model_contributions_by_hand():
    m = TwoInputs().eval()
    u = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    v = torch.tensor([[1.0, 0.0, 3.0], [0.5, 1.0, -2.0]])
    # class 1 = (fu(u))_1 + (fv(v))_0 + 2 (fv(v))_1 - 0.2 = u1 + (v0 + v2) + 4 v0 - 0.2
    want_u = u[:, 1]
    want_v = 5 * v[:, 0] + v[:, 2]
    for method in ("exact", "shapley", "gradient_x_activation"):
        by_tuple = tl.fusion.contributions(m, (u, v), {"u": "fu", "v": "fv"}, target=1, method=method)
        by_name = tl.fusion.contributions(m, {"u": u, "v": v}, {"u": "fu", "v": "fv"}, target=1, method=method)
        inputs = tl.fusion.contributions(m, (u, v), {"u": "input:0", "v": "input:1"}, target=1, method=method)
        for res in (by_tuple, by_name, inputs):
            assert torch.allclose(res.values["u"], want_u, atol=1e-6), method
            assert torch.allclose(res.values["v"], want_v, atol=1e-6), method
            assert torch.allclose(res.scores, want_u + want_v - 0.2, atol=1e-6)
    # a baseline given as model inputs, laid out as the inputs (a batch of one is expanded)
    res = tl.fusion.contributions(m, (u, v), {"u": "fu", "v": "fv"}, target=1, method="exact",
                                  baseline=(torch.ones(1, 2), torch.zeros(1, 3)))
    assert torch.allclose(res.values["u"], want_u - 1.0, atol=1e-6)
    assert torch.allclose(res.values["v"], want_v, atol=1e-6)


class TwoBranchDict(TwoBranch):
    """TwoBranch whose forward returns ``{"aux": tanh(h), "logits": head(h)}``: aux is not linear."""

    def forward(self, x):
        h = torch.cat([self.a(x), self.b(x)], 1)
        return {"aux": torch.tanh(h), "logits": self.head(h)}


class TwoBranchTuple(TwoBranch):
    def forward(self, x):
        h = torch.cat([self.a(x), self.b(x)], 1)
        return self.head(h), torch.tanh(h)


@pytest.mark.parametrize("method", ["auto", "shapley", "ablation", "integrated_gradients", "gradient_x_activation"])
def test_dict_and_tuple_outputs_give_the_plain_models_values(method, x):
    plain = tl.fusion.contributions(TwoBranch(False), x, BRANCHES, target=[0, 1, 2, 2, 0], method=method)
    for model, output in ((TwoBranchDict(False), "logits"), (TwoBranchDict(False), None), (TwoBranchTuple(False), 0)):
        res = tl.fusion.contributions(model, x, BRANCHES, target=[0, 1, 2, 2, 0], method=method, output=output)
        assert res.method == plain.method  # "auto": exact, as the selected output is linear in the branches
        for b in BRANCHES:
            assert torch.allclose(res.values[b], plain.values[b], atol=1e-6, rtol=0)
        assert torch.allclose(res.scores, plain.scores, atol=1e-6, rtol=0)
    if method == "auto":
        assert plain.method == "exact"


def test_branch_maps_with_output_selection_equal_the_plain_models():
    class Spatial(nn.Module):
        def __init__(self, as_dict: bool):
            super().__init__()
            torch.manual_seed(2)
            self.a, self.b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1)
            self.head = nn.Linear(4, 3)
            self.as_dict = as_dict

        def forward(self, x):
            logits = self.head(torch.relu(torch.cat([self.a(x), self.b(x)], 1)).mean((2, 3)))
            return {"hidden": x.mean(1), "logits": logits} if self.as_dict else logits

    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    plain = tl.fusion.branch_maps(Spatial(False), x, {"a": "a", "b": "b"})
    picked = tl.fusion.branch_maps(Spatial(True), x, {"a": "a", "b": "b"}, output="logits")
    assert torch.equal(picked.targets, plain.targets)
    for b in ("a", "b"):
        assert torch.allclose(picked.maps[b], plain.maps[b], atol=1e-6, rtol=0)
        assert float(plain.maps[b].max()) > 0


def test_wrong_output_selection_is_a_target_error(x):
    with pytest.raises(TargetError, match=r"output='scores' is not part of the model's output, dict with "
                                          r"aux: tensor of shape \(\d+, 8\), logits: tensor of shape \(\d+, 3\)"):
        tl.fusion.contributions(TwoBranchDict(False), x, BRANCHES, output="scores")
    with pytest.raises(TargetError, match=r"the model returned tuple with 0: tensor .*pass output="):
        tl.fusion.contributions(TwoBranchTuple(False), x, BRANCHES, method="shapley")
    with pytest.raises(TargetError, match="needs class indices; a callable target gives scores only"):
        tl.fusion.contributions(TwoBranch(False), x, BRANCHES, target=lambda out: out[:, 0])
