"""Every subcommand on the models the blog articles write (tests/cli_models.py), in process:
``--input`` once per model argument, images or tensor files, and failures in one line."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import torchloupe as tl
from torchloupe.app.cli import main
from tests import cli_models

M = "tests.cli_models:"


def _png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("blog")
    rng = np.random.default_rng(0)
    f = {
        "rgb": [_png(d / f"rgb{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for i in range(3)],
        "rgb2": [_png(d / f"side{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for i in range(3)],
        "digits": [_png(d / f"digit{i}.png", rng.integers(0, 256, (28, 28), dtype=np.uint8)) for i in range(3)],
        "lenet": [_png(d / f"le{i}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8)) for i in range(3)],
    }
    torch.save(torch.rand(5, 10, 300, generator=torch.Generator().manual_seed(1)), d / "seqs.pt")
    f["seqs"] = [str(d / "seqs.pt")]
    return d, f


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(capsys, argv) -> str:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: shortened to one line too
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == 2 and out == "", (argv, rc, out, err)
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    return err


#: model -> (factory, its --input groups (keys of data), a layer, a maximize objective)
MODELS = {
    "fusion": ("make_fusion", ["rgb", "rgb2"], "conv", "cnn1.0:1"),
    "convnet": ("make_convnet", ["digits"], "conv2", "conv2:3"),
    "mlp": ("make_mlp", ["digits"], "fc1", "fc2:5"),
    "seq": ("make_seq", ["seqs"], "conv", "conv:2"),
    "lenet": ("make_lenet", ["lenet"], "conv2", "conv2:4"),
}


def _inputs(files, groups):
    return [a for g in groups for a in ["--input", *files[g]]]


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}</h2>")
    end = html.find("<h2>", start + 4)
    return html[start:end if end > 0 else len(html)]


@pytest.mark.parametrize("name", list(MODELS))
def test_report(name, data, tmp_path, capsys):
    d, files = data
    factory, groups, _, _ = MODELS[name]
    out = tmp_path / "r"
    rc, stdout, err = _run(capsys, ["report", "--model", M + factory, *_inputs(files, groups), "--quick",
                                    "--no-progress", "--jobs", "1", "--sections", "overview", "architecture",
                                    "feature_maps", "cam", "--out", str(out)])
    assert (rc, err) == (0, ""), err
    html = (out / "report.html").read_text()
    for title in ("Overview", "Architecture"):
        assert "Not applicable" not in _section(html, title)
    if name in ("convnet", "lenet"):  # one-channel images through the model's own x.view(-1, ...)
        cam = _section(html, "Class activation maps")
        assert "Not applicable" not in cam and cam.count("data:image/webp;base64,") >= 1
    if name == "mlp":  # 28 x 28 gray images flattened to the 784 features of fc1
        assert "(3, 784)" in html
    if name == "seq":
        assert "(5, 10, 300)" in html


@pytest.mark.parametrize("name", list(MODELS))
def test_cam(name, data, tmp_path, capsys):
    d, files = data
    factory, groups, _, _ = MODELS[name]
    out, save = tmp_path / "c", tmp_path / "maps.pt"
    argv = ["cam", "--model", M + factory, *_inputs(files, groups), "--out", str(out), "--save", str(save)]
    if name == "mlp":  # no spatial layer: one clear line
        assert "CAMs need a layer whose output is a spatial map" in _one_line_error(capsys, argv)
        return
    if name == "seq":  # not images to draw on: one clear line
        assert "is not a batch of images" in _one_line_error(capsys, argv)
        return
    rc, stdout, err = _run(capsys, argv)
    assert (rc, err) == (0, ""), err
    model = getattr(cli_models, factory)()
    shown = [re.sub(r"\.png$", "", p.split("/")[-1]) for p in files[groups[0]]]
    for stem in shown:
        assert (out / f"{stem}_gradcam.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "grid.png").is_file() and "gradcam" in (out / "index.html").read_text().lower()
    maps = torch.load(save)["gradcam"]["maps"]
    h = 16 if name == "fusion" else (28 if name == "convnet" else 32)
    assert maps.shape == (3, h, h)
    # the same maps as the API on the same inputs
    from torchloupe.app.images import load_images

    xs = [load_images(files[g], mode="L" if name != "fusion" else "RGB") for g in groups]
    want = tl.cam.GradCAM(model)(tuple(xs) if len(xs) > 1 else xs[0])
    assert torch.allclose(maps, want.maps, atol=1e-5)


def test_cam_explains_the_input_named_by_wrt_and_reads_its_channels(tmp_path, capsys):
    """RGB + depth: the depth input is read as one channel; Grad-CAM on it peaks on the planted square."""
    depth = np.zeros((16, 16), dtype=np.uint8)
    depth[10:14, 2:6] = 255  # planted: bottom left
    rgb = np.full((16, 16, 3), 200, dtype=np.uint8)
    a, b = _png(tmp_path / "a.png", rgb), _png(tmp_path / "depth.png", depth)
    out, save = tmp_path / "c", tmp_path / "m.pt"
    rc, stdout, err = _run(capsys, ["cam", "--model", M + "make_fusion_detector", "--input", a, "--input", b,
                                    "--wrt", "1", "--target", "0", "--out", str(out), "--save", str(save)])
    assert (rc, err) == (0, ""), err
    res = torch.load(save)["gradcam"]
    assert res["maps"].shape == (1, 16, 16) and res["targets"].tolist() == [0]
    peak = int(res["maps"][0].argmax())
    assert 9 <= peak // 16 <= 14 and 1 <= peak % 16 <= 6, peak
    assert float(res["maps"][0, :8].max()) == 0.0  # nothing where the depth map is flat
    assert (out / "depth_gradcam.png").is_file()  # the overlay drawn on the explained input


def test_report_fusion_section_from_branches_flag(tmp_path, capsys):
    """--branches cnn1,cnn2: the RGB branch of the detector has all-zero weights, so its share is 0."""
    depth = np.zeros((16, 16), dtype=np.uint8)
    depth[4:8, 4:8] = 255
    a = _png(tmp_path / "a.png", np.full((16, 16, 3), 90, dtype=np.uint8))
    b = _png(tmp_path / "b.png", depth)
    out = tmp_path / "r"
    rc, _, err = _run(capsys, ["report", "--model", M + "make_fusion_detector", "--input", a, a, "--input", b, b,
                               "--branches", "rgb=cnn1,depth=cnn2", "--target", "0", "--sections", "fusion",
                               "--quick", "--no-progress", "--jobs", "1", "--out", str(out)])
    assert (rc, err) == (0, ""), err
    text = re.sub(r"<[^>]+>", " ", _section((out / "report.html").read_text(), "Feature fusion"))
    row = " ".join(text.split())
    assert "rgb (shapley) depth (shapley) rgb (integrated gradients) depth (integrated gradients) 0 0.00 1.00 0.00 1.00" \
        in row, row


@pytest.mark.parametrize("name", list(MODELS))
def test_maximize(name, data, tmp_path, capsys):
    d, files = data
    factory, groups, _, objective = MODELS[name]
    png = tmp_path / "m.png"
    argv = ["maximize", "--model", M + factory, objective, "--steps", "48", "--lr", "0.1", "--no-progress",
            "--out", str(png)]
    if name in ("fusion", "seq"):  # shapes from the files; fusion: input 0 synthesized, input 1 held
        argv += _inputs(files, groups)
    if name in ("convnet", "lenet"):
        argv += ["--shape", "1", "28", "28"] if name == "convnet" else ["--shape", "1", "32", "32"]
    rc, stdout, err = _run(capsys, argv)
    assert (rc, err) == (0, ""), err
    assert png.read_bytes()[:4] == b"\x89PNG"
    row = [line for line in stdout.splitlines() if line.startswith(objective)]
    # the unit ends above the best of 32 random inputs (the objective improved)
    assert len(row) == 1 and row[0].split()[-1] == "ok", stdout
    reached, random_best = (float(v) for v in row[0].split()[1:3])
    assert reached > random_best


def test_maximize_of_the_mlp_synthesizes_a_28_by_28_image(tmp_path, capsys):
    from torchloupe.synthesis import maximize

    rc, stdout, err = _run(capsys, ["maximize", "--model", M + "make_mlp", "fc3:7", "--steps", "4", "--param",
                                    "pixel", "--transforms", "none", "--no-progress"])
    assert (rc, err) == (0, ""), err
    want = maximize(cli_models.make_mlp().eval(), "fc3:7", param="pixel", steps=4, transforms=None,
                    input_shape=(1, 28, 28), seed=0)
    reached = float(stdout.splitlines()[1].split()[1])
    assert reached == pytest.approx(float(want.final_activation[0]), rel=1e-3)


@pytest.mark.parametrize("name", list(MODELS))
def test_exemplars(name, data, tmp_path, capsys):
    d, files = data
    factory, groups, layer, _ = MODELS[name]
    save = tmp_path / "e.pt"
    rc, stdout, err = _run(capsys, ["exemplars", "--model", M + factory, *_inputs(files, groups), "--layer", layer,
                                    "--k", "2", "--no-progress", "--save", str(save), "--out", str(tmp_path / "e.png")])
    assert (rc, err) == (0, ""), err
    ex = torch.load(save)
    # brute force on the same inputs: the mean activation per channel, top 2
    from torchloupe.app.images import load_images

    model = getattr(cli_models, factory)().eval()
    if name == "seq":
        x = torch.load(files["seqs"][0])
    else:
        xs = [load_images(files[g], mode="RGB" if name == "fusion" else "L") for g in groups]
        x = tuple(xs) if len(xs) > 1 else (xs[0].reshape(3, -1) if name == "mlp" else xs[0])
    acts = tl.activations(model, x, [layer])[layer]
    means = acts.reshape(acts.shape[0], acts.shape[1], -1).mean(-1).T  # (C, N)
    assert torch.equal(ex["indices"], means.topk(2, dim=1).indices)
    assert torch.allclose(ex["values"], means.topk(2, dim=1).values, atol=1e-5)
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", list(MODELS))
def test_graph_from_files(name, data, tmp_path, capsys):
    d, files = data
    factory, groups, layer, _ = MODELS[name]
    out = tmp_path / "g"
    rc, stdout, err = _run(capsys, ["graph", "--model", M + factory, *_inputs(files, groups), "--format", "txt",
                                    "--out", str(out)])
    assert (rc, err) == (0, ""), err
    text = (out / "graph.txt").read_text()
    assert layer in text
    n_params = sum(p.numel() for p in getattr(cli_models, factory)().parameters())
    assert f"{n_params:,} parameters" in stdout


def test_image_batches_are_in_the_standard_layout(tmp_path):
    from torchloupe.app.images import load_images

    p = _png(tmp_path / "g.png", np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))
    x = load_images([p, p], mode="L")
    assert x.shape == (2, 1, 28, 28) and x.stride() == (784, 784, 28, 1)
    y = torch.nn.Conv2d(1, 2, 3, padding=1)(x)
    assert y.is_contiguous() and y.stride() == (1568, 784, 28, 1)
    assert float(x[0, 0, 1, 2]) == pytest.approx(30 / 255)


def test_tensor_files_keywords_and_batches(tmp_path, capsys):
    """.npy / .npz / .pt, several files of one --input concatenated, NAME=FILE keyword inputs."""
    from torchloupe.app.loading import load_inputs, parse_groups

    a = np.random.default_rng(0).random((2, 10, 300))  # float64, cast to the model's float32
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", x=a[:1])
    torch.save({"x": torch.zeros(1, 10, 300)}, tmp_path / "d.pt")
    model = cli_models.make_seq().eval()
    loaded = load_inputs(parse_groups([[str(tmp_path / "a.npy"), str(tmp_path / "b.npz")]]), model, spec="s",
                         size=None, normalize=None)
    x = loaded.inputs.args[0]
    assert x.dtype == torch.float32 and x.shape == (3, 10, 300)
    assert torch.equal(x, torch.from_numpy(np.concatenate([a, a[:1]])).float())
    assert loaded.output.shape == (2, 3)  # the trial forward: first two samples
    kw = load_inputs(parse_groups([[f"x={tmp_path / 'a.npy'}"]]), model, spec="s", size=None, normalize=None)
    assert list(kw.inputs.kwargs) == ["x"] and kw.inputs.kwargs["x"].shape == (2, 10, 300)
    d = load_inputs(parse_groups([[str(tmp_path / "d.pt")]]), model, spec="s", size=None, normalize=None)
    assert list(d.inputs.kwargs) == ["x"] and not d.inputs.args


def test_every_failure_is_one_line_with_status_2(data, tmp_path, capsys):
    d, files = data
    torch.save(torch.rand(2, 3, 28, 28), tmp_path / "rgb.pt")
    torch.save(torch.rand(4, 1, 28, 28), tmp_path / "four.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a tensor")
    np.save(tmp_path / "obj.npy", np.array(["a", "b"]))
    out = str(tmp_path / "o")
    cases = [
        # one input for forward(x1, x2)
        (["report", "--model", M + "make_fusion", "--input", *files["rgb"], "--out", out],
         "FusionNet.forward(x1, x2) takes 2 inputs, got 1"),
        (["cam", "--model", M + "make_fusion", "--input", *files["rgb"], "--out", out], "takes 2 inputs"),
        (["exemplars", "--model", M + "make_fusion", "--input", *files["rgb"], "--layer", "conv"], "takes 2 inputs"),
        (["graph", "--model", M + "make_fusion", "--input", *files["rgb"], "--out", out], "takes 2 inputs"),
        (["maximize", "--model", M + "make_fusion", "conv:0"], "give them with --input"),
        # a model that reads the batch as something else (3 channels into x.view(-1, 784))
        (["report", "--model", M + "make_mlp", "--input", str(tmp_path / "rgb.pt"), "--out", out],
         "does not keep the batch"),
        # a forward that fails: the shapes and what the first layers want
        (["cam", "--model", M + "make_lenet", "--input", *files["digits"], "--out", out],
         "cannot take the given inputs (3, 1, 28, 28): RuntimeError"),
        (["maximize", "--model", M + "make_lenet", "conv2:0", "--input", *files["digits"]],
         "conv1 (Conv2d) wants (N, 1, H, W)"),
        (["exemplars", "--model", M + "make_convnet", "--data", str(tmp_path / "rgb.pt"), "--layer", "conv2"],
         "cannot take the given inputs (2, 3, 28, 28)"),
        (["graph", "--model", M + "make_lenet", "--input-shape", "1,1,28,28", "--out", out],
         "cannot take the given inputs (1, 1, 28, 28)"),
        # different batch sizes, bad files, mixed kinds, bad --wrt, --branches, --output
        (["cam", "--model", M + "make_fusion", "--input", *files["rgb"], "--input", files["rgb2"][0], "--out", out],
         "different numbers of samples"),
        (["report", "--model", M + "make_seq", "--input", str(tmp_path / "junk.pt"), "--out", out], "junk.pt"),
        (["report", "--model", M + "make_seq", "--input", str(tmp_path / "obj.npy"), "--out", out], "expected numbers"),
        (["report", "--model", M + "make_convnet", "--input", files["digits"][0], str(tmp_path / "four.pt"),
          "--out", out], "mixes tensor files and images"),
        (["cam", "--model", M + "make_fusion", "--input", *files["rgb"], "--input", *files["rgb2"], "--wrt", "2",
          "--out", out], "wrt=2 is not a positional input"),
        (["report", "--model", M + "make_fusion", "--input", *files["rgb"], "--input", *files["rgb2"],
          "--branches", "cnn1,cnn3", "--out", out], "cnn3"),
        (["report", "--model", M + "make_fusion", "--input", *files["rgb"], "--input", *files["rgb2"],
          "--branches", "cnn1", "--out", out], "two or more branches"),
        (["cam", "--model", M + "make_convnet", "--input", *files["digits"], "--output", "logits", "--out", out],
         "logits"),
        (["report", "--model", M + "make_seq", "--input", str(tmp_path / "missing.pt"), "--out", out], "no such file"),
        (["cam", "--model", M + "make_convnet", "--input", *files["digits"], "--size", "0", "--out", out],
         "argument --size"),
        (["graph", "--model", M + "make_convnet", "--out", out], "one of the arguments"),
    ]
    for argv, says in cases:
        err = _one_line_error(capsys, argv)
        assert says in err, (argv, err)


def test_an_error_inside_the_work_is_one_line_and_debug_shows_it(data, tmp_path, capsys, monkeypatch):
    d, files = data
    import torchloupe.cam

    def boom(*a, **k):
        raise RuntimeError("the model broke\nsecond line")

    monkeypatch.setattr(torchloupe.cam, "compare", boom)  # what loupe cam runs the methods with
    argv = ["cam", "--model", M + "make_convnet", "--input", *files["digits"], "--out", str(tmp_path / "c")]
    err = _one_line_error(capsys, argv)
    assert err == "loupe: error: RuntimeError: the model broke (--debug shows the traceback)\n"
    with pytest.raises(RuntimeError):
        main(["--debug", *argv])


def test_the_one_argument_views_leave_the_model_as_it_was():
    """maximize through Held and exemplars through Indexed (the CLI's views of a two-input model):
    parameters bitwise equal, requires_grad, modes and hooks as they were; the same layer objects."""
    from torchloupe.app.bound import Held, Indexed, index_dataset
    from torchloupe.inputs import Inputs
    from torchloupe.synthesis import exemplars, maximize

    model = cli_models.make_fusion().train()
    model.cnn2[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    x = Inputs((torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)))
    held = Held(model, x, wrt=1)
    assert held.get_submodule("cnn1.0") is model.cnn1[0] and dict(held.named_parameters()).keys() == flags.keys()
    maximize(held, "cnn2.0:0", param="pixel", steps=2, input_shape=(3, 16, 16), transforms=None)
    ex = exemplars(Indexed(model, x), index_dataset(4), "conv", k=2, batch_size=3)
    with torch.no_grad():
        model.eval()
        acts = tl.activations(model, (x.args[0], x.args[1]), ["conv"])["conv"].mean((2, 3)).T
        model.train()
    assert torch.equal(ex.indices, acts.topk(2, dim=1).indices)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(m.training for m in model.modules()) and all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


def test_a_model_written_for_one_image_size_is_told_to_pass_size(data, tmp_path, capsys):
    d, f = data
    err = _one_line_error(capsys, ["cam", "--model", "tests.cli_models:make_convnet", "--input", f["lenet"][0],
                                   "--out", str(tmp_path / "c")])
    assert "(1, 1, 32, 32)" in err and "shape '[-1, 6272]'" in err
    assert err.rstrip().endswith("pass --size N with the size it was written for")
    rc, out, _ = _run(capsys, ["cam", "--model", "tests.cli_models:make_convnet", "--input", f["lenet"][0],
                               "--size", "28", "--out", str(tmp_path / "c")])
    assert rc == 0 and (tmp_path / "c" / "grid.png").is_file()


def test_cam_method_all_skips_what_cannot_apply_and_says_so(data, tmp_path, capsys):
    d, f = data
    rc, out, err = _run(capsys, ["cam", "--model", "tests.cli_models:make_fusion", "--input", f["rgb"][0],
                                 "--input", f["rgb2"][0], "--method", "all", "--out", str(tmp_path / "c")])
    assert rc == 0, err
    assert "cam skipped: CAM needs a model ending in global average pooling" in err
    written = sorted(p.name for p in (tmp_path / "c").glob("*_*.png"))
    assert len(written) == len(tl.cam.METHODS) - 1 and not any(n.endswith("_cam.png") for n in written)
