"""Dataset exemplars: the real inputs that excite each channel most, exactly, at any scale.

:func:`exemplars` streams the data once and keeps a running top-``k`` per channel
(memory ``O(channels * k)``, independent of the dataset size). The order is total:
higher value first, then lower dataset index, so the result equals a brute-force
``sort`` of the full activation table exactly, and partial results (shards of a
dataset, a run resumed with ``start=``) merge with :func:`merge` into the same
answer. For layers with positions each entry also carries the argmax position in the
layer (a step, a pixel, a voxel or a token, read through the layer's
:class:`~torchloupe.layers.Layout`) and the crop of the input under that position's
receptive field (a window of steps for 1-D convolutions, a box for 2-D, a block for 3-D,
the token's patch for tokens of an image).

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
from ..data import warn_skipped
from ..errors import ChannelError, InputError, TorchLoupeError, UsageError
from ..inputs import Inputs, check_finite, check_input
from ..layers import Layout, find_layers, layout_of
from ..probe import hooks, intercept, require_module, session


@dataclass(frozen=True)
class ExemplarResult:
    """Top-``k`` dataset samples per channel of ``layer``.

    ``values``: ``(C, k)`` the channel's reduced activation (``reduce`` over positions),
    best first (lowest first when ``negative``); ``indices``: ``(C, k)`` dataset indices
    (``-1`` where fewer than ``k`` samples were seen); ``channels``: the channel of each row
    (a feature of a token layer, never a token). ``layout``: how the layer output was read.
    Layers with positions also have ``locations`` ``(C, k, d)`` (argmax position in the layer,
    argmin when ``negative``: ``(step,)`` for ``(B, C, L)``, ``(row, col)`` for maps, ``(depth,
    row, col)`` for volumes, ``(token,)`` for ``(B, T, C)`` tokens, class token included);
    where a receptive field makes sense, ``boxes`` ``(C, k, 2d')`` (starts then ends in input
    coordinates, clipped to the input: ``y0, x0, y1, x1`` for images, ``t0, t1`` for sequences)
    and ``crops`` ``(C, k, input channels, *sizes)`` (the input under the box; for tokens of an
    image the token's patch, and for a class / register token, which has no patch, the whole
    image as box and zeros as crop); else these are ``None``.
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
    layout: Layout | None = None

    def merge(self, *others: "ExemplarResult") -> "ExemplarResult":
        return merge(self, *others)

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


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
def _inputs(batch: Any) -> Inputs:
    """The model inputs of a data batch (see :func:`exemplars` for what an item means)."""
    if isinstance(batch, Tensor):
        return Inputs((batch,))
    if isinstance(batch, dict):
        return Inputs.of(batch)
    if isinstance(batch, (tuple, list)) and batch:
        head = batch[0]
        if isinstance(head, Tensor):
            return Inputs((head,))
        if isinstance(head, dict):
            return Inputs.of(head)
        if isinstance(head, (tuple, list)) and head and all(isinstance(t, Tensor) for t in head):
            return Inputs(tuple(head))
    raise InputError(
        f"a data batch must be a tensor, a dict of keyword inputs, or a tuple whose first element is the "
        f"input (a tensor, a tuple of positional inputs or a dict), got {type(batch).__name__}"
    )


