"""Datasets from disk: image files (a folder, a glob, a list file) and tensor files, streamed.

:func:`images` gives a map-style :class:`ImageFiles` over

- a folder, searched recursively (hidden files and folders skipped). In the torchvision
  ``ImageFolder`` layout (only sub-folders at the top, each a class) an image's label is its
  class folder's position in ``.classes`` (sorted names), exactly as ``ImageFolder`` numbers them;
  otherwise every label is ``-1`` and ``.classes`` is ``None``;
- a glob (``"photos/**/*.jpg"``, recursive ``**``), or
- a text file listing image paths, one a line, relative to the list file's folder (empty lines
  and lines starting with ``#`` are skipped),

always in sorted, deterministic order (``ds.paths[i]`` is the file of dataset index ``i``: what
:func:`~torchloupe.synthesis.exemplars` reports as an index). An item is ``(image, label)``:
``image`` ``(3, size, size)`` float (``(1, ...)`` with ``mode="L"``), in [0, 1] before
``normalize``. Files are decoded when an item is read, so memory does not grow with the number of
files beyond their paths.

**Unreadable files** (missing, permission denied, empty, not an image, truncated, more than
``max_pixels`` pixels) are not errors: their item is a :class:`Skipped` marker that
:meth:`ImageFiles.collate_fn` drops from the batch, recording which dataset indices the batch
holds in ``batch.indices`` (exemplar indices stay file indices). Each skip is recorded in memory
shared with ``DataLoader`` workers; :meth:`ImageFiles.skipped` lists them and exemplars warn with
the count (:class:`SkippedFilesWarning`). Stream with
``DataLoader(ds, batch_size=64, num_workers=N, pin_memory=True, collate_fn=ds.collate_fn)``.

:func:`tensors` opens a ``.npy`` (``np.load(mmap_mode="r")``) or ``.pt`` (``torch.load(mmap=True,
weights_only=True)``) file of an ``(N, ...)`` input tensor memory-mapped: items are read from disk
when asked for, never the whole file. :func:`load` picks one of the two by the path.
"""

from __future__ import annotations

import glob as _glob
import os
import struct
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import InputFileError, UsageError, require

__all__ = [
    "IMAGE_EXTENSIONS",
    "NORMALIZATIONS",
    "MAX_PIXELS",
    "ImageFiles",
    "TensorFile",
    "Skipped",
    "Batch",
    "SkippedFilesWarning",
    "images",
    "find_images",
    "tensors",
    "load",
    "normalize_images",
    "resize_crop",
    "skipped_message",
    "gather_skipped",
    "warn_skipped",
]

#: File name endings read as images (case-insensitive), those of torchvision's ``ImageFolder``.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: Named input normalizations: (mean, std) per RGB channel.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

#: Default limit of pixels per image (Pillow's own ``Image.MAX_IMAGE_PIXELS`` default): a larger
#: file is skipped as a possible decompression bomb before it is decoded.
MAX_PIXELS = 89_478_485

# Why a file was skipped, by the code kept in shared memory (0: not skipped).
_REASONS = {
    1: "no such file",
    2: "permission denied",
    3: "empty file",
    4: "not an image Pillow can read",
    5: "truncated or damaged image data",
    6: "too many pixels (more than max_pixels; a decompression bomb?)",
    7: "a folder, not a file",
}


class SkippedFilesWarning(UserWarning):
    """Some files of an :class:`ImageFiles` could not be read and were left out."""


# --- pixels ---------------------------------------------------------------------------------
def normalize_images(x: Tensor, normalize: str | tuple | None) -> Tensor:
    """``(x - mean) / std`` per channel, as a new tensor, for ``(N, C, H, W)`` or one ``(C, H, W)``
    image; ``normalize`` is a name in :data:`NORMALIZATIONS`, a ``(mean, std)`` pair of per-channel
    sequences, or ``None`` / ``"none"`` (returns ``x``)."""
    if normalize is None or normalize == "none":
        return x
    channels = x.shape[-3]
    mean, std = _statistics(normalize, channels, x.dtype)
    shape = (-1, 1, 1)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def _statistics(normalize: str | tuple, channels: int, dtype=torch.float32) -> tuple[list[float], list[float]]:
    if isinstance(normalize, str):
        if normalize not in NORMALIZATIONS:
            raise UsageError(
                f"unknown normalization {normalize!r}; expected one of: none, {', '.join(NORMALIZATIONS)}"
            )
        mean, std = NORMALIZATIONS[normalize]
        return list(mean), list(std)
    try:
        mean, std = normalize
        mean_t = torch.as_tensor(mean, dtype=dtype).reshape(-1)
        std_t = torch.as_tensor(std, dtype=dtype).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"normalization must be a name or a (mean, std) pair, got {normalize!r}") from exc
    if mean_t.numel() != channels or std_t.numel() != channels or bool((std_t <= 0).any()):
        raise UsageError(f"normalization {normalize!r} needs {channels} means and {channels} positive stds")
    return mean_t.tolist(), std_t.tolist()


