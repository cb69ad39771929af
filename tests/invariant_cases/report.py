import tempfile
from pathlib import Path

import torchloupe as tl
from tests.helpers import Case


def _report(sections):
    def call(model, x):
        with tempfile.TemporaryDirectory() as d:
            info = tl.report(model, x, Path(d) / "r.html", sections=sections, options={"quick": True}, progress=False)
            assert info.size > 0

    return call


# tl.report never raises when the model does (the failing view becomes an error box), so there is no
# raising variant here; tests/test_report.py checks the state after a raising model directly.
CASES = [
    Case("report", _report(["overview"]), arm=None),
    Case("report_all_sections", _report("all"), arm=None),
]
