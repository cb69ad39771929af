"""Devices and precision (issue 19): ``--device`` on every subcommand, autocast of the read-only
views, half-precision models through the gradient methods, nothing left on a GPU after a call."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from PIL import Image
from torch import nn

import torchloupe as tl
from tests.helpers import assert_same_state, model_state, tiny_cnn
from torchloupe.app.cli import main
from torchloupe.devices import autocast, available_devices, parse_device
from torchloupe.errors import UsageError

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())

FACTORY = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
"""


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


# -- device names ---------------------------------------------------------------------------

def test_auto_is_cuda_when_there_else_cpu():
    assert parse_device("auto") == (torch.device("cuda") if HAS_CUDA else torch.device("cpu"))
    assert parse_device(None) == parse_device("auto")
    assert parse_device("cpu") == torch.device("cpu") and parse_device(" CPU ") == torch.device("cpu")
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("spec, why", [
    pytest.param("cuda", "no CUDA GPU", marks=pytest.mark.skipif(HAS_CUDA, reason="CUDA is here")),
    pytest.param("cuda:7", "CUDA", marks=pytest.mark.skipif(HAS_CUDA and torch.cuda.device_count() > 7,
                                                            reason="8 GPUs here")),
    pytest.param("mps", "no Apple MPS", marks=pytest.mark.skipif(HAS_MPS, reason="MPS is here")),
    ("cdua", "is not a device name"),
    ("cuda:x", "is not a device name"),
    ("gpu", "is not a device name"),
])
def test_a_device_not_here_names_it_and_what_is(spec, why):
    with pytest.raises(UsageError) as err:
        parse_device(spec)
    text = str(err.value)
    assert f"device {spec!r}" in text and why in text
    assert f"(available here: {', '.join(available_devices())})" in text
    assert "\n" not in text


# -- the command line -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import numpy as np

    d = tmp_path_factory.mktemp("device")
    (d / "net.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(d / name)
    torch.save(torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)), d / "data.pt")
    return d


def _commands(files, out):
    m = ["--model", f"{files}/net.py:build"]
    imgs = ["--input", str(files / "a.png"), str(files / "b.png")]
    return {
        "cam": ["cam", *m, *imgs, "--layer", "2", "--out", str(out / "cam"), "--no-progress"],
        "graph": ["graph", *m, "--input-shape", "1,3,16,16", "--format", "txt", "--out", str(out / "graph")],
        "maximize": ["maximize", *m, "2:1", "--shape", "3", "16", "16", "--steps", "3", "--no-progress"],
        "exemplars": ["exemplars", *m, "--data", str(files / "data.pt"), "--layer", "2", "--k", "2", "--no-progress"],
        "report": ["report", *m, *imgs, "--sections", "overview", "feature_maps", "--no-progress", "--jobs", "1",
                   "--out", str(out / "report")],
        "demo": ["demo", "--quick", "--sections", "overview", "--no-progress", "--jobs", "1", "--out", str(out / "demo")],
    }


def test_every_subcommand_has_device():
    from torchloupe.app.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        flags = {s for a in parser._actions for s in a.option_strings}
        assert "--device" in flags, name
        defaults = {a.dest: a.default for a in parser._actions}
        assert defaults["device"] == "auto", name


