"""Every CAM's raw map against a literal float64 implementation of its paper, on five
torchvision CNNs (random init, fixed seed, 64 px, batch 2), and against pytorch-grad-cam.

Score-CAM's reference (one float64 forward per channel) runs on a tiny model in test_cam.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import torchloupe as tl
from tests.reference import ref_cam

MODELS = {
    "resnet18": (torchvision.models.resnet18, "layer4"),
    "resnet50": (torchvision.models.resnet50, "layer4"),
    "vgg11_bn": (torchvision.models.vgg11_bn, "features"),
    "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small, "features"),
    "densenet121": (torchvision.models.densenet121, "features"),
}
FORMULAS = {
    "gradcam": ref_cam.gradcam,
    "gradcam++": ref_cam.gradcam_pp,
    "xgradcam": ref_cam.xgradcam,
    "layercam": ref_cam.layercam,
    "hirescam": ref_cam.hirescam,
}


@pytest.fixture(scope="module", params=list(MODELS))
def setup(request):
    """(name, model, x, layer, targets, A, G): one float64 reference pass per model."""
    name = request.param
    build, layer = MODELS[name]
    torch.manual_seed(0)
    model = build(weights=None, num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    targets = [3, 7]
    A, G, _ = ref_cam.acts_and_grads(model, x, layer, targets)
    return name, model, x, layer, targets, A, G


def test_default_layer_matches(setup):
    name, model, x, layer, *_ = setup
    assert tl.cam.default_layer(model, x)[0] == layer


@pytest.mark.parametrize("method", list(FORMULAS))
def test_gradient_cams_match_paper(setup, method):
    name, model, x, layer, targets, A, G = setup
    res = tl.cam.METHODS[method](model, layer)(x, targets)
    want = FORMULAS[method](A, G)
    assert res.raw.shape == want.shape
    assert want.max() > 0, "reference map is all zero: the comparison would prove nothing"
    r = ref_cam.corr(res.raw.numpy(), want)
    assert r >= 0.999, f"{name} {method}: r = {r:.6f}"


def test_cam_and_eigencam_match_paper(setup):
    name, model, x, layer, targets, A, G = setup
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    if fc.in_features == A.shape[1]:
        res = tl.cam.CAM(model, layer)(x, targets)
        want = ref_cam.cam(A, fc.weight.detach().double().numpy(), targets)
        assert ref_cam.corr(res.raw.numpy(), want) >= 0.999
    res = tl.cam.EigenCAM(model, layer)(x)
    want = ref_cam.eigencam(A)
    assert ref_cam.corr(res.raw.numpy(), want) >= 0.999


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_matches_pytorch_grad_cam(method):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    peer_cls = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}[method]
    with peer_cls(model=model, target_layers=[model.layer4]) as peer:
        # the peer's per-layer map before its resize: scale to the layer's 3 x 3 grid
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(3), ClassifierOutputTarget(7)])
        acts = peer.activations_and_grads.activations[0].numpy()
        grads = peer.activations_and_grads.gradients[0].numpy()
        raw_peer = np.maximum((peer.get_cam_weights(x, [model.layer4], None, acts, grads)[:, :, None, None] * acts).sum(1), 0)
    for p in model.parameters():
        p.grad = None
    ours = tl.cam.METHODS[method](model, "layer4")(x, [3, 7])
    # Grad-CAM: the same numbers; Grad-CAM++: the peer adds eps = 1e-6 to alpha's denominator,
    # which is not small next to 2 g^2 for gradients of order 1e-3 (the reference test has no eps).
    assert ref_cam.corr(ours.raw.numpy(), raw_peer) >= (0.9999 if method == "gradcam" else 0.999)
    # the peer's final maps (normalised, then resized by OpenCV) against ours at input size
    assert ref_cam.corr(ours.maps.numpy(), theirs) >= 0.99


@pytest.mark.parametrize("arch,extra", [("vit_b_16", 1), ("swin_t", None)])
def test_vision_transformers(arch, extra):
    torch.manual_seed(0)
    if arch == "vit_b_16":
        model = torchvision.models.vit_b_16(weights=None, image_size=64, num_classes=10).eval()
        torch.nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts it at zero: no gradient at all
        layer = "encoder.layers.encoder_layer_11.ln_1"
        grid = (4, 4)
        reshape = lambda t: ref_cam.tokens_to_grid(t, extra)  # noqa: E731
    else:
        model = torchvision.models.swin_t(weights=None, num_classes=10).eval()
        layer = "norm"
        grid = (2, 2)
        reshape = lambda t: t.permute(0, 3, 1, 2)  # noqa: E731
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert tl.cam.default_layer(model, x)[0] == (layer if arch == "vit_b_16" else "permute")

    class PreReLU(tl.cam.GradCAM):  # random-init transformers often give an all-negative map
        relu = False

    res = PreReLU(model, layer)(x, [3, 7])
    assert res.raw.shape == (2, *grid) and res.maps.shape == (2, 64, 64)
    A, G, _ = ref_cam.acts_and_grads(model, x, layer, [3, 7], reshape=reshape)
    want = ref_cam.gradcam(A, G, relu=False)
    assert np.abs(want).max() > 0
    assert ref_cam.corr(res.raw.numpy(), want) >= 0.999
