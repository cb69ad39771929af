"""Invariant cases on a real transformers model in train mode (issue 21, finding 8): attention capture and
relevance leave it in train mode *through its own train()*. transformers' ``PreTrainedModel.train`` keeps
side state (``kernels_mode``, when the ``kernels`` package is in use); the model here keeps such state in
a buffer its ``train()`` writes, so restoring ``training`` by assignment alone leaves it at inference."""

import torch

import torchloupe as tl
from tests.helpers import Case


def _kernels_bert():
    transformers = __import__("transformers")

    class KernelsBert(transformers.BertForSequenceClassification):
        """``train(mode)`` also records the mode, as PreTrainedModel.train does with kernels_mode."""

        def train(self, mode: bool = True):
            result = super().train(mode)
            if "mode_record" in self._buffers:
                self.mode_record.fill_(int(mode))
            return result

    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = KernelsBert(cfg)
    model.config._attn_implementation = "eager"
    model.register_buffer("mode_record", torch.tensor(0))
    model.train()
    assert int(model.mode_record) == 1
    return model


def _ids():
    return torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))


def _capture(model, ids):
    maps = tl.attention.capture(model, input_ids=ids)
    assert len(maps) == 2 and model.training and int(model.mode_record) == 1


def _relevance(model, ids):
    r = tl.attention.relevance(model, input_ids=ids, output="logits", target=1)
    assert r.shape == (2, 6, 6) and model.training and int(model.mode_record) == 1


CASES = [
    Case("attention.capture-hf-train", _capture, make=_kernels_bert, inputs=_ids),
    Case("attention.relevance-hf-train", _relevance, make=_kernels_bert, inputs=_ids),
]