def resize_crop(im: Any, size: int | tuple[int, int]) -> Any:
    """A Pillow image scaled (bicubic) so that it covers ``size`` (``n`` for ``n x n``, or
    ``(width, height)``), then center-cropped to it: for a square, the shorter side becomes ``n``."""
    pil = require("PIL.Image", "render", package="pillow")
    tw, th = (size, size) if isinstance(size, int) else size
    w, h = im.size
    scale = max(tw / w, th / h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), pil.Resampling.BICUBIC)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return im.crop((left, top, left + tw, top + th))


def _to_tensor(im: Any) -> Tensor:
    import numpy as np

    a = np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], -1)
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).float().div_(255.0)  # a copy: Pillow's is read-only


# --- items and batches ----------------------------------------------------------------------
@dataclass(frozen=True)
class Skipped:
    """The item of a file that could not be read: its dataset index, path and why."""

    index: int
    path: str
    reason: str


class _Items(list):
    """The items of one batch with the dataset indices they were read from (see ``__getitems__``)."""

    indices: list[int]


class Batch(tuple):
    """``(images (B, C, H, W), labels (B,))`` of the readable items of a batch; ``.indices``
    ``(B,)``: their dataset indices (``None`` when not known), ``.skipped``: the :class:`Skipped`
    items left out."""

    indices: Tensor | None
    skipped: tuple[Skipped, ...]

    def __new__(cls, items: Sequence[Any], indices: Tensor | None = None, skipped: Sequence[Skipped] = ()):
        self = super().__new__(cls, items)
        self.indices = indices
        self.skipped = tuple(skipped)
        return self

    def __reduce__(self):  # through DataLoader workers with its attributes
        return (Batch, (tuple(self), self.indices, self.skipped))

    def pin_memory(self) -> "Batch":
        """Page-locked copies of the tensors (``DataLoader(pin_memory=True)`` calls this)."""
        return Batch(tuple(t.pin_memory() if isinstance(t, Tensor) else t for t in self), self.indices, self.skipped)