@pytest.mark.parametrize("command", ["cam", "graph", "maximize", "exemplars", "report"])
def test_device_cpu_runs_each_subcommand(command, files, tmp_path, capsys):
    argv = _commands(files, tmp_path)[command]
    code = main([*argv, "--device", "cpu"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    if command == "cam":
        assert stdout.startswith("wrote 2 overlays, grid.png and index.html") and (tmp_path / "cam" / "a_gradcam.png").stat().st_size > 100
        saved = main([*argv, "--device", "cpu", "--save", str(tmp_path / "maps.pt")])
        maps = torch.load(tmp_path / "maps.pt")["gradcam"]["maps"]
        assert saved == 0 and maps.device.type == "cpu" and maps.dtype == torch.float32
        assert float(maps.amax()) == 1.0  # min-max normalised: each map reaches 1
    elif command == "graph":
        assert stdout.startswith("Sequential: ") and "wrote" in stdout
        assert "Conv2d" in (tmp_path / "graph" / "graph.txt").read_text()
    elif command == "maximize":
        assert stdout.splitlines()[0].split() == ["objective", "reached", "random", "best", "status"]
        assert stdout.splitlines()[1].startswith("2:1 ")
    elif command == "exemplars":
        lines = stdout.splitlines()
        assert lines[0] == "2: top-2 of 6 samples, reduce=mean, 1 process(es)" and len(lines) == 7
    else:
        html = (tmp_path / "report" / "report.html").read_text()
        assert "<h2>Feature maps</h2>" in html and "<h2>Overview</h2>" in html


DEMO_FAMILY = """
import torch
from tests.helpers import tiny_cnn
from torchloupe.reporting import Subject

def subjects(options):
    return [Subject("tiny", tiny_cnn(), torch.rand(2, 3, 16, 16))]
"""


def test_device_cpu_runs_the_demo(files, tmp_path, capsys, monkeypatch):
    pkg = tmp_path / "device_demo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny.py").write_text(DEMO_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("torchloupe.app.commands.demo.PACKAGE", "device_demo_pkg")  # no demo training in a test
    argv = ["demo", "--quick", "--sections", "overview", "feature_maps", "--no-progress", "--jobs", "1",
            "--out", str(tmp_path / "demo"), "--device", "cpu", "--precision", "bf16"]
    code = main(argv)
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stdout.startswith("prepared tiny: 1 model in ")
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "<h2>Overview</h2>" in html and "<h2>Feature maps</h2>" in html


@pytest.mark.parametrize("command", ["cam", "graph", "maximize", "exemplars", "report", "demo"])
@pytest.mark.parametrize("device", [
    pytest.param("cuda", marks=pytest.mark.skipif(HAS_CUDA, reason="CUDA is here")),
    pytest.param("mps", marks=pytest.mark.skipif(HAS_MPS, reason="MPS is here")),
    "cdua",
])
def test_a_device_not_here_is_one_line_exit_2_before_loading(command, device, files, tmp_path, capsys, monkeypatch):
    import torchloupe.app.models as models

    def never(*a, **k):
        raise AssertionError("the model was loaded before the device was checked")

    monkeypatch.setattr(models, "load_model", never)
    monkeypatch.setattr(models, "build_model", never)
    code = main([*_commands(files, tmp_path)[command], "--device", device])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"loupe: error: device {device!r}") and "available here: cpu" in stderr
    assert stderr.count("\n") == 1


def test_default_device_resolves_to_cpu_here_and_the_model_goes_there(files):
    import argparse

    from torchloupe.app.commands._common import place_model, resolve_device

    args = argparse.Namespace(device="auto", precision="bf16", precision_converts=True)
    dev = resolve_device(args)
    assert dev == (torch.device("cuda") if HAS_CUDA else torch.device("cpu"))
    model = place_model(args, nn.Linear(3, 2), dev)
    assert model.weight.device.type == dev.type and model.weight.dtype == torch.bfloat16
    args.precision_converts = False  # the read-only commands: autocast, the model kept in float32
    assert place_model(args, nn.Linear(3, 2), dev).weight.dtype == torch.float32


def test_cam_precision_bf16_runs_the_model_in_bf16_and_draws_float32(files, tmp_path, capsys):
    argv = _commands(files, tmp_path)["cam"]
    assert main([*argv, "--device", "cpu", "--save", str(tmp_path / "a.pt")]) == 0
    assert main([*argv, "--device", "cpu", "--precision", "bf16", "--save", str(tmp_path / "b.pt")]) == 0
    capsys.readouterr()
    a = torch.load(tmp_path / "a.pt")["gradcam"]
    b = torch.load(tmp_path / "b.pt")["gradcam"]
    assert b["maps"].dtype == torch.float32 and torch.equal(a["targets"], b["targets"])
    for i in range(2):
        assert pearson(a["maps"][i], b["maps"][i]) > 0.999


def test_exemplars_precision_bf16_on_the_command_line(files, tmp_path, capsys):
    argv = _commands(files, tmp_path)["exemplars"]
    assert main([*argv, "--device", "cpu", "--save", str(tmp_path / "a.pt")]) == 0
    assert main([*argv, "--device", "cpu", "--precision", "bf16", "--save", str(tmp_path / "b.pt")]) == 0
    capsys.readouterr()
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert b["values"].dtype == torch.float32  # drawn and saved in float32
    torch.testing.assert_close(b["values"], a["values"], rtol=2e-2, atol=2e-3)  # bf16: 8 bits of mantissa


# -- autocast of the read-only views ---------------------------------------------------------

def _separated_model() -> nn.Module:
    """A 1x1 conv whose channel c reads (c + 1) x the mean of the input: sample i scaled by 2**i gives
    activations a factor 2 apart, far beyond bfloat16's 0.4 % rounding."""
    conv = nn.Conv2d(3, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1, 5, dtype=torch.float32)[:, None, None, None].expand(4, 3, 1, 1) / 3)
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_feature_maps_under_bf16_autocast_agree_with_fp32():
    model = tiny_cnn(0).eval()
    x = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    ref = tl.features.feature_maps(model, x, "features.3")
    with autocast("cpu", "bf16"):
        got = tl.features.feature_maps(model, x, "features.3")
    assert got.maps.dtype == torch.float32  # computed in bf16, kept and ranked in float32
    torch.testing.assert_close(got.maps, ref.maps, rtol=0.05, atol=0.05)
    for i in range(3):
        assert pearson(got.maps[i], ref.maps[i]) > 0.999
        rho = _spearman(got.stats["mean"][i], ref.stats["mean"][i])
        assert rho > 0.99


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    return pearson(ra, rb)


