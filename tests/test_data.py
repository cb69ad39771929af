"""tl.data: image folders / globs / list files and memory-mapped tensor files as datasets; unreadable
files skipped and counted; exemplar indices that stay file indices; loupe exemplars / report --data."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchloupe as tl
from torchloupe import data
from torchloupe.app.cli import main
from torchloupe.errors import InputFileError, UsageError

PIL = pytest.importorskip("PIL.Image")
SRC = Path(__file__).resolve().parents[1] / "src"


def _save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(array).save(path, **kw)
    return path


def _noise(seed: int, h: int = 32, w: int = 32, high: int = 200) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=(h, w, 3), dtype=np.uint8)


def _truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    PIL.fromarray(_noise(99, 64, 64)).save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


# --- listing ----------------------------------------------------------------------------------
def test_image_folder_layout_gives_torchvision_labels_classes_and_order(tmp_path):
    root = tmp_path / "tree"
    files = ["dog/b.jpg", "dog/a.png", "dog/deep/z.jpg", "dog/deep/er/y.jpg", "cat/x.JPG", "cat/0.bmp",
             "ant/only.png", "cat/notes.txt", "dog/.hidden.jpg", ".cache/c.jpg"]
    for i, f in enumerate(files):
        if f.endswith(".txt"):
            (root / f).write_text("not an image")
        else:
            fmt = {"jpg": "JPEG", "png": "PNG", "bmp": "BMP"}[f.rsplit(".", 1)[1].lower()]
            _save(root / f, _noise(i, 8, 8), format=fmt)
    ds = data.images(root, size=8)
    rel = [Path(p).relative_to(root).as_posix() for p in ds.paths]
    assert rel == ["ant/only.png", "cat/0.bmp", "cat/x.JPG", "dog/a.png", "dog/b.jpg", "dog/deep/z.jpg",
                   "dog/deep/er/y.jpg"]
    assert ds.classes == ["ant", "cat", "dog"]
    assert ds.labels == [0, 1, 1, 2, 2, 2, 2]
    assert [ds.name(i) for i in range(len(ds))] == rel
    assert [ds[i][1] for i in range(len(ds))] == ds.labels
    # the peer: torchvision's ImageFolder numbers and orders the same files the same way (it reads
    # hidden files and folders too: without them, the two agree)
    torchvision = pytest.importorskip("torchvision")
    import shutil

    shutil.rmtree(root / ".cache")
    (root / "dog" / ".hidden.jpg").unlink()
    tv = torchvision.datasets.ImageFolder(str(root))
    assert [p for p, _ in tv.samples] == ds.paths
    assert [y for _, y in tv.samples] == ds.labels
    assert tv.classes == ds.classes


def test_folder_without_class_layout_has_label_minus_one(tmp_path):
    for name in ("b.png", "a.png", "sub/c.png"):
        _save(tmp_path / name, _noise(1, 8, 8))
    ds = data.images(tmp_path, size=8)
    assert [ds.name(i) for i in range(3)] == ["a.png", "b.png", "sub/c.png"]
    assert ds.classes is None and ds.labels == [-1, -1, -1]
    batch = ds.collate_fn([ds[i] for i in range(3)])
    assert batch[1].tolist() == [-1, -1, -1] and batch[0].shape == (3, 3, 8, 8)


def test_glob_and_list_file(tmp_path):
    for name in ("p/2.jpg", "p/1.jpg", "p/q/3.jpg", "p/q/4.png", "other/5.jpg"):
        _save(tmp_path / name, _noise(2, 8, 8))
    g = data.images(str(tmp_path / "p" / "**" / "*.jpg"), size=8)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in g.paths] == ["p/1.jpg", "p/2.jpg", "p/q/3.jpg"]
    assert g.classes is None and g.root is None
    listing = tmp_path / "lists" / "files.txt"
    listing.parent.mkdir()
    listing.write_text(f"# a comment\n../p/q/4.png\n\n  ../other/5.jpg  \n{tmp_path / 'p' / '1.jpg'}\n../p/q\n")
    lst = data.images(listing, size=8)
    assert lst.paths == [str(listing.parent / "../p/q/4.png"), str(listing.parent / "../other/5.jpg"),
                         str(tmp_path / "p" / "1.jpg"), str(listing.parent / "../p/q")]
    assert torch.equal(lst[2][0], g[0][0])  # the same file read through either listing
    assert lst[3] == data.Skipped(3, str(listing.parent / "../p/q"), "a folder, not a file")


def test_listing_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.md").write_text("x")
    for spec, says in ((tmp_path / "nope", "no such file or folder"),
                       (tmp_path / "empty", "holds no image files"),
                       (tmp_path / "notes.md", "expected a folder of images, a glob or a .txt list"),
                       (str(tmp_path / "*.jpg"), "holds no image files")):
        with pytest.raises(InputFileError, match=says):
            data.images(spec)
    _save(tmp_path / "a.png", _noise(0, 8, 8))
    with pytest.raises(UsageError, match="image size must be a positive integer, got 0"):
        data.images(tmp_path, size=0)
    with pytest.raises(UsageError, match="unknown normalization 'imagnet'"):
        data.images(tmp_path, normalize="imagnet")


# --- pixels -----------------------------------------------------------------------------------
def test_items_are_the_cli_pixels_resized_cropped_and_normalized(tmp_path):
    from torchloupe.app.images import load_images

    a = _save(tmp_path / "a.png", _noise(3, 30, 40))  # 40 wide, 30 high
    ds = data.images(tmp_path, size=20, normalize="imagenet")
    x, label = ds[0]
    ref = load_images([a], size=20, normalize="imagenet")[0]
    assert label == -1 and x.shape == (3, 20, 20) and torch.equal(x, ref)
    raw = ds.image(0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(x, (raw - mean) / std, rtol=0, atol=1e-6)
    # a lossless file at its own size comes back exactly as its bytes / 255
    own = data.images(tmp_path)
    assert own.size == (40, 30)
    assert torch.equal(own[0][0], torch.from_numpy(_noise(3, 30, 40)).permute(2, 0, 1).float() / 255)
    gray = data.images(tmp_path, size=20, mode="L")
    assert gray[0][0].shape == (1, 20, 20)
    custom = data.images(tmp_path, size=20, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    torch.testing.assert_close(custom[0][0], (raw - 0.5) / 0.25, rtol=0, atol=1e-6)


def test_other_sizes_are_fitted_to_the_first_images_size(tmp_path):
    _save(tmp_path / "a.png", _noise(4, 12, 16))
    _save(tmp_path / "b.png", _noise(5, 24, 24))
    ds = data.images(tmp_path)
    assert ds.size == (16, 12)
    b = ds[1][0]
    ref = data.resize_crop(PIL.open(tmp_path / "b.png").convert("RGB"), (16, 12))
    assert b.shape == (3, 12, 16)
    assert torch.equal(b, torch.from_numpy(np.array(ref)).permute(2, 0, 1).float() / 255)


# --- unreadable files ------------------------------------------------------------------------
def _bad_folder(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    for i in range(8):
        _save(root / f"img_{i:03d}.jpg", _noise(i))
    (root / "img_001b.png").write_text("I am a text file")
    (root / "img_003b.jpg").write_bytes(b"")
    _truncated_jpeg(root / "img_005b.jpg")
    _save(root / "img_006b.png", _noise(6, 120, 120))  # 14,400 pixels: over max_pixels below
    return root


BAD = [("img_001b.png", "not an image Pillow can read"), ("img_003b.jpg", "empty file"),
       ("img_005b.jpg", "truncated or damaged image data"),
       ("img_006b.png", "too many pixels (more than max_pixels; a decompression bomb?)")]


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_files_are_skipped_counted_and_named(tmp_path, workers):
    root = _bad_folder(tmp_path)
    ds = data.images(root, size=16, max_pixels=10_000)
    assert len(ds) == 12
    seen, indices = 0, []
    loader = DataLoader(ds, batch_size=5, num_workers=workers, collate_fn=ds.collate_fn)
    for batch in loader:
        assert batch[0].shape[0] == batch[1].shape[0] == len(batch.indices)
        seen += batch[0].shape[0]
        indices += batch.indices.tolist()
        assert all(isinstance(s, data.Skipped) for s in batch.skipped)
    good = [i for i, p in enumerate(ds.paths) if "b." not in Path(p).name]
    assert seen == 8 and indices == good
    assert [(ds.name(s.index), s.reason) for s in ds.skipped()] == BAD
    msg = data.skipped_message(ds, shown=2)
    assert msg == ("skipped 4 unreadable files: img_001b.png (not an image Pillow can read), "
                   "img_003b.jpg (empty file), and 2 more")
    with pytest.raises(InputFileError, match=r"cannot read image '.*img_005b.jpg': truncated"):
        ds.image(ds.paths.index(str(root / "img_005b.jpg")))


def test_permission_denied_is_skipped(tmp_path, monkeypatch):
    for i in range(3):
        _save(tmp_path / f"{i}.png", _noise(i, 8, 8))
    locked = str(tmp_path / "1.png")
    if os.geteuid() != 0:
        os.chmod(locked, 0)
    else:  # root reads anything: the file is refused at open() instead
        real_open = open

        def refusing_open(path, *args, **kwargs):
            if str(path) == locked:
                raise PermissionError(13, "Permission denied", locked)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(data, "open", refusing_open, raising=False)
    ds = data.images(tmp_path, size=8)
    assert isinstance(ds[1], data.Skipped) and ds[1].reason == "permission denied"
    assert data.skipped_message(ds) == "skipped 1 unreadable file: 1.png (permission denied)"


# --- exemplars over files --------------------------------------------------------------------
def _red_detector() -> nn.Module:
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = 1.0  # channel 0: the red mean
        conv.weight[1, 2] = 1.0  # channel 1: the blue mean
    return nn.Sequential(conv)


def test_planted_image_is_the_top_exemplar_and_indices_are_file_indices(tmp_path):
    root = _bad_folder(tmp_path)
    planted = np.zeros((32, 32, 3), np.uint8)
    planted[..., 0] = 255
    _save(root / "img_007c.png", planted)  # after four unreadable files in the order
    ds = data.images(root, size=16, max_pixels=10_000)
    model = _red_detector()
    with pytest.warns(data.SkippedFilesWarning, match="skipped 4 unreadable files"):
        ex = tl.synthesis.exemplars(model, ds, "0", k=3, batch_size=4)
    assert ds.name(int(ex.indices[0, 0])) == "img_007c.png"
    assert float(ex.values[0, 0]) == pytest.approx(1.0)
    assert ex.seen == 9
    # brute force over the readable files: the exact same indices and values
    rgb = {i: ds[i][0].mean((1, 2)) for i in range(len(ds)) if not isinstance(ds[i], data.Skipped)}
    means = {i: v[[0, 2]] for i, v in rgb.items()}  # the channels: red and blue means
    for c in (0, 1):
        ranked = sorted(means, key=lambda i: (-float(means[i][c]), i))[:3]
        assert ex.indices[c].tolist() == ranked
        torch.testing.assert_close(ex.values[c], torch.stack([means[i][c] for i in ranked]), rtol=1e-6, atol=1e-6)
    # crops are the files' pixels (1x1 conv: the crop is the pixel at the argmax)
    assert ex.crops is not None and torch.equal(ex.crops[0, 0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    # the grid names the files
    from torchloupe.render.synthesis import exemplars_figure

    fig = exemplars_figure(ex, rows=2, k=3, names=ds.name)
    assert fig.axes[0].get_title() == "img_007c.png\n1"
    # through a DataLoader with workers: the same result
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=ds.collate_fn)
    with pytest.warns(data.SkippedFilesWarning):
        ex2 = tl.synthesis.exemplars(model, loader, "0", k=3)
    assert torch.equal(ex2.indices, ex.indices) and torch.equal(ex2.values, ex.values)


# --- tensor files -----------------------------------------------------------------------------
def test_npy_is_memory_mapped_and_gives_the_tensor_datasets_exemplars(tmp_path, monkeypatch):
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())
    calls = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    ds = data.tensors(tmp_path / "x.npy")
    assert calls == [{"mmap_mode": "r", "allow_pickle": False}]
    assert isinstance(ds.array, np.memmap) and len(ds) == 10
    assert torch.equal(ds[3][0], x[3])
    model = _red_detector()
    ex = tl.synthesis.exemplars(model, ds, "0", k=4, batch_size=3)
    ref = tl.synthesis.exemplars(model, TensorDataset(x), "0", k=4, batch_size=3)
    assert torch.equal(ex.indices, ref.indices) and torch.equal(ex.values, ref.values)
    assert torch.equal(ex.crops, ref.crops)


def test_pt_is_loaded_with_mmap_and_weights_only(tmp_path, monkeypatch):
    x = torch.arange(24.0).reshape(6, 4)
    torch.save(x, tmp_path / "x.pt")
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    ds = data.tensors(tmp_path / "x.pt")
    assert calls[0]["mmap"] is True and calls[0]["weights_only"] is True
    assert torch.equal(ds[5][0], x[5])
    torch.save({"not": "a tensor"}, tmp_path / "d.pt")
    with pytest.raises(InputFileError, match="holds a dict; expected one"):
        data.tensors(tmp_path / "d.pt")


_SPARSE = textwrap.dedent("""
    import sys
    import numpy as np
    from torchloupe import data
    def peak_kib():  # this process's own high-water mark (ru_maxrss would carry the parent's over exec)
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    before = peak_kib()
    ds = data.tensors(sys.argv[1])
    total = sum(float(ds[i][0].sum()) for i in range(0, len(ds), len(ds) // 7))
    print(len(ds), total, (peak_kib() - before) // 1024)
""")


def test_a_npy_file_larger_than_memory_use_is_read_item_by_item(tmp_path):
    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(4096, 3, 128, 128))  # 768 MiB
    big[585] = 1.0  # one of the items read below
    del big
    out = subprocess.run([sys.executable, "-c", _SPARSE, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0, out.stderr
    n, total, grown_mib = out.stdout.split()
    assert int(n) == 4096 and float(total) == 3 * 128 * 128
    assert int(grown_mib) < 64, f"reading 8 items of a 768 MiB file grew the peak memory by {grown_mib} MiB"


# --- bounded memory ---------------------------------------------------------------------------
_RUN = textwrap.dedent("""
    import sys, warnings
    import torch
    from torch import nn
    import torchloupe as tl
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))
    ds = tl.data.images(sys.argv[1], size=48)
    def peak_kib():  # this process's own high-water mark (ru_maxrss would carry the parent's over exec)
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    ds[0]; tl.synthesis.exemplars(model, [ds[0][0][None]], "2", k=4)  # warm up every allocation path
    before = peak_kib()
    ex = tl.synthesis.exemplars(model, ds, "2", k=4, batch_size=32)
    print(ex.seen, peak_kib() - before)
""")


def test_peak_memory_does_not_grow_with_the_number_of_files(tmp_path):
    rng = np.random.default_rng(0)
    for n in (300, 1500):
        folder = tmp_path / str(n)
        folder.mkdir()
        for i in range(n):
            PIL.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg", quality=80)
    grown = {}
    for n in (300, 1500):
        out = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path / str(n))], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "PYTHONPATH": str(SRC)})
        assert out.returncode == 0, out.stderr
        seen, kib = out.stdout.split()
        assert int(seen) == n
        grown[n] = int(kib)
    # 5x the files: the peak grows by the paths' strings at most, not by the images (1,200 more
    # decoded 48 px images would be 33 MiB)
    assert grown[1500] - grown[300] < 4 * 1024, grown


# --- command line -----------------------------------------------------------------------------
MODEL = '''
import torch
from torch import nn

def factory():
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.zero_(); conv.bias.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 2] = 1.0
    return nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''


def test_cli_exemplars_over_a_folder_names_files_and_counts_skips(tmp_path, capsys):
    root = _bad_folder(tmp_path)
    planted = np.zeros((32, 32, 3), np.uint8)
    planted[..., 2] = 255
    _save(root / "img_004c.png", planted)
    (tmp_path / "m.py").write_text(MODEL)
    spec = f"{tmp_path / 'm.py'}:factory"
    outs = []
    for workers in ("0", "2"):
        rc = main(["exemplars", "--model", spec, "--data", str(root), "--layer", "0", "--k", "2", "--size", "16",
                   "--batch-size", "4", "--workers", workers, "--no-progress", "--out", str(tmp_path / "g.png")])
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        outs.append(cap.out)
        # the 120 px file is readable here (no max_pixels on the command line): 3 skipped
        assert cap.err.strip() == ("loupe: warning: skipped 3 unreadable files: img_001b.png (not an image Pillow "
                                   "can read), img_003b.jpg (empty file), img_005b.jpg (truncated or damaged image data)")
    assert outs[0] == outs[1]
    ds = data.images(root, size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.SkippedFilesWarning)
        from torchloupe.app.models import load_model

        ex = tl.synthesis.exemplars(load_model(spec), ds, "0", k=2, batch_size=4)
    lines = outs[0].splitlines()
    assert lines[0] == "0: top-2 of 10 samples, reduce=mean, 1 process(es)"
    for c in (0, 1):
        items = [f"#{int(i)} {ds.name(int(i))} ({float(v):.4g})" for i, v in zip(ex.indices[c], ex.values[c])]
        assert lines[1 + c] == f"  channel {c}: " + ", ".join(items)
    assert "img_004c.png" in lines[2]  # the blue image tops the blue channel
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_exemplars_tensor_files_and_bad_data(tmp_path, capsys):
    (tmp_path / "m.py").write_text(MODEL)
    spec = f"{tmp_path / 'm.py'}:factory"
    x = torch.rand(9, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "x.npy", x.numpy())
    torch.save(x, tmp_path / "x.pt")
    printed = []
    for f in ("x.npy", "x.pt"):
        assert main(["exemplars", "--model", spec, "--data", str(tmp_path / f), "--layer", "0", "--k", "3",
                     "--no-progress"]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and printed[0].startswith("0: top-3 of 9 samples")
    for bad, says in (("nothing_here", "no such file or folder"), ("--workers=-1", "expected a number of worker")):
        argv = ["exemplars", "--model", spec, "--layer", "0", "--no-progress"]
        argv += ["--data", str(tmp_path / "x.npy"), bad] if bad.startswith("--") else ["--data", str(tmp_path / bad)]
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err


def test_cli_report_data_feeds_exemplars_with_file_names(tmp_path, capsys):
    root = tmp_path / "tree"
    for c, color in (("blue", 2), ("red", 0)):
        for i in range(3):
            img = _noise(10 * color + i, 24, 24, high=60)
            img[..., color] = 200 + 10 * i
            _save(root / c / f"{c}{i}.png", img)
    (root / "red" / "broken.png").write_text("x")
    (tmp_path / "m.py").write_text(MODEL)
    rc = main(["report", "--model", f"{tmp_path / 'm.py'}:factory", "--data", str(root), "--size", "16",
               "--sections", "exemplars", "overview", "--out", str(tmp_path / "r"), "--no-progress", "--jobs", "1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.err.strip() == "loupe: warning: skipped 1 unreadable file: red/broken.png (not an image Pillow can read)"
    html = (tmp_path / "r" / "report.html").read_text()
    assert "top-5 of the first 6 samples" in html
    # the class folders name the model's two outputs and give the inputs' true classes
    assert html.count("true: blue") == 3 and html.count("true: red") == 3
    rc = main(["report", "--model", f"{tmp_path / 'm.py'}:factory", "--out", str(tmp_path / "r2")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == ("loupe: error: give the report inputs: --input FILE..., "
                                               "--text SENTENCE... or --data DIR")


def test_torchrun_two_ranks_give_the_single_process_result_and_every_skip(tmp_path, capsys):
    root = _bad_folder(tmp_path)  # 12 files, 4 unreadable (one too large with max_pixels, read here)
    (tmp_path / "m.py").write_text(MODEL)
    spec = f"{tmp_path / 'm.py'}:factory"
    argv = ["exemplars", "--model", spec, "--data", str(root), "--layer", "0", "--k", "3", "--size", "16",
            "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    single = capsys.readouterr()
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "torchloupe", *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == single.out.replace("1 process(es)", "2 process(es)")
    # the unreadable files fall in both ranks' batches (batches of 2: ranks take every other one);
    # rank 0 says all of them, once
    skipped = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert skipped == [single.err.strip()] and single.err.count("img_0") == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pinned_batches_keep_their_indices_and_reach_the_gpu(tmp_path):
    root = _bad_folder(tmp_path)
    ds = data.images(root, size=16, max_pixels=10_000)
    loader = DataLoader(ds, batch_size=6, num_workers=2, pin_memory=True, collate_fn=ds.collate_fn)
    batches = list(loader)
    assert all(b[0].is_pinned() for b in batches)
    assert [i for b in batches for i in b.indices.tolist()] == [i for i in range(12) if "b." not in ds.paths[i]]
    model = _red_detector().cuda()
    with pytest.warns(data.SkippedFilesWarning):
        gpu = tl.synthesis.exemplars(model, loader, "0", k=3)
    with pytest.warns(data.SkippedFilesWarning):
        cpu = tl.synthesis.exemplars(_red_detector(), ds, "0", k=3, batch_size=6)
    assert torch.equal(gpu.indices.cpu(), cpu.indices)
    torch.testing.assert_close(gpu.values.cpu(), cpu.values)


def test_a_huge_worker_count_is_refused_before_forking(capsys):
    from torchloupe.app.cli import main as cli_main

    with pytest.raises(SystemExit) as stopped:  # argparse's own one-line usage error
        cli_main(["exemplars", "--model", "torchvision:resnet18", "--data", "demo:shapes:8", "--layer", "layer1",
                  "--workers", "100000"])
    code = stopped.value.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "100000 worker processes" in err[0] and "at most" in err[0]


def test_exemplars_of_a_file_whose_name_is_not_utf8(tmp_path, capsys):
    """The file name reaches the listing and the figure as text (U+FFFD for the bad byte)."""
    from PIL import Image as PILImage

    from torchloupe.app.cli import main as cli_main

    folder = os.path.join(os.fsencode(tmp_path), b"d")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for name in (b"caf\xe9.png", b"b.png"):
        PILImage.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")).save(os.path.join(folder, name))
    model = tmp_path / "net.py"
    model.write_text("import torch.nn as nn\n"
                     "def make():\n    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),"
                     " nn.Flatten(), nn.Linear(2, 2))\n")
    out = tmp_path / "e.png"
    code = cli_main(["exemplars", "--model", f"{model}:make", "--data", os.fsdecode(folder), "--layer", "0",
                     "--k", "2", "--out", str(out), "--no-progress"])
    said = capsys.readouterr().out
    assert code == 0 and "caf\ufffd.png" in said and out.stat().st_size > 0


@pytest.mark.parametrize("factory, layer", [("make_convnet", "conv2"), ("make_mlp", "fc1")])
def test_exemplars_data_read_as_the_model_reads_images(tmp_path, capsys, factory, layer):
    """--data follows --input's rule: gray for a 1-channel ConvNet, flat 28 x 28 gray vectors for the
    784-input MLP; the top sample equals a brute-force pass over the same images."""
    from PIL import Image as PILImage

    from tests import cli_models
    from torchloupe.app.cli import main as cli_main

    rng = np.random.default_rng(1)
    folder = tmp_path / "digits" / "a"
    folder.mkdir(parents=True)
    pixels = [(rng.random((28, 28)) * 255).astype("uint8") for _ in range(6)]
    for i, p in enumerate(pixels):
        PILImage.fromarray(p, "L").save(folder / f"{i}.png")
    spec = f"{Path(cli_models.__file__)}:{factory}"
    code = cli_main(["exemplars", "--model", spec, "--data", str(tmp_path / "digits"), "--layer", layer,
                     "--k", "1", "--channels", "0", "--no-progress"])
    said = capsys.readouterr().out
    assert code == 0, said
    torch.manual_seed(0)  # the CLI builds the model under seed 0 (its random init)
    from torchloupe.app.models import load_model

    model = load_model(spec)
    x = torch.from_numpy(np.stack(pixels)).float().div(255)[:, None]
    acts = tl.activations(model, x if factory == "make_convnet" else x.flatten(1), [layer])[layer]
    per_sample = acts[:, 0].flatten(1).mean(1) if acts.dim() > 2 else acts[:, 0]
    best = int(per_sample.argmax())
    assert f"channel 0: #{best} a/{best}.png" in said
