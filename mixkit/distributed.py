"""Distributed helpers: every rank relabels with the same density.

Under ``torch.distributed`` each rank mixes its own batch (mixing stays local: give
each rank its own stream, e.g. ``seed=rank_seed(base_seed)``), but all ranks must
relabel with one and the same density, or the ranks would train on inconsistent
targets. Two ways keep them equal:

* streaming statistics are all-reduced: :class:`mixkit.densities.online.OnlineGaussian`
  sums each batch's per-class counts, sums and sums of squares over the ranks
  (:func:`all_reduce_sum`) *before* applying them, so in EMA mode too every rank
  applies the identical update to an identical state;
* a density fitted on one rank (e.g. on the full training set, or on frozen
  features) is sent to the others with :func:`broadcast_density`.

:func:`close_process_group` ends a run the same way on every rank (a barrier, then
``destroy_process_group``), so that the job exits cleanly every time.

Every function is a no-op when ``torch.distributed`` is not available, not
initialized, or has a single rank. Collectives run on the CPU for the gloo
backend and on the current CUDA device for NCCL; tensors come back on the
device they came from.
"""

from __future__ import annotations

import gc
import hashlib
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "all_reduce_sum",
    "broadcast_density",
    "close_process_group",
    "density_checksum",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "rank_seed",
    "same_on_all_ranks",
]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialized with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank_seed(seed: int, rank: int | None = None) -> int:
    """A per-rank seed derived from ``seed``, so that ranks mix with different streams."""
    rank = get_rank() if rank is None else rank
    digest = hashlib.blake2b(repr(("mixkit-rank", int(seed), int(rank))).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


def _comm_device() -> torch.device:
    """Where collectives run: the current CUDA device for NCCL, the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Sum each tensor over all ranks (one packed collective); returns new tensors.

    The tensors are packed into one flat buffer of their common dtype, so a step costs
    one ``all_reduce`` however many statistics there are. Without a process group
    the inputs are returned unchanged.
    """
    if not is_distributed():
        return tensors
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    device = _comm_device()
    flat = torch.cat([t.detach().reshape(-1).to(device, dtype) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].reshape(t.shape).to(t.device, t.dtype))
        start += t.numel()
    return tuple(out)


def broadcast_density(density: nn.Module, src: int = 0) -> nn.Module:
    """Make every rank's ``density`` a copy of rank ``src``'s; returns ``density``.

    Rank ``src`` sends its ``state_dict``: the non-tensor entries (the density's
    extra state: shapes, options, fitted flag) and the tensors' shapes and dtypes go
    through ``broadcast_object_list``, then each tensor through ``broadcast``. The
    other ranks may hold a fresh, unfitted instance built with the same constructor
    arguments; they load the state with ``load_state_dict`` (which creates the
    fitted buffers) and keep their own device. Works for any :class:`mixkit.Density`
    and, in fact, any module whose state round-trips through ``load_state_dict``.
    """
    if not is_distributed():
        return density
    rank = dist.get_rank()
    device = _comm_device()
    if rank == src:
        state = density.state_dict()
        meta = {
            key: ("tensor", tuple(v.shape), str(v.dtype).removeprefix("torch."))
            if torch.is_tensor(v) else ("object", v)
            for key, v in state.items()
        }
    else:
        state, meta = None, None
    box: list[Any] = [meta]
    dist.broadcast_object_list(box, src=src)
    meta = box[0]
    received: dict[str, Any] = {}
    for key, entry in meta.items():  # the same order on every rank: the sender's
        if entry[0] == "object":
            received[key] = entry[1]
            continue
        shape, dtype = entry[1], getattr(torch, entry[2])
        wire_dtype = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool
        if rank == src:
            buf = state[key].detach().to(device, wire_dtype).contiguous()
        else:
            buf = torch.empty(shape, dtype=wire_dtype, device=device)
        dist.broadcast(buf, src=src)
        received[key] = buf.to(dtype)
    if rank != src:
        target = next((b.device for b in density.buffers()), None)
        if target is None:
            target = next((p.device for p in density.parameters()), torch.device("cpu"))
        density.load_state_dict({k: v.to(target) if torch.is_tensor(v) else v
                                 for k, v in received.items()})
    return density


def density_checksum(density: nn.Module | Tensor) -> float:
    """A float summarising every tensor of ``density.state_dict()`` (for logs and checks).

    Equal densities give equal checksums; it is a sum of position-weighted values in
    float64, not a cryptographic hash. A tensor (e.g. a batch of relabels) is summarised
    the same way.
    """
    state = {"tensor": density} if torch.is_tensor(density) else density.state_dict()
    total = 0.0
    for i, (_key, value) in enumerate(sorted(state.items())):
        if torch.is_tensor(value) and value.numel():
            v = value.detach().double().reshape(-1).cpu()
            weights = torch.arange(1, v.numel() + 1, dtype=torch.float64).remainder_(97).add_(1)
            total += (i + 1) * float((v * weights).sum())
    return total


def same_on_all_ranks(value: Tensor | float) -> bool:
    """True when ``value`` (a tensor or a number) is bitwise equal on every rank.

    A collective: call it on every rank. Always true when not distributed.
    """
    if not is_distributed():
        return True
    t = torch.as_tensor(value).detach().double().reshape(-1).to(_comm_device())
    gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, t)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def close_process_group(barrier: bool = True) -> None:
    """End this rank's part of the job cleanly: collect garbage, barrier, destroy the group.

    Destroying the group while another rank is still inside a collective, or leaving the
    group (or a ``DistributedDataParallel`` reducer that holds it, often in a reference
    cycle) to interpreter teardown, can abort a rank at exit ("terminate called without
    an active exception") after correct results. Call it on every rank after the last
    collective; ``barrier=False`` on an error path, where the other ranks may never
    arrive. A no-op without an initialized process group.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()  # objects that hold the group go now, not during interpreter teardown
    try:
        if barrier and dist.get_world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()
