"""fit(): a law fitted to loss curves by robust multi-start L-BFGS-B, with its uncertainty.

The papers' objective (Huber on ``log(pred) - log(loss)``, see :mod:`hf_lrlaw._objective`),
several starts from a variable-projection grid (the laws are linear in their scale parameters),
a Laplace covariance inflated for the autocorrelation of residuals along a curve, and what the
data do not determine reported as notes and flags on the returned :class:`~hf_lrlaw.Fit`.
A ``prior=`` is resolved once, here (:class:`~hf_lrlaw.priors.PriorChoice`), and travels down.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hf_lrlaw._objective import (
    Objective,
    Space,
    goodness,
    laplace,
    minimise,
    noise,
    prepare,
    scatter,
)
from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fit_result import (
    ANNEAL_SEEN,
    MAX_ANNEAL_GAIN,
    SCHEMA,
    Fit,
    FitError,
    GoodnessOfFit,
    spans_peak_lrs,
)
from hf_lrlaw.laws import Law, LawError, available_laws, carries_peak_lr, get_law
from hf_lrlaw.laws.areas import warmup_end
from hf_lrlaw.priors import Prior, PriorChoice, PriorError, RunContext
from hf_lrlaw.threads import numpy_blas_single_thread

__all__ = [
    "ANNEAL_INFORMATIVE",
    "HUBER_DELTA",
    "MAX_POINTS",
    "PRIOR_NARROW_EARLY",
    "SCHEMA",
    "Fit",
    "FitError",
    "GoodnessOfFit",
    "fit",
]

HUBER_DELTA = 1e-3
MAX_POINTS = 512  # per curve; a longer log is fitted on means of consecutive points
POINT_BLOCK = 4096  # points evaluated at once when a fit is judged on every point
# Until the LR has decayed to half its peak, the data confound the annealing gain with the power
# law's curvature: a prior's std on the features of the annealing coefficient is narrowed 10x
# (chosen by the priors' in-source K-fold error; early-prediction error 2.16% -> 0.66% on
# lr-scheduling from 25%, bench/RESULTS.md).
ANNEAL_INFORMATIVE = 0.5
PRIOR_NARROW_EARLY = 0.1


def fit(
    curves: LossCurve | Iterable[LossCurve],
    law: str | Law = "auto",
    *,
    law_options: Mapping[str, Any] | None = None,
    prior: str | os.PathLike[str] | Prior | Fit | PriorChoice | None = None,
    calibration: str | Mapping[str, float] | None = "default",
    n_starts: int = 4,
    weights: str = "points",
    delta: float = HUBER_DELTA,
    min_step: int = 0,
    max_points: int | None = MAX_POINTS,
) -> Fit:
    """Fit ``law`` jointly to ``curves`` (shared parameters) and return a :class:`Fit`.

    Args:
        curves: one or more :class:`LossCurve` (all points up to each curve's last step).
        law: "momentum" (Tissue et al. 2024), "multipower" (Luo et al. 2025), "power" (no
            annealing term), "lrnoise" (parameters that hold across peak LRs: fit it on runs of
            several peak LRs to choose the LR), a Law object (the Fit predicts with that object;
            it can be saved only if its name builds the same law), or "auto": with two or more
            curves, the law with the lowest leave-one-curve-out error of the final loss (the laws
            that carry the peak LR compete when the curves differ in it); with one curve,
            "momentum".
        law_options: passed to the law (e.g. ``{"lam": 0.999, "warmup": "peak"}``).
        prior: None (maximum likelihood), "default" (learned on the bundled public curves),
            "default:<dataset>", a path to a prior or Fit JSON, a :class:`~hf_lrlaw.priors.Prior`,
            or the :class:`Fit` of an earlier run. With a prior the fit is the posterior mode
            and intervals include the prior's uncertainty (Laplace approximation).
        calibration: the law's own error when extrapolating past the last fitted step, added
            to prediction intervals: "default" (the prior's calibration, else the one shipped
            with the law's default prior, measured on the public curves), None (none), or
            ``{"extrapolation": kappa, "bias": b}``: per unit of log(step / last fitted step)
            past the fitted range, ``kappa`` is the law's log-sd and ``b`` its mean log error,
            which predictions undo (both measured by bench/build_priors.py on run prefixes).
        n_starts: L-BFGS-B starts, from a variable-projection grid.
        weights: "points" (every point counts once, as in the papers) or "curves" (every curve
            counts the same whatever its number of points).
        delta: the Huber threshold on ``log(pred) - log(loss)``.
        min_step: points before this step are not fitted (the initial transient, which the
            laws do not describe); the LRs before it still count. Curves with no point left
            are dropped. Points measured before any training at a non-zero LR (the loss at
            step 0 of a warmup from LR 0) are always left out, with a note.
        max_points: a curve with more points is fitted on the means of this many groups of
            consecutive points (exact for train-loss windows that meet), so that a fit's cost
            does not grow with the length of the log; goodness of fit and the scatter of the
            data are still measured on every point. None fits every point.
    """
    curves = _as_curves(curves)
    if isinstance(min_step, bool) or not isinstance(min_step, (int, np.integer)):
        raise FitError(f"min_step must be a whole number of steps, got {min_step!r}")
    if min_step < 0:
        raise FitError(f"min_step must be >= 0, got {min_step}")
    if min_step > 0:
        kept = [c.tail(min_step) for c in curves if c.last_step >= min_step]
        if not kept:
            raise FitError(f"no curve has a point at step {min_step} or later (min_step)")
        curves = kept
    curves, untrained = _trained(curves)
    if weights not in ("points", "curves"):
        raise FitError(f"weights must be 'points' or 'curves', got {weights!r}")
    _check_arguments(law, law_options, n_starts, delta, max_points)
    _check_calibration(calibration)
    try:
        choice = PriorChoice.resolve(prior)
    except PriorError as exc:
        raise FitError(str(exc)) from None
    options = dict(law_options or {})
    if law == "auto" and isinstance(prior, Fit):  # an earlier run's Fit names the law
        law, options = prior.law_object, dict(prior.law_options)
    settings = _Settings(choice, calibration, n_starts, weights, delta, max_points)
    # The fit's linear algebra is on tiny matrices: BLAS threads only add latency (4x slower
    # measured on 2 busy cores). Only numpy's and scipy's BLAS are limited, not torch's, which
    # may be training in another thread of this process.
    with numpy_blas_single_thread():
        if law == "auto":
            out = _fit_auto(curves, options, settings)
        else:
            out = _fit_one(curves, law, options, settings)
    peaks = [float(c.lrs.max()) for c in curves]
    if spans_peak_lrs(peaks) and not carries_peak_lr(out.law_object):
        out.notes.append(
            f"the curves span peak LRs {min(peaks):.3g}..{max(peaks):.3g}, which the {out.law} "
            "law does not model (in it more LR area is always lower loss): do not choose a peak "
            "LR with it; law='lrnoise' carries the LR across runs"
        )
    if untrained:
        out.notes.append(
            f"{untrained} point(s) measured before any training at a non-zero LR (e.g. the loss "
            "at step 0 of a warmup from LR 0) were left out: the laws describe a model in training"
        )
    return out


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What every fit of one ``fit()`` call shares: the resolved prior and the options."""

    prior: PriorChoice
    calibration: str | Mapping[str, float] | None
    n_starts: int
    weights: str
    delta: float
    max_points: int | None

    def without_calibration(self) -> _Settings:
        return dataclasses.replace(self, calibration=None)


def _as_curves(curves: LossCurve | Iterable[LossCurve]) -> list[LossCurve]:
    if isinstance(curves, LossCurve):
        return [curves]
    out = list(curves)
    for c in out:
        if not isinstance(c, LossCurve):
            raise FitError(f"fit() takes LossCurve objects, got {type(c).__name__}")
    if not out:
        raise FitError("fit() needs at least one loss curve")
    return out


def _trained(curves: list[LossCurve]) -> tuple[list[LossCurve], int]:
    """The curves without points measured before any training (:meth:`LossCurve.trained`),
    curves left with none dropped, and how many points were left out."""
    out, dropped = [], 0
    for c in curves:
        kept = c.trained()
        dropped += len(c) - len(kept)
        if len(kept) or not len(c):
            out.append(kept)
    if not out:
        raise FitError(
            "every loss point was measured before any training at a non-zero LR; the laws "
            "describe a model in training"
        )
    return out, dropped


def _check_arguments(
    law: Any, law_options: Any, n_starts: Any, delta: Any, max_points: Any
) -> None:
    if not isinstance(law, (str, Law)):
        raise FitError(
            f"law must be 'auto', one of {available_laws()} or a Law object, got {law!r}"
        )
    if law_options is not None and not isinstance(law_options, Mapping):
        raise FitError(f"law_options must be a dict of law options, got {law_options!r}")
    if isinstance(n_starts, bool) or not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise FitError(f"n_starts must be a whole number >= 1, got {n_starts!r}")
    if (
        isinstance(delta, bool)
        or not isinstance(delta, (int, float))
        or not math.isfinite(delta)
        or delta <= 0
    ):
        raise FitError(f"delta (the Huber threshold) must be a number > 0, got {delta!r}")
    if max_points is not None and (
        isinstance(max_points, bool)
        or not isinstance(max_points, (int, np.integer))
        or max_points < 8
    ):
        raise FitError(f"max_points must be None or a whole number >= 8, got {max_points!r}")


def _check_calibration(calibration: Any) -> None:
    if calibration is None or calibration == "default":
        return
    if isinstance(calibration, str) or not isinstance(calibration, Mapping):
        raise FitError(f"calibration must be 'default', None or a dict, got {calibration!r}")
    unknown = set(calibration) - {"extrapolation", "bias", "n"}
    if unknown:
        raise FitError(
            f"unknown calibration terms {sorted(unknown)}; known: extrapolation, bias, n"
        )
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in calibration.values()):
        raise FitError("calibration values must be finite numbers")
    if calibration.get("extrapolation", 0.0) < 0:
        raise FitError("calibration 'extrapolation' must be >= 0")


def _discrepancy(
    f: Fit, law: Law, prior: Prior | None, settings: _Settings
) -> dict[str, Any] | None:
    """The model-discrepancy terms a fresh Fit gets from ``calibration``."""
    if settings.calibration is None:
        return None
    if isinstance(settings.calibration, str):
        cal = settings.prior.calibration(law, prior)
        if cal is None:
            return None
    else:
        cal = settings.calibration
    return {
        "calibration": {k: float(v) for k, v in cal.items()},
        "last_step": max(int(c["last_step"]) for c in f.curves),
    }


def _fit_one(
    curves: list[LossCurve], law_name: str | Law, law_options: dict[str, Any], settings: _Settings
) -> Fit:
    t0 = time.perf_counter()
    try:
        law = get_law(law_name, **law_options)
        prior = settings.prior.for_law(law)
    except (LawError, PriorError) as exc:
        raise FitError(str(exc)) from None
    used = [c for c in curves if len(c)]
    names_seen = [c.name for c in used if c.name]
    if len(set(names_seen)) < len(names_seen):
        warnings.warn(
            "fit(): several curves share a name; reports and plots tell curves apart by name",
            stacklevel=3,
        )
    n_points = sum(len(c) for c in used)
    n_params = len(law.params)
    needed = n_params + 1 if prior is None else 3
    if n_points < needed:
        raise FitError(
            f"the {law.name} law has {n_params} parameters and needs at least {needed} "
            f"loss points{' with a prior' if prior else ''}; the curves hold {n_points}"
        )
    data = [prepare(law, c, settings.max_points) for c in used]
    if settings.weights == "points":
        point_w = [np.ones(len(d.y)) for d in data]
    else:
        mean_n = n_points / len(data)
        point_w = [np.full(len(d.y), mean_n / len(d.y)) for d in data]
    space = Space(
        law.params, min(float(d.y.min()) for d in data), max(float(d.y.max()) for d in data)
    )
    context = RunContext.of_curves(used)
    anneal_seen = max(float(np.max(law.anneal_signal(d.prep))) for d in data)
    if prior is not None and anneal_seen < ANNEAL_INFORMATIVE:
        prior = _narrow_annealing(prior, law)
    obj = Objective(law, data, space, settings.delta, point_w, prior, context)
    starts = law.initial_guesses(
        [d.point_prep for d in data], [d.y for d in data], settings.n_starts
    )
    if len(starts) == 0:
        raise FitError(f"could not find a starting point for the {law.name} law on these curves")
    x, fval, _ = minimise(obj, starts)
    if prior is not None:
        # Weigh the data by their own scatter (and its autocorrelation) against the prior,
        # then refit from the first answer.
        res, _ = obj.residuals(x)
        s2, rho = noise(obj, res, n_params)
        obj.data_weight = settings.delta**2 / max(s2 * (1 + rho) / (1 - rho), 1e-300)
        x, fval, _ = minimise(obj, np.vstack([space.to_theta(x), starts[:1]]))
    theta = space.to_theta(x)
    try:
        cov, _, rho, determined = laplace(obj, x)
    except np.linalg.LinAlgError as exc:
        cov = np.full((n_params, n_params), np.nan)
        reason = str(exc)
    else:
        reason = "it overflows"
    if not np.all(np.isfinite(cov)):
        raise FitError(
            f"the {law.name} law's uncertainty cannot be computed on these curves (the curvature "
            f"of the fit is not finite: {reason}); check them for extreme losses or LRs (losses "
            f"from {min(float(c.losses.min()) for c in used):.3g} to "
            f"{max(float(c.losses.max()) for c in used):.3g})"
        )
    res, _ = obj.residuals(x)
    preds = [np.exp(r + ly) for r, ly in zip(res, obj.log_y)]
    if any(d.binned for d in data):  # judge the fit on every point, not on the groups' means
        preds = [_every_point(law, theta, c) for c in used]
        res = [np.log(p) - np.log(c.losses) for p, c in zip(preds, used)]
    names = [p.name for p in law.params]
    identified, notes = _identifiability(law, space, x, determined, anneal_seen, prior)
    record = None
    if prior is not None:
        record = prior.describe_posterior(law, theta, cov, space.dtheta_dx(theta), context)
    f = Fit(
        law=law.name,
        params={n: float(v) for n, v in zip(names, theta)},
        law_options=law.options(),
        cov=cov,
        log_params=tuple(bool(b) for b in space.is_log),
        bounds=tuple((float(a), float(b)) for a, b in zip(space.lower, space.upper)),
        goodness=goodness(preds, used),
        scatter=scatter(np.concatenate(res)),
        autocorrelation=rho,
        determined={n: bool(d) for n, d in zip(names, determined)},
        annealing_identified=identified,
        notes=notes,
        curves=[_curve_summary(c) for c in used],
        objective=fval,
        fit_seconds=time.perf_counter() - t0,
        prior=record,
    )
    if not isinstance(law_name, str):
        f._law = law  # the object given, which get_law(f.law) need not build
    f.discrepancy = _discrepancy(f, law, prior, settings)
    return f


def _every_point(law: Law, theta: np.ndarray, curve: LossCurve) -> np.ndarray:
    """The law's value at every point of a long curve, in blocks of points (bounded memory;
    two quadrature steps per train-loss window)."""
    out = []
    for start in range(0, len(curve), POINT_BLOCK):
        keep = np.zeros(len(curve), dtype=bool)
        keep[start : start + POINT_BLOCK] = True
        d = prepare(law, curve.select(keep), max_quadrature=2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            pred = law.predict(theta, d.prep)
        out.append(d.window @ pred if d.window is not None else pred)
    return np.concatenate(out)


def _identifiability(
    law: Law,
    space: Space,
    x: np.ndarray,
    determined: list[bool],
    anneal_seen: float,
    prior: Prior | None,
) -> tuple[bool, list[str]]:
    """Whether the annealing coefficient is identified, and notes on what the data do not
    determine (``determined`` is updated in place for the annealing coefficient)."""
    names = [p.name for p in law.params]
    notes: list[str] = []
    a_name = getattr(law, "annealing_param", None)
    identified = True
    if a_name:
        k = names.index(a_name)
        if anneal_seen < ANNEAL_SEEN:
            identified = False
            determined[k] = False
            span = (
                "they come from the prior"
                if prior
                else "predictions for schedules that anneal span from no annealing gain to the "
                f"largest measured on public runs ({MAX_ANNEAL_GAIN:.0%} of L0 for a full decay)"
            )
            notes.append(
                f"annealing coefficient {a_name} is not determined by the data: the fitted curves "
                f"show an LR decay of {anneal_seen:.1%} of the peak at most; {span}"
            )
        elif not determined[k]:
            identified = False
            notes.append(f"annealing coefficient {a_name} is poorly determined by these curves")
    loose = [n for k, n in enumerate(names) if not determined[k] and n != a_name]
    if loose and prior is None:
        notes += [f"parameter {n} is not determined by these curves alone" for n in loose]
    elif loose:
        notes.append(
            f"{'parameter' if len(loose) == 1 else 'parameters'} {', '.join(loose)} not "
            f"determined by these curves alone: set, with their uncertainty, by the prior "
            f"({prior.source}); intervals hold only as far as your recipe resembles its runs"
        )
    for k, p in enumerate(space.params):
        at_lower = x[k] <= space.x_lower[k] + 1e-6 * max(1.0, abs(space.x_lower[k]))
        at_upper = x[k] >= space.x_upper[k] - 1e-6 * max(1.0, abs(space.x_upper[k]))
        if (at_lower or at_upper) and not (p.name == a_name and not identified):
            notes.append(f"parameter {p.name} sits at its {'lower' if at_lower else 'upper'} bound")
    return identified, notes


def _narrow_annealing(prior: Prior, law: Law) -> Prior:
    """The prior with its std narrowed on the features that involve the annealing coefficient."""
    a_name = getattr(law, "annealing_param", None)
    depends = getattr(law, "transfer_depends", {})
    std = [
        sd * PRIOR_NARROW_EARLY if a_name in depends.get(name, ()) else sd
        for name, sd in zip(prior.names, prior.std)
    ]
    return dataclasses.replace(prior, std=tuple(std))


def _curve_summary(c: LossCurve) -> dict[str, Any]:
    seen = c.observed_lrs()
    planned = c.meta.get("max_steps") or c.meta.get(
        "total_steps"
    )  # a trainer state's, a data set's
    if isinstance(planned, bool) or not isinstance(planned, int) or planned < len(c.lrs):
        planned = len(c.lrs)
    return {
        "name": c.name,
        "n_points": len(c),
        "last_step": c.last_step,
        "total_steps": len(c.lrs),
        "planned_steps": planned,
        "warmup_steps": warmup_end(c.lrs),
        "peak_lr": float(c.lrs.max()),
        "observed_peak_lr": float(seen.max()) if len(seen) else 0.0,
        "final_loss": float(c.losses[-1]) if len(c) else None,
    }


def _fit_auto(curves: list[LossCurve], law_options: Mapping[str, Any], settings: _Settings) -> Fit:
    if law_options:
        raise FitError("law_options cannot be combined with law='auto'; name the law")
    used = [c for c in curves if len(c)]
    if len(used) < 2:
        chosen = _fit_one(curves, "momentum", {}, settings)
        chosen.selection = {
            "method": "default",
            "reason": "one curve: no leave-one-curve-out comparison is possible; the momentum "
            "law (fewest parameters that model annealing) is the default",
        }
        return chosen
    several = spans_peak_lrs([float(c.lrs.max()) for c in used])
    # the laws that carry the peak LR across runs compete only where the runs differ in it
    names = [n for n in available_laws() if several or not carries_peak_lr(n)]
    errors: dict[str, float | None] = {}
    for name in names:
        errs = []
        for i, held in enumerate(used):
            rest = used[:i] + used[i + 1 :]
            try:
                f = _fit_one(rest, name, {}, settings.without_calibration())
                pred = f.predict(held.lrs, held.steps[-1:])[0]
            except FitError:  # no fit, or no prediction for the held-out run
                errs = []
                break
            errs.append(abs(pred - held.losses[-1]) / held.losses[-1])
        errors[name] = float(np.mean(errs)) if errs else None
    ranked = sorted((e, n) for n, e in errors.items() if e is not None)
    if not ranked:
        raise FitError("no law could be fitted with one curve left out; give more points")
    best_err, best = ranked[0]
    chosen = _fit_one(curves, best, {}, settings)
    table = ", ".join(f"{n} {e:.4%}" for e, n in ranked)
    chosen.selection = {
        "method": "leave-one-curve-out",
        "errors": errors,
        "reason": f"lowest mean leave-one-curve-out error of the final loss ({table})",
    }
    return chosen
