"""The one place hooks live.

Everything in torchloupe that needs to see inside a forward pass goes through
this module:

- :func:`preserved` snapshots what a call could change on the user's model
  (train/eval flags, hook dictionaries, ``requires_grad``, ``.grad``, child
  modules) and restores it in ``finally``, also when the call raises;
- :func:`hooks` registers forward / pre-forward / backward hooks for the
  length of a ``with`` block and removes them on exit;
- :func:`capture` and :func:`activations` record layer outputs;
- :func:`session` is the one way torchloupe runs a user's model: inside :func:`preserved`, in eval
  mode, parameters frozen when asked, the fused attention fast path off and Hugging Face attention
  routed where asked; :func:`eval_forward` is one forward in such a session;
- :func:`functions` sees every torch function of a forward (the one torch-function mode).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import LayerNotFoundError, UnsupportedModelError
from .inputs import Inputs, InputsLike, check_input, check_inputs
from .layers import LayerSpec, find_layers

__all__ = [
    "require_module",
    "session",
    "Session",
    "preserved",
    "hooks",
    "intercept",
    "functions",
    "capture",
    "activations",
    "Recorder",
    "eval_forward",
    "detach_tree",
]

# Hook dictionaries an nn.Module may carry (names differ across torch versions; absent ones are skipped).
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


@dataclass
class _Snapshot:
    training: list[tuple[nn.Module, bool]] = field(default_factory=list)
    hook_dicts: list[tuple[nn.Module, str, OrderedDict]] = field(default_factory=list)
    children: list[tuple[nn.Module, OrderedDict]] = field(default_factory=list)
    params: list[tuple[Tensor, bool, Tensor | None]] = field(default_factory=list)
    is_full_backward_hook: list[tuple[nn.Module, Any]] = field(default_factory=list)


def _snapshot(model: nn.Module) -> _Snapshot:
    snap = _Snapshot()
    for module in model.modules():
        snap.training.append((module, module.training))
        for attr in _HOOK_DICTS:
            d = module.__dict__.get(attr)
            if d is not None:
                snap.hook_dicts.append((module, attr, OrderedDict(d)))
        if not isinstance(module, torch.jit.ScriptModule):  # TorchScript keeps its own module dict
            snap.children.append((module, OrderedDict(module._modules)))
        snap.is_full_backward_hook.append((module, module.__dict__.get("_is_full_backward_hook")))
    seen: set[int] = set()
    for tensor in list(model.parameters()) + [b for b in model.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        snap.params.append((tensor, tensor.requires_grad, tensor.grad))
    return snap


def _restore(snap: _Snapshot) -> None:
    for module, children in snap.children:
        if module._modules != children:
            module._modules.clear()
            module._modules.update(children)
    for module, attr, saved in snap.hook_dicts:
        d = module.__dict__[attr]
        if list(d.items()) != list(saved.items()):
            d.clear()
            d.update(saved)
    for module, flag in snap.is_full_backward_hook:
        if module.__dict__.get("_is_full_backward_hook") is not flag:
            module.__dict__["_is_full_backward_hook"] = flag
    # A module whose class overrides train() (Hugging Face's PreTrainedModel keeps kernels_mode there)
    # gets its mode back through train(mode), outermost first, so that side state follows; then every
    # flag is set as it was (train(mode) sets a whole subtree, and the subtree may have been mixed).
    for module, training in snap.training:
        if module.training != training and type(module).train is not nn.Module.train:
            module.train(training)
    for module, training in snap.training:
        if module.training != training:
            module.training = training
    for tensor, requires_grad, grad in snap.params:
        if tensor.requires_grad != requires_grad and tensor.is_leaf:
            tensor.requires_grad_(requires_grad)
        if tensor.grad is not grad:
            tensor.grad = grad


def require_module(model: Any, what: str = "model") -> nn.Module:
    """``model`` when it is an ``nn.Module``; else :class:`UnsupportedModelError` (a ``TypeError``)
    naming ``what`` and the type given: ``"model: expected an nn.Module, got str"``."""
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"{what}: expected an nn.Module, got {type(model).__name__}")
    return model


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Restore train/eval flags, hooks, child modules, ``requires_grad`` and ``.grad`` on exit.

    A module whose class has its own ``train()`` (Hugging Face models: it keeps side state such as
    ``kernels_mode``) gets its mode back through ``module.train(mode)``, not by assignment.

    Parameter *values* are never written by torchloupe, so they are not copied
    (that would double the memory of large models); the invariant test suite
    checks them bit for bit.
    """
    require_module(model)
    snap = _snapshot(model)
    try:
        yield model
    finally:
        _restore(snap)


