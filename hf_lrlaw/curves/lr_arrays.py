"""Per-step LR arrays of loaded curves: from a schedule given by the user, checked against the
logged LRs, or interpolated between them."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from hf_lrlaw.curves.curve import CurveError
from hf_lrlaw.schedules import Schedule

__all__ = ["LR_CHECK_RTOL", "check_lrs", "interpolate", "schedule_lrs"]

#: A ``schedule=`` whose LRs differ from the logged ones by more than this (relative) warns.
LR_CHECK_RTOL = 1e-3


def schedule_lrs(schedule: Any, cid: str, label: str) -> np.ndarray:
    """Per-step LRs from a Schedule, its text, an array, or a mapping curve id -> those."""
    if isinstance(schedule, Mapping):
        if cid not in schedule:
            raise CurveError(f"{label}: schedule= has no entry for this curve")
        schedule = schedule[cid]
    if isinstance(schedule, str):
        try:
            schedule = Schedule.parse(schedule)
        except ValueError as exc:
            raise CurveError(f"{label}: cannot read the schedule {schedule!r}: {exc}") from None
    method = getattr(schedule, "lrs", None)
    values = method() if callable(method) else schedule
    try:
        lrs = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CurveError(
            f"{label}: schedule= must be a Schedule, its text or per-step LRs, "
            f"not {type(schedule).__name__}"
        ) from None
    if lrs.ndim != 1 or not len(lrs):
        raise CurveError(f"{label}: the schedule gives no per-step learning rates")
    return lrs


def check_lrs(lrs: np.ndarray, steps: np.ndarray, values: np.ndarray, label: str) -> None:
    """Warn where a schedule's per-step LRs disagree with logged ones."""
    inside = steps < len(lrs)
    if not np.all(inside):
        warnings.warn(
            f"{label}: LRs are logged up to step {int(steps[-1])}, past the schedule's "
            f"{len(lrs)} steps",
            stacklevel=4,
        )
    steps, values = steps[inside], values[inside]
    if not len(steps):
        return
    mine = lrs[steps]
    scale = np.maximum(np.abs(mine), np.abs(values))
    deviation = np.divide(np.abs(mine - values), scale, out=np.zeros_like(scale), where=scale > 0)
    worst = int(np.argmax(deviation))
    if deviation[worst] > LR_CHECK_RTOL:
        warnings.warn(
            f"{label}: the schedule's LR at step {int(steps[worst])} is {mine[worst]:.6g}, the "
            f"logged one {values[worst]:.6g} ({deviation[worst]:.1%} apart); is it the run's "
            "schedule, and are its steps aligned?",
            stacklevel=4,
        )


def interpolate(steps: np.ndarray, values: np.ndarray, length: int, method: str) -> np.ndarray:
    """LR at every step 0..length-1 from logged (step, LR); held constant outside the logs."""
    grid = np.arange(length)
    if method == "linear":
        return np.interp(grid, steps, values)
    index = np.searchsorted(steps, grid, side="right") - 1
    return values[np.clip(index, 0, None)]
