"""Several processes or GPUs through PyTorch's own distributed engine.

lifnet runs data-parallel under ``torchrun`` (``torch.distributed.run``): every process
holds the whole network, takes its share of each global minibatch, and the gradients are
averaged by :class:`torch.nn.parallel.DistributedDataParallel` (DDP) before every step. The
backend is ``gloo`` on CPUs and ``nccl`` on CUDA GPUs.

What stays the same as one process:

- the global batch: ``training.batch_size`` is the batch of one optimiser step summed over
  all processes; process ``r`` of ``W`` takes samples ``r, r + W, r + 2W, ...`` of it;
- the order and the random shifts: every process draws the same global permutation and the
  same per-sample shifts from ``(seed, epoch)`` and takes its share, so the samples that
  meet in one step are those of a single-process run;
- the gradient: each process scales its loss by ``local / global`` samples times ``W``, so
  DDP's average is the gradient of the global batch's mean loss, also for a short last
  batch; the learning rates need no change;
- the metrics: sums are reduced over processes before they are reported.

Only rank 0 writes files and shows progress. Checkpoints describe the global position (epoch
and global batch), so a run resumes under a different number of processes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` to a device (``cuda`` takes the process's
    local rank under torchrun)."""
    from .errors import bad_value

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise bad_value("--device", name, "cpu or auto (no CUDA device is available here)")
        index = local_rank if name == "cuda" else name.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise bad_value("--device", name, "auto, cpu, cuda or cuda:N") from None
        if not 0 <= index < torch.cuda.device_count():
            raise bad_value("--device", name,
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    raise bad_value("--device", name, "auto, cpu, cuda or cuda:N")


def setup(device: str = "auto", timeout_s: float = 120.0) -> Context:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank, world, local_rank, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], ctx: Context) -> list[float]:
    """Sum a few numbers over all processes (returned unchanged with one process)."""
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensor(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.distributed:
        t = t.clone()
        dist.all_reduce(t)
    return t
