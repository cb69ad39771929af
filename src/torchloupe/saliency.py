"""Gradient saliency: plain gradient, guided backpropagation, deconvnet, guided Grad-CAM, SmoothGrad.

Every function takes ``(model, x, target=None, *, wrt=None, output=None)`` and returns a tensor
shaped like the explained input: ``x`` is anything ``model(...)`` takes
(:class:`~torchloupe.inputs.Inputs`: a tensor, a tuple, a dict), ``wrt`` the input explained
(an index, or a keyword's name; by default the first floating-point tensor), ``target`` and ``output`` as in :mod:`torchloupe.targets`.

The guided rules change how the gradient passes the model's rectifiers, and only that:

- guided backpropagation (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806):
  ``grad_in = ReLU(grad_out) * f'(x)``;
- deconvnet (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901):
  ``grad_in = ReLU(grad_out)``, the forward's gating ignored.

``f'(x)`` is the rectifier's own gating: ``x > 0`` for ReLU, ``lo < x < hi`` for ReLU6 /
Hardtanh, ``1`` or the negative slope for LeakyReLU. The rules act on ``nn.ReLU`` (also
in-place and reused), ``F.relu``, ``torch.relu``, ``relu_`` and the Tensor methods, ReLU6,
Hardtanh and LeakyReLU, through a :func:`torchloupe.probe.intercept` function mode for the
length of the call: no module is swapped or hooked. Activations without a guided rule
(SiLU, GELU, ...) keep their plain gradient and the call warns naming them; it also warns
when no rectifier was guided at all.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import TargetError, UsageError
from .inputs import Inputs, InputsLike, check_inputs
from .probe import intercept, session
from .targets import OutputSpec, Target, TargetLike, check_model_targets

__all__ = ["gradient", "guided_backprop", "deconvnet", "guided_gradcam", "smoothgrad", "GuidedFallbackWarning"]


class GuidedFallbackWarning(UserWarning):
    """Some activations have no guided rule (their plain gradient was used), or none was guided."""


class _Rule(torch.autograd.Function):
    """A rectifier ``fn`` with a replaced backward: ``ReLU(grad_out)``, times ``gate(x)`` when guided."""

    @staticmethod
    def forward(ctx, x, fn, gate):
        ctx.guided = gate is not None
        ctx.save_for_backward(gate(x).to(x.dtype) if gate is not None else None)
        return fn(x)

    @staticmethod
    def backward(ctx, g):
        out = torch.relu(g)
        if ctx.guided:
            (gate,) = ctx.saved_tensors
            out = out * gate
        return out, None, None


def _make_rules(guided: bool, seen: dict[str, int]) -> dict[Callable, Callable]:
    def apply(name: str, x: Tensor, fn: Callable[[Tensor], Tensor], gate: Callable[[Tensor], Tensor], inplace: bool):
        seen[name] = seen.get(name, 0) + 1
        if not (torch.is_grad_enabled() and x.requires_grad):
            out = fn(x)
        else:
            out = _Rule.apply(x, fn, gate if guided else None)
        if inplace:
            x.copy_(out)  # autograd: the copy's backward hands the gradient to `out`'s rule
            return x
        return out

    def relu(x, inplace=False):
        return apply("relu", x, torch.relu, lambda t: t > 0, inplace)

    def relu_(x):
        return apply("relu", x, torch.relu, lambda t: t > 0, True)

    def hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
        return apply(
            "hardtanh",
            x,
            lambda t: torch.clamp(t, min_val, max_val),
            lambda t: (t > min_val) & (t < max_val),
            inplace,
        )

    def relu6(x, inplace=False):
        return apply("relu6", x, lambda t: torch.clamp(t, 0.0, 6.0), lambda t: (t > 0) & (t < 6), inplace)

    def leaky_relu(x, negative_slope=0.01, inplace=False):
        return apply(
            "leaky_relu",
            x,
            lambda t: F.leaky_relu(t, negative_slope),
            lambda t: torch.where(t > 0, 1.0, negative_slope),
            inplace,
        )

    def leaky_relu_(x, negative_slope=0.01):
        return leaky_relu(x, negative_slope, True)

    def hardtanh_(x, min_val=-1.0, max_val=1.0):
        return hardtanh(x, min_val, max_val, True)

    def unguided(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            seen[f"!{name}"] = seen.get(f"!{name}", 0) + 1
            return fn(*args, **kwargs)

        return wrapper

    rules: dict[Callable, Callable] = {
        F.relu: relu,
        torch.relu: lambda x: relu(x),
        torch.relu_: relu_,
        Tensor.relu: lambda x: relu(x),
        Tensor.relu_: relu_,
        F.relu_: relu_,
        F.relu6: relu6,
        F.hardtanh: hardtanh,
        F.hardtanh_: hardtanh_,
        F.leaky_relu: leaky_relu,
        F.leaky_relu_: leaky_relu_,
    }
    for name, fn in (("silu", F.silu), ("gelu", F.gelu), ("elu", F.elu), ("mish", F.mish),
                     ("hardswish", F.hardswish), ("softplus", F.softplus), ("selu", F.selu)):
        rules[fn] = unguided(name, fn)
    return rules


def _prepare(model: nn.Module, x: InputsLike, target: TargetLike, wrt: int | str,
             output: OutputSpec) -> tuple[Inputs, Tensor, Target]:
    """Checked inputs, the explained input (floating, so it can carry a gradient) and the target."""
    inputs = check_inputs(model, x, wrt=wrt)
    xe = inputs.explained(wrt, model)
    tgt = Target.of(target, output)
    if tgt.is_fixed:
        check_model_targets(model, inputs, tgt.target, device=xe.device, output=tgt.output)
    return inputs, xe, tgt


def _input_gradient(model: nn.Module, x: InputsLike, target: TargetLike, rules: dict | None = None, *,
                    wrt: int | str | None = None, output: OutputSpec = None) -> tuple[Tensor, Tensor]:
    """d score / d (input ``wrt``) with optional function rules; returns ``(grad like it, targets (N,))``."""
    inputs, xe, tgt = _prepare(model, x, target, wrt, output)
    n = inputs.batch_size
    if n == 0:
        return torch.zeros_like(xe), torch.zeros(0, dtype=torch.long)
    with session(model, freeze=True) as run:
        xi = xe.detach().clone().requires_grad_(True)
        # copies (xi through one, so the leaf stays untouched): a model may edit its inputs in place
        fed = inputs.map(Tensor.clone).replace(wrt, xi.clone())
        with torch.enable_grad():
            if rules is None:
                out = run(fed)
            else:
                with intercept(rules):
                    out = run(fed)
            targets, score_fn = tgt.resolve(out, n)
            score = score_fn(out)
            if not score.requires_grad:
                raise TargetError("the target score does not depend on the input")
            (g,) = torch.autograd.grad(score.sum(), [xi], allow_unused=True)
    if g is None:
        g = torch.zeros_like(xe)
    return g.detach(), targets


def gradient(model: nn.Module, x: InputsLike, target: TargetLike = None, *, wrt: int | str | None = None,
             output: OutputSpec = None) -> Tensor:
    """Plain gradient of the target score with respect to input ``wrt``, shaped like it."""
    return _input_gradient(model, x, target, wrt=wrt, output=output)[0]


def _guided(model: nn.Module, x: InputsLike, target: TargetLike, guided: bool, wrt: int | str,
            output: OutputSpec) -> Tensor:
    seen: dict[str, int] = {}
    g, _ = _input_gradient(model, x, target, _make_rules(guided, seen), wrt=wrt, output=output)
    if g.shape[0] == 0:
        return g
    name = "guided backpropagation" if guided else "deconvnet"
    fallback = sorted(k[1:] for k in seen if k.startswith("!"))
    if fallback:
        warnings.warn(
            f"{name}: no guided rule for {', '.join(fallback)}; their plain gradient was used",
            GuidedFallbackWarning,
            stacklevel=3,
        )
    if not any(not k.startswith("!") for k in seen):
        warnings.warn(
            f"{name}: the model ran no ReLU / ReLU6 / Hardtanh / LeakyReLU; the result is the plain gradient",
            GuidedFallbackWarning,
            stacklevel=3,
        )
    return g


def guided_backprop(model: nn.Module, x: InputsLike, target: TargetLike = None, *, wrt: int | str | None = None,
                    output: OutputSpec = None) -> Tensor:
    """Guided backpropagation: rectifiers pass ``ReLU(grad_out) * f'(x)``. Shaped like the input."""
    return _guided(model, x, target, True, wrt, output)


