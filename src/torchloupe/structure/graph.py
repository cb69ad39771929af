"""The traced graph: :class:`Node`, :class:`Edge`, :class:`ModelGraph` (plain data, no torch tensors).

A node is one thing that happened during the forward pass: a graph input, a
module call (leaf modules, and opaque ones such as ``LSTM``), a functional op
(``cat``, ``add``, ``matmul`` ...), a parameter read by a container's own code,
or a graph output. An edge ``(src, dst)`` means a tensor produced by ``src``
was consumed by ``dst``; it carries that tensor's shape and dtype.

Containers (modules with children) are not nodes: every node records the
containers it ran inside (``scope``), so a view can collapse a container into
one box (:meth:`ModelGraph.view`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError


def check_depth(depth: Any) -> None:
    """``depth`` of a graph view: ``None`` (fit) or an int of at least 0; else one :class:`UsageError`."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise UsageError(f"depth={depth!r}: expected None (fit the view) or an int of at least 0 (0: the top level)")


Shape = tuple[int, ...]


class Edge(tuple):
    """A ``(src_id, dst_id)`` pair with ``.shapes`` / ``.dtypes`` of the tensors it carries."""

    def __new__(cls, src: int, dst: int, shapes: tuple[Shape, ...] = (), dtypes: tuple[str, ...] = ()):
        self = tuple.__new__(cls, (src, dst))
        self.shapes = shapes
        self.dtypes = dtypes
        return self

    def __getnewargs__(self) -> tuple:  # pickle (a report's worker sends graphs back): tuple's would pass one pair
        return (self[0], self[1], self.shapes, self.dtypes)

    @property
    def src(self) -> int:
        return self[0]

    @property
    def dst(self) -> int:
        return self[1]

    @property
    def shape(self) -> Shape | None:
        return self.shapes[0] if self.shapes else None

    @property
    def dtype(self) -> str | None:
        return self.dtypes[0] if self.dtypes else None


@dataclass(frozen=True)
class Node:
    """One recorded step of the forward pass.

    ``kind``: ``"input" | "output" | "module" | "op" | "param"``.
    ``name``: the dotted module path for module nodes, the op's name (``"cat"``) for ops,
    the input / output key (``"x"``, ``"logits"``, ``"output[0]"``) for inputs and outputs,
    the dotted parameter name for parameters. ``type``: the module's class name
    (``"Conv2d"``) or the op (``"cat"``, ``"add"``, ``"iadd"``, ``"add_"``).
    ``module``: the module the node belongs to (its own path for module nodes, the enclosing
    module for ops). ``scope``: the enclosing container paths, outermost first. ``call``: which
    call of ``module`` this is (0 for the first; a module used twice has nodes with 0 and 1).
    ``params`` / ``total_params``: parameters of the module itself (``recurse=False``) / with
    its children (ops and inputs: 0). ``macs``: multiply-adds where well defined (conv,
    linear, matmul, attention, recurrent layers), else ``None``. ``activation_bytes``: bytes of
    the node's output tensors. ``inplace``: it wrote into one of its inputs. ``opaque``: a
    module whose internals are hidden (``LSTM``, ``MultiheadAttention``) unless expanded.
    ``merge``: ``"fusion"`` (a fusion point: separate branches or inputs meet, exactly what
    :func:`torchloupe.fusion.find` reports), ``"residual"`` (a tensor meets a learned function of
    itself: ``x + f(x)``, a projection shortcut, DenseNet's ``cat([x, f(x)])``, a gate ``x * g(x)``),
    ``"skip"`` (a ``cat`` / ``add`` / ``mul``... of one branch with itself with no learned layer in
    between, such as ``h + relu(h)``) or ``None`` (see :mod:`torchloupe.structure.merges`);
    ``join``: the finer kind of a merge: ``"input" | "branch"`` for fusion points, ``"residual" |
    "dense" | "gate"`` for residuals, ``"skip"``; ``fusion``: ``"early" | "late" | "iterative"``
    for fusion points. ``data_dependent``: Python looked at this node's output values
    (``bool()``, ``.item()``) to choose a path. ``sources``: the producer node of each tensor
    argument, in argument order (``None`` where the tensor was not recorded); ``input_shapes``
    follows the same order. ``dim``: the ``dim`` of a ``cat`` / ``stack``, normalized to be
    non-negative. ``returned_by``: the outermost module (not the model itself) whose call returned
    this node's output tensor (``"shape_branch"`` for the last layer of a ``Sequential`` branch).
    """

    id: int
    name: str
    type: str
    kind: str
    module: str = ""
    scope: tuple[str, ...] = ()
    call: int = 0
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    output_dtypes: tuple[str, ...] = ()
    params: int = 0
    total_params: int = 0
    macs: int | None = None
    activation_bytes: int = 0
    inplace: bool = False
    opaque: bool = False
    merge: str | None = None
    fusion: str | None = None
    data_dependent: bool = False
    extra: str = ""
    sources: tuple[int | None, ...] = ()
    dim: int | None = None
    returned_by: str = ""
    join: str | None = None

    @property
    def output_shape(self) -> Shape | None:
        return self.output_shapes[0] if self.output_shapes else None

    @property
    def qualname(self) -> str:
        """``module/op`` for ops (``layer1.0/add``), the name otherwise."""
        if self.kind == "op" and self.module:
            return f"{self.module}/{self.name}"
        return self.name


