import torch, time
torch.set_num_threads(2)
import torchloupe as tl
from torchloupe.render.synthesis import units_figure, curves_figure
from torchloupe.render.png import figure_to_png
t = time.time()
model = tl.demo.train_shapes_model(progress=False)
ds = tl.demo.shapes_dataset(512, size=64, seed=0)
layer = "features.conv4"
chans = [0, 1, 2, 3, 4]
ex = tl.synthesis.exemplars(model, ds, layer, k=5, channels=chans)
print("ex", time.time() - t, ex.crops.shape, flush=True)
res = tl.synthesis.maximize(model, [f"{layer}:{c}" for c in chans], param="fft", steps=128, lr=0.05,
                            input_shape=(3, 64, 64), seed=0, exemplars=ex)
print("max", time.time() - t, res.rows(), flush=True)
fig = units_figure(res, ex, k=5, title="shapes CNN, features.conv4: synthesized (fft, 128 steps) | top-5 exemplars of 512")
open("/tmp/synthesis-units.png", "wb").write(figure_to_png(fig))
open("/tmp/synthesis-curves.png", "wb").write(figure_to_png(curves_figure(res)))
torch.save({"res": res, "ex": ex}, "/tmp/pic.pt")
