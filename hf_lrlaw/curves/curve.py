"""LossCurve: the per-step learning rates of a run and its observed (step, loss) points.

Step convention (as in the multi-power-law data): ``lrs[i]`` is the learning rate of the
optimizer update with index ``i`` (0-based), and the loss observed at step ``s`` depends on
``lrs[:s + 1]``, i.e. it is the loss after updates ``0..s``. The laws therefore use
``cumsum(lrs)[s]`` as the area under the LR curve at step ``s``.

A loss may be a window mean rather than a point value (the transformers Trainer logs the mean
train loss since the previous log): ``windows[j]`` is the number of consecutive steps ending at
``steps[j]`` that ``losses[j]`` averages (1 for a point value such as an eval loss).

Loaders are in the sibling modules (:mod:`hf_lrlaw.curves`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CurveError", "LossCurve"]


class CurveError(ValueError):
    """A loss curve or its file cannot be used; the message names the problem."""

    __module__ = "hf_lrlaw"  # raised from submodules, public at the top level


@dataclass(frozen=True, eq=False)
class LossCurve:
    """Per-step learning rates from step 0 and the observed losses at some steps.

    Args:
        lrs: learning rate of every optimizer update from index 0; at least ``steps[-1] + 1`` long
            (longer is fine: the rest is the planned schedule, not yet observed).
        steps: strictly increasing step indices at which a loss was observed.
        losses: the observed losses; non-finite or non-positive values are dropped with a warning.
        name: a label for tables and plots.
        windows: optional number of steps each loss averages (ending at its step); 1 = point value.
        meta: free-form facts about the run (model size, data set, schedule text, ...).
    """

    lrs: np.ndarray
    steps: np.ndarray
    losses: np.ndarray
    name: str = ""
    windows: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        label = f"curve {self.name!r}" if self.name else "curve"
        lrs = _float_array(self.lrs, f"{label}: lrs")
        steps_raw = np.asarray(self.steps)
        losses = _float_array(self.losses, f"{label}: losses", allow_nonfinite=True)
        if steps_raw.ndim != 1 or losses.ndim != 1 or lrs.ndim != 1:
            raise CurveError(f"{label}: lrs, steps and losses must be one-dimensional")
        if len(steps_raw) != len(losses):
            raise CurveError(
                f"{label}: {len(steps_raw)} steps but {len(losses)} losses; they must pair up"
            )
        if len(steps_raw) and not np.all(np.isfinite(steps_raw.astype(float))):
            raise CurveError(f"{label}: steps must be finite integers")
        steps = steps_raw.astype(np.int64)
        if len(steps) and np.any(steps != steps_raw):
            raise CurveError(f"{label}: steps must be whole numbers")
        windows = None
        if self.windows is not None:
            windows = np.asarray(self.windows, dtype=np.int64)
            if windows.shape != steps.shape:
                raise CurveError(f"{label}: windows must have one entry per step")
            if np.any(windows < 1):
                raise CurveError(f"{label}: windows must be >= 1 (the steps a loss averages)")
            if len(steps) and np.any(steps - windows + 1 < 0):
                raise CurveError(f"{label}: a window reaches before step 0")

        if len(steps) and np.any(steps < 0):
            raise CurveError(f"{label}: steps must be >= 0 (step 0 is the first update)")
        if len(steps) > 1 and np.any(np.diff(steps) <= 0):
            bad = int(np.argmax(np.diff(steps) <= 0))
            kind = "duplicate" if steps[bad + 1] == steps[bad] else "unsorted"
            raise CurveError(
                f"{label}: {kind} steps at positions {bad}/{bad + 1} "
                f"({steps[bad]}, {steps[bad + 1]}); steps must be strictly increasing"
            )
        if np.any(~np.isfinite(lrs)):
            raise CurveError(f"{label}: the learning rates contain NaN or inf")
        if np.any(lrs < 0):
            raise CurveError(f"{label}: negative learning rate at step {int(np.argmax(lrs < 0))}")
        if len(steps) and steps[-1] >= len(lrs):
            raise CurveError(
                f"{label}: a loss is observed at step {int(steps[-1])} but the LR is known only "
                f"for steps 0..{len(lrs) - 1}; give the per-step LR up to the last observed step"
            )
        if len(lrs) and not np.any(lrs > 0):
            raise CurveError(f"{label}: every learning rate is zero; the laws need some training")

        bad = ~np.isfinite(losses) | (losses <= 0)
        if np.any(bad):
            warnings.warn(
                f"{label}: dropped {int(bad.sum())} non-finite or non-positive loss(es) "
                f"at step(s) {steps[bad][:5].tolist()}{'...' if bad.sum() > 5 else ''}",
                stacklevel=3,
            )
            steps, losses = steps[~bad], losses[~bad]
            windows = None if windows is None else windows[~bad]

        lrs.setflags(write=False)
        steps.setflags(write=False)
        losses.setflags(write=False)
        if windows is not None:
            windows.setflags(write=False)
        object.__setattr__(self, "lrs", lrs)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "windows", windows)
        object.__setattr__(self, "meta", dict(self.meta))

    # -- views ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        span = f"steps {self.steps[0]}..{self.steps[-1]}" if len(self) else "no points"
        return f"LossCurve(name={self.name!r}, {len(self)} points, {span}, {len(self.lrs)} LRs)"

    @property
    def last_step(self) -> int:
        """The last observed step (-1 when nothing is observed yet)."""
        return int(self.steps[-1]) if len(self) else -1

    @property
    def final_loss(self) -> float:
        """The loss at the last observed step."""
        if not len(self):
            raise CurveError(f"curve {self.name!r} has no observed loss")
        return float(self.losses[-1])

    @property
    def point_windows(self) -> np.ndarray:
        """Window lengths, 1 where the losses are point values."""
        return self.windows if self.windows is not None else np.ones(len(self), dtype=np.int64)

    def observed_lrs(self) -> np.ndarray:
        """The LRs of the steps up to the last observed one (what the data can tell about)."""
        return self.lrs[: self.last_step + 1]

    def head(self, until: int | float) -> LossCurve:
        """The curve as it was at step ``until`` (int) or at that fraction of its LR array (float).

        The LR array is kept whole: it is the schedule the run will follow, which the callback
        knows in advance; only the observed points are cut.
        """
        if isinstance(until, float):
            if not 0 < until <= 1:
                raise CurveError("a fraction for head() must be in (0, 1]")
            until = int(round(until * len(self.lrs))) - 1
        return self.select(self.steps <= until)

    def tail(self, since: int) -> LossCurve:
        """The curve without its points before step ``since``; the LR array is kept whole.

        For leaving out the initial transient (e.g. a small model's plateau before it learns
        more than unigram statistics), which no annealing law describes.
        """
        keep = self.steps >= int(since)
        if not np.any(keep):
            raise CurveError(
                f"curve {self.name!r} has no points at step {int(since)} or later "
                f"(its last is at step {self.last_step})"
            )
        return self.select(keep)

    def trained(self) -> LossCurve:
        """The curve without the points measured before any training at a non-zero LR (a
        point whose window starts before the first update with LR > 0: e.g. the loss at step 0
        of a warmup from LR 0, which every ``logging_steps=1`` Trainer log has). The laws
        describe a model being trained; such a loss is the untrained model's."""
        if not len(self):
            return self
        start = np.maximum(self.steps - self.point_windows + 1, 0)
        return self.select(np.cumsum(self.lrs)[start] > 0)

    def select(self, keep: np.ndarray) -> LossCurve:
        """The curve with only the observed points where ``keep`` is true (the LRs whole)."""
        return self.replace(
            steps=self.steps[keep],
            losses=self.losses[keep],
            windows=None if self.windows is None else self.windows[keep],
        )

    def replace(self, **changes: Any) -> LossCurve:
        """A copy with some fields changed (validated again)."""
        values = {
            "lrs": self.lrs,
            "steps": self.steps,
            "losses": self.losses,
            "name": self.name,
            "windows": self.windows,
            "meta": self.meta,
        }
        values.update(changes)
        return LossCurve(**values)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (LRs stored at every step)."""
        out: dict[str, Any] = {
            "name": self.name,
            "lrs": self.lrs.tolist(),
            "steps": self.steps.tolist(),
            "losses": self.losses.tolist(),
            "meta": dict(self.meta),
        }
        if self.windows is not None:
            out["windows"] = self.windows.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossCurve:
        """Inverse of :meth:`to_dict`."""
        missing = {"lrs", "steps", "losses"} - set(data)
        if missing:
            raise CurveError(
                f"a loss curve needs the keys lrs, steps, losses; missing {sorted(missing)}"
            )
        return cls(
            lrs=np.asarray(data["lrs"], dtype=np.float64),
            steps=np.asarray(data["steps"]),
            losses=np.asarray(data["losses"], dtype=np.float64),
            name=str(data.get("name", "")),
            windows=None if data.get("windows") is None else np.asarray(data["windows"]),
            meta=dict(data.get("meta") or {}),
        )


def _float_array(values: Any, what: str, allow_nonfinite: bool = False) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CurveError(f"{what} must be numbers ({exc})") from None
    if not allow_nonfinite and arr.size and not np.all(np.isfinite(arr)):
        raise CurveError(f"{what} contain NaN or inf")
    return arr
