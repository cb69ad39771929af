import tempfile
from pathlib import Path

import torchloupe as tl
from torchloupe.reporting.sections import ORDER
from tests.helpers import Case, arm_tripwire


def _report(sections):
    def call(model, x):
        with tempfile.TemporaryDirectory() as d:
            info = tl.report(model, x, Path(d) / "r.html", sections=sections, options={"quick": True}, progress=False)
            assert info.size > 0

    return call


def _section(key):
    """``tl.reporting.section`` for one section: its data object, or one line saying it does not apply."""
    from torchloupe.errors import UnsupportedModelError

    def call(model, x):
        try:
            data = tl.reporting.section(key, model, x, labels=[f"c{i}" for i in range(10)], options={"quick": True})
        except UnsupportedModelError:
            return
        data.render()

    return call


# tl.report never raises when the model does (the failing view becomes an error box), so there is no
# raising variant here; tests/test_report.py checks the state after a raising model directly.
CASES = [
    Case("report", _report(["overview"]), arm=None),
    Case("report_all_sections", _report("all"), arm=None),
]
# Every section computed on its own, as a notebook does: the model raising mid-section reaches the caller.
# The tiny CNN has no training history, no dataset and no RNN: those three say so before any forward.
_NO_FORWARD = {"weight_learning", "exemplars", "recurrent"}
CASES += [Case(f"section[{key}]", _section(key), arm=None if key in _NO_FORWARD else arm_tripwire) for key in ORDER]
