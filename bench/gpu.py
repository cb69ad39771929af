"""The prepared GPU check: every CUDA path of torchloupe against its CPU result, then speed in absolute times.

    python bench/gpu.py                          # on a GPU machine: a few minutes on an H100 / H200
    python bench/gpu.py --device cpu --quick     # anywhere: tiny sizes, so we know the script is not broken

Part 1, correctness: the same model on the CPU and on ``--device`` (CAM family, saliency, feature maps, trace,
maximize, exemplars, attention on the fast path and on a Hugging Face model built from a small config, recurrent
trace against cuDNN, fusion, evaluate, randomization check, a WeightTracker in a training loop, a full report of a
model on the device, bfloat16 and float16 models, exemplars under torchrun with NCCL (gloo on the CPU)): results
agree, every result is on the device, the model state is unchanged, nothing is left allocated on the GPU.
Part 2, speed (skipped with ``--no-speed``): Grad-CAM and Grad-CAM++ against a bare forward + backward and against
pytorch-grad-cam (batch 64, 224 px, resnet50), Score-CAM against pytorch-grad-cam at equal masked forwards,
exemplars against a bare forward loop, maximize image-steps per second.

Each check is independent: a failure prints one line (and a short traceback) and the others go on. The results go
to ``OUT/gpu_check.json`` (``--out``, default $OUT or /tmp) with the report of part 1. Exit status 1 when a check
failed. Offline: pytorch-grad-cam and transformers are used when importable, else those checks say "skipped".
Adapted from ``shared/tools/gpu_check.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import torchloupe as tl  # noqa: E402
from torchloupe.devices import parse_device  # noqa: E402


# -- harness -------------------------------------------------------------------------------

class Checks:
    def __init__(self, only: str):
        self.only = [w for w in only.split(",") if w]
        self.results: dict[str, dict] = {}

    def __call__(self, name: str):
        def run(fn):
            if self.only and not any(w in name for w in self.only):
                return fn
            t0 = time.perf_counter()
            try:
                info = fn()
                secs = time.perf_counter() - t0
                self.results[name] = {"ok": True, "s": round(secs, 3), "info": info}
                print(f"[ok]   {name} ({secs:.2f} s): {info}", flush=True)
            except Skip as why:
                self.results[name] = {"ok": True, "skipped": str(why)}
                print(f"[skip] {name}: {why}", flush=True)
            except Exception as exc:  # one check failing is a finding; the others still run
                self.results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:800]}
                print(f"[FAIL] {name}: {type(exc).__name__}: {exc}", flush=True)
                traceback.print_exc(limit=5)
            return fn

        return run


class Skip(Exception):
    """A check that cannot run here (a missing optional package, no GPU for NCCL)."""


def snapshot(model: nn.Module) -> dict:
    """What no call may change: parameters and buffers bitwise, flags, hooks, gradients."""
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    }


def unchanged(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    for key in ("training", "requires_grad", "hooks"):
        assert before[key] == after[key], f"model {key} changed"
    for key in ("params", "buffers"):
        assert all(torch.equal(a, b) for a, b in zip(before[key], after[key])), f"model {key} changed"
    assert all((a is None) == (b is None) and (a is None or torch.equal(a, b))
               for a, b in zip(before["grads"], after["grads"])), "model .grad changed"


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    if float(a.std()) == 0 or float(b.std()) == 0:
        return 1.0 if torch.allclose(a, b, atol=1e-5) else 0.0
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def on(device: torch.device, *tensors: torch.Tensor) -> None:
    for t in tensors:
        assert t.device.type == device.type, f"a result on {t.device}, expected {device}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, reps: int = 5, warm: int = 2) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after ``warm`` ones, synchronised on the device."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Held:
    """Asserts that the GPU memory allocated after a block is what it was before (what the user holds)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        sync(self.device)
        self.before = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0
        return self

    def __exit__(self, *exc):
        if exc[0] is None and self.device.type == "cuda":
            sync(self.device)
            left = torch.cuda.memory_allocated(self.device) - self.before
            assert left <= 0, f"{left} bytes left allocated on {self.device} after the call"


# -- the torchrun worker ---------------------------------------------------------------------

