"""The planned schedule: the LR the Trainer's scheduler will give at every step, read without
stepping (or otherwise touching) the scheduler."""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any

import numpy as np

__all__ = ["planned_lrs"]


def planned_lrs(scheduler: Any, optimizer: Any, max_steps: int) -> tuple[np.ndarray, str]:
    """The LR of parameter group 0 at every scheduler step ``0..max_steps-1``, and how it was
    found, without stepping (or otherwise touching) ``scheduler``.

    * ``LambdaLR`` (every transformers scheduler, and :meth:`Schedule.to_torch`):
      ``base_lr * lr_lambda(i)``, the scheduler's own arithmetic, for every step.
    * ``ReduceLROnPlateau`` and other metric-driven schedulers: the current LR held (the plan
      is not knowable in advance).
    * Any other ``LRScheduler``: a copy of it, attached to a one-parameter stand-in optimizer
      with the same parameter groups, stepped to ``max_steps``; steps before the scheduler's
      current one are NaN (unknown).
    """
    from torch.optim.lr_scheduler import LambdaLR

    max_steps = int(max_steps)
    out = np.full(max_steps, np.nan)
    if max_steps <= 0:
        return out, "no steps"
    groups = getattr(optimizer, "param_groups", None) or getattr(
        getattr(scheduler, "optimizer", None), "param_groups", None
    )
    current = float(groups[0]["lr"]) if groups else float("nan")
    if scheduler is None:
        out[:] = current
        return out, "no scheduler: constant LR"
    name = type(scheduler).__name__
    if isinstance(scheduler, LambdaLR) and type(scheduler).get_lr is LambdaLR.get_lr:
        base, lam = float(scheduler.base_lrs[0]), scheduler.lr_lambdas[0]
        out[:] = np.fromiter((base * lam(i) for i in range(max_steps)), np.float64, max_steps)
        return out, f"{name} ({_lambda_name(lam)})"
    if name in ("ReduceLROnPlateau", "GreedyLR") or not hasattr(scheduler, "last_epoch"):
        out[:] = current
        return out, f"{name} (metric-driven: the plan holds the current LR)"
    start = max(0, int(scheduler.last_epoch))
    if start < max_steps:
        out[start] = current
        with contextlib.suppress(Exception):
            _step_copy(scheduler, out, start)
    return out, f"{name} (stepped on a copy)"


def _lambda_name(lam: Any) -> str:
    func = getattr(lam, "func", lam)  # functools.partial
    return getattr(func, "__qualname__", type(func).__name__)


def _step_copy(scheduler: Any, out: np.ndarray, start: int) -> None:
    """Fill ``out[start + 1:]`` by stepping a copy of ``scheduler`` on a stand-in optimizer."""
    import torch

    real = scheduler.optimizer
    stand_in = torch.optim.SGD(
        [
            {**{k: v for k, v in g.items() if k != "params"}, "params": [torch.zeros(1)]}
            for g in real.param_groups
        ],
        lr=float(real.param_groups[0]["lr"]),
    )
    memo: dict[int, Any] = {id(real): stand_in}
    inner = getattr(real, "optimizer", None)  # accelerate's AcceleratedOptimizer wraps one
    if inner is not None:
        memo[id(inner)] = stand_in
    clone = copy.deepcopy(scheduler, memo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(start + 1, len(out)):
            try:
                clone.step()
            except Exception:  # e.g. OneCycleLR past its total_steps: hold the last LR
                out[j:] = out[j - 1]
                return
            out[j] = float(stand_in.param_groups[0]["lr"])
