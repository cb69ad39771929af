"""Is the target score an affine function of the branch outputs? (When it is, ``exact`` applies.)

On one recorded forward (one sample), every node downstream of a branch output and upstream of
the model output must be affine in its branch-derived arguments: reshapes, ``cat`` / ``stack`` /
``add`` / ``sub``, means, sums, average pooling, linear and convolution layers, BatchNorm in eval
mode, dropout in eval mode; a product is allowed when only one factor depends on the branches.
"""

from __future__ import annotations

import weakref

from torch import nn

from ..inputs import Inputs
from ..targets import OutputSpec
from ..structure.merges import ancestors
from ..structure.tracer import record

# model -> {(module ids, branch specs, input shapes/dtypes): verdict}; the verdict depends on the
# graph, not on weight values, so repeated calls (a training-loop tracker, a benchmark) skip the recording.
_VERDICTS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()

AFFINE_MODULES = (
    nn.Linear, nn.Identity, nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.BatchNorm1d, nn.BatchNorm2d,
    nn.BatchNorm3d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten,
    nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
AFFINE_MODULE_NAMES = frozenset(c.__name__ for c in AFFINE_MODULES)

AFFINE_OPS = frozenset(
    {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "add", "iadd", "add_", "sub", "isub", "sub_",
     "neg", "pos", "flatten", "unflatten", "view", "view_as", "reshape", "reshape_as", "squeeze", "unsqueeze",
     "squeeze_", "unsqueeze_", "permute", "transpose", "t", "movedim", "contiguous", "clone", "mean", "sum",
     "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
     "adaptive_avg_pool3d", "getitem", "chunk", "split", "narrow", "select", "expand", "expand_as", "repeat",
     "flip", "dropout", "identity", "to", "float", "double", "type_as", "T", "mT"}
)
ONE_FACTOR_OPS = frozenset({"mul", "imul", "mul_", "matmul", "mm", "bmm", "einsum"})
FIRST_ARG_OPS = frozenset({"div", "div_", "truediv", "itruediv", "linear", "conv1d", "conv2d", "conv3d",
                           "batch_norm"})


def branch_roots(graph, specs: dict[str, str]) -> dict[str, int]:
    """Branch name -> the traced node producing the branch's tensor (a model input, or the first
    output of the module's last call)."""
    roots = {}
    inputs = [n.id for n in graph.inputs]
    for b, s in specs.items():
        if s.startswith("input:"):
            i = int(s.split(":")[1])
            if i < len(inputs):
                roots[b] = inputs[i]
        elif graph.module_outputs.get(s):
            roots[b] = graph.module_outputs[s][0]
    return roots


def nonlinear_step(model: nn.Module, x: Inputs, specs: dict[str, str], output: OutputSpec = None) -> str | None:
    """``None`` when the output is affine in the branch outputs, else why not (naming the op).
    ``x``: what the model takes (one sample is enough); ``output``: the selected part of the model's
    output (:mod:`torchloupe.targets`; the other parts of a dict / tuple output need not be affine).

    Cached per model, module set, branch specs, output selection and input shapes (one recorded
    forward the first time).
    """
    key = (tuple(id(m) for m in model.modules()), tuple(specs.items()),
           tuple((k, tuple(t.shape[1:]), t.dtype, t.device.type) for k, t in x.tensors()),
           output if output is None or isinstance(output, (str, int)) else "<callable>")
    cache = _VERDICTS.setdefault(model, {})
    if key not in cache:
        cache[key] = _nonlinear_step(model, x, specs, output)
    return cache[key]


def selected_outputs(graph, output: OutputSpec) -> list:
    """The output nodes of a traced graph that ``output`` selects (all of them when it cannot tell:
    a callable, or a name it does not find)."""
    outs = list(graph.outputs)
    if output is None:
        names = ("logits",)
    elif isinstance(output, bool) or not isinstance(output, (str, int)):
        names = ()
    elif isinstance(output, str):
        names = (output,)
    else:
        names = (f"output[{output}]",)
    chosen = [o for o in outs if any(o.name == n or o.name.startswith((f"{n}.", f"{n}[")) for n in names)]
    return chosen or outs


def _nonlinear_step(model: nn.Module, x: Inputs, specs: dict[str, str], output: OutputSpec) -> str | None:
    graph = record(model, x.args, dict(x.kwargs))[0]
    roots = branch_roots(graph, specs)
    missing = [b for b in specs if b not in roots]
    if missing:
        return f"branch(es) {missing} produced no tensor during the forward pass"
    anc = ancestors(graph.nodes)
    feeds_output = 0
    for o in selected_outputs(graph, output):
        feeds_output |= anc[o.id]
    derived = set(roots.values())
    for node in graph.nodes:
        if node.id in derived:
            continue
        flags = [a is not None and a in derived for a in node.sources]
        if not any(flags):
            continue
        derived.add(node.id)
        if node.kind == "output" or not feeds_output >> node.id & 1:
            continue
        if node.kind == "module":  # traced in eval mode: BatchNorm / dropout are affine
            ok = node.type in AFFINE_MODULE_NAMES
        elif node.type in AFFINE_OPS:
            ok = True
        elif node.type in ONE_FACTOR_OPS:
            ok = sum(flags) == 1
        elif node.type in FIRST_ARG_OPS:
            ok = flags[0] and not any(flags[1:])
        else:
            ok = False
        if not ok:
            return f"{node.name!r} ({node.type}) is not linear in the branch outputs"
    return None
