"""Grids of schedules: evenly spaced values rounded for people, and the cartesian product of a
kind's parameter values as Schedules (what ``lrlaw rank --space`` and ``ScheduleSpace`` build)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hf_lrlaw.schedules.kinds import ScheduleError
from hf_lrlaw.schedules.schedule import Schedule

__all__ = ["INT_PARAMS", "Grid", "human_round", "schedule_grid", "span"]

#: Parameters that count steps (or cycles): grid values for them are whole numbers.
INT_PARAMS = frozenset({"total_steps", "warmup_steps", "timescale", "cycles", "rewarmup_steps"})
SIGNIFICANT_DIGITS = 4


def human_round(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0.433333... -> 0.4333)."""
    return float(f"{float(value):.{digits}g}")


def span(
    low: float, high: float, n: int, *, log: bool = False, integer: bool = False
) -> tuple[Any, ...]:
    """``n`` evenly spaced values from ``low`` to ``high``, ends included (geometric with
    ``log=True``), rounded to 4 significant digits (whole numbers with ``integer=True``), each
    value once. The rounded values print as people write them and parse back exactly."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ScheduleError(f"a span needs n >= 1 values, got {n!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ScheduleError(f"a span needs finite ends, got {low!r}, {high!r}")
    if log and (low <= 0 or high <= 0):
        raise ScheduleError(f"a log span needs positive ends, got {low!r}, {high!r}")
    values = np.geomspace(low, high, int(n)) if log else np.linspace(low, high, int(n))
    rounded = [int(round(v)) if integer else human_round(v) for v in values]
    return tuple(dict.fromkeys(rounded))


@dataclass
class Grid:
    """The schedules of a grid, in order and each once, and the combinations that are not valid
    schedules: ``(description, reason)``."""

    schedules: list[Schedule] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: Grid) -> None:
        seen = set(self.schedules)
        self.schedules += [s for s in other.schedules if s not in seen]
        self.skipped += other.skipped


def schedule_grid(
    kind: str,
    values: Mapping[str, Sequence[Any]],
    common: Mapping[str, Any] | None = None,
    *,
    max_size: int | None = None,
) -> Grid:
    """Every schedule of ``kind`` over the cartesian product of ``values`` (parameter -> the
    values it takes; the last parameter varies fastest), each with the fixed ``common`` fields
    (``peak_lr``, ``total_steps``, ``warmup_steps``, ``warmup_shape``, ...) unless ``values``
    lists them. Invalid combinations are skipped and reported in :attr:`Grid.skipped`; equal
    schedules appear once. ``max_size`` refuses grids of more combinations than that."""
    names = list(values)
    choices = [list(values[n]) for n in names]
    for name, options in zip(names, choices):
        if not options:
            raise ScheduleError(f"{kind} {name}: an empty list of values gives no schedule")
    total = math.prod(len(c) for c in choices)
    if max_size is not None and total > max_size:
        raise ScheduleError(f"{total} combinations; at most {max_size}")
    out: dict[Schedule, None] = {}
    skipped: list[tuple[str, str]] = []
    fixed = dict(common or {})
    for combo in itertools.product(*choices):
        params = dict(zip(names, combo))
        try:
            out.setdefault(Schedule.make(kind, **{**fixed, **params}), None)
        except ScheduleError as exc:
            label = ", ".join(f"{k}={v!r}" for k, v in params.items())
            where = ", ".join(f"{k}={v!r}" for k, v in fixed.items() if k not in params)
            skipped.append((f"{kind}({label})" + (f" at {where}" if where else ""), str(exc)))
    return Grid(list(out), skipped)
