"""The peak LR chosen with the schedule: the optimal peak LR of a schedule family at a horizon,
with an interval, the best (peak LR, schedule) pair, and how the optimum moves with the horizon
(the "Time Transfer" curve of Filatov et al. 2024).

They need a fit of a law whose parameters hold across peak LRs (``law="lrnoise"``, fitted on
runs of several peak LRs); a law fitted at one peak LR says nothing about another (more LR area
is always lower loss in it), and is refused with a message saying so. Horizons are in optimizer
steps: the bundled data has no batch-size sweep, so the batch size is taken as the fitted runs'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_lrlaw.fit_result import Fit, FitError
from hf_lrlaw.laws import carries_peak_lr
from hf_lrlaw.ranking import final_draws
from hf_lrlaw.schedules import Schedule

__all__ = ["PeakLR", "optimal_peak_lr", "optimal_schedule", "time_transfer"]

GRID_POINTS = 61


@dataclass(frozen=True)
class PeakLR:
    """The optimal peak LR of one schedule family at one horizon.

    ``schedule`` is the family at that optimum; ``low``/``high`` bound the optimal LR at the
    ``level`` (from joint draws of the fit's parameters); ``loss`` is the predicted final loss
    there with ``loss_low``/``loss_high``. ``at_edge`` says the optimum lies at an end of the
    searched range (then it is no interior optimum: widen ``peak_lrs``). ``grid`` and
    ``predicted`` are the predicted final loss at every searched peak LR."""

    schedule: Schedule
    total_steps: int
    peak_lr: float
    low: float
    high: float
    loss: float
    loss_low: float
    loss_high: float
    level: float
    at_edge: bool
    grid: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "schedule": str(self.schedule),
            "total_steps": self.total_steps,
            "peak_lr": self.peak_lr,
            "low": self.low,
            "high": self.high,
            "loss": self.loss,
            "loss_low": self.loss_low,
            "loss_high": self.loss_high,
            "level": self.level,
            "at_edge": self.at_edge,
        }


def optimal_peak_lr(
    fit: Fit,
    schedule: Schedule | str,
    *,
    total_steps: int | None = None,
    peak_lrs: Sequence[float] | None = None,
    level: float = 0.9,
    n_samples: int = 200,
    seed: int = 0,
) -> PeakLR:
    """The peak LR that minimises the predicted final loss of ``schedule``'s family (its shape,
    warmup and horizon, or ``total_steps``), searched on ``peak_lrs`` (default: 61 values,
    log-spaced from a tenth of the lowest fitted peak LR to three times the highest), refined
    between grid points. The interval is the spread of the optimum over ``n_samples`` joint
    draws of the fit's parameters."""
    _check(fit)
    if not 0 < level < 1:
        raise FitError(f"level must be in (0, 1), got {level}")
    base = _family(fit, schedule, total_steps)
    grid = np.sort(np.asarray(peak_lrs if peak_lrs is not None else _default_grid(fit), float))
    if len(grid) < 3 or np.any(grid <= 0):
        raise FitError("peak_lrs needs at least 3 positive learning rates")
    family = [base.scaled(float(lr)) for lr in grid]
    # the optimum under joint draws of the parameters: its spread is the interval
    mean, _, _, draws = final_draws(fit, family, level, n_samples, seed)
    if not np.any(np.isfinite(mean)):
        raise FitError(f"no peak LR of the range has a prediction: {fit.no_prediction(family[0])}")
    k = int(np.nanargmin(mean))
    best_lr = _refine(grid, mean, k)
    optima = np.array([_refine(grid, d, int(np.argmin(d))) for d in draws])
    q = (1 - level) / 2
    lo_lr, hi_lr = np.exp(np.quantile(np.log(optima), [q, 1 - q]))
    best = base.scaled(best_lr)
    m, lo, hi = fit.predict_final([best], level=level)
    return PeakLR(
        schedule=best,
        total_steps=base.total_steps,
        peak_lr=best_lr,
        low=float(min(lo_lr, best_lr)),
        high=float(max(hi_lr, best_lr)),
        loss=float(m[0]),
        loss_low=float(lo[0]),
        loss_high=float(hi[0]),
        level=level,
        at_edge=k in (0, len(grid) - 1),
        grid=grid,
        predicted=mean,
    )


