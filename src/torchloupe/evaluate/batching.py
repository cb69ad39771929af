"""What every model-running metric shares: input and map checks, target resolution, and the
perturbed forwards run in chunks sized to memory (channels-last on CPU, freed heap kept).

Inputs are anything ``model(...)`` takes (:class:`~torchloupe.inputs.Inputs`): the metric perturbs
input ``wrt`` (an image batch) and keeps the others. Targets are class indices
(:mod:`torchloupe.targets`); ``output`` selects the class scores of a dict / tuple / ``ModelOutput``.
"""

from __future__ import annotations

import weakref
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..inputs import Inputs, InputsLike, check_inputs
from ..probe import Session, require_module
from ..targets import OutputSpec, Target, TargetLike


DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of perturbed inputs held at once


CPU_CHUNK_ELEMENTS = 2**19  # on CPU, forwards of about this many input values run fastest (cache-sized)
CPU_CHUNK_MIN_IMAGES = 4  # ... but at least this many images: one image a forward loses more than it saves


def chunk_size(sample: Tensor, budget: int) -> int:
    """Images per forward: as many as ``budget`` bytes of inputs allow; on CPU also no more than
    about :data:`CPU_CHUNK_ELEMENTS` input values (but :data:`CPU_CHUNK_MIN_IMAGES`), since bigger
    CPU batches run slower per image once their activations leave the cache. Measured (noisy
    shared 2-core machine): EfficientNet-Lite0 at 224 px took 20-25 ms an image in channels-last
    forwards of 1-4 images and 30-54 ms in forwards of 8; resnet50 at 224 px, 52 images a forward
    took 1.35x the time of batches of 4, and batches of 3 ran 0.9x Quantus's batches of 4; the
    64 px shapes CNN ran 784 images in 0.12-0.17 s in channels-last batches of 16-40 and 0.18-0.25 s
    in batches of 80."""
    per = sample[0].numel() * sample.element_size() if sample.numel() else 1
    n = max(1, int(budget // max(per, 1)))
    if sample.device.type == "cpu" and sample.numel():
        n = min(n, max(CPU_CHUNK_MIN_IMAGES, CPU_CHUNK_ELEMENTS // sample[0].numel()))
    return n


_CONTIGUOUS_ONLY: weakref.WeakSet = weakref.WeakSet()  # models whose forward rejects channels-last inputs

#: What PyTorch says when a forward cannot take a channels-last tensor: ``x.view(...)`` on its strides,
#: or an operation that wants contiguous memory. The only errors :class:`Scorer` answers by running
#: the same chunk again in the standard layout.
_LAYOUT_MESSAGES = (
    "view size is not compatible with input tensor's size and stride",
    "must be contiguous",
    "is not contiguous",
)


def rejects_channels_last(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a forward of a channels-last batch, says the model cannot take that
    memory layout (and nothing else): out of memory and every other error of the model are not."""
    if isinstance(exc, torch.OutOfMemoryError) or not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    return any(m in text for m in _LAYOUT_MESSAGES)

HEAP_KEEP_BYTES = 16 * 2**20
_heap_kept = [False]


def keep_heap() -> None:
    """Let the C allocator keep freed memory for reuse between the chunked CPU forwards.

    glibc serves blocks above its mmap threshold (128 KiB at start) with fresh mappings and
    returns freed heap beyond its trim threshold to the system, so every chunk's activations
    (megabytes) come back as new pages to fault in and zero. Freeing one block of
    :data:`HEAP_KEEP_BYTES` (16 MiB; glibc adjusts for blocks up to 32 MiB with their header)
    raises both thresholds, as glibc does by itself after any such free: the process then keeps
    up to 32 MiB of freed heap. Deletion of 16 64-px images on the shapes CNN: 0.15-0.19 s ->
    0.10-0.11 s. Elsewhere (other C libraries) this is one short-lived untouched allocation.
    Once per process.
    """
    if not _heap_kept[0]:
        _heap_kept[0] = True
        torch.empty(HEAP_KEEP_BYTES, dtype=torch.uint8)


class Scorer:
    """The model's softmax probabilities on perturbed copies of the explained input, in forwards of
    ``chunk`` images inside a :func:`~torchloupe.probe.session` (``run``).

    ``inputs`` are the checked inputs of ``B`` samples; input ``wrt`` is the one the metric
    perturbs, every other input is kept: a perturbed image of sample ``i`` runs with sample ``i``
    of the others (``rows``). ``output`` selects the ``(N, classes)`` scores in what the model
    returns (:mod:`torchloupe.targets`).

    On CPU, image batches go in as channels-last: the convolutions then run 1.3-1.7x faster
    (EfficientNet-Lite0 and the shapes CNN, one thread) with the same results to float
    rounding. A model that cannot take that layout (``x.view`` on a conv output raises) gets
    contiguous batches instead, from then on (remembered by a weak reference to the model). Only that
    error is answered so (:func:`rejects_channels_last`: PyTorch's ``view`` / contiguity messages); any
    other error of the model, out of memory included, reaches the caller as it was raised.
    """

    def __init__(self, run: Session, inputs: Inputs, wrt: int | str, output: OutputSpec, chunk: int):
        # wrt resolved once: with it set to None below, None would name another input
        self.run, self.inputs, self.wrt, self.chunk = run, inputs, inputs.resolve(wrt), chunk
        self.selection = Target.of(None, output)
        self.batch = inputs.batch_size
        # the inputs kept as they are, without the perturbed one (None there, replaced per forward)
        self.others = None if inputs.single else inputs.replace(wrt, None)

    @property
    def explained(self) -> Tensor:
        return self.inputs.get(self.wrt)

    def feed(self, x: Tensor, rows: Tensor | None) -> Inputs:
        """What the model takes for perturbed images ``x`` of samples ``rows``."""
        if self.others is None:
            return Inputs((x,), {})
        if rows is None:
            raise InputError("the rows of the perturbed images are needed for a model with several inputs")
        n = self.batch
        kept = self.others.map(lambda t: t[rows.to(t.device)] if t.dim() and t.shape[0] == n else t)
        return kept.replace(self.wrt, x)

    def probabilities(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        """Softmax probabilities ``(N, classes)`` of ``N`` perturbed images ``x`` of samples ``rows``
        (``(N,)`` indices into the batch; needed when the model takes other inputs too)."""
        if x.shape[0] == 0:  # an empty batch: no forward, an empty result
            return x.new_zeros((0, 0), dtype=torch.float32)
        model = self.run.model
        chunk = self.chunk
        probs = []
        if x.device.type == "cpu" and x.shape[0] > 1:
            keep_heap()
        fast = x.device.type == "cpu" and x.dim() == 4 and model not in _CONTIGUOUS_ONLY
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                xb = x[start : start + chunk]
                rb = None if rows is None else rows[start : start + chunk]
                out = None
                if fast:
                    try:
                        out = self.run(self.feed(xb.contiguous(memory_format=torch.channels_last), rb))
                    except RuntimeError as exc:
                        if not rejects_channels_last(exc):
                            raise  # the model's own error (or out of memory): never re-run
                        fast = False
                        _CONTIGUOUS_ONLY.add(model)
                if out is None:
                    out = self.run(self.feed(xb.contiguous(), rb))
                probs.append(self.selection.scores_of(out).float().softmax(dim=1))
        return torch.cat(probs)

    def class_indices(self, target: TargetLike) -> Tensor:
        """``(B,)`` class indices of the unperturbed batch: the predicted classes (argmax of the
        probabilities) for ``None``, else the given ones checked against the class count."""
        n, device = self.batch, self.inputs.device
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=device)
        tgt = Target.of(target)  # indices of probabilities / selected scores: no output selection left
        if tgt.target is None:
            return tgt.indices(self.probabilities(self.explained, torch.arange(n, device=device)))
        with torch.no_grad():
            first = self.run(self.inputs.slice(0, 1))
        return tgt.indices(self.selection.scores_of(first), n)


def class_target(target: TargetLike, output: OutputSpec = None) -> tuple[Target, OutputSpec]:
    """``(class target, output selection)`` of a metric that reads class probabilities: the target's
    indices are read off the probabilities (no output selection there), the selection applies to
    the model's outputs (:class:`Scorer`). A callable target gives scores, not a class:
    :meth:`Target.indices` rejects it (:class:`TargetError`) here, before any forward."""
    tgt = Target.of(target, output)
    if tgt.is_callable:
        tgt.indices(None)  # raises TargetError
    return Target(tgt.target), tgt.output


def prepare(model: nn.Module, x: InputsLike, maps: Tensor, *, wrt: int | str | None = None) -> tuple[Inputs, Tensor, Tensor]:
    """Validate and align inputs: ``(inputs, explained image batch (B, C, H, W), maps (B, H, W) at its size)``.

    ``x``: anything ``model(...)`` takes (:class:`~torchloupe.inputs.Inputs`); ``wrt`` the input the
    metric perturbs (an image batch)."""
    require_module(model)
    inputs = check_inputs(model, x, wrt=wrt)
    xe = inputs.explained(wrt, model)
    if xe.dim() != 4:
        raise InputError(f"this metric needs image inputs (N, C, H, W), got shape {tuple(xe.shape)}")
    if not isinstance(maps, Tensor):
        raise InputError(f"maps must be a tensor (N, H, W), got {type(maps).__name__}")
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or maps.shape[0] != xe.shape[0]:
        raise InputError(
            f"maps have shape {tuple(maps.shape)}; expected (N, H, W) with N = {xe.shape[0]} (the batch size)"
        )
    if not bool(torch.isfinite(maps).all()):
        raise InputError("maps hold NaN or infinite values")
    maps = maps.to(device=xe.device, dtype=torch.float32)
    if maps.shape[-2:] != xe.shape[-2:]:
        maps = F.interpolate(maps[:, None], size=xe.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return inputs, xe, maps
