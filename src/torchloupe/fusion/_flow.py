"""A minimal data-flow recording of one forward, private to :mod:`torchloupe.fusion`.

Leaf modules become one node each (the ops inside them are not recorded); the
functional ops run outside leaf modules (``torch.cat``, ``+``, ``flatten``...)
are recorded through a ``TorchFunctionMode``; model inputs and outputs are
nodes too. An edge ``a -> b`` means a tensor produced by ``a`` was an argument
of ``b``. Module hooks are registered through :mod:`torchloupe.probe`.

This is the subset of :func:`torchloupe.trace` that fusion needs (the tensor
producers of each argument, in argument order, the ``dim`` of a ``cat``, and
which modules returned which tensors), kept here so :func:`find` does not
depend on the structure package's node format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..probe import hooks, preserved

_SKIP_FUNCS = {"size", "dim", "numel", "__get__", "__len__", "__repr__", "__format__", "is_floating_point",
               "__bool__", "item", "tolist", "stride", "data_ptr", "get_device", "__hash__", "__eq__"}


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith("r") and name[1:] in ("add", "sub", "mul", "truediv", "matmul"):
            name = name[1:]
    return name


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        out = []
        for v in value:
            out.extend(_tensors(v))
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out.extend(_tensors(v))
        return out
    return []


@dataclass
class Node:
    id: int
    name: str  # dotted module name, "input:i", "output", or "<scope>:<op>"
    type: str  # module class name, op name, "input" or "output"
    module: bool = False
    learned: bool = False
    args: list[int | None] = field(default_factory=list)  # producer of each tensor argument, in order
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # shape of each tensor argument
    out_shape: tuple[int, ...] | None = None
    dim: int | None = None  # for cat / stack
    training: bool = False

    @property
    def preds(self) -> list[int]:
        return sorted({a for a in self.args if a is not None})


@dataclass
class Flow:
    nodes: list[Node]
    owners: dict[str, int]  # module name -> node producing its (last) output tensor
    outer: dict[int, str]  # node -> outermost non-root module that returned that node's tensor
    outputs: list[int]
    values: dict[int, Tensor] = field(default_factory=dict)  # node -> its (first) output tensor

    @property
    def edges(self) -> list[tuple[int, int]]:
        return [(p, n.id) for n in self.nodes for p in n.preds]


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.nodes: list[Node] = []
        self.producer: dict[int, int] = {}
        self.keep: list[Tensor] = []  # keeps recorded tensors alive so ids stay unique
        self.leaf_depth = 0
        self.scope: list[str] = []
        self.values: dict[int, Tensor] = {}

    def add(self, node_kw: dict, inputs: list[Tensor], outputs: list[Tensor]) -> Node:
        node = Node(id=len(self.nodes), args=[self.producer.get(id(t)) for t in inputs],
                    shapes=[tuple(t.shape) for t in inputs], **node_kw)
        if outputs:
            node.out_shape = tuple(outputs[0].shape)
            self.values[node.id] = outputs[0]
        self.nodes.append(node)
        for t in outputs:
            self.producer[id(t)] = node.id
            self.keep.append(t)
        return node

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.leaf_depth:
            return result
        name = _op_name(func)
        if name in _SKIP_FUNCS:
            return result
        ins = _tensors(list(args) + list(kwargs.values()))
        outs = _tensors(result)
        if not outs or not any(id(t) in self.producer for t in ins):
            return result
        dim = None
        if name in ("cat", "concat", "concatenate", "stack"):
            dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else 0))
        scope = self.scope[-1] if self.scope else ""
        self.add(dict(name=f"{scope}:{name}" if scope else name, type=name, dim=dim), ins, outs)
        return result


def record(model: nn.Module, inputs: tuple, kwargs: dict | None = None) -> Flow:
    """Record one eval-mode, no-grad forward of ``model(*inputs, **kwargs)``."""
    kwargs = kwargs or {}
    rec = _Recorder()
    names = {m: n for n, m in model.named_modules()}
    outer: dict[int, str] = {}
    owners: dict[str, int] = {}

    def pre(module, args):
        name = names[module]
        rec.scope.append(name)
        if next(module.children(), None) is None:
            rec.leaf_depth += 1

    def post(module, args, output):
        name = names[module]
        rec.scope.pop()
        outs = _tensors(output)
        if next(module.children(), None) is None:
            rec.leaf_depth -= 1
            if not rec.leaf_depth:
                learned = any(True for _ in module.parameters())
                rec.add(dict(name=name, type=type(module).__name__, module=True, learned=learned,
                             training=module.training), _tensors(args), outs)
        if outs and id(outs[0]) in rec.producer:
            owners[name] = rec.producer[id(outs[0])]
            if name:
                for t in outs:
                    if id(t) in rec.producer:
                        outer[rec.producer[id(t)]] = name

    modules = list(names)
    with preserved(model):
        model.eval()
        for i, t in enumerate(_tensors(list(inputs) + list(kwargs.values()))):
            rec.add(dict(name=f"input:{i}", type="input"), [], [t])
        with hooks(forward_pre={m: pre for m in modules}, forward={m: post for m in modules}):
            with torch.no_grad(), rec:
                out = model(*inputs, **kwargs)
    outputs = []
    for t in _tensors(out):
        node = rec.add(dict(name="output", type="output"), [t], [])
        outputs.append(node.id)
    return Flow(nodes=rec.nodes, owners=owners, outer=outer, outputs=outputs, values=rec.values)


def ancestors(flow: Flow) -> list[int]:
    """Bitset (python int) of strict ancestors of every node."""
    anc = [0] * len(flow.nodes)
    for node in flow.nodes:  # nodes are created in execution order: producers come first
        bits = 0
        for p in node.preds:
            bits |= anc[p] | (1 << p)
        anc[node.id] = bits
    return anc


def bits(value: int) -> list[int]:
    out = []
    i = 0
    while value:
        if value & 1:
            out.append(i)
        value >>= 1
        i += 1
    return out
