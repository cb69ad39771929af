"""CAM methods: hand-computed values, batching, dtype, targets, layers, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe.errors import LayerNotFoundError, TargetError, UnsupportedModelError
from tests.helpers import tiny_cnn

# The tests read the registry: a method registered in tl.cam.METHODS is tested here with no edit.
GRADIENT_METHODS = [key for key, cls in tl.cam.METHODS.items() if cls.uses_gradients]


class OneConv(nn.Module):
    """conv 1x1 (weights +1 / -1) -> ReLU -> GAP -> Linear W = [[1, 2], [3, -1]]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


X1 = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])  # A0 = [[1,0],[3,0]], A1 = [[0,2],[0,0]]; logits (2, 2.5)


@pytest.mark.parametrize(
    "method,target,raw",
    [
        ("cam", 0, [[1.0, 4.0], [3.0, 0.0]]),  # A0 + 2 A1
        ("cam", 1, [[3.0, 0.0], [9.0, 0.0]]),  # ReLU(3 A0 - A1)
        ("gradcam", 0, [[0.25, 1.0], [0.75, 0.0]]),  # weights = W / 4
        ("gradcam", 1, [[0.75, 0.0], [2.25, 0.0]]),
        ("gradcam++", 0, [[1 / 3, 4 / 3], [1.0, 0.0]]),  # alpha_c = 1/(2 + S_c g_c) = 1/3, w = 4 alpha g
        ("hirescam", 1, [[0.75, 0.0], [2.25, 0.0]]),  # ReLU(sum_c g A), g = W / 4
        ("layercam", 1, [[0.75, 0.0], [2.25, 0.0]]),  # ReLU(g) keeps only channel 0: 3/4 A0
        ("xgradcam", 0, [[0.25, 1.0], [0.75, 0.0]]),  # sum_ij (A / sum A) g = g
    ],
)
def test_hand_computed_one_conv(method, target, raw):
    model = OneConv()
    res = tl.cam.METHODS[method](model, "relu")(X1, target)
    want = torch.tensor([raw])
    torch.testing.assert_close(res.raw, want)
    torch.testing.assert_close(res.maps, want / want.max())
    assert res.targets.tolist() == [target]
    assert res.layer == "relu" and res.method == type(tl.cam.METHODS[method](model, "relu")).__name__


def test_predicted_target_and_scores():
    res = tl.cam.GradCAM(OneConv(), "relu")(X1)
    assert res.targets.tolist() == [1]
    torch.testing.assert_close(res.scores, torch.tensor([2.5]))


def test_callable_target_equals_index():
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    a = tl.cam.GradCAM(model)(x, target=lambda out: out[:, 2])
    b = tl.cam.GradCAM(model)(x, target=2)
    torch.testing.assert_close(a.maps, b.maps)
    assert a.targets.tolist() == [-1, -1]


@pytest.mark.parametrize("method", sorted(tl.cam.METHODS))
def test_batch_equals_single_calls(method):
    model = tiny_cnn()
    x = torch.rand(3, 3, 16, 16)
    cam = tl.cam.METHODS[method](model)
    whole = cam(x, [0, 1, 3])
    for i, t in enumerate([0, 1, 3]):
        one = cam(x[i : i + 1], t)
        torch.testing.assert_close(whole.maps[i : i + 1], one.maps, atol=1e-5, rtol=0)
        torch.testing.assert_close(whole.raw[i : i + 1], one.raw, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", sorted(tl.cam.METHODS))
def test_float64_in_float64_out(method):
    model = tiny_cnn().double()
    res = tl.cam.METHODS[method](model)(torch.rand(2, 3, 16, 16, dtype=torch.float64))
    assert res.maps.dtype == torch.float64 and res.raw.dtype == torch.float64
    assert res.maps.shape == (2, 16, 16)
    assert float(res.maps.min()) >= 0.0 and float(res.maps.max()) <= 1.0


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_zero_gradient_gives_zero_map(method):
    model = tiny_cnn()
    with torch.no_grad():
        model.fc.weight.zero_()
    res = tl.cam.METHODS[method](model)(torch.rand(2, 3, 16, 16), 1)
    assert torch.equal(res.maps, torch.zeros(2, 16, 16))
    assert not torch.isnan(res.raw).any()


@pytest.mark.parametrize("method", sorted(tl.cam.METHODS))
def test_target_out_of_range_raises_before_forward(method):
    model = tiny_cnn()
    calls = []
    h = model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    cam = tl.cam.METHODS[method](model, "features.3")
    with pytest.raises(TargetError, match="target class 7 is out of range; the model has 4 classes"):
        cam(torch.rand(2, 3, 16, 16), 7)
    with pytest.raises(TargetError, match="-1"):
        cam(torch.rand(2, 3, 16, 16), [0, -1])
    h.remove()
    # At most a copy of two samples goes through the model (confirming the class count its layers
    # suggest), once per call: no method's work starts.
    assert all(n <= 2 for n in calls) and len(calls) <= 2


def test_default_layer_is_last_spatial_map():
    assert tl.cam.GradCAM(tiny_cnn())(torch.rand(1, 3, 16, 16)).layer == "features"
    # vgg-like: an AdaptiveAvgPool2d((4, 4)) after the features also outputs a map; pooling is not a default.
    vgg = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64, 3),
    )
    assert tl.cam.default_layer(vgg, torch.rand(1, 3, 16, 16))[0] == "0"
    # when the max-pool leaves 1 x 1, the last map of more than one position is the ReLU before it
    assert tl.cam.default_layer(vgg, torch.rand(1, 3, 2, 2))[0] == "0.1"


