"""The conformance zoo: every foreign architecture of ``tests/zoo/models.py`` x every public entry
point that applies to its input kind, and the CLI subcommands on a representative subset.

Each cell is either **ok** (a result checked for sense: finite, right shape, non-constant where the
truth is, equal to a float64 reference or an independent plain-PyTorch computation where one
exists) or listed in :data:`EXPECTED`, the ONE table of cells that raise: a clear torchloupe error
(``torchloupe.errors``, with the reason), or a ``KNOWN BUG (issue N.M)`` whose failure must be
exactly the one described, so that the entry is flipped when the fix lands (a listed cell that
passes fails the test). Every cell checks that the model state is identical after the call, also
when it raises, and that its inputs are not modified.

``ZOO_RESULTS=path.json pytest tests/test_zoo.py`` writes each cell's outcome; ``python -m
tests.zoo.render_table path.json docs/compatibility.md`` renders the table.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import torchloupe as tl
from torchloupe import errors as E
from tests.helpers import assert_same_state, model_state, peer, tree_clone, tree_equal
from tests.reference import ref_cam
from tests.zoo.models import ZOO, ZooModel, by_name


class CheckFailed(AssertionError):
    """A result that came back but makes no sense (wrong shape, empty, constant, off the reference)."""


def need(cond: Any, msg: str) -> None:
    if not bool(cond):
        raise CheckFailed(msg)


# --- the table of expected failures ----------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    cls: type[BaseException] | tuple[type[BaseException], ...]
    match: str  # regex searched in str(exception)
    reason: str

    @property
    def bug(self) -> bool:
        return self.reason.startswith("KNOWN BUG")


def clear(cls: type[E.TorchLoupeError], match: str, reason: str) -> Expect:
    return Expect(cls, match, reason)


def bug(issue: str, cls: type[BaseException], match: str, reason: str) -> Expect:
    return Expect(cls, match, f"KNOWN BUG (issue {issue}): {reason}")


_CAMS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam")
_GRAD_CAMS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")
_TEXT = ("hf_bert", "hf_gpt2", "hf_clip_text", "hf_t5_encoder")
_NO_GAP_LINEAR = ("resnet18", "vgg11_bn", "alexnet", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
                  "efficientnet_b0", "shufflenet_v2", "squeezenet", "mnasnet", "inception_v3", "two_input")
_NO_SCORES = {  # models whose output holds no (N, classes) scores: every class-target entry point
    "lraspp": "a segmentation output {'out': (N, classes, H, W)}",
    "fasterrcnn": "a detection output: a list of dicts of boxes",
    "tuple_output": "a tuple (logits, features)",
    "hf_clip_vision": "BaseModelOutputWithPooling (embeddings, no logits)",
}
_ASK_TARGET = "pass output=KEY/INDEX or target=callable(output)"

#: THE table. cell ("model/entry") -> what it raises and why. A clear error names a torchloupe.errors
#: class; a known bug names the failure seen today (a raw exception, or CheckFailed for a senseless
#: result) and the issue fixing it; when the fix lands the cell passes and its entry must go.
EXPECTED: dict[str, Expect] = {
    # -- clear refusals -----------------------------------------------------------------------
    **{f"{m}/cam.cam": clear(E.UnsupportedModelError, "global average pooling", "CAM needs GAP + nn.Linear on the "
                             "default layer's channels; at 32 px the default layer is not the last stage")
       for m in _NO_GAP_LINEAR},
    **{f"{m}/{e}": clear(E.TargetError, "pass output=", f"{why}: {_ASK_TARGET}")
       for m, why in _NO_SCORES.items()
       for e in [*(f"cam.{k}" for k in _CAMS), "saliency.gradient", "saliency.guided_backprop", "evaluate.deletion"]},
    **{f"{m}/cam.{k}": clear(E.UnsupportedModelError, "whose output is a spatial map",
                             "no layer with positions found by default; pass layer=")
       for m in ("lstm", "gru", "mlp") for k in (*_CAMS, "compare_all")},
    **{f"{m}/cam.{k}": clear(E.TargetError, "pass output=", "a base encoder returns hidden states, no class "
                             f"scores: {_ASK_TARGET}")
       for m in ("hf_clip_text", "hf_t5_encoder") for k in (*_CAMS, "compare_all")},
    **{f"{m}/cam.compare_all": clear(E.TargetError, "pass output=", f"{why}: {_ASK_TARGET}")
       for m, why in _NO_SCORES.items()},
    **{f"{m}/cam.scorecam": clear(E.UnsupportedModelError, "cannot be masked", "Score-CAM masks the input: token "
                                  "ids cannot be masked") for m in ("hf_bert", "hf_gpt2")},
    **{f"{m}/synthesis.maximize": clear(E.UnsupportedModelError, "reads token ids", "maximize synthesizes a "
                                        "floating input; ids cannot be optimized by gradient") for m in _TEXT},
    "two_input/synthesis.maximize": clear(E.UnsupportedModelError, "takes 2 inputs", "forward(rgb, depth): "
                                          "maximize needs inputs= and wrt= to know which input to optimize"),
    "lraspp/cli.cam": clear(E.UsageError, "pass output=KEY or INDEX", "a segmentation output: loupe cam "
                            "asks for --output or a target, in one line"),
    "hf_t5_encoder/synthesis.exemplars": clear(E.TorchLoupeError, "returns tuple", "a T5 block returns a tuple; "
                                               "exemplars take a tensor-output layer"),
    **{f"{m}/saliency.{k}": clear(E.UnsupportedModelError, "token ids", "token ids have no gradient; the message "
                                  "names the embedding layer to explain instead")
       for m in _TEXT for k in ("gradient", "guided_backprop")},
    **{f"{m}/evaluate.deletion": clear(E.InputError, "needs image inputs", "deletion perturbs (N, C, H, W) images only")
       for m in ("conv1d", "conv3d")},
    **{f"{m}/synthesis.{k}": clear(E.TorchLoupeError, "returns tuple", "an RNN returns (output, state); "
                                   "exemplars and objectives take a tensor-output layer")
       for m in ("lstm", "gru") for k in ("exemplars", "maximize")},
    **{f"{m}/structure.export_onnx": clear(E.UnsupportedModelError, "adaptive_avg_pool2d", "the ONNX exporter cannot "
                                           "export AdaptiveAvgPool2d(7) of a 1 x 1 map (32 px input)")
       for m in ("vgg11_bn", "alexnet")},
    # -- known bugs (none is left once a fix lands: a cell that passes fails the test until its entry goes) --
}


# --- running a model the plain way (references) ----------------------------------------------


def call(model: nn.Module, x: Any) -> Any:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, tuple):
        return model(*x)
    return model(x)


def logits_of(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    if getattr(out, "logits", None) is not None:
        return out.logits
    if isinstance(out, tuple) and isinstance(out[0], Tensor) and out[0].dim() == 2:
        return out[0]
    return None


def first_tensor(x: Any) -> Tensor:
    if isinstance(x, dict):
        return next(iter(x.values()))
    if isinstance(x, tuple):
        return x[0]
    return x


def ref_layer_output(model: nn.Module, x: Any, layer: str, grad_of: list[int] | None = None):
    """The layer's output (first tensor of a tuple) from an eval deep copy with a plain hook; with
    ``grad_of`` (one class per sample) also its gradient of the summed target logits."""
    m = copy.deepcopy(model).eval()
    kept = {}

    def hook(module, args, output):
        kept["a"] = output[0] if isinstance(output, tuple) else output
        if isinstance(output, Tensor):
            return output.clone()  # the model may rewrite it in place next (densenet)

    h = dict(m.named_modules())[layer].register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad_of is not None):
            out = call(m, x)
    finally:
        h.remove()
    a = kept["a"]
    if grad_of is None:
        return a.detach(), None, out
    logits = logits_of(out)
    score = sum(logits[i, int(t)] for i, t in enumerate(grad_of))
    (g,) = torch.autograd.grad(score, [a])
    return a.detach(), g.detach(), out


def head(x: Any, n: int) -> Any:
    if isinstance(x, dict):
        return {k: v[:n] for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(v[:n] for v in x)
    return x[:n]


def positions(z: ZooModel, x: Any) -> tuple[int, ...]:
    """Where an input-space map lives for this input kind (the truth, not torchloupe's guess)."""
    t = first_tensor(x)
    if z.kind in ("image", "pair", "signal", "volume"):
        return tuple(t.shape[2:])
    if z.kind in ("tokens", "sequence"):
        return (t.shape[1],)
    return tuple(t.shape[1:])


def channel_axis(z: ZooModel, a: Tensor) -> int:
    """The true channel axis of ``z.layer``'s output: 1 for (B, C, *S), last for tokens / channels-last."""
    return 1 if z.extra.get("layout", "cfirst" if z.kind in ("image", "pair", "signal", "volume") else "clast") == "cfirst" else a.dim() - 1


def nonconstant(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all()) and float(t.max() - t.min()) > 0


# --- entry points -----------------------------------------------------------------------------

_CAM_CACHE: dict[tuple[str, str], Any] = {}


def e_trace(z, model, x):
    g = tl.trace(model, x) if not isinstance(x, (dict, tuple)) else (
        tl.trace(model, **x) if isinstance(x, dict) else tl.trace(model, *x))
    mods = {n.name for n in g.nodes if n.kind == "module"}
    need(len(g.edges) >= len(g.nodes) - 1, f"{len(g.nodes)} nodes but only {len(g.edges)} edges")
    need(any(n == z.layer or n.startswith(z.layer + ".") for n in mods), f"{z.layer} not among the traced modules")
    ins = [n for n in g.nodes if n.kind == "input"]
    need(len(ins) == (len(x) if isinstance(x, (dict, tuple)) else 1), f"{len(ins)} input nodes")
    if z.name == "resnet18":  # 8 BasicBlocks: 8 residual adds, 20 convolutions
        need(sum(n.type == "Conv2d" for n in g.nodes if n.kind == "module") == 20, "resnet18: not 20 Conv2d")
    if z.name in _PEER_CNNS:  # torchview's graph of the same forward: as many nodes and edges
        tv = peer("torchview").draw_graph(copy.deepcopy(model).eval(), input_data=x, depth=100, save_graph=False)
        nodes = sum(1 for ln in tv.visual_graph.body if "->" not in ln and "label" in ln)
        need((len(g.nodes), len(g.edges)) == (nodes, len(tv.edge_list)),
             f"{len(g.nodes)} nodes / {len(g.edges)} edges; torchview: {nodes} / {len(tv.edge_list)}")


def e_activations(z, model, x):
    got = tl.activations(model, x, [z.layer])
    need(z.layer in got, f"{z.layer} missing from {list(got)}")
    want, _, _ = ref_layer_output(model, x, z.layer)
    a = got[z.layer]
    a = a[0] if isinstance(a, tuple) else a
    need(a.shape == want.shape, f"shape {tuple(a.shape)} != {tuple(want.shape)}")
    need(torch.allclose(a, want, atol=1e-5, rtol=1e-4), "activations differ from a plain forward hook")


def e_features(z, model, x):
    fm = tl.features.feature_maps(model, x, z.layer)
    want, _, _ = ref_layer_output(model, x, z.layer)
    c = want.shape[channel_axis(z, want)]
    need(fm.maps.shape[0] == want.shape[0], "batch size")
    need(fm.maps.shape[1] == c, f"{fm.maps.shape[1]} channels (layout {fm.kind}); the layer has {c} "
                                f"(output {tuple(want.shape)})")
    need(torch.isfinite(fm.maps).all(), "non-finite maps")
    if fm.kind.endswith("+cls") and z.kind == "image":  # the maps are the patch grid: the CLS token is not drawn
        want = want[:, 1:]
    mean = want.movedim(channel_axis(z, want), 1).flatten(2).mean(2) if want.dim() > 2 else want  # (B, F): itself
    need(torch.allclose(fm.stats["mean"], mean, atol=1e-5, rtol=1e-4), "per-channel means differ from the layer output's")


def _cam(method: str):
    def run(z, model, x):
        xx = head(x, 1) if method == "scorecam" else x  # Score-CAM at batch 1: half the masked forwards
        if method == "scorecam" and _SCORECAM_CAP:  # issue 18.6's cap, once it lands: the strongest 32 channels
            res = tl.cam.ScoreCAM(model, max_masks=32)(xx)
        else:
            res = tl.cam.compare(model, xx, [method])[method]
        _CAM_CACHE[(z.name, method)] = (xx, res)
        B = first_tensor(xx).shape[0]
        size = positions(z, xx)
        need(tuple(res.maps.shape) == (B, *size), f"maps {tuple(res.maps.shape)}, expected {(B, *size)}")
        need(torch.isfinite(res.maps).all() and res.maps.min() >= 0 and res.maps.max() <= 1, "maps not finite in [0, 1]")
        need(torch.isfinite(res.raw).all(), "raw map not finite")
        ref = _cam_reference(z, model, xx, res, method)
        if method == "gradcam" and z.name in _PEER_CNNS:
            r = ref_cam.corr(res.raw.numpy(), _peer_gradcam(model, xx, res.layer, res.targets))
            need(r >= 0.9999, f"raw map off pytorch-grad-cam's at {res.layer}: r = {r:.5f}")
        if ref is not None:
            if ref.max() > 0 or res.raw.max() > 0:
                r = ref_cam.corr(res.raw.numpy(), ref)
                need(r >= 0.999, f"raw map off the float64 reference at {res.layer}: r = {r:.4f}")
        elif math.prod(res.raw.shape[1:]) > 1:
            need(nonconstant(res.raw), f"constant map ({float(res.raw.max()):.3g} everywhere) at {res.layer}")

    return run


_SCORECAM_CAP = "max_masks" in inspect.signature(tl.cam.ScoreCAM.__init__).parameters

#: CNNs also checked against peers: tl.trace vs torchview, Grad-CAM vs pytorch-grad-cam.
_PEER_CNNS = ("resnet18", "vgg11_bn", "mobilenet_v2", "squeezenet")


def _peer_gradcam(model, x, layer, targets) -> np.ndarray:
    """pytorch-grad-cam's Grad-CAM at ``layer`` before its resize (on a deep copy: it changes the model)."""
    peer("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = copy.deepcopy(model).eval()
    lay = dict(m.named_modules())[layer]
    with GradCAM(model=m, target_layers=[lay]) as cam:
        cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        w = cam.get_cam_weights(x, [lay], None, acts, grads)
    return np.maximum((w[:, :, None, None] * acts).sum(1), 0)


_FORMULAS = {"gradcam": ref_cam.gradcam, "gradcam++": ref_cam.gradcam_pp, "xgradcam": ref_cam.xgradcam,
             "layercam": ref_cam.layercam, "hirescam": ref_cam.hirescam, "eigencam": None, "cam": None}


_REF_CACHE: dict[tuple, tuple] = {}


def _as_4d(t: Tensor) -> np.ndarray:
    """(N, C, L) -> (N, C, 1, L); (N, C, D, H, W) -> (N, C, D, H*W): the formulas are per position."""
    return (t.unsqueeze(2) if t.dim() == 3 else t.flatten(3) if t.dim() == 5 else t).numpy()


def _cam_reference(z, model, x, res, method) -> np.ndarray | None:
    """The paper's formula in float64 where the layer's output is (N, C, *S) with S of rank 1-3
    (laid out as (N, C, h, w): every formula is per position or sums over all positions) and the
    model's scores are a tensor (or .logits); None where no reference applies."""
    if z.kind not in ("image", "signal", "volume") or "+" in res.layer:
        return None
    key = (z.name, res.layer, tuple(res.targets.tolist()), first_tensor(x).shape[0])
    if key not in _REF_CACHE:
        if len(_REF_CACHE) > 8:
            _REF_CACHE.clear()
        m64 = copy.deepcopy(model).double()
        a, g, out = ref_layer_output(m64, x.double(), res.layer, grad_of=res.targets.tolist())
        _REF_CACHE[key] = (a, g, out, m64)
    a, g, out, m64 = _REF_CACHE[key]
    if a.dim() != 2 + len(positions(z, x)) or logits_of(out) is None:
        return None  # a token layer (N, T, C) of an image model: no channel-first reference
    A, G = _as_4d(a), _as_4d(g)
    shape = tuple(res.raw.shape)
    if method == "eigencam":
        want = ref_cam.eigencam(A)
    elif method == "cam":
        fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        want = ref_cam.cam(A, fc.weight.detach().double().numpy(), res.targets.tolist())
    elif method == "scorecam":
        # one float64 forward per channel: only where that is cheap, and where the cap of 32 masks keeps
        # every channel (the capped result is then the exact one)
        if A.shape[1] > (32 if _SCORECAM_CAP else 64) or a.dim() != 4 or not isinstance(out, Tensor):
            return None
        want = ref_cam.scorecam(m64, x, A, res.targets.tolist())
    else:
        want = _FORMULAS[method](A, G)
    return want.reshape(shape)


def e_compare_all(z, model, x):
    kw = {"options": {"scorecam": {"max_masks": 32}}} if _SCORECAM_CAP else {}  # as the Score-CAM cell runs
    got = tl.cam.compare(model, head(x, 1), "all", **kw)  # batch 1: Score-CAM's masked forwards stay few
    skipped = dict(getattr(got, "skipped", {}))
    need(list(got) == [k for k in tl.cam.METHODS if k not in skipped], f"methods {list(got)}, skipped {list(skipped)}")
    need(all(isinstance(v, str) and v for v in skipped.values()), f"a skipped method without its reason: {skipped}")
    need("gradcam" in got, f"Grad-CAM itself was skipped: {skipped.get('gradcam')}")
    for key, res in got.items():
        cached = _CAM_CACHE.get((z.name, key))
        if cached is not None:
            # batch 1 against batch 2: float kernels may round differently (seen: 1.7e-5 on a ViT)
            need(torch.allclose(res.maps, cached[1].maps[:1], atol=1e-4), f"compare('all')[{key!r}] != {key} alone")


def _needs_grad_input(z) -> bool:
    return z.kind != "tokens"


def _ref_input_gradient(model, x, target):
    m = copy.deepcopy(model).eval()
    xs = tree_clone(x)
    t = first_tensor(xs).requires_grad_(True)
    logits = logits_of(call(m, xs))
    score = logits[torch.arange(len(target)), target].sum()
    (g,) = torch.autograd.grad(score, [t])
    return g


def e_gradient(z, model, x):
    g = tl.saliency.gradient(model, x)
    t = first_tensor(x)
    need(g.shape == t.shape, f"shape {tuple(g.shape)} != input {tuple(t.shape)}")
    need(torch.isfinite(g).all() and g.abs().sum() > 0, "zero or non-finite gradient")
    with torch.no_grad():
        logits = logits_of(call(copy.deepcopy(model).eval(), x))
    if logits is not None:
        want = _ref_input_gradient(model, x, logits.argmax(1))
        need(torch.allclose(g, want, atol=1e-6, rtol=1e-3), "gradient differs from torch.autograd.grad of the predicted logit")


def e_guided(z, model, x):
    g = tl.saliency.guided_backprop(model, x)
    t = first_tensor(x)
    need(g.shape == t.shape, f"shape {tuple(g.shape)} != input {tuple(t.shape)}")
    need(torch.isfinite(g).all() and g.abs().sum() > 0, "zero or non-finite guided gradient")


def e_deletion(z, model, x):
    size = positions(z, x)
    B = first_tensor(x).shape[0]
    maps = torch.rand(B, *size, generator=torch.Generator().manual_seed(3))
    auc = tl.evaluate.deletion(model, x, maps, steps=4)
    need(auc.shape == (B,), f"AUC shape {tuple(auc.shape)}")
    need(torch.isfinite(auc).all() and (auc >= 0).all() and (auc <= 1).all(), f"AUC {auc.tolist()} not in [0, 1]")


def _attention_modules(model) -> int:
    return sum(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def e_attention(z, model, x):
    maps = tl.attention.capture(model, **x) if isinstance(x, dict) else (
        tl.attention.capture(model, *x) if isinstance(x, tuple) else tl.attention.capture(model, x))
    if not z.attention:
        need(maps == {}, f"attention found in a model without any: {list(maps)}")
        return
    need(maps, "no attention captured ({})")
    for name, a in maps.items():
        b = first_tensor(x).shape[0]  # windowed attention (Swin, MaxViT) folds its windows into the batch
        need(a.dim() == 4 and a.shape[0] % b == 0, f"{name}: shape {tuple(a.shape)}")
        need(torch.isfinite(a).all() and torch.allclose(a.sum(-1), torch.ones(()), atol=1e-4), f"{name}: rows do not sum to 1")
    if z.family == "transformers":
        m = copy.deepcopy(model).eval()
        if hasattr(m, "set_attn_implementation"):
            m.set_attn_implementation("eager")
        with torch.no_grad():
            out = m(**x, output_attentions=True) if isinstance(x, dict) else m(x, output_attentions=True)
        want = list(out.attentions)
        got = list(maps.values())
        need(len(got) == len(want), f"{len(got)} maps, the model's output_attentions has {len(want)}")
        for a, w in zip(got, want):
            need(a.shape == w.shape and torch.allclose(a, w, atol=1e-5), "maps differ from the model's output_attentions")
    n = _attention_modules(model)
    if n:
        need(len(maps) == n, f"{len(maps)} maps for {n} nn.MultiheadAttention modules")


def e_recurrent(z, model, x):
    rnn = tl.find_layer(model, z.recurrent)
    tr = tl.recurrent.trace(rnn, x)
    with torch.no_grad():
        want, _ = copy.deepcopy(rnn).eval()(x)
    got = torch.cat([tr.h[-1, d] for d in range(tr.h.shape[1])], -1)  # (B, T, D*H) batch_first
    need(got.shape == want.shape, f"h {tuple(got.shape)} vs output {tuple(want.shape)}")
    need(torch.allclose(got, want, atol=1e-5), "stepwise states differ from the module's output")


def _dataset(z):
    x = z.inputs(batch=4, seed=5)
    if isinstance(x, dict):  # a map-style dataset of per-sample items (a plain list would be a list of batches)
        return _Items([{k: v[i] for k, v in x.items()} for i in range(4)]), x
    if isinstance(x, tuple):
        return _Items([(tuple(t[i] for t in x),) for i in range(4)]), x
    return torch.utils.data.TensorDataset(x), x


class _Items(torch.utils.data.Dataset):
    """Per-sample items as a map-style dataset: exemplars batches them with a DataLoader."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def e_exemplars(z, model, x):
    data, full = _dataset(z)
    ex = tl.synthesis.exemplars(model, data, z.layer, k=2, batch_size=2)
    want, _, _ = ref_layer_output(model, full, z.layer)
    ax = channel_axis(z, want)
    red = want.movedim(ax, 1).flatten(2).mean(2) if want.dim() > 2 else want  # (4, C)
    need(ex.values.shape == (red.shape[1], 2), f"values {tuple(ex.values.shape)}: expected ({red.shape[1]}, 2) "
                                               f"for output {tuple(want.shape)}")
    top = red.T.topk(2, dim=1).values
    need(torch.allclose(ex.values, top, atol=1e-5, rtol=1e-4), "top-k values differ from the layer's per-channel means")


def e_maximize(z, model, x):
    image = z.kind in ("image", "pair")
    transforms = ("standard-resized" if z.extra.get("fixed_size") else "standard") if image else None
    res = tl.synthesis.maximize(model, f"{z.layer}:0", steps=4, input_shape=z.shape, seed=0,
                                transforms=transforms, param="fft" if image else "pixel", baseline_samples=4)
    need(res.images.shape == (1, *z.shape), f"images {tuple(res.images.shape)}")
    need(torch.isfinite(res.images).all() and torch.isfinite(res.objective_curve).all(), "non-finite result")
    curve = res.objective_curve[:, 0]
    need(nonconstant(res.images), "constant image")
    # a dead unit (ReLU zero on every input) may stay at 0 in 4 steps; it must never fall
    need(curve[-1] >= curve[0] and (curve[-1] > curve[0] or curve.abs().max() == 0),
         f"objective did not rise: {curve.tolist()}")


def e_fusion_find(z, model, x):
    pts = tl.fusion.find(model, *x) if isinstance(x, tuple) else tl.fusion.find(model, x)
    if z.name == "resnet18":  # its 8 adds join a block's input with a function of it: residuals, not fusion
        need(len(pts) == 0, f"{len(pts)} fusion points; resnet18 has none (8 residual adds)")
        res = tl.fusion.residuals(model, x)
        need(len(res) == 8 and all(p.join == "residual" for p in res), f"{len(res)} residuals; resnet18 has 8")
    if z.kind == "pair":
        cats = [p for p in pts if "cat" in str(p)]
        need(len(cats) == 1, f"fusion points {pts}: expected the one torch.cat of both branches")


def e_fusion_contrib(z, model, x):
    fr = tl.fusion.contributions(model, x, branches={"rgb": "rgb", "depth": "depth"})
    need(set(fr.values) == {"rgb", "depth"}, f"branches {list(fr.values)}")
    total = sum(fr.values.values())
    need(torch.allclose(total, fr.scores - fr.baseline_scores, atol=1e-4), "values do not add up to score - baseline")
    need(torch.allclose(sum(fr.shares.values()), torch.ones(2), atol=1e-5), "shares do not sum to 1")


def e_kernels(z, model, x):
    conv = tl.find_layer(model, z.conv)
    k = tl.weights.kernels(conv)
    need(torch.equal(k, conv.weight.detach()), "kernels differ from the convolution's weight")


def e_templates(z, model, x):
    fc = tl.find_layer(model, "1")
    t = tl.weights.class_templates(fc, (1, 28, 28))
    need(torch.equal(t, fc.weight.detach().reshape(-1, 1, 28, 28)), "templates differ from the weight rows reshaped")


def e_onnx(z, model, x, tmp=None):
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        args = (x,) if not isinstance(x, (tuple, dict)) else (x if isinstance(x, tuple) else ())
        kw = x if isinstance(x, dict) else {}
        tl.structure.export_onnx(model, *args, path=path, **kw)
        g = onnx.load(str(path))
        onnx.checker.check_model(g)
        need(len(g.graph.node) > 0, "empty ONNX graph")


@dataclass(frozen=True)
class Entry:
    name: str
    run: Callable[[ZooModel, nn.Module, Any], None]
    applies: Callable[[ZooModel], bool]
    slow: bool = False


_FLOAT = ("image", "pair", "signal", "volume", "sequence", "vector")
_SPATIAL = ("image", "pair", "signal", "volume")

ENTRIES: list[Entry] = [
    Entry("trace", e_trace, lambda z: True),
    Entry("activations", e_activations, lambda z: True),
    Entry("features", e_features, lambda z: True),
    *[Entry(f"cam.{k}", _cam(k), lambda z: True, slow=(k == "scorecam")) for k in tl.cam.METHODS],
    Entry("cam.compare_all", e_compare_all, lambda z: True, slow=True),
    Entry("saliency.gradient", e_gradient, lambda z: True),
    Entry("saliency.guided_backprop", e_guided, lambda z: True),
    Entry("evaluate.deletion", e_deletion, lambda z: z.kind in _SPATIAL),
    Entry("attention.capture", e_attention, lambda z: True),
    Entry("recurrent.trace", e_recurrent, lambda z: z.recurrent is not None),
    Entry("synthesis.exemplars", e_exemplars, lambda z: True),
    Entry("synthesis.maximize", e_maximize, lambda z: True),
    Entry("fusion.find", e_fusion_find, lambda z: z.kind == "pair" or z.name == "resnet18"),
    Entry("fusion.contributions", e_fusion_contrib, lambda z: z.kind == "pair"),
    Entry("weights.kernels", e_kernels, lambda z: z.conv is not None),
    Entry("weights.class_templates", e_templates, lambda z: z.name == "mlp"),
    Entry("structure.export_onnx", e_onnx, lambda z: True, slow=True),
]

CELLS = [(z, e) for z in ZOO for e in ENTRIES if e.applies(z)]

# --- running cells -----------------------------------------------------------------------------

_MODELS: dict[str, nn.Module] = {}
RESULTS: dict[str, dict] = {}


def _model(z: ZooModel) -> nn.Module:
    if z.name not in _MODELS:
        _MODELS.clear()  # one model alive at a time: cells are ordered model by model
        _MODELS[z.name] = z.build()  # left in train mode, as a user's freshly built model is
    return _MODELS[z.name]


@pytest.fixture(scope="module", autouse=True)
def _write_results():
    yield
    path = os.environ.get("ZOO_RESULTS")
    if path:
        Path(path).write_text(json.dumps(RESULTS, indent=1, sort_keys=True))


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return (s[0] if s else "")[:300]


def judge(cell: str, run: Callable[[], None], model: nn.Module | None, inputs: Any, slow: bool) -> None:
    """Run one cell; record and assert: ok, or exactly the EXPECTED failure; state always unchanged."""
    before = model_state(model) if model is not None else None
    inputs_copy = tree_clone(inputs)
    exc: BaseException | None = None
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run()
    except Exception as e:  # noqa: BLE001 - every exception is judged below
        exc = e
    seconds = round(time.perf_counter() - t0, 3)
    rec = {"seconds": seconds, "slow": slow}
    RESULTS[cell] = rec
    problems = []
    if model is not None:
        try:
            assert_same_state(before, model_state(model))
        except AssertionError as e:
            problems.append(f"model state changed: {e}")
    if not tree_equal(inputs, inputs_copy):
        problems.append("inputs modified")
    expect = EXPECTED.get(cell)
    if exc is not None:
        rec["error"] = f"{type(exc).__name__}: {_first_line(exc)}"
    if expect is None:
        if exc is not None:
            problems.append(f"neither ok nor expected: {rec['error']}")
    elif exc is None:
        problems.append(f"passes now: remove or flip EXPECTED[{cell!r}] ({expect.reason})")
    elif not (isinstance(exc, expect.cls) and re.search(expect.match, str(exc))):
        problems.append(f"expected {expect.cls} matching {expect.match!r}, got {rec['error']}")
    elif not expect.bug and not isinstance(exc, E.TorchLoupeError):
        problems.append(f"a clear error must be a torchloupe error, got {type(exc).__name__}")
    if problems:
        rec["status"] = "fails"
        rec["detail"] = "; ".join(problems)
        raise AssertionError(f"{cell}: {rec['detail']}") from exc
    if expect is None:
        rec["status"] = "ok"
    else:
        rec["status"] = "bug" if expect.bug else "error"
        rec["reason"] = expect.reason


@pytest.mark.parametrize("z,entry", [pytest.param(z, e, id=f"{z.name}/{e.name}",
                                                  marks=(pytest.mark.slow,) if (e.slow or z.slow) else ())
                                     for z, e in CELLS])
def test_cell(z: ZooModel, entry: Entry):
    model = _model(z)
    x = z.inputs()
    judge(f"{z.name}/{entry.name}", lambda: entry.run(z, model, x), model, x, entry.slow or z.slow)


def test_expected_table_names_real_cells():
    cells = {f"{z.name}/{e.name}" for z, e in CELLS} | {f"{m}/cli.{c}" for m, c in CLI_CELLS}
    unknown = set(EXPECTED) - cells
    assert not unknown, f"EXPECTED entries for cells that do not exist: {sorted(unknown)}"
    for cell, expect in EXPECTED.items():
        assert expect.bug or issubclass(expect.cls, E.TorchLoupeError), f"{cell}: a clear error must be a torchloupe error"
        assert expect.reason, cell


def test_zoo_size():
    assert len(ZOO) >= 30
    assert len({z.name for z in ZOO}) == len(ZOO)


# --- the CLI, in-process ------------------------------------------------------------------------

#: A representative subset: the image models of each family (and graph on every input kind).
CLI_MODELS = ["resnet18", "densenet121", "convnext", "swin", "vit", "hf_vit", "lraspp", "dict_output", "googlenet"]
CLI_GRAPH_ONLY = ["conv1d", "lstm", "transformer_encoder", "hf_bert", "two_input"]
CLI_COMMANDS = ["graph", "cam", "maximize", "exemplars", "report"]
CLI_CELLS = [(m, c) for m in CLI_MODELS for c in CLI_COMMANDS] + [(m, "graph") for m in CLI_GRAPH_ONLY]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("zoo_cli")
    rng = np.random.default_rng(0)
    (d / "data").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / "data" / f"img{i}.png")
    return d


def _cli_argv(z: ZooModel, cmd: str, d: Path, out: Path) -> list[str]:
    img = str(d / "data" / "img0.png")
    size = str(z.shape[-1])
    if cmd == "graph":
        shapes = [(2, *z.shape)] + ([(2, 1, *z.shape[1:])] if z.kind == "pair" else [])
        argv = ["graph", "--model", z.spec, "--out", str(out / "g.svg")]
        for s in shapes:
            argv += ["--input-shape", ",".join(map(str, s))]
        return argv + (["--input-dtype", "int64"] if z.kind == "tokens" else [])
    if cmd == "cam":
        return ["cam", "--model", z.spec, "--input", img, "--size", size, "--method", "gradcam", "--out", str(out)]
    if cmd == "maximize":
        return ["maximize", "--model", z.spec, f"{z.layer}:0", "--steps", "2", "--shape", *map(str, z.shape),
                "--out", str(out / "m.png")]
    if cmd == "exemplars":
        data = out / "data.pt"
        torch.save(torch.rand(4, *z.shape, generator=torch.Generator().manual_seed(0)), data)
        return ["exemplars", "--model", z.spec, "--data", str(data), "--layer", z.layer, "--k", "2",
                "--out", str(out / "e.png"), "--no-progress"]
    return ["report", "--model", z.spec, "--input", img, "--size", size, "--quick", "--no-progress",
            "--sections", "architecture", "cam", "--out", str(out)]


def _cli_run(argv: list[str], out: Path) -> None:
    import contextlib
    import io

    from torchloupe.app.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("loupe: error")]
    if rc == 2:
        need(len(lines) == 1, f"exit 2 without one error line: {err.getvalue()[-300:]!r}")
        raise CLIError(lines[0])
    need(rc == 0, f"exit status {rc}")
    need(any(p.is_file() and p.suffix != ".pt" for p in out.rglob("*")), "exit 0 but nothing written")


class CLIError(E.UsageError):
    """The CLI's one line and exit status 2: a clear error (stands for what main() printed)."""


@pytest.mark.slow
@pytest.mark.parametrize("name,cmd", [pytest.param(m, c, id=f"{m}/cli.{c}") for m, c in CLI_CELLS])
def test_cli_cell(name: str, cmd: str, cli_files, tmp_path):
    z = by_name(name)
    out = tmp_path / "out"
    out.mkdir()
    judge(f"{name}/cli.{cmd}", lambda: _cli_run(_cli_argv(z, cmd, cli_files, out), out), None, None, True)