def worker(quick: bool) -> int:
    """Run under torchrun: exemplars on cuda:LOCAL_RANK with NCCL (gloo on the CPU) equal the single-process run."""
    import torchvision

    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    n, side = (24, 32) if quick else (512, 64)
    data = torch.utils.data.TensorDataset(torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(0)))
    with tl.distributed.session(device=device) as multi:
        import torch.distributed as dist

        ex = tl.synthesis.exemplars(model, data, "layer3", k=5, batch_size=8 if quick else 64, progress=False)
        backend = dist.get_backend() if dist.is_initialized() else None
    single = tl.synthesis.exemplars(model, data, "layer3", k=5, batch_size=8 if quick else 64, progress=False)
    same = torch.equal(single.indices.cpu(), ex.indices.cpu())
    if local == 0:
        print(json.dumps({"multi": bool(multi), "backend": backend, "seen": int(ex.seen), "device": str(ex.values.device),
                          "equal_to_single": same}))
    return 0 if same else 1


# -- part 1: correctness ---------------------------------------------------------------------

def correctness(check: Checks, dev: torch.device, quick: bool, out_dir: str) -> None:
    import torchvision

    cpu = torch.device("cpu")
    side, batch = (32, 2) if quick else (96, 4)
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None).eval()
    model = copy.deepcopy(ref).to(dev)
    x_cpu = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    x = x_cpu.to(dev)
    target = torch.arange(1, batch + 1)
    with torch.enable_grad():  # cuBLAS / cuDNN workspaces made now: they stay for the process, not a leak
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)

    @check("cam: every method, device vs cpu, result devices, state, memory")
    def _():
        before = snapshot(model)
        with Held(dev):
            a = tl.cam.compare(ref, x_cpu, "all", layer="layer4", target=target)
            b = tl.cam.compare(model, x, "all", layer="layer4", target=target.to(dev))
            corr = {}
            for k in a:
                on(dev, b[k].maps, b[k].raw)
                corr[k] = round(min(pearson(a[k].maps[i], b[k].maps[i]) for i in range(batch)), 5)
            del a, b
        unchanged(before, model)
        assert min(corr.values()) > 0.999, corr
        return corr

    @check("cam: default layer and predicted target on the device")
    def _():
        r = tl.cam.GradCAM(model)(x)
        r0 = tl.cam.GradCAM(ref)(x_cpu)
        on(dev, r.maps, r.targets)
        assert torch.equal(r.targets.cpu(), r0.targets) and r.layer == r0.layer
        return {"layer": r.layer, "targets": r.targets.tolist()}

    @check("saliency: gradient, guided backprop, deconvnet, guided Grad-CAM, SmoothGrad")
    def _():
        before, out = snapshot(model), {}
        with Held(dev):
            for name in ("gradient", "guided_backprop", "deconvnet"):
                a = getattr(tl.saliency, name)(ref, x_cpu, target)
                b = getattr(tl.saliency, name)(model, x, target.to(dev))
                on(dev, b)
                out[name] = round(pearson(a, b), 5)
            a = tl.saliency.guided_gradcam(ref, x_cpu, target, layer="layer4")
            b = tl.saliency.guided_gradcam(model, x, target.to(dev), layer="layer4")
            on(dev, b)
            out["guided_gradcam"] = round(pearson(a, b), 5)
            sg = tl.saliency.smoothgrad(tl.saliency.gradient, n=4)
            a, b = sg(ref, x_cpu, target), sg(model, x, target.to(dev))
            on(dev, b)
            out["smoothgrad (noise from the device's generator)"] = round(pearson(a, b), 3)
            del a, b
        unchanged(before, model)
        assert min(v for k, v in out.items() if "smoothgrad" not in k) > 0.999, out
        return out

    @check("feature maps: device vs cpu, and under bf16 autocast")
    def _():
        a = tl.features.feature_maps(ref, x_cpu, "layer2")
        b = tl.features.feature_maps(model, x, "layer2")
        on(dev, b.maps)
        diff = float((a.maps - b.maps.cpu()).abs().max())
        with tl.devices.autocast(dev, "bf16"):
            c = tl.features.feature_maps(model, x, "layer2")
        assert diff < 1e-3, diff
        return {"maxdiff": diff, "bf16_autocast_corr": round(pearson(a.maps, c.maps), 5), "bf16_maps_dtype": str(c.maps.dtype)}

    @check("trace: a model on the device")
    def _():
        a, b = tl.trace(ref, x_cpu[:1]), tl.trace(model, x[:1])
        assert (len(a.nodes), len(a.edges), a.total_params) == (len(b.nodes), len(b.edges), b.total_params)
        b.to_svg(os.path.join(tempfile.mkdtemp(), "g.svg"))
        return {"nodes": len(b.nodes), "edges": len(b.edges)}

    @check("maximize on the device")
    def _():
        before = snapshot(model)
        steps, n, s = (4, 2, 32) if quick else (64, 16, 128)
        t0 = time.perf_counter()
        r = tl.synthesis.maximize(model, [f"layer3:{c}" for c in range(n)], steps=steps, input_shape=(3, s, s), seed=0)
        sync(dev)
        dt = time.perf_counter() - t0
        on(dev, r.images)
        unchanged(before, model)
        assert bool(torch.isfinite(r.images).all())
        return {"images": list(r.images.shape), "image_steps_per_s": round(n * steps / dt, 1)}

    @check("exemplars: model on the device, dataset on the cpu, equal to the cpu run; bf16 autocast")
    def _():
        n = 48 if quick else 512
        ds = torch.utils.data.TensorDataset(torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(1)))
        a = tl.synthesis.exemplars(ref, ds, layer="layer3", k=5, batch_size=16, progress=False)
        b = tl.synthesis.exemplars(model, ds, layer="layer3", k=5, batch_size=16, progress=False)
        on(dev, b.values)
        with tl.devices.autocast(dev, "bf16"):
            c = tl.synthesis.exemplars(model, ds, layer="layer3", k=5, batch_size=16, progress=False)
        agree = float((a.indices == b.indices.cpu()).float().mean())
        assert agree > 0.99, agree
        return {"index_agreement": agree, "values_maxdiff": float((a.values - b.values.cpu()).abs().max()),
                "bf16_top1_agreement": float((a.indices[:, 0] == c.indices[:, 0].cpu()).float().mean())}

    @check("attention: TransformerEncoder fast path, device vs cpu")
    def _():
        torch.manual_seed(0)
        enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), 2,
                                    enable_nested_tensor=False).eval()
        enc_d = copy.deepcopy(enc).to(dev)
        t = torch.rand(3, 10, 64)
        before = snapshot(enc_d)
        a, b = tl.attention.capture(enc, t), tl.attention.capture(enc_d, t.to(dev))
        unchanged(before, enc_d)
        for v in b.values():
            on(dev, v)
        diff = max(float((a[k] - b[k].cpu()).abs().max()) for k in a)
        assert diff < 1e-4, diff
        return {"layers": len(b), "maxdiff": diff}

    @check("attention: Hugging Face BERT from a small config (sdpa) vs eager output_attentions")
    def _():
        try:
            import transformers
        except ImportError as exc:
            raise Skip(f"transformers not installed ({exc})")
        cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                                      vocab_size=500)
        torch.manual_seed(0)
        m = transformers.BertModel(cfg).eval().to(dev)
        ids = torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(0)).to(dev)
        maps = tl.attention.capture(m, input_ids=ids)
        eager = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval().to(dev)
        eager.load_state_dict(m.state_dict())
        with torch.no_grad():
            want = eager(input_ids=ids, output_attentions=True).attentions
        for v in maps.values():
            on(dev, v)
        diff = max(float((a - w).abs().max()) for a, w in zip(maps.values(), want))
        assert diff < 1e-4, diff
        return {"layers": len(maps), "maxdiff": diff}

    @check("recurrent: trace of an LSTM against the module (cuDNN on a GPU)")
    def _():
        torch.manual_seed(0)
        lstm = nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True).to(dev)
        s = torch.rand(4, 20, 16, generator=torch.Generator().manual_seed(0)).to(dev)
        before = snapshot(lstm)
        tr = tl.recurrent.trace(lstm, s)
        unchanged(before, lstm)
        with torch.no_grad():
            out, _ = lstm(s)
        top = tr.h[-1]  # (directions, B, T, H)
        diff = max(float((top[0] - out[..., :32]).abs().max()), float((top[1] - out[..., 32:]).abs().max()))
        on(dev, tr.h)
        assert diff < 1e-4, diff
        return {"maxdiff": diff}

    @check("fusion: contributions of a two-branch model, device vs cpu")
    def _():
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
                self.b = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
                self.head = nn.Linear(16, 5)

            def forward(self, x1, x2):
                return self.head(torch.cat([self.a(x1), self.b(x2)], 1))

        torch.manual_seed(0)
        m = Two().eval()
        md = copy.deepcopy(m).to(dev)
        g = torch.Generator().manual_seed(2)
        pair = (torch.rand(6, 3, 16, 16, generator=g), torch.rand(6, 3, 16, 16, generator=g))
        out = {}
        for method in ("exact", "shapley", "integrated_gradients", "ablation"):
            a = tl.fusion.contributions(m, pair, branches={"a": "a", "b": "b"}, method=method)
            b = tl.fusion.contributions(md, tuple(t.to(dev) for t in pair), branches={"a": "a", "b": "b"}, method=method)
            on(dev, b.values["a"])
            out[method] = float(max((a.values[k] - b.values[k].cpu()).abs().max() for k in a.values))
        assert max(out.values()) < 1e-3, out
        return out

    @check("evaluate: deletion, insertion, average drop, ROAD, pointing game, device vs cpu")
    def _():
        maps = tl.cam.GradCAM(ref, "layer4")(x_cpu, target).maps
        out = {}
        for name in ("deletion", "insertion", "average_drop", "road"):
            f = getattr(tl.evaluate, name)
            kw = {"steps": 8} if quick and name in ("deletion", "insertion") else {}
            a, b = f(ref, x_cpu, maps, target, **kw), f(model, x, maps.to(dev), target.to(dev), **kw)
            a, b = (a if torch.is_tensor(a) else a.scores), (b if torch.is_tensor(b) else b.scores)
            on(dev, b)
            out[name] = float((a.double() - b.double().cpu()).abs().max())
        masks = torch.zeros(batch, side, side, dtype=torch.bool)
        masks[:, : side // 2] = True
        hits = tl.evaluate.pointing_game(maps.to(dev), masks.to(dev))
        out["pointing_equal"] = bool(torch.equal(hits.cpu(), tl.evaluate.pointing_game(maps, masks)))
        assert max(v for k, v in out.items() if k != "pointing_equal") < 1e-3 and out["pointing_equal"], out
        return out

    @check("evaluate: randomization check on the device")
    def _():
        def explain(m, inp, t):
            return tl.cam.GradCAM(m, "layer4")(inp, t).maps

        before = snapshot(model)
        blocks = ["fc", "layer4", "layer3"] if quick else None  # default: every layer with parameters
        r = tl.evaluate.randomization_check(model, x, explain, target=target.to(dev), blocks=blocks)
        unchanged(before, model)
        return type(r).__name__

    @check("WeightTracker in a training loop on the device")
    def _():
        torch.manual_seed(0)
        m = torchvision.models.resnet18(weights=None, num_classes=10).to(dev)
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        tracker = tl.weights.WeightTracker(m, every=2)
        for _ in range(6):
            loss = nn.functional.cross_entropy(m(torch.rand(4, 3, side, side, device=dev)),
                                               torch.randint(0, 10, (4,), device=dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tracker.step()
        steps = [int(s) for s in tracker.history.steps]
        assert len(steps) >= 3, steps
        return {"steps": steps}

    @check("report: every section of a model on the device")
    def _():
        path = os.path.join(out_dir, f"{dev.type}_report.html")
        before = snapshot(model)
        t0 = time.perf_counter()
        info = tl.report(model, x, path, progress=False, options={"quick": quick})
        unchanged(before, model)
        failed = [(r.section, r.message) for r in info.runs if r.status == "error"]
        assert not failed, failed
        return {"s": round(time.perf_counter() - t0, 2), "MB": round(os.path.getsize(path) / 1e6, 2),
                "sections": {r.section: round(r.seconds, 2) for r in info.runs}}

    @check("half precision: bf16 and fp16 models through the CAMs and saliency vs float32")
    def _():
        out = {}
        s = max(side, 64)  # layer4 at least 2 x 2
        xs = torch.rand(batch, 3, s, s, generator=torch.Generator().manual_seed(3))
        worst = 1.0
        for dtype in (torch.bfloat16, torch.float16):
            half = copy.deepcopy(ref).to(dev, dtype)
            try:
                row = {}
                for name in ("gradcam", "gradcam++", "layercam", "scorecam"):
                    cam = tl.cam.METHODS[name]
                    kw = {"max_masks": 16} if name == "scorecam" else {}
                    a = cam(ref, "layer4", **kw)(xs, target)
                    b = cam(half, "layer4", **kw)(xs.to(dev, dtype), target.to(dev))
                    on(dev, b.maps)
                    assert b.maps.dtype == torch.float32, b.maps.dtype
                    row[name] = round(min(pearson(a.maps[i], b.maps[i]) for i in range(batch)), 5)
                g = tl.saliency.guided_backprop(half, xs.to(dev, dtype), target.to(dev))
                row["guided_backprop"] = round(pearson(tl.saliency.guided_backprop(ref, xs, target), g.float()), 5)
                worst = min(worst, *row.values())
            except Exception as exc:  # fp16 kernels missing on a device: say which
                row = f"{type(exc).__name__}: {exc}"[:200]
                worst = 0.0
            out[str(dtype).replace("torch.", "")] = row
        # a random-init resnet18: 0.995-1.0 measured on the CPU; the trained-model bar (0.999) is in tests/test_device.py
        assert worst > 0.99, out
        return out

    @check("torchrun: exemplars under a process group (NCCL on a GPU, gloo on the CPU)")
    def _():
        ranks = max(1, torch.cuda.device_count()) if dev.type == "cuda" else 2
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               os.path.abspath(__file__), "--worker"] + (["--quick"] if quick else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, (p.stdout + p.stderr)[-1500:]
        info = json.loads(p.stdout.strip().splitlines()[-1])
        want = "nccl" if dev.type == "cuda" else "gloo"
        assert info["backend"] == want and info["equal_to_single"], info
        return {"ranks": ranks, **info}


# -- part 2: speed -------------------------------------------------------------------------

def speed(check: Checks, dev: torch.device, quick: bool) -> None:
    import torchvision

    batch, side, images = (2, 64, 32) if quick else (64, 224, 4096)

    def bare(model, layer, inp, targets):
        """A forward and the backward to ``layer``'s output: what one gradient CAM cannot do with less."""
        kept = {}
        handle = layer.register_forward_hook(lambda m, a, o: kept.__setitem__("a", o))
        try:
            out = model(inp)
            torch.autograd.grad(out.gather(1, targets[:, None]).sum(), [kept["a"]])
        finally:
            handle.remove()

    @check(f"speed: Grad-CAM / Grad-CAM++ on resnet50, batch {batch}, {side} px vs bare and pytorch-grad-cam")
    def _():
        torch.manual_seed(0)
        m = torchvision.models.resnet50(weights=None).eval().to(dev)
        inp = torch.rand(batch, 3, side, side, device=dev)
        t = torch.arange(batch, device=dev) % 1000
        runs = {
            "bare forward+backward": lambda: bare(m, m.layer4, inp, t),
            "tl GradCAM": lambda: tl.cam.GradCAM(m, "layer4")(inp, t),
            "tl GradCAMPlusPlus": lambda: tl.cam.GradCAMPlusPlus(m, "layer4")(inp, t),
        }
        try:
            from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            targets = [ClassifierOutputTarget(int(i)) for i in t]

            def peer(cls):
                with cls(model=m, target_layers=[m.layer4]) as cam:
                    cam(input_tensor=inp, targets=targets)
                for p in m.parameters():
                    p.grad = None

            runs["pytorch-grad-cam GradCAM"] = lambda: peer(GradCAM)
            runs["pytorch-grad-cam GradCAMPlusPlus"] = lambda: peer(GradCAMPlusPlus)
        except ImportError:
            pass
        secs = {k: timed(f, dev, reps=2 if quick else 5, warm=1 if quick else 2) for k, f in runs.items()}
        base = secs["bare forward+backward"]
        out = {k: f"{v * 1000:.1f} ms ({v / base:.2f}x bare)" for k, v in secs.items()}
        if "pytorch-grad-cam GradCAM" in secs:
            out["peer / tl GradCAM"] = round(secs["pytorch-grad-cam GradCAM"] / secs["tl GradCAM"], 2)
            out["peer / tl GradCAM++"] = round(secs["pytorch-grad-cam GradCAMPlusPlus"] / secs["tl GradCAMPlusPlus"], 2)
        return out

    @check("speed: Score-CAM at equal masked forwards vs pytorch-grad-cam")
    def _():
        torch.manual_seed(0)
        # quick: resnet18's layer1 (64 channels at 16 x 16), not resnet50's 2,048 masked forwards per image
        m = (torchvision.models.resnet18 if quick else torchvision.models.resnet50)(weights=None).eval().to(dev)
        layer = m.layer1 if quick else m.layer4
        n, s = (1, 64) if quick else (2, side)
        inp = torch.rand(n, 3, s, s, device=dev)
        t = torch.arange(1, n + 1, device=dev)
        ours = tl.cam.ScoreCAM(m, layer, warn_above=None)
        out = {"tl_s": round(timed(lambda: ours(inp, t), dev, reps=1 if quick else 2, warm=1), 3),
               "tl_masked_forwards": ours.forwards}
        try:
            from pytorch_grad_cam import ScoreCAM
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        except ImportError:
            out["peer"] = "pytorch-grad-cam not installed"
            return out

        def peer():
            with ScoreCAM(model=m, target_layers=[layer]) as cam:
                cam.batch_size = 64
                cam(input_tensor=inp, targets=[ClassifierOutputTarget(int(i)) for i in t])

        out["peer_s"] = round(timed(peer, dev, reps=1 if quick else 2, warm=1), 3)
        channels = 64 if quick else 2048
        out["peer_masked_forwards"] = n * channels  # one per channel and image, duplicates included
        # equal work: seconds per masked forward
        out["peer / tl per forward"] = round((out["peer_s"] / out["peer_masked_forwards"])
                                             / (out["tl_s"] / max(1, out["tl_masked_forwards"])), 2)
        return out

    @check(f"speed: exemplars resnet50 layer4 over {images} images at {64 if quick else 128} px vs a bare forward loop")
    def _():
        torch.manual_seed(0)
        m = torchvision.models.resnet50(weights=None).eval().to(dev)
        s = 64 if quick else 128
        data = torch.rand(images, 3, s, s)
        ds = torch.utils.data.TensorDataset(data)
        bs = 16 if quick else 256
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, pin_memory=dev.type == "cuda")

        def loop():
            with torch.no_grad():
                for (b,) in loader:
                    m(b.to(dev, non_blocking=True))

        a = timed(loop, dev, reps=1 if quick else 2, warm=1)
        b = timed(lambda: tl.synthesis.exemplars(m, ds, layer="layer4", k=9, batch_size=bs, progress=False), dev,
                  reps=1 if quick else 2, warm=1)
        return {"bare_s": round(a, 3), "exemplars_s": round(b, 3), "throughput_vs_bare": round(a / b, 2),
                "bare_images_per_s": round(images / a, 1)}

    @check("speed: maximize image-steps per second on resnet50")
    def _():
        torch.manual_seed(0)
        m = torchvision.models.resnet50(weights=None).eval().to(dev)
        n, steps = (2, 2) if quick else (64, 64)
        sync(dev)
        t0 = time.perf_counter()
        tl.synthesis.maximize(m, [f"layer3:{c}" for c in range(n)], steps=steps, input_shape=(3, side, side), seed=0)
        sync(dev)
        dt = time.perf_counter() - t0
        return {"s": round(dt, 2), "image_steps_per_s": round(n * steps / dt, 1), "images": n, "steps": steps,
                "px": side}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N, mps")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script itself")
    p.add_argument("--no-speed", action="store_true", help="only the correctness checks")
    p.add_argument("--only", default="", help="comma-separated words: run the checks whose name holds one")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp"), help="folder for gpu_check.json and the report")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.quick)
    dev = parse_device(args.device)
    import torchvision

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, device {dev} ({name})"
          f"{', quick' if args.quick else ''}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    check = Checks(args.only)
    t0 = time.perf_counter()
    correctness(check, dev, args.quick, args.out)
    if not args.no_speed:
        speed(check, dev, args.quick)
    bad = [k for k, v in check.results.items() if not v["ok"]]
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump({"device": str(dev), "name": name, "quick": args.quick, "torch": torch.__version__,
                   "seconds": round(time.perf_counter() - t0, 1), "results": check.results}, f, indent=1, default=str)
    print(f"\n{len(check.results) - len(bad)} of {len(check.results)} checks ok in {time.perf_counter() - t0:.0f} s; "
          f"failed: {bad or 'none'}; wrote {os.path.join(args.out, 'gpu_check.json')}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
