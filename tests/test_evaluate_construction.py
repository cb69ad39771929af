"""Explanation quality where the truth is known by construction: the demo shapes model and its object masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import torchloupe as tl
import torchloupe.evaluate as ev


@pytest.fixture(scope="module")
def shapes():
    model = tl.demo.train_shapes_model(seed=0)
    ds = tl.demo.shapes_dataset(160, size=64, seed=2024)  # a seed the model never trained on
    xs, _, ms = zip(*[ds[i] for i in range(len(ds))])
    return model, torch.stack(xs), torch.stack(ms)


def _independent_pointing(maps: torch.Tensor, masks: torch.Tensor, tol: float) -> np.ndarray:
    """Hit = distance from the map's argmax to the nearest mask pixel ≤ tol (scipy's distance transform)."""
    hits = []
    for m, k in zip(maps.numpy(), masks.numpy()):
        y, x = np.unravel_index(np.argmax(m), m.shape)
        dist = ndimage.distance_transform_edt(~k)
        hits.append(dist[y, x] <= tol)
    return np.array(hits)


@pytest.mark.parametrize("method", ["GradCAM", "GradCAMPlusPlus", "LayerCAM"])
def test_pointing_game_on_shapes(shapes, method):
    model, x, masks = shapes
    maps = getattr(tl.cam, method)(model)(x).maps
    hits = ev.pointing_game(maps, masks, tolerance=15)
    assert hits.float().mean().item() >= 0.85
    np.testing.assert_array_equal(hits.numpy(), _independent_pointing(maps, masks, 15))
    strict = ev.pointing_game(maps, masks, tolerance=0)
    np.testing.assert_array_equal(strict.numpy(), _independent_pointing(maps, masks, 0))


def test_deletion_and_insertion_rank_gradcam_random_inverted(shapes):
    model, x, _ = shapes
    x = x[:48]
    gc = tl.cam.GradCAM(model)(x).maps
    rnd = torch.rand(gc.shape, generator=torch.Generator().manual_seed(0))
    d = {k: ev.deletion(model, x, m, steps=16, substrate="blur").mean().item()
         for k, m in (("gradcam", gc), ("random", rnd), ("inverted", 1 - gc))}
    i = {k: ev.insertion(model, x, m, steps=16, substrate="blur").mean().item()
         for k, m in (("gradcam", gc), ("random", rnd), ("inverted", 1 - gc))}
    assert d["gradcam"] < d["random"] < d["inverted"], d
    assert i["gradcam"] > i["random"] > i["inverted"], i


def test_randomization_gradcam_drops_guided_backprop_stays_higher(shapes):
    model, x, _ = shapes
    x = x[:8]

    def gradcam(m, inp, t):
        return tl.cam.GradCAM(m)(inp, t).maps

    def guided(m, inp, t):
        return tl.saliency.guided_backprop(m, inp, t)

    gc = ev.randomization_check(model, x, gradcam)
    gb = ev.randomization_check(model, x, guided)
    assert gc.similarity[:, -1].mean().item() < 0.5
    assert gc.passed.float().mean().item() >= 0.5
    # Adebayo et al.: guided backprop stays more similar to the original as the weights are randomized.
    assert gb.similarity.mean().item() > gc.similarity.mean().item() + 0.2
