import torch

import torchloupe.evaluate as ev
from tests.helpers import Case


def _maps():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 16, 16, generator=g)


def _grad_explain(model, x, t):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, t[:, None]).sum(), x)
    return g


CASES = [
    Case("deletion_curve", lambda m, x: ev.deletion_curve(m, x, _maps(), steps=4, substrate="blur")),
    Case("insertion_curve", lambda m, x: ev.insertion_curve(m, x, _maps(), steps=4, substrate="mean")),
    Case("deletion", lambda m, x: ev.deletion(m, x, _maps(), steps=4)),
    Case("insertion", lambda m, x: ev.insertion(m, x, _maps(), steps=4)),
    Case("average_drop", lambda m, x: ev.average_drop(m, x, _maps())),
    Case("increase_in_confidence", lambda m, x: ev.increase_in_confidence(m, x, _maps())),
    Case("road", lambda m, x: ev.road(m, x, _maps(), percentages=(50,))),
    Case("randomization_check", lambda m, x: ev.randomization_check(m, x, _grad_explain)),
    Case("pointing_game", lambda m, x: ev.pointing_game(_maps(), _maps() > 0.5), arm=None),
]
