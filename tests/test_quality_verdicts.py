"""The quality section's verdicts from constructed numbers: the table says exactly what its caption's
rules give (every image counted for the sanity check, ties all marked or none, no best where random maps
do as well, "too few" instead of a verdict)."""

from __future__ import annotations

import pytest

from torchloupe.reporting.sections.quality import (
    MIN_RANK_IMAGES,
    MIN_RANK_STEPS,
    MIN_SANITY_IMAGES,
    MethodScores,
    judge,
)


def _judge(scores, images=8, steps=24, sanity_images=2, groups=6):
    return judge(scores, images=images, steps=steps, sanity_images=sanity_images, groups=groups, threshold=0.5,
                 given=images, layer="features")


def test_thresholds_are_the_stated_ones():
    assert (MIN_RANK_IMAGES, MIN_RANK_STEPS, MIN_SANITY_IMAGES) == (4, 10, 2)


def test_sanity_passes_only_on_every_image_and_states_the_count():
    scores = [
        MethodScores("A", None, 0.10, 0.80, (True, True), 1.0),
        MethodScores("B", None, 0.20, 0.70, (True, False), 1.0),  # passes 1 of 2: fails
        MethodScores("C", None, 0.30, 0.60, (False, False), 1.0),
        MethodScores("Random maps", None, 0.50, 0.40, None, None),
    ]
    t = _judge(scores)
    assert t.columns == ["method", "deletion AUC ↓", "insertion AUC ↑", "sanity check", "ms / image"]
    assert [r[3] for r in t.rows] == ["pass (2/2)", "fail (1/2)", "fail (0/2)", "—"]
    assert "Sanity check: 1 of 3 methods pass on all 2 images; fail: B, C." in t.conclusions
    assert ("pass when the rank correlation with the trained model's map is below 0.5 after all 6 groups are "
            "randomized, on all 2 images (a method passing on some of them fails)") in t.caption


def test_sanity_with_one_image_gives_no_verdict():
    scores = [MethodScores("A", None, 0.1, 0.8, (True,), 1.0), MethodScores("B", None, 0.2, 0.7, (False,), 1.0)]
    t = _judge(scores, sanity_images=1)
    assert [r[3] for r in t.rows] == ["too few images (1)", "too few images (1)"]
    assert ("Sanity check: too few images to conclude (1 image checked, at least 2 needed); no verdict is given."
            in t.conclusions)
    assert not any("pass on all" in c for c in t.conclusions)
    assert t.caption.endswith("Sanity check on 1 image and 6 layer groups: too few images for a verdict "
                              "(at least 2 needed).")


def test_all_methods_tied_mark_none():
    # the shapes CNN's pointing game: every method at 1.000 -> nothing bold, and it says so
    names = [f"M{i}" for i in range(11)]
    scores = [MethodScores(n, 1.0, 0.1 + 0.01 * i, 0.9 - 0.01 * i, (True, True), 1.0) for i, n in enumerate(names)]
    scores.append(MethodScores("Random maps", 0.25, 0.6, 0.3, None, None))
    t = _judge(scores)
    assert t.columns[1] == "pointing game ↑"
    assert [c for _, c in t.highlight if c == 1] == []
    assert "pointing game: all 11 methods tie at 1.000; no best is marked." in t.conclusions
    # the other columns have one best each, which beats random maps
    assert sorted(t.highlight) == [(0, 2), (0, 3)]
    assert "deletion AUC: best M0 (0.100, random maps 0.600)." in t.conclusions


def test_ties_at_the_shown_precision_are_all_marked():
    scores = [
        MethodScores("A", 0.75, 0.1234, 0.8, None, 1.0),
        MethodScores("B", 0.75, 0.12341, 0.8, None, 1.0),  # shown as 0.123 like A: tied
        MethodScores("C", 0.50, 0.2, 0.9, None, 1.0),
        MethodScores("Random maps", 0.25, 0.5, 0.4, None, None),
    ]
    t = _judge(scores)
    assert [r[2] for r in t.rows[:2]] == ["0.123", "0.123"]
    assert sorted(t.highlight) == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 3)]
    assert "pointing game: best A, B (0.750, random maps 0.250), 2 methods tied." in t.conclusions


def test_no_best_where_random_maps_do_as_well():
    scores = [
        MethodScores("A", None, 0.30, 0.60, None, 1.0),
        MethodScores("B", None, 0.25, 0.70, None, 1.0),
        MethodScores("Random maps", None, 0.20, 0.70, None, None),  # beats deletion, equals insertion
    ]
    t = _judge(scores)
    assert t.highlight == []
    assert ("deletion AUC: random maps (0.200) do as well as or better than every method (best 0.250); this test "
            "does not tell the methods apart here, so no best is marked.") in t.conclusions
    assert ("insertion AUC: random maps (0.700) do as well as or better than every method (best 0.700); this test "
            "does not tell the methods apart here, so no best is marked.") in t.conclusions


def test_too_few_images_or_steps_say_so_instead_of_a_best():
    scores = [
        MethodScores("A", 0.9, 0.1, 0.9, (True,), 1.0),
        MethodScores("B", 0.1, 0.5, 0.2, (True,), 1.0),
        MethodScores("Random maps", 0.0, 0.6, 0.1, None, None),
    ]
    # EfficientNet in the demo: 1 image, 5 steps
    t = _judge(scores, images=1, steps=5, sanity_images=1)
    assert t.highlight == []
    assert t.conclusions[:3] == [
        "pointing game: too few to rank the methods (1 image (at least 4 needed)); no best is marked.",
        "deletion AUC: too few to rank the methods (1 image (at least 4 needed), 5 steps (at least 10 needed)); "
        "no best is marked.",
        "insertion AUC: too few to rank the methods (1 image (at least 4 needed), 5 steps (at least 10 needed)); "
        "no best is marked.",
    ]
    assert t.caption.startswith("1 image, layer features for the CAMs, 5 deletion / insertion steps")
    # enough images but coarse curves: the pointing game ranks, deletion / insertion do not
    t = _judge(scores, images=8, steps=5)
    assert t.highlight == [(0, 1)]
    assert t.conclusions[1] == ("deletion AUC: too few to rank the methods (5 steps (at least 10 needed)); "
                                "no best is marked.")


@pytest.mark.parametrize("images,steps", [(MIN_RANK_IMAGES, MIN_RANK_STEPS), (MIN_RANK_IMAGES - 1, MIN_RANK_STEPS),
                                          (MIN_RANK_IMAGES, MIN_RANK_STEPS - 1)])
def test_the_thresholds_are_inclusive_at_the_stated_minimum(images, steps):
    scores = [MethodScores("A", None, 0.1, 0.9, None, 1.0), MethodScores("B", None, 0.2, 0.8, None, 1.0),
              MethodScores("Random maps", None, 0.5, 0.3, None, None)]
    t = _judge(scores, images=images, steps=steps)
    ok = images >= MIN_RANK_IMAGES and steps >= MIN_RANK_STEPS
    assert t.highlight == ([(0, 1), (0, 2)] if ok else [])
