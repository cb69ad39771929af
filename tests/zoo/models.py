"""Foreign architectures at tiny sizes, built offline (no weights, no downloads).

Every factory is a module-level function of no arguments, so the CLI takes it as
``--model tests.zoo.models:NAME``. :data:`ZOO` describes each model for the zoo test:
its input kind and example inputs, the layer the layer-taking entry points use, and what
the model is known to contain (attention, a recurrent module, several inputs).

Sizes: torchvision families are their real builders (``weights=None``) at small inputs;
where the smallest real config is slow (VGG's and AlexNet's 100M-parameter heads, Swin,
MaxViT, ConvNeXt, ViT) the family's own class is built with a small config of the same
structure. Hugging Face models come from tiny configs through ``from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["ZooModel", "ZOO", "by_name"]

# -- torchvision classification families ----------------------------------------------------


def _tv():
    import torchvision.models as tvm

    return tvm


def resnet18():
    return _tv().resnet18(weights=None, num_classes=10)


def _narrow_head(model: nn.Module, in_features: int, hidden: int = 32, classes: int = 10) -> nn.Module:
    """VGG / AlexNet keep their 3-Linear classifier, narrowed (4096 -> ``hidden``): same structure."""
    model.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, classes),
    )
    return model


def vgg11_bn():
    tvm = _tv()
    from torchvision.models.vgg import VGG, cfgs, make_layers

    del tvm
    model = VGG(make_layers(cfgs["A"], batch_norm=True), num_classes=10, init_weights=False)
    return _narrow_head(model, 512 * 7 * 7)


def alexnet():
    from torchvision.models import AlexNet

    return _narrow_head(AlexNet(num_classes=10), 256 * 6 * 6)


def densenet121():
    return _tv().densenet121(weights=None, num_classes=10)


def mobilenet_v2():
    return _tv().mobilenet_v2(weights=None, num_classes=10, width_mult=0.25)


def mobilenet_v3_small():
    return _tv().mobilenet_v3_small(weights=None, num_classes=10)


def efficientnet_b0():
    return _tv().efficientnet_b0(weights=None, num_classes=10)


def regnet_y_400mf():
    return _tv().regnet_y_400mf(weights=None, num_classes=10)


def convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


def shufflenet_v2():
    return _tv().shufflenet_v2_x0_5(weights=None, num_classes=10)


def squeezenet():
    return _tv().squeezenet1_1(weights=None, num_classes=10)


def mnasnet():
    return _tv().mnasnet0_5(weights=None, num_classes=10)


def googlenet():
    # aux_logits stays on (the default without weights): the aux heads never run in eval mode
    return _tv().googlenet(weights=None, num_classes=10, init_weights=True)


def inception_v3():
    return _tv().inception_v3(weights=None, num_classes=10, init_weights=True)


def swin():
    from torchvision.models import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                           window_size=[2, 2], stochastic_depth_prob=0.0, num_classes=10)


def maxvit():
    from torchvision.models import MaxVit

    return MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[16, 32],
                  block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=10)


def vit():
    from torchvision.models import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                              mlp_dim=64, num_classes=10)
    # torchvision starts the head at zero (no gradient reaches anything); a trained head is not zero
    nn.init.normal_(model.heads.head.weight, std=0.5)
    return model


def lraspp():
    return _tv().segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)


def fasterrcnn():
    return _tv().detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64)


# -- Hugging Face, tiny configs --------------------------------------------------------------

_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def hf_bert():
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(vocab_size=100, max_position_embeddings=32, num_labels=3, **_TINY))


def hf_gpt2():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    cfg = GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=2, num_labels=3, pad_token_id=0,
                     bos_token_id=1, eos_token_id=2)
    return GPT2ForSequenceClassification(cfg)


def hf_vit():
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, num_labels=10, **_TINY))


def hf_clip_vision():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    return CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, **_TINY))


def hf_clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=100, max_position_embeddings=16, bos_token_id=1, eos_token_id=2,
                                        pad_token_id=0, **_TINY))


def hf_t5_encoder():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2))


# -- plain torch -------------------------------------------------------------------------------


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 12, batch_first=True)
        self.head = nn.Linear(12, 4)

    def forward(self, x):  # (B, T, 6)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class GRUClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # (B, T, 6)
        out, _ = self.gru(x)
        return self.head(out.mean(1))


class EncoderClassifier(nn.Module):
    """``nn.TransformerEncoder`` on ``(B, T, F)`` float sequences; eligible for the fused fast path."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # (B, T, 16)
        return self.head(self.encoder(x).mean(1))


