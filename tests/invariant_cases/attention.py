"""Invariant cases for tl.attention and tl.recurrent: model untouched, outputs unchanged, flags restored."""

import torch
from torch import nn

import torchloupe as tl
import torchloupe.probe
from tests.helpers import Case, tree_equal


class _Encoder(nn.Module):
    """Two fast-path-eligible encoder layers + a head; dropout so a train-mode forward would differ."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.2, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.enc(x)[:, 0])


def _encoder():
    torch.manual_seed(0)
    return _Encoder().train()


def _tokens():
    return torch.randn(2, 5, 8)


def _capture(model, x):
    fast = torch.backends.mha.get_fastpath_enabled()
    before = tl.probe.eval_forward(model, x)
    try:
        maps = tl.attention.capture(model, x)
    finally:
        assert torch.backends.mha.get_fastpath_enabled() == fast
    assert list(maps) == ["enc.layers.0.self_attn", "enc.layers.1.self_attn"]
    assert tree_equal(tl.probe.eval_forward(model, x), before), "model output changed by capture"


def _hf_bert():
    transformers = __import__("transformers")
    cfg = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(cfg, add_pooling_layer=False)
    model.config._attn_implementation = "eager"
    return model.train()


def _hf_capture(model, ids):
    maps = tl.attention.capture(model, input_ids=ids)
    assert model.config._attn_implementation == "eager"
    assert len(maps) == 2


def _lstm():
    torch.manual_seed(0)
    return nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True, dropout=0.3).train()


def _cells():
    torch.manual_seed(0)

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(4, 5)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            h = None
            for t in range(x.shape[1]):
                h = self.cell(self.drop(x[:, t]), h)
            return h

    return Loop().train()


def _maps():
    torch.manual_seed(0)
    return [torch.rand(2, 2, 4, 4).softmax(-1) for _ in range(2)]


CASES = [
    Case("capture-attention-mha", _capture, make=_encoder, inputs=_tokens),
    Case("capture-attention-hf-eager", _hf_capture, make=_hf_bert, inputs=lambda: torch.randint(0, 50, (2, 6))),
    Case("capture-attention-softmax", lambda m, x: tl.attention.capture(m, x, softmax=True, within="enc.layers.0"),
         make=_encoder, inputs=_tokens),
    Case("relevance", lambda m, x: tl.attention.relevance(m, x), make=_encoder, inputs=_tokens),
    Case("rollout", lambda m, x: tl.attention.rollout(x), make=_encoder, inputs=_maps, arm=None),
    Case("flow", lambda m, x: tl.attention.flow(x), make=_encoder, inputs=_maps, arm=None),
    # trace never runs the module (it re-computes from the weights), so a tripwire cannot fire
    Case("trace-recurrent", lambda m, x: tl.recurrent.trace(m, x), make=_lstm, inputs=lambda: torch.randn(2, 5, 4),
         arm=None),
    Case("trace_cells", lambda m, x: tl.recurrent.trace_cells(m, x), make=_cells, inputs=lambda: torch.randn(2, 3, 4)),
]


class _DictEncoder(_Encoder):
    """_Encoder called with ``tokens=`` returning ``{"hidden", "logits"}``."""

    def forward(self, tokens):
        h = self.enc(tokens)
        return {"hidden": h, "logits": self.fc(h[:, 0])}


def _dict_encoder():
    torch.manual_seed(0)
    return _DictEncoder().train()


CASES += [
    Case("relevance-keyword-inputs-dict-output", lambda m, x: tl.attention.relevance(m, tokens=x, output="logits"),
         make=_dict_encoder, inputs=_tokens),
    Case("capture-attention-keyword-inputs", lambda m, x: tl.attention.capture(m, tokens=x),
         make=_dict_encoder, inputs=_tokens),
]