# --- image files ----------------------------------------------------------------------------
class ImageFiles(Dataset):
    """Image files read when asked for (see the module docs). ``paths``: the files, in dataset
    order; ``labels``: one int per file (``-1`` without classes); ``classes``: class names or ``None``;
    ``size``: ``(width, height)`` of every item; ``normalize``: applied after ``image``; ``root``: the
    folder the files were found in (``None`` for a glob or a list), see :meth:`name`."""

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int] | None = None,
                 classes: Sequence[str] | None = None, size: int | None = None, normalize: str | tuple | None = None,
                 mode: str = "RGB", max_pixels: int = MAX_PIXELS, root: str | Path | None = None):
        if mode not in ("RGB", "L"):
            raise UsageError(f"image mode must be 'RGB' or 'L', got {mode!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise UsageError(f"image size must be a positive integer, got {size!r}")
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise UsageError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        self.paths = [str(p) for p in paths]
        if not self.paths:
            raise InputFileError("no image files given; expected at least one")
        self.labels = [-1] * len(self.paths) if labels is None else [int(v) for v in labels]
        if len(self.labels) != len(self.paths):
            raise UsageError(f"{len(self.labels)} labels for {len(self.paths)} files; expected one per file")
        self.classes = None if classes is None else list(classes)
        self.root = None if root is None else str(root)
        self.mode = mode
        self.max_pixels = max_pixels
        self.normalize = normalize
        if normalize is not None and normalize != "none":
            _statistics(normalize, 1 if mode == "L" else 3)  # a bad value fails now, not in a worker
        # why each file was skipped (0: it was not), in memory DataLoader workers share
        self._status = torch.zeros(len(self.paths), dtype=torch.uint8).share_memory_()
        self.size = (size, size) if size is not None else self._first_size()
        from ._limits import check_memory, tensor_bytes

        # decoding, resizing and the float copy hold several copies of one image: refuse a size that cannot fit
        w, h = self.size
        check_memory(8 * tensor_bytes((1 if mode == "L" else 3, h, w)), f"one image at {w}x{h} pixels",
                     hint="pass a smaller size")

    def _first_size(self) -> tuple[int, int]:
        """``(width, height)`` of the first readable file (its header only)."""
        pil = require("PIL.Image", "render", package="pillow")
        for i, p in enumerate(self.paths):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", pil.DecompressionBombWarning)
                    with pil.open(p) as im:
                        return im.size
            except (OSError, ValueError, SyntaxError, EOFError, pil.DecompressionBombError):
                continue
        raise InputFileError(f"none of the {len(self.paths)} image files can be read (the first: '{self.paths[0]}')")

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        """The file of ``index`` as shown to people: relative to :attr:`root` when there is one, as
        text (bytes of a name that are not UTF-8 shown as U+FFFD, so figures and terminals take it)."""
        path = self.paths[index]
        shown = os.path.relpath(path, self.root) if self.root is not None else path
        return os.fsencode(shown).decode("utf-8", "replace")

    def image(self, index: int) -> Tensor:
        """The image of ``index`` ``(C, H, W)`` in [0, 1], not normalized; an unreadable file is an
        :class:`~torchloupe.errors.InputFileError` naming it and why."""
        item = self._decode(index)
        if isinstance(item, Skipped):
            raise InputFileError(f"cannot read image '{item.path}': {item.reason}")
        return item

    def _decode(self, index: int) -> Tensor | Skipped:
        pil = require("PIL.Image", "render", package="pillow")
        path = self.paths[index]
        code = 0
        try:
            if os.path.getsize(path) == 0:
                code = 3
            else:
                with open(path, "rb") as f, warnings.catch_warnings():
                    warnings.simplefilter("ignore", pil.DecompressionBombWarning)
                    with pil.open(f) as im:
                        w, h = im.size
                        if w * h > self.max_pixels:
                            code = 6
                        else:
                            im = im.convert(self.mode)
                            if im.size != self.size:
                                im = resize_crop(im, self.size)
                            return _to_tensor(im)
        except FileNotFoundError:
            code = 1
        except PermissionError:
            code = 2
        except IsADirectoryError:
            code = 7
        except pil.UnidentifiedImageError:
            code = 4
        except pil.DecompressionBombError:
            code = 6
        except (OSError, ValueError, SyntaxError, EOFError, struct.error):
            code = 5
        self._status[index] = code
        return Skipped(index, path, _REASONS[code])

    def __getitem__(self, index: int) -> tuple[Tensor, int] | Skipped:
        if not isinstance(index, int):
            index = int(index)
        if index < 0:
            index += len(self.paths)
        x = self._decode(index)
        if isinstance(x, Skipped):
            return x
        return normalize_images(x, self.normalize), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> list:
        items = _Items(self[i] for i in indices)
        items.indices = [int(i) for i in indices]
        return items

    def collate_fn(self, items: Sequence[Any]) -> Batch:
        """A :class:`Batch` of the readable items (the :class:`Skipped` ones dropped)."""
        indices = getattr(items, "indices", None)
        keep = [j for j, it in enumerate(items) if not isinstance(it, Skipped)]
        c = 1 if self.mode == "L" else 3
        w, h = self.size
        x = torch.stack([items[j][0] for j in keep]) if keep else torch.empty(0, c, h, w)
        y = torch.tensor([int(items[j][1]) for j in keep], dtype=torch.long)
        idx = None if indices is None else torch.tensor([indices[j] for j in keep], dtype=torch.long)
        return Batch((x, y), idx, [it for it in items if isinstance(it, Skipped)])

    def skipped(self) -> list[Skipped]:
        """The files skipped so far (by this process and its ``DataLoader`` workers), in index order."""
        bad = torch.nonzero(self._status).flatten().tolist()
        return [Skipped(i, self.paths[i], _REASONS[int(self._status[i])]) for i in bad]

    def __repr__(self) -> str:
        classes = "" if self.classes is None else f", {len(self.classes)} classes"
        return f"ImageFiles({len(self.paths)} files{classes}, size={self.size[0]}x{self.size[1]})"


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(root: Path) -> list[Path]:
    """Image files under ``root``, sorted as ``ImageFolder`` does (folder by folder, names sorted);
    hidden files and folders left out; links to folders followed."""
    found = []
    for folder, dirs, files in sorted(os.walk(root, followlinks=True)):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder) / f for f in sorted(files) if not f.startswith(".") and _is_image(f))
    return found