@contextlib.contextmanager
def hooks(
    forward: Mapping[nn.Module, Callable] | None = None,
    forward_pre: Mapping[nn.Module, Callable] | None = None,
    backward: Mapping[nn.Module, Callable] | None = None,
    *,
    with_kwargs: bool = False,
    always_call: bool = False,
) -> Iterator[None]:
    """Register hooks for the length of the block; all are removed on exit, also on error.

    ``forward``: ``fn(module, args, output)`` (``fn(module, args, kwargs, output)`` with
    ``with_kwargs``); ``forward_pre``: ``fn(module, args)`` (``fn(module, args, kwargs)``);
    ``backward``: full backward hooks ``fn(module, grad_input, grad_output)``.
    ``always_call``: forward hooks also run when the module's forward raises (``output`` is
    then ``None`` and the exception is in flight, see ``sys.exc_info()``).
    Use inside :func:`preserved` so even a hook a torch internal forgets is dropped.
    """
    handles = []
    try:
        for module, fn in (forward or {}).items():
            handles.append(module.register_forward_hook(fn, with_kwargs=with_kwargs, always_call=always_call))
        for module, fn in (forward_pre or {}).items():
            handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))
        for module, fn in (backward or {}).items():
            handles.append(module.register_full_backward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


class _FunctionMode(torch.overrides.TorchFunctionMode):
    """The one torch-function mode of torchloupe: every call goes to ``handler``."""

    def __init__(self, handler: Callable[[Callable, tuple, tuple, dict], Any]):
        super().__init__()
        self.handler = handler

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.handler(func, types, args, kwargs or {})


@contextlib.contextmanager
def functions(handler: Callable[[Callable, tuple, tuple, dict], Any]) -> Iterator[None]:
    """See every torch function called while the block runs: ``handler(func, types, args, kwargs)``
    is called instead and returns what the call returns.

    A :class:`torch.overrides.TorchFunctionMode` (``torch.cat``, ``F.relu``, ``Tensor.__add__``,
    ``F.scaled_dot_product_attention``... also inside ``nn.Module.forward``). The handler runs with
    the mode switched off, so ``func(*args, **kwargs)`` inside it runs the real function; a handler
    that wants the mode on again for a nested call (to see inside a function) opens another
    ``functions(handler)`` block. Nothing is attached to any module; the mode ends with the block,
    also on error. The tracer (:mod:`torchloupe.structure`) and the attention recorder use it.
    """
    with _FunctionMode(handler):
        yield


@contextlib.contextmanager
def intercept(replacements: Mapping[Callable, Callable]) -> Iterator[None]:
    """Replace torch functions (``F.relu``, ``torch.relu``, ``Tensor.relu_``...) while the block runs.

    Calls to a key of ``replacements`` anywhere in the block (also inside ``nn.Module.forward``,
    e.g. ``nn.ReLU`` calls ``F.relu``) run the mapped function with the same arguments instead
    (see :func:`functions`). The replacement may call the original.
    """
    table = dict(replacements)

    def handler(func, types, args, kwargs):
        return table.get(func, func)(*args, **kwargs)

    with functions(handler):
        yield


def _hf_configs(model: nn.Module) -> list[Any]:
    configs, seen = [], set()
    for m in model.modules():
        cfg = m.__dict__.get("config")
        if cfg is not None and hasattr(cfg, "_attn_implementation") and id(cfg) not in seen:
            seen.add(id(cfg))
            configs.append(cfg)
    return configs


def _hf_attention_modules(model: nn.Module) -> list[str]:
    """Innermost modules of a Hugging Face model that compute attention (they hold a ``config``)."""
    names = []
    for name, m in model.named_modules():
        if "Attention" not in type(m).__name__ or "config" not in m.__dict__:
            continue
        inner = any("Attention" in type(c).__name__ for _, c in m.named_modules() if c is not m)
        if not inner:
            names.append(name)
    return names


@contextlib.contextmanager
def _hf_route(model: nn.Module) -> Iterator[set[str]]:
    """Hugging Face: eager softmax modules to watch; other implementations run as "sdpa" (restored)."""
    configs = _hf_configs(model)
    saved = [(cfg, cfg._attn_implementation) for cfg in configs]
    eager: set[str] = set()
    try:
        for cfg, impl in saved:
            if impl == "eager":
                eager = set(_hf_attention_modules(model))
            elif impl not in (None, "sdpa"):
                cfg._attn_implementation = "sdpa"
        yield eager
    finally:
        for cfg, impl in saved:
            if cfg._attn_implementation != impl:
                cfg._attn_implementation = impl


@contextlib.contextmanager
def _fastpath_off() -> Iterator[None]:
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = mha.get_fastpath_enabled()
    try:
        mha.set_fastpath_enabled(False)
        yield
    finally:
        mha.set_fastpath_enabled(before)


@dataclass
class Session:
    """A user's model as torchloupe runs it (see :func:`session`): ``run(inputs)`` calls it."""

    model: nn.Module
    eager_attention: frozenset[str] = frozenset()

    def __call__(self, inputs: InputsLike) -> Any:
        return Inputs.of(inputs).call(self.model)


@contextlib.contextmanager
def session(
    model: nn.Module,
    *,
    eval: bool = True,
    freeze: bool = False,
    fastpath: bool = True,
    hf_attention: str | None = None,
) -> Iterator[Session]:
    """The one way torchloupe runs a user's model; everything it changes is undone on exit.

    Inside :func:`preserved` (modes, hooks, children, ``requires_grad`` and ``.grad`` restored, also
    on error): ``eval`` puts every module in eval mode (dropout off, BatchNorm statistics
    untouched); ``freeze`` turns ``requires_grad`` off on every parameter, so gradients with respect
    to activations or inputs compute nothing for the weights and leave no ``.grad``;
    ``fastpath=False`` switches off the fused ``nn.MultiheadAttention`` / ``TransformerEncoder``
    path (which hides attention weights and cannot be exported); ``hf_attention="sdpa"`` runs
    Hugging Face attention other than ``"eager"`` as ``"sdpa"`` and lists the eager attention
    modules in ``Session.eager_attention`` (their softmax is the attention).

    ::

        with probe.session(model, freeze=True) as run:
            out = run(inputs)
    """
    require_module(model)
    with preserved(model):
        if eval:
            model.eval()
        if freeze:
            for p in model.parameters():
                p.requires_grad_(False)
        with contextlib.ExitStack() as stack:
            if not fastpath:
                stack.enter_context(_fastpath_off())
            eager: set[str] = set()
            if hf_attention is not None:
                if hf_attention != "sdpa":
                    raise UnsupportedModelError(f"hf_attention={hf_attention!r}: only 'sdpa' routing is supported")
                eager = stack.enter_context(_hf_route(model))
            yield Session(model, frozenset(eager))


def detach_tree(value: Any) -> Any:
    """Detach every tensor in a nested tuple / list / dict output."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(detach_tree(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(detach_tree(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, detach_tree(v)) for k, v in value.items())
    return value


def _clone_tree(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_clone_tree(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_clone_tree(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _clone_tree(v)) for k, v in value.items())
    return value


class Recorder(Mapping[str, Any]):
    """Layer outputs recorded by :func:`capture`, keyed by dotted layer name.

    ``rec[name]`` is the output of the layer's *last* call (a detached tensor,
    or the module's tuple / dict output with detached tensors);
    ``rec.calls(name)`` lists every call's output in order (a module used twice).
    ``rec.inputs[name]`` holds the positional inputs of the last call when
    ``inputs=True`` was asked for.
    """

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._calls: dict[str, list[Any]] = {n: [] for n in names}
        self.inputs: dict[str, tuple] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._calls:
            raise KeyError(f"{name!r} was not captured; captured layers: {', '.join(self.names)}")
        calls = self._calls[name]
        if not calls:
            raise KeyError(f"layer {name!r} did not run during the forward pass")
        return calls[-1]

    def __iter__(self):
        return (n for n in self.names if self._calls[n])

    def __len__(self) -> int:
        return sum(1 for n in self.names if self._calls[n])

    def calls(self, name: str) -> list[Any]:
        return list(self._calls[name])

    def clear(self) -> None:
        for v in self._calls.values():
            v.clear()
        self.inputs.clear()


@contextlib.contextmanager
def capture(
    model: nn.Module,
    layers: LayerSpec | Sequence[LayerSpec],
    *,
    detach: bool = True,
    inputs: bool = False,
    eval_mode: bool = False,
) -> Iterator[Recorder]:
    """Record the outputs of ``layers`` while the block runs forwards of ``model``.

    Only capture's own hooks are removed on exit (also on error); what the block itself does to
    the model (a backward that fills ``.grad``, a hook the user registers) is left alone.
    ``detach=False`` keeps the outputs attached to the autograd graph (for gradients
    with respect to activations). ``eval_mode=True`` runs the block in eval mode and
    restores each module's flag afterwards. Hooks are removed on exit, even on error.
    """
    found = find_layers(model, layers)
    rec = Recorder([n for n, _ in found])

    def make_hook(name: str):
        def hook(module, args, output):
            # Detached outputs are cloned: a later in-place op (ReLU(inplace=True)) would change them.
            rec._calls[name].append(_clone_tree(detach_tree(output)) if detach else output)
            if inputs:
                rec.inputs[name] = detach_tree(args) if detach else args

        return hook

    # Only what capture itself adds is undone on exit (its hooks, and the modes when eval_mode):
    # gradients, hooks or modes the user changes inside the block are the user's and stay.
    modes = [(m, m.training) for m in model.modules()] if eval_mode else []
    try:
        if eval_mode:
            model.eval()
        with hooks(forward={m: make_hook(n) for n, m in found}):
            yield rec
    finally:
        for m, training in modes:
            m.training = training


def eval_forward(model: nn.Module, inputs: InputsLike, *, grad: bool = False) -> Any:
    """One forward in a :func:`session` (eval mode, modes restored), without autograd unless ``grad``.
    ``inputs``: anything ``model(...)`` takes (see :class:`~torchloupe.inputs.Inputs`)."""
    with session(model) as run, torch.set_grad_enabled(grad):
        return run(inputs)


def activations(
    model: nn.Module,
    x: Any,
    layers: LayerSpec | Sequence[LayerSpec],
) -> dict[str, Any]:
    """Outputs of ``layers`` for input ``x`` in one eval-mode forward: ``{name: tensor}``.

    ``x`` is a tensor, a tuple of positional inputs, or a dict of keyword inputs. A layer that
    does not run in that forward (googlenet's auxiliary heads in eval mode) is a
    :class:`~torchloupe.errors.LayerNotFoundError` naming it, never a missing key.
    """
    found = find_layers(model, layers)
    inputs = check_inputs(model, x, explains=False)  # type, dtype, shape, finite values, memory: one line, before the forward
    with session(model) as run, capture(model, [m for _, m in found]) as rec, torch.no_grad():
        run(inputs.map(Tensor.clone))  # copies: a model may edit its input in place
    missing = [n for n in rec.names if not rec._calls[n]]
    if missing:
        ran = [n for n in rec.names if rec._calls[n]]
        raise LayerNotFoundError(
            f"layer {', '.join(repr(n) for n in missing)} did not run in an eval-mode forward of "
            f"{type(model).__name__} (a training-only branch, or a module the forward never calls)"
            + (f"; the layers asked for that ran: {', '.join(repr(n) for n in ran)}" if ran else ""),
            missing[0] if len(missing) == 1 else tuple(missing),
        )
    return {n: rec[n] for n in rec.names}
