"""TensorBoard: model graphs (Graphs tab) and weight learning (histograms, scalars, images).

Needs the ``tensorboard`` extra (``pip install 'torchloupe[tensorboard]'``).
"""

from __future__ import annotations

__all__ = ["add_graph", "log_weights", "TensorBoardSink"]


def add_graph(writer, model, *inputs, **kwargs):
    """Write the graph of ``model`` on ``inputs`` to ``writer`` (see ``_tb_graph``)."""
    from ._tb_graph import add_graph as _add_graph

    return _add_graph(writer, model, *inputs, **kwargs)


def log_weights(writer, tracker, **kwargs):
    """Write a :class:`~torchloupe.weights.WeightTracker`'s history to ``writer`` (see ``_tb_weights``)."""
    from ._tb_weights import log_weights as _log_weights

    return _log_weights(writer, tracker, **kwargs)


def __getattr__(name: str):
    if name == "TensorBoardSink":
        from ._tb_weights import TensorBoardSink

        return TensorBoardSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