class _Trunk(nn.Module):
    def __init__(self, ch: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(ch, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)


class DictOutput(_Trunk):
    def forward(self, x):
        f = self.features(x)
        return {"logits": self.fc(f.mean((2, 3))), "features": f}


class TupleOutput(_Trunk):
    def forward(self, x):
        f = self.features(x)
        return self.fc(f.mean((2, 3))), f


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(4, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 3)

    def forward(self, x):  # (B, 4, L)
        return self.fc(self.features(x).mean(2))


class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):  # (B, 1, D, H, W)
        return self.fc(self.features(x).mean((2, 3, 4)))


class TwoInput(nn.Module):
    """Two image branches fused by ``torch.cat``: ``forward(rgb, depth)``."""

    def __init__(self):
        super().__init__()
        self.rgb = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.depth = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 3)

    def forward(self, rgb, depth):
        f = torch.cat([self.rgb(rgb).mean((2, 3)), self.depth(depth).mean((2, 3))], 1)
        return self.fc(f)


def lstm():
    return LSTMClassifier()


def gru():
    return GRUClassifier()


def transformer_encoder():
    return EncoderClassifier()


def dict_output():
    return DictOutput()


def tuple_output():
    return TupleOutput()


def conv1d():
    return Conv1dNet()


def conv3d():
    return Conv3dNet()


def two_input():
    return TwoInput()


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


# -- the zoo -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZooModel:
    """One foreign architecture and what the zoo test needs to know about it.

    ``kind``: ``image`` (B, C, H, W) | ``tokens`` (dict of token ids) | ``sequence`` (B, T, F) |
    ``signal`` (B, C, L) | ``volume`` (B, C, D, H, W) | ``pair`` (two images) | ``vector`` (B, F).
    ``shape``: one input without the batch dim (the first input for ``pair``). ``layer``: a layer
    with positions for the layer-taking entry points (features, exemplars, maximize). ``attention``:
    the model computes attention (capture must find it). ``recurrent``: its RNN module.
    ``conv``: its first convolution (weights.kernels). ``slow``: seconds-scale cells.
    """

    name: str
    factory: Callable[[], nn.Module]
    kind: str
    shape: tuple[int, ...]
    layer: str
    family: str
    attention: bool = False
    recurrent: str | None = None
    conv: str | None = None
    slow: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        return f"tests.zoo.models:{self.factory.__name__}"

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return self.factory()

    def inputs(self, batch: int = 2, seed: int = 1) -> Any:
        g = torch.Generator().manual_seed(seed)
        if self.kind == "tokens":
            ids = torch.randint(1, 100, (batch, *self.shape), generator=g)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if self.kind == "pair":
            return (torch.rand(batch, *self.shape, generator=g), torch.rand(batch, 1, *self.shape[1:], generator=g))
        return torch.rand(batch, *self.shape, generator=g)


def _img(name, factory, layer, family, size=32, **kw) -> ZooModel:
    return ZooModel(name, factory, "image", (3, size, size), layer, family, **kw)