def _batches(data: Any, batch_size: int, start: int, stop: int | None, rank: int, world: int
             ) -> tuple[Iterator[tuple[int, Inputs, Tensor | None]], int | None, Any]:
    """``(global index of first sample, input batch, dataset indices of its samples or None)`` for
    this rank's batches; their count; and ``(dataset, collate_fn)`` when samples can be fetched
    again by index (else ``None``). A collated batch may name its samples' dataset indices in
    ``batch.indices`` (a collate function that dropped unreadable files:
    :meth:`torchloupe.data.ImageFiles.collate_fn`, which a dataset given alone brings along)."""
    loader_kw: dict[str, Any] = {}
    dataset = None
    if isinstance(data, DataLoader):
        if (not isinstance(data.dataset, IterableDataset) and isinstance(data.sampler, SequentialSampler)
                and data.batch_size is not None):
            dataset, batch_size = data.dataset, data.batch_size
            loader_kw = {"collate_fn": data.collate_fn, "num_workers": data.num_workers, "pin_memory": data.pin_memory}
    elif isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        dataset = data
        if callable(getattr(data, "collate_fn", None)):
            loader_kw = {"collate_fn": data.collate_fn}
    if dataset is not None:
        n = len(dataset)
        end = n if stop is None else min(stop, n)
        starts = list(range(start, end, batch_size))
        mine = starts[rank::world]
        sampler = [list(range(s, min(s + batch_size, end))) for s in mine]
        loader = DataLoader(dataset, batch_sampler=sampler, generator=torch.Generator(), **loader_kw)
        collate = loader_kw.get("collate_fn") or torch.utils.data.default_collate
        return ((s, _inputs(b), getattr(b, "indices", None)) for s, b in zip(mine, loader)), len(mine), (dataset, collate)
    if isinstance(data, IterableDataset):
        data = DataLoader(data, batch_size=batch_size, generator=torch.Generator())
    if not isinstance(data, Iterable):
        raise InputError(f"data must be a Dataset, a DataLoader or an iterable of batches, got {type(data).__name__}")

    def gen() -> Iterator[tuple[int, Inputs]]:
        count = 0
        for j, batch in enumerate(data):
            x = _inputs(batch)
            first = count
            count += x.batch_size
            if stop is not None and first >= stop:
                break
            if count <= start or j % world != rank:
                continue
            lo, hi = max(start - first, 0), x.batch_size if stop is None else min(x.batch_size, stop - first)
            yield first + lo, x.slice(lo, hi), None

    return gen(), None, None


def _crops_by_index(source, indices: Tensor, locations: Tensor, rf: "_Field", wrt, device) -> tuple[Tensor, Tensor]:
    """Boxes and crops of the final winners, fetched again from a map-style dataset."""
    dataset, collate = source
    valid = indices >= 0
    unique = torch.unique(indices[valid]).tolist() if bool(valid.any()) else []
    fetched = [_inputs(collate([dataset[i] for i in unique[j:j + 64]])).get(wrt) for j in range(0, len(unique), 64)]
    xs = torch.cat(fetched).to(device)
    pos = {i: n for n, i in enumerate(unique)}
    b = torch.tensor([pos.get(int(i), 0) for i in indices.reshape(-1).tolist()], device=device)
    boxes, crops = _crops(xs, b, locations.reshape(-1, locations.shape[-1]), rf)
    boxes = boxes.reshape(*indices.shape, boxes.shape[-1])
    crops = crops.reshape(*indices.shape, *crops.shape[1:])
    crops = crops * valid.reshape(*indices.shape, *([1] * (crops.dim() - 2))).to(crops.dtype)
    return boxes * valid[..., None], crops


# --- receptive field ------------------------------------------------------------------------
def _identity(input, *args, **kwargs):
    return input


@dataclass(frozen=True)
class _Field:
    """The receptive field of a layer's positions in the input's spatial axes: position ``p`` of
    the layer sees ``[offset + p * stride, + size)`` on each axis. ``tokens``: ``(extra, grid)``
    when the locations are token indices on an image's patch grid (a token sees its patch)."""

    size: tuple[int, ...]
    offset: tuple[float, ...]
    stride: tuple[float, ...]
    tokens: tuple[int, tuple[int, ...]] | None = None


