"""Record one forward pass into a :class:`~torchloupe.structure.graph.ModelGraph`.

Two recorders run together, without ``torch.fx`` (so data-dependent control flow
just runs, and is noted):

- module hooks (registered through :mod:`torchloupe.probe`, the one home of hooks)
  see every module call: leaf modules (and opaque ones such as ``LSTM`` and
  ``MultiheadAttention``) become nodes; containers become *scopes*;
- a torch-function handler (:func:`torchloupe.probe.functions`) sees every torch function called by
  the containers' own code (``torch.cat``, ``+``, ``F.relu``, ``flatten``,
  ``matmul``, ``softmax``, ``scaled_dot_product_attention``...), which become op nodes.
  Inside leaf modules it only watches for ``bool()`` / ``.item()`` on tensors.

Edges follow tensor identity: every tensor a node outputs is remembered (weakly,
by ``id``) with its producer; a node that consumes it gets an edge from there. A
node that returns one of its inputs after bumping its version counter wrote into
it (``add_``, ``relu(inplace=True)``, ``+=``): it is marked in-place and becomes
the tensor's producer.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import probe
from ..errors import TraceError
from ..inputs import Inputs
from .graph import Branch, Edge, ModelGraph, ModuleInfo, Node
from .merges import CAT_OPS, merges


#: Modules shown as one node unless expanded (their forward is a fused kernel or functional code).
OPAQUE_TYPES: tuple[type, ...] = (nn.MultiheadAttention, nn.RNNBase)

# Python reading tensor values: the path taken may depend on the input.
_DATA_READS = {
    "__bool__": "bool",
    "item": "item",
    "tolist": "tolist",
    "__int__": "int",
    "__float__": "float",
    "__index__": "index",
    "__complex__": "complex",
    "numpy": "numpy",
}
# Metadata and bookkeeping: never nodes (nor is any ``register_*`` method of a tensor, see _is_bookkeeping).
_SKIP = {
    "size", "dim", "numel", "__len__", "is_floating_point", "is_complex", "element_size", "stride",
    "storage_offset", "is_contiguous", "data_ptr", "__repr__", "__format__", "__hash__", "__iter__",
    "requires_grad_", "retain_grad", "get_device", "has_names", "untyped_storage",
    "__reduce_ex__", "__deepcopy__", "__setstate__", "_is_view", "nelement", "ndimension", "__contains__",
    "is_nonzero", "equal", "backward", "detach_", "__array__", "__dlpack__",
}


def _is_bookkeeping(name: str | None) -> bool:
    return name is not None and (name in _SKIP or name.startswith("register_"))


# Attribute reads (``Tensor.T.__get__``) that compute a new tensor.
_ATTR_OPS = {"T", "mT", "H", "mH", "real", "imag", "data"}
_RENAME = {
    "radd": "add", "rsub": "sub", "rmul": "mul", "rmatmul": "matmul", "truediv": "div", "rtruediv": "div",
    "itruediv": "idiv", "floordiv": "floor_divide", "rfloordiv": "floor_divide", "rpow": "pow",
    "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor", "invert": "bitwise_not",
}
_MATMULS = {"matmul", "mm", "bmm", "linear", "addmm", "baddbmm", "addbmm", "mv"}
_CONVS = {"conv1d", "conv2d", "conv3d"}


def _op_name(func: Any) -> str | None:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":
        attr = getattr(getattr(func, "__self__", None), "__name__", None)
        return f"attr:{attr}" if attr in _ATTR_OPS else None
    if name.startswith("__") and name.endswith("__") and len(name) > 4:
        name = name[2:-2]
        name = _RENAME.get(name, name)
    return name


def _tensors(value: Any, depth: int = 0) -> Iterator[Tensor]:
    """Tensors inside ``value`` (nested tuples, lists, dicts; a few levels deep)."""
    if isinstance(value, Tensor):
        yield value
    elif depth < 4:
        if isinstance(value, (tuple, list)):
            for v in value:
                yield from _tensors(v, depth + 1)
        elif isinstance(value, dict):
            for v in value.values():
                yield from _tensors(v, depth + 1)


def _keyed(value: Any, prefix: str) -> Iterator[tuple[str, Tensor]]:
    """``(key, tensor)`` pairs of a nested output, keys like ``logits``, ``output[0]``, ``aux.score``."""
    if isinstance(value, Tensor):
        yield prefix, value
    elif isinstance(value, dict) or (hasattr(value, "keys") and hasattr(value, "__getitem__")):
        for k in value.keys():
            key = f"{prefix}.{k}" if prefix and prefix not in ("output", "input") else str(k)
            yield from _keyed(value[k], key)
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple: its field names
        for k, v in zip(value._fields, value):
            yield from _keyed(v, k if prefix in ("output", "input") else f"{prefix}.{k}")
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            yield from _keyed(v, f"{prefix}[{i}]")


def _shape(t: Tensor) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in t.shape)
    except (RuntimeError, TypeError, ValueError):  # nested / symbolic shapes: metadata only, keep tracing
        return ()


def _dtype(t: Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _nbytes(t: Tensor) -> int:
    try:
        return t.numel() * t.element_size()
    except (RuntimeError, TypeError, ValueError):  # sparse / nested layouts without a plain size
        return 0


def _module_macs(module: nn.Module, args: Sequence[Any], kwargs: dict, out: list[Tensor]) -> int | None:
    """Multiply-adds of one module call where they are well defined, else ``None``."""
    if not out:
        return None
    y = out[0]
    ins = list(_tensors(args)) + list(_tensors(kwargs))
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and ins:
        return ins[0].numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return y.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return y.numel() * module.in_features
    if isinstance(module, nn.Bilinear):
        return y.numel() * module.in1_features * module.in2_features
    if isinstance(module, nn.MultiheadAttention) and len(ins) >= 3:
        q, k = ins[0], ins[1]
        batched = q.dim() == 3
        if batched and module.batch_first:
            n, tq, ts = q.shape[0], q.shape[1], k.shape[1]
        elif batched:
            n, tq, ts = q.shape[1], q.shape[0], k.shape[0]
        else:
            n, tq, ts = 1, q.shape[0], k.shape[0]
        e = module.embed_dim
        proj = tq * e * e + ts * e * module.kdim + ts * e * module.vdim
        return n * (proj + 2 * tq * ts * e + tq * e * e)
    if isinstance(module, nn.RNNBase) and ins:
        x = ins[0]
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        steps = x.numel() // x.shape[-1]  # T * N (or T for unbatched)
        h, dirs = module.hidden_size, 2 if module.bidirectional else 1
        total, width = 0, module.input_size
        for _ in range(module.num_layers):
            total += dirs * steps * gates * h * (width + h)
            width = h * dirs
        return total
    return None


def _op_macs(name: str, ins: list[Tensor], out: list[Tensor]) -> int | None:
    if not out or not ins:
        return None
    y = out[0]
    if name in _MATMULS:
        if name == "linear" and len(ins) >= 2:
            return y.numel() * ins[1].shape[-1]
        a = ins[1] if name in ("addmm", "baddbmm", "addbmm") and len(ins) >= 3 else ins[0]
        return y.numel() * (a.shape[-1] if a.dim() else 1)
    if name in _CONVS and len(ins) >= 2:
        return y.numel() * math.prod(ins[1].shape[1:])
    if name == "scaled_dot_product_attention" and len(ins) >= 3:
        q, k, v = ins[:3]
        batch = math.prod(q.shape[:-2])
        return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    return None


class _Frame:
    __slots__ = ("name", "node", "leaf", "versions", "inputs")

    def __init__(self, name: str, node: int | None, leaf: bool):
        self.name = name
        self.node = node
        self.leaf = leaf
        self.versions: list[tuple[Tensor, int]] = []
        self.inputs: list[Tensor] = []


class _Recorder:
    """The state one trace shares between its module hooks and its torch-function handler
    (:meth:`on_function`, run under :func:`torchloupe.probe.functions`)."""

    def __init__(self, model: nn.Module, expand: set[str], keep_values: bool = False):
        self.model = model
        self.values: dict[int, Tensor] | None = {} if keep_values else None
        self.module_outputs: dict[str, tuple[int, ...]] = {}
        self.names: dict[int, str] = {}
        self.module_by_name: dict[str, nn.Module] = {}
        for name, m in model.named_modules():
            self.names.setdefault(id(m), name)
            self.module_by_name[name] = m
        self.opaque: set[int] = set()
        self.leafish: set[int] = set()
        for name, m in self.module_by_name.items():
            opaque = isinstance(m, OPAQUE_TYPES)
            if opaque:
                self.opaque.add(id(m))
            # a user's model without submodules is traced inside (its ops); torch's own layers are one node
            user_root = name == "" and not type(m).__module__.startswith("torch.")
            if (next(m.children(), None) is None or opaque) and not user_root and not (
                name in expand or type(m).__name__ in expand
            ):
                self.leafish.add(id(m))
        self.own_params: dict[int, int] = {}
        self.total_params: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self._count_params(model, {})
        self.param_names: dict[int, tuple[str, str]] = {}
        for n, p in model.named_parameters():
            self.param_names.setdefault(id(p), (n, "Parameter"))
        for n, b in model.named_buffers():
            self.param_names.setdefault(id(b), (n, "buffer"))
        self.nodes: list[dict] = []
        self.edges: dict[tuple[int, int], tuple[list, list]] = {}
        self.producer: dict[int, tuple[weakref.ref, int]] = {}
        self.stack: list[_Frame] = []
        self.leaf_depth = 0
        self.busy = False
        self.calls: dict[str, int] = {}
        self.branches: list[Branch] = []
        self.failed: tuple[BaseException, str] | None = None  # (error, the op it left) innermost first
        self.raised: tuple[BaseException, _Frame] | None = None  # (error, the module it left) innermost first
        self.expand_mha = any(isinstance(self.module_by_name[n], nn.MultiheadAttention) for n in expand
                              if n in self.module_by_name) or "MultiheadAttention" in expand

    def _count_params(self, module: nn.Module, memo: dict[int, set[int]]) -> set[int]:
        """Own and total (unique, shared ones once) parameter counts of every module, bottom-up, once."""
        if id(module) in memo:
            return memo[id(module)]
        own = {id(p): p.numel() for p in module._parameters.values() if p is not None}
        ids = set(own)
        self._sizes.update(own)
        for child in module._modules.values():
            if child is not None:
                ids |= self._count_params(child, memo)
        memo[id(module)] = ids
        self.own_params[id(module)] = sum(own.values())
        self.total_params[id(module)] = sum(self._sizes[i] for i in ids)
        return ids

    # ---- bookkeeping ----------------------------------------------------------------------
    def scope(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.stack if not f.leaf and f.name)

    def current_module(self) -> str:
        return self.stack[-1].name if self.stack else ""

    def add_node(self, **fields) -> int:
        nid = len(self.nodes)
        fields["id"] = nid
        self.nodes.append(fields)
        return nid

    def source(self, t: Tensor) -> int | None:
        entry = self.producer.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        info = self.param_names.get(id(t))
        if info is not None:  # a parameter / buffer read by a container's own code
            nid = self.add_node(name=info[0], type=info[1], kind="param", module=info[0].rpartition(".")[0],
                                scope=self.scope(), output_shapes=(_shape(t),), output_dtypes=(_dtype(t),),
                                params=t.numel() if info[1] == "Parameter" else 0)
            self.set_producer(t, nid)
            return nid
        return None

    def set_producer(self, t: Tensor, nid: int) -> None:
        self.producer[id(t)] = (weakref.ref(t), nid)

    def sources(self, inputs: list[Tensor]) -> list[tuple[int | None, Tensor]]:
        """Producers of ``inputs``; call before adding the consumer so node ids stay topological."""
        return [(self.source(t), t) for t in inputs]

    def connect(self, nid: int, sources: list[tuple[int | None, Tensor]]) -> None:
        self.nodes[nid]["sources"] = tuple(None if src == nid else src for src, _ in sources)
        for src, t in sources:
            if src is None or src == nid:
                continue
            shapes, dtypes = self.edges.setdefault((src, nid), ([], []))
            shapes.append(_shape(t))
            dtypes.append(_dtype(t))

    def finish_outputs(self, nid: int, inputs: list[Tensor], versions: list[tuple[Tensor, int]],
                       outputs: list[Tensor]) -> None:
        node = self.nodes[nid]
        inplace = False
        written = []
        for t, v in versions:
            if t._version != v:  # written in place: this node now produces it
                inplace = True
                self.set_producer(t, nid)
                written.append(t)
        if not outputs:  # ``x[i] = v`` returns None: the written tensor is what comes out
            outputs = written
        for t in outputs:
            self.set_producer(t, nid)
        node["inplace"] = node.get("inplace", False) or inplace
        node["output_shapes"] = tuple(_shape(t) for t in outputs)
        node["output_dtypes"] = tuple(_dtype(t) for t in outputs)
        node["activation_bytes"] = sum(_nbytes(t) for t in outputs)
        if self.values is not None and outputs:
            self.values[nid] = outputs[0]

    def returned(self, name: str, output: Any) -> None:
        """``name``'s call returned ``output``: note it on the producers (outer modules' hooks run later)."""
        srcs = []
        for t in _tensors(output):
            entry = self.producer.get(id(t))
            if entry is not None and entry[0]() is t:
                srcs.append(entry[1])
                if name:
                    self.nodes[entry[1]]["returned_by"] = name
        self.module_outputs[name] = tuple(srcs)

    def data_read(self, via: str, args: tuple) -> None:
        t = args[0] if args and isinstance(args[0], Tensor) else None
        src = None
        if t is not None:
            entry = self.producer.get(id(t))
            if entry is not None and entry[0]() is t:
                src = entry[1]
                self.nodes[src]["data_dependent"] = True
        b = Branch(module=self.current_module(), via=via, source=src)
        if b not in self.branches:
            self.branches.append(b)

    # ---- module hooks ---------------------------------------------------------------------
    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict):
        if self.busy:
            return None
        self.busy = True
        try:
            with torch._C.DisableTorchFunction():
                name = self.names.get(id(module), type(module).__name__)
                call = self.calls.get(name, 0)
                self.calls[name] = call + 1
                if self.leaf_depth or id(module) not in self.leafish:
                    frame = _Frame(name, None, bool(self.leaf_depth))
                    if self.leaf_depth:
                        self.leaf_depth += 1
                    self.stack.append(frame)
                    return None
                inputs = list(_tensors(args)) + list(_tensors(kwargs))
                own = self.own_params.get(id(module), 0)
                total = self.total_params.get(id(module), 0)
                srcs = self.sources(inputs)
                nid = self.add_node(
                    name=name, type=type(module).__name__, kind="module", module=name, scope=self.scope(),
                    call=call, input_shapes=tuple(_shape(t) for t in inputs), params=own, total_params=total,
                    opaque=id(module) in self.opaque, extra=module.extra_repr(),
                )
                self.connect(nid, srcs)
                frame = _Frame(name, nid, True)
                frame.versions = [(t, t._version) for t in inputs]
                frame.inputs = inputs
                self.stack.append(frame)
                self.leaf_depth += 1
        finally:
            self.busy = False
        return None

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any):
        if self.busy or not self.stack:
            return None
        self.busy = True
        try:
            with torch._C.DisableTorchFunction():
                frame = self.stack.pop()
                exc = sys.exc_info()[1]
                if exc is not None and (self.raised is None or self.raised[0] is not exc):
                    # runs as the error leaves this module (always_call): the innermost module that raised it
                    self.raised = (exc, frame)
                if frame.node is None:
                    if frame.leaf:
                        self.leaf_depth -= 1
                    else:
                        self.returned(frame.name, output)
                    return None
                self.leaf_depth -= 1
                outputs = list(_tensors(output))
                self.finish_outputs(frame.node, frame.inputs, frame.versions, outputs)
                self.nodes[frame.node]["macs"] = _module_macs(module, args, kwargs, outputs)
                self.returned(frame.name, output)
        finally:
            self.busy = False
        return None

    # ---- functional ops -------------------------------------------------------------------
    def on_function(self, func, types, args, kwargs):
        if self.busy:
            return func(*args, **kwargs)
        raw = getattr(func, "__name__", None)
        if raw in _DATA_READS:
            self.data_read(_DATA_READS[raw], args)
            return func(*args, **kwargs)
        name = _op_name(func)
        if name is None or _is_bookkeeping(name) or _is_bookkeeping(raw):
            return func(*args, **kwargs)
        if self.leaf_depth:
            return func(*args, **kwargs)
        self.busy = True
        try:
            inputs = list(_tensors(args)) + list(_tensors(kwargs))
            known = [t for t in inputs if self.source_known(t)]
        finally:
            self.busy = False
        if not known:  # constants and factories (torch.zeros, arange on untracked tensors)
            return self.call(func, name, args, kwargs, inputs)
        versions = [(t, t._version) for t in inputs]
        out = self.call(func, name, args, kwargs, inputs)
        if func is F.multi_head_attention_forward and self.expand_mha:
            return out  # its internals were recorded as ops
        self.busy = True
        try:
            outputs = list(_tensors(out))
            fresh = [t for t in outputs if not any(t is i for i in inputs)]
            mutated = any(t._version != v for t, v in versions)
            if not fresh and not mutated:  # returned an input unchanged (contiguous, .to(same dtype))
                return out
            label = name.removeprefix("attr:")
            srcs = self.sources(inputs)
            nid = self.add_node(name=label, type=label, kind="op", module=self.current_module(), scope=self.scope(),
                                input_shapes=tuple(_shape(t) for t in inputs))
            self.connect(nid, srcs)
            self.finish_outputs(nid, inputs, versions, outputs)
            self.nodes[nid]["macs"] = _op_macs(label, inputs, outputs)
            if label in CAT_OPS and inputs:
                dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else 0))
                if isinstance(dim, int) and inputs[0].dim():
                    self.nodes[nid]["dim"] = dim % (inputs[0].dim() + (label == "stack"))
            if name.endswith("_") and not name.endswith("__"):
                self.nodes[nid]["inplace"] = True
        finally:
            self.busy = False
        return out

    def source_known(self, t: Tensor) -> bool:
        entry = self.producer.get(id(t))
        return (entry is not None and entry[0]() is t) or id(t) in self.param_names

    def call(self, func, name: str, args, kwargs, inputs: list[Tensor]):
        try:
            if func is F.multi_head_attention_forward and self.expand_mha:
                return self._expand(func, args, kwargs)
            return func(*args, **kwargs)
        except Exception as exc:
            if self.failed is None or self.failed[0] is not exc:
                shapes = ", ".join(str(_shape(t)) for t in inputs)
                where = self.current_module()
                self.failed = (exc, f"op {name!r}" + (f" in {where!r}" if where else "")
                               + f" on inputs of shape {shapes}")
            raise

    def _expand(self, func, args, kwargs):
        """Run ``F.multi_head_attention_forward`` with this mode on, so its internals are recorded."""
        original = F.has_torch_function

        def once(ops):  # the function's own dispatch check: let it run its Python body this one time
            F.has_torch_function = original
            return False

        F.has_torch_function = once
        try:
            with probe.functions(self.on_function):
                return func(*args, **kwargs)
        finally:
            F.has_torch_function = original


def _input_names(model: nn.Module, inputs: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    try:
        bound = inspect.signature(model.forward).bind(*inputs, **kwargs)
    except (TypeError, ValueError):
        return [(f"input[{i}]", v) for i, v in enumerate(inputs)] + list(kwargs.items())
    named = []
    for k, v in bound.arguments.items():
        param = inspect.signature(model.forward).parameters[k]
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            named.extend((f"{k}[{i}]", x) for i, x in enumerate(v))
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            named.extend(v.items())
        else:
            named.append((k, v))
    return named


def _module_infos(model: nn.Module, rec: _Recorder) -> dict[str, ModuleInfo]:
    return {
        name: ModuleInfo(
            name=name, type=type(m).__name__, params=rec.own_params[id(m)], total_params=rec.total_params[id(m)],
            calls=rec.calls.get(name, 0), leaf=not m._modules, opaque=id(m) in rec.opaque and id(m) in rec.leafish,
        )
        for name, m in rec.module_by_name.items()
    }


def _freeze(model: nn.Module, rec: _Recorder) -> ModelGraph:
    nodes = [Node(**d) for d in rec.nodes]
    for m in merges(nodes):  # the same labelling as torchloupe.fusion.find
        nodes[m.node] = dataclasses.replace(nodes[m.node], merge=m.merge, fusion=m.fusion, join=m.join)
    edges = [Edge(s, d, tuple(sh), tuple(dt)) for (s, d), (sh, dt) in rec.edges.items()]
    return ModelGraph(nodes=nodes, edges=edges, modules=_module_infos(model, rec), branches=list(rec.branches),
                      model_type=type(model).__name__, module_outputs=dict(rec.module_outputs))


def trace(model: nn.Module, *inputs: Any, expand: Sequence[str] = (), **kwargs: Any) -> ModelGraph:
    """Trace one forward of ``model(*inputs, **kwargs)`` into a :class:`ModelGraph`.

    Runs in eval mode under ``torch.no_grad()``; the model comes back as it went in.
    ``expand``: module names or class names (``"MultiheadAttention"``) of opaque or leaf
    modules whose internals should be recorded as ops instead of one node (a recurrent layer
    stays one fused ``lstm`` / ``gru`` op inside). Raises :class:`TraceError` naming the
    module (or op) that raised, with the partial graph in ``.partial``.
    """
    return record(model, inputs, kwargs, expand=expand)[0]


def _check_expand(model: nn.Module, expand: set) -> None:
    """Every ``expand`` entry names a module of ``model`` or the class of one of its modules; else one
    line naming the closest names (a typo would silently expand nothing)."""
    import difflib

    from ..errors import LayerNotFoundError

    names = {n for n, _ in model.named_modules() if n}
    classes = {type(m).__name__ for m in model.modules()}
    for e in sorted(expand, key=str):
        if not isinstance(e, str):
            raise LayerNotFoundError(f"expand entry {e!r} ({type(e).__name__}) is not a module name or class name", e)
        if e in names or e in classes:
            continue
        close = difflib.get_close_matches(e, sorted(names | classes), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(map(repr, close))}" if close else ""
        raise LayerNotFoundError(f"expand {e!r} is neither a module nor a module class of {type(model).__name__}"
                                 f"{hint}", e, tuple(close))


def record(model: nn.Module, inputs: tuple, kwargs: dict | None = None, expand: Sequence[str] = (),
           keep_values: bool = False) -> tuple[ModelGraph, dict[int, Tensor]]:
    """:func:`trace` with the model's inputs as a tuple and keyword dict (no name clash with ``expand``).

    With ``keep_values``, also returns ``{node id: its first output tensor}`` (detached by ``no_grad``;
    a tensor written in place later holds its last value); else an empty dict.
    """
    probe.require_module(model, "the model to trace")
    kwargs = kwargs or {}
    expand_set = {expand} if isinstance(expand, str) else set(expand)
    _check_expand(model, expand_set)
    rec = _Recorder(model, expand_set, keep_values)
    named_inputs = _input_names(model, inputs, kwargs)
    for key, value in named_inputs:
        for k, t in _keyed(value, key):
            nid = rec.add_node(name=k, type="input", kind="input", output_shapes=(_shape(t),),
                               output_dtypes=(_dtype(t),), activation_bytes=_nbytes(t))
            if rec.source_known(t) and id(t) in rec.producer:
                continue  # the same tensor passed twice: the first input node produces it
            rec.set_producer(t, nid)
            if rec.values is not None:
                rec.values[nid] = t
    # TorchScript modules take no Python hooks: they (and what is inside them) stay one opaque call
    scripted = [m for m in rec.module_by_name.values() if isinstance(m, torch.jit.ScriptModule)]
    inside = {id(c) for m in scripted for c in m.modules()}
    modules = [m for m in rec.module_by_name.values() if id(m) not in inside]
    with probe.session(model) as run:
        with probe.hooks(forward={m: rec.post_hook for m in modules},
                         forward_pre={m: rec.pre_hook for m in modules}, with_kwargs=True, always_call=True):
            try:
                with torch.no_grad(), probe.functions(rec.on_function):
                    output = run(Inputs(tuple(inputs), dict(kwargs)))
            except Exception as exc:
                raise _trace_error(model, rec, exc) from exc
    for key, t in _keyed(output, "output"):
        srcs = rec.sources([t])
        nid = rec.add_node(name=key, type="output", kind="output", input_shapes=(_shape(t),),
                           output_shapes=(_shape(t),), output_dtypes=(_dtype(t),))
        rec.connect(nid, srcs)
    return _freeze(model, rec), (rec.values or {})


def _trace_error(model: nn.Module, rec: _Recorder, exc: Exception) -> TraceError:
    partial = _freeze(model, rec)
    innermost = rec.raised[1] if rec.raised and rec.raised[0] is exc else (rec.stack[-1] if rec.stack else None)
    leafs = [f for f in ([innermost] if innermost else []) if f.node is not None]
    module = innermost.name if innermost else ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if rec.failed is not None and rec.failed[0] is exc:
        where = rec.failed[1]
    elif leafs:
        node = rec.nodes[leafs[-1].node]
        module = node["name"]
        shapes = ", ".join(str(s) for s in node["input_shapes"]) or "no tensors"
        who = f"module {node['name']!r}" if node["name"] else "the model itself"
        where = f"{who} ({node['type']}({node['extra']})) on inputs of shape {shapes}"
    elif module:
        where = f"module {module!r} ({type(rec.module_by_name[module]).__name__})"
    else:
        where = f"the forward of {type(model).__name__}"
    good = [n for n in partial.nodes if n.kind in ("module", "op") and n.output_shapes][-3:]
    last = ", ".join(f"{n.qualname} -> {n.output_shape}" for n in good) or "none"
    msg = f"{type(model).__name__} raised in {where}: {type(exc).__name__}: {first}; last good nodes: {last}"
    if "meta tensors" in first:
        msg += ("; the forward reads tensor values (its path depends on the data), which a model on the meta "
                "device cannot give: trace it with real weights")
    return TraceError(msg, module=module, partial=partial)
