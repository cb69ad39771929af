"""loupe maximize / loupe exemplars, in process; outputs checked against the API's results."""

from __future__ import annotations

import torch

import torchloupe as tl
from torchloupe.app.cli import main

MODEL = '''
import torch
from torch import nn

def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 5, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
'''


def _model_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MODEL)
    return f"{path}:factory"


def test_maximize_cli_prints_the_api_result_and_writes_png(tmp_path, capsys):
    spec = _model_file(tmp_path)
    png = tmp_path / "out.png"
    rc = main(["maximize", "--model", spec, "2:1-2", "5:0", "--steps", "4", "--shape", "3", "16", "16",
               "--seed", "1", "--out", str(png)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    from torchloupe.app.models import load_model

    res = tl.synthesis.maximize(load_model(spec), ["2:1", "2:2", "5:0"], steps=4, lr=0.05,
                                input_shape=(3, 16, 16), seed=1)
    assert lines[0].split() == ["objective", "reached", "random", "best", "status"]
    for line, (name, f, b, _, status) in zip(lines[1:4], res.rows()):
        assert line.split() == [name, f"{f:.4g}", f"{b:.4g}", status]
    assert lines[4] == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exemplars_cli_prints_top_k(tmp_path, capsys):
    spec = _model_file(tmp_path)
    data = torch.rand(12, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    torch.save(data, tmp_path / "d.pt")
    rc = main(["exemplars", "--model", spec, "--data", str(tmp_path / "d.pt"), "--layer", "2", "--k", "2",
               "--channels", "0", "3", "--batch-size", "5", "--no-progress", "--save", str(tmp_path / "e.pt")])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    from torchloupe.app.models import load_model

    ex = tl.synthesis.exemplars(load_model(spec), torch.utils.data.TensorDataset(data), "2", k=2,
                                channels=[0, 3], batch_size=5)
    assert out[0] == "2: top-2 of 12 samples, reduce=mean, 1 process(es)"
    for row, c in enumerate((0, 3)):
        i0, i1 = ex.indices[row].tolist()
        v0, v1 = ex.values[row].tolist()
        assert out[1 + row] == f"  channel {c}: #{i0} ({v0:.4g}), #{i1} ({v1:.4g})"
    saved = torch.load(tmp_path / "e.pt", weights_only=False)
    assert torch.equal(saved["indices"], ex.indices)


def test_cli_bad_objective_is_one_line_error(tmp_path, capsys):
    rc = main(["maximize", "--model", _model_file(tmp_path), "2:x", "--steps", "2", "--shape", "3", "16", "16"])
    assert rc == 2
    assert "does not parse" in capsys.readouterr().err


def test_exemplars_cli_refuses_bad_data_files_in_one_line(tmp_path, capsys):
    import os
    import pickle

    spec = _model_file(tmp_path)
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil(), protocol=2))
    (tmp_path / "evil5.pt").write_bytes(pickle.dumps(Evil(), protocol=5))  # Python's default: no GLOBAL seen
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02garbage")
    for data, says in (("evil.pt", "holds Python objects other than tensors"),
                       ("junk.pt", "not a file torch.save wrote (a plain pickle, which could run code, or damaged"),
                       ("evil5.pt", "a plain pickle, which could run code"),
                       ("demo:shapes:abc", "expected demo:shapes or demo:shapes:N")):
        arg = str(tmp_path / data) if data.endswith(".pt") else data
        rc = main(["exemplars", "--model", spec, "--data", arg, "--layer", "2", "--no-progress"])
        err = capsys.readouterr().err
        assert rc != 0 and err.startswith("loupe: error: ") and says in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists()


def test_bad_numbers_and_output_paths_fail_in_one_line_before_the_work(tmp_path, capsys):
    spec = _model_file(tmp_path)
    blocked = tmp_path / "afile"
    blocked.write_text("x")
    cases = [
        (["maximize", "--model", spec, "2:0", "--steps", "0"], "argument --steps: expected a positive whole number, got '0'"),
        (["maximize", "--model", spec, "2:0", "--lr", "nan"], "argument --lr: expected a positive finite number, got 'nan'"),
        (["maximize", "--model", spec, "2:0", "--shape", "3", "-1", "16"], "argument --shape: expected a positive whole number"),
        (["exemplars", "--model", spec, "--data", "demo:shapes:8", "--layer", "2", "--k", "0"],
         "argument --k: expected a positive whole number, got '0'"),
        (["maximize", "--model", spec, "2:0", "--shape", "3", "16", "16", "--out", str(blocked / "x.png")],
         f"--out '{blocked / 'x.png'}': cannot make its folder ('{blocked}' is not a directory)"),
        (["exemplars", "--model", spec, "--data", "demo:shapes:8", "--layer", "2", "--save", str(tmp_path)],
         f"--save '{tmp_path}' is a folder; expected a file path"),
    ]
    for argv, says in cases:
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own usage errors: exit 2 with one message
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, (argv, err)
    # a folder that does not exist yet is made for the output
    rc = main(["maximize", "--model", spec, "2:0", "--steps", "2", "--shape", "3", "16", "16",
               "--out", str(tmp_path / "new" / "vis.png")])
    assert rc == 0 and (tmp_path / "new" / "vis.png").read_bytes()[:4] == b"\x89PNG"


FIXED = """
import torch
from torch import nn

class Fixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if tuple(x.shape[-2:]) != (24, 24):  # as torchvision's ViT checks its input size
            raise ValueError(f"expected 24 x 24 images, got {tuple(x.shape[-2:])}")
        return self.fc(self.conv(x).mean((2, 3)))

def build():
    torch.manual_seed(0)
    return Fixed()
"""


def test_maximize_cli_keeps_the_size_of_a_one_size_model_and_refuses_empty_ranges(tmp_path, capsys):
    (tmp_path / "fixed.py").write_text(FIXED)
    spec = f"{tmp_path}/fixed.py:build"
    rc = main(["maximize", "--model", spec, "fc:0", "--steps", "3", "--shape", "3", "24", "24"])
    assert rc == 0 and capsys.readouterr().out.splitlines()[1].startswith("fc:0")
    rc = main(["maximize", "--model", spec, "conv:3-1", "--steps", "3", "--shape", "3", "24", "24"])
    err = capsys.readouterr().err
    assert rc == 2 and err == ("loupe: error: objective 'conv:3-1': the channel range 3-1 is empty; expected "
                               "first-last with first <= last, e.g. conv:1-3\n")