def test_layer_errors():
    with pytest.raises(LayerNotFoundError, match="closest"):
        tl.cam.GradCAM(tiny_cnn(), "featurs.3")
    with pytest.raises(UnsupportedModelError, match="not a spatial map"):
        tl.cam.GradCAM(tiny_cnn(), "fc")(torch.rand(1, 3, 16, 16))


def test_several_layers_fused():
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    a = tl.cam.GradCAM(model, "features.2")(x, 1)
    b = tl.cam.GradCAM(model, "features.5")(x, 1)
    both = tl.cam.GradCAM(model, ["features.2", "features.5"], fuse="max")(x, 1)
    assert both.layer == "features.2+features.5" and len(both.raws) == 2
    fused = torch.maximum(a.maps, b.maps)
    want = (fused - fused.amin((1, 2), keepdim=True)) / (fused.amax((1, 2), keepdim=True) - fused.amin((1, 2), keepdim=True))
    torch.testing.assert_close(both.maps, want)


def test_cam_needs_a_linear_on_the_channels():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    res = tl.cam.CAM(model, "1")(torch.rand(1, 3, 8, 8), 1)
    assert res.raw.shape == (1, 6, 6)
    other = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Conv2d(5, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedModelError, match="5 channels; Sequential has no such linear layer"):
        tl.cam.CAM(other, "0")(torch.rand(1, 3, 8, 8), 0)


def test_inplace_relu_after_layer():
    """The layer is followed by ReLU(inplace=True): the captured map is the conv output, pre-ReLU."""
    model = tiny_cnn()
    res = tl.cam.GradCAM(model, "features.1")(torch.rand(2, 3, 16, 16), 0)  # BN, then ReLU(inplace)
    assert res.raw.shape == (2, 16, 16)


def test_scorecam_runs_one_forward_per_distinct_mask():
    """Channel 1 duplicates channel 0; channels 2, 3, 4 are constant (mask all 0): 8 channels, 5 forwards."""
    from tests.reference import ref_cam

    model = tiny_cnn(width=4).eval()
    conv, bn = model.features[3], model.features[4]
    with torch.no_grad():
        conv.weight[1] = conv.weight[0]
        conv.bias[1] = conv.bias[0]
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            t[1] = t[0]
        bn.weight[2:5] = 0.0
        bn.bias[2:5] = torch.tensor([-1.0, -2.0, 1.0])
    x = torch.rand(2, 3, 8, 8)
    cam = tl.cam.ScoreCAM(model, "features.5", batch_size=3)
    res = cam(x, [0, 2])
    assert cam.forwards == 2 * 5
    A, _, _ = ref_cam.acts_and_grads(model, x, "features.5", [0, 2])
    want = ref_cam.scorecam(model, x, A, [0, 2])
    torch.testing.assert_close(res.raw.double(), torch.from_numpy(want), rtol=1e-4, atol=1e-6)


def test_eigencam_sign_follows_activation_mean():
    torch.manual_seed(0)
    a = torch.zeros(1, 3, 4, 4)
    a[0, :, 1, 1] = torch.tensor([5.0, 4.0, 6.0])  # one bright spot in every channel
    cam = tl.cam.EigenCAM(nn.Identity())
    res = cam.cam_map(a, None, None)
    assert int(res.flatten().argmax()) == 5 and float(res.flatten()[5]) > 0


def test_plot_calls_render():
    import matplotlib.figure

    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    fig = tl.cam.GradCAM(model)(x).plot(x)
    assert isinstance(fig, matplotlib.figure.Figure)


