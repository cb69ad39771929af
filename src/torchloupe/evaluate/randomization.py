"""Model-randomization sanity checks (Adebayo et al. 2018): re-initialise layers from the top down
on a deep copy of the model (never the user's) and measure how similar the explanation stays.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..inputs import InputsLike, check_inputs
from ..probe import require_module, session
from ..targets import OutputSpec
from .batching import DEFAULT_MEMORY_BUDGET, Scorer, chunk_size, class_target
from .perturbation import gaussian_blur


@dataclass(frozen=True)
class RandomizationResult:
    """Adebayo et al.'s model-parameter randomization test.

    ``layers``: the layer re-initialised at each step (top first); ``similarity``: ``(B, L)``
    similarity of the explanation after each step to the original (cascade: layers so far all
    re-initialised; independent: only that layer); ``original``: ``(B, H, W)`` maps of the
    trained model; ``passed``: ``(B,)`` True where the similarity at the last step (cascade) or
    the lowest (independent) falls below ``threshold`` (the explanation depends on the weights).
    """

    layers: tuple[str, ...]
    similarity: Tensor
    original: Tensor
    mode: str
    measure: str
    threshold: float
    passed: Tensor

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


def _as_maps(m: Tensor) -> Tensor:
    if m.dim() == 4:  # gradients shaped like the input: magnitude summed over channels
        m = m.abs().sum(dim=1)
    if m.dim() != 3:
        raise InputError(f"explain must return (N, H, W) maps or (N, C, H, W) input-shaped tensors, got {tuple(m.shape)}")
    return m.detach().float()


def _ranks(v: Tensor) -> Tensor:
    """Average ranks along dim 1 (ties share their mean rank), as in scipy.stats.spearmanr."""
    n = v.shape[1]
    sorted_v, order = v.sort(dim=1, stable=True)
    pos = torch.arange(n, device=v.device, dtype=torch.float64).expand_as(sorted_v).clone()
    # Average the positions of equal values: group starts where the value changes.
    new_group = torch.ones_like(sorted_v, dtype=torch.bool)
    new_group[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    gid = new_group.long().cumsum(dim=1) - 1
    sums = torch.zeros_like(pos).scatter_add_(1, gid, pos)
    counts = torch.zeros_like(pos).scatter_add_(1, gid, torch.ones_like(pos))
    avg = (sums / counts.clamp_min(1)).gather(1, gid)
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per sample of two ``(N, ...)`` tensors, ``(N,)``; 0 when one is constant."""
    ra, rb = _ranks(a.flatten(1).double()), _ranks(b.flatten(1).double())
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    r = (ra * rb).sum(dim=1) / den.clamp_min(1e-300)
    return torch.where(den > 0, r, torch.zeros_like(r)).float()


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per sample of two ``(N, H, W)`` maps, each min-max normalised to [0, 1] first."""

    def norm(m):
        lo = m.flatten(1).min(dim=1).values.view(-1, 1, 1)
        hi = m.flatten(1).max(dim=1).values.view(-1, 1, 1)
        return ((m - lo) / (hi - lo).clamp_min(1e-12))[:, None].double()

    x, y = norm(a), norm(b)
    win = min(window, x.shape[-1], x.shape[-2])
    win -= 1 - win % 2
    blur = lambda t: gaussian_blur(t, win, sigma)  # noqa: E731
    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx**2
    syy = blur(y * y) - my**2
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    half = win // 2
    if s.shape[-1] > 2 * half and s.shape[-2] > 2 * half:
        s = s[..., half : s.shape[-2] - half, half : s.shape[-1] - half]
    return s.flatten(1).mean(dim=1).float()


def _reinit(modules: Sequence[nn.Module], seed: int) -> None:
    """Re-initialise every parameter under ``modules``: ``reset_parameters()`` where a module has it
    (its own default initialisation), N(0, 0.02) for any parameter left over. Seeded, and the
    global RNG state (CPU and the CUDA device the parameters live on) is restored afterwards."""
    cuda = sorted({p.device.index or 0 for m in modules for p in m.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        covered: set[int] = set()
        for module in modules:
            for sub in module.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in sub.parameters(recurse=False))
            with torch.no_grad():
                for p in module.parameters():
                    if id(p) not in covered:
                        p.normal_(0.0, 0.02)


def layer_groups(model: nn.Module, max_groups: int | None = None) -> list[list[str]]:
    """Leaf modules with parameters in registration order, as one group each, or split into at most
    ``max_groups`` contiguous groups (for deep models, where one step per layer would be slow)."""
    names = [
        n
        for n, m in model.named_modules()
        if n and next(m.children(), None) is None and any(True for _ in m.parameters(recurse=False))
    ]
    if max_groups is None or len(names) <= max_groups:
        return [[n] for n in names]
    bounds = [round(i * len(names) / max_groups) for i in range(max_groups + 1)]
    return [names[bounds[i] : bounds[i + 1]] for i in range(max_groups) if bounds[i + 1] > bounds[i]]


def randomization_check(
    model: nn.Module,
    x: InputsLike,
    explain: Callable[[nn.Module, Tensor, Tensor], Tensor] | Mapping[str, Callable[[nn.Module, Tensor, Tensor], Tensor]],
    layers: str = "cascade",
    similarity: str = "spearman",
    target: Any = None,
    blocks: Sequence[str] | None = None,
    threshold: float = 0.5,
    seed: int = 0,
    original: Tensor | Mapping[str, Tensor] | None = None,
    *,
    output: OutputSpec = None,
) -> RandomizationResult | dict[str, RandomizationResult]:
    """Re-initialise layers from the output down on a deep copy of ``model`` and compare explanations.

    ``explain(model, x, targets) -> (N, H, W)`` (or input-shaped ``(N, C, H, W)``, reduced to
    ``|·|`` summed over channels) computes the explanation on whichever model it is given.
    ``layers``: ``"cascade"`` (cumulative, the paper's main test) or ``"independent"``.
    ``blocks``: what to re-initialise at each step, in forward order: layer names / specs, or lists
    of them re-initialised together (default: every leaf module that has parameters, one step each;
    :func:`layer_groups` makes fewer, coarser steps for deep models). Targets stay fixed to the trained model's prediction (or
    ``target``) so only the weights change. ``original``: the trained model's explanation of
    ``x`` when the caller already has it (saves computing it again). The user's model is never modified.
    ``x`` may be anything ``model(...)`` takes (a tuple of positional inputs, a dict of keyword
    inputs): ``explain`` then gets it as it was given. ``output`` selects the class scores the
    predicted targets are read from (:mod:`torchloupe.targets`).

    ``explain`` may also be a dict ``{name: explain}``: every method is checked on the same
    randomized copies (one deep copy and one re-initialisation per step for all of them), and
    the result is a dict ``{name: RandomizationResult}`` (``original`` then a dict too, or None).
    A callable may also return a dict ``{name: maps}``, several methods from one pass (e.g.
    :func:`torchloupe.cam.compare`): each is checked under its own name, and the result is a dict;
    its trained-model maps may be given as ``original={callable's name: {name: maps}}``.
    """
    if layers not in ("cascade", "independent"):
        raise InputError(f"layers must be 'cascade' or 'independent', got {layers!r}")
    measures = {"spearman": spearman, "ssim": ssim}
    if similarity not in measures:
        raise InputError(f"similarity must be one of {sorted(measures)}, got {similarity!r}")
    single = not isinstance(explain, Mapping)
    fns = {"": explain} if single else dict(explain)
    for name, fn in fns.items():
        if not callable(fn):
            what = "explain" if single else f"explain[{name!r}]"
            raise InputError(f"{what} must be a callable (model, x, targets) -> maps, got {type(fn).__name__}")
    if not fns:
        raise InputError("explain is an empty dict; expected at least one method")
    given = {"": original} if single else dict(original or {})
    group_given: dict[str, list[str]] = {}  # group callable -> the names of its maps given under its name
    for name in [n for n, v in given.items() if n in fns and isinstance(v, Mapping)]:
        maps = given.pop(name)
        group_given[name] = list(maps)
        given.update(maps)
    require_module(model)
    tgt, output = class_target(target, output)
    inputs = check_inputs(model, x)
    if inputs.single:
        x = inputs.args[0]  # batched (an unbatched tensor becomes a batch of one)
    n = inputs.batch_size
    for orig in given.values():
        if orig is not None and (not isinstance(orig, Tensor) or orig.shape[0] != n):
            got = tuple(orig.shape) if isinstance(orig, Tensor) else type(orig).__name__
            raise InputError(f"original must be the explanation of x, (N, H, W) with N = {n}; got {got}")
    from ..layers import find_layers

    if blocks is None:
        groups = layer_groups(model)
    else:
        groups = []
        for b in blocks:
            specs = list(b) if isinstance(b, (list, tuple)) else [b]
            groups.append([n for n, _ in find_layers(model, specs)])
    if not groups:
        raise InputError(f"{type(model).__name__} has no layer with parameters to randomise")
    with session(model) as run:
        targets = Scorer(run, inputs, 0, output, chunk_size(inputs.get(0), DEFAULT_MEMORY_BUDGET)).class_indices(tgt)
    measure = measures[similarity]
    work = copy.deepcopy(model).eval()
    for sub in work.modules():  # the user's hooks stay on the user's model, not on the randomized copy
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            hooks_dict = sub.__dict__.get(attr)
            if hooks_dict:
                hooks_dict.clear()
    def explain_all(only: Sequence[str] | None = None) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, fn in fns.items():
            if only is not None and name not in only:
                continue
            got = fn(work, x, targets)
            for key, maps in (got.items() if isinstance(got, Mapping) else [(name, got)]):
                if key in out:
                    raise InputError(f"two explanations are named {key!r}; names must be unique")
                out[key] = _as_maps(maps)
        return out

    known = set(fns).union(*group_given.values())
    originals = {name: _as_maps(orig) for name, orig in given.items() if orig is not None and name in known}
    originals.update({k: _as_maps(given[k]) if given.get(k) is not None else v
                      for k, v in explain_all([n for n in fns if n not in originals and n not in group_given]).items()})
    sims: dict[str, list[Tensor]] = {name: [] for name in originals}
    top_down = list(reversed(groups))
    labels = [g[0] if len(g) == 1 else f"{g[0]} … {g[-1]}" for g in top_down]
    pristine = copy.deepcopy(work.state_dict()) if layers == "independent" else None
    for i, (group, label) in enumerate(zip(top_down, labels)):
        _reinit([work.get_submodule(n) for n in group], seed + i)
        now = explain_all()
        for name, orig in originals.items():
            maps = now.get(name)
            if maps is None or maps.shape != orig.shape:
                got = "nothing" if maps is None else tuple(maps.shape)
                raise InputError(f"explain returned {got} for {name or 'the method'!r} after randomising {label!r}, "
                                 f"but {tuple(orig.shape)} before")
            sims[name].append(measure(orig, maps))
        if pristine is not None:
            work.load_state_dict(pristine)
    results = {}
    for name, orig in originals.items():
        sim = torch.stack(sims[name], dim=1)
        final = sim[:, -1] if layers == "cascade" else sim.min(dim=1).values
        results[name] = RandomizationResult(tuple(labels), sim, orig, layers, similarity,
                                            float(threshold), final < threshold)
    return results[""] if single and list(results) == [""] else results
