"""Watch weights change during training, from one line in the user's own loop.

::

    tracker = tl.weights.WeightTracker(model, every=10)
    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        tracker.step()                      # after optimizer.step()
    tracker.history.steps                   # (R,) recorded steps
    tracker.history["fc.weight"]            # (S, *fc.weight.shape) full snapshots
    tracker.animate("templates.gif")

**Step numbering.** Step ``k`` is the model's state after ``k`` optimizer steps, that is
after the ``k``-th call of :meth:`WeightTracker.step` (counted from ``start_step``, 0 by
default). Construction records step ``start_step`` (the weights before training) unless
``record_initial=False``; then every step ``k`` with ``k % every == 0`` is recorded, and
:meth:`WeightTracker.close` (or leaving the ``with`` block) records the last step if it was
not recorded yet (with a snapshot of it, so the end state is always kept). With
``every=10`` and 25 steps: steps ``0, 10, 20, 25``.

**What a record holds**, per tracked tensor ``W`` (every parameter of ``layers``, all
parameters by default), computed on the tensor's device in float32:
``norm`` ‖W‖₂, ``mean``, ``std`` (population, correction 0), ``min``, ``max``,
``update_ratio`` ‖W − W_prev‖ / ‖W_prev‖ against the previous record (NaN at the first),
``grad_norm`` ‖W.grad‖ when ``.grad`` is set (NaN otherwise) and a ``bins``-bin
:func:`torch.histc` over ``[min, max]`` (``[v - 1, v + 1]`` when all values equal ``v``,
as ``histc`` does). The update ratio keeps one copy of each tracked tensor on its device.

**Snapshots.** Full copies (on the CPU) of the parameters of ``snapshots`` layers: by
default the first convolution and the classifier head (the last ``nn.Linear``). A model
without convolutions whose ``nn.Linear`` layers form one chain (an MLP: each reads what the
previous one writes) gets every layer of the chain, what its effective class templates
``W_L ... W_1`` need, when one snapshot of them all fits ``budget``; other models without
convolutions get their first and last ``nn.Linear``. They live within ``budget``
bytes: when the next snapshot would not fit, every second snapshot is dropped (the steps
dropped are listed in ``history.thinned``) and snapshots are taken half as often, so the
kept ones stay evenly spaced. A budget that cannot hold one snapshot is an error.

The tracker registers no hooks, runs no forward, touches no ``.grad`` and uses no random
numbers: training with and without it is bitwise the same.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, LayerNotFoundError, TrackerError
from ..layers import LayerSpec, find_layers
from ..probe import require_module
from .checkpoints import default_snapshot_names, load_state_dict, names_in
from .history import STATS, Record, WeightHistory


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _parse_budget(budget: int | str) -> int:
    if isinstance(budget, bool):
        raise TrackerError(f"budget={budget!r}: expected a byte count (int) or a string like '256MiB'")
    if isinstance(budget, int):
        if budget < 0:
            raise TrackerError(f"budget={budget} bytes is negative; expected a byte count >= 0")
        return budget
    if isinstance(budget, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", budget)
        if m and m.group(2).lower() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise TrackerError(
        f"budget={budget!r}: expected a byte count (int) or a string like '256MiB', '64MB', '1GiB'"
    )


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrackerError(f"{name}={value!r}: expected an int >= {lo}")
    if value < lo:
        raise TrackerError(f"{name}={value}: expected an int >= {lo}")
    return value


class WeightTracker:
    """Record weight statistics and snapshots during training (see the module docstring).

    Parameters
    ----------
    model: the network being trained (held by reference; never run, hooked or modified).
    every: record every ``every``-th optimizer step (int >= 1).
    layers: layer specs (names, globs, types, modules; see :mod:`torchloupe.layers`) whose
        parameters get statistics; ``None``: every parameter.
    snapshots: layer specs whose parameters are kept in full; ``None``: first conv and the
        head, or an MLP's whole Linear chain (see module docstring); ``[]``: none.
    budget: bytes (int or ``"256MiB"``) the snapshots may hold; enforced by even thinning.
    bins: histogram bins (64).
    input_shape: the model's input shape without batch, e.g. ``(1, 28, 28)``, used to draw class
        templates; ``None``: a one-channel square image ``(1, s, s)`` when the input size is a
        square number ``s * s``.
    sinks: objects with ``on_record(tracker, record)`` (and optionally ``close()``), e.g.
        :class:`torchloupe.integrations.visdom.VisdomSink` or the TensorBoard sink.
    start_step: the optimizer steps already taken (when resuming).
    record_initial: record ``start_step`` at construction.

    Attributes: ``names`` (tracked tensors), ``snapshot_names``, ``shapes`` (``{name: shape}`` of
    every tracked or snapshotted tensor), ``every``, ``bins``, ``budget``, ``input_shape``, ``sinks``.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 10,
        layers: LayerSpec | Sequence[LayerSpec] | None = None,
        snapshots: LayerSpec | Sequence[LayerSpec] | None = None,
        *,
        budget: int | str = "256MiB",
        bins: int = 64,
        input_shape: Sequence[int] | None = None,
        sinks: Iterable[Any] = (),
        start_step: int = 0,
        record_initial: bool = True,
    ):
        self.model = require_module(model, "WeightTracker's model")
        names, params = _tracked(model, layers)
        snap_names, snap_params = _snapshot_params(model, snapshots, _parse_budget(budget))
        self._setup(
            names, params, snap_names, snap_params, every=every, budget=budget, bins=bins,
            input_shape=input_shape, sinks=sinks, start_step=start_step,
        )
        if record_initial:
            self._record()

    # -- setup ----------------------------------------------------------------------------
    def _setup(self, names, params, snap_names, snap_params, *, every, budget, bins, input_shape, sinks, start_step):
        self.every = _check_int("every", every, 1)
        self.bins = _check_int("bins", bins, 1)
        self._step = _check_int("start_step", start_step, 0)
        self.budget = _parse_budget(budget)
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        self.names: tuple[str, ...] = tuple(names)
        self._params: list[Tensor] = list(params)
        self.snapshot_names: tuple[str, ...] = tuple(snap_names)
        self._snap_params: list[Tensor] = list(snap_params)
        self.shapes = {n: tuple(p.shape) for n, p in zip(names, params)}
        self.shapes.update({n: tuple(p.shape) for n, p in zip(snap_names, snap_params)})
        self.snapshot_bytes = sum(p.numel() * p.element_size() for p in self._snap_params)
        if self._snap_params and self.snapshot_bytes > self.budget:
            raise TrackerError(
                f"budget={_fmt_bytes(self.budget)} cannot hold one snapshot of "
                f"{', '.join(self.snapshot_names)} ({_fmt_bytes(self.snapshot_bytes)}); "
                f"raise budget to at least {self.snapshot_bytes} bytes or pick fewer snapshot layers"
            )
        self.capacity = self.budget // self.snapshot_bytes if self.snapshot_bytes else 0
        self.sinks = list(sinks)
        for s in self.sinks:
            if not callable(getattr(s, "on_record", None)):
                raise TrackerError(f"sink {type(s).__name__} has no on_record(tracker, record) method")
        # recorded data
        self._steps: list[int] = []
        self._stats: list[Tensor] = []
        self._hist: list[Tensor] = []
        self._range: list[Tensor] = []
        self._snap_steps: list[int] = []
        self._snaps: list[list[Tensor]] = []
        self._thinned: list[int] = []
        self._stride = 1  # snapshot every _stride-th record
        self._n_records = 0
        self._prev: list[Tensor] | None = None
        self._prev_norm: Tensor | None = None
        self._closed = False

    # -- the loop -------------------------------------------------------------------------
    @property
    def current_step(self) -> int:
        """Optimizer steps taken so far (the number of the model's current state)."""
        return self._step

    def step(self) -> bool:
        """Count one optimizer step (call after ``optimizer.step()``); record when due.

        Returns whether this step was recorded.
        """
        self._need_model("step")
        self._step += 1
        if self._step % self.every == 0:
            self._record()
            return True
        return False

    def on_step(self, *args: Any, **kwargs: Any) -> bool:
        """Callback form of :meth:`step` for loops that call ``on_step(...)``; arguments are ignored."""
        return self.step()

    def record(self) -> None:
        """Record the current state now, with a snapshot (budget permitting).

        A no-op when the current step is already recorded and snapshotted.
        """
        self._need_model("record")
        if not self._steps or self._steps[-1] != self._step:
            self._record(force_snapshot=True)
        elif self._snap_params and (not self._snap_steps or self._snap_steps[-1] != self._step):
            with torch.no_grad():
                self._maybe_snapshot([p.detach() for p in self._snap_params], force=True)

    def close(self) -> None:
        """Record (and snapshot) the last step if it was not, and close the sinks.

        Called on leaving the ``with`` block.
        """
        if self._model_available():
            self.record()
        if not self._closed:
            self._closed = True
            for s in self.sinks:
                closer = getattr(s, "close", None)
                if callable(closer):
                    closer()

    def __enter__(self) -> "WeightTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _model_available(self) -> bool:
        return getattr(self, "model", None) is not None

    def _need_model(self, what: str) -> None:
        if not self._model_available():
            raise TrackerError(
                f"{what}() needs a live model; this tracker was built from checkpoint files "
                f"(read its .history, or build WeightTracker(model) to track training)"
            )

    # -- recording ------------------------------------------------------------------------
    @torch.no_grad()
    def _record(self, tensors: Sequence[Tensor] | None = None, snap_tensors: Sequence[Tensor] | None = None,
                grads: bool = True, force_snapshot: bool = False) -> None:
        live = tensors is None
        cur = [p.detach() for p in (self._params if live else tensors)]
        stats, hist, rng = self._measure(cur, grads=(live and grads))
        self._steps.append(self._step)
        self._stats.append(stats)
        self._hist.append(hist)
        self._range.append(rng)
        snapshot = self._maybe_snapshot(
            [p.detach() for p in (self._snap_params if live else snap_tensors)], force_snapshot
        )
        self._n_records += 1
        if self.sinks:
            rec = Record(self._step, self.names, stats, hist, rng, snapshot)
            for s in self.sinks:
                s.on_record(self, rec)

    def _measure(self, cur: list[Tensor], grads: bool) -> tuple[Tensor, Tensor, Tensor]:
        # Few ops per tensor (fixed costs dominate on small models): reductions stay on the
        # tensor's device and cross to the CPU in one stack per device; ratios and histogram
        # ranges are finished there.
        nan = float("nan")
        first = self._prev is None
        if first:
            self._prev = [torch.empty_like(t) for t in cur]
        by_dev: dict[torch.device, tuple[list[int], list[Tensor], list[Tensor]]] = {}
        for i, (t, prev) in enumerate(zip(cur, self._prev)):
            f = t if t.dtype == torch.float32 else t.float()
            mean = f.mean()
            lo, hi = torch.aminmax(f)
            if first:
                dnorm = f.new_full((), nan)
            else:
                dnorm = torch.linalg.vector_norm(f - (prev if prev.dtype == torch.float32 else prev.float()))
            g = self._params[i].grad if grads else None
            gnorm = torch.linalg.vector_norm(g.detach().float()).to(f.device) if g is not None else f.new_full((), nan)
            # ‖W - mean‖ / sqrt(n) is the population std: stable, and faster than std_mean on CPU
            scalars = [torch.linalg.vector_norm(f), mean, torch.linalg.vector_norm(f - mean), lo, hi, dnorm, gnorm]
            ids, vals, hists = by_dev.setdefault(f.device, ([], [], []))
            ids.append(i)
            vals.extend(scalars)
            hists.append(torch.histc(f, bins=self.bins))
            prev.copy_(t)
        n = len(cur)
        stats = torch.empty(n, len(STATS))
        hist = torch.empty(n, self.bins)
        for ids, vals, hists in by_dev.values():
            idx = torch.tensor(ids)
            stats[idx] = torch.stack(vals).reshape(len(ids), len(STATS)).cpu().float()
            hist[idx] = torch.stack(hists).cpu()
        numel = torch.tensor([float(t.numel()) for t in cur])
        stats[:, 2] /= numel.sqrt()
        prev_norm = self._prev_norm if self._prev_norm is not None else torch.full((n,), nan)
        stats[:, 5] /= prev_norm  # ‖W - W_prev‖ / ‖W_prev‖
        self._prev_norm = stats[:, 0].clone()
        lo, hi = stats[:, 3], stats[:, 4]
        same = lo == hi  # histc spans [v - 1, v + 1] when all values equal v
        rng = torch.stack([torch.where(same, lo - 1, lo), torch.where(same, hi + 1, hi)], dim=1)
        return stats, hist, rng

    def _maybe_snapshot(self, cur: list[Tensor], force: bool) -> dict[str, Tensor] | None:
        if not cur:
            return None
        due = force or self._n_records % self._stride == 0
        if not due:
            return None
        while len(self._snaps) >= self.capacity:
            # Full: keep every second snapshot (the first included), take them half as often.
            keep = list(range(0, len(self._snaps), 2))
            if len(keep) == len(self._snaps):  # capacity 1: keep the first, record what is skipped
                self._thinned.append(self._step)
                self._stride *= 2
                return None
            dropped = [self._snap_steps[i] for i in range(len(self._snaps)) if i % 2 == 1]
            self._thinned.extend(dropped)
            self._snaps = [self._snaps[i] for i in keep]
            self._snap_steps = [self._snap_steps[i] for i in keep]
            self._stride *= 2
            if not force and self._n_records % self._stride != 0:
                return None
        copies = [t.to("cpu", copy=True) if t.device.type != "cpu" else t.clone() for t in cur]
        self._snaps.append(copies)
        self._snap_steps.append(self._step)
        return dict(zip(self.snapshot_names, copies))

    # -- results --------------------------------------------------------------------------
    @property
    def history(self) -> WeightHistory:
        """A :class:`WeightHistory` of everything recorded so far (tensors copied out)."""
        n, b = len(self.names), self.bins
        snaps = {}
        for j, name in enumerate(self.snapshot_names):
            if self._snaps:
                snaps[name] = torch.stack([s[j] for s in self._snaps])
            else:
                snaps[name] = torch.empty(0, *self.shapes[name])
        return WeightHistory(
            steps=torch.tensor(self._steps, dtype=torch.int64),
            names=self.names,
            stats=torch.stack(self._stats) if self._stats else torch.empty(0, n, len(STATS)),
            hist=torch.stack(self._hist) if self._hist else torch.empty(0, n, b),
            hist_range=torch.stack(self._range) if self._range else torch.empty(0, n, 2),
            snapshot_steps=torch.tensor(self._snap_steps, dtype=torch.int64),
            snapshots=snaps,
            thinned=tuple(sorted(self._thinned)),
            every=self.every,
            budget=self.budget,
            input_shape=self.input_shape,
            shapes=dict(self.shapes),
        )

    def record_history(self, record: Record) -> WeightHistory:
        """A one-step :class:`WeightHistory` of ``record`` (what sinks draw from)."""
        snaps = record.snapshot or {}
        return WeightHistory(
            steps=torch.tensor([record.step]),
            names=record.names,
            stats=record.stats[None],
            hist=record.hist[None],
            hist_range=record.hist_range[None],
            snapshot_steps=torch.tensor([record.step] if snaps else [], dtype=torch.int64),
            snapshots={k: v[None] for k, v in snaps.items()},
            every=self.every,
            budget=self.budget,
            input_shape=self.input_shape,
            shapes=dict(self.shapes),
        )

    @property
    def memory(self) -> dict[str, int]:
        """Bytes held now: ``snapshots`` (bounded by ``budget``), ``stats`` (grows per record),
        ``previous`` (one copy of each tracked tensor, on its device, for update ratios)."""
        snap = sum(t.numel() * t.element_size() for s in self._snaps for t in s)
        stats = sum(t.numel() * t.element_size() for t in self._stats + self._hist + self._range)
        prev = sum(t.numel() * t.element_size() for t in (self._prev or []))
        return {"snapshots": snap, "budget": self.budget, "stats": stats, "previous": prev}

    def animate(self, path: str | os.PathLike, what: str = "auto", fps: float = 4.0, **kwargs: Any) -> str:
        """Write a GIF of class templates or kernels, one frame per snapshot (needs Pillow)."""
        from ..render.weight_learning import animate

        return animate(self.history, path, what=what, fps=fps, **kwargs)

    def __repr__(self) -> str:
        return (
            f"WeightTracker(every={self.every}, tracked={len(self.names)} tensors, "
            f"snapshots={list(self.snapshot_names)}, budget={_fmt_bytes(self.budget)}, "
            f"records={len(self._steps)}, step={self._step})"
        )

    # -- from files -----------------------------------------------------------------------
    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | os.PathLike],
        steps: Sequence[int] | None = None,
        *,
        model: nn.Module | None = None,
        layers: LayerSpec | Sequence[LayerSpec] | None = None,
        snapshots: LayerSpec | Sequence[LayerSpec] | Sequence[str] | None = None,
        budget: int | str = "256MiB",
        bins: int = 64,
        input_shape: Sequence[int] | None = None,
    ) -> "WeightTracker":
        """A tracker whose history is built from state-dict checkpoints of an earlier run.

        ``steps[i]`` is the step of ``paths[i]`` (default ``0, 1, 2, ...``). With ``model``
        (architecture only; its weights are not read) the tracked and snapshotted tensors are
        chosen exactly as a live tracker on that model would, so the history equals the live
        one except ``grad_norm`` (NaN: checkpoints hold no gradients). Without a model every
        floating tensor is tracked and ``snapshots`` are parameter names (default: the first
        weight of 3+ dims and the last 2-D weight, each with its bias). Files are read with
        ``torch.load(weights_only=True)`` (or safetensors for ``*.safetensors``).
        """
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise TrackerError("from_checkpoints needs at least one checkpoint path")
        if steps is None:
            steps = list(range(len(paths)))
        steps = [_check_int("steps[i]", s, 0) for s in steps]
        if len(steps) != len(paths):
            raise TrackerError(f"got {len(paths)} paths but {len(steps)} steps; expected one step per path")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise TrackerError(f"steps must increase strictly, got {steps}")
        first = load_state_dict(paths[0])
        if model is not None:
            names, params = _tracked(model, layers)
            snap_names, snap_params = _snapshot_params(model, snapshots, _parse_budget(budget))
        else:
            if layers is not None:
                raise TrackerError("layers= needs model=; without a model pass snapshots= as parameter names")
            names = [k for k, v in first.items() if v.is_floating_point()]
            params = [first[k] for k in names]
            snap_names = default_snapshot_names(first) if snapshots is None else names_in(first, snapshots)
            snap_params = [first[k] for k in snap_names]
        self = cls.__new__(cls)
        self.model = None
        self._setup(
            names, params, snap_names, snap_params, every=1, budget=budget, bins=bins,
            input_shape=input_shape, sinks=(), start_step=0,
        )
        # "every" of the earlier run, as far as the steps tell (their greatest common divisor).
        g = 0
        for s in steps:
            g = math.gcd(g, s)
        self.every = g or 1
        for i, (path, step) in enumerate(zip(paths, steps)):
            sd = first if i == 0 else load_state_dict(path)
            missing = [n for n in list(names) + list(snap_names) if n not in sd]
            if missing:
                raise CheckpointError(f"{path}: missing {', '.join(missing[:5])} (expected the tracked tensors)")
            for n in list(names) + list(snap_names):
                if tuple(sd[n].shape) != self.shapes[n]:
                    raise CheckpointError(
                        f"{path}: {n} has shape {tuple(sd[n].shape)}, expected {self.shapes[n]}"
                    )
            self._step = step
            self._record([sd[n] for n in names], [sd[n] for n in snap_names], grads=False)
        return self


