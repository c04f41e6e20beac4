"""A Schedule as a ``torch.optim.lr_scheduler.LambdaLR`` (torch is imported only when used)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ScheduleLambda", "lambda_lr"]


class ScheduleLambda:
    """Picklable ``LambdaLR`` multiplier from a table; its state (a float64 tensor) loads with
    ``torch.load(weights_only=True)``, as the Trainer does when resuming."""

    def __init__(self, factors: np.ndarray) -> None:
        import torch

        self.factors = torch.as_tensor(np.asarray(factors, dtype=np.float64))

    def __call__(self, step: int) -> float:
        index = min(max(int(step), 0), len(self.factors) - 1)
        return float(self.factors[index])


def lambda_lr(
    optimizer: torch.optim.Optimizer,
    factors: np.ndarray,
    peak_lr: float,
    last_epoch: int = -1,
    *,
    set_lr: bool = True,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` whose multiplier at step i is ``factors[i]`` (the last one beyond the
    table); ``set_lr`` first sets every param group's base LR to ``peak_lr``."""
    from torch.optim.lr_scheduler import LambdaLR

    if set_lr:
        for group in optimizer.param_groups:
            group["lr"] = peak_lr
            if last_epoch != -1 or "initial_lr" in group:
                group["initial_lr"] = peak_lr
    return LambdaLR(optimizer, ScheduleLambda(factors), last_epoch=last_epoch)