def test_exemplars_under_bf16_autocast_pick_the_same_samples():
    from torch.utils.data import TensorDataset

    model = _separated_model()
    gen = torch.Generator().manual_seed(0)
    base = 0.5 + torch.rand(8, 3, 6, 6, generator=gen)
    scale = 2.0 ** torch.randperm(8, generator=gen).float()
    data = TensorDataset(base * scale[:, None, None, None])
    ref = tl.synthesis.exemplars(model, data, layer="1", k=3, batch_size=3, progress=False)
    with autocast("cpu", "bf16"):
        got = tl.synthesis.exemplars(model, data, layer="1", k=3, batch_size=3, progress=False)
    assert torch.equal(got.indices, ref.indices)
    expected = scale.argsort(descending=True)[:3]
    assert all(torch.equal(row, expected) for row in ref.indices)  # the largest scales, known by construction
    torch.testing.assert_close(got.values.float(), ref.values, rtol=1e-2, atol=0)


def test_report_precision_autocasts_only_the_read_only_sections(monkeypatch, tmp_path):
    from torchloupe.reporting import builder

    seen = {}
    real = builder._run_one

    def spy(section, subject, options):
        with builder.precision_for(section, subject, options):
            seen[section.key] = torch.is_autocast_enabled("cpu")
        return real(section, subject, options)

    monkeypatch.setattr(builder, "_run_one", spy)
    model = tiny_cnn(0)
    before = model_state(model)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tl.report(model, x, tmp_path / "r.html", sections=["feature_maps", "cam"], options={"precision": "bf16"},
              progress=False)
    assert seen == {"feature_maps": True, "cam": False}
    assert_same_state(before, model_state(model))
    with pytest.raises(UsageError, match="precision 'fp8' is not one of: fp32, bf16, fp16"):
        tl.report(model, x, tmp_path / "r.html", sections=["overview"], options={"precision": "fp8"}, progress=False)


# -- half-precision models through the gradient methods --------------------------------------

def _plain_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5)).eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_model_cams_correlate_with_fp32(seed):
    model = _plain_net(seed)
    x = torch.randn(3, 3, 20, 20, generator=torch.Generator().manual_seed(100 + seed))
    half = copy.deepcopy(model).to(torch.bfloat16)
    before = model_state(half)
    target = model(x).argmax(1)
    for name in ("gradcam", "gradcam++", "layercam", "scorecam"):
        cls = tl.cam.METHODS[name]
        ref = cls(model, "2")(x, target=target)
        got = cls(half, "2")(x.to(torch.bfloat16), target=target)
        assert got.maps.dtype == torch.float32 and got.raw.dtype == torch.float32  # computed in float32
        for i in range(3):
            assert pearson(got.maps[i], ref.maps[i]) >= 0.999, (name, i)
    assert_same_state(before, model_state(half))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_model_saliency_correlates_with_fp32(seed):
    """Pixel saliency is the gradient itself, in the model's dtype: bfloat16's backward rounds it
    (measured 0.997-0.999 for the plain gradient here, 0.998-0.9996 for guided backprop); the
    CAMs above combine it in float32 and reach 0.9999."""
    model = _plain_net(seed)
    x = torch.randn(3, 3, 20, 20, generator=torch.Generator().manual_seed(100 + seed))
    half = copy.deepcopy(model).to(torch.bfloat16)
    target = model(x).argmax(1)
    for fn, bound in ((tl.saliency.gradient, 0.995), (tl.saliency.guided_backprop, 0.997)):
        ref = fn(model, x, target)
        got = fn(half, x.to(torch.bfloat16), target)
        assert got.dtype == torch.bfloat16 and got.shape == x.shape  # shaped and typed like the input
        for i in range(3):
            assert pearson(got[i], ref[i]) >= bound, (fn.__name__, i)


