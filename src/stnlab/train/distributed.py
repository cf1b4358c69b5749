"""Data-parallel plumbing for ``torchrun``: process group, rank, cross-rank sums and checks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Dist", "all_reduce_sum", "replicas_identical", "setup", "teardown"]


@dataclass(frozen=True)
class Dist:
    """Where this process stands: ``rank`` of ``world_size``; ``owned`` if we made the group."""

    rank: int = 0
    world_size: int = 1
    owned: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and draws progress bars."""
        return self.rank == 0


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    With ``WORLD_SIZE`` unset or 1 this does nothing. Otherwise it initialises
    ``torch.distributed`` (gloo for CPU, nccl for CUDA) and, on CUDA, maps the chosen
    device to this process's ``LOCAL_RANK``. Returns the rank info and the device to use.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, owned), device


def teardown(d: Dist) -> None:
    """Leave the process group if :func:`setup` created it."""
    if d.owned and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum ``t`` over ranks in place (a no-op for one process); returns ``t``."""
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


@torch.no_grad()
def replicas_identical(model: nn.Module, d: Dist) -> bool:
    """Whether every rank holds bit-identical parameters and buffers (True for one process)."""
    if not d.enabled:
        return True
    flat = torch.cat([t.detach().reshape(-1).double() for t in model.state_dict().values()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    mismatch = torch.tensor([float(not torch.equal(flat, ref))], device=flat.device)
    dist.all_reduce(mismatch, op=dist.ReduceOp.SUM)
    return mismatch.item() == 0