@dataclass(frozen=True)
class ModuleInfo:
    """One module of the model: class name, parameters (own / with children), call count."""

    name: str
    type: str
    params: int
    total_params: int
    calls: int
    leaf: bool
    opaque: bool = False


@dataclass(frozen=True)
class Branch:
    """A place where Python read tensor values to decide what to do next.

    ``module``: the module whose code did it ("" for the model itself); ``via``: ``"bool"``,
    ``"item"``, ``"tolist"``...; ``source``: the node that produced the tensor (None if it was
    not produced inside the traced graph).
    """

    module: str
    via: str
    source: int | None

    def describe(self, graph: ModelGraph) -> str:
        where = repr(self.module) if self.module else "the model's forward"
        src = f" on the output of {graph.nodes[self.source].qualname!r}" if self.source is not None else ""
        return f"{where} called {self.via}(){src}: this path depends on the input"


@dataclass(frozen=True)
class ModelGraph:
    """A traced forward pass: nodes, edges, the module tree and what the trace noticed.

    ``nodes``: list of :class:`Node` (index == id); ``edges``: list of :class:`Edge`
    (``(src_id, dst_id)`` pairs, deduplicated); ``modules``: dotted name -> :class:`ModuleInfo`
    for every module of the model (``""`` is the model); ``branches``: data-dependent control
    flow seen during the trace; ``model_type``: the model's class name; ``module_outputs``: module
    name -> the producer nodes of the output tensors of its last call (containers included).
    """

    nodes: list[Node]
    edges: list[Edge]
    modules: dict[str, ModuleInfo]
    branches: list[Branch] = field(default_factory=list)
    model_type: str = ""
    module_outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)

    # ---- queries --------------------------------------------------------------------------
    @property
    def total_params(self) -> int:
        return self.modules[""].total_params if "" in self.modules else 0

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.nodes if n.macs)

    @property
    def data_dependent(self) -> bool:
        return bool(self.branches)

    def find(self, name: str | None = None, type: str | None = None, kind: str | None = None) -> list[Node]:
        """Nodes whose name / type / kind equal the given values (``None`` matches anything)."""
        return [
            n
            for n in self.nodes
            if (name is None or n.name == name)
            and (type is None or n.type == type)
            and (kind is None or n.kind == kind)
        ]

    def predecessors(self, node_id: int) -> list[int]:
        return [s for s, d in self.edges if d == node_id]

    def successors(self, node_id: int) -> list[int]:
        return [d for s, d in self.edges if s == node_id]

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "input"]

    @property
    def outputs(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "output"]

    @property
    def fusion_points(self) -> list[Node]:
        """Nodes where separate branches or separate inputs meet (``merge == "fusion"``; ``join``
        says ``"input"`` or ``"branch"``). Residual adds are not among them (they are in
        :attr:`residuals`); a single-input ResNet, EfficientNet or BERT has none."""
        return [n for n in self.nodes if n.merge == "fusion"]

    @property
    def residuals(self) -> list[Node]:
        """Nodes where a tensor meets a learned function of itself (``merge == "residual"``; ``join``
        says ``"residual"`` for ``x + f(x)`` and projection shortcuts, ``"dense"`` for
        ``cat([x, f(x)])``, ``"gate"`` for ``x * g(x)``)."""
        return [n for n in self.nodes if n.merge == "residual"]

    # ---- views ----------------------------------------------------------------------------
    def view(self, depth: int | None = None, collapsed: set[str] | None = None, expanded: set[str] | None = None,
             fold_repeats: bool = True) -> Any:
        """A collapsed view (see :func:`torchloupe.render.graph.layout.collapse`)."""
        from ..render.graph.layout import collapse

        check_depth(depth)
        return collapse(self, depth=depth, collapsed=collapsed, expanded=expanded, fold_repeats=fold_repeats)

    def summary(self, depth: int | None = None) -> str:
        """A text table: name, type, output shape, params, mult-adds; totals and notes."""
        from ..render.graph.text import summary

        check_depth(depth)
        return summary(self, depth=depth)

    def to_dot(self, depth: int | None = None) -> str:
        """Graphviz ``dot`` text (for those who have Graphviz)."""
        from ..render.graph.dot import to_dot

        check_depth(depth)
        return to_dot(self, depth=depth)

    def to_svg(self, path=None, depth: int | None = None, edges: str = "orthogonal") -> str:
        """SVG of the graph from torchloupe's own layered layout; written to ``path`` if given.

        ``depth``: collapse containers nested deeper (default: the deepest level that stays legible);
        ``edges``: ``"orthogonal"``, ``"straight"`` or ``"curved"``.
        """
        from ..render.graph.svg import to_svg

        check_depth(depth)
        return to_svg(self, path, depth=depth, edges=edges)

    def to_html(self, path=None, depth: int | None = None, edges: str = "orthogonal") -> str:
        """One self-contained interactive HTML page; written to ``path`` if given."""
        from ..render.graph.html import to_html

        check_depth(depth)
        return to_html(self, path, depth=depth, edges=edges)

    def _repr_html_(self) -> str:
        from ..render.graph.html import to_html

        return to_html(self, None, fragment=True)

    def __repr__(self) -> str:
        return (
            f"ModelGraph({self.model_type}: {len(self.nodes)} nodes, {len(self.edges)} edges, "
            f"{self.total_params:,} parameters)"
        )
