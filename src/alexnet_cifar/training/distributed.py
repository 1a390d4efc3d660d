"""Several processes under torchrun: DistributedDataParallel, nccl on CUDA and gloo on CPU.

    torchrun --nproc_per_node=2 -m alexnet_cifar train --batch-size 64   # global batch 128

Each rank trains on its own slice of every global batch (batch_size x world_size images of the
epoch's shared permutation); DDP averages the gradients, so a step equals one process's step on
the global batch. Metrics are summed over ranks; only rank 0 prints and writes files. Without
torchrun's environment nothing here is used and training is single-process as before.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UsageError
from .ranks import DistInfo, from_environment

__all__ = ["DistInfo", "from_environment"]


def init(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group (once); on CUDA each rank takes the GPU of its local rank."""
    if not info.enabled:
        return device
    if device.type == "mps":
        raise UsageError("torchrun on mps: torch.distributed has no MPS backend; run one process, or use --device cpu")
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        dist.barrier()  # creating the group is not a sync point: no rank may race ahead of a peer's connect
    return device


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce(tensor: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
    """In place over all ranks; nothing to do in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=op)
    return tensor


def any_rank_each(flags: torch.Tensor) -> list[bool]:
    """Each flag true on every rank when it is true on any (one all-reduce, one host sync): ranks
    must agree to stop, or to give up on a non-finite loss, at the same batch."""
    return [bool(f) for f in all_reduce(flags, dist.ReduceOp.MAX).tolist()]


def max_each(values: torch.Tensor) -> list[float]:
    """Each value's maximum over ranks (one all-reduce): the slowest rank's timings, for a plan all share."""
    return [float(v) for v in all_reduce(values.float(), dist.ReduceOp.MAX).tolist()]


def least(value: int, device: torch.device) -> int:
    """The smallest of each rank's `value` (one all-reduce): a count every rank must share."""
    return int(all_reduce(torch.tensor([value], dtype=torch.int64, device=device), dist.ReduceOp.MIN).item())


def weights_agree(model: nn.Module, device: torch.device) -> bool:
    """Whether every rank holds the same weights (min and max of a checksum over ranks)."""
    total = sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(model.parameters()))
    low, high = total.clone().reshape(1).to(device), total.clone().reshape(1).to(device)
    all_reduce(low, dist.ReduceOp.MIN)
    all_reduce(high, dist.ReduceOp.MAX)
    return bool(low.item() == high.item())


def shutdown(clean: bool = True) -> None:
    """Leave the group. After a clean finish the ranks first meet at a barrier, so none closes its
    connections while a peer still works (rank 0 saving files): gloo can abort a process whose peer
    hangs up early. After an error a peer may never arrive, so then each rank just leaves."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()
