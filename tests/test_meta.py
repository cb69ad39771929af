"""Huge models seen without loading them: tracing on the meta device (``tl.trace`` on a model built
under ``torch.device("meta")``, ``loupe graph --model hf-config:PATH`` and ``--meta``).

The 7-billion-parameter case runs in a fresh interpreter so its time and memory are its own: the
weights in float32 would take 27 GB, so a trace that allocated them could not pass the memory bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from torchloupe.app.cli import main

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]

# Llama-2-7B's shape (hidden 4096, 32 layers, 32 heads, MLP 11008, vocabulary 32000).
LLAMA_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)


def llama_params(vocab, hidden, mlp, layers) -> int:
    """Parameters of a Llama model with untied embeddings, counted by hand: per layer four
    (hidden x hidden) attention projections, three (hidden x mlp) MLP matrices and two RMSNorm
    scales; then the final norm, the embedding and the output head."""
    per_layer = 4 * hidden * hidden + 3 * hidden * mlp + 2 * hidden
    return layers * per_layer + hidden + 2 * vocab * hidden


def test_seven_billion_parameter_llama_traces_in_seconds_without_its_weights():
    script = textwrap.dedent(f"""
        import json, resource, time
        import torch, transformers
        import torchloupe as tl
        from torchloupe.render.graph.layout import collapse, fit_depth

        def rss_mib():
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * resource.getpagesize() / 2**20

        before = rss_mib()
        start = time.perf_counter()
        config = transformers.LlamaConfig(**{LLAMA_7B!r})
        with torch.device("meta"):
            model = transformers.LlamaForCausalLM(config)
        graph = tl.trace(model, torch.zeros(1, 16, dtype=torch.long, device="meta"))
        view = collapse(graph, fit_depth(graph))
        seconds = time.perf_counter() - start
        # the high-water mark of this process's own memory (ru_maxrss would carry the parent's over exec)
        with open("/proc/self/status") as fh:
            peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
        nodes = {{n.qualname: n for n in graph.nodes}}
        print(json.dumps(dict(
            seconds=seconds, grew_mib=peak - before, params=graph.total_params,
            down=list(nodes["model.layers.31.mlp.down_proj"].output_shape),
            head=list(nodes["lm_head"].output_shape), q_macs=nodes["model.layers.0.self_attn.q_proj"].macs,
            folded=[(r.head, r.count) for r in view.folds.values()],
            boxes=len(view.nodes), meta=all(p.is_meta for p in model.parameters()),
        )))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["params"] == llama_params(32000, 4096, 11008, 32) == 6_738_415_616
    assert got["down"] == [1, 16, 4096] and got["head"] == [1, 16, 32000]
    assert got["q_macs"] == 16 * 4096 * 4096
    assert got["meta"]
    # The 32 decoder layers fold into one box shown x32, so the default view stays small.
    assert got["folded"] == [["model.layers.0", 32]]
    assert got["boxes"] < 90
    assert got["seconds"] < 30, got
    assert got["grew_mib"] < 1024, got


def write_config(folder: Path, **extra) -> Path:
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                                      architectures=["LlamaForCausalLM"])
    config.save_pretrained(folder)
    if extra:
        data = json.loads((folder / "config.json").read_text())
        data.update(extra)
        (folder / "config.json").write_text(json.dumps(data))
    return folder


def test_loupe_graph_hf_config_builds_the_architecture_on_meta(tmp_path, capsys):
    folder = write_config(tmp_path / "cfg")
    out = tmp_path / "out"
    code = main(["graph", "--model", f"hf-config:{folder}", "--input-shape", "2,10",  # token ids: the default here
                 "--out", str(out), "--format", "html,svg,txt"])
    assert code == 0
    said = capsys.readouterr().out
    expected = llama_params(300, 64, 96, 3)
    assert f"{expected:,} parameters (meta device" in said
    table = (out / "graph.txt").read_text()
    assert "(2, 10, 300)" in table  # the head's output shape, from shapes alone
    assert "output (2, 10, 300)" in (out / "graph.svg").read_text()
    # the path of the config file itself works too, and gives the same model
    capsys.readouterr()
    assert main(["graph", "--model", f"hf-config:{folder / 'config.json'}", "--input-shape", "1,4",
                 "--input-dtype", "int64", "--out", str(tmp_path / "out2"), "--format", "txt"]) == 0
    assert f"{expected:,} parameters" in capsys.readouterr().out


def test_loupe_graph_meta_builds_any_spec_without_weights(tmp_path, capsys):
    code = main(["graph", "--model", "torchvision:resnet18", "--meta", "--input-shape", "1,3,224,224",
                 "--out", str(tmp_path), "--format", "txt"])
    assert code == 0
    assert "11,689,512 parameters (meta device" in capsys.readouterr().out
    assert "(1, 512, 7, 7)" in (tmp_path / "graph.txt").read_text()


@pytest.mark.parametrize("argv, says", [
    (["--weights", "w.pt", "--format", "txt"], "holds no weights"),
    (["--format", "html,onnx"], "no weights to export"),
])
def test_meta_refuses_what_needs_weights_in_one_line(tmp_path, capsys, argv, says):
    folder = write_config(tmp_path / "cfg")
    code = main(["graph", "--model", f"hf-config:{folder}", "--input-shape", "1,4", "--input-dtype", "int64",
                 "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and len(err.splitlines()) == 1


def test_other_commands_refuse_a_model_without_weights(tmp_path, capsys):
    folder = write_config(tmp_path / "cfg")
    x = tmp_path / "x.pt"
    torch.save(torch.zeros(1, 4, dtype=torch.long), x)
    code = main(["cam", "--model", f"hf-config:{folder}", "--input", str(x), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "only loupe graph" in err and len(err.splitlines()) == 1


def test_hf_config_never_runs_the_folders_code(tmp_path, capsys):
    folder = write_config(tmp_path / "cfg", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
                          architectures=["EvilModel"], model_type="evil")
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    code = main(["graph", "--model", f"hf-config:{folder}", "--input-shape", "1,4", "--input-dtype", "int64",
                 "--out", str(tmp_path / "o"), "--format", "txt"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(folder) in err
    assert not marker.exists()


def test_hf_config_with_a_missing_file_is_one_line(tmp_path, capsys):
    code = main(["graph", "--model", f"hf-config:{tmp_path / 'nowhere'}", "--input-shape", "1,4",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not a Hugging Face config.json" in err


def test_a_forward_that_reads_values_says_why_meta_cannot_trace_it():
    import torchloupe as tl
    from torchloupe.errors import TraceError

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            return y if y.sum() > 0 else -y

    with torch.device("meta"):
        model = Branchy()
    with pytest.raises(TraceError, match="path depends on the data.*trace it with real weights"):
        tl.trace(model, torch.empty(2, 4, device="meta"))
    # the same model with weights traces, and notes the data-dependent branch
    graph = tl.trace(Branchy(), torch.ones(2, 4))
    assert any(n.data_dependent for n in graph.nodes)
