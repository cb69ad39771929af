"""``loupe report`` and ``loupe demo`` in-process: exact output lines and exit codes."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from torchloupe.app.cli import main

FACTORY = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))

def gray():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))


class EditsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x.sub_(0.5)  # in place, on purpose
        return self.fc(self.conv(x).mean((2, 3)))


def edits():
    return EditsInput()


class HeadFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.conv = nn.Conv2d(3, 4, 3)
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def head_first():
    return HeadFirst()


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)

    def forward(self, rgb, aux):
        return (self.a(rgb) + self.b(aux)).mean((2, 3))


def two():
    return Two()
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "net.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(d / "cat.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(d / "dog.jpg")
    (d / "broken.png").write_bytes(b"\x89PNG but not really")
    (d / "labels.txt").write_text("cat\ndog\n<b>bird</b>\n")
    return d


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n") if text else []


def test_report_on_file_factory(files, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["report", "--model", f"{files}/net.py:build", "--input", str(files / "cat.png"),
                 str(files / "dog.jpg"), "--labels", str(files / "labels.txt"), "--sections", "overview",
                 "--no-progress", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert (code, stderr) == (0, "")
    lines = _lines(stdout)
    assert len(lines) == 4
    assert re.fullmatch(r"overview  \s*\d+\.\d\d s", lines[0])
    assert re.fullmatch(r"html      \s*\d+\.\d\d s", lines[1])
    assert re.fullmatch(r"total     \s*\d+\.\d\d s", lines[2])
    size = (out / "report.html").stat().st_size
    assert lines[3] == f"wrote {out / 'report.html'} ({size / 1024:.0f} KB)"
    html = (out / "report.html").read_text()
    assert "<h2>Overview</h2>" in html and "&lt;b&gt;bird&lt;/b&gt;" in html
    assert html.count('class="card"') == 2  # both images, cropped to 20 x 20 squares
    assert '<b title="cat.png">cat.png</b>' in html and 'alt="dog.jpg"' in html  # cards named by their files


def test_report_progress_bar_goes_to_stderr(files, tmp_path, capsys):
    code = main(["report", "--model", f"{files}/net.py:build", "--input", str(files / "cat.png"),
                 "--sections", "overview", "--out", str(tmp_path)])
    stdout, stderr = capsys.readouterr()
    assert code == 0 and "report: 100%" in stderr and "loupe:" not in stderr
    assert _lines(stdout)[-1].startswith(f"wrote {tmp_path / 'report.html'} (")


def test_gray_model_reads_images_as_gray(files, tmp_path, capsys):
    code = main(["report", "--model", f"{files}/net.py:gray", "--input", str(files / "cat.png"),
                 "--sections", "overview", "--no-progress", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert "(1, 1, 24, 32)" in (tmp_path / "report.html").read_text()


def _error(capsys, argv) -> str:
    code = main(argv)
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stdout == ""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr  # one line, no traceback
    return stderr


def test_bad_image_is_one_line_error(files, tmp_path, capsys):
    err = _error(capsys, ["report", "--model", f"{files}/net.py:build", "--input", str(files / "broken.png"),
                          "--out", str(tmp_path)])
    assert err == f"loupe: error: cannot read image '{files / 'broken.png'}': not an image Pillow can read\n"
    err = _error(capsys, ["report", "--model", f"{files}/net.py:build", "--input", str(files / "nope.png"),
                          "--out", str(tmp_path)])
    assert err == f"loupe: error: cannot read image '{files / 'nope.png'}': no such file\n"
    assert not (tmp_path / "report.html").exists()


def test_unknown_model_spec_lists_the_forms(files, tmp_path, capsys):
    err = _error(capsys, ["report", "--model", "resnet18", "--input", str(files / "cat.png"), "--out", str(tmp_path)])
    from torchloupe.app.models import BUILTINS as BUILTIN_MODELS

    builtins = f", or a built-in name ({', '.join(sorted(BUILTIN_MODELS))})" if BUILTIN_MODELS else ""
    assert err == ("loupe: error: unknown model spec 'resnet18'; expected one of: torchvision:NAME "
                   f"(e.g. torchvision:resnet18), path/file.py:factory, package.module:factory, "
                   f"hf:DIR (a Hugging Face model folder), "
                   f"hf-config:PATH (a Hugging Face config.json, built without weights){builtins}\n")
    assert {"efficientnet-lite0", "minilm"} <= set(BUILTIN_MODELS)  # the built-in records, their packages installed


def test_bad_checkpoint_and_layers_and_sections(files, tmp_path, capsys):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": Evil()}, ckpt)
    base = ["report", "--model", f"{files}/net.py:build", "--input", str(files / "cat.png"), "--out", str(tmp_path)]
    err = _error(capsys, base + ["--weights", str(ckpt)])
    assert err.startswith(f"loupe: error: checkpoint '{ckpt}' holds Python objects other than tensors")
    assert not marker.exists()
    err = _error(capsys, base + ["--weights", str(tmp_path / "missing.pt")])
    assert err == f"loupe: error: cannot read checkpoint '{tmp_path / 'missing.pt'}': no such file\n"
    err = _error(capsys, base + ["--layers", "4", "9"])
    assert err == "loupe: error: '9' is not a module of Sequential\n"
    err = _error(capsys, base + ["--sections", "overview,nope"])
    assert err.startswith("loupe: error: unknown report section 'nope'; available: overview")


def test_unsafe_pickle_flag_warns_and_loads(files, tmp_path, capsys):
    from torchloupe.app.models import load_model

    state = load_model(f"{files}/net.py:build").state_dict()
    ckpt = tmp_path / "full.pt"
    torch.save({"state_dict": state, "meta": Ellipsis}, ckpt)  # Ellipsis is not allowed by weights_only
    argv = ["report", "--model", f"{files}/net.py:build", "--weights", str(ckpt), "--input", str(files / "cat.png"),
            "--sections", "overview", "--no-progress", "--out", str(tmp_path)]
    assert _error(capsys, argv).startswith(f"loupe: error: checkpoint '{ckpt}' holds Python objects")
    with pytest.warns(UserWarning, match="weights_only=False"):
        code = main(argv + ["--unsafe-pickle"])
    assert code == 0, capsys.readouterr().err


def _fake_package(tmp_path, monkeypatch, modules: dict[str, str]) -> str:
    name = f"fake_demo_{len(modules)}_{abs(hash(tuple(modules))) % 10_000}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, src in modules.items():
        (pkg / f"{mod}.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("torchloupe.app.commands.demo.PACKAGE", name)
    return name


FAKE_SUBJECTS = """
import torch
from tests.helpers import tiny_cnn
from torchloupe.reporting import Subject

