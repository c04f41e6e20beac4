"""Rank candidate schedules by the final loss a fitted law predicts for them.

Predictions of different schedules share the law's parameters, so their errors are strongly
correlated: whether a candidate can still beat the leader is judged on the *difference* of the
two predictions, from joint samples of the parameters (plus each run's own scatter), not on
two separate intervals.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from hf_lrlaw.files import json_ready
from hf_lrlaw.fit_result import Fit, FitError, final_preps
from hf_lrlaw.schedules import Schedule

__all__ = ["Ranked", "Ranking", "final_draws", "rank"]


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
    flag: str | None = (
        None  # why there is no prediction (NaN fields), or why it is an extrapolation
    )

    @property
    def valid(self) -> bool:
        """Whether the law gives this candidate a loss (its fields are numbers)."""
        return bool(np.isfinite(self.predicted))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready row: no prediction is ``None`` (with the ``flag`` saying why)."""
        return json_ready(
            {
                "rank": self.rank,
                "schedule": str(self.schedule),
                "predicted": self.predicted,
                "low": self.low,
                "high": self.high,
                "prob_best": self.prob_best,
                "gap": self.gap,
                "flag": self.flag,
            }
        )


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
            if not r.valid:
                continue
            sd = (r.gap_high - r.gap) / lo_z if lo_z > 0 else 0.0
            if r.gap - lo_z * sd <= margin * best:
                out.append(r)
        return out

    def to_markdown(self, k: int = 10) -> str:
        pct = f"{self.level:.0%}"
        shown = self.rows[:k]
        flags = any(r.flag for r in shown)
        lines = [
            f"| rank | schedule | predicted final loss | {pct} interval | P(best) |"
            + (" note |" if flags else ""),
            "|---:|---|---:|---|---:|" + ("---|" if flags else ""),
        ]
        for r in shown:
            cells = (
                f"| {r.rank} | `{r.schedule}` | {r.predicted:.4f} | [{r.low:.4f}, {r.high:.4f}] "
                f"| {r.prob_best:.2f} |"
                if r.valid
                else f"| {r.rank} | `{r.schedule}` | - | - | 0.00 |"
            )
            lines.append(cells + (f" {r.flag or ''} |" if flags else ""))
        return "\n".join(lines)

    def to_csv(self) -> str:
        """Every row as CSV (an empty cell where a candidate has no prediction)."""
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
    offset: Sequence[float] | np.ndarray | None = None,
) -> Ranking:
    """Predict the final loss of every schedule and sort them, best first.

    ``prob_best`` is the fraction of joint draws (parameters from the fit's covariance, plus,
    with ``noise``, an independent run-to-run scatter per schedule) in which a schedule has the
    lowest final loss. ``noise=False`` compares the schedules' expected losses only (what a
    searcher asks when deciding whether any candidate can still beat the leader). Schedule
    text may leave out the fitted run's peak LR, length and warmup (:meth:`Fit.run_defaults`).
    ``offset``: per schedule, an amount in loss added to its prediction and to every draw of it
    (e.g. what a second law predicts above this one: ``LRLawSearcher(second_law=...)``).
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise FitError(f"level must be a probability in (0, 1), e.g. 0.9; got {level!r}")
    if isinstance(schedules, (str, Schedule)):
        raise FitError("rank() takes a list of candidate schedules; wrap the one given in a list")
    run = fit.run_defaults() if any(isinstance(s, str) for s in schedules) else None
    scheds = [Schedule.parse(s, defaults=run) if isinstance(s, str) else s for s in schedules]
    if not scheds:
        raise FitError("rank() needs at least one candidate schedule")
    mean, low, high, draws = final_draws(fit, scheds, level, n_samples, seed, noise)
    if offset is not None:
        shift = np.asarray(offset, dtype=np.float64)
        if shift.shape != mean.shape or not np.isfinite(shift).all():
            raise FitError(
                f"offset must be one finite number per schedule ({len(scheds)}), "
                f"got {np.shape(offset)} values"
            )
        mean, low, high, draws = mean + shift, low + shift, high + shift, draws + shift
    valid = np.isfinite(mean) & np.isfinite(low) & np.isfinite(high)
    if not valid.any():
        raise FitError(f"no candidate has a prediction: {fit.no_prediction(scheds[0])}")
    draws[:, ~valid] = np.inf  # never the best
    order = np.r_[np.flatnonzero(valid)[np.argsort(mean[valid], kind="stable")],
                  np.flatnonzero(~valid)]  # fmt: skip
    best = order[0]
    winners = np.bincount(np.argmin(draws, axis=1), minlength=len(scheds)) / len(draws)
    with np.errstate(invalid="ignore"):
        diff = draws - draws[:, [best]]
    diff[~np.isfinite(diff)] = np.nan
    q = 0.5 + level / 2
    clean = ~np.isnan(diff).any(axis=0)
    gap_high = np.empty(len(scheds))
    gap_high[clean] = np.quantile(diff[:, clean], q, axis=0)  # one pass (nanquantile loops)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no prediction
        gap_high[~clean] = np.nanquantile(diff[:, ~clean], q, axis=0)
    flags = _flags(fit, scheds, valid)
    rows = [
        Ranked(
            rank=k + 1,
            schedule=scheds[i],
            predicted=float(mean[i]),
            low=float(low[i]),
            high=float(high[i]),
            prob_best=float(winners[i]),
            gap=float(mean[i] - mean[best]),
            gap_high=float(max(gap_high[i], mean[i] - mean[best])) if valid[i] else float("nan"),
            flag=flags[i],
        )
        for k, i in enumerate(order)
    ]
    notes = list(fit.notes)
    if not valid.all():
        notes.append(
            f"{int((~valid).sum())} candidate(s) have no prediction (out of the law's domain) "
            "and are ranked last; their note says why"
        )
    return Ranking(rows, fit.law, level, notes)


def _flags(fit: Fit, scheds: Sequence[Schedule], valid: np.ndarray) -> list[str | None]:
    """Per candidate: why it has no prediction, or why it is an extrapolation."""
    return [
        fit.extrapolation_note(s) if ok else (fit.no_prediction(s) or "no prediction")
        for s, ok in zip(scheds, valid)
    ]


def _joint_thetas(fit: Fit, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` joint draws of the fit's parameters (rows): its Laplace covariance in search space,
    clipped to the bounds; where the annealing gain is not identified, its coefficient drawn
    between none and the fitted value."""
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
            k = [p.name for p in law.params].index(name)
            thetas[:, k] *= rng.uniform(0.0, 1.0, size=n)
    return thetas