def _folder(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    subdirs = sorted(e.name for e in entries if e.is_dir())
    top_images = [e for e in entries if e.is_file() and _is_image(e.name)]
    if subdirs and not top_images:  # ImageFolder: one sub-folder per class
        paths, labels = [], []
        for label, name in enumerate(subdirs):
            files = sorted(_walk(root / name), key=lambda p: (str(p.parent), p.name))
            paths.extend(files)
            labels.extend([label] * len(files))
        return paths, labels, subdirs
    return sorted(_walk(root), key=lambda p: (str(p.parent), p.name)), None, None


def _list_file(path: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read the list of images '{path}': {exc}") from exc
    base = path.parent
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else base / p)
    return out


def find_images(path: str | Path) -> tuple[list[Path], list[int] | None, list[str] | None, Path | None]:
    """``(paths, labels, classes, root)`` of the image files :func:`images` reads from ``path`` (a
    folder, a glob or a ``.txt`` list), without opening any: labels and classes for the
    ``ImageFolder`` layout (else ``None``), ``root`` for a folder (else ``None``)."""
    text = str(path)
    p = Path(text).expanduser()
    labels = classes = root = None
    if p.is_dir():
        root = p
        paths, labels, classes = _folder(p)
        where = f"folder '{p}'"
    elif _is_glob(text):
        paths = sorted(Path(f) for f in _glob.glob(str(p), recursive=True) if _is_image(f) and os.path.isfile(f))
        where = f"glob '{text}'"
    elif p.is_file() and p.suffix.lower() == ".txt":
        paths = _list_file(p)
        where = f"list '{p}'"
    elif p.exists():
        raise InputFileError(f"data '{text}': expected a folder of images, a glob or a .txt list of image paths")
    else:
        raise InputFileError(f"data '{text}': no such file or folder")
    if not paths:
        raise InputFileError(f"the {where} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return paths, labels, classes, root


def images(path: str | Path, size: int | None = None, normalize: str | tuple | None = None, *,
           mode: str = "RGB", max_pixels: int = MAX_PIXELS) -> ImageFiles:
    """An :class:`ImageFiles` over a folder (recursive; ``ImageFolder`` layout gives labels and
    ``.classes``), a glob, or a ``.txt`` file listing image paths (relative to it); see :func:`find_images`.

    ``size``: resize (bicubic) so that the shorter side is ``size`` and center-crop to ``size x
    size``, the rule of ``loupe --size``; ``None`` keeps the first readable image's size (other
    sizes are resized and center-cropped to it). ``normalize``: ``None``, ``"imagenet"`` or a
    ``(mean, std)`` pair. ``max_pixels``: files with more pixels are skipped unread.
    """
    paths, labels, classes, root = find_images(path)
    return ImageFiles(paths, labels, classes, size=size, normalize=normalize, mode=mode, max_pixels=max_pixels,
                      root=root)


# --- tensor files ---------------------------------------------------------------------------
class TensorFile(Dataset):
    """Items ``(x,)`` of an ``(N, ...)`` tensor kept on disk: ``array`` is the ``np.memmap`` of a
    ``.npy`` file or the memory-mapped tensor of a ``.pt`` file; ``path`` the file."""

    def __init__(self, array: Any, path: str, normalize: str | tuple | None = None):
        self.array = array
        self.path = path
        self.normalize = normalize
        if array.ndim < 1:
            raise InputFileError(f"'{path}' holds a 0-d value; expected an (N, ...) tensor of N samples")
        if normalize is not None and normalize != "none":
            if array.ndim != 4:
                raise UsageError(f"normalize={normalize!r} needs (N, C, H, W) images; '{path}' holds "
                                 f"{tuple(array.shape)}")
            _statistics(normalize, int(array.shape[1]))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor]:
        import numpy as np

        item = self.array[index]
        x = item.clone() if isinstance(item, Tensor) else torch.from_numpy(np.array(item))
        if self.normalize is not None and self.normalize != "none" and x.is_floating_point():
            x = normalize_images(x, self.normalize)
        return (x,)

    def __repr__(self) -> str:
        return f"TensorFile('{self.path}', {tuple(self.array.shape)}, memory-mapped)"


def tensors(path: str | Path, normalize: str | tuple | None = None) -> TensorFile:
    """A :class:`TensorFile` over a ``.npy`` or ``.pt`` file holding one ``(N, ...)`` tensor,
    memory-mapped (``np.load(mmap_mode="r")``; ``torch.load(mmap=True, weights_only=True)``, or a
    plain ``weights_only`` load for files in torch's old, non-zip format). ``normalize`` applies to
    ``(N, C, H, W)`` floating images, item by item."""
    import numpy as np

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputFileError(f"data '{path}': no such file")
    if p.suffix.lower() == ".npy":
        try:
            array = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputFileError(f"cannot read data '{path}': not a .npy array file ({exc})") from exc
        if array.dtype.kind not in "biuf":
            raise InputFileError(f"'{path}' holds {array.dtype} values; expected numbers")
        return TensorFile(array, str(p), normalize)
    try:
        with warnings.catch_warnings():  # torch notes pickle protocols it did not write; not the user's concern
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            x = torch.load(p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
    except Exception as exc:  # torch.load's errors for damaged or unsafe files vary by version
        raise InputFileError(f"cannot read data '{path}': not a tensor file torch.save wrote, or it holds "
                             f"Python objects (not loaded: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from exc
    if not isinstance(x, Tensor):
        raise InputFileError(f"'{path}' holds a {type(x).__name__}; expected one (N, ...) tensor")
    return TensorFile(x, str(p), normalize)


def load(path: str | Path, size: int | None = None, normalize: str | tuple | None = None, **kwargs) -> Dataset:
    """:func:`tensors` for a ``.pt`` / ``.pth`` / ``.npy`` file, else :func:`images`."""
    if Path(str(path)).suffix.lower() in (".pt", ".pth", ".npy") and not _is_glob(str(path)):
        return tensors(path, normalize=normalize)
    return images(path, size=size, normalize=normalize, **kwargs)


# --- reporting skips ------------------------------------------------------------------------
def skipped_message(dataset: Any, shown: int = 5) -> str | None:
    """``"skipped 3 unreadable files: a.jpg (truncated ...), ..."`` for an :class:`ImageFiles` (or a
    ``DataLoader`` over one) that skipped files, else ``None``."""
    dataset = getattr(dataset, "dataset", dataset)
    if not isinstance(dataset, ImageFiles):
        return None
    bad = dataset.skipped()
    if not bad:
        return None
    names = ", ".join(f"{dataset.name(s.index)} ({s.reason})" for s in bad[:shown])
    more = f", and {len(bad) - shown} more" if len(bad) > shown else ""
    return f"skipped {len(bad)} unreadable file{'s' if len(bad) != 1 else ''}: {names}{more}"


def gather_skipped(dataset: Any) -> None:
    """Under a process group, every rank's record of skipped files merged into every rank's (a
    collective call: every rank makes it). Nothing to do in one process or for other datasets."""
    from . import distributed as D

    dataset = getattr(dataset, "dataset", dataset)
    if isinstance(dataset, ImageFiles) and D.is_active():
        merged = torch.stack(D.all_gather(dataset._status.clone())).amax(0)
        dataset._status.copy_(merged)


def warn_skipped(dataset: Any, distributed: bool = False) -> None:
    """A :class:`SkippedFilesWarning` with :func:`skipped_message` when files were skipped.
    ``distributed``: the ranks' records are merged first (:func:`gather_skipped`, every rank must
    call) and rank 0 warns."""
    if distributed:
        from . import distributed as D

        gather_skipped(dataset)
        if D.rank() != 0:
            return
    message = skipped_message(dataset)
    if message is not None:
        warnings.warn(message, SkippedFilesWarning, stacklevel=3)
