"""Inputs (what model(...) takes), Target (one rule set and output selection) and probe.session
(the one way a model runs), and the entry points that take them: several inputs, keyword inputs,
dict / tuple / dataclass outputs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe import probe
from torchloupe.errors import InputError, TargetError, UnsupportedModelError
from torchloupe.inputs import Inputs, check_inputs
from torchloupe.targets import Target, check_model_targets, select_output


# -- Inputs ------------------------------------------------------------------------------------


def test_inputs_read_every_form_model_takes():
    a, b = torch.arange(6.0).reshape(3, 2), torch.ones(3, 4)
    assert Inputs.of(a).args[0] is a and Inputs.of(a).single
    two = Inputs.of((a, b))
    assert two.batch_size == 3 and not two.single and [k for k, _ in two.tensors()] == ["0", "1"]
    kw = Inputs.of({"input_ids": torch.zeros(3, 5, dtype=torch.long), "mask": b})
    assert kw.batch_size == 3 and kw.dtype == torch.float32  # the data's dtype, not the ids'
    assert Inputs.of(kw) is kw
    for bad in (None, "x", ()):
        with pytest.raises(InputError):
            Inputs.of(bad)


def test_inputs_slice_only_batched_tensors_and_call_the_model():
    x, shared = torch.arange(12.0).reshape(4, 3), torch.tensor([1.0, 2.0, 3.0])  # shared: no batch dim
    inputs = Inputs((x,), {"scale": shared, "flag": True})
    part = inputs.slice(1, 3)
    assert torch.equal(part.args[0], x[1:3]) and part.kwargs["scale"] is shared and part.kwargs["flag"] is True
    assert [c.args[0][:, 0].tolist() for c in inputs.chunks(3)] == [[0.0, 3.0, 6.0], [9.0]]
    assert inputs.select([3, 0]).args[0][:, 0].tolist() == [9.0, 0.0]
    assert inputs.repeat(2).args[0][:, 0].tolist() == [0.0, 0.0, 3.0, 3.0, 6.0, 6.0, 9.0, 9.0]

    def f(x, scale, flag):
        return x * scale if flag else x

    assert torch.equal(inputs.call(f), x * shared)
    assert inputs.describe() == "(4, 3), scale=(3,)"


def test_inputs_wrt_and_explained():
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    two = Inputs.of((a, b))
    assert two.get(1) is b and two.get(-1) is b
    swapped = two.replace(1, a)
    assert swapped.get(1) is a and two.get(1) is b  # a new Inputs; the old one unchanged
    kw = Inputs.of({"pixel_values": a, "ids": torch.zeros(2, 3, dtype=torch.long)})
    assert kw.get("pixel_values") is a and kw.get(0) is a  # keywords only: 0 is the first one
    with pytest.raises(InputError, match=r"wrt=2 is not a positional input; the model gets 2"):
        two.get(2)
    with pytest.raises(InputError, match=r"wrt='x' is not a keyword input; the keywords are: pixel_values, ids"):
        kw.get("x")
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(UnsupportedModelError, match=r"input 'ids' holds torch.int64 values.*layer='0'"):
        kw.explained("ids", model)


def test_check_inputs_checks_every_tensor_and_wrt():
    model = nn.Linear(3, 2)
    assert check_inputs(model, torch.zeros(3)).args[0].shape == (1, 3)  # one tensor: the old checks
    with pytest.raises(InputError, match=r"input 1 of shape \(2, 3\) has 1 NaN"):
        check_inputs(model, (torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]])))
    with pytest.raises(InputError, match=r"wrt=5"):
        check_inputs(model, (torch.zeros(2, 3), torch.zeros(2, 3)), wrt=5)


# -- Target and output selection ---------------------------------------------------------------


@dataclass
class Out:
    logits: torch.Tensor
    hidden: torch.Tensor | None = None


def test_target_rules():
    out = torch.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    idx, fn = Target(None).resolve(out, 2)
    assert idx.tolist() == [1, 0] and fn(out).tolist() == [5.0, 7.0]
    idx, fn = Target(2).resolve(out, 2)
    assert idx.tolist() == [2, 2] and fn(out).tolist() == [2.0, 3.0]
    idx, fn = Target([0, 1]).resolve(out, 2)
    assert fn(out).tolist() == [1.0, 0.0]
    idx, fn = Target(torch.tensor([2, 0])).resolve(out, 2)
    assert fn(out).tolist() == [2.0, 7.0]
    idx, fn = Target(lambda o: o[:, 0] - o[:, 1]).resolve(out, 2)
    assert idx.tolist() == [-1, -1] and fn(out).tolist() == [-4.0, 7.0]
    with pytest.raises(TargetError, match=r"target class 3 is out of range; the model has 3 classes"):
        Target(3).resolve(out, 2)
    with pytest.raises(TargetError, match=r"must return \(2,\) scores"):
        Target(lambda o: o).resolve(out, 2)[1](out)
    with pytest.raises(TargetError, match=r"needs class indices"):
        Target(lambda o: o[:, 0]).indices(out)
    for bad in (True, "cat", 1.5):
        with pytest.raises(TargetError):
            Target(bad)


def test_output_selection():
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0]])
    hidden = torch.zeros(2, 4, 5)
    assert select_output({"logits": logits, "h": hidden}) is logits  # logits found by name
    assert select_output(Out(logits, hidden)) is logits
    assert select_output((hidden, logits), 1) is logits
    assert select_output({"hidden": hidden, "logits": logits}, 1) is logits  # ModelOutput-style: fields in order
    with pytest.raises(TargetError, match=r"output=2 is not part"):
        select_output((hidden, logits), 2)
    assert select_output({"scores": logits}, "scores") is logits
    assert select_output(Out(logits, hidden), "hidden") is hidden
    assert select_output((hidden, logits), lambda o: o[1]) is logits
    with pytest.raises(TargetError, match=r"output='score' is not part of the model's output, dict with "
                                          r"scores: tensor of shape \(2, 2\)"):
        select_output({"scores": logits}, "score")
    with pytest.raises(TargetError, match=r"the model returned tuple with 0: tensor of shape \(2, 4, 5\), "
                                          r"1: tensor of shape \(2, 2\); pass output=KEY or INDEX"):
        Target(None).resolve((hidden, logits), 2)
    idx, fn = Target(None, output=1).resolve((hidden, logits), 2)
    assert idx.tolist() == [1, 0] and fn((hidden, logits)).tolist() == [2.0, 3.0]


def test_check_model_targets_reads_the_selected_output():
    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 4)
            self.aux = nn.Linear(3, 2)  # registered last: the class count guess says 2

        def forward(self, x):
            return {"logits": self.head(x), "aux": self.aux(x)}

    model, x = Dict(), torch.zeros(2, 3)
    assert check_model_targets(model, x, 3, output="logits").tolist() == [3, 3]
    with pytest.raises(TargetError, match=r"target class 4 is out of range; the model has 4 classes"):
        check_model_targets(model, x, 4, output="logits")


# -- session and functions ---------------------------------------------------------------------


def test_session_runs_in_eval_frozen_and_restores_everything_also_on_error():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.BatchNorm1d(3)).train()
    model[0].weight.requires_grad_(False)  # a user's own frozen layer stays frozen
    before = [p.requires_grad for p in model.parameters()]
    fast = torch.backends.mha.get_fastpath_enabled()
    with probe.session(model, freeze=True, fastpath=False) as run:
        assert not model.training and not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        assert torch.backends.mha.get_fastpath_enabled() is False
        out = run(torch.ones(4, 3))
        assert torch.equal(out, model(torch.ones(4, 3)))  # eval: dropout off, running stats used
    assert model.training and [p.requires_grad for p in model.parameters()] == before
    assert torch.backends.mha.get_fastpath_enabled() is fast
    with pytest.raises(RuntimeError, match="boom"):
        with probe.session(model, freeze=True, fastpath=False):
            raise RuntimeError("boom")
    assert model.training and [p.requires_grad for p in model.parameters()] == before
    assert torch.backends.mha.get_fastpath_enabled() is fast
    with pytest.raises(UnsupportedModelError, match=r"model: expected an nn.Module, got str"):
        with probe.session("resnet"):
            pass


def test_session_routes_hugging_face_attention_and_restores_it():
    class Config:
        _attn_implementation = "flash_attention_2"

    class SelfAttention(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = config

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = Config()
            self.attn = SelfAttention(self.config)

    model = Model()
    with probe.session(model, hf_attention="sdpa") as run:
        assert model.config._attn_implementation == "sdpa" and run.eager_attention == frozenset()
    assert model.config._attn_implementation == "flash_attention_2"
    model.config._attn_implementation = "eager"
    with probe.session(model, hf_attention="sdpa") as run:
        assert model.config._attn_implementation == "eager" and run.eager_attention == {"attn"}


def test_functions_sees_torch_calls_and_can_replace_them():
    seen = []

    def handler(func, types, args, kwargs):
        seen.append(getattr(func, "__name__", str(func)))
        out = func(*args, **kwargs)
        return out * 2 if func is torch.cat else out

    with probe.functions(handler):
        y = torch.cat([torch.ones(1), torch.ones(1)])
    assert "cat" in seen and y.tolist() == [2.0, 2.0]
    assert torch.cat([torch.ones(1)]).tolist() == [1.0]  # the mode ended with the block


# -- entry points on several inputs and structured outputs --------------------------------------


class TwoInputs(nn.Module):
    """forward(a, b): a conv on each, added, GAP + linear; set weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv_a = nn.Conv2d(1, 3, 3, padding=1)
        self.conv_b = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3, 4)

    def forward(self, a, b, scale: float = 1.0):
        h = torch.relu(self.conv_a(a) + scale * self.conv_b(b))
        return self.fc(h.mean(dim=(2, 3)))