def deconvnet(model: nn.Module, x: InputsLike, target: TargetLike = None, *, wrt: int | str | None = None,
              output: OutputSpec = None) -> Tensor:
    """Deconvnet: rectifiers pass ``ReLU(grad_out)`` whatever their input was. Shaped like the input."""
    return _guided(model, x, target, False, wrt, output)


def guided_gradcam(model: nn.Module, x: InputsLike, target: TargetLike = None, layer=None, *,
                   wrt: int | str | None = None, output: OutputSpec = None) -> Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the Grad-CAM map, per sample.

    The Grad-CAM map (``(N, H, W)`` in [0, 1]) multiplies every channel; the class is the same
    for both (predicted once when ``target`` is None).
    """
    from .cam import GradCAM

    res = GradCAM(model, layer)(x, target, wrt=wrt, output=output)
    t = target if Target.of(target).is_callable else res.targets
    gb = guided_backprop(model, x, t, wrt=wrt, output=output)
    return gb * res.maps.unsqueeze(1).to(gb.dtype)


def smoothgrad(
    fn: Callable[..., Tensor], n: int = 25, sigma: float = 0.15, *, seed: int = 0, chunk: int = 64
) -> Callable[..., Tensor]:
    """SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825) of a saliency ``fn``.

    Returns ``smoothed(model, x, target=None, **kw)``: the mean of ``fn`` over ``n`` noisy
    copies ``x + N(0, (sigma * (max - min))^2)`` (range per sample), the target fixed to the
    clean input's prediction. Copies run batched, ``chunk`` samples per call; noise from a
    ``torch.Generator`` seeded with ``seed`` (the global RNG is not touched).
    """
    if not callable(fn):
        raise UsageError(f"smoothgrad smooths a saliency function (model, x, target) -> map, got {type(fn).__name__}")
    for key, v in (("n", n), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{key} must be an int of at least 1, got {v!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise UsageError(f"sigma must be a finite number of at least 0, got {sigma!r}")

    def smoothed(model: nn.Module, x: InputsLike, target: TargetLike = None, *, wrt: int | str | None = None,
                 output: OutputSpec = None, **kw) -> Tensor:
        inputs, x, tgt = _prepare(model, x, target, wrt, output)
        b = inputs.batch_size
        if b == 0:  # an empty batch: an empty result
            return torch.zeros_like(x)
        if not tgt.is_callable:  # the clean inputs' classes, fixed for every noisy copy
            with session(model) as run, torch.no_grad():
                target = tgt.indices(run(inputs), b)
        # fn may be any (model, x, target) saliency: wrt / output only go to it when given
        extra = {k: v for k, v in (("wrt", wrt), ("output", output)) if v not in (0, None)}
        gen = torch.Generator(device=x.device).manual_seed(seed)
        flat = x.reshape(b, -1)
        span = (flat.max(dim=1).values - flat.min(dim=1).values).reshape(b, *([1] * (x.dim() - 1)))
        total = torch.zeros_like(x)
        per = max(1, chunk // max(1, b))
        done = 0
        while done < n:
            k = min(per, n - done)
            noise = torch.randn((k * b, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype)
            xs = x.repeat(k, *([1] * (x.dim() - 1))) + noise * (sigma * span).repeat(k, *([1] * (x.dim() - 1)))
            t = target if tgt.is_callable else torch.as_tensor(target).reshape(-1).repeat(k)
            copies = xs if inputs.single else _tiled(inputs, k).replace(wrt, xs)
            g = fn(model, copies, t, **extra, **kw)
            total += g.reshape(k, b, *x.shape[1:]).sum(0)
            done += k
        return total / n

    smoothed.__name__ = f"smoothgrad_{getattr(fn, '__name__', 'fn')}"
    return smoothed


def _tiled(inputs: Inputs, k: int) -> Inputs:
    """The batch ``k`` times over (``[a, b, a, b]``), as the noisy copies are laid out."""
    return inputs.map_batched(lambda t: t.repeat(k, *([1] * (t.dim() - 1))))
