"""Score-CAM: Wang et al. 2020, https://arxiv.org/abs/1910.01279.

Each channel ``A_k``, upsampled to the input size and min-max normalised to a mask ``M_k``,
masks the input; the weight is the target's softmax probability on ``x * M_k`` (for a
callable target: its score). Map ``ReLU(sum_k w_k A_k)``.

Cost: one masked forward per *distinct* mask. Channels whose map is constant (mask all 0)
or equal to another channel's map give the same masked input, so they run once. The
masked forwards run without autograd in batches of ``batch_size`` (default: sized so the
masked inputs take at most ``memory / 64`` bytes, the rest left for the model's activations).
Their number is known before the first of them runs: :attr:`ScoreCAM.planned` holds it, and a
warning states it when it is above ``warn_above`` (default 1024; a resnet50 layer4 has 2048
channels: 2048 forwards per image, minutes on a CPU). ``progress=True`` shows a tqdm bar over them.

``max_masks=k`` caps the work at the ``k`` strongest channels of each image (largest mean
activation over positions); the others get weight 0. **An approximation** of Score-CAM (said in
a warning when it drops channels): the map is the paper's sum restricted to those channels. With
``k`` at least the channel count the result is exactly the uncapped one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError, UsageError, require
from ..layers import LayerSpec
from .base import BaseCAM, Run, normalize_maps, upsample, working


class ScoreCAM(BaseCAM):
    """Score-CAM: channel weights are the target's score on the input masked by each channel.

    ``max_masks``: at most this many channels per image, the strongest by mean activation (an
    approximation, see the module docstring); ``progress``: a tqdm bar over the masked forwards;
    ``warn_above``: warn with the number of masked forwards before running more than this many.
    After a call, :attr:`planned` (masked forwards decided before they ran), :attr:`forwards` (run)
    and :attr:`capped` (channels dropped by ``max_masks``) describe it.
    """

    title = "Score-CAM"

    uses_gradients = False
    #: One masked forward per channel and image: the report skips it under ``--quick`` or past a budget.
    forward_per_channel = True

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | Sequence[LayerSpec] | None = None,
        *,
        batch_size: int | None = None,
        memory: int = 2**30,
        max_masks: int | None = None,
        progress: bool = False,
        warn_above: int | None = 1024,
        **kw,
    ):
        super().__init__(model, layer, **kw)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise UsageError(f"batch_size must be >= 1, got {batch_size!r}")
        if max_masks is not None and (isinstance(max_masks, bool) or not isinstance(max_masks, int) or max_masks < 1):
            raise UsageError(f"max_masks must be a positive int (channels per image) or None, got {max_masks!r}")
        if warn_above is not None and (not isinstance(warn_above, int) or warn_above < 0):
            raise UsageError(f"warn_above must be a non-negative int or None, got {warn_above!r}")
        self.batch_size = batch_size
        self.memory = memory
        self.max_masks = max_masks
        self.progress = progress
        self.warn_above = warn_above
        self.planned = 0  # masked forwards (rows) the last call decided to run, before running them
        self.forwards = 0  # masked forwards (rows) run by the last call, for inspection
        self.capped = False  # whether the last call dropped channels (max_masks < channels)

    def _channels(self, flat: Tensor) -> Tensor:
        """``(N, k)`` channel indices each image keeps: all of them in order, or the ``max_masks`` strongest."""
        n, c = flat.shape[:2]
        if self.max_masks is None or self.max_masks >= c:
            return torch.arange(c, device=flat.device).expand(n, c)
        strongest = flat.mean(dim=2).topk(self.max_masks, dim=1).indices
        return strongest.sort(dim=1).values

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:  # -> (N,*S)
        x = run.x
        if not x.is_floating_point():
            raise UnsupportedModelError(
                f"Score-CAM masks the explained input, and input {run.inputs.resolve(run.wrt)!r} holds {x.dtype} "
                f"values (token ids?) that cannot be masked; use a gradient CAM (gradcam) on these inputs")
        inputs = run.inputs
        n, c = acts.shape[:2]
        size = tuple(x.shape[2:])
        flat = acts.reshape(n, c, -1)
        keep = self._channels(flat)  # (N, k)
        self.capped = keep.shape[1] < c
        low = normalize_maps(flat.gather(1, keep[:, :, None].expand(-1, -1, flat.shape[2])))  # (N, k, P)
        owners, inverse, count = [], [], 0
        for i in range(n):  # distinct masks of each image (constant channels -> zeros; duplicates once)
            uniq, inv = torch.unique(low[i], dim=0, return_inverse=True)
            inverse.append(inv + count)
            count += uniq.shape[0]
            owners.append(uniq)
        uniq_low = torch.cat(owners)  # (R, P) normalised low-res maps, R distinct over the batch
        owner = torch.cat([torch.full((o.shape[0],), i, dtype=torch.long) for i, o in enumerate(owners)])
        self.planned, self.forwards = int(uniq_low.shape[0]), 0
        if self.capped:
            warnings.warn(f"Score-CAM on {run.layer_name!r} keeps the {keep.shape[1]} strongest of {c} channels per "
                          f"image (max_masks={self.max_masks}): an approximation, the other channels get weight 0",
                          stacklevel=2)
        if self.warn_above is not None and self.planned > self.warn_above:
            warnings.warn(f"Score-CAM on {run.layer_name!r} runs {self.planned:,} masked forwards ({n} image(s) x up "
                          f"to {keep.shape[1]} channels); pass max_masks= to cap them (an approximation) or "
                          f"progress=True to watch", stacklevel=2)
        per = x[0].numel() * x.element_size()
        bs = self.batch_size or max(1, min(512, self.memory // (64 * per)))
        bar = None
        if self.progress:
            bar = require("tqdm.auto", "render", "tqdm").tqdm(total=self.planned, desc="Score-CAM", leave=False)
        scores = torch.empty(uniq_low.shape[0], dtype=acts.dtype, device=acts.device)
        try:
            for start in range(0, uniq_low.shape[0], bs):
                sl = slice(start, start + bs)
                who = owner[sl].to(x.device)
                masks = upsample(uniq_low[sl].reshape(-1, *acts.shape[2:]), size)
                masks = normalize_maps(masks)
                masked = inputs.select(who).replace(run.wrt, x[who] * masks.unsqueeze(1).to(x.dtype))
                out = masked.call(self.model)
                if run.target.is_callable:
                    s = working(run.target.resolve(out, who.numel())[1](out))
                else:
                    probs = working(run.target.scores_of(out)).softmax(dim=1)  # float32 for a half model
                    s = probs.gather(1, run.targets.to(probs.device)[who][:, None]).squeeze(1)
                scores[sl] = s.to(scores.dtype).to(scores.device)
                self.forwards += int(who.numel())
                if bar is not None:
                    bar.update(int(who.numel()))
        finally:
            if bar is not None:
                bar.close()
        w = torch.zeros(n, c, dtype=scores.dtype, device=scores.device)
        w.scatter_(1, keep.to(w.device), scores[torch.stack(inverse)])  # (N, C); dropped channels 0
        return torch.einsum("nc,nc...->n...", w, acts)
