"""A decision taken on world rank 0, made the same on every process (torch.distributed)."""

from __future__ import annotations

__all__ = ["broadcast_decision"]


def broadcast_decision(decision: bool, world_size: int) -> bool:
    """Rank 0's ``decision`` on every process of the default process group (a no-op with one
    process or no initialised group). Every rank must call it at the same point."""
    if world_size <= 1:
        return decision
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return decision
    backend = str(dist.get_backend())
    if "gloo" in backend or backend == "mpi":
        device = torch.device("cpu")
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    flag = torch.tensor([1 if decision else 0], dtype=torch.int32, device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())