def test_empty_batch():
    model = tiny_cnn()
    res = tl.cam.GradCAM(model)(torch.rand(0, 3, 16, 16))
    assert res.maps.shape == (0, 16, 16) and res.targets.shape == (0,)
    assert tl.saliency.guided_backprop(model, torch.rand(0, 3, 16, 16)).shape == (0, 3, 16, 16)


@pytest.mark.parametrize("layer,target", [(None, None), ("features.5", 1), (["features.2", "features.5"], "callable")])
def test_compare_equals_each_method_alone_in_one_forward(layer, target):
    """tl.cam.compare: every method's result equals its own call, from one forward of the model
    (Score-CAM's masked forwards aside) instead of one per method."""
    torch.manual_seed(0)
    model = tiny_cnn().double()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    if target == "callable":
        target = lambda out: out[:, 0] - out[:, 1]  # noqa: E731
    names = [m for m, cls in tl.cam.METHODS.items() if not getattr(cls, "forward_per_channel", False)  # Score-CAM
             and not (m == "cam" and isinstance(layer, list))]
    calls = []
    handle = model.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        together = tl.cam.compare(model, x, names, layer=layer, target=target)
        finding = 1 if layer is None else 0  # the default layer is found by one forward
        assert len(calls) == 1 + finding
        calls.clear()
        for name in names:
            alone = tl.cam.METHODS[name](model, layer)(x, target)
            got = together[name]
            torch.testing.assert_close(got.maps, alone.maps, rtol=0, atol=1e-12)
            torch.testing.assert_close(got.raw, alone.raw, rtol=0, atol=1e-12)
            assert torch.equal(got.targets, alone.targets) and got.layer == alone.layer and got.method == alone.method
        assert len(calls) == len(names) * (1 + finding)
    finally:
        handle.remove()
    assert list(together) == names
    assert all(bool(r.maps.abs().sum() > 0) for r in together.values())


def test_compare_scorecam_and_errors():
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    both = tl.cam.compare(model, x, "gradcam, scorecam", layer="features.5", target=[0, 1])
    alone = tl.cam.ScoreCAM(model, "features.5")(x, [0, 1])
    torch.testing.assert_close(both["scorecam"].maps, alone.maps)
    from torchloupe.errors import UsageError

    with pytest.raises(UsageError, match=r"unknown CAM method 'gradcm'; closest: gradcam"):
        tl.cam.compare(model, x, ["gradcm"])
    with pytest.raises(UsageError, match=r"no CAM methods given"):
        tl.cam.compare(model, x, [])
    with pytest.raises(LayerNotFoundError, match="features.55"):
        tl.cam.compare(model, x, "all", layer="features.55")
    with pytest.raises(TargetError):
        tl.cam.compare(model, x, "all", target=99)