def subjects(options):
    assert set(options) == {"quick", "seed", "progress"} and options["progress"] is False
    return [Subject("tiny-a", tiny_cnn(), torch.rand(2, 3, 16, 16)), Subject("tiny-b", tiny_cnn(1), torch.rand(1, 3, 8, 8))]
"""


def test_demo_collects_subject_modules(tmp_path, monkeypatch, capsys):
    _fake_package(tmp_path, monkeypatch, {"alpha": FAKE_SUBJECTS,
                                          "beta": "def subjects(options):\n    raise RuntimeError('no data')\n"})
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--quick", "--sections", "overview", "--no-progress"])
    stdout, stderr = capsys.readouterr()
    assert code == 0
    assert stderr == "loupe: warning: demo models 'beta' failed: RuntimeError: no data\n"
    lines = _lines(stdout)
    assert re.fullmatch(r"prepared alpha: 2 models in \d+\.\d\d s", lines[0])
    assert re.fullmatch(r"overview  \s*\d+\.\d\d s", lines[1])
    assert re.fullmatch(r"html      \s*\d+\.\d\d s", lines[2])
    assert re.fullmatch(r"total     \s*\d+\.\d\d s", lines[3])
    assert lines[4].startswith(f"wrote {out / 'report.html'} (")
    assert re.fullmatch(r"demo finished in \d+\.\d s", lines[5]) and len(lines) == 6
    html = (out / "report.html").read_text()
    assert "<title>torchloupe demo report</title>" in html and html.count('<article class="subject"') == 2


TRAINED_SUBJECTS = """
import os, time
import torch
from tests.helpers import tiny_cnn
from torchloupe.reporting import Subject

MARK = os.environ["LOUPE_TRAIN_MARK"] + "-{name}"
TRAIN_SECONDS = {seconds}

def train(options):
    start = time.time()
    time.sleep(0.3)
    with open(MARK, "w") as f:
        f.write(f"{{os.getpid()}} {{start}} {{time.time()}}")

def subjects(options):
    if not os.path.exists(MARK):  # like load_or_train: train here when nobody did
        train(options)
    with open(MARK) as f:
        pid = int(f.read().split()[0])
    where = "a worker" if pid != os.getpid() else "this process"
    return [Subject(f"{name} trained in {{where}}", tiny_cnn(), torch.rand(1, 3, 8, 8), sections=["overview"])]
