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

Under ``torchrun`` each rank takes every ``world``-th batch and the ranks exchange their
partial results (``all_gather_object``; a rank left without a batch sends nothing) and merge
them; every rank gets the single-process result exactly (see :mod:`torchloupe.distributed`).
Crops are cut on use from the winners' inputs, kept once each (see :class:`ExemplarResult`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from .. import distributed as D
from ..data import warn_skipped
from ..errors import ChannelError, InputError, InputShapeError, TorchLoupeError, UsageError
from ..inputs import Inputs, check_finite, check_input
from .._limits import check_memory
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
    and ``crops`` ``(C, k, input channels, *crop_size)`` (the input under the box; for tokens of an
    image the token's patch, and for a class / register token, which has no patch, the whole
    image as box and zeros as crop); else these are ``None``.

    The crops are cut on first use from ``samples`` ``(U, input channels, *input sizes)``, the
    inputs of the exemplars that have a crop, once each, by ascending dataset index;
    ``sample_of`` ``(C, k)`` is the row of ``samples`` each crop comes from (``-1``: a zero crop).
    A full ``crops`` tensor can be large (every channel's ``k`` crops: resnet50 ``layer4`` at
    224 px is 11 GB); :meth:`crop` cuts one. ``spans``: the dataset index ranges ``[start, stop)``
    the result has seen; ``model``: a fingerprint of the model (class, parameter count, a digest of
    the weights) so :func:`merge` refuses results of different models.
    """

    layer: str
    channels: tuple[int, ...]
    values: Tensor
    indices: Tensor
    locations: Tensor | None
    boxes: Tensor | None
    reduce: str
    negative: bool
    k: int
    seen: int
    layout: Layout | None = None
    samples: Tensor | None = None
    sample_of: Tensor | None = None
    crop_size: tuple[int, ...] | None = None
    spans: tuple[tuple[int, int], ...] = ()
    model: str = ""

    @functools.cached_property
    def crops(self) -> Tensor | None:
        """``(C, k, input channels, *crop_size)``: every exemplar's crop (cut once, then kept)."""
        if self.samples is None:
            return None
        return _cut(self.samples, self.sample_of.reshape(-1), self.boxes.reshape(-1, self.boxes.shape[-1]),
                    self.crop_size).reshape(*self.sample_of.shape, self.samples.shape[1], *self.crop_size)

    def crop(self, row: int, j: int) -> Tensor | None:
        """The crop of exemplar ``j`` of row ``row`` ``(input channels, *crop_size)``, cut alone."""
        if self.samples is None:
            return None
        return _cut(self.samples, self.sample_of[row, j].reshape(1), self.boxes[row, j].reshape(1, -1),
                    self.crop_size)[0]

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

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers and strings (``torch.save`` it; :meth:`from_dict` reads it back
        from ``torch.load(..., weights_only=True)``)."""
        out: dict[str, Any] = {"format": "torchloupe.exemplars/1"}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = asdict(v) if isinstance(v, Layout) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExemplarResult":
        """The result :meth:`to_dict` wrote."""
        if not isinstance(d, dict) or d.get("format") != "torchloupe.exemplars/1":
            raise InputError("not an exemplars result (expected a dict saved from ExemplarResult.to_dict, "
                             "e.g. by loupe exemplars --save)")
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        lay = kw.get("layout")
        if isinstance(lay, dict):
            kw["layout"] = Layout(**{k: tuple(v) if isinstance(v, list) else v for k, v in lay.items()})
        kw["channels"] = tuple(kw["channels"])
        kw["spans"] = tuple(tuple(s) for s in kw.get("spans", ()))
        if kw.get("crop_size") is not None:
            kw["crop_size"] = tuple(kw["crop_size"])
        return cls(**kw)


def _cut(samples: Tensor, rows: Tensor, boxes: Tensor, size: tuple[int, ...]) -> Tensor:
    """Crops ``(n, C, *size)`` of ``samples[rows]`` starting at ``boxes[:, :d]``; zeros where ``rows`` is -1."""
    n, nd = rows.shape[0], len(size)
    valid = rows >= 0
    rows = rows.clamp_min(0)
    if samples.shape[0] == 0:  # no exemplar has a crop (class tokens only)
        return samples.new_zeros(n, samples.shape[1], *size)
    if tuple(size) == tuple(samples.shape[2:]):  # the receptive field covers the input: whole samples
        crops = samples[rows]  # (indexing copies whole rows fast; index_select on dim 0 was 20x slower on CPU)
    else:
        index = [rows.reshape(n, *([1] * nd))]
        for i in range(nd):
            idx = boxes[:, i, None] + torch.arange(size[i], device=samples.device)
            index.append(idx.reshape(n, *([1] * i), size[i], *([1] * (nd - 1 - i))))
        crops = samples.movedim(1, -1)[tuple(index)].movedim(-1, 1)
    if not bool(valid.all()):
        crops = torch.where(valid.reshape(n, *([1] * (crops.dim() - 1))), crops, torch.zeros((), dtype=crops.dtype,
                                                                                                device=crops.device))
    return crops


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
    slots: Tensor | None = None  # (C, k) row of the sample store holding the exemplar's input (-1: none)
    boxes: Tensor | None = None

    def fields(self):
        return [self.scores, self.values, self.indices, self.locations, self.slots, self.boxes]


def _select(cands: list[_State], k: int) -> _State:
    cat = [None if f[0] is None else torch.cat(f, 1) for f in zip(*(c.fields() for c in cands))]
    pos = _order(cat[0], cat[2])[:, :k]
    return _State(*(_take(t, pos) for t in cat))


def _canonical(store: Tensor, store_index: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
    """The rows of ``store`` that ``slots`` refers to, once each by ascending dataset index
    (``store_index``), and ``slots`` renumbered into them: one form whatever path made them."""
    valid = slots >= 0
    rows = torch.unique(slots[valid])
    if rows.numel() == 0:
        return store[:0], torch.full_like(slots, -1)
    ds = store_index[rows]
    ds_sorted, order = torch.sort(ds)
    samples = store[rows[order]]
    where = torch.searchsorted(ds_sorted, store_index[slots.clamp_min(0)])
    return samples, torch.where(valid, where, torch.full_like(where, -1))


def _sample_index(r: ExemplarResult) -> Tensor:
    """The dataset index of each row of ``r.samples``."""
    out = torch.full((r.samples.shape[0],), -1, dtype=torch.long, device=r.indices.device)
    valid = r.sample_of >= 0
    out[r.sample_of[valid]] = r.indices[valid]
    return out


def _spans(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, with touching ranges joined."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def merge(*results: ExemplarResult) -> ExemplarResult:
    """One result from partial results over disjoint samples (shards, or a run and its resumption).

    Equal to the result of one run over all their samples. Results of another layer, model,
    ``k``, ``reduce``, direction or channel list, or overlapping sample ranges, are refused.
    """
    if not results:
        raise UsageError("merge needs at least one ExemplarResult")
    for r in results:
        if not isinstance(r, ExemplarResult):
            raise UsageError(f"merge takes ExemplarResult objects, got {type(r).__name__}")
    first = results[0]

    keys = ("layer", "model", "channels", "k", "reduce", "negative")
    for r in results[1:]:
        differ = [key for key in keys if getattr(r, key) != getattr(first, key)]
        if differ:
            say = ", ".join(f"{key}={getattr(r, key)!r}" for key in differ)
            was = ", ".join(f"{key}={getattr(first, key)!r}" for key in differ)
            raise UsageError(f"cannot merge exemplars with {say} into exemplars with {was}; merged results need "
                             f"the same layer, model, channels, k, reduce and negative")
        if (r.samples is None) != (first.samples is None):
            raise UsageError("cannot merge a result with crops and one without (crops=False); compute both alike")
        if r.samples is not None and (r.crop_size, r.samples.shape[1:]) != (first.crop_size, first.samples.shape[1:]):
            raise UsageError(f"cannot merge crops of {tuple(r.samples.shape[1:])} inputs with crops of "
                             f"{tuple(first.samples.shape[1:])} inputs")
    spans = sorted(s for r in results for s in r.spans)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        if b0 < a1:
            raise UsageError(f"cannot merge results that share samples [{b0}, {min(a1, b1)}); each sample must "
                             f"be in one result (use start= / stop= ranges that do not overlap)")
    if len(results) == 1:
        return first
    sign = -1.0 if first.negative else 1.0
    device = first.values.device
    states, stores, store_index, offset = [], [], [], 0
    for r in results:
        scores = torch.where(r.indices >= 0, r.values * sign, torch.full_like(r.values, -math.inf))
        slots = None
        if r.samples is not None:
            slots = torch.where(r.sample_of >= 0, r.sample_of + offset, r.sample_of).to(device)
            stores.append(r.samples.to(first.samples.device))
            store_index.append(_sample_index(r).to(device))
            offset += r.samples.shape[0]
        states.append(_State(scores.to(device), r.values.to(device), r.indices.to(device),
                             None if r.locations is None else r.locations.to(device), slots,
                             None if r.boxes is None else r.boxes.to(device)))
    s = _select(states, first.k)
    samples = sample_of = None
    if stores:
        store = torch.cat(stores)
        samples, sample_of = _canonical(store, torch.cat(store_index).to(store.device), s.slots.to(store.device))
        sample_of = sample_of.to(device)
    return replace(first, values=s.values, indices=s.indices, locations=s.locations, boxes=s.boxes,
                   samples=samples, sample_of=sample_of, seen=sum(r.seen for r in results),
                   spans=_spans(x for r in results for x in r.spans))


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
    if isinstance(data, Tensor):  # one (N, ...) tensor: its rows are the samples
        if data.dim() < 2:
            raise InputShapeError(f"data is a tensor of shape {tuple(data.shape)}; expected (N, ...) samples along "
                                  f"dimension 0 (a batch of inputs)")
        from torch.utils.data import TensorDataset

        data = TensorDataset(data)
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


def _fetch(source, ids: list[int], wrt, device) -> Tensor:
    """Input ``wrt`` of dataset samples ``ids``, fetched again from a map-style dataset, in order."""
    dataset, collate = source
    if (isinstance(dataset, torch.utils.data.TensorDataset) and collate is torch.utils.data.default_collate
            and wrt in (None, 0)):  # what collating its items would give, without a Python loop over them
        return dataset.tensors[0][torch.tensor(ids, dtype=torch.long)].to(device)
    parts = [_inputs(collate([dataset[i] for i in ids[j:j + 64]])).get(wrt) for j in range(0, len(ids), 64)]
    return torch.cat(parts).to(device)


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


def _measure(model: nn.Module, module: nn.Module, inputs: Inputs, wrt: Any, layout: Layout | None,
             samples: int = 4, stop: bool = False) -> tuple[_Field, bool]:
    """The receptive field of ``module``'s positions in input ``wrt``, measured on ``samples`` random
    inputs (see :func:`receptive_field`), for any number of spatial axes; and whether it reaches
    every edge of the input on every axis. ``stop``: the module runs once per forward, so the forward
    stops there."""
    out: dict[str, Tensor] = {}

    def hook(m, args, output):
        out["a"] = output
        if stop:
            raise _Stop

    example = inputs.get(wrt)
    gen = torch.Generator(device=example.device).manual_seed(0)
    x = torch.rand(samples, *example.shape[1:], generator=gen, device=example.device, dtype=example.dtype)
    x = (x * (example.max() - example.min()) + example.min()).requires_grad_(True)
    probe_inputs = inputs.slice(0, 1).repeat(samples).replace(wrt, x)
    idn = {torch.relu: _identity, torch.nn.functional.relu: _identity, torch.relu_: _identity,
           Tensor.relu: _identity, Tensor.relu_: _identity, torch.nn.functional.relu6: _identity}
    with session(model, freeze=True) as run, hooks(forward={module: hook}), intercept(idn), torch.enable_grad():
        try:
            run(probe_inputs)
        except _Stop:
            pass
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
        return _Field(In, (0.0,) * len(In), (0.0,) * len(In)), False
    size, offset = [], []
    for axis in range(len(In)):
        others = tuple(o for o in range(len(In)) if o != axis)
        hit = torch.nonzero(support.any(dim=others) if others else support).flatten()
        lo, hi = int(hit.min()), int(hit.max()) + 1
        size.append(hi - lo)
        offset.append(lo - centre[axis] * stride[axis])
    return _Field(tuple(size), tuple(offset), stride), tuple(size) == In


def receptive_field(model: nn.Module, module: nn.Module, example: Tensor) -> tuple[int, int, float, float, float, float]:
    """``(rh, rw, y0, x0, sy, sx)`` for a 2D layer: the box of input pixels that can move the unit
    at layer position ``(i, j)`` is ``[y0 + i*sy, +rh) x [x0 + j*sx, +rw)``.

    Measured, not derived: the gradient of the centre position (all channels, weighted at random)
    with respect to a few random inputs, with ReLU-family functions made the identity so no unit
    hides its inputs; the union of the non-zero support is the box. ``sy, sx`` = input size / layer size.
    The forward runs in a :func:`~torchloupe.probe.session` (eval mode, parameters frozen); the
    model comes back as it went in. (:func:`exemplars` measures layers of any rank the same way.)
    """
    f, _ = _measure(model, module, Inputs((example,)), 0, None)
    return (*f.size, *f.offset, *f.stride)


_FIELDS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _stamp(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``model`` is replaced or written in place."""
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in itertools.chain(model.parameters(), model.buffers()))