def test_bf16_trained_model_cams_correlate_with_fp32():
    """The trained demo CNN (BatchNorm, cached weights): every CAM of its bf16 copy matches."""
    model = tl.demo.train_shapes_model(seed=0)
    ds = tl.demo.shapes_dataset(4, size=64, seed=3)
    x = torch.stack([ds[i][0] for i in range(4)])
    half = copy.deepcopy(model).to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("gradcam", "gradcam++", "layercam", "scorecam"):
            ref = tl.cam.METHODS[name](model)(x)
            got = tl.cam.METHODS[name](half)(x.to(torch.bfloat16), target=ref.targets)
            for i in range(4):
                assert pearson(got.maps[i], ref.maps[i]) >= 0.999, (name, i)


def test_eigencam_runs_on_a_bf16_model():
    """torch has no bfloat16 SVD on the CPU: the CAM arithmetic in float32 makes EigenCAM work."""
    model = _plain_net(0)
    x = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(5))
    ref = tl.cam.EigenCAM(model, "2")(x)
    got = tl.cam.EigenCAM(copy.deepcopy(model).to(torch.bfloat16), "2")(x.to(torch.bfloat16))
    for i in range(2):
        assert pearson(got.maps[i], ref.maps[i]) >= 0.999


# -- on a GPU ------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_nothing_left_on_the_gpu_but_what_the_user_holds():
    model = tiny_cnn(0).cuda()
    x = torch.rand(2, 3, 16, 16, device="cuda")

    def calls():
        return (tl.cam.GradCAM(model, "features.3")(x), tl.saliency.guided_backprop(model, x),
                tl.features.feature_maps(model, x, "features.3"))

    warm = calls()  # the first calls make the cuBLAS / cuDNN workspaces, which stay for the process
    del warm
    torch.cuda.synchronize()
    before_state = model_state(model)
    held = torch.cuda.memory_allocated()
    res, sal, fm = calls()
    results = res.maps.numel() + res.raw.numel() + res.targets.numel() + res.scores.numel()
    assert res.maps.device.type == sal.device.type == fm.maps.device.type == "cuda"
    del res, sal, fm
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == held, f"{torch.cuda.memory_allocated() - held} bytes left ({results})"
    assert_same_state(before_state, model_state(model))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_results_equal_cpu_ones():
    model = tiny_cnn(0)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = tl.cam.GradCAM(model, "features.3")(x)
    got = tl.cam.GradCAM(copy.deepcopy(model).cuda(), "features.3")(x.cuda())
    torch.testing.assert_close(got.maps.cpu(), ref.maps, rtol=1e-4, atol=1e-4)


def test_graph_precision_bf16_traces_the_same_graph(files, tmp_path, capsys):
    argv = _commands(files, tmp_path)["graph"]
    assert main([*argv, "--device", "cpu"]) == 0
    fp32 = capsys.readouterr().out.splitlines()[0]
    assert main([*argv, "--device", "cpu", "--precision", "bf16"]) == 0
    bf16 = capsys.readouterr().out.splitlines()[0]
    assert bf16 == fp32 == "Sequential: 9 nodes, 8 edges, 355 parameters"  # 3*4*9+4 + 4*6*9+6 + 6*3+3


class _AddsInPlace(nn.Module):
    """Two branches joined as torchvision's ResNet joins them: ``out += identity``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out = self.a(x)
        out += self.b(x)
        return self.fc(torch.relu(out).mean((2, 3)))


def test_fusion_gradients_on_a_branch_added_to_in_place():
    """Found by bench/gpu.py (the report's fusion section on resnet18): the replaced branch output
    was the gradient's leaf, and ``out += ...`` wrote into it."""
    model = _AddsInPlace().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    res = tl.fusion.contributions(model, x, branches={"a": "a", "b": "b"}, target=[0, 1],
                                  method="gradient_x_activation")
    # gradient x activation of a sum into a linear head: d score / d a == d score / d b, so each
    # branch's value is sum(g * z) with the same g; a float64 reference by hand
    za, zb = model.a(x).detach().double(), model.b(x).detach().double()
    z = (za + zb).requires_grad_(True)
    w = model.fc.weight.detach().double()
    score = (torch.relu(z).mean((2, 3)) @ w.T + model.fc.bias.double()).gather(1, torch.tensor([[0], [1]]))
    (g,) = torch.autograd.grad(score.sum(), [z])
    torch.testing.assert_close(res.values["a"].double(), (g * za).sum((1, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.values["b"].double(), (g * zb).sum((1, 2, 3)), rtol=1e-4, atol=1e-5)
