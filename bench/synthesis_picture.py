"""Regenerate docs/img/synthesis-units.png: synthesized inputs beside dataset exemplars (shapes CNN).

    PYTHONPATH=src python bench/synthesis_picture.py
"""

import torch

import torchloupe as tl
from torchloupe.render.png import figure_to_png
from torchloupe.render.synthesis import units_figure

torch.set_num_threads(2)
model = tl.demo.train_shapes_model(progress=False)
ds = tl.demo.shapes_dataset(512, size=64, seed=0)
layer, chans = "features.conv4", [0, 1, 2, 3, 4]
ex = tl.synthesis.exemplars(model, ds, layer, k=5, channels=chans)
res = tl.synthesis.maximize(model, [f"{layer}:{c}" for c in chans], param="fft", steps=128, lr=0.05,
                            input_shape=(3, 64, 64), seed=0, exemplars=ex)
for row in res.rows():
    print(row)
fig = units_figure(res, ex, k=5, title=f"shapes CNN, {layer}: synthesized (fft, 128 steps) and top-5 of 512 exemplars")
path = "docs/img/synthesis-units.png"
open(path, "wb").write(figure_to_png(fig, dpi=80))
from PIL import Image  # noqa: E402  (palette PNG keeps the README picture small)

Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