"""


def test_demo_trains_families_side_by_side_before_making_subjects(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_TRAIN_MARK", str(tmp_path / "mark"))
    _fake_package(tmp_path, monkeypatch, {n: TRAINED_SUBJECTS.format(name=n, seconds=s)
                                          for n, s in (("slow", 30), ("fast", 1))})
    from torchloupe.app.commands.demo import collect_subjects

    subjects = collect_subjects({"seed": 0}, log=lambda *a: None, jobs=2)
    assert [s.name for s in subjects] == ["fast trained in a worker", "slow trained in a worker"]
    (pid_f, start_f, end_f), (pid_s, start_s, end_s) = (
        (tmp_path / f"mark-{n}").read_text().split() for n in ("fast", "slow"))
    assert pid_f != pid_s and float(start_f) < float(end_s) and float(start_s) < float(end_f)  # at the same time
    for n in ("fast", "slow"):
        (tmp_path / f"mark-{n}").unlink()
    subjects = collect_subjects({"seed": 0}, log=lambda *a: None, jobs=1)
    assert [s.name for s in subjects] == ["fast trained in this process", "slow trained in this process"]


def test_demo_training_worker_that_dies_leaves_the_training_to_this_process(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_TRAIN_MARK", str(tmp_path / "mark"))
    dying = TRAINED_SUBJECTS.format(name="dies", seconds=5).replace(
        "def train(options):\n", "def train(options):\n    if os.getpid() != PARENT:\n        os._exit(9)\n"
    ).replace("TRAIN_SECONDS = 5", f"TRAIN_SECONDS = 5\nPARENT = {os.getpid()}")
    _fake_package(tmp_path, monkeypatch, {"dies": dying, "fine": TRAINED_SUBJECTS.format(name="fine", seconds=1)})
    from torchloupe.app.commands.demo import collect_subjects

    names = sorted(s.name for s in collect_subjects({"seed": 0}, log=lambda *a: None, jobs=2))
    assert names[0] == "dies trained in this process" and names[1].startswith("fine trained in ")


def test_demo_models_picks_families_and_names_the_closest(tmp_path, monkeypatch, capsys):
    _fake_package(tmp_path, monkeypatch, {"alpha": FAKE_SUBJECTS,
                                          "beta": "def subjects(options):\n    raise RuntimeError('no data')\n"})
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--models", "alpha", "--sections", "overview", "--no-progress"])
    stdout, stderr = capsys.readouterr()
    assert code == 0 and stderr == ""  # beta was never imported or asked for subjects
    assert _lines(stdout)[0].startswith("prepared alpha: 2 models")
    err = _error(capsys, ["demo", "--out", str(tmp_path / "d2"), "--models", "alpah"])
    assert err == "loupe: error: no demo model family 'alpah'; closest: alpha; available: alpha, beta\n"
    assert not (tmp_path / "d2").exists()


def test_demo_without_subjects_is_a_clear_error(tmp_path, monkeypatch, capsys):
    name = _fake_package(tmp_path, monkeypatch, {})
    err = _error(capsys, ["demo", "--out", str(tmp_path / "d")])
    assert err == f"loupe: error: no demo models are installed: {name} has no modules\n"


def test_out_must_be_a_folder(files, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    err = _error(capsys, ["report", "--model", f"{files}/net.py:build", "--input", str(files / "cat.png"),
                          "--out", str(f)])
    assert err == f"loupe: error: --out '{f}' is a file; expected a folder to write report.html into\n"


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_jobs_must_be_a_positive_number_or_auto(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--out", str(tmp_path / "d"), "--jobs", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --jobs: expected a positive number of processes or 'auto', got '{value}'" in err
    assert not (tmp_path / "d").exists()


def test_report_on_text_with_the_built_in_minilm_and_a_hugging_face_folder(tmp_path, capsys):
    pytest.importorskip("transformers")
    from torchloupe.demo.text_models import minilm_folder

    out = tmp_path / "minilm"
    code = main(["report", "--model", "minilm", "--text", "A <b>bold</b> claim.", "The cat sat on the mat.",
                 "--sections", "overview", "attention", "--no-progress", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert (code, stderr) == (0, "")
    assert _lines(stdout)[-1].startswith(f"wrote {out / 'report.html'} (")
    html = (out / "report.html").read_text()
    assert "<h2>Attention</h2>" in html and 'class="tl-token-view"' in html
    assert "[CLS]" in html and ">&lt;<" in html  # the first text's tokens shown, the "<" of "<b>" escaped
    folder = tmp_path / "hf"
    code = main(["report", "--model", f"hf:{minilm_folder()}", "--text", "Hello there.", "--sections", "attention",
                 "--no-progress", "--out", str(folder)])
    assert code == 0 and 'class="tl-token-view"' in (folder / "report.html").read_text()
    capsys.readouterr()


def test_inputs_a_model_cannot_take_are_one_line_errors_before_the_work(files, tmp_path, capsys):
    err = _error(capsys, ["report", "--model", "torchvision:resnet18", "--text", "hi", "--out", str(tmp_path / "a")])
    assert err == ("loupe: error: --text needs a text model with a tokenizer (minilm, or hf:DIR for a Hugging Face "
                   "model folder); 'torchvision:resnet18' has none: give it images with --input\n")
    err = _error(capsys, ["report", "--model", f"{files}/net.py:two", "--input", str(files / "cat.png"),
                          "--out", str(tmp_path / "b")])
    assert err.startswith(f"loupe: error: {files}/net.py:two cannot take the given inputs (1, 3, 24, 32): "
                          "TypeError: ") and "aux" in err and err.count("\n") == 1
    assert not (tmp_path / "b" / "report.html").exists()
    blocked = tmp_path / "afile"
    blocked.write_text("x")
    err = _error(capsys, ["report", "--model", f"{files}/net.py:build", "--input", str(files / "cat.png"),
                          "--out", str(blocked / "sub")])
    assert err == f"loupe: error: --out '{blocked / 'sub'}': cannot make this folder ('{blocked}' is not a directory)\n"


def test_a_labels_file_of_the_wrong_length_is_a_warning(files, tmp_path, capsys):
    (tmp_path / "two.txt").write_text("cat\ndog\n")
    code = main(["report", "--model", f"{files}/net.py:build", "--input", str(files / "cat.png"), "--labels",
                 str(tmp_path / "two.txt"), "--sections", "overview", "--no-progress", "--out", str(tmp_path / "o")])
    assert code == 0
    assert capsys.readouterr().err == ("loupe: warning: 2 class names for a model with 3 outputs; classes without a "
                                       "name are shown by number\n")


def test_torchvision_classifiers_get_imagenet_class_names(files, tmp_path, capsys):
    out = tmp_path / "tv"
    code = main(["report", "--model", "torchvision:mobilenet_v3_small", "--input", str(files / "cat.png"),
                 "--sections", "overview", "--no-progress", "--out", str(out)])
    assert code == 0 and capsys.readouterr().err == ""
    html = (out / "report.html").read_text()
    from torchloupe.demo.imagenet_data import imagenet_classes

    names = imagenet_classes()
    assert len(names) == 1000 and "class 0</span>" not in html
    assert sum(f'title="{n}"' in html for n in names) == 3  # the top-3 of the card are named


def test_the_pre_flight_forward_leaves_the_inputs_alone_and_counts_classes_from_the_output(files, tmp_path):
    import argparse

    from torchloupe.app.commands import report
    from torchloupe.app.models import load_model
    from torchloupe.reporting import Subject

    from torchloupe.app.loading import check_forward
    from torchloupe.inputs import Inputs

    model = load_model(f"{files}/net.py:edits")
    x = torch.rand(3, 3, 8, 8)
    keep = x.clone()
    out = report._check_runs(model, Subject("e", model, x), argparse.Namespace(model="e", input=["a"], text=None))
    # the trial runs on a copy of the first two samples (two: a model that mixes the batch up shows it)
    with torch.no_grad():
        want = model.fc(model.conv(keep[:2] - 0.5).mean((2, 3)))
    assert torch.equal(x, keep) and out.shape == (2, 3) and torch.allclose(out, want)
    one = x[:1].clone()
    out = check_forward(model, Inputs.of(one), spec="e")  # one sample: run twice in one batch
    assert torch.equal(one, x[:1]) and out.shape == (2, 3) and torch.equal(out[0], out[1])


def test_labels_of_a_model_whose_head_is_registered_first_give_no_false_warning(files, tmp_path, capsys):
    code = main(["report", "--model", f"{files}/net.py:head_first", "--input", str(files / "cat.png"), "--labels",
                 str(files / "labels.txt"), "--sections", "overview", "--no-progress", "--out", str(tmp_path / "o")])
    assert code == 0 and capsys.readouterr().err == ""  # 3 names, 3 outputs (the last Linear has 8)


def test_text_models_without_a_padding_token_or_without_a_tokenizer(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import shutil

    from torchloupe.demo.text_models import minilm_folder

    vocab = {w: i for i, w in enumerate(["<unk>", "hello", "world", "the", "cat"])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    gpt = tmp_path / "gpt"
    torch.manual_seed(0)
    transformers.GPT2Model(transformers.GPT2Config(vocab_size=5, n_embd=16, n_layer=1, n_head=2, n_positions=16)
                           ).save_pretrained(gpt)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(gpt)
    code = main(["report", "--model", f"hf:{gpt}", "--text", "hello world", "--sections", "overview",
                 "--no-progress", "--out", str(tmp_path / "one")])
    assert code == 0  # one sentence needs no padding
    capsys.readouterr()
    err = _error(capsys, ["report", "--model", f"hf:{gpt}", "--text", "hello world", "the cat",
                          "--out", str(tmp_path / "two")])
    assert err == ("loupe: error: this tokenizer has no padding token, so sentences cannot share a batch; "
                   "give one sentence at a time\n")
    bare = tmp_path / "bare"  # the model's files without any of the tokenizer's
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(f"{minilm_folder()}/{f}", bare / f)
    err = _error(capsys, ["report", "--model", f"hf:{bare}", "--text", "hello", "--out", str(tmp_path / "three")])
    assert err.startswith("loupe: error: --text needs a text model with a tokenizer") and f"'hf:{bare}' has none" in err


SUBCOMMAND = '''
from torchloupe.app.commands._common import (add_image_arguments, add_model_arguments, image_inputs, labels_for,
                                             load_model_from, output_folder)


def register(subparsers):
    p = subparsers.add_parser("zz-shape", help="write the shape of the model's input batch")
    add_model_arguments(p)
    add_image_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=run)


def run(args):
    out = output_folder(args.out, into="shape.txt")
    model = load_model_from(args)
    images, x = image_inputs(args, model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shape.txt").write_text(f"{tuple(x.shape)} {labels_for(args, model)}")
    print(f"{tuple(images.shape)} {float(x.sum()):.6f}")
'''


def test_a_new_subcommand_is_one_module_using_the_shared_input_and_output_code(files, tmp_path, capsys,
                                                                               monkeypatch):
    import sys

    from torchloupe.app import commands
    from torchloupe.app.images import load_images

    extra = tmp_path / "more_commands"
    extra.mkdir()
    (extra / "zz_shape.py").write_text(SUBCOMMAND)
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(extra)])
    try:
        cat = str(files / "cat.png")
        assert main(["zz-shape", "--model", f"{files}/net.py:build", "--input", cat, "--labels",
                     str(files / "labels.txt"), "--out", str(tmp_path / "a")]) == 0
        rgb = load_images([cat])
        assert capsys.readouterr().out == f"(1, 3, 24, 32) {float(rgb.sum()):.6f}\n"
        assert (tmp_path / "a" / "shape.txt").read_text() == "(1, 3, 24, 32) ['cat', 'dog', '<b>bird</b>']"
        # gray by the first layer, resized by --size; ImageNet statistics only for RGB models
        assert main(["zz-shape", "--model", f"{files}/net.py:gray", "--input", cat, "--size", "16",
                     "--normalize", "imagenet", "--out", str(tmp_path / "b")]) == 0
        gray = load_images([cat], size=16, mode="L")
        assert capsys.readouterr().out == f"(1, 1, 16, 16) {float(gray.sum()):.6f}\n"
        assert main(["zz-shape", "--model", "torchvision:resnet18", "--input", cat, "--out", str(tmp_path / "c")]) == 0
        want = load_images([cat], size=224, normalize="imagenet")
        assert capsys.readouterr().out == f"(1, 3, 224, 224) {float(want.sum()):.6f}\n"
        assert (tmp_path / "c" / "shape.txt").read_text().startswith("(1, 3, 224, 224) ['tench', 'goldfish'")
        err = _error(capsys, ["zz-shape", "--model", f"{files}/net.py:build", "--input", cat, "--out", cat])
        assert err == f"loupe: error: --out '{cat}' is a file; expected a folder to write shape.txt into\n"
    finally:
        sys.modules.pop("torchloupe.app.commands.zz_shape", None)


def test_graph_checks_its_output_folder_first(tmp_path, capsys):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    for out, want in [(a_file, f"--out '{a_file}' is a file; expected a folder to write the graph into"),
                      (a_file / "sub", f"--out '{a_file / 'sub'}': cannot make this folder ('{a_file}' is not a "
                                       f"directory)")]:
        err = _error(capsys, ["graph", "--model", "torchvision:resnet18", "--input-shape", "1,3,8,8",
                              "--out", str(out)])
        assert err == f"loupe: error: {want}\n"