def _measure(model: nn.Module, module: nn.Module, inputs: Inputs, wrt: Any, layout: Layout | None) -> _Field:
    """The receptive field of ``module``'s positions in input ``wrt``, measured (see
    :func:`receptive_field`), for any number of spatial axes."""
    out: dict[str, Tensor] = {}

    def hook(m, args, output):
        out["a"] = output

    example = inputs.get(wrt)
    gen = torch.Generator(device=example.device).manual_seed(0)
    x = torch.rand(4, *example.shape[1:], generator=gen, device=example.device, dtype=example.dtype)
    x = (x * (example.max() - example.min()) + example.min()).requires_grad_(True)
    probe_inputs = inputs.slice(0, 1).repeat(4).replace(wrt, x)
    idn = {torch.relu: _identity, torch.nn.functional.relu: _identity, torch.relu_: _identity,
           Tensor.relu: _identity, Tensor.relu_: _identity, torch.nn.functional.relu6: _identity}
    with session(model, freeze=True) as run, hooks(forward={module: hook}), intercept(idn), torch.enable_grad():
        run(probe_inputs)
        a = out["a"] if layout is None else layout.to_bcs(out["a"], grid=False)
        centre = tuple(s // 2 for s in a.shape[2:])
        # channels weighted at random, so that opposite channels (a detector and its negation)
        # cannot cancel each other's gradient
        r = 0.5 + torch.rand(a.shape[1], generator=gen, device=example.device, dtype=a.dtype)
        (g,) = torch.autograd.grad((a[(slice(None), slice(None), *centre)] * r).sum(), x)
    support = g.abs().sum(dim=(0, 1)) > 0  # (*In)
    In = tuple(x.shape[2:])
    stride = tuple(i / s for i, s in zip(In, a.shape[2:]))
    if not bool(support.any()):
        return _Field(In, (0.0,) * len(In), (0.0,) * len(In))
    size, offset = [], []
    for axis in range(len(In)):
        others = tuple(o for o in range(len(In)) if o != axis)
        hit = torch.nonzero(support.any(dim=others) if others else support).flatten()
        lo, hi = int(hit.min()), int(hit.max()) + 1
        size.append(hi - lo)
        offset.append(lo - centre[axis] * stride[axis])
    return _Field(tuple(size), tuple(offset), stride)


def receptive_field(model: nn.Module, module: nn.Module, example: Tensor) -> tuple[int, int, float, float, float, float]:
    """``(rh, rw, y0, x0, sy, sx)`` for a 2D layer: the box of input pixels that can move the unit
    at layer position ``(i, j)`` is ``[y0 + i*sy, +rh) x [x0 + j*sx, +rw)``.

    Measured, not derived: the gradient of the centre position (all channels, weighted at random)
    with respect to a few random inputs, with ReLU-family functions made the identity so no unit
    hides its inputs; the union of the non-zero support is the box. ``sy, sx`` = input size / layer size.
    The forward runs in a :func:`~torchloupe.probe.session` (eval mode, parameters frozen); the
    model comes back as it went in. (:func:`exemplars` measures layers of any rank the same way.)
    """
    f = _measure(model, module, Inputs((example,)), 0, None)
    return (*f.size, *f.offset, *f.stride)


def _starts(loc: Tensor, rf: _Field, In: tuple[int, ...], size: list[int]) -> tuple[Tensor, Tensor]:
    """Window starts ``(n, nd)`` of positions ``loc`` ``(n, d)`` and which have a window ``(n,)``."""
    if rf.tokens is not None:
        extra, grid = rf.tokens
        p = loc[:, 0] - extra
        valid = p >= 0
        p = p.clamp_min(0)
        coords = []
        for g in reversed(grid):
            coords.append(p % g)
            p = p // g
        loc = torch.stack(coords[::-1], 1)
    else:
        valid = torch.ones(loc.shape[0], dtype=torch.bool, device=loc.device)
    starts = [(rf.offset[i] + loc[:, i].to(torch.float64) * rf.stride[i]).round().long().clamp(0, In[i] - size[i])
              for i in range(len(In))]
    return torch.stack(starts, 1), valid


def _crops(x: Tensor, b: Tensor, loc: Tensor, rf: _Field) -> tuple[Tensor, Tensor]:
    """Boxes ``(n, 2 nd)`` and crops ``(n, C, *sizes)`` of batch items ``b`` at layer positions ``loc`` (n, d)."""
    In = tuple(x.shape[2:])
    nd = len(In)
    size = [min(r, i) for r, i in zip(rf.size, In)]
    n = b.shape[0]
    whole = torch.tensor([0] * nd + list(In), device=x.device)
    if rf.tokens is None and tuple(size) == In:  # the receptive field covers the input: the whole sample
        return whole.expand(n, 2 * nd), x.index_select(0, b)
    starts, valid = _starts(loc, rf, In, size)
    index = [b.reshape(n, *([1] * nd))]
    for i in range(nd):
        idx = starts[:, i, None] + torch.arange(size[i], device=x.device)
        index.append(idx.reshape(n, *([1] * i), size[i], *([1] * (nd - 1 - i))))
    crops = x.movedim(1, -1)[tuple(index)].movedim(-1, 1)
    boxes = torch.cat([starts, starts + torch.tensor(size, device=x.device)], 1)
    if not bool(valid.all()):  # class / register tokens: no patch
        crops = crops * valid.reshape(n, *([1] * (crops.dim() - 1))).to(crops.dtype)
        boxes = torch.where(valid[:, None], boxes, whole)
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
    channel_dim: int | None = None,
    wrt: int | str | None = None,
) -> ExemplarResult:
    """Exact top-``k`` samples of ``data`` per channel of ``layer``.

    ``data``: a map-style ``Dataset``, a ``DataLoader``, or any iterable of batches. What an item
    (or a batch) means: a tensor is the model's one input; a tuple or list ``(inputs, *rest)``
    (``(x, label)``, ``TensorDataset``'s ``(x,)``) has the model input first, and that input is a
    tensor, a tuple of tensors (positional inputs: an item ``((x1, x2), y)`` calls
    ``model(x1, x2)``) or a dict (keyword inputs); a dict item is the keyword inputs themselves
    (``model(**item)``). Dataset indices count samples in iteration order. Image files from disk
    (:func:`torchloupe.data.images`): unreadable files are left out, indices stay file indices
    (``ds.paths[i]``), and one :class:`~torchloupe.data.SkippedFilesWarning` counts them at the end.
    ``reduce``: ``"mean"`` or ``"max"`` over the layer's positions; ``negative``: the samples
    that drive the channel lowest. ``channels``: restrict to these channels.
    The channel axis comes from the layer's :class:`~torchloupe.layers.Layout` (``channel_dim=``
    to say it): dim 1 of ``(B, C, *S)`` convolutions of any rank, the last dim of ``(B, T, C)``
    tokens and of channels-last ``(B, H, W, C)`` outputs.
    ``start`` / ``stop``: only samples ``start <= index < stop`` (resume a run, then :func:`merge`).
    ``crops``: keep the receptive-field crop of each exemplar, cut from input ``wrt`` (layers whose
    positions match its spatial axes, and tokens of an image: their patch).
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
        head[1].get(wrt)  # wrt names an input
        if head[1].single and head[1].batch_size:
            check_input(model, head[1].first.to(device), name=f"the data batch at sample {head[0]}")
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
    lay: Layout | None = None
    rf: _Field | None = None
    want_crops = False
    example: Tensor | None = None
    seen = 0
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"exemplars {name}", leave=False)
    with session(model) as run:
        with hooks(forward={module: hook}), torch.no_grad():
            for first_index, inputs, given_index in batches:
                inputs = inputs.to(device)
                n = inputs.batch_size
                if n == 0:
                    continue
                for key, t in inputs.tensors():
                    check_finite(t, f"the data batch at sample {first_index}" + ("" if inputs.single else f" (input {key})"))
                flags["calls"] = 0
                try:
                    run(inputs)
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
                    x = inputs.get(wrt)
                    xshape = tuple(x.shape) if isinstance(x, Tensor) else None
                    lay = layout_of(a, xshape, channel_dim, module=module)
                    c_all = lay.channels
                    chans = list(range(c_all)) if channels is None else [int(c) for c in channels]
                    bad = [c for c in chans if not 0 <= c < c_all]
                    if bad:
                        raise ChannelError(f"channel {bad[0]} is out of range for layer {name!r} with {c_all} "
                                           f"channels (0..{c_all - 1})")
                    chan_idx = torch.tensor(chans, device=a.device)
                    spatial = len(lay.positions)
                    example = x[:1] if isinstance(x, Tensor) else None
                    if crops and isinstance(x, Tensor) and x.is_floating_point() and spatial:
                        if lay.kind == "tokens" and lay.grid is not None and x.dim() == 4:
                            patch = tuple(i // g for i, g in zip(x.shape[2:], lay.grid))
                            rf = _Field(patch, (0.0, 0.0), tuple(float(p) for p in patch), (lay.extra, lay.grid))
                        elif lay.kind != "tokens" and x.dim() - 2 == spatial:
                            flags["rf"] = True
                            try:
                                rf = _measure(model, module, inputs.slice(0, 1), wrt, lay)
                            finally:
                                flags["rf"] = False
                    want_crops = rf is not None
                    # Samples that can be fetched again by index get their crops once, at the end.
                    state = _empty(len(chans), k, a, x, spatial, rf, want_crops and source is None)
                a = lay.to_bcs(a, grid=False).index_select(1, chan_idx).float()
                flat = a.reshape(n, a.shape[1], -1)
                vals = flat.mean(-1) if reduce == "mean" else (flat.amin(-1) if negative else flat.amax(-1))
                vals = vals.T  # (C, n)
                scores = torch.nan_to_num(vals * sign, nan=-math.inf)
                idx = (first_index + torch.arange(n, device=a.device) if given_index is None
                       else given_index.to(a.device)).expand_as(vals)
                cand = _State(scores, vals, idx, None, None, None)
                if state.locations is not None:
                    arg = (flat.argmin(-1) if negative else flat.argmax(-1)).T  # (C, n)
                    coords = []
                    for size in reversed(a.shape[2:]):
                        coords.append(arg % size)
                        arg = arg // size
                    cand.locations = torch.stack(coords[::-1], -1)
                    if state.crops is not None:
                        cand.boxes = torch.zeros(*vals.shape, state.boxes.shape[-1], dtype=torch.long, device=a.device)
                        cand.crops = torch.zeros(vals.shape[0], n, *state.crops.shape[2:], dtype=state.crops.dtype, device=a.device)
                state = _merge_batch(state, cand, k, inputs.get(wrt), rf)
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
        negative=negative, k=k, seen=seen, layout=lay,
    )
    if use_dist:
        result = _all_merge(result)
    if want_crops and source is not None:
        boxes, crop_t = _crops_by_index(source, result.indices, result.locations, rf, wrt, example.device)
        result = replace(result, boxes=boxes, crops=crop_t.to(example.dtype))
    warn_skipped(data, use_dist)  # image files that could not be read: the count and the first few, once
    return result


def _empty(c: int, k: int, a: Tensor, x: Any, spatial: int, rf: _Field | None, want_crops: bool) -> _State:
    dev = a.device
    loc = torch.zeros(c, k, spatial, dtype=torch.long, device=dev) if spatial > 0 else None
    boxes = crops_ = None
    if want_crops:
        size = [min(r, i) for r, i in zip(rf.size, x.shape[2:])]
        boxes = torch.zeros(c, k, 2 * len(size), dtype=torch.long, device=dev)
        crops_ = torch.zeros(c, k, x.shape[1], *size, dtype=x.dtype, device=dev)
    return _State(torch.full((c, k), -math.inf, device=dev), torch.full((c, k), math.nan, device=dev),
                  torch.full((c, k), -1, dtype=torch.long, device=dev), loc, boxes, crops_)


def _merge_batch(state: _State, cand: _State, k: int, x: Tensor, rf: _Field | None) -> _State:
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
    boxes, crops = _crops(x, b.reshape(-1), new.locations.reshape(-1, new.locations.shape[-1]), rf)
    boxes = boxes.reshape(*pos.shape, boxes.shape[-1])
    crops = crops.reshape(*pos.shape, *crops.shape[1:])
    old_pos = pos.clamp_max(kept - 1)
    new.boxes = torch.where(from_batch[..., None], boxes, _take(state.boxes, old_pos))
    new.crops = torch.where(from_batch.reshape(*pos.shape, *([1] * (crops.dim() - 2))),
                            crops.to(state.crops.dtype), _take(state.crops, old_pos))
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
