"""What ``--input`` names, loaded into what the model takes.

The convention, the same for every subcommand:

- ``--input`` once per model argument: ``--input a1.png a2.png --input b1.png b2.png`` calls
  ``model(X1, X2)`` with ``X1`` the batch of ``a1, a2`` and ``X2`` the batch of ``b1, b2``. The
  files *within* one ``--input`` are the batch; a repeated ``--input`` is the next argument. One
  ``--input`` keeps its old meaning (the images of a one-input model).
- ``--input NAME=FILE [FILE...]`` is the keyword argument ``NAME``.
- Files are images (Pillow), or tensor files: ``.pt`` / ``.pth`` holding one ``(N, ...)`` tensor
  (or a dict of them: keyword arguments), ``.npy``, ``.npz`` (its arrays: keyword arguments, or
  the one array it holds). Several tensor files of one ``--input`` are concatenated along the batch.
- Images are read gray or colour by the layer that reads them: ``Conv2d.in_channels``, or a
  ``Linear`` whose ``in_features`` is ``H*W`` (gray) or ``3*H*W`` (colour) of the images, which
  are then flattened to ``(N, in_features)``. With several image inputs the i-th input is
  matched to the i-th such layer, and the other gray / colour choices are tried when the model
  does not take that one. Image batches are contiguous in the standard ``(N, C, H, W)`` layout.

:func:`load_inputs` returns :class:`Loaded`: the :class:`~torchloupe.inputs.Inputs` the model
takes, the images to draw on, and the file names; it has run the model once on them
(:func:`check_forward`), so a model that cannot take them is one line, before any of the work.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputFileError, UsageError
from ..inputs import Inputs

TENSOR_SUFFIXES = (".pt", ".pth", ".npy", ".npz")
_KEYWORD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$")


@dataclass(frozen=True)
class Group:
    """One ``--input``: the files of one model argument (``name``: a keyword argument, else positional)."""

    files: tuple[str, ...]
    name: str | None = None

    @property
    def label(self) -> str:
        return f"--input {self.name}=..." if self.name else "--input"


def parse_groups(values: list[list[str]] | list[str] | None) -> list[Group]:
    """The ``--input`` groups argparse collected (``action="append", nargs="+"``)."""
    if not values:
        return []
    if isinstance(values[0], str):  # one group given programmatically
        values = [values]  # type: ignore[list-item]
    groups = []
    for files in values:
        files = list(files)
        name = None
        m = _KEYWORD.match(files[0])
        if m and not Path(files[0]).exists():
            name, files[0] = m.group(1), m.group(2)
        groups.append(Group(tuple(files), name))
    names = [g.name for g in groups if g.name]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UsageError(f"--input {dup}=... is given twice; expected each keyword input once")
    seen_kw = False
    for g in groups:
        if g.name:
            seen_kw = True
        elif seen_kw:
            raise UsageError(f"--input {' '.join(g.files)} (positional) comes after a keyword --input NAME=...; "
                             f"give the positional inputs first")
    return groups


def is_tensor_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in TENSOR_SUFFIXES


# -- tensor files -------------------------------------------------------------------------------

def load_tensor_file(path: str | Path) -> Tensor | dict[str, Tensor]:
    """One ``(N, ...)`` tensor, or a dict of them, from ``.pt`` / ``.pth`` (``weights_only=True``:
    never runs code the file holds), ``.npy`` or ``.npz``."""
    from .checkpoints import weights_only_reason

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"cannot read '{p}': no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            import numpy as np

            data = np.load(p, allow_pickle=False)
            if suffix == ".npy":
                return _from_numpy(data, p)
            with data:
                arrays = {k: _from_numpy(data[k], p) for k in data.files}
            if not arrays:
                raise InputFileError(f"cannot read '{p}': the .npz file holds no arrays")
            return next(iter(arrays.values())) if len(arrays) == 1 else arrays
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except InputFileError:
        raise
    except Exception as exc:
        text = str(exc)
        why = ("it holds Python objects other than tensors (not loaded: that could run code)" if "GLOBAL" in text
               else f"not a tensor file ({weights_only_reason(text) if suffix in ('.pt', '.pth') else text})")
        raise InputFileError(f"cannot read '{p}': {why}") from exc
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return dict(obj)
    kind = type(obj).__name__ if not isinstance(obj, dict) else "dict of other values"
    raise InputFileError(f"'{p}' holds a {kind}; expected one (N, ...) tensor or a dict of name -> tensor")


def _from_numpy(array: Any, path: Path) -> Tensor:
    import numpy as np

    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number):
        return torch.from_numpy(np.ascontiguousarray(array))
    raise InputFileError(f"'{path}' holds an array of {array.dtype}; expected numbers")


def _tensor_group(group: Group) -> Tensor | dict[str, Tensor]:
    parts = [load_tensor_file(f) for f in group.files]
    if len(parts) == 1:
        return parts[0]
    if any(isinstance(p, dict) for p in parts):
        raise UsageError(f"{group.label} {' '.join(group.files)}: a file holding a dict of tensors must be the only "
                         f"file of its --input")
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1 or any(p.dim() == 0 for p in parts):
        raise UsageError(f"{group.label}: the files hold tensors of shapes "
                         f"{', '.join(str(tuple(p.shape)) for p in parts)}; expected (N, ...) tensors that "
                         f"differ only in N, to concatenate into one batch")
    return torch.cat(parts)


# -- images ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """How one image input is fed: ``mode`` ``"L"`` (gray) or ``"RGB"``, ``flat``: flattened to
    ``(N, C*H*W)`` for a first ``Linear`` layer."""

    mode: str
    flat: bool = False
    side: int | None = None  # resized to side x side (None: --size, else the images' own size)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


def reading_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Layers that may read images, in registration order: the model's first layer with parameters,
    then every ``Conv2d`` of 1 or 3 input channels (the first layers of the branches of a
    multi-input model)."""
    from ..inputs import first_layer

    found = first_layer(model)
    out = [found] if found is not None else []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels in (1, 3) and all(m is not o for _, o in out):
            out.append((name, m))
    return out


