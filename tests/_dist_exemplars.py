"""Worker for the torchrun tests: every rank computes exemplars and saves what it got.

    torchrun ... tests/_dist_exemplars.py OUT_DIR N BATCH

The data: ``N`` random 16 px images; the model: ``tiny_cnn(seed=0)``; the layer ``features.3`` with
crops, from a ``TensorDataset`` (crops read again at the end) and from a list of batches (crops kept
while streaming). Each rank writes ``OUT_DIR/rank{RANK}.pt``.
"""

import sys

import torch

import torchloupe as tl
from tests.helpers import tiny_cnn


def data(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def results(n: int, batch: int) -> dict:
    model, x = tiny_cnn(seed=0), data(n)
    ds = tl.synthesis.exemplars(model, torch.utils.data.TensorDataset(x), "features.3", k=4, reduce="max",
                                batch_size=batch)
    it = tl.synthesis.exemplars(model, list(x.split(batch)), "features.3", k=3, negative=True)
    return {name: {**r.to_dict(), "crops": r.crops} for name, r in (("dataset", ds), ("batches", it))}


def main(out_dir: str, n: int, batch: int) -> None:
    torch.set_num_threads(1)
    with tl.distributed.session() as multi:
        got = results(n, batch)
        got.update(multi=multi, world=tl.distributed.world_size())
        torch.save(got, f"{out_dir}/rank{tl.distributed.rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
