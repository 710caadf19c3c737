"""Multi-process training without code changes: detect ``torchrun`` and set up DDP.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; `setup` sees them and initialises the default
process group (``gloo`` on CPU, ``nccl`` on CUDA) unless one already exists. Each process
then trains on ``batch_size / world_size`` samples of its own data stream, and
``DistributedDataParallel`` averages the gradients, so every rank keeps identical weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from solvers.inputs import check_device

__all__ = ["DistInfo", "setup", "resolve_device"]


@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``; ``owns_group`` if we created it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (a list of length ``world_size``; ``[obj]`` when single)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks (in place on a copy)."""
        if not self.enabled:
            return x
        y = x.clone()
        dist.all_reduce(y)
        return y / self.world_size

    def max(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise maximum of a tensor over ranks (``x`` itself when single)."""
        if not self.enabled:
            return x
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.MAX)
        return y

    def close(self) -> None:
        """Destroy the process group if `setup` created it, after every rank has reached this point.

        Without the barrier a rank can tear down its gloo connections while a peer is still
        using them, and the peer aborts at exit (seen once in CI under load).
        """
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` if available else ``cpu``; other names as given
    (``"cuda"`` is ``cuda:<local_rank>``).

    Raises:
        ValueError: an unknown device name, or a device this machine or torch build lacks
            (checked here, before any work, by `solvers.inputs.check_device`, with the fix in the
            message).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = check_device(name, fix="--device cpu (or auto)")
    if dev.type == "cuda" and dev.index is None:
        dev = check_device(torch.device("cuda", local_rank), fix="--device cpu (or auto)")
    return dev


def setup(device: torch.device) -> DistInfo:
    """Join (or start) the process group described by ``torchrun``'s environment variables."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)
