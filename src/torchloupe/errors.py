"""The one exception tree of torchloupe.

Every error torchloupe raises on purpose derives from :class:`TorchLoupeError`
and, where it fits, from the builtin a caller would already catch
(``ValueError``, ``TypeError``, ``LookupError``). Messages name the bad value
and what was expected, and are raised before any expensive work.

::

    TorchLoupeError
    ├── LayerNotFoundError      (LookupError)   unknown layer name / pattern / type
    ├── InputError              (ValueError)    bad input tensor
    │   ├── InputShapeError                     shape does not fit the model
    │   │   └── TemplateShapeError              input_shape does not match a linear layer's inputs
    │   ├── InputTypeError      (TypeError)     not a tensor (or figure) where one is expected
    │   │   └── InputDtypeError                 integer / bool values where the model takes floats
    │   └── NonFiniteInputError                 NaN or infinite values
    ├── TargetError             (ValueError)    class index / target out of range
    ├── ChannelError            (ValueError)    channel index out of range
    ├── UnsupportedModelError   (TypeError)     the method cannot apply to this model
    ├── TraceError              (RuntimeError)  the model raised while being traced
    ├── CheckpointError         (ValueError)    unreadable or unsafe checkpoint
    ├── InputFileError          (ValueError)    unreadable image or data file
    ├── UsageError              (ValueError)    an option value not among the accepted forms
    ├── TrackerError            (ValueError)    a bad weight-tracker setting or history request
    ├── ParamError              (ValueError)    an unknown or ill-fitting image parameterization
    ├── ObjectiveSpecError      (ValueError)    an objective string that does not parse
    ├── MissingDependencyError  (ImportError)   an optional extra is not installed
    ├── OutputError             (OSError)       an output file cannot be written (full disk, read-only folder)
    └── ResourceLimitError      (ValueError)    a size whose memory would pass the limit (see torchloupe._limits)
"""

from __future__ import annotations

__all__ = [
    "TorchLoupeError",
    "LayerNotFoundError",
    "InputError",
    "InputShapeError",
    "InputTypeError",
    "NonFiniteInputError",
    "TargetError",
    "ChannelError",
    "UnsupportedModelError",
    "TraceError",
    "CheckpointError",
    "InputFileError",
    "UsageError",
    "MissingDependencyError",
    "TemplateShapeError",
    "TrackerError",
    "ParamError",
    "ObjectiveSpecError",
    "OutputError",
    "InputDtypeError",
    "ResourceLimitError",
    "require",
]


class TorchLoupeError(Exception):
    """Base class of every error torchloupe raises on purpose."""


class LayerNotFoundError(TorchLoupeError, LookupError):
    """A layer name, pattern, type or module that is not part of the model.

    ``.name`` is what was asked for, ``.closest`` the nearest real names.
    """

    def __init__(self, message: str, name: object = None, closest: tuple[str, ...] = ()):
        super().__init__(message)
        self.name = name
        self.closest = tuple(closest)

    def __str__(self) -> str:  # LookupError/KeyError would repr() the message
        return str(self.args[0])


class InputError(TorchLoupeError, ValueError):
    """The input tensor cannot be used as given."""


class InputShapeError(InputError):
    """The input's shape does not fit what the model's first layer wants."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type: not a tensor (or a figure) where one is expected."""


class NonFiniteInputError(InputError):
    """The input holds NaN or infinite values."""


class TargetError(TorchLoupeError, ValueError):
    """A target class index or target specification outside the valid range."""


class ChannelError(TorchLoupeError, ValueError):
    """A channel (unit) index outside the layer's channel count."""


class UnsupportedModelError(TorchLoupeError, TypeError):
    """The requested method does not apply to this model or layer."""


class TraceError(TorchLoupeError, RuntimeError):
    """The model raised while torchloupe ran it. ``.partial`` holds what was recorded."""

    def __init__(self, message: str, module: str | None = None, partial: object = None):
        super().__init__(message)
        self.module = module
        self.partial = partial


class CheckpointError(TorchLoupeError, ValueError):
    """A checkpoint that cannot be read, is not a state dict, or is not safe to load."""


class InputFileError(TorchLoupeError, ValueError):
    """An image or data file that cannot be read."""


class UsageError(TorchLoupeError, ValueError):
    """An option value (model spec, section name, normalization...) that is not one of the accepted forms."""


class MissingDependencyError(TorchLoupeError, ImportError):
    """An optional dependency is missing; the message names the pip command."""


class TemplateShapeError(InputShapeError):
    """``input_shape`` does not have as many elements as the linear layer has inputs."""


class TrackerError(TorchLoupeError, ValueError):
    """A bad tracker setting (``every``, ``budget``, ``bins``, steps) or history request."""


class ParamError(TorchLoupeError, ValueError):
    """An unknown image parameterization or one that does not fit the input shape."""


class ObjectiveSpecError(TorchLoupeError, ValueError):
    """An objective string that does not parse, e.g. ``'layer3:x'``."""


class OutputError(TorchLoupeError, OSError):
    """An output file that cannot be written (full disk, read-only folder, a folder in the way);
    nothing was left at its path. ``.errno`` is the operating system's error number."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class InputDtypeError(InputTypeError):
    """Integer or bool values (a ``uint8`` image) where the model's first layer takes floating-point ones."""


class ResourceLimitError(TorchLoupeError, ValueError):
    """A size (input, image, batch, ``k``, dataset) whose estimated memory passes what is available.

    ``.needed`` and ``.available`` are the bytes compared. ``TORCHLOUPE_MEMORY_LIMIT`` (bytes, or with
    a ``K``/``M``/``G``/``T`` suffix; ``0`` or ``off``: no limit) overrides the available memory."""

    def __init__(self, message: str, needed: int = 0, available: int = 0):
        super().__init__(message)
        self.needed, self.available = int(needed), int(available)


def require(module: str, extra: str, package: str | None = None):
    """Import an optional dependency or raise one line naming the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{pkg} is needed for this; install it with: pip install 'torchloupe[{extra}]'"
        ) from exc
