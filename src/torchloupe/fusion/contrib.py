"""Per-branch contributions to a target score: exact, Shapley, ablation, integrated gradients, gradient x activation.

A *branch* is a module whose output feeds a fusion point (``"branch_a"``) or a positional model
input (``"input:0"``, for early fusion). Write ``z_b`` for branch ``b``'s output, ``z'_b`` for its
baseline (in branch-output space) and ``f(z_1..z_K)`` for the target score (the target class's
output). Every method returns ``phi_b`` per sample:

- ``exact``: when ``f`` is affine in the branch outputs (the fused tensor reaches the output only
  through ``cat`` / ``add`` / reshapes / pooling / linear layers), ``f(z) = sum_b J_b z_b + c`` and
  ``phi_b = J_b (z_b - z'_b)`` is exact; ``J_b`` comes from one backward through the head only.
- ``shapley``: exact Shapley values over the K branches, ``phi_b = sum_{S not containing b}
  |S|!(K-|S|-1)!/K! (v(S+b) - v(S))`` with ``v(S)`` the score when the branches outside ``S`` are
  replaced by their baselines; the 2^K coalitions run as one batched forward (chunked).
- ``ablation``: ``phi_b = v(all) - v(all but b)``.
- ``integrated_gradients``: ``phi_b = (z_b - z'_b) . int_0^1 df/dz_b(z' + a(z - z')) da`` on the branch
  outputs (Gauss-Legendre nodes, doubled until the completeness gap ``|sum phi - (f(z) - f(z'))|``
  is under ``tol`` times ``max|f(z) - f(z')|``).
- ``gradient_x_activation``: ``phi_b = df/dz_b (z_b - z'_b)`` at ``z``.

Branch outputs are replaced only by forward hooks (through :mod:`torchloupe.probe`) that return a
replacement output; the model is never edited. ``shares_b = |phi_b| / sum |phi|`` (equal shares when
every ``phi`` is zero). ``completeness``: ``(B,)`` gap ``|sum_b phi_b - (f(z) - f(z'))|``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, UnsupportedModelError, UsageError
from ..inputs import Inputs, InputsLike, check_finite, check_inputs
from ..layers import find_layer
from ..probe import Session, hooks, require_module, session
from ..targets import OutputSpec, Target, TargetLike, check_model_targets


METHODS = ("auto", "exact", "shapley", "ablation", "integrated_gradients", "gradient_x_activation")
MAX_SHAPLEY_BRANCHES = 8


@dataclass(frozen=True)
class FusionResult:
    """``values`` / ``shares``: branch -> ``(B,)``; ``targets`` ``(B,)``; ``scores`` ``(B,)`` = f(z);
    ``baseline_scores`` ``(B,)`` = f(z') (``None`` when not computed); ``completeness`` ``(B,)`` gap or ``None``;
    ``steps``: integration steps used (integrated gradients)."""

    values: dict[str, Tensor]
    shares: dict[str, Tensor]
    method: str
    baseline: str
    targets: Tensor
    scores: Tensor
    baseline_scores: Tensor | None
    completeness: Tensor | None
    steps: int | None = None

    @property
    def branches(self) -> list[str]:
        return list(self.values)

    def share_matrix(self) -> Tensor:
        """``(B, K)`` shares in branch order."""
        return torch.stack([self.shares[b] for b in self.values], dim=1)

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


# ---------------------------------------------------------------------------------------------
# branches and inputs


def as_inputs(model: nn.Module, x: InputsLike) -> Inputs:
    """``x`` (anything ``model(...)`` takes: a tensor, a tuple of positional inputs, a dict of keyword
    inputs) checked before any work (:func:`~torchloupe.inputs.check_inputs`: an unbatched tensor
    becomes a batch of one, channels and finite values checked); its first tensor must be batched."""
    inputs = check_inputs(model, x, explains=False)  # the shares are over every input, none singled out
    first = inputs.first
    if first.dim() == 0:
        raise InputError(f"input {inputs.tensors()[0][0]} must be batched (B, ...), got a scalar")
    return inputs


def class_target(target: TargetLike, output: OutputSpec = None) -> tuple[Target, OutputSpec]:
    """``(class target, output selection)``: the contributions split a class's score, so a callable
    target (scores, no class) is rejected by :meth:`Target.indices` (:class:`TargetError`) before
    any work; the target's indices are read off the selected ``(B, classes)`` scores."""
    tgt = Target.of(target, output)
    if tgt.is_callable:
        tgt.indices(None)  # raises TargetError
    return Target(tgt.target), tgt.output


def resolve_branches(model: nn.Module, x: Inputs, branches: Mapping[str, str] | None) -> dict[str, str]:
    """``{name: spec}`` with each spec a module path or ``"input:i"`` (positional input ``i``, a batched
    tensor); ``None`` picks the branches of the last fusion point that joins separate branches
    (:func:`~torchloupe.fusion.points.branch_specs`; a residual add is no such point)."""
    if branches is None:
        from .points import branch_specs, find

        found = branch_specs(model, find(model, *x.args, **x.kwargs))
        if found is None:
            raise UnsupportedModelError(
                f"found no fusion point of {type(model).__name__} where separate branches or inputs meet "
                f"(residual adds are not fusion); pass branches={{'name': 'module.path', ...}}"
            )
        return found[0]
    if not isinstance(branches, Mapping) or len(branches) < 2:
        raise UnsupportedModelError(f"branches must map two or more names to module paths, got {branches!r}")
    out = {}
    for name, spec in branches.items():
        if not isinstance(spec, str):
            raise UnsupportedModelError(f"branch {name!r}: expected a module path or 'input:i', got {spec!r}")
        if spec.startswith("input:"):
            idx = spec.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= len(x.args):
                raise InputError(f"branch {name!r} = {spec!r}, but the model was given {len(x.args)} "
                                 f"{'positional ' if x.kwargs else ''}input(s)")
            t = x.args[int(idx)]
            if not isinstance(t, Tensor) or t.dim() == 0 or t.shape[0] != x.batch_size:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise InputError(f"branch {name!r} = {spec!r} must be a batched tensor of {x.batch_size} "
                                 f"samples, got {got}")
        else:
            find_layer(model, spec)
        out[str(name)] = spec
    return out


def _grad_off(module, args) -> None:
    torch.set_grad_enabled(False)  # restored by the branch's forward hook and by the caller's enable_grad()


def _replace_hooks(model: nn.Module, specs: dict[str, str], fn: Callable[[str, Tensor], Tensor],
                   branch_no_grad: bool = False):
    """Hooks that pass each branch output ``z`` through ``fn(branch, z)`` (return value replaces it).

    ``branch_no_grad``: the branch modules themselves run without autograd (their outputs are
    replaced by fresh leaves anyway), so a gradient pass records only what follows the branches.
    """
    forward, pre = {}, {}
    inputs = {int(s.split(":")[1]): b for b, s in specs.items() if s.startswith("input:")}
    for b, s in specs.items():
        if s.startswith("input:"):
            continue
        module = find_layer(model, s)
        if module in forward:
            raise UnsupportedModelError(f"two branches name the same module {s!r}")

        def hook(mod, args, output, _b=b):
            if branch_no_grad:
                torch.set_grad_enabled(True)
            if not isinstance(output, Tensor):
                raise UnsupportedModelError(f"branch {_b!r} ({specs[_b]!r}) returns {type(output).__name__}, expected a tensor")
            return fn(_b, output)

        forward[module] = hook
        if branch_no_grad:
            pre[module] = _grad_off
    if inputs:

        def pre_hook(mod, args):
            args = list(args)
            for i, b in inputs.items():
                args[i] = fn(b, args[i])
            return tuple(args)

        pre[model] = pre_hook
    return hooks(forward=forward, forward_pre=pre)


class _NoExpand(Exception):
    """Expand mode does not apply to this model (see :meth:`Engine.masked`)."""


#: Words of PyTorch's shape errors (``torch.cat``, broadcasting, ``view`` / ``reshape``, matmul).
_SHAPE_WORDS = ("size", "shape", "dimension", "must match", "mat1 and mat2")


def _expansion_error(exc: BaseException) -> bool:
    """Whether ``exc`` reads as a shape mismatch (what replicas meeting the original batch give);
    never out of memory."""
    if isinstance(exc, torch.OutOfMemoryError):
        return False
    text = str(exc).lower()
    return any(w in text for w in _SHAPE_WORDS)


class Engine:
    """Runs the model (in a :func:`~torchloupe.probe.session`, ``run``) on ``inputs`` with branch
    outputs replaced; the replicas of the batch run in chunks. ``output`` selects the ``(B, classes)``
    scores of what the model returns."""

    def __init__(self, run: Session, inputs: Inputs, specs: dict[str, str], baseline: Any,
                 batch_size: int | None, output: OutputSpec = None):
        self.run, self.model, self.inputs, self.specs, self.batch_size = run, run.model, inputs, specs, batch_size
        self.selection = Target.of(None, output)
        self.B = inputs.batch_size
        self.baseline = baseline
        self.mode: str | None = None  # "expand" or "replicate" once decided (see masked)
        self.base: dict[str, Tensor] = {}
        self.clean: dict[str, Tensor] = {}
        self.forwards = 0

    def scores(self, inputs: Inputs) -> Tensor:
        """``(N, classes)`` scores of one forward."""
        return self.selection.scores_of(self.run(inputs))

    def _base_for(self, b: str, z: Tensor) -> Tensor:
        """Baseline of branch ``b`` (B, ...) given its clean output ``z`` (B, ...)."""
        if b not in self.base:
            bl = self.baseline
            if isinstance(bl, Mapping):
                t = torch.as_tensor(bl[b], dtype=z.dtype, device=z.device)
                try:
                    t = t.expand_as(z)
                except RuntimeError as exc:
                    raise InputError(f"baseline of branch {b!r} has shape {tuple(t.shape)}; branch output is {tuple(z.shape)}") from exc
            elif bl == "zero":
                t = torch.zeros_like(z)
            elif bl == "mean":
                t = z.mean(0, keepdim=True).expand_as(z)
            else:
                raise InputError(f"baseline must be 'zero', 'mean', a dict or a tensor, got {bl!r}")
            self.base[b] = t.detach()
        return self.base[b]

    def rep(self, r: int) -> Inputs:
        """The batch ``r`` times over (``[a, b, a, b]`` for ``r=2``); inputs without the batch kept."""
        if r == 1:
            return self.inputs
        return self.inputs.map_batched(lambda t: t.repeat(r, *([1] * (t.dim() - 1))))

    def _chunk(self) -> int:
        """Replicas per forward: ``batch_size`` samples, or on CPU (where big batches run slower per
        sample) at most 32 samples unless the batch itself is larger."""
        bs = self.batch_size
        if bs is None:
            bs = 1024 if self.inputs.device.type != "cpu" else max(self.B, 32)
        return max(1, bs // self.B)

    def masked(self, masks: Tensor) -> Tensor:
        """Outputs ``(M, B, C)`` of ``M`` forwards; ``masks`` ``(M, K)`` bool, True = branch kept.

        *Expand mode* (tried first when the first mask keeps every branch): the model runs on the
        original batch and each branch hook returns its ``(r B, ...)`` masked replicas, so the branches
        run once per chunk and only what follows them runs on the ``r`` replicas. It is used only when
        the outputs of the full coalition equal a plain forward's (checked once, to 1e-5); otherwise
        (or if the model cannot take it, e.g. a non-branch input meets the replicas) the whole batch
        is replicated.
        """
        names = list(self.specs)
        out = []
        chunk = self._chunk()
        for start in range(0, masks.shape[0], chunk):
            m = masks[start:start + chunk]
            r = m.shape[0]

            def fn(b, z, _m=m, _r=r):
                if z.shape[0] == self.B and _r > 1:  # expand mode: one clean branch output
                    zr = z.unsqueeze(0)
                else:
                    zr = z.reshape(_r, self.B, *z.shape[1:])
                if b not in self.clean:
                    self.clean[b] = zr[0].detach()  # chunk 0 row 0 is the full coalition
                base = self._base_for(b, self.clean[b])
                keep = _m[:, names.index(b)].to(z.device).reshape(_r, 1, *([1] * (z.dim() - 1)))
                return torch.where(keep, zr, base.unsqueeze(0)).reshape(_r * self.B, *z.shape[1:])

            y = None
            if r > 1 and self.mode != "replicate" and (self.mode == "expand" or bool(m[0].all())):
                y = self._expand_forward(fn, r)
            if y is None:
                with _replace_hooks(self.model, self.specs, fn), torch.no_grad():
                    y = self.scores(self.rep(r))
            self.forwards += r
            out.append(y.reshape(r, self.B, -1))
        return torch.cat(out, 0)

    def _expand_forward(self, fn, r: int) -> Tensor | None:
        """The expand-mode forward, or ``None`` when this model cannot take it (then replicate mode,
        for good). It cannot when its output batch does not follow the replicas, when the full
        coalition does not reproduce a plain forward, or when it raises a shape error
        (:func:`_expansion_error`) *after* a branch returned its expanded replicas: what follows the
        branches met a tensor of the original batch. Any other error is the model's own and reaches
        the caller as it was raised, without a second forward."""
        clean = dict(self.clean)
        expanded = [False]

        def fn_seen(b, z):
            out = fn(b, z)
            expanded[0] = expanded[0] or out.shape[0] != z.shape[0]
            return out

        try:
            with _replace_hooks(self.model, self.specs, fn_seen), torch.no_grad():
                y = self.scores(self.inputs)
            if y.shape[0] != r * self.B:
                raise _NoExpand("output batch does not follow the replicas")
            if self.mode is None:
                with torch.no_grad():
                    ref = self.scores(self.inputs)
                if not torch.allclose(y[:self.B], ref, rtol=1e-5, atol=1e-5):
                    raise _NoExpand("the full coalition does not reproduce the plain forward")
                self.mode = "expand"
            return y
        except (RuntimeError, ValueError) as exc:
            if not (expanded[0] and _expansion_error(exc)):
                raise
        except _NoExpand:
            pass
        self.mode = "replicate"
        self.clean = clean
        return None

    def gradients(self, alphas: Tensor, target: Any) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Gradients of the target score at ``z' + a (z - z')`` for each ``a`` in ``alphas``.

        Returns ``{branch: (S, B, ...)}`` gradients, the outputs ``(S, B, C)`` and the targets ``(B,)``.
        With no clean pass yet, ``alphas`` must be ``[1]``: this forward is the clean one (``z`` recorded
        here) and ``target`` may be any class target (:class:`~torchloupe.targets.Target`; not a callable).
        """
        names = list(self.specs)
        grads = {b: [] for b in names}
        outputs = []
        chunk = self._chunk()
        for start in range(0, alphas.shape[0], chunk):
            a = alphas[start:start + chunk]
            r = a.shape[0]
            leaves: dict[str, Tensor] = {}

            def fn(b, z, _a=a, _r=r):
                if b not in self.clean:
                    if _r != 1 or float(_a[0]) != 1.0:
                        raise RuntimeError("gradients away from z need a clean pass first")
                    self.clean[b] = z.detach()
                z0, base = self.clean[b], self._base_for(b, self.clean[b])
                al = _a.to(z0.dtype).to(z0.device).reshape(_r, 1, *([1] * z0.dim()))
                point = (base.unsqueeze(0) + al * (z0 - base).unsqueeze(0)).reshape(_r * self.B, *z0.shape[1:])
                leaf = point.detach().requires_grad_(True)
                leaves[b] = leaf
                return leaf.clone()  # the model may add to it in place next (resnet's out += identity)

            with _replace_hooks(self.model, self.specs, fn, branch_no_grad=True), torch.enable_grad():
                y = self.scores(self.rep(r))
                if not isinstance(target, Tensor) or target.dtype != torch.long or target.shape != (self.B,):
                    target = Target.of(target).indices(y[:self.B].detach())
                s = y.gather(1, target.repeat(r).unsqueeze(1)).squeeze(1)
                missing = [b for b in names if b not in leaves]
                if missing:
                    raise UnsupportedModelError(f"branch(es) {missing} did not run during the forward pass")
                g = torch.autograd.grad(s.sum(), [leaves[b] for b in names], allow_unused=True)
            self.forwards += r
            outputs.append(y.detach().reshape(r, self.B, -1))
            for b, gb in zip(names, g):
                gb = torch.zeros_like(leaves[b]) if gb is None else gb
                grads[b].append(gb.reshape(r, self.B, *gb.shape[1:]))
        return {b: torch.cat(v, 0) for b, v in grads.items()}, torch.cat(outputs, 0), target


def _gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(n)
    return torch.tensor((x + 1) / 2, dtype=torch.float64), torch.tensor(w / 2, dtype=torch.float64)


def _dot(g: Tensor, d: Tensor) -> Tensor:
    return (g.double() * d.double()).reshape(g.shape[0], -1).sum(1)


def _shapley(v: Tensor, K: int) -> Tensor:
    """``v``: ``(2^K, B)`` coalition values indexed by bitmask -> ``(K, B)`` Shapley values."""
    phi = torch.zeros(K, v.shape[1], dtype=torch.float64, device=v.device)
    for b in range(K):
        for mask in range(2 ** K):
            if mask >> b & 1:
                continue
            s = bin(mask).count("1")
            w = math.factorial(s) * math.factorial(K - s - 1) / math.factorial(K)
            phi[b] += w * (v[mask | (1 << b)] - v[mask])
    return phi


def _baseline_name(baseline: Any) -> str:
    if isinstance(baseline, str):
        return baseline
    if isinstance(baseline, Mapping):
        return "given (branch space)"
    return "input tensor"


def contributions(
    model: nn.Module,
    x: InputsLike,
    branches: Mapping[str, str] | None = None,
    target: TargetLike = None,
    method: str = "auto",
    baseline: Any = "zero",
    *,
    tol: float = 1e-3,
    max_steps: int = 1024,
    batch_size: int | None = None,
    check: bool = True,
    output: OutputSpec = None,
) -> FusionResult:
    """Per-branch contributions to the target score, for a batch ``x``: anything ``model(...)`` takes
    (a tensor, a tuple of positional inputs, a dict of keyword inputs; :class:`~torchloupe.inputs.Inputs`).

    ``branches``: ``{name: "module.path" | "input:i"}``; ``None`` uses the branches of the last
    fusion point :func:`find` reports where separate branches or inputs meet (not a residual add). ``target``: class index / list / ``(B,)`` tensor, or ``None`` for the
    predicted class. ``baseline``: ``"zero"``, ``"mean"`` (batch mean of each branch output), a dict
    ``{branch: tensor}`` in branch-output space, or an input tensor (tuple, or ``Inputs`` for keyword
    inputs) whose branch outputs are the baselines. ``output`` selects the ``(B, classes)`` scores of a
    model returning a dict, tuple or ``ModelOutput`` (:mod:`torchloupe.targets`). ``check``: for ``exact`` and ``gradient_x_activation``, also run the baseline forward
    and report the completeness gap (one more forward). ``batch_size``: samples per forward
    (default: 32 or the batch on CPU, 1024 on GPU).
    """
    if method not in METHODS:
        raise UnsupportedModelError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 8:
        raise UsageError(f"max_steps must be an int of at least 8 (integrated gradients starts with 8 nodes), "
                         f"got {max_steps!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise UsageError(f"tol must be a finite number of at least 0, got {tol!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise UsageError(f"batch_size must be None or an int of at least 1, got {batch_size!r}")
    require_module(model)
    tgt, output = class_target(target, output)
    inputs = as_inputs(model, x)  # an unbatched input becomes a batch of one; channels checked
    if isinstance(baseline, str) and baseline not in ("zero", "mean"):
        raise InputError(f"baseline must be 'zero', 'mean', a dict or a tensor, got {baseline!r}")
    B = inputs.batch_size
    if tgt.is_fixed:  # before any of the work (no forward unless the
        check_model_targets(model, inputs, tgt.target, output=output)  # class count read off the layers rejects it)
    if B == 0:  # an empty batch: an empty result, once the branches are known to exist
        return _empty_result(model, inputs, branches, method, baseline)
    specs = resolve_branches(model, inputs, branches)
    K = len(specs)
    names = list(specs)
    if method == "shapley" and K > MAX_SHAPLEY_BRANCHES:
        raise UnsupportedModelError(f"shapley over {K} branches needs 2^{K} forwards; use at most {MAX_SHAPLEY_BRANCHES} branches or method='integrated_gradients'")
    with session(model) as run:
        if method in ("auto", "exact"):
            from .linearity import nonlinear_step

            why = nonlinear_step(model, inputs.slice(0, 1), specs, output)
            if why is None:
                method = "exact"
            elif method == "exact":
                raise UnsupportedModelError(f"method 'exact' needs the branches to reach the output through linear maps; {why}")
            else:
                method = "shapley" if K <= MAX_SHAPLEY_BRANCHES else "integrated_gradients"
        bl = baseline
        if isinstance(baseline, (Tensor, tuple, list, Inputs)):
            probe = Engine(run, _baseline_inputs(baseline, inputs), specs, "zero", batch_size, output)
            probe.masked(torch.ones(1, K, dtype=torch.bool))
            bl = dict(probe.clean)
        eng = Engine(run, inputs, specs, bl, batch_size, output)

        if method in ("shapley", "ablation"):
            if method == "shapley":
                masks = torch.tensor([[(m >> b) & 1 for b in range(K)] for m in range(2 ** K)], dtype=torch.bool)
                masks = torch.cat([masks[-1:], masks[:-1]])  # full coalition first
                out = eng.masked(masks)
                out = torch.cat([out[1:], out[:1]])  # back to bitmask order
                full = out[-1]
            else:
                masks = torch.ones(K + 2, K, dtype=torch.bool)
                for b in range(K):
                    masks[b + 1, b] = False
                masks[K + 1] = False
                out = eng.masked(masks)
                full = out[0]
            t = tgt.indices(full)
            v = out.gather(2, t.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(2).double()
            if method == "shapley":
                phi = _shapley(v, K)
                f, f0 = v[-1], v[0]
            else:
                phi = torch.stack([v[0] - v[b + 1] for b in range(K)])
                f, f0 = v[0], v[K + 1]
            steps = None
        else:
            if method == "integrated_gradients":
                full = eng.masked(torch.ones(1, K, dtype=torch.bool))[0]
                t = tgt.indices(full)
            else:  # one forward: the clean pass is the gradient pass
                grads, outs, t = eng.gradients(torch.ones(1, dtype=torch.float64), tgt)
                full = outs[0]
            for b in names:
                eng._base_for(b, eng.clean[b])
            f = full.gather(1, t.unsqueeze(1)).squeeze(1).double()
            f0 = None
            if check or method == "integrated_gradients":
                f0 = eng.masked(torch.zeros(1, K, dtype=torch.bool))[0].gather(1, t.unsqueeze(1)).squeeze(1).double()
            diffs = {b: eng.clean[b] - eng.base[b] for b in names}
            if method == "integrated_gradients":
                n = 8
                while True:
                    alphas, weights = _gauss_legendre(n)
                    grads, _, _ = eng.gradients(alphas, t)
                    phi = torch.stack([
                        sum(weights[s] * _dot(grads[b][s], diffs[b]) for s in range(n)) for b in names
                    ])
                    gap = (phi.sum(0) - (f - f0)).abs()
                    scale = float((f - f0).abs().max()) if f.numel() else 0.0
                    if (float(gap.max()) if gap.numel() else 0.0) <= tol * max(scale, 1e-12) or n >= max_steps:
                        break
                    n *= 2
                steps = n
            else:
                phi = torch.stack([_dot(grads[b][0], diffs[b]) for b in names])
                steps = None
    completeness = None if f0 is None else (phi.sum(0) - (f - f0)).abs()
    dtype = full.dtype if full.is_floating_point() else torch.float32
    values = {b: phi[i].to(dtype) for i, b in enumerate(names)}
    mag = phi.abs()
    total = mag.sum(0, keepdim=True)
    shares_m = torch.where(total > 0, mag / total.clamp_min(1e-300), torch.full_like(mag, 1.0 / K))
    shares = {b: shares_m[i].to(dtype) for i, b in enumerate(names)}
    return FusionResult(
        values=values, shares=shares, method=method, baseline=_baseline_name(baseline), targets=t,
        scores=f.to(dtype), baseline_scores=None if f0 is None else f0.to(dtype),
        completeness=None if completeness is None else completeness.to(dtype), steps=steps,
    )


def _baseline_inputs(baseline: Any, inputs: Inputs) -> Inputs:
    """A baseline given as model inputs, laid out as ``inputs`` (a batch of one is expanded)."""
    base = Inputs.of(baseline)
    if len(base.args) != len(inputs.args) or set(base.kwargs) != set(inputs.kwargs):
        raise InputError(f"baseline input has {len(base.args)} tensor(s)"
                         + (f" and keywords {sorted(base.kwargs)}" if base.kwargs or inputs.kwargs else "")
                         + f", the model takes {len(inputs.args)}"
                         + (f" and keywords {sorted(inputs.kwargs)}" if base.kwargs or inputs.kwargs else ""))

    def fit(b: Any, t: Any) -> Any:
        if not isinstance(b, Tensor):
            return b
        check_finite(b, "baseline")
        if isinstance(t, Tensor) and b.dim() and b.shape[0] == 1:
            return b.expand_as(t)
        return b

    return Inputs(tuple(fit(b, t) for b, t in zip(base.args, inputs.args)),
                  {k: fit(base.kwargs[k], v) for k, v in inputs.kwargs.items()})


def _empty_result(model: nn.Module, inputs: Inputs, branches, method: str, baseline) -> FusionResult:
    """What :func:`contributions` returns for an empty batch: every field with zero samples, one
    entry per branch. Given branches are checked as for a batch; without them, the fusion point is
    found from a trace of the empty batch (a model that cannot run one says so)."""
    names = list(resolve_branches(model, inputs, branches))
    empty = torch.zeros(0, device=inputs.device)
    return FusionResult(values={b: empty for b in names}, shares={b: empty for b in names}, method=method,
                        baseline=_baseline_name(baseline), targets=torch.zeros(0, dtype=torch.long, device=inputs.device),
                        scores=empty, baseline_scores=None, completeness=None)