def final_draws(
    fit: Fit,
    scheds: Sequence[Schedule],
    level: float = 0.9,
    n: int = 400,
    seed: int = 0,
    noise: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, low and high final loss of every schedule, and its final loss under ``n`` joint
    draws of the parameters (plus, with ``noise``, a run-to-run scatter per schedule); one
    pass over the schedules in blocks of bounded size. A draw that is no loss is +inf."""
    rng = np.random.default_rng(seed)
    law = fit.law_object
    thetas = _joint_thetas(fit, n, rng)
    m = len(scheds)
    mean, low, high = np.empty(m), np.empty(m), np.empty(m)
    draws = np.empty((n, m))
    many = getattr(law, "predict_draws", None)
    for idx, prep, total, untrained in final_preps(law, scheds):
        mean[idx], low[idx], high[idx] = fit.final_interval(prep, (len(idx), total), level)
        shift = fit.bias_factor(total - 1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if many is not None:
                draws[:, idx] = many(thetas, prep) * shift
            else:
                for j in range(n):
                    draws[j, idx] = law.predict(thetas[j], prep) * shift
        mean[idx[untrained]] = low[idx[untrained]] = high[idx[untrained]] = np.nan
    if noise:
        draws *= np.exp(rng.normal(0.0, fit.scatter, size=draws.shape))
    draws[~(np.isfinite(draws) & (draws > 0))] = np.inf
    return mean, low, high, draws
