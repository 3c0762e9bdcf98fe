"""An audit over several processes and machines, on torch.distributed as detectron2's own evaluation runs.

``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT] -m d2debug audit ...`` starts one process
per GPU (or N on a CPU machine); each joins the process group from torchrun's environment (``env://``): gloo
on the CPU, nccl on GPUs with each rank on ``cuda:LOCAL_RANK``. The audit needs few collectives, all on
Python objects, so they run on a gloo group (nccl moves only CUDA tensors): which images are done (all
gather), the records rank 0 merges (gather), the run's id (broadcast). Progress goes through
torch.distributed's key-value store (the one torchrun's rendezvous made): one counter every rank adds to
as it finishes an image, which rank 0 reads without waiting for the others.

:class:`Ranks` with its defaults is one process alone; every method is then a no-op on one value.
"""
from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..errors import D2DebugError

__all__ = ["Ranks", "SharedError", "launched_by_torchrun", "start_ranks"]

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Collectives wait at most this long: each rank reaches them right after the same cheap step (the long wait
# for the slowest rank is a poll on the store, which has no deadline).
_TIMEOUT = _dt.timedelta(minutes=30)


class SharedError(D2DebugError):
    """An error every rank of a sharded audit raised alike (one rank's, shared so that none goes on alone):
    rank 0 says it, the others only exit. ``rank``: the rank raising this copy."""

    def __init__(self, message: str, rank: int = 0):
        super().__init__(message)
        self.rank = rank


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting its ``env://`` variables)."""
    return all(k in os.environ for k in _TORCHRUN_ENV)


@dataclass
class Ranks:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its machine. ``group``:
    the gloo process group of the object collectives; ``store``: torch.distributed's key-value store
    (``None`` for one process alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    group: Any = None
    store: Any = None
    _local: dict = field(default_factory=dict, repr=False)  # the counters of one process alone

    @property
    def sharded(self) -> bool:
        return self.store is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.sharded:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def gather(self, obj) -> Optional[list]:
        """Every rank's ``obj`` in rank order on rank 0; ``None`` on the others."""
        if not self.sharded:
            return [obj]
        import torch.distributed as dist

        out: Optional[list] = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.sharded:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def agree(self, step: Callable, undo: Optional[Callable] = None):
        """``step()`` on every rank; when it raised :class:`D2DebugError` on any, every rank raises the same
        :class:`SharedError` (rank 0 reports it), so no rank goes on alone; ``undo(value)`` first where the
        step succeeded. One process alone: ``step()``."""
        if not self.sharded:
            return step()
        try:
            value, error = step(), None
        except D2DebugError as exc:
            value, error = None, str(exc)
        errors = [e for e in self.all_gather(error) if e is not None]
        if errors:
            if error is None and undo is not None:
                undo(value)
            raise SharedError(errors[0], self.rank)
        return value

    def barrier(self) -> None:
        if self.sharded:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def count(self, key: str, add: int = 0) -> int:
        """Add ``add`` to the job-wide counter ``key`` and return its value (this process's own count alone)."""
        if not self.sharded:
            self._local[key] = self._local.get(key, 0) + add
            return self._local[key]
        return int(self.store.add(f"d2debug/{key}", add))

    def wait_for(self, key: str, value: int, tick: Optional[Callable[[], None]] = None, every: float = 0.5) -> None:
        """Poll the counter ``key`` until it reaches ``value``, calling ``tick()`` between polls (progress)."""
        while self.count(key) < value:
            if tick is not None:
                tick()
            time.sleep(every)


def start_ranks(device: Optional[str] = None) -> Ranks:
    """Join torchrun's process group when launched by it (else one process alone): nccl when this machine has
    GPUs and ``device`` is not ``cpu`` (this process's GPU becomes ``cuda:LOCAL_RANK``), gloo otherwise.
    Raises :class:`D2DebugError` when there are fewer GPUs than processes on the machine."""
    if not launched_by_torchrun():
        return Ranks()
    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    gpus = torch.cuda.device_count() if device != "cpu" and torch.cuda.is_available() else 0
    if device == "cuda" and not gpus:
        raise D2DebugError("--device cuda: no CUDA GPU on this machine")
    if gpus and local >= gpus:
        raise D2DebugError(f"LOCAL_RANK {local}: this machine has {gpus} GPU(s); start at most {gpus} processes "
                           "per machine (--nproc-per-node), or pass --device cpu")
    if gpus:
        torch.cuda.set_device(local)
    backend = "nccl" if gpus else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=_TIMEOUT)
    group = dist.new_group(backend="gloo", timeout=_TIMEOUT) if backend == "nccl" else dist.group.WORLD
    return Ranks(rank, world, local, backend, group, distributed_c10d._get_default_store())
