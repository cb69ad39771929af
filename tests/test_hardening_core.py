"""Hardening of the compute core (issue 21): the user's errors reach the caller, layer names with
glob characters, ``tl.report``'s upfront checks, typed one-line errors for common mistakes and bad
values, the pre-flight memory estimate, strings in figures and the report, Hugging Face train state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe import errors


# --- 9. the user's errors are never swallowed -----------------------------------------------------
class _RaisesOnce(nn.Module):
    """Two conv branches joined by a linear head; its forward number ``fail_at`` raises (once)."""

    def __init__(self, fail_at: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(8, 3)
        self.fail_at, self.calls, self.raised = fail_at, 0, None

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            self.raised = RuntimeError("user bug")
            raise self.raised
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).mean((2, 3)))


def _maps():
    return torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))


def _x():
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _explain(m, x, t):
    return x.abs().sum(1)


_BR = {"a": "a", "b": "b"}
RAISING = {
    "deletion": lambda m: tl.evaluate.deletion(m, _x(), _maps(), steps=4),
    "insertion": lambda m: tl.evaluate.insertion(m, _x(), _maps(), steps=4),
    "deletion_curve": lambda m: tl.evaluate.deletion_curve(m, _x(), _maps(), steps=4),
    "insertion_curve": lambda m: tl.evaluate.insertion_curve(m, _x(), _maps(), steps=4),
    "average_drop": lambda m: tl.evaluate.average_drop(m, _x(), _maps()),
    "increase_in_confidence": lambda m: tl.evaluate.increase_in_confidence(m, _x(), _maps()),
    "road": lambda m: tl.evaluate.road(m, _x(), _maps(), percentages=(50,)),
    "randomization_check": lambda m: tl.evaluate.randomization_check(m, _x(), _explain),
    "fusion-shapley": lambda m: tl.fusion.contributions(m, _x(), _BR, method="shapley"),
    "fusion-ablation": lambda m: tl.fusion.contributions(m, _x(), _BR, method="ablation"),
    "fusion-integrated_gradients": lambda m: tl.fusion.contributions(m, _x(), _BR, method="integrated_gradients",
                                                                     max_steps=8),
    "fusion-gradient_x_activation": lambda m: tl.fusion.contributions(m, _x(), _BR, method="gradient_x_activation"),
    "fusion-exact": lambda m: tl.fusion.contributions(m, _x(), _BR, method="exact"),
    "ShareTracker": lambda m: tl.fusion.ShareTracker(m, _x(), _BR, every=1).step(),
}


@pytest.mark.parametrize("name", list(RAISING))
def test_a_runtime_error_of_the_model_reaches_the_caller_from_every_forward(name):
    """Whichever forward of the call raises, that very error reaches the caller (no re-run, no result)."""
    clean = _RaisesOnce()
    RAISING[name](clean)
    n = clean.calls
    assert n >= 1
    for k in range(1, n + 1):
        m = _RaisesOnce(fail_at=k)
        with pytest.raises(RuntimeError, match="user bug") as info:
            RAISING[name](m)
        chain, e = [], info.value  # the error itself, or a TraceError raised from it (the tracer's own)
        while e is not None:
            chain.append(e)
            e = e.__cause__
        assert m.raised in chain and (chain[0] is m.raised or isinstance(chain[0], errors.TraceError)), \
            f"forward {k} of {n}: another error reached the caller"
        assert m.calls == k, f"forward {k} of {n} raised, yet the model ran {m.calls} times"


def test_out_of_memory_in_a_channels_last_forward_is_not_a_layout_fallback():
    from torchloupe.evaluate.batching import rejects_channels_last

    assert rejects_channels_last(RuntimeError("view size is not compatible with input tensor's size and stride "
                                              "(at least one dimension spans across two contiguous subspaces)"))
    assert not rejects_channels_last(torch.OutOfMemoryError("CUDA out of memory. view size is not compatible"))
    assert not rejects_channels_last(RuntimeError("user bug"))


class _ViewsItsMaps(nn.Module):
    """A model whose forward takes only standard-layout maps (``x.view`` after a conv)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.conv(x).view(x.shape[0], -1))


