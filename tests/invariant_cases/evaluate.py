import torch
from torch import nn

import torchloupe.evaluate as ev
from tests.helpers import Case, tiny_cnn


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


class _PairDict(nn.Module):
    """``forward(image, side) -> {"logits": ...}``: a BN CNN on the image plus a linear side input."""

    def __init__(self):
        super().__init__()
        self.cnn = tiny_cnn()
        self.side = nn.Linear(5, 4)

    def forward(self, image, side):
        return {"features": image.mean((2, 3)), "logits": self.cnn(image) + self.side(side)}


def _pair():
    torch.manual_seed(0)
    return _PairDict().train()


def _pair_inputs():
    return torch.rand(2, 3, 16, 16), torch.rand(2, 5)


def _pair_explain(model, x, t):
    image = x[0].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(image, x[1])["logits"].gather(1, t[:, None]).sum(), image)
    return g


CASES += [
    Case("deletion-two-inputs-dict-output", lambda m, x: ev.deletion(m, x, _maps(), steps=4, output="logits"),
         make=_pair, inputs=_pair_inputs),
    Case("insertion-keyword-inputs", lambda m, x: ev.insertion(m, {"image": x[0], "side": x[1]}, _maps(), steps=4,
                                                               wrt="image", output="logits"),
         make=_pair, inputs=_pair_inputs),
    Case("average_drop-two-inputs", lambda m, x: ev.average_drop(m, x, _maps(), output="logits"),
         make=_pair, inputs=_pair_inputs),
    Case("road-two-inputs", lambda m, x: ev.road(m, x, _maps(), percentages=(50,), output="logits"),
         make=_pair, inputs=_pair_inputs),
    Case("randomization_check-two-inputs", lambda m, x: ev.randomization_check(m, x, _pair_explain, output="logits"),
         make=_pair, inputs=_pair_inputs),
]