ZOO: list[ZooModel] = [
    _img("resnet18", resnet18, "layer3", "torchvision", conv="conv1"),
    _img("vgg11_bn", vgg11_bn, "features.14", "torchvision", conv="features.0"),
    _img("alexnet", alexnet, "features.6", "torchvision", size=64, conv="features.0"),
    _img("densenet121", densenet121, "features.denseblock3", "torchvision", conv="features.conv0"),
    _img("mobilenet_v2", mobilenet_v2, "features.10", "torchvision", conv="features.0.0"),
    _img("mobilenet_v3_small", mobilenet_v3_small, "features.6", "torchvision", conv="features.0.0"),
    _img("efficientnet_b0", efficientnet_b0, "features.5", "torchvision", conv="features.0.0"),
    _img("regnet_y_400mf", regnet_y_400mf, "trunk_output.block3", "torchvision", conv="stem.0"),
    _img("convnext", convnext, "features.1", "torchvision (small config)", conv="features.0.0"),
    _img("shufflenet_v2", shufflenet_v2, "stage3", "torchvision", conv="conv1.0"),
    _img("squeezenet", squeezenet, "features.9", "torchvision", conv="features.0"),
    _img("mnasnet", mnasnet, "layers.10", "torchvision", conv="layers.0"),
    _img("googlenet", googlenet, "inception4e", "torchvision", size=64, conv="conv1.conv"),
    _img("inception_v3", inception_v3, "Mixed_6e", "torchvision", size=75, conv="Conv2d_1a_3x3.conv", slow=True),
    _img("swin", swin, "features.1", "torchvision (small config)", attention=True, conv="features.0.0",
         extra={"layout": "clast"}),
    _img("maxvit", maxvit, "blocks.0", "torchvision (small config)", attention=True, conv="stem.0.0",
         extra={"fixed_size": True}),
    _img("vit", vit, "encoder.layers.encoder_layer_0", "torchvision (small config)", attention=True, conv="conv_proj",
         extra={"layout": "clast", "fixed_size": True}),
    _img("lraspp", lraspp, "backbone.6", "torchvision segmentation", conv="backbone.0.0"),
    _img("fasterrcnn", fasterrcnn, "backbone.body.6", "torchvision detection", conv="backbone.body.0.0", slow=True),
    ZooModel("hf_bert", hf_bert, "tokens", (8,), "bert.encoder.layer.0", "transformers", attention=True),
    ZooModel("hf_gpt2", hf_gpt2, "tokens", (8,), "transformer.h.0", "transformers", attention=True),
    _img("hf_vit", hf_vit, "vit.layers.0", "transformers", attention=True, conv="vit.embeddings.patch_embeddings.projection",
         extra={"layout": "clast", "fixed_size": True}),
    _img("hf_clip_vision", hf_clip_vision, "encoder.layers.0", "transformers", attention=True,
         conv="embeddings.patch_embedding", extra={"layout": "clast", "fixed_size": True}),
    ZooModel("hf_clip_text", hf_clip_text, "tokens", (8,), "encoder.layers.0", "transformers", attention=True),
    ZooModel("hf_t5_encoder", hf_t5_encoder, "tokens", (8,), "encoder.block.0", "transformers", attention=True),
    ZooModel("lstm", lstm, "sequence", (10, 6), "lstm", "torch", recurrent="lstm"),
    ZooModel("gru", gru, "sequence", (10, 6), "gru", "torch", recurrent="gru"),
    ZooModel("transformer_encoder", transformer_encoder, "sequence", (10, 16), "encoder.layers.0", "torch", attention=True),
    _img("dict_output", dict_output, "features.3", "torch", size=16, conv="features.0"),
    _img("tuple_output", tuple_output, "features.3", "torch", size=16, conv="features.0"),
    ZooModel("conv1d", conv1d, "signal", (4, 32), "features.2", "torch", conv="features.0"),
    ZooModel("conv3d", conv3d, "volume", (1, 8, 8, 8), "features.2", "torch", conv="features.0"),
    ZooModel("two_input", two_input, "pair", (3, 16, 16), "rgb.2", "torch", conv="rgb.0"),
    ZooModel("mlp", mlp, "vector", (784,), "3", "torch"),
]


def by_name(name: str) -> ZooModel:
    return next(z for z in ZOO if z.name == name)
