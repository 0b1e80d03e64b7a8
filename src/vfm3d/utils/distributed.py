"""``torchrun`` helpers shared by the systems' trainers (and the zoo, which calls them).

`init_distributed` joins the process group of ``torchrun`` (``WORLD_SIZE`` > 1) or one already
initialised: gloo on CPU, NCCL on CUDA with the device ``cuda:LOCAL_RANK``. `Distributed` holds the
rank facts (``world = 1``, ``active = False`` without torchrun): each rank's contiguous share of a
global batch, a barrier, DDP wrapping, and closing a group it opened. `RankTrainer` is the
`Trainer` of a rank other than 0: it logs into its own scratch folder and reads (and at the stage's
end writes, with identical content) rank 0's checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vfm3d.utils.training import Trainer


@dataclass
class Distributed:
    """Rank facts of this process (``world = 1``, ``active = False`` without torchrun)."""

    rank: int = 0
    world: int = 1
    active: bool = False
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def share(self, batch: int) -> slice:
        """This rank's contiguous share of a global batch of ``batch`` samples."""
        if batch % self.world:
            raise ValueError(
                f"batch {batch} must be divisible by the number of processes ({self.world})"
            )
        local = batch // self.world
        return slice(self.rank * local, (self.rank + 1) * local)

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in ``DistributedDataParallel`` when a process group is active."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def close(self) -> None:
        if self.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.initialised_here = False
            self.active = False


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group of ``torchrun`` (``WORLD_SIZE`` > 1) or one already initialised;
    returns the rank facts and this rank's device (``cuda:LOCAL_RANK`` on CUDA)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not dist.is_available() or (world <= 1 and not dist.is_initialized()):
        return Distributed(), device
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        here = True
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    ctx = Distributed(dist.get_rank(), dist.get_world_size(), active=True, initialised_here=here)
    return ctx, device


@dataclass
class RankTrainer(Trainer):
    """`Trainer` of a rank other than 0: logs into its own scratch folder, never shows a bar,
    and reads (and at the stage's end writes, with identical content) rank 0's checkpoint."""

    shared_checkpoint: Path | None = None

    @property
    def checkpoint_path(self) -> Path:
        assert self.shared_checkpoint is not None
        return self.shared_checkpoint
