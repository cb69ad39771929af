"""The layers of ../shared/DESIGN.md, read from the source: every import (module level and inside
functions) goes downward, hooks and torch-function modes live in probe.py only, and the module-level
imports have no cycle.

Layers, lowest first (an import may go to its own layer or to one it lists):

    core          torch in, tensors out: probe, inputs, targets, layers, structure, cam, ...
    render        results -> pictures and strings (matplotlib, PIL)       imports core
    demo          bundled data and demo models                            imports core
    reporting     sections, the HTML report                               imports render, core
    integrations  TensorBoard, Visdom                                     imports render, core
    app           the command line and what only it needs                 imports anything

``torchloupe/__init__.py`` is the public face and may name any layer (it loads them lazily).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "torchloupe"

LAYERS = ("core", "render", "demo", "reporting", "integrations", "app")
ALLOWED = {
    "core": {"core"},
    "render": {"core", "render"},
    "demo": {"core", "demo"},
    "reporting": {"core", "render", "reporting"},
    "integrations": {"core", "render", "integrations"},
    "app": set(LAYERS),
    "face": set(LAYERS),
}

# Convenience methods of compute results that draw themselves (DESIGN.md: "a .plot() / .to_image()
# convenience that calls into render"). Each is one function-local import of one render module;
# anything else going up from the core fails the test. (module, function) -> imported module.
CONVENIENCE = {
    ("torchloupe.structure.graph", "ModelGraph.view"): "torchloupe.render.graph.layout",
    ("torchloupe.structure.graph", "ModelGraph.summary"): "torchloupe.render.graph.text",
    ("torchloupe.structure.graph", "ModelGraph.to_dot"): "torchloupe.render.graph.dot",
    ("torchloupe.structure.graph", "ModelGraph.to_svg"): "torchloupe.render.graph.svg",
    ("torchloupe.structure.graph", "ModelGraph.to_html"): "torchloupe.render.graph.html",
    ("torchloupe.structure.graph", "ModelGraph._repr_html_"): "torchloupe.render.graph.html",
    ("torchloupe.weights.tracker", "WeightTracker.animate"): "torchloupe.render.weight_learning",
    ("torchloupe.cam.base", "CAMResult.plot"): "torchloupe.render.cam",
    # Notebook display (issue 20): every result's _repr_html_ / _repr_png_ draws its default figure
    # through the one notebook module of render, imported when Jupyter asks.
    ("torchloupe.cam.base", "CAMResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.cam.base", "CAMResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.features", "FeatureMaps._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.features", "FeatureMaps._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.synthesis.exemplars", "ExemplarResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.synthesis.exemplars", "ExemplarResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.synthesis.maximize", "SynthesisResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.synthesis.maximize", "SynthesisResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.recurrent", "RecurrentTrace._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.recurrent", "RecurrentTrace._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.recurrent", "CellTrace._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.recurrent", "CellTrace._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.contrib", "FusionResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.contrib", "FusionResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.maps", "BranchMaps._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.maps", "BranchMaps._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.attention", "AttentionMaps._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.attention", "AttentionMaps._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.similarity", "CKAResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.similarity", "CKAResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.tracking", "ShareHistory._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.fusion.tracking", "ShareHistory._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.evaluate.perturbation", "CurveResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.evaluate.perturbation", "CurveResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.evaluate.randomization", "RandomizationResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.evaluate.randomization", "RandomizationResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.evaluate.remove_and_debias", "ROADResult._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.evaluate.remove_and_debias", "ROADResult._repr_png_"): "torchloupe.render.notebook",
    ("torchloupe.weights.history", "WeightHistory._repr_html_"): "torchloupe.render.notebook",
    ("torchloupe.weights.history", "WeightHistory._repr_png_"): "torchloupe.render.notebook",
}

# The one module allowed to register hooks and torch-function modes.
PROBE = "torchloupe.probe"
HOOK_CALL = re.compile(r"^register_\w*hook$")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "torchloupe":
        return "face"
    top = parts[1]
    if top in ("render", "demo", "reporting", "integrations", "app"):
        return top
    if top in ("cli", "__main__"):  # the command line's old address and `python -m torchloupe`
        return "app"
    return "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """Absolute torchloupe module names an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "torchloupe"]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if prefix.split(".")[0] != "torchloupe":
        return []
    out = []
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        out.append(sub if sub in MODULES else prefix)
    return out