# -- choosing tensors ---------------------------------------------------------------------------


def _params_of(model: nn.Module, found: list[tuple[str, nn.Module]]) -> tuple[list[str], list[Tensor]]:
    by_id = {}
    for name, p in model.named_parameters():
        by_id.setdefault(id(p), name)
    seen: set[int] = set()
    out: list[tuple[str, Tensor]] = []
    for _, module in found:
        for p in module.parameters():
            if id(p) in seen or id(p) not in by_id:
                continue
            seen.add(id(p))
            out.append((by_id[id(p)], p))
    order = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    out.sort(key=lambda item: order[item[0]])
    return [n for n, _ in out], [p for _, p in out]


def _tracked(model: nn.Module, layers) -> tuple[list[str], list[Tensor]]:
    if layers is None:
        named = list(model.named_parameters())
        return [n for n, _ in named], [p for _, p in named]
    found = find_layers(model, layers)
    names, params = _params_of(model, found)
    if not names:
        raise LayerNotFoundError(
            f"layers {', '.join(n for n, _ in found)} hold no parameters; expected layers with weights",
            layers,
        )
    return names, params


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _chains(linears: Sequence[tuple[str, nn.Module]]) -> bool:
    """Whether the ``nn.Linear`` layers, in model order, form one chain: each reads what the
    previous one writes (``in_features == previous out_features``), as in an MLP."""
    return len(linears) >= 2 and all(b.in_features == a.out_features for (_, a), (_, b) in zip(linears, linears[1:]))


def _snapshot_params(model: nn.Module, snapshots, budget: int | None = None) -> tuple[list[str], list[Tensor]]:
    if snapshots is None:
        mods = list(model.named_modules())
        convs = [(n, m) for n, m in mods if isinstance(m, _CONV)]
        linears = [(n, m) for n, m in mods if isinstance(m, nn.Linear)]
        found = convs[:1] + linears[-1:] if convs else linears[:1] + linears[-1:]
        if not convs and _chains(linears):
            # An MLP: its class templates are W_L ... W_1, so every layer of the chain is kept,
            # when one snapshot of all of them fits the budget (else the first and the last).
            size = sum(p.numel() * p.element_size() for _, m in linears for p in m.parameters())
            if budget is None or size <= budget:
                found = linears
        if not found:
            return [], []
    else:
        if isinstance(snapshots, (list, tuple)) and len(snapshots) == 0:
            return [], []
        found = find_layers(model, snapshots)
    return _params_of(model, found)
