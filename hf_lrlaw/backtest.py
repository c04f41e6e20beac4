"""Backtest early predictions on finished runs: fit each run's first part, predict its end.

How a team checks that a law (and a prior) holds for its own recipe before trusting it on a live
run: every finished run is cut to its first 25% / 50% (its whole LR schedule stays known, as the
callback knows it), fitted alone, and its final loss predicted with an interval.
``bench/bench_early.py`` runs the same on the bundled public curves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fitting import FitError, fit

__all__ = ["BacktestRow", "BacktestSummary", "backtest", "summarize"]


@dataclass(frozen=True)
class BacktestRow:
    """One run cut at ``seen`` (a fraction of its steps): the prediction of its final loss."""

    curve: str
    seen: float
    last_fitted_step: int
    final_step: int
    actual: float
    predicted: float | None = None
    low: float | None = None
    high: float | None = None
    failure: str | None = None  # why no prediction: too few points, a fit that failed

    @property
    def error(self) -> float | None:
        """Signed relative error of the predicted final loss."""
        return None if self.predicted is None else (self.predicted - self.actual) / self.actual

    @property
    def inside(self) -> bool | None:
        if self.low is None or self.high is None:
            return None
        return self.low <= self.actual <= self.high


@dataclass(frozen=True)
class BacktestSummary:
    """All runs cut at one fraction: mean and worst |error|, interval coverage, failures."""

    seen: float
    runs: int
    failed: int
    mean_abs_error: float | None
    worst_abs_error: float | None
    coverage: float | None


def backtest(
    curves: LossCurve | Iterable[LossCurve],
    fractions: Sequence[float] = (0.25, 0.5),
    law: str = "momentum",
    *,
    level: float = 0.9,
    **fit_kwargs: Any,
) -> list[BacktestRow]:
    """Fit each curve's first ``fraction`` of steps alone (``hf_lrlaw.fit(head, law,
    **fit_kwargs)``, e.g. ``prior="default"``) and predict its last logged loss.

    A prefix that cannot be fitted (too few points, a failed fit) gives a row with ``failure``
    set instead of stopping the backtest.
    """
    curves = [curves] if isinstance(curves, LossCurve) else list(curves)
    bad = [f for f in fractions if not 0 < f < 1]
    if bad:
        raise ValueError(f"backtest fractions must be in (0, 1), got {bad}")
    rows = []
    for c in curves:
        if not len(c):
            continue
        final_step, actual = int(c.last_step), float(c.losses[-1])
        for frac in fractions:
            head = c.head(float(frac))
            base = dict(
                curve=c.name,
                seen=float(frac),
                final_step=final_step,
                actual=actual,
                last_fitted_step=int(head.last_step) if len(head) else -1,
            )
            if not len(head):
                rows.append(BacktestRow(**base, failure=f"no logged point in its first {frac:.2%}"))
                continue
            if head.last_step >= final_step:
                rows.append(BacktestRow(**base, failure="the cut keeps the last point"))
                continue
            try:
                f = fit(head, law, **fit_kwargs)
            except FitError as exc:
                rows.append(BacktestRow(**base, failure=str(exc)))
                continue
            m, lo, hi = f.predict_interval(c.lrs, [final_step], level=level)
            rows.append(
                BacktestRow(**base, predicted=float(m[0]), low=float(lo[0]), high=float(hi[0]))
            )
    return rows


def summarize(rows: Sequence[BacktestRow]) -> list[BacktestSummary]:
    """One summary per fraction, in the order the fractions first appear."""
    out = []
    for seen in dict.fromkeys(r.seen for r in rows):
        group = [r for r in rows if r.seen == seen]
        errors = np.abs([r.error for r in group if r.error is not None])
        inside = [r.inside for r in group if r.inside is not None]
        out.append(
            BacktestSummary(
                seen=seen,
                runs=len(group),
                failed=sum(r.failure is not None for r in group),
                mean_abs_error=float(errors.mean()) if len(errors) else None,
                worst_abs_error=float(errors.max()) if len(errors) else None,
                coverage=float(np.mean(inside)) if inside else None,
            )
        )
    return out