def optimal_schedule(
    fit: Fit, families: Sequence[Schedule | str], **kwargs: object
) -> list[PeakLR]:
    """Every schedule family at its own optimal peak LR (:func:`optimal_peak_lr`), best first:
    the first is the optimal (peak LR, schedule) pair."""
    found = [optimal_peak_lr(fit, s, **kwargs) for s in families]  # type: ignore[arg-type]
    return sorted(found, key=lambda r: r.loss)


def time_transfer(
    fit: Fit,
    schedule: Schedule | str,
    horizons: Sequence[int],
    *,
    tokens_per_step: int | None = None,
    **kwargs: object,
) -> list[PeakLR]:
    """The optimal peak LR of ``schedule``'s family at each horizon: how the optimum moves with
    the training budget. Horizons are optimizer steps, or tokens with ``tokens_per_step`` (the
    fitted runs' batch size x sequence length). The law is fitted in steps at one batch size: a
    budget in tokens is spent at that batch size; how the optimum moves with the batch size is
    not modelled."""
    if tokens_per_step is not None:
        if int(tokens_per_step) < 1:
            raise ValueError(f"tokens_per_step must be >= 1, got {tokens_per_step!r}")
        horizons = [max(1, round(int(h) / int(tokens_per_step))) for h in horizons]
    return [optimal_peak_lr(fit, schedule, total_steps=int(h), **kwargs) for h in horizons]  # type: ignore[arg-type]


def _check(fit: Fit) -> None:
    peaks = sorted({round(float(c["peak_lr"]), 12) for c in fit.curves if c.get("peak_lr")})
    if not carries_peak_lr(fit.law):
        raise FitError(
            f"the {fit.law} law does not model the peak LR (in it more LR area is always lower "
            "loss, so its optimum is the largest LR searched): fit law='lrnoise' on runs of "
            "several peak LRs"
        )
    if len(peaks) < 2:
        raise FitError(
            f"the fit saw one peak LR ({peaks[0] if peaks else '?'}): the dependence of the loss "
            "on the peak LR is not identified; fit runs of two or more peak LRs"
        )


def _family(fit: Fit, schedule: Schedule | str, total_steps: int | None) -> Schedule:
    """The schedule family as a Schedule: text (``"wsd(decay_fraction=0.2)"`` or a bare kind)
    may leave out the peak LR (it is searched), and the horizon and warmup where the fitted runs
    share them."""
    if isinstance(schedule, str):
        text = schedule if "(" in schedule else f"{schedule.strip()}()"
        defaults = {**fit.shared_run_values(), "peak_lr": 1e-3}
        if total_steps is not None:
            defaults["total_steps"] = int(total_steps)
        if "warmup_steps" not in defaults and "warmup_steps" not in text:
            raise FitError(
                "the fitted runs differ in warmup: give warmup_steps in the schedule "
                f"{schedule!r} (the optimal peak LR depends on it)"
            )
        schedule = Schedule.parse(text, defaults=defaults)
    if total_steps is not None and schedule.total_steps != total_steps:
        schedule = schedule.with_total_steps(int(total_steps))
    return schedule


def _default_grid(fit: Fit) -> np.ndarray:
    peaks = [float(c["peak_lr"]) for c in fit.curves if c.get("peak_lr")]
    return np.geomspace(min(peaks) / 10, max(peaks) * 3, GRID_POINTS)


def _refine(grid: np.ndarray, values: np.ndarray, k: int) -> float:
    """The minimum of a parabola through the grid minimum and its neighbours, in log LR."""
    if k <= 0 or k >= len(grid) - 1 or not np.all(np.isfinite(values[k - 1 : k + 2])):
        return float(grid[k])
    x = np.log(grid[k - 1 : k + 2])
    a, b, _ = np.polyfit(x, values[k - 1 : k + 2], 2)
    if a <= 0:
        return float(grid[k])
    return float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))
