import tempfile

import torch

import torchloupe as tl
from tests.helpers import Case


def _trace(model, x):
    g = tl.trace(model, x)
    assert g.find(name="features.0")[0].output_shapes == ((2, 8, 16, 16),)


def _seq():
    from tests.test_structure import Seq

    torch.manual_seed(0)
    return Seq().train()


def _export_onnx(model, x):
    with tempfile.TemporaryDirectory() as tmp:
        tl.structure.export_onnx(model, x, path=f"{tmp}/m.onnx")


def _encoder():
    from tests.invariant_cases.attention import _encoder

    return _encoder()


def _export_onnx_attention(model, x):
    with tempfile.TemporaryDirectory() as tmp:
        tl.structure.export_onnx(model, x, path=f"{tmp}/m.onnx")  # the fast path is off while exporting
    assert torch.backends.mha.get_fastpath_enabled()


def _add_graph(method):
    def call(model, x):
        from torch.utils.tensorboard import SummaryWriter

        from torchloupe.integrations import tensorboard

        with tempfile.TemporaryDirectory() as tmp:
            writer = SummaryWriter(tmp)
            try:
                tensorboard.add_graph(writer, model, x, method=method)
            finally:
                writer.close()

    return call


CASES = [
    Case("trace", _trace),
    Case("trace-expand-attention", lambda m, x: tl.trace(m, x, expand=["attn"]), make=_seq,
         inputs=lambda: torch.rand(2, 5, 8)),
    Case("export_onnx", _export_onnx),
    Case("export_onnx-attention", _export_onnx_attention, make=_encoder, inputs=lambda: torch.randn(2, 5, 8)),
    Case("add_graph-torch", _add_graph("torch")),
    Case("add_graph-torchloupe", _add_graph("torchloupe")),
]