def _field(model: nn.Module, module: nn.Module, inputs: Inputs, wrt: Any, layout: Layout, stop: bool) -> _Field:
    """:func:`_measure`, kept per layer for one model, input shape and set of weights (a forward and a
    backward on four samples: worth not repeating when the same model sees several datasets).

    One sample is tried first: a field that already reaches every edge of the input is the whole
    input, and four samples (whose union of supports contains it) cannot give another answer
    (size, offset and stride are then fixed by the shapes); deep layers (resnet50 ``layer4``) pay a
    quarter of the measurement. Smaller fields are measured on four samples, as always."""
    x = inputs.get(wrt)
    key = (id(model), tuple(x.shape[1:]), x.dtype, str(x.device), repr(wrt), layout.kind, layout.shape[1:],
           layout.channel, layout.positions, _stamp(model))
    known = _FIELDS.setdefault(module, {})
    if key not in known:
        known.clear()  # one entry per layer: the newest weights
        field, whole = _measure(model, module, inputs, wrt, layout, samples=1, stop=stop)
        if not whole:
            field, _ = _measure(model, module, inputs, wrt, layout, samples=4, stop=stop)
        known[key] = field
    return known[key]


def _boxes(loc: Tensor, rf: _Field, In: tuple[int, ...]) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Boxes ``(n, 2 nd)`` of layer positions ``loc`` ``(n, d)``, which of them have a patch ``(n,)``
    (class / register tokens do not: their box is the whole input), and the crop size."""
    nd = len(In)
    size = tuple(min(r, i) for r, i in zip(rf.size, In))
    n = loc.shape[0]
    whole = torch.tensor([0] * nd + list(In), device=loc.device)
    if rf.tokens is None and size == In:  # the receptive field covers the input: the whole sample
        return whole.expand(n, 2 * nd).clone(), torch.ones(n, dtype=torch.bool, device=loc.device), size
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
        valid = torch.ones(n, dtype=torch.bool, device=loc.device)
    starts = torch.stack([(rf.offset[i] + loc[:, i].to(torch.float64) * rf.stride[i]).round().long()
                          .clamp(0, In[i] - size[i]) for i in range(nd)], 1)
    boxes = torch.cat([starts, starts + torch.tensor(size, device=loc.device)], 1)
    return torch.where(valid[:, None], boxes, whole), valid, size


class _Store:
    """Inputs of the current exemplars, streamed: each batch's new winners appended once, the rows
    no exemplar refers to any more dropped now and then (memory bounded by ``channels * k``)."""

    def __init__(self) -> None:
        self.chunks: list[Tensor] = []
        self.index: list[Tensor] = []
        self.rows = 0
        self.kept = 0

    def add(self, x: Tensor, ids: Tensor, slots: Tensor, offset: int) -> Tensor:
        """``slots`` ``>= offset`` name rows ``offset + b`` of batch ``x`` (dataset indices ``ids``):
        store those, renumber them."""
        new = slots >= offset
        b = torch.unique(slots[new]) - offset
        if b.numel():
            self.chunks.append(x[b])
            self.index.append(ids[b])
            renum = self.rows + torch.searchsorted(b, (slots - offset).clamp_min(0))
            slots = torch.where(new, renum, slots)
            self.rows += b.numel()
        if self.rows > 2 * self.kept + 2 * x.shape[0]:
            slots = self.compact(slots)
        return slots

    def compact(self, slots: Tensor) -> Tensor:
        store, index = self.tensors()
        valid = slots >= 0
        rows = torch.unique(slots[valid])
        self.chunks, self.index = [store[rows]], [index[rows]]
        self.rows = self.kept = rows.numel()
        return torch.where(valid, torch.searchsorted(rows, slots.clamp_min(0)), slots)

    def tensors(self) -> tuple[Tensor, Tensor]:
        return torch.cat(self.chunks), torch.cat(self.index)


def _fingerprint(model: nn.Module) -> str:
    """Class, parameter count and a digest of names, shapes and a few values of every tensor of
    ``model``: equal across devices and processes for the same weights."""
    h = hashlib.sha1()
    count = 0
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        h.update(name.encode())
        if isinstance(t, nn.parameter.UninitializedTensorMixin) or t.is_meta:
            continue
        h.update(repr(tuple(t.shape)).encode())
        flat = t.detach().reshape(-1)
        some = flat[:: max(1, flat.numel() // 16)][:16]
        h.update(some.to("cpu", torch.float64).numpy().tobytes())
        if isinstance(t, nn.Parameter):
            count += t.numel()
    return f"{type(model).__name__} ({count:,} parameters, {h.hexdigest()[:12]})"


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

    ``data``: a map-style ``Dataset``, a ``DataLoader``, an ``(N, ...)`` tensor of samples, or any
    iterable of batches. What an item
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
    # shapes), outside the hooks below. Under torchrun a rank may have no batch: it still takes part.
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
    xshape: tuple[int, ...] | None = None
    store = _Store()
    spans: list[tuple[int, int]] = []
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
                x = inputs.get(wrt)
                if state is None:
                    xshape = tuple(x.shape[1:]) if isinstance(x, Tensor) else None
                    lay = layout_of(a, None if xshape is None else tuple(x.shape), channel_dim, module=module)
                    c_all = lay.channels
                    chans = list(range(c_all)) if channels is None else [int(c) for c in channels]
                    bad = [c for c in chans if not 0 <= c < c_all]
                    if bad:
                        raise ChannelError(f"channel {bad[0]} is out of range for layer {name!r} with {c_all} "
                                           f"channels (0..{c_all - 1})")
                    chan_idx = torch.tensor(chans, device=a.device)
                    every = chans == list(range(c_all))  # all channels in order: the output read as it is
                    spatial = len(lay.positions)
                    if crops and isinstance(x, Tensor) and x.is_floating_point() and spatial:
                        if lay.kind == "tokens" and lay.grid is not None and x.dim() == 4:
                            patch = tuple(i // g for i, g in zip(x.shape[2:], lay.grid))
                            rf = _Field(patch, (0.0, 0.0), tuple(float(p) for p in patch), (lay.extra, lay.grid))
                        elif lay.kind != "tokens" and x.dim() - 2 == spatial:
                            flags["rf"] = True
                            try:
                                rf = _field(model, module, inputs.slice(0, 1), wrt, lay, flags["stop"])
                            finally:
                                flags["rf"] = False
                    want_crops = rf is not None
                    state = _empty(len(chans), k, a, spatial, want_crops and source is None)
                elif want_crops and tuple(x.shape[1:]) != xshape:
                    raise InputShapeError(f"the data batch at sample {first_index} has inputs of shape "
                                          f"{tuple(x.shape[1:])} but the first had {xshape}; crops need one input "
                                          f"shape (pass crops=False)")
                a = lay.to_bcs(a, grid=False)
                if not (every and a.is_contiguous()):  # a subset, or a strided view: a contiguous copy
                    a = a.index_select(1, chan_idx)
                a = a.float()
                flat = a.reshape(n, a.shape[1], -1)
                vals = flat.mean(-1) if reduce == "mean" else (flat.amin(-1) if negative else flat.amax(-1))
                vals = vals.T  # (C, n)
                scores = torch.nan_to_num(vals * sign, nan=-math.inf)
                pos = torch.arange(n, device=a.device)
                ids = first_index + pos if given_index is None else given_index.to(a.device)
                idx = ids.expand_as(vals)
                cand = _State(scores, vals, idx, None)
                if state.locations is not None:
                    arg = (flat.argmin(-1) if negative else flat.argmax(-1)).T  # (C, n)
                    coords = []
                    for size in reversed(a.shape[2:]):
                        coords.append(arg % size)
                        arg = arg // size
                    cand.locations = torch.stack(coords[::-1], -1)
                if state.slots is not None:  # streamed data: keep the inputs of this batch's winners
                    cand.slots = (store.rows + pos).expand_as(vals)
                state = _select([state, cand], k)
                if state.slots is not None:
                    state.slots = store.add(x, ids, state.slots, store.rows)
                seen += n
                spans.append((first_index, first_index + n if given_index is None else int(ids.max()) + 1))
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    fingerprint = _fingerprint(model)
    result = None
    if state is not None:
        boxes = patch = crop_size = samples = sample_of = None
        if rf is not None:
            boxes, patch, crop_size = _boxes(state.locations.reshape(-1, state.locations.shape[-1]), rf, xshape[1:])
            valid = state.indices >= 0
            boxes = boxes.reshape(*state.indices.shape, -1) * valid[..., None]
            patch = patch.reshape(state.indices.shape) & valid
        if state.slots is not None:
            slots = torch.where(patch, state.slots, torch.full_like(state.slots, -1))
            samples, sample_of = _canonical(*store.tensors(), slots)
        result = ExemplarResult(
            layer=name, channels=tuple(chan_idx.tolist()), values=state.values, indices=state.indices,
            locations=state.locations, boxes=boxes, reduce=reduce, negative=negative, k=k, seen=seen, layout=lay,
            samples=samples, sample_of=sample_of, crop_size=crop_size, spans=_spans(spans), model=fingerprint,
        )
    if use_dist:
        result, rf = _all_merge(result, rf, device)
    if result is None:
        raise TorchLoupeError("data yielded no samples; exemplars need at least one batch")
    if rf is not None and source is not None:  # the winners' inputs, read again once each
        valid = result.indices >= 0
        ids = torch.unique(result.indices[valid])
        samples = _fetch(source, ids.tolist(), wrt, device)
        _, patch, _ = _boxes(result.locations.reshape(-1, result.locations.shape[-1]), rf, tuple(samples.shape[2:]))
        keep = valid & patch.reshape(valid.shape)
        ids = ids.to(samples.device)
        rows = torch.searchsorted(ids, result.indices.to(samples.device).clamp_min(0)).to(result.indices.device)
        result = replace(result, **dict(zip(("samples", "sample_of"), _canonical(
            samples, ids, torch.where(keep, rows, torch.full_like(rows, -1))))))
    warn_skipped(data, use_dist)  # image files that could not be read: the count and the first few, once
    return result


def _empty(c: int, k: int, a: Tensor, spatial: int, store: bool) -> _State:
    dev = a.device
    # score, value, index, location (and store row) of one (channel, rank); crops are not held: they
    # are cut on use from the winners' inputs, at most one per sample seen
    per = 4 + 4 + 8 + 8 * spatial + (8 if store else 0)
    check_memory(c * k * per * 2, f"exemplars with k={k} for {c} channels", device=dev,  # the state and a merge
                 hint="use a smaller k or fewer channels (channels=...)")
    loc = torch.zeros(c, k, spatial, dtype=torch.long, device=dev) if spatial > 0 else None
    slots = torch.full((c, k), -1, dtype=torch.long, device=dev) if store else None
    return _State(torch.full((c, k), -math.inf, device=dev), torch.full((c, k), math.nan, device=dev),
                  torch.full((c, k), -1, dtype=torch.long, device=dev), loc, slots)


def _all_merge(result: ExemplarResult | None, rf: _Field | None, device: torch.device
               ) -> tuple[ExemplarResult | None, _Field | None]:
    """Every rank's partial result merged, on every rank (a rank without batches sent ``None``)."""
    mine = None
    if result is not None:
        mine = (replace(result, **{f.name: getattr(result, f.name).cpu() for f in fields(result)
                                   if isinstance(getattr(result, f.name), Tensor)}), rf)
    parts = [p for p in D.all_gather_object(mine) if p is not None]
    if not parts:
        return None, rf
    rf = parts[0][1]
    merged = merge(*(p[0] for p in parts))
    moved = {f.name: getattr(merged, f.name).to(device) for f in fields(merged)
             if isinstance(getattr(merged, f.name), Tensor)}
    return replace(merged, **moved), rf
