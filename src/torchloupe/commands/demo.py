"""``loupe demo``: train (or load the cached) demo models and write the full report."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

from .report import add_report_options, output_path, section_list, warn_failures

__all__ = ["register", "run", "collect_subjects"]

PACKAGE = "torchloupe.demo.subjects"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train the bundled demo models and write the full report",
        description="Train (or load from the cache) the bundled demo models and write DIR/report.html.",
    )
    p.add_argument("--out", default="loupe-demo", metavar="DIR", help="output folder (default: loupe-demo)")
    add_report_options(p)
    p.set_defaults(func=run)


def collect_subjects(options: dict, package: str | None = None, log=print) -> list:
    """Subjects of every module in ``package`` (name order), each from ``module.subjects(options)``.

    A module that fails is reported on stderr and left out; none at all raises.
    """
    from ..errors import TorchLoupeError

    package = package or PACKAGE
    pkg = importlib.import_module(package)
    names = sorted(info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_"))
    if not names:
        raise TorchLoupeError(f"no demo models are installed: {package} has no modules")
    subjects, failed = [], []
    for name in names:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"{package}.{name}")
            found = list(module.subjects(dict(options)))
        except Exception as exc:  # one broken demo family must not hide the others
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"loupe: warning: demo models '{name}' failed: {type(exc).__name__}: {text}", file=sys.stderr)
            failed.append(name)
            continue
        secs = time.perf_counter() - t0
        log(f"prepared {name}: {len(found)} model{'s' if len(found) != 1 else ''} in {secs:.2f} s")
        subjects.extend(found)
    if not subjects:
        what = f"every module failed ({', '.join(failed)})" if failed else "the modules returned no models"
        raise TorchLoupeError(f"no demo models to report on: {what}")
    return subjects


def run(args: argparse.Namespace) -> int:
    from ..reporting import build_report, select_sections

    t0 = time.perf_counter()
    path = output_path(args.out)
    sections = select_sections(section_list(args.sections))
    options = {"quick": args.quick, "seed": args.seed}
    subjects = collect_subjects(options)
    info = build_report(
        subjects, path, sections=sections, options=options, progress=not args.no_progress,
        title="torchloupe demo report", jobs=args.jobs,
    )
    print(info.summary())
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    warn_failures(info)
    return 0
