"""Worker for the torchrun test: every rank computes exemplars and saves what it got."""

import sys

import torch

import torchloupe as tl
from tests.helpers import tiny_cnn


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    model = tiny_cnn(seed=0)
    data = torch.utils.data.TensorDataset(torch.rand(53, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    with tl.distributed.session() as multi:
        ex = tl.synthesis.exemplars(model, data, "features.3", k=4, reduce="max", batch_size=8)
        rank = tl.distributed.rank()
        torch.save({"multi": multi, "world": tl.distributed.world_size(), "values": ex.values,
                    "indices": ex.indices, "locations": ex.locations, "crops": ex.crops, "seen": ex.seen},
                   f"{out_dir}/rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