class FixedA(nn.Module):
    """The two-input model with input a held fixed: a one-input model of b."""

    def __init__(self, model, a):
        super().__init__()
        self.model, self.a = model, a

    def forward(self, b):
        return self.model(self.a[: len(b)], b)


def test_cam_and_saliency_explain_the_input_asked_for():
    model = TwoInputs().eval()
    a, b = torch.rand(3, 1, 8, 8), torch.rand(3, 2, 8, 8)
    fixed = FixedA(model, a)
    got = tl.cam.GradCAM(model, "conv_b")((a, b), target=1, wrt=1)
    want = tl.cam.GradCAM(fixed, "model.conv_b")(b, target=1)
    assert torch.equal(got.maps, want.maps) and torch.equal(got.raw, want.raw) and got.targets.tolist() == [1, 1, 1]
    g = tl.saliency.gradient(model, (a, b), 2, wrt=1)
    bb = b.clone().requires_grad_(True)
    (want_g,) = torch.autograd.grad(model(a, bb)[:, 2].sum(), [bb])
    assert g.shape == b.shape and torch.allclose(g, want_g, atol=0, rtol=0)
    gk = tl.saliency.gradient(model, Inputs((a,), {"b": b, "scale": 2.0}), 2, wrt="b")
    bb = b.clone().requires_grad_(True)
    (want_k,) = torch.autograd.grad(model(a, b=bb, scale=2.0)[:, 2].sum(), [bb])
    assert torch.equal(gk, want_k)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


