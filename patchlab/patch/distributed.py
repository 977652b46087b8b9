"""Data-parallel patch training on torch.distributed, in processes that `torchrun` starts.

Every rank holds the same patch, Adam state and random generator, and draws each step's whole batch from it (scene
indices and EOT parameters), so the draws depend only on the seed and the step. A rank renders and back-propagates
its own contiguous rows of that batch; one all-reduce per step sums the patch gradients (each rank's loss weighted by
its share of the batch, so the average is the whole batch's gradient) together with the batch metrics, and every rank
takes the same Adam step. N processes with batch B therefore follow one process with batch B up to float rounding,
and a checkpoint (rank 0 writes it) resumes under any number of processes.

Backends: gloo on CPUs, NCCL on GPUs (one GPU per process: cuda:LOCAL_RANK). Rendezvous: torchrun's environment
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), on one machine or several (docs/distributed.md has the commands).
"""

from __future__ import annotations

import importlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch

from patchlab.errors import PatchlabError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# torch modules whose default arguments are `dist.group.WORLD`, evaluated at import: imported while a process group
# is up (timm imports torch._dynamo, which imports torch.distributed.nn), each keeps that group alive after
# destroy_process_group, so gloo's threads outlive it into interpreter shutdown, where they can abort the process
# (SIGABRT, "terminate called without an active exception"). Imported before the group exists, they hold None.
WORLD_DEFAULT_MODULES = ("torch.distributed.nn", "torch.distributed.optim", "torch.distributed.fsdp")


@dataclass
class RankGroup:
    """This process's place in a data-parallel run; the default is a run of one process (no collectives)."""

    rank: int = 0
    world: int = 1
    backend: str | None = None
    device: torch.device | None = None  # this rank's device (None: the config's)
    comm_seconds: float = 0.0           # time in the per-step all-reduce (transfer plus waiting for slower ranks)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This rank's contiguous rows of a batch (sizes differ by at most one when batch % world != 0)."""
        return slice(batch * self.rank // self.world, batch * (self.rank + 1) // self.world)

    def share(self, batch: int) -> float:
        """This rank's rows as a fraction of the batch."""
        rows = self.rows(batch)
        return (rows.stop - rows.start) / batch

    def average_gradient(self, grad: torch.Tensor, stats: list[float]) -> list[float]:
        """One all-reduce: `grad` becomes the ranks' mean gradient (in place) and `stats` their sums."""
        import torch.distributed as dist

        start = time.perf_counter()
        flat = torch.cat([grad.reshape(-1), torch.tensor(stats, dtype=grad.dtype, device=grad.device)])
        dist.all_reduce(flat)
        grad.copy_(flat[:grad.numel()].view_as(grad)).div_(self.world)
        summed = flat[grad.numel():].tolist()
        self.comm_seconds += time.perf_counter() - start
        return summed

    def broadcast(self, obj):
        """Rank 0's `obj` (picklable; keep tensors on the CPU) on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    @contextmanager
    def all_or_none(self, what: str) -> Iterator[None]:
        """Run the block on every rank; if it fails on any, raise on all (a rank that went on would wait forever
        in the next collective). The block itself must not run collectives."""
        error: Exception | None = None
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
        if self.world > 1:
            failures = [(r, msg) for r, msg in enumerate(self.gather(None if error is None else str(error)))
                        if msg is not None]
            if failures and error is None:
                rank, msg = failures[0]
                raise PatchlabError(f"rank {rank} failed while {what}: {msg}")
        if error is not None:
            raise error


def torchrun_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextmanager
def process_group(device: str = "auto", backend: str | None = None,
                  timeout_s: float = 1800.0) -> Iterator[RankGroup]:
    """Join the data-parallel run that torchrun started (or use a default process group already initialised):
    NCCL with this process's GPU cuda:LOCAL_RANK when the device resolves to CUDA, else gloo on the CPU. A group
    this call initialised is destroyed on exit."""
    import torch.distributed as dist

    from patchlab.models import resolve_device

    if not dist.is_available():
        raise PatchlabError("this torch build has no torch.distributed")
    owned = not dist.is_initialized()
    if owned:
        missing = [k for k in TORCHRUN_ENV if k not in os.environ]
        if missing:
            raise PatchlabError(f"distributed training runs in processes that torchrun starts ({', '.join(missing)} "
                                "missing from the environment); see docs/distributed.md")
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index if dev.index is not None else int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if owned:
        for name in WORLD_DEFAULT_MODULES:
            importlib.import_module(name)
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                 device_id=dev if backend == "nccl" else None)
    finished = False
    try:
        yield RankGroup(dist.get_rank(), dist.get_world_size(), dist.get_backend(), dev)
        finished = True
    finally:
        if owned:
            if finished:  # leave together: a rank that tears gloo down while a peer still talks to it can abort
                dist.barrier()
            dist.destroy_process_group()
