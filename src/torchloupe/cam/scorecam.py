"""Score-CAM: Wang et al. 2020, https://arxiv.org/abs/1910.01279.

Each channel ``A_k``, upsampled to the input size and min-max normalised to a mask ``M_k``,
masks the input; the weight is the target's softmax probability on ``x * M_k`` (for a
callable target: its score). Map ``ReLU(sum_k w_k A_k)``.

Cost: one masked forward per *distinct* mask. Channels whose map is constant (mask all 0)
or equal to another channel's map give the same masked input, so they run once. The
masked forwards run without autograd in batches of ``batch_size`` (default: sized so the
masked inputs take at most ``memory / 64`` bytes, the rest left for the model's activations).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..layers import LayerSpec
from .base import BaseCAM, Run, normalize_maps, upsample


class ScoreCAM(BaseCAM):
    """Score-CAM: channel weights are the target's score on the input masked by each channel."""

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
        **kw,
    ):
        super().__init__(model, layer, **kw)
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.memory = memory
        self.forwards = 0  # masked forwards (rows) run by the last call, for inspection

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:  # -> (N,*S)
        x = run.x
        inputs = run.inputs
        n, c = acts.shape[:2]
        size = tuple(x.shape[2:])
        flat = acts.reshape(n, c, -1)
        low = normalize_maps(flat)  # constant channels -> zeros; dedup key for identical masks
        owners, inverse, count = [], [], 0
        for i in range(n):
            uniq, inv = torch.unique(low[i], dim=0, return_inverse=True)
            inverse.append(inv + count)
            count += uniq.shape[0]
            owners.append(uniq)
        uniq_low = torch.cat(owners)  # (R, P) normalised low-res maps, R distinct over the batch
        owner = torch.cat([torch.full((o.shape[0],), i, dtype=torch.long) for i, o in enumerate(owners)])
        per = x[0].numel() * x.element_size()
        bs = self.batch_size or max(1, min(512, self.memory // (64 * per)))
        scores = torch.empty(uniq_low.shape[0], dtype=acts.dtype, device=acts.device)
        for start in range(0, uniq_low.shape[0], bs):
            sl = slice(start, start + bs)
            who = owner[sl].to(x.device)
            masks = upsample(uniq_low[sl].reshape(-1, *acts.shape[2:]), size)
            masks = normalize_maps(masks)
            masked = inputs.select(who).replace(run.wrt, x[who] * masks.unsqueeze(1).to(x.dtype))
            out = masked.call(self.model)
            if run.target.is_callable:
                s = run.target.resolve(out, who.numel())[1](out)
            else:
                probs = run.target.scores_of(out).softmax(dim=1)
                s = probs.gather(1, run.targets.to(probs.device)[who][:, None]).squeeze(1)
            scores[sl] = s.to(scores.dtype).to(scores.device)
        self.forwards = int(uniq_low.shape[0])
        w = scores[torch.stack(inverse)]  # (N, C)
        return torch.einsum("nc,nc...->n...", w, acts)

