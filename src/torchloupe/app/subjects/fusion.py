"""Demo subjects of the feature-fusion section: early, late and iterative fusion on two-view data."""

from __future__ import annotations

from ...reporting.base import Subject
from ...demo import fusion_data as fd
from . import cached_or_deferred


# The views that tell these models' story; their weights or CAMs would only repeat the shapes CNN's.
FOCUS = ("overview", "architecture", "feature_maps", "fusion")


def fusion_subject(kind: str, seed: int, n: int) -> Subject:
    sv, cv, y, masks = fd.two_view_data(n, seed=seed + 2024)
    model, history = fd.train_fusion_model(kind, seed=seed)
    views = {"shape": sv, "colour": cv}
    return Subject(
        name=f"fusion-{kind}",
        model=model,
        sections=FOCUS,
        inputs=(sv, cv),
        labels=list(fd.FUSION_CLASSES),
        images=sv,
        masks=masks,
        targets=y,
        options={"fusion": {
            "branches": dict(fd.BRANCHES[kind]),
            "backgrounds": views,
            "history": history,
            "deciding": list(fd.DECIDING_VIEW),
            "about": f"{kind} fusion demo: the class is decided by the shape view, the colour view, or both "
                     f"(known by construction of the data).",
        }},
    )


def subjects(options: dict) -> list:
    seed = int(options.get("seed", 0))
    n = 32 if options.get("quick") else 64
    return [cached_or_deferred(f"fusion-{kind}", lambda k=kind: fusion_subject(k, seed, n), FOCUS)
            for kind in ("early", "late", "iterative")]