class _Imports(ast.NodeVisitor):
    """Every torchloupe import of one module: (target, enclosing function qualname or '', line)."""

    def __init__(self, name: str, is_package: bool):
        self.name, self.is_package = name, is_package
        self.scope: list[str] = []
        self.found: list[tuple[str, str, int]] = []
        self.private: list[tuple[str, str, int]] = []  # (module, name, line) of `from module import _name`
        self.hook_calls: list[tuple[str, int]] = []
        self.modes: list[int] = []

    def _scoped(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Import(self, node):
        for target in _resolve(self.name, self.is_package, node):
            self.found.append((target, ".".join(self.scope), node.lineno))

    def visit_ImportFrom(self, node):
        self.visit_Import(node)
        targets = _resolve(self.name, self.is_package, node)
        for alias, target in zip(node.names, targets):
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                self.private.append((target, alias.name, node.lineno))

    def visit_Attribute(self, node):
        if HOOK_CALL.match(node.attr):
            self.hook_calls.append((node.attr, node.lineno))
        if node.attr == "TorchFunctionMode":
            self.modes.append(node.lineno)
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id == "TorchFunctionMode":
            self.modes.append(node.lineno)


def _scan():
    scans = {}
    for name, path in MODULES.items():
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        scans[name] = visitor
    return scans


SCANS = _scan()


def test_every_import_goes_down_the_layers():
    bad, used = [], set()
    for name, scan in SCANS.items():
        src = layer_of(name)
        for target, func, line in scan.found:
            dst = layer_of(target)
            if dst in ALLOWED[src]:
                continue
            if CONVENIENCE.get((name, func)) == target:
                used.add((name, func))
                continue
            bad.append(f"{name}:{line} ({src}) imports {target} ({dst})" + (f" in {func}" if func else ""))
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)
    assert used == set(CONVENIENCE), f"stale convenience entries: {set(CONVENIENCE) - used}"


def test_hooks_and_torch_function_modes_live_in_probe_only():
    hooks = [f"{n}:{line} {attr}" for n, s in SCANS.items() if n != PROBE for attr, line in s.hook_calls]
    modes = [f"{n}:{line}" for n, s in SCANS.items() if n != PROBE for line in s.modes]
    assert not hooks, "hooks registered outside probe.py:\n" + "\n".join(hooks)
    assert not modes, "TorchFunctionMode outside probe.py:\n" + "\n".join(modes)
    assert SCANS[PROBE].hook_calls and SCANS[PROBE].modes  # the scan sees them where they are


def test_no_private_name_is_imported_from_another_module():
    bad = [f"{n}:{line} imports {name} from {target}" for n, s in SCANS.items() for target, name, line in s.private]
    assert not bad, "private names imported across modules (make them public or keep them home):\n" + "\n".join(bad)


def test_module_level_imports_have_no_cycle():
    graph = defaultdict(set)
    for name, scan in SCANS.items():
        for target, func, _ in scan.found:
            # A package importing its own submodule is how packages work, not a cycle.
            if not func and target != name and not target.startswith(name + "."):
                graph[name].add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(MODULES):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize("source, expected", [
    ("from ..render.image import overlay", "torchloupe.cam.base:1 (core) imports torchloupe.render.image (render)"),
    ("def f():\n    from ..reporting import build_report", "imports torchloupe.reporting (reporting) in f"),
    ("import torchloupe.app.cli", "imports torchloupe.app.cli (app)"),
])
def test_the_check_fails_on_an_upward_import(monkeypatch, source, expected):
    """The scan itself: an upward import planted in a core module (module level or in a function) is caught."""
    visitor = _Imports("torchloupe.cam.base", False)
    visitor.visit(ast.parse(source))
    monkeypatch.setitem(SCANS, "torchloupe.cam.base", visitor)
    with pytest.raises(AssertionError) as info:
        test_every_import_goes_down_the_layers()
    assert expected in str(info.value)


def test_the_folders_show_the_layers():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {"render", "reporting", "app", "demo"} <= packages
    assert not (SRC / "commands").exists() and not (SRC / "loading.py").exists()
    assert (SRC / "render" / "graph").is_dir() and not list((SRC / "structure").glob("svg.py"))
