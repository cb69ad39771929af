"""Dataset exemplars: the real inputs that excite each channel most, exactly, at any scale.

:func:`exemplars` streams the data once and keeps a running top-``k`` per channel
(memory ``O(channels * k)``, independent of the dataset size). The order is total:
higher value first, then lower dataset index, so the result equals a brute-force
``sort`` of the full activation table exactly, and partial results (shards of a
dataset, a run resumed with ``start=``) merge with :func:`merge` into the same
answer. For spatial layers each entry also carries the argmax position in the
layer and the crop of the input under that position's receptive field.

Under ``torchrun`` each rank takes every ``world``-th batch and the ranks merge
with ``all_gather``; every rank gets the single-process result
(see :mod:`torchloupe.distributed`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from .. import distributed as D
from ..errors import ChannelError, InputError, TorchLoupeError, UsageError
from ..inputs import check_finite, check_input
from ..layers import find_layers
from ..probe import hooks, intercept, require_module, session


@dataclass(frozen=True)
class ExemplarResult:
    """Top-``k`` dataset samples per channel of ``layer``.

    ``values``: ``(C, k)`` the channel's reduced activation (``reduce`` over positions),
    best first (lowest first when ``negative``); ``indices``: ``(C, k)`` dataset indices
    (``-1`` where fewer than ``k`` samples were seen); ``channels``: the channel of each row.
    Spatial layers also have ``locations`` ``(C, k, d)`` (argmax position in the layer,
    argmin when ``negative``), ``boxes`` ``(C, k, 4)`` (``y0, x0, y1, x1`` of the receptive
    field in input pixels, clipped to the input) and ``crops`` ``(C, k, *input channels,
    rh, rw)`` (the input under the box); else these are ``None``.
    """

    layer: str
    channels: tuple[int, ...]
    values: Tensor
    indices: Tensor
    locations: Tensor | None
    boxes: Tensor | None
    crops: Tensor | None
    reduce: str
    negative: bool
    k: int
    seen: int

    def merge(self, *others: "ExemplarResult") -> "ExemplarResult":
        return merge(self, *others)


# --- ordering -------------------------------------------------------------------------------
def _order(scores: Tensor, index: Tensor) -> Tensor:
    """Positions sorting each row by score descending, then dataset index ascending."""
    by_index = torch.sort(index, dim=1, stable=True).indices
    s = scores.gather(1, by_index)
    by_score = torch.sort(s, dim=1, descending=True, stable=True).indices
    return by_index.gather(1, by_score)


def _take(t: Tensor | None, pos: Tensor) -> Tensor | None:
    if t is None:
        return None
    p = pos.reshape(*pos.shape, *([1] * (t.dim() - 2))).expand(*pos.shape, *t.shape[2:])
    return t.gather(1, p)


@dataclass
class _State:
    scores: Tensor  # (C, k) sort key: value, or -value when negative
    values: Tensor
    indices: Tensor
    locations: Tensor | None
    boxes: Tensor | None
    crops: Tensor | None

    def fields(self):
        return [self.scores, self.values, self.indices, self.locations, self.boxes, self.crops]


def _select(cands: list[_State], k: int) -> _State:
    cat = [None if f[0] is None else torch.cat(f, 1) for f in zip(*(c.fields() for c in cands))]
    pos = _order(cat[0], cat[2])[:, :k]
    return _State(*(_take(t, pos) for t in cat))


def merge(*results: ExemplarResult) -> ExemplarResult:
    """One result from partial results over disjoint samples (shards, or a run and its resumption)."""
    if not results:
        raise UsageError("merge needs at least one ExemplarResult")
    first = results[0]
    for r in results[1:]:
        same = (r.layer, r.channels, r.reduce, r.negative, r.k) == (first.layer, first.channels, first.reduce, first.negative, first.k)
        if not same:
            raise UsageError(
                f"cannot merge exemplars of {r.layer!r} (reduce={r.reduce}, negative={r.negative}, k={r.k}) "
                f"with {first.layer!r} (reduce={first.reduce}, negative={first.negative}, k={first.k})"
            )
    sign = -1.0 if first.negative else 1.0
    states = []
    for r in results:
        scores = torch.where(r.indices >= 0, r.values * sign, torch.full_like(r.values, -math.inf))
        states.append(_State(scores, r.values, r.indices, r.locations, r.boxes, r.crops))
    s = _select(states, first.k)
    return replace(first, values=s.values, indices=s.indices, locations=s.locations, boxes=s.boxes,
                   crops=s.crops, seen=sum(r.seen for r in results))


# --- data -----------------------------------------------------------------------------------
def _first(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, Tensor):
                return v
    raise TorchLoupeError(
        f"a data batch must be a tensor or a tuple whose first element is the input tensor, got {type(batch).__name__}"
    )


def _batches(data: Any, batch_size: int, start: int, stop: int | None, rank: int, world: int
             ) -> tuple[Iterator[tuple[int, Tensor]], int | None, Any]:
    """``(global index of first sample, input batch)`` for this rank's batches; their count; and
    ``(dataset, collate_fn)`` when samples can be fetched again by index (else ``None``)."""
    loader_kw: dict[str, Any] = {}
    dataset = None
    if isinstance(data, DataLoader):
        if (not isinstance(data.dataset, IterableDataset) and isinstance(data.sampler, SequentialSampler)
                and data.batch_size is not None):
            dataset, batch_size = data.dataset, data.batch_size
            loader_kw = {"collate_fn": data.collate_fn, "num_workers": data.num_workers, "pin_memory": data.pin_memory}
    elif isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        dataset = data
    if dataset is not None:
        n = len(dataset)
        end = n if stop is None else min(stop, n)
        starts = list(range(start, end, batch_size))
        mine = starts[rank::world]
        sampler = [list(range(s, min(s + batch_size, end))) for s in mine]
        loader = DataLoader(dataset, batch_sampler=sampler, generator=torch.Generator(), **loader_kw)
        collate = loader_kw.get("collate_fn") or torch.utils.data.default_collate
        return ((s, _first(b)) for s, b in zip(mine, loader)), len(mine), (dataset, collate)
    if isinstance(data, IterableDataset):
        data = DataLoader(data, batch_size=batch_size, generator=torch.Generator())
    if not isinstance(data, Iterable):
        raise InputError(f"data must be a Dataset, a DataLoader or an iterable of batches, got {type(data).__name__}")

    def gen() -> Iterator[tuple[int, Tensor]]:
        count = 0
        for j, batch in enumerate(data):
            x = _first(batch)
            first = count
            count += x.shape[0]
            if stop is not None and first >= stop:
                break
            if count <= start or j % world != rank:
                continue
            lo, hi = max(start - first, 0), x.shape[0] if stop is None else min(x.shape[0], stop - first)
            yield first + lo, x[lo:hi]

    return gen(), None, None


def _crops_by_index(source, indices: Tensor, locations: Tensor, rf, device) -> tuple[Tensor, Tensor]:
    """Boxes and crops of the final winners, fetched again from a map-style dataset."""
    dataset, collate = source
    valid = indices >= 0
    unique = torch.unique(indices[valid]).tolist() if bool(valid.any()) else []
    fetched = [_first(collate([dataset[i] for i in unique[j:j + 64]])) for j in range(0, len(unique), 64)]
    xs = torch.cat(fetched).to(device)
    pos = {i: n for n, i in enumerate(unique)}
    b = torch.tensor([pos.get(int(i), 0) for i in indices.reshape(-1).tolist()], device=device)
    boxes, crops = _crops(xs, b, locations.reshape(-1, 2), rf)
    boxes = boxes.reshape(*indices.shape, 4)
    crops = crops.reshape(*indices.shape, *crops.shape[1:])
    crops = crops * valid.reshape(*indices.shape, 1, 1, 1).to(crops.dtype)
    return boxes * valid[..., None], crops


# --- receptive field ------------------------------------------------------------------------
def _identity(input, *args, **kwargs):
    return input


def receptive_field(model: nn.Module, module: nn.Module, example: Tensor) -> tuple[int, int, float, float, float, float]:
    """``(rh, rw, y0, x0, sy, sx)`` for a 2D layer: the box of input pixels that can move the unit
    at layer position ``(i, j)`` is ``[y0 + i*sy, +rh) x [x0 + j*sx, +rw)``.

    Measured, not derived: the gradient of the centre position (all channels) with respect to
    a few random inputs, with ReLU-family functions made the identity so no unit hides its
    inputs; the union of the non-zero support is the box. ``sy, sx`` = input size / layer size.
    The forward runs in a :func:`~torchloupe.probe.session` (eval mode, parameters frozen); the
    model comes back as it went in.
    """
    out: dict[str, Tensor] = {}

    def hook(m, args, output):
        out["a"] = output

    gen = torch.Generator(device=example.device).manual_seed(0)
    x = torch.rand(4, *example.shape[1:], generator=gen, device=example.device, dtype=example.dtype)
    x = (x * (example.max() - example.min()) + example.min()).requires_grad_(True)
    idn = {torch.relu: _identity, torch.nn.functional.relu: _identity, torch.relu_: _identity,
           Tensor.relu: _identity, Tensor.relu_: _identity, torch.nn.functional.relu6: _identity}
    with session(model, freeze=True) as run, hooks(forward={module: hook}), intercept(idn), torch.enable_grad():
        run(x)
        a = out["a"]
        h, w = a.shape[-2:]
        ci, cj = h // 2, w // 2
        (g,) = torch.autograd.grad(a[:, :, ci, cj].sum(), x)
    support = g.abs().sum(dim=(0, 1)) > 0  # (H, W)
    H, W = x.shape[-2:]
    sy, sx = H / h, W / w
    if not bool(support.any()):
        return H, W, 0.0, 0.0, 0.0, 0.0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    return y1 - y0, x1 - x0, y0 - ci * sy, x0 - cj * sx, sy, sx


def _crops(x: Tensor, b: Tensor, loc: Tensor, rf) -> tuple[Tensor, Tensor]:
    """Boxes ``(n, 4)`` and crops ``(n, C, rh, rw)`` of batch items ``b`` at layer positions ``loc`` (n, 2)."""
    rh, rw, y0, x0, sy, sx = rf
    H, W = x.shape[-2:]
    rh, rw = min(rh, H), min(rw, W)
    if (rh, rw) == (H, W):  # the receptive field covers the input: the crop is the whole sample
        boxes = torch.tensor([0, 0, H, W], device=x.device).expand(b.shape[0], 4)
        return boxes, x.index_select(0, b)
    top = (y0 + loc[:, 0].to(torch.float64) * sy).round().long().clamp(0, H - rh)
    left = (x0 + loc[:, 1].to(torch.float64) * sx).round().long().clamp(0, W - rw)
    rows = top[:, None] + torch.arange(rh, device=x.device)
    cols = left[:, None] + torch.arange(rw, device=x.device)
    crops = x.permute(0, 2, 3, 1)[b[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    boxes = torch.stack([top, left, top + rh, left + rw], 1)
    return boxes, crops


class _Stop(Exception):
    pass


# --- main entry -----------------------------------------------------------------------------
def exemplars(
    model: nn.Module,
    data: Any,
    layer: str | nn.Module,
    *,
    k: int = 9,
    reduce: str = "mean",
    negative: bool = False,
    channels: Sequence[int] | None = None,
    batch_size: int = 64,
    start: int = 0,
    stop: int | None = None,
    crops: bool = True,
    distributed: bool | None = None,
    progress: bool = False,
) -> ExemplarResult:
    """Exact top-``k`` samples of ``data`` per channel of ``layer``.

    ``data``: a map-style ``Dataset`` (items are samples; a tuple's first element is the
    input), a ``DataLoader``, or any iterable of batches (tensors, or tuples whose first
    element is the input batch). Dataset indices count samples in iteration order.
    ``reduce``: ``"mean"`` or ``"max"`` over the layer's positions; ``negative``: the samples
    that drive the channel lowest. ``channels``: restrict to these channels.
    ``start`` / ``stop``: only samples ``start <= index < stop`` (resume a run, then :func:`merge`).
    ``crops``: keep the receptive-field crop of each exemplar (2D layers of image models).
    ``distributed``: ``None`` = split over ranks when a process group is active.
    Returns an :class:`ExemplarResult` (on every rank the same).
    """
    require_module(model)
    if reduce not in ("mean", "max"):
        raise UsageError(f"reduce={reduce!r} is not known; expected 'mean' or 'max'")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"k must be a positive int, got {k!r}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    if start < 0 or (stop is not None and stop < start):
        raise UsageError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    name, module = find_layers(model, layer)[0]
    use_dist = D.is_active() if distributed is None else (distributed and D.is_active())
    rank, world = (D.rank(), D.world_size()) if use_dist else (0, 1)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    batches, total, source = _batches(data, batch_size, start, stop, rank, world)
    # The first batch against the model's first layer before any work (a typed error naming both
    # shapes), outside the hooks below.
    batches = iter(batches)
    head = next(batches, None)
    if head is not None:
        check_input(model, head[1].to(device), name=f"the data batch at sample {head[0]}")
        batches = itertools.chain([head], batches)
    sign = -1.0 if negative else 1.0

    acts: dict[str, Tensor] = {}
    flags = {"stop": False, "calls": 0, "rf": False}

    def hook(m, args, output):
        if not isinstance(output, Tensor):
            raise TorchLoupeError(f"layer {name!r} returns {type(output).__name__}; exemplars need a tensor output")
        if flags["rf"]:
            return
        flags["calls"] += 1
        acts["a"] = output if flags["stop"] else output.clone()  # pre-activation even before an in-place ReLU
        if flags["stop"]:
            raise _Stop

    state: _State | None = None
    chan_idx: Tensor | None = None
    rf = None
    want_crops = False
    example: Tensor | None = None
    seen = 0
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"exemplars {name}", leave=False)
    with session(model) as run:
        with hooks(forward={module: hook}), torch.no_grad():
            for first_index, x in batches:
                x = x.to(device)
                n = x.shape[0]
                if n == 0:
                    continue
                check_finite(x, f"the data batch at sample {first_index}")
                flags["calls"] = 0
                try:
                    run(x)
                except _Stop:
                    pass
                if "a" not in acts:
                    raise TorchLoupeError(f"layer {name!r} did not run in the forward pass")
                if state is None and flags["calls"] == 1:
                    flags["stop"] = True  # the layer runs once per forward: later forwards stop there
                a = acts.pop("a")
                if a.dim() < 2:
                    raise TorchLoupeError(f"layer {name!r} output has shape {tuple(a.shape)}; expected (B, C, ...)")
                if state is None:
                    c_all = a.shape[1]
                    chans = list(range(c_all)) if channels is None else [int(c) for c in channels]
                    bad = [c for c in chans if not 0 <= c < c_all]
                    if bad:
                        raise ChannelError(f"channel {bad[0]} is out of range for layer {name!r} with {c_all} channels (0..{c_all - 1})")
                    chan_idx = torch.tensor(chans, device=a.device)
                    spatial = a.dim() - 2
                    want_crops = crops and spatial == 2 and x.dim() == 4
                    example = x[:1]
                    if want_crops:
                        flags["rf"] = True
                        try:
                            rf = receptive_field(model, module, x[:1])
                        finally:
                            flags["rf"] = False
                    # Samples that can be fetched again by index get their crops once, at the end.
                    state = _empty(len(chans), k, a, x, spatial, rf, want_crops and source is None)
                a = a.index_select(1, chan_idx).float()
                flat = a.reshape(n, a.shape[1], -1)
                vals = flat.mean(-1) if reduce == "mean" else (flat.amin(-1) if negative else flat.amax(-1))
                vals = vals.T  # (C, n)
                scores = torch.nan_to_num(vals * sign, nan=-math.inf)
                idx = (first_index + torch.arange(n, device=a.device)).expand_as(vals)
                cand = _State(scores, vals, idx, None, None, None)
                if state.locations is not None:
                    arg = (flat.argmin(-1) if negative else flat.argmax(-1)).T  # (C, n)
                    # (C, n, d): the position in the layer's d spatial dimensions (1D sequences too)
                    cand.locations = torch.stack(torch.unravel_index(arg, tuple(a.shape[2:])), -1)
                    if state.crops is not None:
                        cand.boxes = torch.zeros(*vals.shape, 4, dtype=torch.long, device=a.device)
                        cand.crops = torch.zeros(vals.shape[0], n, *state.crops.shape[2:], dtype=state.crops.dtype, device=a.device)
                state = _merge_batch(state, cand, k, x, rf)
                seen += n
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    if state is None:
        raise TorchLoupeError("data yielded no samples; exemplars need at least one batch")
    result = ExemplarResult(
        layer=name, channels=tuple(chan_idx.tolist()), values=state.values, indices=state.indices,
        locations=state.locations, boxes=state.boxes, crops=state.crops, reduce=reduce,
        negative=negative, k=k, seen=seen,
    )
    if use_dist:
        result = _all_merge(result)
    if want_crops and source is not None:
        boxes, crop_t = _crops_by_index(source, result.indices, result.locations, rf, example.device)
        result = replace(result, boxes=boxes, crops=crop_t.to(example.dtype))
    return result


def _empty(c: int, k: int, a: Tensor, x: Tensor, spatial: int, rf, want_crops: bool) -> _State:
    dev = a.device
    loc = torch.zeros(c, k, spatial, dtype=torch.long, device=dev) if spatial > 0 else None
    boxes = crops_ = None
    if want_crops:
        rh, rw = min(rf[0], x.shape[-2]), min(rf[1], x.shape[-1])
        boxes = torch.zeros(c, k, 4, dtype=torch.long, device=dev)
        crops_ = torch.zeros(c, k, x.shape[1], rh, rw, dtype=x.dtype, device=dev)
    return _State(torch.full((c, k), -math.inf, device=dev), torch.full((c, k), math.nan, device=dev),
                  torch.full((c, k), -1, dtype=torch.long, device=dev), loc, boxes, crops_)


def _merge_batch(state: _State, cand: _State, k: int, x: Tensor, rf) -> _State:
    if state.crops is None:
        return _select([state, cand], k)
    # Select on keys first, then cut crops only for the winners that come from this batch.
    cat_scores = torch.cat([state.scores, cand.scores], 1)
    cat_index = torch.cat([state.indices, cand.indices], 1)
    pos = _order(cat_scores, cat_index)[:, :k]
    kept = state.scores.shape[1]
    new = _State(*(_take(torch.cat([s, c], 1), pos) for s, c in
                   zip([state.scores, state.values, state.indices, state.locations],
                       [cand.scores, cand.values, cand.indices, cand.locations])), None, None)
    from_batch = pos >= kept
    b = (pos - kept).clamp_min(0)
    boxes, crops = _crops(x, b.reshape(-1), new.locations.reshape(-1, 2), rf)
    boxes = boxes.reshape(*pos.shape, 4)
    crops = crops.reshape(*pos.shape, *crops.shape[1:])
    old_pos = pos.clamp_max(kept - 1)
    new.boxes = torch.where(from_batch[..., None], boxes, _take(state.boxes, old_pos))
    new.crops = torch.where(from_batch.reshape(*pos.shape, 1, 1, 1), crops.to(state.crops.dtype), _take(state.crops, old_pos))
    return new


def _all_merge(result: ExemplarResult) -> ExemplarResult:
    parts = {}
    for field in ("values", "indices", "locations", "boxes", "crops"):
        t = getattr(result, field)
        parts[field] = None if t is None else D.all_gather(t)
    seen = D.all_gather(torch.tensor([result.seen], device=result.values.device))
    shards = [
        replace(result, **{f: (None if parts[f] is None else parts[f][i]) for f in parts}, seen=int(seen[i]))
        for i in range(len(parts["values"]))
    ]
    return merge(*shards)