def test_every_method_has_its_paper_name_for_figures():
    assert [tl.cam.title_of(k) for k in tl.cam.METHODS] == [
        "CAM", "Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "Score-CAM", "Eigen-CAM"]
    assert tl.cam.title_of("GradCAMPlusPlus") == tl.cam.title_of(tl.cam.GradCAMPlusPlus) == "Grad-CAM++"
    assert tl.cam.title_of("my method") == "my method"

    class SquaredGradCAM(tl.cam.GradCAM):  # a user's variant is not labelled as its parent
        pass

    assert tl.cam.title_of(SquaredGradCAM) == "SquaredGradCAM"


# -- the registry: adding a method is one file and one registry line --------------------------

MY_CAM = '''
from torchloupe.cam.base import GradientCAM


class MaxGradCAM(GradientCAM):
    """Channel weights: the largest gradient over the positions."""

    title = "Max-Grad-CAM"

    def channel_weights(self, acts, grads):
        return grads.flatten(2).amax(2)
'''


@pytest.fixture
def my_cam(tmp_path, monkeypatch):
    """A method defined in a module of its own, registered by one line; unregistered after."""
    import sys

    (tmp_path / "my_cams.py").write_text(MY_CAM)
    monkeypatch.syspath_prepend(str(tmp_path))
    tl.cam.register("maxgradcam", "my_cams:MaxGradCAM")
    yield "maxgradcam"
    tl.cam.METHODS.unregister("maxgradcam")
    sys.modules.pop("my_cams", None)


def test_the_builtin_methods_resolve_from_their_registry_lines():
    from torchloupe.cam.gradcam import GradCAM
    from torchloupe.cam.scorecam import ScoreCAM

    assert tl.cam.METHODS["gradcam"] is tl.cam.GradCAM is GradCAM
    assert tl.cam.METHODS["scorecam"] is tl.cam.ScoreCAM is ScoreCAM
    assert [tl.cam.METHODS.spec(k) for k in ("gradcam", "gradcam++")] == [".gradcam:GradCAM",
                                                                          ".gradcam_pp:GradCAMPlusPlus"]
    assert {"CAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM", "ScoreCAM", "EigenCAM",
            "METHODS", "register", "compare"} <= set(tl.cam.__all__)
    for name in tl.cam.__all__:
        assert getattr(tl.cam, name) is not None
    assert GRADIENT_METHODS == ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"]


def test_a_method_registered_in_one_line_reaches_compare_the_cli_and_the_report(my_cam, capsys):
    from torchloupe.app.cli import main
    from torchloupe.reporting.base import Figure, Subject, registered

    cls = tl.cam.METHODS[my_cam]
    assert cls.__module__ == "my_cams" and cls.__name__ == "MaxGradCAM"
    assert list(tl.cam.METHODS)[-1] == my_cam and tl.cam.title_of(my_cam) == "Max-Grad-CAM"
    # compare runs it; OneConv's gradient is W[t] / 4 at every position, so max = Grad-CAM's mean
    res = tl.cam.compare(OneConv(), X1, [my_cam, "gradcam"], layer="relu", target=1)
    torch.testing.assert_close(res[my_cam].raw, torch.tensor([[[0.75, 0.0], [2.25, 0.0]]]))
    torch.testing.assert_close(res[my_cam].maps, res["gradcam"].maps)
    assert res[my_cam].method == "MaxGradCAM"
    assert my_cam in tl.cam.compare(OneConv(), X1, "all", layer="relu")
    # the CLI's help and --method choices read the registry
    with pytest.raises(SystemExit):
        main(["cam", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "comma-separated: all, cam, gradcam, gradcam++, xgradcam, layercam, hirescam, scorecam, eigencam, " \
           "maxgradcam (default: gradcam)" in help_text
    # the report's CAM section shows every registered method
    subject = Subject(name="tiny", model=tiny_cnn().eval(), inputs=torch.rand(2, 3, 16, 16))
    blocks = {s.key: s for s in registered()}["cam"].build(subject, {"quick": True, "seed": 0}).render()
    fig = [b for b in blocks if isinstance(b, Figure)][0].figure
    assert [t.get_text() for t in fig.axes[0].texts if t.get_rotation() == 0][-2:] == ["Eigen-CAM", "Max-Grad-CAM"]


def test_registry_errors():
    from torchloupe.errors import UsageError

    with pytest.raises(UsageError, match=r"CAM method 'gradcam' is already registered \(.gradcam:GradCAM\)"):
        tl.cam.register("gradcam", "my_cams:MaxGradCAM")
    with pytest.raises(UsageError, match=r"expected 'module:Class' or a BaseCAM subclass, got 'my_cams.MaxGradCAM'"):
        tl.cam.register("x", "my_cams.MaxGradCAM")
    with pytest.raises(UsageError, match=r"'all' names every CAM method"):
        tl.cam.register("all", tl.cam.GradCAM)
    with pytest.raises(UsageError, match=r"int is not a torchloupe.cam.BaseCAM subclass"):
        tl.cam.register("x", int)
    tl.cam.register("nomodule", "no_such_module_here:X")
    tl.cam.register("noclass", "torchloupe.cam.gradcam:NoSuchCAM")
    try:
        with pytest.raises(UsageError, match=r"CAM method 'nomodule': cannot import 'no_such_module_here'"):
            tl.cam.METHODS["nomodule"]
        with pytest.raises(UsageError, match=r"'NoSuchCAM' in torchloupe.cam.gradcam is not found"):
            tl.cam.compare(OneConv(), X1, ["noclass"])
    finally:
        tl.cam.METHODS.unregister("nomodule")
        tl.cam.METHODS.unregister("noclass")
    with pytest.raises(UsageError, match=r"no CAM method 'nomodule'; registered: cam, gradcam"):
        tl.cam.METHODS.unregister("nomodule")
    tl.cam.register("mine", tl.cam.GradCAM)  # a class object works as well
    try:
        assert tl.cam.METHODS["mine"] is tl.cam.GradCAM and tl.cam.METHODS.spec("mine") == \
            "torchloupe.cam.gradcam:GradCAM"
    finally:
        tl.cam.METHODS.unregister("mine")
    assert list(tl.cam.METHODS) == ["cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam",
                                    "eigencam"]
