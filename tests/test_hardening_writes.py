"""Hardening of what loupe writes (issue 21, findings 3, 5, 12): complete files or none, symbolic
links replaced rather than followed, unwritable outputs refused before the work, file names that
are not UTF-8, and inputs of the same name."""

from __future__ import annotations

import builtins
import errno
import html.parser
import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchloupe.app.cli import main
from torchloupe.errors import OutputError
from torchloupe.files import atomic_write

NET = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))
"""


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "cat.png")
    return tmp_path


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind."""
    return sorted(p.name for p in folder.rglob("*.tmp"))


# -- the helper --------------------------------------------------------------------------------

def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old contents")

    def half_then_full(f):
        f.write(b"x" * 8192)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError) as info:
        atomic_write(target, half_then_full)
    assert str(info.value) == f"cannot write '{target}': No space left on device"
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_write_replaces_a_symlink_instead_of_following_it(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("do not touch")
    link = tmp_path / "page.html"
    link.symlink_to(outside)
    atomic_write(link, "<p>new</p>")
    assert outside.read_text() == "do not touch"
    assert not link.is_symlink() and link.read_text() == "<p>new</p>"
    assert oct(link.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # a normal file, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- a full disk: one line, exit 2, no truncated file -----------------------------------------

@pytest.fixture()
def full_disk(monkeypatch):
    """A write of more than 200 bytes to any of the returned file paths (or to a temporary file
    made for it in the same folder, ``.NAME.*``) fails with ENOSPC, as on a full disk; through
    ``open`` and ``io.open`` (so ``Path.write_bytes`` too)."""
    real_open = builtins.open
    targets: list[Path] = []

    class Full(io.RawIOBase):
        def __init__(self, inner):
            self.inner, self.n = inner, 0

        def writable(self):
            return True

        def write(self, b):
            room = 200 - self.n
            if room <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            k = self.inner.write(bytes(b)[:room]) or 0
            self.n += k
            return k

        def close(self):
            self.inner.close()
            super().close()

    def hit(file) -> bool:
        where = Path(os.fsdecode(file)).absolute()
        return any(where == t or (where.parent == t.parent and where.name.startswith(f".{t.name}."))
                   for t in targets)

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and isinstance(file, (str, bytes, os.PathLike)) and hit(file):
            raw = Full(real_open(file, "wb"))
            if "b" in mode:
                return io.BufferedWriter(raw)
            return io.TextIOWrapper(io.BufferedWriter(raw), encoding=kwargs.get("encoding") or "utf-8")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    return targets


@pytest.mark.parametrize("command, written", [
    (["graph", "--input-shape", "1,3,8,8", "--format", "html,svg,txt,dot", "--out", "{out}"], "graph.html"),
    (["graph", "--input-shape", "1,3,8,8", "--format", "html,svg,txt,dot", "--out", "{out}"], "graph.svg"),
    (["graph", "--input-shape", "1,3,8,8", "--format", "onnx,txt", "--out", "{out}"], "graph.txt"),
    (["cam", "--input", "{cat}", "--out", "{out}"], "grid.png"),
    (["cam", "--input", "{cat}", "--out", "{out}"], "index.html"),
    (["cam", "--input", "{cat}", "--save", "{out}/maps.pt", "--out", "{out}"], "maps.pt"),
    (["maximize", "2:0", "--steps", "2", "--shape", "3", "16", "16", "--out", "{out}/vis.png"], "vis.png"),
    (["exemplars", "--data", "demo:shapes:8", "--layer", "1", "--k", "2", "--save", "{out}/ex.pt"], "ex.pt"),
    (["exemplars", "--data", "demo:shapes:8", "--layer", "1", "--k", "2", "--out", "{out}/ex.png"], "ex.png"),
    (["report", "--input", "{cat}", "--sections", "overview", "--jobs", "1", "--out", "{out}"], "report.html"),
])
def test_a_full_disk_is_one_line_and_leaves_no_truncated_file(files, full_disk, capsys, command, written):
    out = files / "out"
    out.mkdir()
    full_disk.append(out / written)
    argv = [a.format(cat=files / "cat.png", out=out) for a in command]
    code = main([argv[0], "--model", f"{files}/net.py:build", *argv[1:], "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"loupe: error: cannot write '{out / written}': No space left on device\n"
    assert not (out / written).exists()
    assert _leftovers(files) == []
    assert list(out.iterdir()) == []  # the files written before the failing one are removed too


# -- outputs that cannot be written are refused before the work --------------------------------

@pytest.mark.parametrize("command", [
    ["graph", "--input-shape", "1,3,8,8", "--out", "{bad}"],
    ["cam", "--input", "{cat}", "--out", "{bad}"],
    ["cam", "--input", "{cat}", "--out", "{ok}", "--save", "{bad}/maps.pt"],
    ["maximize", "2:0", "--steps", "2", "--shape", "3", "16", "16", "--out", "{bad}/vis.png"],
    ["exemplars", "--data", "demo:shapes:8", "--layer", "1", "--out", "{bad}/ex.png"],
    ["exemplars", "--data", "demo:shapes:8", "--layer", "1", "--save", "{bad}/ex.pt"],
    ["report", "--input", "{cat}", "--out", "{bad}"],
    ["demo", "--out", "{bad}"],
])
def test_an_out_under_a_regular_file_is_one_line_before_the_work(files, capsys, monkeypatch, command):
    from torchloupe.app import models

    def no_work(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(models, "build_model", no_work)
    bad = files / "cat.png" / "sub"
    argv = [a.format(cat=files / "cat.png", bad=bad, ok=files / "ok") for a in command]
    if argv[0] != "demo":
        argv[1:1] = ["--model", f"{files}/net.py:build"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"'{files / 'cat.png'}' is not a directory" in err, err


@pytest.mark.parametrize("command", [
    ["graph", "--input-shape", "1,3,8,8", "--out", "{ro}/g"],
    ["cam", "--input", "{cat}", "--out", "{ro}/c"],
    ["maximize", "2:0", "--steps", "2", "--shape", "3", "16", "16", "--out", "{ro}/vis.png"],
    ["report", "--input", "{cat}", "--out", "{ro}/r"],
])
def test_a_read_only_out_is_one_line_before_the_work(files, capsys, monkeypatch, command):
    ro = files / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root writes into read-only folders: let os.access answer as for anyone else
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro and mode & os.W_OK
                            else real_access(p, mode, **kw))
    try:
        argv = [a.format(cat=files / "cat.png", ro=ro) for a in command]
        code = main([argv[0], "--model", f"{files}/net.py:build", *argv[1:]])
        err = capsys.readouterr().err
    finally:
        ro.chmod(0o700)
    assert code == 2 and err.count("\n") == 1 and f"'{ro}' is not writable" in err, err
    assert list(ro.iterdir()) == []


# -- symbolic links planted at output paths ---------------------------------------------------

@pytest.mark.parametrize("command, name", [
    (["graph", "--input-shape", "1,3,8,8", "--format", "html"], "graph.html"),
    (["cam", "--input", "{cat}"], "index.html"),
])
def test_a_planted_symlink_is_replaced_and_its_target_untouched(files, capsys, command, name):
    out = files / "out"
    out.mkdir()
    outside = files / "precious.txt"
    outside.write_text("the user's own file")
    (out / name).symlink_to(outside)
    argv = [a.format(cat=files / "cat.png") for a in command]
    assert main([argv[0], "--model", f"{files}/net.py:build", *argv[1:], "--out", str(out), "--no-progress"]) == 0
    assert outside.read_text() == "the user's own file"
    assert not (out / name).is_symlink()
    assert (out / name).read_text(encoding="utf-8").lower().startswith("<!doctype html>")


# -- file names that are not UTF-8 -----------------------------------------------------------

class _Rows(html.parser.HTMLParser):
    """(header text, [img src]) of each table row of the cam index."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append(("", []))
        elif tag == "th":
            self._in_th = True
        elif tag == "img" and self.rows:
            self.rows[-1][1].append(dict(attrs)["src"])
        elif tag == "br":
            self._in_th = False

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th and self.rows and not self.rows[-1][0]:
            self.rows[-1] = (data, self.rows[-1][1])


def _rows(page: str) -> list[tuple[str, list[str]]]:
    parser = _Rows()
    parser.feed(page)
    return [r for r in parser.rows if r[1]]


@pytest.fixture()
def latin1_name(files):
    name = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: not UTF-8, held with surrogateescape
    try:
        Image.open(files / "cat.png").save(files / name, format="PNG")
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take file names that are not UTF-8")
    return files / name


def test_cam_with_a_name_that_is_not_utf8_writes_a_valid_page(files, latin1_name, capsys):
    from urllib.parse import unquote

    out = files / "out"
    assert main(["cam", "--model", f"{files}/net.py:build", "--input", str(latin1_name), str(files / "cat.png"),
                 "--out", str(out), "--no-progress"]) == 0
    page = (out / "index.html").read_bytes()
    assert len(page) > 0
    rows = _rows(page.decode("utf-8"))  # strict: valid UTF-8
    assert [r[0] for r in rows] == ["caf\ufffd", "cat"]
    for _, srcs in rows:
        assert (out / unquote(srcs[0])).is_file()  # each row's image is there under its (quoted) name


def test_report_with_a_name_that_is_not_utf8_writes_a_valid_page(files, latin1_name, capsys):
    out = files / "out"
    assert main(["report", "--model", f"{files}/net.py:build", "--input", str(latin1_name), "--sections",
                 "overview", "--jobs", "1", "--out", str(out), "--no-progress"]) == 0
    text = (out / "report.html").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "caf\ufffd.png" in text


# -- inputs of the same name -------------------------------------------------------------------

def test_same_named_inputs_get_their_own_overlays_and_rows(files, capsys):
    from urllib.parse import unquote

    colours = {"x/img.png": (255, 0, 0), "y/img.png": (0, 255, 0), "z/img-2.png": (0, 0, 255)}
    for rel, rgb in colours.items():
        (files / rel).parent.mkdir()
        Image.new("RGB", (16, 16), rgb).save(files / rel)
    out = files / "out"
    assert main(["cam", "--model", f"{files}/net.py:build", "--input", *(str(files / r) for r in colours),
                 "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("wrote 3 overlays")
    overlays = sorted(p.name for p in out.glob("*_gradcam.png"))
    assert overlays == ["img-2_gradcam.png", "img-3_gradcam.png", "img_gradcam.png"]
    rows = _rows((out / "index.html").read_text(encoding="utf-8"))
    assert len(rows) == 3
    for (header, srcs), (rel, rgb) in zip(rows, colours.items()):
        shown = np.asarray(Image.open(out / unquote(srcs[0])).convert("RGB"), dtype=np.float64)
        # the overlay of a one-colour input leans to that colour: its own input, in its own row
        assert int(shown.mean((0, 1)).argmax()) == int(np.argmax(rgb)), (header, rel)
    assert [h for h, _ in rows] == ["img", "img-3", "img-2"]


def test_a_device_or_pipe_at_the_output_path_is_refused_not_replaced(tmp_path):
    from torchloupe.errors import OutputError
    from torchloupe.files import atomic_write

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="device, a pipe or a socket"):
        atomic_write(fifo, b"data")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe
    with pytest.raises(OutputError, match="not a file"):
        atomic_write("/dev/null", b"data")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