def test_a_model_that_rejects_channels_last_still_gets_its_metric():
    m = _ViewsItsMaps()
    got = tl.evaluate.average_drop(m, _x(), _maps())
    # reference: the same metric by hand, contiguous forwards
    with torch.no_grad():
        p = m(_x()).softmax(1)
        t = p.argmax(1)
        y = p.gather(1, t[:, None])[:, 0]
        o = m(_x() * _maps()[:, None]).softmax(1).gather(1, t[:, None])[:, 0]
    want = (torch.clamp(y - o, min=0) / y) * 100
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# --- 6. layer names holding glob characters ------------------------------------------------------
class _GlobNames(nn.Module):
    """ModuleDict keys with ``[``, ``]``, ``*`` and ``?``; also a plain ``a0`` the glob ``a[0]`` would match."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleDict({"a[0]": nn.Conv2d(3, 4, 3, padding=1), "a0": nn.Identity(),
                                     "b*": nn.Conv2d(4, 4, 3, padding=1), "c?": nn.ReLU()})
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.blocks["c?"](self.blocks["b*"](self.blocks["a0"](self.blocks["a[0]"](x))))
        return self.fc(x.mean((2, 3)))


def test_a_layer_name_with_glob_characters_is_found_exactly_first():
    m = _GlobNames()
    assert tl.find_layer(m, "blocks.a[0]") is m.blocks["a[0]"]
    assert tl.find_layer(m, "blocks.b*") is m.blocks["b*"]
    assert tl.find_layer(m, "blocks.c?") is m.blocks["c?"]
    from torchloupe.layers import find_layers

    # exact=False: always a glob ("a[0]" is the character class [0] -> "a0")
    assert [n for n, _ in find_layers(m, "blocks.a[0]", exact=False)] == ["blocks.a0"]
    # a glob naming no module exactly still globs; exact=True refuses it
    assert [n for n, _ in find_layers(m, "blocks.[ab]*")] == ["blocks.a[0]", "blocks.a0", "blocks.b*"]
    with pytest.raises(errors.LayerNotFoundError, match="blocks.\\[ab\\]\\*"):
        find_layers(m, "blocks.[ab]*", exact=True)
    acts = tl.activations(m, _x(), ["blocks.a[0]", "blocks.b*"])
    torch.testing.assert_close(acts["blocks.a[0]"], m.blocks["a[0]"](_x()))


def test_report_on_a_model_whose_layer_names_hold_glob_characters(tmp_path):
    info = tl.report(_GlobNames(), _x(), tmp_path / "r.html", progress=False,
                     sections=["feature_maps", "feature_vis", "cam", "saliency", "architecture"])
    status = {r.section: r.status for r in info.runs}
    assert status == dict.fromkeys(status, "ok") and len(status) == 5, [(r.section, r.message) for r in info.runs]
    assert "blocks.a[0]" in (tmp_path / "r.html").read_text(encoding="utf-8")


# --- 10. common mistakes: one typed line, never a raw PyTorch error --------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


_NET = _Net()
_IMG = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
_MAPS = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
IMAGE_ENTRY_POINTS = {
    "activations": lambda v: tl.activations(_NET, v, "features.0"),
    "feature_maps": lambda v: tl.features.feature_maps(_NET, v, "features.0"),
    "GradCAM": lambda v: tl.cam.GradCAM(_NET, "features.2")(v),
    "ScoreCAM": lambda v: tl.cam.ScoreCAM(_NET, "features.2")(v),
    "gradient": lambda v: tl.saliency.gradient(_NET, v),
    "guided_backprop": lambda v: tl.saliency.guided_backprop(_NET, v),
    "deconvnet": lambda v: tl.saliency.deconvnet(_NET, v),
    "smoothgrad": lambda v: tl.saliency.smoothgrad(tl.saliency.gradient, 2)(_NET, v),
    "deletion": lambda v: tl.evaluate.deletion(_NET, v, _MAPS, steps=4),
    "average_drop": lambda v: tl.evaluate.average_drop(_NET, v, _MAPS),
    "road": lambda v: tl.evaluate.road(_NET, v, _MAPS, percentages=(50,)),
    "fusion": lambda v: tl.fusion.contributions(_NET, v, {"a": "features.0", "b": "features.2"}),
    "maximize-init": lambda v: tl.synthesis.maximize(_NET, "features.2:1", steps=1, inputs=v),
}


@pytest.mark.parametrize("name", list(IMAGE_ENTRY_POINTS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_an_integer_image_is_one_line_with_the_conversion_hint(name, dtype):
    v = (_IMG * 255).to(dtype)
    before = v.clone()
    with pytest.raises(errors.InputDtypeError) as info:
        IMAGE_ENTRY_POINTS[name](v)
    msg = str(info.value)
    assert "\n" not in msg and str(dtype) in msg
    assert ("x.float() / 255" in msg) == (dtype == torch.uint8) and "x.float()" in msg
    assert torch.equal(v, before)


NOT_TENSORS = {"list": [[0.5, 0.25], [1.0, 0.0]], "numpy": _IMG.numpy(), "None": None, "str": "cat.png"}


@pytest.mark.parametrize("kind", list(NOT_TENSORS))
@pytest.mark.parametrize("name", ["activations", "feature_maps", "GradCAM", "gradient", "deletion"])
def test_a_value_that_is_not_a_tensor_is_one_typed_line(name, kind):
    with pytest.raises(errors.InputTypeError) as info:
        IMAGE_ENTRY_POINTS[name](NOT_TENSORS[kind])
    msg = str(info.value)
    assert "\n" not in msg and "expected a tensor" in msg
    if kind == "numpy":
        assert "torch.from_numpy" in msg and "(2, 3, 16, 16)" in msg


def test_common_mistakes_name_the_value():
    from torch.utils.data import TensorDataset

    with pytest.raises(errors.UnsupportedModelError, match="expected an nn.Module, got NoneType"):
        tl.activations(None, _IMG, "fc")
    with pytest.raises(errors.UnsupportedModelError, match="expected an nn.Module, got NoneType"):
        tl.cam.GradCAM(None, "fc")(_IMG)
    with pytest.raises(errors.LayerNotFoundError, match="no layer given"):
        tl.synthesis.exemplars(_NET, TensorDataset(_IMG), layer=[])
    with pytest.raises(errors.UsageError, match="kernel_size must be an odd int.*got 0"):
        tl.evaluate.gaussian_blur(_IMG, kernel_size=0)
    enc = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)).eval()
    with pytest.raises(errors.InputShapeError, match=r"\(2, 4, 5\).* wants 8 features"):
        tl.attention.capture(enc, torch.rand(2, 4, 5))
    assert set(tl.attention.capture(enc, torch.rand(2, 4, 8))) == {"0.self_attn"}


# --- 11. values that were silently accepted --------------------------------------------------------
class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).mean((2, 3)))


def _enc_cls():
    torch.manual_seed(0)
    return nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), nn.Flatten(), nn.Linear(32, 3)).eval()


BAD_VALUES = {
    "maximize lr=nan": (lambda: tl.synthesis.maximize(_NET, "fc:1", steps=1, lr=float("nan"), input_shape=(3, 16, 16)),
                        errors.UsageError, "lr must be a finite number above 0.*nan"),
    "maximize lr=-1": (lambda: tl.synthesis.maximize(_NET, "fc:1", steps=1, lr=-1, input_shape=(3, 16, 16)),
                       errors.UsageError, "lr must be.*-1"),
    "channel fc:-1": (lambda: tl.synthesis.maximize(_NET, "fc:-1", steps=1, input_shape=(3, 16, 16)),
                      errors.ObjectiveSpecError, "'fc:-1': channel -1 is negative"),
    "channel(-1)": (lambda: tl.synthesis.objectives.channel("fc", -1), errors.ChannelError, "channel -1 of layer 'fc'"),
    "relevance target=1.5": (lambda: tl.attention.relevance(_enc_cls(), torch.rand(2, 4, 8), target=1.5),
                             errors.TargetError, "got 1.5"),
    "relevance target=True": (lambda: tl.attention.relevance(_enc_cls(), torch.rand(2, 4, 8), target=True),
                              errors.TargetError, "got True"),
    "blur even kernel": (lambda: tl.evaluate.gaussian_blur(_IMG, kernel_size=16), errors.UsageError, "odd int.*16"),
    "blur sigma<0": (lambda: tl.evaluate.gaussian_blur(_IMG, sigma=-1.0), errors.UsageError, "sigma.*-1.0"),
    "pointing masks of another size": (lambda: tl.evaluate.pointing_game(_MAPS, torch.rand(2, 16, 32) > 0.5),
                                       errors.InputError, r"\(2, 16, 16\) and masks \(2, 16, 32\)"),
    "image_grid ncols=0": (lambda: __import__("torchloupe.render.image", fromlist=["x"]).image_grid(_IMG, ncols=0),
                           errors.UsageError, "ncols.*got 0"),
    "smoothgrad chunk=0": (lambda: tl.saliency.smoothgrad(tl.saliency.gradient, 2, chunk=0), errors.UsageError,
                           "chunk.*got 0"),
    "fusion max_steps=0": (lambda: tl.fusion.contributions(_Two(), _IMG, _BR, max_steps=0), errors.UsageError,
                           "max_steps.*got 0"),
    "trace expand typo": (lambda: tl.trace(_NET, _IMG, expand=["featurs"]), errors.LayerNotFoundError,
                          "'featurs' is neither.*closest: 'features'"),
    "graph depth=-1": (lambda: tl.trace(_NET, _IMG).summary(depth=-1), errors.UsageError, "depth=-1: expected None"),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_a_bad_value_is_refused_in_one_line(name):
    fn, kind, pattern = BAD_VALUES[name]
    with pytest.raises(kind, match=pattern) as info:
        fn()
    assert "\n" not in str(info.value)


def test_gaussian_blur_keeps_the_size_and_pointing_game_resizes_maps_of_the_masks_aspect():
    y = tl.evaluate.gaussian_blur(_IMG, kernel_size=5, sigma=1.0)
    assert y.shape == _IMG.shape
    k = torch.exp(-(torch.arange(5.0) - 2) ** 2 / 2)
    k = k / k.sum()
    ref = torch.nn.functional.conv2d(_IMG[:, :1], (k[:, None] * k[None, :])[None, None], padding=2)
    torch.testing.assert_close(y[:, :1], ref, rtol=1e-5, atol=1e-6)
    maps = torch.zeros(1, 4, 4)
    maps[0, 3, 3] = 1.0  # the maximum in the bottom-right quarter
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 6:, 6:] = True
    assert tl.evaluate.pointing_game(maps, masks, tolerance=0).tolist() == [True]
    assert tl.evaluate.pointing_game(maps, ~masks, tolerance=0).tolist() == [False]


def _cli(argv, capsys):
    from torchloupe.app.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_cli_refuses_a_negative_depth_a_typo_in_expand_and_a_maximize_out_not_png(tmp_path, capsys):
    model = ["--model", "tests.cli_models:make_lenet"]
    with pytest.raises(SystemExit) as info:
        _cli(["graph", *model, "--input-shape", "1,1,32,32", "--out", str(tmp_path / "g"), "--depth", "-1"], capsys)
    assert info.value.code == 2 and "-1 is negative" in capsys.readouterr().err
    code, err = _cli(["graph", *model, "--input-shape", "1,1,32,32", "--out", str(tmp_path / "g"),
                      "--format", "txt", "--expand", "conv11"], capsys)
    assert code == 2 and "'conv11' is neither" in err and "closest: 'conv1'" in err and "Traceback" not in err
    code, err = _cli(["maximize", *model, "conv1:0", "--steps", "1", "--out", str(tmp_path / "x.txt")],
                     capsys)
    assert code == 2 and "does not end in .png" in err and not (tmp_path / "x.txt").exists()


# --- 4. sizes: refused in one line, before allocating, within a second -----------------------------
def _refused_fast(fn, pattern: str):
    import time

    t0 = time.perf_counter()
    with pytest.raises(errors.ResourceLimitError, match=pattern) as info:
        fn()
    took = time.perf_counter() - t0
    assert took < 1.0, f"refused after {took:.2f} s"
    assert "\n" not in str(info.value) and info.value.needed > info.value.available > 0
    return info.value


HUGE = {
    "maximize batch=10**7": (lambda: tl.synthesis.maximize(_NET, "fc:1", steps=2, batch=10**7),
                             r"maximize of 10000000 input\(s\) of shape \(3, 128, 128\) needs about .* TB"),
    "maximize 3x60000x60000": (lambda: tl.synthesis.maximize(_NET, "fc:1", steps=2, input_shape=(3, 60000, 60000)),
                               r"shape \(3, 60000, 60000\) needs about .* GB"),
    "exemplars k=10**9": (lambda: tl.synthesis.exemplars(_NET, __import__("torch.utils.data").utils.data.TensorDataset(
        _IMG), "features.2", k=10**9), "exemplars with k=1000000000 for 16 channels"),
}


@pytest.mark.parametrize("name", list(HUGE))
def test_a_huge_size_is_refused_before_allocating(name, monkeypatch):
    monkeypatch.setenv("TORCHLOUPE_MEMORY_LIMIT", "4G")  # the same answer on any machine (never above it)
    fn, pattern = HUGE[name]
    err = _refused_fast(fn, pattern)
    assert err.available == 4 * 2**30 and "set by TORCHLOUPE_MEMORY_LIMIT" in str(err)


def test_inputs_whose_work_cannot_fit_are_refused_and_the_limit_can_be_lifted(monkeypatch):
    x = torch.rand(4, 3, 32, 32)  # 48 KiB; the work on it about 4x that
    monkeypatch.setenv("TORCHLOUPE_MEMORY_LIMIT", "100K")
    for fn in (lambda: tl.cam.GradCAM(_NET, "features.2")(x), lambda: tl.saliency.gradient(_NET, x),
               lambda: tl.activations(_NET, x, "fc"), lambda: tl.evaluate.average_drop(_NET, x, torch.rand(4, 32, 32))):
        err = _refused_fast(fn, r"the work on inputs of shape \(4, 3, 32, 32\) needs about 192.0 KB")
        assert err.needed == 4 * x.numel() * 4 and err.available == 100 * 1024
    monkeypatch.setenv("TORCHLOUPE_MEMORY_LIMIT", "off")
    assert tl.cam.GradCAM(_NET, "features.2")(x).maps.shape == (4, 32, 32)
    monkeypatch.setenv("TORCHLOUPE_MEMORY_LIMIT", "lots")
    with pytest.raises(errors.ResourceLimitError, match="'lots' is not a size"):
        tl.saliency.gradient(_NET, x)


def test_available_memory_reads_psutil_then_meminfo(monkeypatch):
    import builtins
    import os

    from torchloupe import _limits

    real_import = builtins.__import__

    def no_psutil(name, *a, **kw):
        if name == "psutil":
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    got = _limits.available_memory()
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as fh:
            want = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
        assert abs(got - want) < 256 * 2**20  # read a moment apart
    else:
        assert got is None or got > 0
    assert _limits._parse_size("1.5G", "X") == int(1.5 * 2**30) and _limits._parse_size("512MiB", "X") == 512 * 2**20
    assert _limits._parse_size("0", "X") is None and _limits._parse_size("123", "X") == 123


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width x height`` (RGB, 8 bits) and whose pixels are missing: enough for
    ``Image.open`` to read its size, and a decode would fail (so a refusal proves nothing was decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_a_144_megapixel_image_is_refused_from_its_header(tmp_path, monkeypatch):
    from torchloupe.app.images import load_images

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(12000, 12000))
    err = _refused_fast(lambda: load_images([bomb]), r"'.*bomb.png' is 12000 x 12000 = 144 megapixels, more than the 89")
    assert "TORCHLOUPE_MAX_IMAGE_PIXELS" in str(err)
    monkeypatch.setenv("TORCHLOUPE_MAX_IMAGE_PIXELS", "200000000")  # allowed: then Pillow tries to decode it
    with pytest.raises(errors.InputFileError, match="bomb.png"):
        load_images([bomb])


def test_cli_refuses_huge_sizes_in_one_line_within_a_second(tmp_path, capsys, monkeypatch):
    import time

    from PIL import Image

    monkeypatch.setenv("TORCHLOUPE_MEMORY_LIMIT", "4G")  # below any real machine: refusals only
    img = tmp_path / "cat.png"
    Image.new("L", (32, 32), 128).save(img)
    model = ["--model", "tests.cli_models:make_lenet"]
    runs = {
        "report --size 20000": (["report", *model, "--input", str(img), "--size", "20000", "--out", str(tmp_path / "r")],
                                "1 image(s) at --size 20000 needs about"),
        "graph --input-shape": (["graph", *model, "--input-shape", "1,3,100000,100000", "--out", str(tmp_path / "g")],
                                "--input-shape 1,3,100000,100000 needs about"),
        "maximize --shape": (["maximize", *model, "conv1:0", "--shape", "3", "60000", "60000"],
                             "shape (3, 60000, 60000) needs about"),
    }
    from torchloupe.app.cli import main

    for name, (argv, said) in runs.items():
        t0 = time.perf_counter()
        code = main(argv)
        took = time.perf_counter() - t0
        err = capsys.readouterr().err
        assert code == 2 and said in err and "Traceback" not in err, (name, err)
        assert len(err.strip().splitlines()) == 1 and took < 1.0, (name, took)
    with pytest.raises(SystemExit) as info:  # argparse: one line, exit 2
        main(["exemplars", *model, "--layer", "conv1", "--data", "demo:shapes", "--k", "1e9"])
    assert info.value.code == 2 and "--k" in capsys.readouterr().err


# --- 7. tl.report checks its inputs and path before any section -------------------------------------
REPORT_BAD = {
    "None": (None, errors.InputTypeError, "inputs are None"),
    "str": ("cat.png", errors.InputTypeError, "inputs are str 'cat.png'.*loupe report --input"),
    "list": ([[0.5, 0.5]], errors.InputTypeError, "a list holding no tensor"),
    "uint8": ((_IMG * 255).to(torch.uint8), errors.InputDtypeError, r"torch.uint8.*convert with x.float\(\) / 255"),
    "nan": (torch.full((1, 3, 8, 8), float("nan")), errors.NonFiniteInputError, "NaN"),
}


@pytest.mark.parametrize("name", list(REPORT_BAD))
def test_report_refuses_bad_inputs_before_any_section(name, tmp_path, monkeypatch):
    from torchloupe.reporting import builder

    def no_sections(*a, **kw):
        raise AssertionError("a section ran")

    monkeypatch.setattr(builder, "build_report", no_sections)
    value, kind, pattern = REPORT_BAD[name]
    with pytest.raises(kind, match=pattern) as info:
        tl.report(_NET, value, tmp_path / "r.html", progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "r.html").exists()


def test_report_refuses_an_unwritable_path_before_any_section(tmp_path, monkeypatch):
    from torchloupe.reporting import builder

    monkeypatch.setattr(builder, "build_report", lambda *a, **kw: pytest.fail("a section ran"))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for path, pattern in ((a_file / "r.html", "cannot make its folder .*is a file"),
                          (tmp_path, "is a folder"), ("", "is empty"), (3, "must be a file path")):
        with pytest.raises(errors.UsageError, match=pattern):
            tl.report(_NET, _IMG, path, progress=False)
    monkeypatch.setenv("TORCHLOUPE_MEMORY_LIMIT", "50K")  # 6 KiB of inputs, a report holds about 16x that
    with pytest.raises(errors.ResourceLimitError, match=r"a report on inputs of shape \(2, 3, 16, 16\)"):
        tl.report(_NET, _IMG, tmp_path / "r.html", progress=False)


# --- 14. strings in figures and the report ---------------------------------------------------------
def test_a_label_with_dollars_draws_as_it_is_in_a_cam_figure():
    import matplotlib.text as mtext

    from torchloupe.render.cam import method_grid, plot_cam
    from torchloupe.render.png import figure_to_png

    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    res = tl.cam.GradCAM(m, "0")(_IMG, target=[0, 1])
    labels = [r"$\frac{a$", "$x$ cost"]
    fig = plot_cam(res, _IMG, labels=labels)
    png = figure_to_png(fig)  # mathtext would raise on the first label
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = {t.get_text(): t.get_parse_math() for t in fig.findobj(mtext.Text) if "$" in t.get_text()}
    assert any(r"$\frac{a$" in s for s in drawn) and any("$x$ cost" in s for s in drawn)
    assert not any(drawn.values())
    grid = method_grid({"Grad-CAM": res}, _IMG, row_titles=labels)
    assert figure_to_png(grid)[:4] == b"\x89PNG"


def test_number_ticks_keep_their_mathtext_and_string_ticks_lose_it():
    import matplotlib.text as mtext

    from torchloupe.render.plain import figure_class
    from torchloupe.render.png import figure_to_png

    fig = figure_class()(figsize=(3, 2))
    ax = fig.add_subplot(1, 2, 1)
    ax.set_yscale("log")
    ax.plot([1, 2], [0.01, 10])
    ax.set_title(r"layer $\frac{a$")
    bx = fig.add_subplot(1, 2, 2)
    bx.bar([0, 1], [1, 2])
    bx.set_xticks([0, 1], [r"$\frac{b$", "c"])
    figure_to_png(fig)
    ticks = {t.get_text(): t.get_parse_math() for t in ax.yaxis.get_majorticklabels() if t.get_text()}
    assert ticks and all(ticks.values()) and any("10^" in s for s in ticks)  # log ticks: still math
    assert bx.xaxis.get_majorticklabels()[0].get_parse_math() is False
    assert ax.title.get_parse_math() is False
    assert all(not t.get_parse_math() for t in fig.findobj(mtext.Text) if "frac" in t.get_text())


class _BidiNames(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleDict({"conv\u202egnp_exe": nn.Conv2d(3, 4, 3, padding=1), "b\u2066x\u2069": nn.ReLU()})
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.blocks["b\u2066x\u2069"](self.blocks["conv\u202egnp_exe"](x))
        return self.fc(x.mean((2, 3)))


def test_bidirectional_controls_in_layer_names_never_reach_the_report_raw(tmp_path):
    import re

    info = tl.report(_BidiNames(), _x(), tmp_path / "r.html", progress=False,
                     sections=["overview", "architecture", "feature_maps", "weights"], labels=["a\u202eb", "c", "d"])
    assert all(r.status == "ok" for r in info.runs), [(r.section, r.message) for r in info.runs]
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert not re.search("[\u200e\u200f\u202a-\u202e\u2066-\u2069]", page)
    assert "conv\\u202egnp_exe" in page  # shown as visible text where the page names the layer


def test_the_escaping_filter_makes_bidi_controls_visible():
    from torchloupe.reporting.template import render_fragment

    out = render_fragment("<p>{{ name }}</p>", name="<i>\u202eexe.txt\u200f</i>")
    assert out == "<p>&lt;i&gt;\\u202eexe.txt\\u200f&lt;/i&gt;</p>"
