"""The law's own optimal schedule: the LR curve that minimises a fit's predicted final loss.

Luo et al. (2025) optimise a free-form schedule under their law and find a WSD-like shape (a
stable phase, then a decay over a fraction of the run) that beats cosine. Here the curve after
warmup is a piecewise-linear function through ``knots`` points, denser towards the end where the
optimum bends, and L-BFGS-B follows the analytic gradient of the final loss by every step's LR
(:mod:`hf_lrlaw.laws.gradients`; finite differences in knot space for other laws). The result is
an ordinary :class:`~hf_lrlaw.Schedule` of kind ``piecewise`` that trains through ``to_torch``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from hf_lrlaw.files import json_ready
from hf_lrlaw.fit_result import Fit, FitError
from hf_lrlaw.laws import carries_peak_lr
from hf_lrlaw.laws.gradients import final_loss_gradient, has_gradient
from hf_lrlaw.ranking import Ranked, Ranking, final_draws, rank
from hf_lrlaw.schedules import Schedule, ScheduleError, span, warmup_ramp
from hf_lrlaw.schedules.labels import schedule_label

__all__ = [
    "Optimum",
    "default_candidates",
    "family",
    "family_leaders",
    "knot_positions",
    "optimize",
    "shape_text",
]

KNOTS = 48
MAX_DECAY = 40.0  # bound of each knot's log-decrement: exp(-40) is an LR of zero here
SCALE = 1e3  # the objective in millinats
MIN_RATIO = 1e-3  # the lowest LR searched, relative to the peak (see optimize's docstring)
PLAUSIBLE_GAIN = 0.005  # a larger predicted gain over the best grid schedule raises the floor
MAX_FLOOR = 0.1  # ... up to this share of the peak
IDLE_SHARE = 0.05  # an optimum this long at its floor gets a note
RATIO_DIGITS = 5  # significant digits the saved knots keep (the schedule is the rounded one)
RATIO_DECIMALS = 7  # ... and decimals: a ratio below 5e-8 of the peak is saved as zero


@dataclass(frozen=True)
class Optimum:
    """The law's optimal schedule, its predicted final loss with an interval, and the best
    schedule of an ordinary grid for comparison (``baseline``; ``gain`` = its predicted loss
    minus the optimum's, ``prob_better`` = the share of joint parameter draws in which the
    optimum's final loss is lower)."""

    schedule: Schedule
    predicted: float
    low: float
    high: float
    level: float
    baseline: Ranked | None
    # the best grid schedule of each family (cosine, WSD-linear, ...), best first
    grid: list[Ranked]
    gain: float
    prob_better: float
    converged: bool
    message: str
    evaluations: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    idle: float = 0.0  # the share of steps after warmup at the floor LR (IDLE_SHARE: a note)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``schedule`` is the text :meth:`Schedule.parse` reads back exactly."""
        base = self.baseline
        return json_ready(
            {
                "schedule": str(self.schedule),
                "predicted": self.predicted,
                "low": self.low,
                "high": self.high,
                "level": self.level,
                "baseline": None
                if base is None
                else {
                    "schedule": str(base.schedule),
                    "predicted": base.predicted,
                    "low": base.low,
                    "high": base.high,
                },
                "grid": [
                    {
                        "schedule": str(r.schedule),
                        "predicted": r.predicted,
                        "gain": r.predicted - self.predicted,
                    }
                    for r in self.grid
                ],
                "gain": self.gain,
                "prob_better": self.prob_better,
                "converged": self.converged,
                "message": self.message,
                "evaluations": self.evaluations,
                "seconds": self.seconds,
                "notes": list(self.notes),
                "idle": self.idle,
            }
        )

    def summary(self) -> str:
        pct = f"{self.level:.0%}"
        lines = [
            f"optimum: {schedule_label(self.schedule)}: {shape_text(self.schedule)}",
            f"  predicted final loss {self.predicted:.4f} ({pct} interval "
            f"[{self.low:.4f}, {self.high:.4f}]); {self.evaluations} evaluations, "
            f"{self.seconds:.2f} s{'' if self.converged else ' (NOT converged: ' + self.message + ')'}",
        ]
        if self.baseline is not None:
            lines.append(
                f"best grid schedule: {schedule_label(self.baseline.schedule)}\n  predicted {self.baseline.predicted:.4f}; "
                f"the optimum is {self.gain:+.4f} lower (P(lower) = {self.prob_better:.2f})"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def shape_text(schedule: Schedule) -> str:
    """Where a decaying schedule leaves its peak and passes 50% and 10% of it, in shares of the
    run (``stable to 76% of the run, 50% of the peak at 84%, 10% at 96%, ends at 0.1%``)."""
    rel = schedule.lrs() / schedule.peak_lr
    after = np.arange(len(rel)) >= schedule.warmup_steps
    total = len(rel)

    def first_below(level: float) -> str | None:
        hit = np.flatnonzero(after & (rel < level))
        return f"{hit[0] / total:.0%}" if len(hit) else None

    parts = [f"stable to {first_below(0.99) or '100%'} of the run"]
    parts += [f"{int(v * 100)}% of the peak at {at}" for v in (0.5, 0.1) if (at := first_below(v))]
    return ", ".join(parts) + f", ends at {rel[-1]:.2g} of the peak"


def knot_positions(knots: int = KNOTS) -> np.ndarray:
    """Knot fractions of the steps after warmup, from 0 to 1, spaced quadratically closer
    towards the end (the last knot gap is ~1/knots**2 of the run): the optimum is flat for most
    of the run and bends in its decay."""
    if isinstance(knots, bool) or not isinstance(knots, (int, np.integer)) or knots < 3:
        raise FitError(f"knots must be a whole number >= 3, got {knots!r}")
    u = np.linspace(0.0, 1.0, int(knots))
    at = np.array([float(f"{v:.6g}") for v in 1.0 - (1.0 - u) ** 2])
    at[0], at[-1] = 0.0, 1.0
    return at


class _Curve:
    """The LRs of every step from the knots' free parameters ``z``: warmup fixed, the first knot
    at the peak, then ``floor + (1 - floor) * exp(-cumsum(z))`` (monotone, ``z >= 0``) or
    ``floor + (1 - floor) * z`` (``0 <= z <= 1``); plus the chain rule back from d/d(LRs)."""

    def __init__(self, at, total, warmup, shape, start_ratio, floor, monotone):
        self.at, self.floor, self.monotone = at, floor, monotone
        self.warm = warmup_ramp(np.arange(warmup), warmup, shape, start_ratio)
        progress = np.arange(total - warmup) / max(1, total - 1 - warmup)
        self.left = np.clip(np.searchsorted(at, progress, side="right") - 1, 0, len(at) - 2)
        self.weight = (progress - at[self.left]) / (at[self.left + 1] - at[self.left])
        self.n = len(at)

    def ratios(self, z: np.ndarray) -> np.ndarray:
        head = np.exp(-np.cumsum(z)) if self.monotone else z
        return np.concatenate([[1.0], self.floor + (1.0 - self.floor) * head])

    def relative(self, z: np.ndarray) -> np.ndarray:
        r = self.ratios(z)
        body = r[self.left] * (1.0 - self.weight) + r[self.left + 1] * self.weight
        return np.concatenate([self.warm, body])

    def chain(self, z: np.ndarray, grad_rel: np.ndarray) -> np.ndarray:
        g = grad_rel[len(self.warm) :]
        g_r = np.bincount(self.left, g * (1.0 - self.weight), minlength=self.n)
        g_r += np.bincount(self.left + 1, g * self.weight, minlength=self.n)
        g_r = g_r[1:]  # the first knot is fixed at the peak
        if not self.monotone:
            return (1.0 - self.floor) * g_r
        excess = (1.0 - self.floor) * np.exp(-np.cumsum(z))  # r_j - floor
        return -np.cumsum((g_r * excess)[::-1])[::-1]  # z_i moves every r_j, j >= i

    def start(self, decay_fraction: float) -> np.ndarray:
        """Free parameters of a linear decay to the floor over the last ``decay_fraction``."""
        target = np.clip((1.0 - self.at[1:]) / decay_fraction, 0.0, 1.0)
        if not self.monotone:
            return target
        excess = np.maximum(target, np.exp(-MAX_DECAY / 2))
        q = -np.diff(np.log(np.concatenate([[1.0], excess])))
        return np.clip(q, 0.0, MAX_DECAY)


def optimize(
    fit: Fit,
    *,
    total_steps: int | None = None,
    peak_lr: float | tuple[float, float] | None = None,
    warmup_steps: int | None = None,
    warmup_shape: str = "linear",
    warmup_start_ratio: float = 0.0,
    final_lr: float | None = None,
    monotone: bool = True,
    knots: int = KNOTS,
    candidates: Sequence[Schedule] | None = None,
    level: float = 0.9,
    n_samples: int = 400,
) -> Optimum:
    """The schedule that minimises ``fit``'s predicted final loss over ``total_steps``.

    The warmup (``warmup_steps`` of ``warmup_shape``) is kept, the LR after it starts at the
    peak and never falls below ``final_lr`` (default and lowest: 0.1% of the peak; below it the
    laws' predictions are singular: multi-power's ``eta**-gamma`` with a fitted gamma > 1
    credits a drop to almost zero at once); ``monotone`` keeps it non-increasing. ``peak_lr``
    is the peak (default: the fitted run's); a ``(low, high)`` range is searched too where the
    law carries the peak LR (``law="lrnoise"``), else the law cannot tell and ``high`` is used.
    Length, peak and warmup default to the fitted run's. ``candidates`` (default: WSD of three
    decay shapes x 12 decay fractions, cosine and linear, all to ``final_lr``) are ranked for
    the comparison. Where the optimum beats the best of them by more than ``PLAUSIBLE_GAIN``
    (0.5%: free-form shapes gain < 0.05% on the public curves), the law is exploited near an LR
    of zero, not describing training: unless ``final_lr`` was given, the floor is raised ten-fold
    (up to 10% of the peak) with a note. Seconds for 24k steps.
    """
    t0 = time.perf_counter()
    run = fit.run_defaults() or fit.shared_run_values()
    total = _given(total_steps, run, "total_steps")
    warmup = int(warmup_steps if warmup_steps is not None else run.get("warmup_steps", 0))
    notes: list[str] = []
    low_peak, high_peak = _peak_range(peak_lr, run)
    search_peak = high_peak > low_peak and carries_peak_lr(fit.law)
    if high_peak > low_peak and not search_peak:
        notes.append(
            f"the {fit.law} law does not model the peak LR (more LR area is always lower loss "
            f"in it): the top of the range, {high_peak:.3g}, is used; fit law='lrnoise' on runs "
            "of several peak LRs to choose it"
        )
    floor_check = Schedule.constant(high_peak, total, warmup_steps=warmup)  # validates T, W
    floor = MIN_RATIO * high_peak if final_lr is None else float(final_lr)
    if not 0.0 <= floor < low_peak:
        raise FitError(f"final_lr must be in [0, peak_lr) = [0, {low_peak:.3g}), got {final_lr!r}")
    if floor < MIN_RATIO * high_peak:
        notes.append(
            f"final_lr={floor:.3g} is below {MIN_RATIO:.1%} of the peak LR, the lowest LR searched "
            "(the laws are singular near an LR of zero)"
        )
        floor = MIN_RATIO * high_peak
    if total - warmup < 3:
        raise FitError(f"{floor_check}: too few steps after warmup to shape a schedule")
    at = knot_positions(knots)
    problem = (fit, at, total, warmup, warmup_shape, warmup_start_ratio, bool(monotone),
               search_peak, low_peak, high_peak)  # fmt: skip
    evaluations = 0
    while True:
        schedule, best, n = _solve(*problem, floor / high_peak)
        evaluations += n
        mean, low, high = fit.predict_final([schedule], level=level)
        grid = list(candidates) if candidates is not None else default_candidates(schedule, floor)
        baseline, gain, prob, by_family = None, float("nan"), float("nan"), []
        if grid:
            ranking = rank(fit, grid, level=level, n_samples=n_samples, noise=False)
            baseline = ranking.best
            by_family = family_leaders(ranking)
            _, _, _, draws = final_draws(fit, [schedule, baseline.schedule], level, n_samples)
            gain = float(baseline.predicted - mean[0])
            prob = float(np.mean(draws[:, 0] < draws[:, 1]))
        implausible = baseline is not None and gain > PLAUSIBLE_GAIN * baseline.predicted
        if not implausible or final_lr is not None or floor >= MAX_FLOOR * high_peak:
            break
        notes.append(_implausible_note(fit, gain, gain / baseline.predicted, floor / high_peak))
        floor *= 10.0
    idle = _idle_share(schedule, floor)
    if idle >= IDLE_SHARE:
        notes.append(
            f"the optimum spends {idle:.0%} of the steps after warmup at its floor LR: the "
            f"{fit.law} law credits training there that real runs rarely show (the momentum "
            "law's S2 keeps growing after a drop); judge the shape with the multipower law"
        )
    return Optimum(
        schedule=schedule,
        predicted=float(mean[0]),
        low=float(low[0]),
        high=float(high[0]),
        level=level,
        baseline=baseline,
        grid=by_family,
        gain=gain,
        prob_better=prob,
        converged=bool(best.success),
        message=str(best.message),
        evaluations=evaluations,
        seconds=time.perf_counter() - t0,
        notes=notes,
        idle=idle,
    )


def _solve(fit, at, total, warmup, shape, start_ratio, monotone, search_peak, low_peak, high_peak,
           floor_ratio):  # fmt: skip
    """L-BFGS-B from three starts (linear decays over 20%, 50%, 5% of the run): the rounded best
    schedule, the optimiser's result for it, and the evaluations used."""
    curve = _Curve(at, total, warmup, shape, start_ratio, floor_ratio, monotone)
    objective = _objective(fit.law_object, fit.theta, curve, search_peak, low_peak, high_peak)
    bounds = [(0.0, MAX_DECAY if monotone else 1.0)] * (len(at) - 1)
    if search_peak:
        bounds.append((np.log(low_peak), np.log(high_peak)))
    best, evaluations = None, 0
    for fraction in (0.2, 0.5, 0.05):
        x0 = curve.start(fraction)
        if search_peak:
            x0 = np.r_[x0, 0.5 * (np.log(low_peak) + np.log(high_peak))]
        f0 = objective(x0)[0]
        if not np.isfinite(f0):
            continue

        def gain(x, f0=f0):  # millinats below the start: L-BFGS-B's tolerances are then absolute
            f, g = objective(x)
            return SCALE * (f - f0), SCALE * g

        res = minimize(gain, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 5000, "ftol": 1e-12, "gtol": 1e-9})  # fmt: skip
        evaluations += int(res.nfev)
        res.fun = res.fun / SCALE + f0
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise FitError(f"the {fit.law} law gives no final loss for any schedule tried")
    peak = float(f"{np.exp(best.x[-1]):.4g}") if search_peak else high_peak
    schedule = _rounded(curve, best.x[: len(at) - 1], at, peak, total, warmup, shape, start_ratio)
    return schedule, best, evaluations


def _implausible_note(fit: Fit, gain: float, relative: float, floor_ratio: float) -> str:
    why = "the fit credits a late drop to a tiny LR almost at once"
    names = [p.name for p in fit.law_object.params]
    if "gamma" in names and (gamma := float(fit.theta[names.index("gamma")])) > 1:
        why += f" (gamma = {gamma:.2f} > 1: its eta**-gamma grows without bound near LR 0)"
    return (
        f"with a floor of {floor_ratio:.1%} of the peak LR the optimum beat the best grid "
        f"schedule by {gain:.4f} ({relative:.1%}), more than a free-form shape plausibly gains "
        f"(<= {PLAUSIBLE_GAIN:.1%}; < 0.05% on the public curves): {why}; the floor was "
        f"raised to {10 * floor_ratio:.1%} (pass final_lr= to choose it)"
    )


def _idle_share(schedule: Schedule, floor: float) -> float:
    """The share of the steps after warmup at (within 1% of) the floor LR."""
    body = schedule.lrs()[schedule.warmup_steps :]
    return float(np.mean(body <= floor * 1.01 + 1e-300 * schedule.peak_lr))


def family(schedule: Schedule) -> str:
    """A schedule's kind and decay shape (``wsd 1-sqrt``): what the grid's best is kept per."""
    shape = schedule.param("decay_shape") if schedule.kind == "wsd" else None
    return f"{schedule.kind} {shape}" if shape else schedule.kind


def family_leaders(ranking: Ranking) -> list[Ranked]:
    """The best-ranked valid candidate of each :func:`family`, best first: the top of a ranking
    is often one family's near-duplicates."""
    seen: dict[str, Ranked] = {}
    for row in ranking:
        if row.valid:
            seen.setdefault(family(row.schedule), row)
    return list(seen.values())


def default_candidates(like: Schedule, final_lr: float = 0.0) -> list[Schedule]:
    """The grid an optimum is compared with: WSD (linear, cosine, 1-sqrt decay) over 12 decay
    fractions from 5% to 60%, cosine and linear, at ``like``'s peak, length and warmup."""
    common = {
        "peak_lr": like.peak_lr,
        "total_steps": like.total_steps,
        "warmup_steps": like.warmup_steps,
        "warmup_shape": like.warmup_shape,
        "warmup_start_ratio": like.warmup_start_ratio,
    }
    ratio = final_lr / like.peak_lr
    out = []
    for kind, extra in [("cosine", {}), ("linear", {})] + [
        ("wsd", {"decay_fraction": f, "decay_shape": shape})
        for shape in ("linear", "cosine", "1-sqrt")
        for f in span(0.05, 0.6, 12)
    ]:
        try:
            out.append(Schedule.make(kind, **common, final_ratio=ratio, **extra))
        except ScheduleError:  # a decay longer than the steps after warmup
            continue
    return out


def _given(value: int | None, run: dict[str, Any], name: str) -> int:
    if value is not None:
        return int(value)
    if name not in run:
        raise FitError(
            f"{name} is needed: the fitted runs do not share one to default to (pass {name}=...)"
        )
    return int(run[name])


def _peak_range(peak_lr: Any, run: dict[str, Any]) -> tuple[float, float]:
    if peak_lr is None:
        if "peak_lr" not in run:
            raise FitError("peak_lr is needed: the fitted runs do not share one (pass peak_lr=...)")
        return float(run["peak_lr"]), float(run["peak_lr"])
    if isinstance(peak_lr, (tuple, list)):
        if len(peak_lr) != 2:
            raise FitError(f"a peak_lr range is (low, high), got {peak_lr!r}")
        low, high = (float(v) for v in peak_lr)
    else:
        low = high = float(peak_lr)
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise FitError(f"peak_lr must be > 0 (a range: 0 < low <= high), got {peak_lr!r}")
    return low, high


def _objective(law, theta, curve: _Curve, search_peak: bool, low_peak: float, high_peak: float):
    """``z -> (final loss, gradient)`` for L-BFGS-B: analytic where the law has it, else
    forward differences in knot space (all perturbed curves scored as one block)."""
    n = curve.n - 1

    def split(x):
        return x[:n], (float(np.exp(x[-1])) if search_peak else high_peak)

    if has_gradient(law):

        def value_and_grad(x):
            z, peak = split(x)
            rel = curve.relative(z)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                loss, g = final_loss_gradient(law, theta, peak * rel)
            if not np.isfinite(loss) or not np.all(np.isfinite(g)):
                return np.inf, np.zeros_like(x)
            grad = curve.chain(z, peak * g)
            if search_peak:
                grad = np.r_[grad, peak * float(g @ rel)]  # d/d log(peak)
            return loss, grad

        return value_and_grad

    def by_differences(x):
        step = 1e-6 * np.maximum(1.0, np.abs(x))
        xs = np.vstack([x, x + np.diag(step)])
        rows = []
        for xi in xs:
            z, peak = split(xi)
            rows.append(peak * curve.relative(z))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            losses = law.predict(theta, law.prepare_final(np.stack(rows)))
        if not np.all(np.isfinite(losses)):
            return np.inf, np.zeros_like(x)
        return float(losses[0]), (losses[1:] - losses[0]) / step

    return by_differences


def _rounded(curve, z, at, peak, total, warmup, shape, start_ratio) -> Schedule:
    """The optimum as a schedule of knots rounded for text (the schedule *is* the rounded one):
    monotone stays monotone, and no ratio falls below the floor."""
    ratios = curve.ratios(z)
    kept = np.array([round(float(f"{r:.{RATIO_DIGITS}g}"), RATIO_DECIMALS) for r in ratios])
    kept = np.clip(kept, curve.floor, 1.0)
    kept[0] = 1.0
    if curve.monotone:
        kept = np.minimum.accumulate(kept)
    return Schedule.piecewise(
        peak,
        total,
        at=at.tolist(),
        ratios=kept.tolist(),
        warmup_steps=warmup,
        warmup_shape=shape,
        warmup_start_ratio=start_ratio,
    )