def preferred_layout(layer: nn.Module | None, hw: tuple[int, int] | None) -> Layout:
    """The layout the layer that reads an image input wants; RGB when nothing says otherwise."""
    if isinstance(layer, nn.Conv2d) and layer.in_channels == 1:
        return Layout("L")
    if isinstance(layer, nn.Linear) and hw is not None:
        h, w = hw
        if layer.in_features == h * w:
            return Layout("L", flat=True)
        if layer.in_features == 3 * h * w:
            return Layout("RGB", flat=True)
    return Layout("RGB")


def square_side_for(layer: nn.Module | None) -> tuple[int, str] | None:
    """``(side, mode)`` of square images a first ``Linear`` layer reads as flat vectors
    (``in_features`` = side², gray, or 3·side², colour), else ``None``."""
    if not isinstance(layer, nn.Linear):
        return None
    n = layer.in_features
    s = math.isqrt(n)
    if s * s == n:
        return s, "L"
    s = math.isqrt(n // 3)
    if n % 3 == 0 and s * s * 3 == n:
        return s, "RGB"
    return None


def image_sizes(files: tuple[str, ...]) -> set[tuple[int, int]]:
    """The ``(H, W)`` of image files (their headers only)."""
    from .images import read_image

    return {read_image(f, lambda im: (im.size[1], im.size[0])) for f in files}


# -- the whole set of inputs ------------------------------------------------------------------

@dataclass
class Loaded:
    """What ``--input`` gave: ``inputs`` (what the model takes), ``images`` (per image input, its
    ``(N, C, H, W)`` batch in [0, 1] to draw on, keyed by position or keyword), ``files`` (per
    input, its file names), ``output`` (the model's output on the first samples, from the check)."""

    inputs: Inputs
    images: dict[int | str, Tensor] = field(default_factory=dict)
    files: dict[int | str, tuple[str, ...]] = field(default_factory=dict)
    output: Any = None
    notes: list[str] = field(default_factory=list)

    def plain(self) -> Any:
        """The inputs as the report and the API take them: a tensor, a tuple or a dict."""
        i = self.inputs
        if i.single:
            return i.args[0]
        if i.args and not i.kwargs:
            return tuple(i.args)
        if i.kwargs and not i.args:
            return dict(i.kwargs)
        return i

    def image(self, wrt: int | str = 0) -> Tensor | None:
        """The display images of input ``wrt`` (for keywords-only inputs ``0`` is the first)."""
        if wrt == 0 and not self.inputs.args and self.inputs.kwargs:
            wrt = next(iter(self.inputs.kwargs))
        if isinstance(wrt, int) and wrt < 0:
            wrt += len(self.inputs.args)
        return self.images.get(wrt)


def model_dtype(model: nn.Module) -> torch.dtype:
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    return p.dtype if p is not None else torch.float32


def load_inputs(groups: list[Group], model: nn.Module, *, spec: str, size: int | None, normalize: str | None,
                check: bool = True) -> Loaded:
    """Load ``groups`` for ``model`` (see the module docstring). ``normalize``: the RGB normalization
    (a name of :data:`~torchloupe.app.images.NORMALIZATIONS`, or ``None``; gray images are not
    normalized). With ``check``, one trial forward (:func:`check_forward`); when it fails and some
    inputs are images, the other gray / colour / flat layouts are tried before giving up."""
    if not groups:
        raise UsageError("no --input given; expected at least one file")
    dtype = model_dtype(model)
    readers = reading_layers(model)
    tensors: dict[int | str, Any] = {}
    candidates: dict[int | str, list[Layout]] = {}
    files: dict[int | str, tuple[str, ...]] = {}
    notes: list[str] = []
    position = 0
    image_index = 0
    for g in groups:
        key: int | str = g.name if g.name else position
        if not g.name:
            position += 1
        files[key] = g.files
        kinds = {is_tensor_file(f) for f in g.files}
        if len(kinds) > 1:
            raise UsageError(f"{g.label} {' '.join(g.files)} mixes tensor files and images; one --input holds "
                             f"one kind (give each model argument its own --input)")
        if kinds == {True}:
            t = _tensor_group(g)
            if isinstance(t, dict):
                if g.name or len(groups) > 1:
                    raise UsageError(f"{g.label} {g.files[0]} holds a dict of tensors (keyword inputs); such a "
                                     f"file is the only --input")
                files = {k: g.files for k in t}
                tensors = {k: _as_model_dtype(v, dtype) for k, v in t.items()}
                break
            tensors[key] = _as_model_dtype(t, dtype)
            continue
        layer = readers[image_index][1] if image_index < len(readers) else (readers[0][1] if readers else None)
        image_index += 1
        sizes = image_sizes(g.files)
        side = size
        hw = next(iter(sizes)) if len(sizes) == 1 else None
        if side is not None:
            hw = (side, side)
        pref = preferred_layout(layer, hw)
        pref = Layout(pref.mode, pref.flat, side)
        others = [Layout(m, f, side) for m, f in (("L", False), ("RGB", False), ("L", True), ("RGB", True))]
        sq = square_side_for(layer) if readers and layer is readers[0][1] else None
        convs = any(isinstance(m, nn.Conv2d) for _, m in readers)
        if side is None and sq is not None and not pref.flat and not convs:
            # a flat-vector model of square images (784 = 28 x 28) given images of another size
            pref = Layout(sq[1], True, sq[0])
        candidates[key] = [pref] + [lay for lay in others if lay != pref]
        tensors[key] = (g, side)
    loaded_images: dict[tuple[int | str, str, int | None], Tensor] = {}

    def build(choice: dict[int | str, Layout]) -> tuple[Inputs, dict[int | str, Tensor]]:
        from ..inputs import standard_layout
        from .images import load_images, normalize_images

        values: dict[int | str, Tensor] = {}
        shown: dict[int | str, Tensor] = {}
        for key, v in tensors.items():
            if key not in choice:
                values[key] = v
                continue
            g, _ = v
            lay = choice[key]
            if (key, lay.mode, lay.side) not in loaded_images:
                loaded_images[(key, lay.mode, lay.side)] = load_images(list(g.files), size=lay.side, mode=lay.mode)
            images = loaded_images[(key, lay.mode, lay.side)]
            x = normalize_images(images, normalize if lay.mode == "RGB" else None).to(dtype)
            values[key] = x.reshape(len(x), -1) if lay.flat else standard_layout(x)
            shown[key] = images
        args = tuple(values[k] for k in sorted(k for k in values if isinstance(k, int)))
        kwargs = {k: v for k, v in values.items() if isinstance(k, str)}
        return Inputs(args, kwargs), shown

    def resized(choice: dict[int | str, Layout]) -> list[str]:
        return [f"images of input {k} resized to {lay.side} x {lay.side} {'gray' if lay.mode == 'L' else 'RGB'} and "
                f"flattened: the first layer takes {lay.channels * lay.side ** 2} features (--size to choose)"
                for k, lay in choice.items() if lay.side is not None and lay.side != size]

    first_choice = {k: c[0] for k, c in candidates.items()}
    inputs, shown = build(first_choice)
    check_batch_sizes(inputs, files)
    result = Loaded(inputs, shown, files, None, notes + resized(first_choice))
    if not check:
        return result
    try:
        result.output = check_forward(model, inputs, spec=spec)
        return result
    except UsageError as first_error:
        if not candidates or len(candidates) > 2:  # at most 16 trials
            raise
        keys = list(candidates)
        for combo in itertools.product(*(candidates[k] for k in keys)):
            choice = dict(zip(keys, combo))
            if choice == first_choice:
                continue
            try:
                inputs, shown = build(choice)
                out = check_forward(model, inputs, spec=spec)
            except (UsageError, InputFileError):
                continue
            changed = [f"{_where(k)} as {'gray' if lay.mode == 'L' else 'RGB'}{' flattened' if lay.flat else ''}"
                       for k, lay in choice.items() if lay != first_choice[k]]
            notes.append(f"read {', '.join(changed)}: the model takes them so")
            return Loaded(inputs, shown, files, out, notes + resized(choice))
        raise first_error


def _where(key: int | str) -> str:
    return f"input {key}" if isinstance(key, int) else f"input {key}="


def _as_model_dtype(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Floating tensors in the model's dtype (numpy arrays are float64); integers (token ids) stay."""
    from ..inputs import standard_layout

    return standard_layout(t.to(dtype) if t.is_floating_point() else t)


def check_batch_sizes(inputs: Inputs, files: dict[int | str, tuple[str, ...]]) -> None:
    sizes = {k: int(t.shape[0]) for k, t in inputs.tensors() if t.dim()}
    if len(set(sizes.values())) > 1:
        text = ", ".join(f"input {k}: {n}" for k, n in sizes.items())
        raise UsageError(f"the inputs hold different numbers of samples ({text}); each --input must hold the "
                         f"same number (the files within one --input are the batch)")


def required_arguments(model: nn.Module) -> list[str] | None:
    """The names of the positional arguments ``model.forward`` requires, or ``None`` when it takes
    any number (``*args``) or the signature cannot be read."""
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return None
    names = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            names.append(p.name)
    return names


def arguments_hint(model: nn.Module, inputs: Inputs) -> str:
    """``'; FusionNet.forward(x1, x2) takes 2 inputs, ...'`` when the model requires more positional
    arguments than the inputs give, else ``''``."""
    needed = required_arguments(model)
    if needed is None:
        return ""
    missing = [n for i, n in enumerate(needed) if i >= len(inputs.args) and n not in inputs.kwargs]
    if not missing:
        return ""
    return (f"; {type(model).__name__}.forward({', '.join(needed)}) takes {len(needed)} inputs, got "
            f"{len(inputs.args) + len(inputs.kwargs)}: give one --input per argument (the files of one --input "
            f"are its batch), e.g. " + " ".join(f"--input {n.upper()}.png" for n in needed))


def describe_wants(model: nn.Module) -> str:
    """What the model's first layers want, e.g. ``cnn1.0 wants (N, 3, H, W), cnn2.0 wants (N, 1, H, W)``."""
    parts = []
    for name, layer in reading_layers(model)[:3]:
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[len(layer.kernel_size)]
            parts.append(f"{name} ({type(layer).__name__}) wants (N, {layer.in_channels}, {spatial})")
        elif isinstance(layer, nn.Linear):
            parts.append(f"{name} (Linear) wants (N, {layer.in_features})")
    return ", ".join(parts)


def check_forward(model: nn.Module, inputs: Inputs, *, spec: str, batched: bool = True) -> Any:
    """One eval-mode, no-grad forward of (a copy of) the first two samples, before any of the work:
    the model's output on them. A forward that raises, or whose output does not keep the batch
    (a model that read the batch as something else), is a :class:`UsageError` of one line naming the
    input shapes and what the model's first layers want. ``batched=False``: the inputs as they are
    (generated ones whose first dimension need not be the batch), no batch check."""
    from ..inputs import check_finite
    from ..probe import eval_forward

    for key, t in inputs.tensors():
        check_finite(t, f"input {key}")
    n = inputs.batch_size
    trial = inputs.slice(0, min(n, 2)).map(Tensor.clone) if batched else inputs.map(Tensor.clone)
    if batched and n == 1:  # two samples, so that a model that mixes the batch up shows it
        trial = trial.map_batched(lambda t: torch.cat([t, t]))
    device = next((p.device for p in model.parameters()), None)
    if device is not None:  # the CLI moved the model to --device; the inputs are read on the CPU
        trial = trial.to(device)
    shapes = inputs.describe()
    wants = describe_wants(model)
    hint = f"; its first layers: {wants}" if wants else ""
    try:
        out = eval_forward(model, trial)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, TypeError):
            hint = arguments_hint(model, inputs) or hint
        elif batched and any(t.dim() == 4 for _, t in inputs.tensors()) and (
                "shape '[" in text or "mat1 and mat2" in text or "size mismatch" in text):
            # a view / Linear written for one image size: the channels fit, the size does not
            hint += "; the model may take one image size only: pass --size N with the size it was written for"
        raise UsageError(f"{spec} cannot take the given inputs {shapes}: {type(exc).__name__}"
                         f"{': ' + text if text else ''}{hint}") from exc
    first = _first_tensor(out) if batched else None
    if first is not None and (first.dim() == 0 or first.shape[0] != 2):
        raise UsageError(f"{spec} does not keep the batch of the given inputs {shapes}: 2 samples in, output of "
                         f"shape {tuple(first.shape)} out (it reshapes them into something else){hint}")
    return out


def _first_tensor(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    return None