class DictOut(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x)
        return {"hidden": y.detach() * 0, "logits": y}


class TupleOut(DictOut):
    def forward(self, x):
        return (torch.zeros(len(x), 7), self.inner(x))


def test_structured_outputs_give_the_plain_models_maps():
    torch.manual_seed(1)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.rand(2, 3, 10, 10)
    want = tl.cam.GradCAM(plain, "1")(x)
    by_name = tl.cam.GradCAM(DictOut(plain), "inner.1")(x)  # "logits" found by name
    by_index = tl.cam.GradCAM(TupleOut(plain), "inner.1")(x, output=1)
    for got in (by_name, by_index):
        assert torch.equal(got.maps, want.maps) and torch.equal(got.targets, want.targets)
    for key in ("scorecam", "cam"):  # softmax of the selected scores; the classifier row of the class
        assert torch.equal(tl.cam.METHODS[key](TupleOut(plain), "inner.1")(x, output=1).maps,
                           tl.cam.METHODS[key](plain, "1")(x).maps)
    assert torch.equal(tl.saliency.guided_backprop(TupleOut(plain), x, 0, output=1),
                       tl.saliency.guided_backprop(plain, x, 0))
    with pytest.raises(TargetError, match=r"pass output=KEY or INDEX"):
        tl.cam.GradCAM(TupleOut(plain), "inner.1")(x)


