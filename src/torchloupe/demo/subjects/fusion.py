"""Demo subjects of the feature-fusion section: early, late and iterative fusion on two-view data."""

from __future__ import annotations

from ...reporting.base import Subject
from .. import fusion_data as fd


# The views that tell these models' story; their weights or CAMs would only repeat the shapes CNN's.
FOCUS = ("overview", "architecture", "feature_maps", "fusion")


TRAIN_SECONDS = 9  # cold-cache training time on one thread; the demo starts the slowest first


def train(options: dict) -> None:
    """Train and cache the three fusion models."""
    for kind in ("early", "late", "iterative"):
        fd.train_fusion_model(kind, seed=int(options.get("seed", 0)))


def subjects(options: dict) -> list[Subject]:
    seed = int(options.get("seed", 0))
    n = 32 if options.get("quick") else 64
    sv, cv, y, masks = fd.two_view_data(n, seed=seed + 2024)
    out = []
    for kind in ("early", "late", "iterative"):
        model, history = fd.train_fusion_model(kind, seed=seed)
        views = {"shape": sv, "colour": cv}
        out.append(Subject(
            name=f"fusion-{kind}",
            model=model,
            sections=FOCUS,
            inputs=(sv, cv),
            labels=list(fd.FUSION_CLASSES),
            images=sv,
            masks=masks,
            extras={"fusion": {
                "branches": dict(fd.BRANCHES[kind]),
                "targets": y,
                "backgrounds": views,
                "history": history,
                "deciding": list(fd.DECIDING_VIEW),
                "about": f"{kind} fusion demo: the class is decided by the shape view, the colour view, or both "
                         f"(known by construction of the data).",
            }},
        ))
    return out
