"""Rank candidate schedules by the final loss a fitted law predicts for them.

Predictions of different schedules share the law's parameters, so their errors are strongly
correlated: whether a candidate can still beat the leader is judged on the *difference* of the
two predictions, from joint samples of the parameters (plus each run's own scatter), not on
two separate intervals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from hf_lrlaw.fit_result import Fit, FitError
from hf_lrlaw.schedules import Schedule

__all__ = ["Ranked", "Ranking", "rank"]


@dataclass(frozen=True)
class Ranked:
    """One candidate: its predicted final loss with an interval, and its chance of being best."""

    rank: int
    schedule: Schedule
    predicted: float
    low: float
    high: float
    prob_best: float
    gap: float  # predicted - best predicted
    gap_high: float  # upper bound of (this - best) at the ranking's level; < 0 never happens

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "schedule": str(self.schedule),
            "predicted": self.predicted,
            "low": self.low,
            "high": self.high,
            "prob_best": self.prob_best,
            "gap": self.gap,
        }


@dataclass
class Ranking:
    """Candidates sorted by predicted final loss (best first)."""

    rows: list[Ranked]
    law: str
    level: float
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i: int) -> Ranked:
        return self.rows[i]

    @property
    def best(self) -> Ranked:
        return self.rows[0]

    def top(self, k: int) -> list[Ranked]:
        return self.rows[:k]

    def contenders(self, margin: float = 0.0) -> list[Ranked]:
        """Candidates the data cannot rule out: their gap to the leader could be <= ``margin``
        (relative) at the ranking's level. The leader is always one."""
        best = self.best.predicted
        lo_z = norm.ppf(0.5 + self.level / 2)
        out = []
        for r in self.rows:
            sd = (r.gap_high - r.gap) / lo_z if lo_z > 0 else 0.0
            if r.gap - lo_z * sd <= margin * best:
                out.append(r)
        return out

    def to_markdown(self, k: int = 10) -> str:
        pct = f"{self.level:.0%}"
        lines = [
            f"| rank | schedule | predicted final loss | {pct} interval | P(best) |",
            "|---:|---|---:|---|---:|",
        ]
        for r in self.rows[:k]:
            lines.append(
                f"| {r.rank} | `{r.schedule}` | {r.predicted:.4f} | "
                f"[{r.low:.4f}, {r.high:.4f}] | {r.prob_best:.2f} |"
            )
        return "\n".join(lines)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.rows[0].to_dict()) if self.rows else ["rank"])
        w.writeheader()
        for r in self.rows:
            w.writerow(r.to_dict())
        return buf.getvalue()

    def to_dicts(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rows]


def rank(
    fit: Fit,
    schedules: Sequence[Schedule | str],
    *,
    level: float = 0.9,
    n_samples: int = 400,
    seed: int = 0,
    noise: bool = True,
) -> Ranking:
    """Predict the final loss of every schedule and sort them, best first.

    ``prob_best`` is the fraction of joint draws (parameters from the fit's covariance, plus,
    with ``noise``, an independent run-to-run scatter per schedule) in which a schedule has the
    lowest final loss. ``noise=False`` compares the schedules' expected losses only (what a
    searcher asks when deciding whether any candidate can still beat the leader). Schedule
    text may leave out the fitted run's peak LR, length and warmup (:meth:`Fit.run_defaults`).
    """
    if not 0 < level < 1:
        raise FitError(f"level must be in (0, 1), got {level}")
    run = fit.run_defaults() if any(isinstance(s, str) for s in schedules) else None
    scheds = [Schedule.parse(s, defaults=run) if isinstance(s, str) else s for s in schedules]
    if not scheds:
        raise FitError("rank() needs at least one candidate schedule")
    mean, low, high = fit.predict_final(scheds, level=level)
    draws = _joint_draws(fit, scheds, n_samples, seed, noise)  # (samples, schedules)
    order = np.argsort(mean, kind="stable")
    best = order[0]
    winners = np.bincount(np.argmin(draws, axis=1), minlength=len(scheds)) / len(draws)
    diff = draws - draws[:, [best]]
    gap_high = np.quantile(diff, 0.5 + level / 2, axis=0)
    rows = [
        Ranked(
            rank=k + 1,
            schedule=scheds[i],
            predicted=float(mean[i]),
            low=float(low[i]),
            high=float(high[i]),
            prob_best=float(winners[i]),
            gap=float(mean[i] - mean[best]),
            gap_high=float(max(gap_high[i], mean[i] - mean[best])),
        )
        for k, i in enumerate(order)
    ]
    notes = list(fit.notes)
    return Ranking(rows, fit.law, level, notes)


def _joint_draws(
    fit: Fit, scheds: Sequence[Schedule], n: int, seed: int, noise: bool = True
) -> np.ndarray:
    """Final losses of every schedule under ``n`` joint draws of the parameters."""
    rng = np.random.default_rng(seed)
    law = fit.law_object
    x = np.where(fit.log_params, np.log(np.maximum(fit.theta, 1e-300)), fit.theta)
    # Rounding can leave the Laplace covariance with tiny negative eigenvalues: clip them.
    w, v = np.linalg.eigh(0.5 * (fit.cov + fit.cov.T))
    cov = (v * np.maximum(w, 0.0)) @ v.T
    xs = rng.multivariate_normal(x, cov, size=n, method="eigh", check_valid="ignore")
    lo = np.array([b[0] for b in fit.bounds])
    hi = np.array([b[1] for b in fit.bounds])
    thetas = np.clip(np.where(fit.log_params, np.exp(np.clip(xs, -700, 700)), xs), lo, hi)
    if not fit.annealing_identified:
        name = getattr(law, "annealing_param", None)
        if name:
            # Unknown annealing gain: draw it between none and the fitted value's box.
            k = [p.name for p in law.params].index(name)
            thetas[:, k] *= rng.uniform(0.0, 1.0, size=n)
    out = np.empty((n, len(scheds)))
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(scheds):
        by_len.setdefault(s.total_steps, []).append(i)
    for total, idx in by_len.items():
        prep = law.prepare_final(np.stack([scheds[i].lrs() for i in idx]))
        shift = fit.bias_factor(total - 1)
        for j in range(n):
            out[j, idx] = law.predict(thetas[j], prep) * shift
    if noise:
        out *= np.exp(rng.normal(0.0, fit.scatter, size=out.shape))
    return out