def test_token_ids_are_refused_with_the_embedding_to_explain():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(UnsupportedModelError, match=r"input 0 holds torch.int64 values \(token ids\?\), which have "
                                                     r"no gradient; explain its embedding layer instead \(layer='0'\)"):
        tl.saliency.gradient(model, ids)


def test_cam_refuses_a_callable_target_before_any_forward():
    calls = []
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model[0].register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(TargetError, match=r"CAM needs class-index targets .* not a callable"):
        tl.cam.CAM(model, "0")(torch.rand(2, 3, 8, 8), target=lambda o: o[:, 0])
    assert calls == []


def test_the_default_explained_input_is_the_first_floating_tensor():
    ids, mask, x = torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.long), torch.rand(1, 3)
    assert Inputs.of((ids, x)).resolve(None) == 1
    assert Inputs.of({"input_ids": ids, "attention_mask": mask, "pixel_values": x}).resolve(None) == "pixel_values"
    assert Inputs.of({"input_ids": ids, "attention_mask": mask}).resolve(None) == "input_ids"  # none: the first
    assert Inputs.of((x, x)).resolve(None) == 0 and Inputs.of((ids, x)).resolve(0) == 0

    class Tagged(nn.Module):
        """forward(ids, x): a class embedding of the ids added to a linear map of x."""

        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(5, 2), nn.Linear(3, 2)

        def forward(self, ids, x):
            return self.fc(x) + self.emb(ids).mean(1)

    model = Tagged()
    g = tl.saliency.gradient(model, (ids, x), 1)  # explains x, not the ids
    assert torch.equal(g, model.fc.weight[1].detach().expand(1, 3))
    with pytest.raises(UnsupportedModelError, match=r"layer='emb'"):
        tl.saliency.gradient(model, (ids, x), 1, wrt=0)


def test_one_batch_size_a_scalar_target_and_the_default_input_said():
    model = TwoInputs().eval()
    a, b = torch.rand(3, 1, 8, 8), torch.rand(3, 2, 8, 8)
    with pytest.raises(InputError, match=r"input 1 has 2 samples \(\(2, 2, 8, 8\)\) but input 0 has 3"):
        tl.saliency.gradient(model, (a, b[:2]), 1)
    cam = tl.cam.GradCAM(model, "conv_b")((a, b), target=torch.tensor(2), wrt=1)
    assert cam.targets.tolist() == [2, 2, 2]
    tl.inputs._SAID.clear()
    with pytest.warns(UserWarning, match=r"explaining input 0, the first floating-point input of '0', '1'; pass wrt="):
        tl.saliency.gradient(model, (a, b), 1)


def test_a_model_that_edits_its_input_in_place_leaves_the_callers_tensor_alone():
    class Doubling(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            x.mul_(2)  # as some preprocessing inside a forward does
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    model, x = Doubling().eval(), torch.rand(2, 3, 8, 8)
    before = x.clone()
    cam = tl.cam.GradCAM(model, "conv")(x, 1)
    acts = tl.activations(model, x, ["conv"])["conv"]
    assert torch.equal(x, before)
    assert torch.allclose(acts, model.conv(2 * before), atol=1e-6)  # the model saw its own doubling, once
    assert cam.maps.shape == (2, 8, 8) and torch.equal(x, before)
    g = tl.saliency.gradient(model, x, 1)  # through the model's doubling: twice the gradient at 2x
    xr = (2 * before).requires_grad_(True)
    out = model.fc(torch.relu(model.conv(xr)).mean((2, 3)))[:, 1].sum()
    (want,) = torch.autograd.grad(out, [xr])
    assert torch.allclose(g, 2 * want, atol=1e-6) and torch.equal(x, before)
