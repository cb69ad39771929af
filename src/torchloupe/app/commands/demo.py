"""``loupe demo``: train (or load the cached) demo models and write the full report."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

from .report import add_report_options, output_path, report_options, section_list, warn_failures


PACKAGE = "torchloupe.app.subjects"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train the bundled demo models and write the full report",
        description="Train (or load from the cache) the bundled demo models and write DIR/report.html.",
    )
    p.add_argument("--out", default="loupe-demo", metavar="DIR", help="output folder (default: loupe-demo)")
    p.add_argument(
        "--models", nargs="+", metavar="FAMILY",
        help="demo model families to include (default: all of digits, fusion, imagenet, sequences, shapes)",
    )
    add_report_options(p)
    p.set_defaults(func=run)


def _train_family(module_name: str, options: dict) -> str | None:
    """In a worker: ``module.train(options)``; returns an error line instead of raising."""
    try:
        importlib.import_module(module_name).train(dict(options))
    except Exception as exc:  # the parent retries in subjects() and reports what fails there
        return f"{type(exc).__name__}: {exc}"
    return None


def _start_training(package: str, names: list[str], options: dict, jobs) -> tuple[object | None, dict]:
    """Submit ``train(options)`` of every family that has one to forked workers, slowest first
    (``TRAIN_SECONDS`` hint); returns ``(executor or None, {name: future})``."""
    import warnings

    from ...reporting.parallel import fork_executor, worker_count

    modules = {}
    for name in names:
        try:
            modules[name] = importlib.import_module(f"{package}.{name}")
        except Exception:  # reported when subjects() imports it again
            continue
    trainable = [n for n, m in modules.items() if callable(getattr(m, "train", None))]
    workers = worker_count(jobs, len(trainable))
    if workers <= 1:
        return None, {}
    trainable.sort(key=lambda n: -float(getattr(modules[n], "TRAIN_SECONDS", 0)))
    pool = fork_executor(workers)
    with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        return pool, {n: pool.submit(_train_family, f"{package}.{n}", options) for n in trainable}


def family_names(package: str | None = None) -> list[str]:
    """The demo model families: the modules of ``package``, in name order."""
    pkg = importlib.import_module(package or PACKAGE)
    return sorted(info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_"))


def _chosen_families(values: list[str] | None, package: str) -> list[str] | None:
    """``--models a b,c`` -> names, checked against the families (closest names suggested)."""
    import difflib

    from ...errors import UsageError

    wanted = [k.strip() for v in (values or []) for k in v.split(",") if k.strip()]
    if not wanted or wanted == ["all"]:
        return None
    known = family_names(package)
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            hint = f"closest: {', '.join(close)}; " if close else ""
            raise UsageError(f"no demo model family {name!r}; {hint}available: {', '.join(known)}")
    return wanted


def collect_subjects(options: dict, package: str | None = None, log=print, jobs: int | str = 1,
                     families: list[str] | None = None) -> list:
    """Subjects of every module in ``package`` (name order), each from ``module.subjects(options)``;
    ``families`` keeps only those modules.

    With ``jobs`` > 1 the modules' ``train(options)`` run first in forked workers, side by
    side, and each module's subjects are made once its training is done (then from the cache).
    A module that fails is reported on stderr and left out; none at all raises.
    """
    from ...errors import TorchLoupeError

    package = package or PACKAGE
    names = [n for n in family_names(package) if families is None or n in families]
    if not names:
        raise TorchLoupeError(f"no demo models are installed: {package} has no modules")
    pool, training = _start_training(package, names, options, jobs)
    try:
        found_all = {name: _family(package, name, options, training.get(name), log) for name in names}
    except BaseException:  # Ctrl-C, SIGTERM (see cli.main), an error: stop the workers now, not after their jobs
        if pool is not None:
            from ...reporting.parallel import stop_workers

            stop_workers(pool)
        raise
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
    subjects = [s for found in found_all.values() if found for s in found]
    if not subjects:
        failed = [name for name, found in found_all.items() if found is None]
        what = f"every module failed ({', '.join(failed)})" if failed else "the modules returned no models"
        raise TorchLoupeError(f"no demo models to report on: {what}")
    return subjects


def _family(package: str, name: str, options: dict, training, log) -> list | None:
    """One family's subjects (after its training in a worker, when there is one); None when it fails."""
    t0 = time.perf_counter()
    if training is not None:
        try:
            training.result()  # a training error is met again, and reported, by subjects() below
        except Exception:  # the worker died (BrokenProcessPool): subjects() trains here instead
            pass
    try:
        module = importlib.import_module(f"{package}.{name}")
        found = list(module.subjects(dict(options)))
    except Exception as exc:  # one broken demo family must not hide the others
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"loupe: warning: demo models '{name}' failed: {type(exc).__name__}: {text}", file=sys.stderr)
        return None
    secs = time.perf_counter() - t0
    log(f"prepared {name}: {len(found)} model{'s' if len(found) != 1 else ''} in {secs:.2f} s")
    return found


def on_device(subject, device):
    """A demo subject with its model and inputs on ``device`` (its display images, masks, dataset and
    other fields stay where they are: sections move what they compute with to the model's device); a
    deferred one moves them once loaded. The demo built these models itself, so moving them is fine."""
    import dataclasses

    from ._common import to_device
    from ...reporting import DeferredSubject

    if device.type == "cpu":
        return subject
    if isinstance(subject, DeferredSubject):
        load = subject.load
        return dataclasses.replace(subject, load=lambda: on_device(load(), device))
    subject.model = subject.model.to(device)
    subject.inputs = to_device(subject.inputs, device)
    return subject


def run(args: argparse.Namespace) -> int:
    from ...reporting import build_report, select_sections
    from ._common import resolve_device

    t0 = time.perf_counter()
    path = output_path(args.out)
    sections = select_sections(section_list(args.sections))
    families = _chosen_families(args.models, PACKAGE)
    device = resolve_device(args)  # a device this machine lacks: one line, before training anything
    options = report_options(args)
    train = {"quick": args.quick, "seed": args.seed, "progress": not args.no_progress}
    subjects = collect_subjects(train, jobs=args.jobs, families=families)  # trained on the CPU (and cached)
    subjects = [on_device(s, device) for s in subjects]
    info = build_report(
        subjects, path, sections=sections, options=options, progress=not args.no_progress,
        title="torchloupe demo report", jobs=args.jobs if device.type == "cpu" else 1,  # no forking next to a GPU
    )
    print(info.summary())
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    warn_failures(info)
    return 0
