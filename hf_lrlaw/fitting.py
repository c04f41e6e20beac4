"""Fit a law to loss curves: robust multi-start L-BFGS-B, uncertainty, and the Fit it returns.

Objective (the papers' choice): the sum over all points of all curves of
``Huber(delta=1e-3)`` on ``log(pred) - log(loss)``. Positive parameters are searched in log
space, the gradient is analytic, and several starts come from a variable-projection grid (the
laws are linear in their scale parameters). Uncertainty is a Laplace (Gauss-Newton) covariance
of the parameters, inflated for the autocorrelation of residuals along a curve, propagated to
predictions with the delta method and combined with the scatter of the data around the fit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
from scipy.stats import norm
from threadpoolctl import ThreadpoolController

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.laws import Law, LawError, available_laws, get_law
from hf_lrlaw.laws.areas import warmup_end
from hf_lrlaw.laws.base import Param
from hf_lrlaw.priors import Prior, PriorError, RunContext, resolve_prior

if TYPE_CHECKING:
    from hf_lrlaw.schedules import Schedule

__all__ = ["fit", "Fit", "FitError", "GoodnessOfFit", "HUBER_DELTA", "SCHEMA"]

SCHEMA = "hf_lrlaw.fit/1"
HUBER_DELTA = 1e-3
ANNEAL_SEEN = 0.02  # an LR drop below 2% of the peak does not tell the annealing coefficient
# The largest loss drop a full LR decay can bring, relative to L0, when the data cannot tell it:
# at most 0.10 on the 234 public runs whose fit determines it (peak LR <= 3e-3, the gain grows
# slowly with the peak), with a margin for higher LRs. Bounds the no-prior interval from below.
MAX_ANNEAL_GAIN = 0.15
# Until the LR has decayed to half its peak, the data confound the annealing gain with the power
# law's curvature: a prior's std on the features of the annealing coefficient is narrowed 10x
# (chosen by the priors' in-source K-fold error; early-prediction error 2.16% -> 0.66% on
# lr-scheduling from 25%, bench/RESULTS.md).
ANNEAL_INFORMATIVE = 0.5
PRIOR_NARROW_EARLY = 0.1
MAX_QUADRATURE = 8  # points used to average a prediction over a logging window


class FitError(ValueError):
    """The curves cannot be fitted as asked; the message says why."""


# -- data ----------------------------------------------------------------------------------


@dataclass
class _CurveData:
    curve: LossCurve
    prep: Any
    y: np.ndarray
    window: sparse.csr_matrix | None  # maps predictions at quadrature steps to logged means
    point_prep: Any = None  # prepared at the logged steps themselves (for starting values)

    def __post_init__(self) -> None:
        if self.point_prep is None:
            self.point_prep = self.prep


def _quadrature(steps: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Steps at which to evaluate a law, and the matrix averaging them over each window."""
    q = np.minimum(windows, MAX_QUADRATURE)
    rows = np.repeat(np.arange(len(steps)), q)
    within = np.arange(q.sum()) - np.repeat(np.cumsum(q) - q, q)
    first = np.repeat(steps - windows + 1, q)
    at = first + np.floor((within + 0.5) * np.repeat(windows / q, q)).astype(np.int64)
    eval_steps, cols = np.unique(at, return_inverse=True)
    weights = 1.0 / np.repeat(q, q)
    matrix = sparse.csr_matrix((weights, (rows, cols)), shape=(len(steps), len(eval_steps)))
    return eval_steps, matrix


def _prepare(law: Law, curve: LossCurve) -> _CurveData:
    if curve.windows is None or np.all(curve.windows == 1):
        return _CurveData(curve, law.prepare(curve.lrs, curve.steps), curve.losses, None)
    eval_steps, matrix = _quadrature(curve.steps, curve.windows)
    prep = law.prepare(curve.lrs, eval_steps)
    return _CurveData(curve, prep, curve.losses, matrix, law.prepare(curve.lrs, curve.steps))


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


# -- parameter transforms ------------------------------------------------------------------


class _Space:
    """Natural parameters <-> search space (log for positive scale parameters)."""

    def __init__(self, params: Sequence[Param], loss_floor: float, loss_ceiling: float):
        self.params = tuple(params)
        self.is_log = np.array([p.log for p in params])
        lower = np.array([p.lower for p in params], dtype=float)
        upper = np.array([
            p.upper if p.upper is not None
            else loss_ceiling if p.above_min_loss else loss_floor * (1 - 1e-9)
            for p in params
        ])
        self.lower, self.upper = lower, upper
        self.x_lower = np.where(self.is_log, np.log(np.maximum(lower, 1e-300)), lower)
        self.x_upper = np.where(self.is_log, np.log(upper), upper)

    def to_x(self, theta: np.ndarray) -> np.ndarray:
        theta = np.clip(theta, self.lower, self.upper)
        x = np.where(self.is_log, np.log(np.maximum(theta, 1e-300)), theta)
        return np.clip(x, self.x_lower, self.x_upper)

    def to_theta(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.is_log, np.exp(np.where(self.is_log, x, 0.0)), x)

    def dtheta_dx(self, theta: np.ndarray) -> np.ndarray:
        return np.where(self.is_log, theta, 1.0)

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return list(zip(self.x_lower, self.x_upper))


# -- objective -----------------------------------------------------------------------------


def _safe_log(pred: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """log(pred), continued smoothly below ``floor`` so that bad parameters get a finite cost.

    Returns the log and its derivative with respect to ``pred``.
    """
    ok = pred > floor
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(ok, np.log(np.where(ok, pred, 1.0)), math.log(floor) + pred / floor - 1)
        dlog = np.where(ok, 1.0 / np.where(ok, pred, 1.0), 1.0 / floor)
    return log_p, dlog


class _Objective:
    """Huber data term scaled by ``data_weight / delta**2``, plus the prior's penalty if any.

    With ``data_weight = delta**2 / (s**2 * inflation)`` the data term is the negative
    log-likelihood of residuals of scale ``s`` with ``inflation`` for their autocorrelation,
    which is what the prior must be weighed against.
    """

    def __init__(self, law: Law, data: Sequence[_CurveData], space: _Space, delta: float,
                 point_weights: Sequence[np.ndarray], prior: Prior | None = None,
                 context: RunContext | None = None):
        self.law, self.data, self.space, self.delta = law, data, space, delta
        self.weights = point_weights
        self.floor = 1e-3 * min(float(d.y.min()) for d in data)
        self.log_y = [np.log(d.y) for d in data]
        self.prior, self.context = prior, context
        self.data_weight = 1.0

    def _pred_jac(self, theta: np.ndarray, d: _CurveData) -> tuple[np.ndarray, np.ndarray]:
        pred, jac = self.law.jacobian(theta, d.prep)
        if d.window is not None:
            pred, jac = d.window @ pred, d.window @ jac
        return pred, jac

    def residuals(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per curve: residuals log(pred) - log(loss) and their Jacobian in search space."""
        theta = self.space.to_theta(x)
        chain = self.space.dtheta_dx(theta)
        res, jacs = [], []
        for d, log_y in zip(self.data, self.log_y):
            pred, jac = self._pred_jac(theta, d)
            log_p, dlog = _safe_log(pred, self.floor)
            res.append(log_p - log_y)
            jacs.append(jac * (dlog[:, None] * chain[None, :]))
        return res, jacs

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        res, jacs = self.residuals(x)
        delta = self.delta
        value, grad = 0.0, np.zeros(len(x))
        for r, j, w in zip(res, jacs, self.weights):
            a = np.abs(r)
            rho = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
            value += float(w @ rho)
            grad += (w * np.clip(r, -delta, delta)) @ j
        scale = self.data_weight / delta**2
        if not np.isfinite(value):
            return 1e30, np.zeros(len(x))
        value, grad = value * scale, grad * scale
        if self.prior is not None:
            theta = self.space.to_theta(x)
            pen, pen_grad, _ = self.prior.penalty(
                self.law, theta, self.space.dtheta_dx(theta), self.context
            )
            value, grad = value + pen, grad + pen_grad
        return value, grad


def _minimise(obj: _Objective, starts: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Run L-BFGS-B from each start in turn; stop early once two starts reach the same optimum."""
    best_x, best_f, n_ok, agreed = None, np.inf, 0, False
    for theta0 in starts:
        if agreed:
            break
        x0 = obj.space.to_x(np.asarray(theta0, dtype=float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = minimize(
                obj, x0, jac=True, method="L-BFGS-B", bounds=obj.space.bounds,
                options={"maxiter": 3000, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20},
            )
        if np.isfinite(res.fun):
            n_ok += 1
            agreed = n_ok > 1 and abs(res.fun - best_f) <= 1e-7 * max(abs(best_f), 1.0)
            if res.fun < best_f:
                best_x, best_f = res.x, float(res.fun)
    if best_x is None:
        raise FitError("every start of the fit failed (non-finite objective); check the curves")
    return best_x, best_f, n_ok


# -- goodness of fit and uncertainty ---------------------------------------------------------


@dataclass(frozen=True)
class GoodnessOfFit:
    """How well the fitted law matches the curves it was fitted on.

    ``mean_rel_error`` / ``worst_rel_error``: mean and max of ``|pred - loss| / loss`` over
    all points; ``per_curve`` maps a curve name to its own (mean, worst) pair.
    """

    r2: float
    mean_rel_error: float
    worst_rel_error: float
    n_points: int
    per_curve: dict[str, tuple[float, float]] = field(default_factory=dict)


def _goodness(preds: Sequence[np.ndarray], data: Sequence[_CurveData]) -> GoodnessOfFit:
    y = np.concatenate([d.y for d in data])
    p = np.concatenate(preds)
    rel = np.abs(p - y) / y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((p - y) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    per = {}
    for k, (pc, d) in enumerate(zip(preds, data)):
        rc = np.abs(pc - d.y) / d.y
        per[d.curve.name or f"curve{k}"] = (float(rc.mean()), float(rc.max()))
    return GoodnessOfFit(r2, float(rel.mean()), float(rel.max()), len(y), per)


def _noise(obj: _Objective, res: Sequence[np.ndarray], n_params: int) -> tuple[float, float]:
    """Residual variance of the Huber M-estimator and the lag-1 autocorrelation along curves."""
    r = np.concatenate(res)
    n = len(r)
    psi = np.clip(r, -obj.delta, obj.delta)
    inside = max(float(np.mean(np.abs(r) <= obj.delta)), 1.0 / n)
    s2 = float(psi @ psi) / max(n - n_params, 1) / inside**2
    num = sum(float(rc[1:] @ rc[:-1]) for rc in res if len(rc) > 1)
    den = sum(float(rc @ rc) for rc in res)
    rho = float(np.clip(num / den, 0.0, 0.98)) if den > 0 else 0.0
    return s2, rho


def _laplace(obj: _Objective, x: np.ndarray) -> tuple[np.ndarray, float, float, list[bool]]:
    """Parameter covariance in search space, residual scale, lag-1 autocorrelation, and which
    parameters the data (not the prior) determine."""
    res, jacs = obj.residuals(x)
    jac = np.vstack(jacs)
    p = jac.shape[1]
    s2, rho = _noise(obj, res, p)
    # Data information, in units of the residual scale inflated for autocorrelation.
    info = jac.T @ jac / max(s2 * (1 + rho) / (1 - rho), 1e-300)
    box = (obj.space.x_upper - obj.space.x_lower) / 4.0
    determined = _determined(info, box)
    if obj.prior is not None:
        theta = obj.space.to_theta(x)
        _, _, prec = obj.prior.penalty(obj.law, theta, obj.space.dtheta_dx(theta), obj.context)
        info = info + prec
    cov = _inverse(info, box)
    return cov, math.sqrt(s2), rho, determined


def _inverse(info: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Inverse of an information matrix; directions it barely constrains get the variance of
    the search box instead of a confident number."""
    scale = np.sqrt(np.maximum(np.diag(info), 1e-300))
    corr = info / np.outer(scale, scale)
    vals, vecs = np.linalg.eigh(corr)
    weak = vals < 1e-10 * vals.max()
    inv_vals = np.where(weak, 0.0, 1.0 / np.where(weak, 1.0, vals))
    cov = (vecs * inv_vals) @ vecs.T / np.outer(scale, scale)
    if np.any(weak):
        touched = np.abs(vecs[:, weak]).max(axis=1) > 0.1
        cov = cov + np.diag(np.where(touched, box**2, 0.0))
    return cov


def _determined(info: np.ndarray, box: np.ndarray) -> list[bool]:
    std = np.sqrt(np.maximum(np.diag(_inverse(info, box)), 0.0))
    return [bool(s < 0.5 * b) for s, b in zip(std, box)]


def _scatter(residuals: np.ndarray) -> float:
    """Robust scale of the data around the fit, in log-loss units (relative error)."""
    if len(residuals) < 3:
        return float(np.sqrt(np.mean(residuals**2))) if len(residuals) else 0.0
    mad = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    clip = 3 * mad if mad > 0 else np.inf
    return float(np.sqrt(np.mean(np.clip(residuals, -clip, clip) ** 2)))


# -- the Fit -------------------------------------------------------------------------------


@dataclass
class Fit:
    """A fitted law: parameters with uncertainty, goodness of fit, and predictions.

    Predictions take the per-step LRs of a run (an array, a :class:`~hf_lrlaw.Schedule`, or a
    :class:`~hf_lrlaw.LossCurve`) and the steps to predict at (default: the last step).
    Intervals (``level`` = 0.9 by default) combine the Laplace parameter uncertainty with the
    scatter of the fitted data around the law (``scatter``, relative).
    """

    law: str
    params: dict[str, float]
    law_options: dict[str, Any]
    cov: np.ndarray  # covariance of the search-space parameters (log for positive ones)
    log_params: tuple[bool, ...]
    bounds: tuple[tuple[float, float], ...]  # natural-space bounds used in the fit
    goodness: GoodnessOfFit
    scatter: float
    autocorrelation: float
    determined: dict[str, bool]
    annealing_identified: bool
    notes: list[str] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] | None = None
    objective: float = float("nan")
    fit_seconds: float = float("nan")
    prior: dict[str, Any] | None = None
    discrepancy: dict[str, Any] | None = None

    # -- parameters ------------------------------------------------------------------------
    @property
    def law_object(self) -> Law:
        return get_law(self.law, **self.law_options)

    @property
    def theta(self) -> np.ndarray:
        names = [p.name for p in self.law_object.params]
        return np.array([self.params[n] for n in names])

    def _space_x(self) -> np.ndarray:
        t = self.theta
        return np.where(self.log_params, np.log(np.maximum(t, 1e-300)), t)

    def param_intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Each parameter's interval at ``level`` (log-normal for positive scale parameters)."""
        z = norm.ppf(0.5 + level / 2)
        x, std = self._space_x(), np.sqrt(np.maximum(np.diag(self.cov), 0.0))
        lo, hi = x - z * std, x + z * std
        out = {}
        for k, name in enumerate(self.params):
            if self.log_params[k]:
                a, b = math.exp(max(lo[k], -700)), math.exp(min(hi[k], 700))
            else:
                a, b = lo[k], hi[k]
            blo, bhi = self.bounds[k]
            out[name] = (max(a, blo), min(b, bhi))
        return out

    def run_defaults(self) -> dict[str, Any] | None:
        """The peak LR, planned length and warmup of the run this fit describes, for schedule
        text that leaves them out (``Schedule.parse(text, defaults=...)``); None when the fitted
        curves differ in one of them, a curve was still warming up, or the fit was saved
        before they were recorded."""
        runs = []
        for c in self.curves:
            try:
                lr_steps, warmup = int(c["total_steps"]), int(c["warmup_steps"])
                run = {"peak_lr": float(c["peak_lr"]), "total_steps": int(c["planned_steps"]),
                       "warmup_steps": warmup}  # fmt: skip
            except (KeyError, TypeError, ValueError):
                return None
            if warmup >= lr_steps - 1:
                return None
            runs.append(run)
        if not runs:
            return None
        first = runs[0]
        for run in runs[1:]:
            if (run["total_steps"], run["warmup_steps"]) != (
                first["total_steps"], first["warmup_steps"]
            ) or not math.isclose(run["peak_lr"], first["peak_lr"], rel_tol=1e-6):
                return None
        return first

    # -- prediction ------------------------------------------------------------------------
    def predict(self, lrs: np.ndarray | Schedule | LossCurve, steps: Any = None) -> np.ndarray:
        """Predicted loss at ``steps`` (default: the last step) of a run with these per-step LRs."""
        law, (lr_arr, st) = self.law_object, _lrs_and_steps(lrs, steps)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            pred = law.predict(self.theta, law.prepare(lr_arr, st)) * self.bias_factor(st)
        return np.where(np.isfinite(pred), pred, np.nan)  # nan: before any training

    def predict_interval(
        self, lrs: np.ndarray | Schedule | LossCurve, steps: Any = None, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, low, high)`` at ``steps``; see the class docstring for what the band holds."""
        law, (lr_arr, st) = self.law_object, _lrs_and_steps(lrs, steps)
        return self._interval(law, law.prepare(lr_arr, st), level, st)

    def predict_final(
        self, schedules: Sequence[np.ndarray | Schedule] | np.ndarray, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, low, high)`` of the final loss of many schedules, vectorised per horizon."""
        law = self.law_object
        if isinstance(schedules, np.ndarray) and schedules.ndim == 2:
            blocks = [(np.arange(len(schedules)), np.asarray(schedules, dtype=np.float64))]
            n = len(schedules)
        else:
            rows = [_lrs_and_steps(s, None)[0] for s in schedules]
            n = len(rows)
            by_len: dict[int, list[int]] = {}
            for i, r in enumerate(rows):
                by_len.setdefault(len(r), []).append(i)
            blocks = [(np.asarray(idx), np.stack([rows[i] for i in idx])) for idx in by_len.values()]
        mean, low, high = (np.empty(n) for _ in range(3))
        for idx, block in blocks:
            if np.any(~np.isfinite(block)) or np.any(block < 0):
                raise FitError("predict_final(): learning rates must be finite and >= 0")
            for chunk in np.array_split(np.arange(len(idx)), max(1, len(idx) // 512)):
                final = np.full(len(chunk), block.shape[1] - 1)
                m, lo, hi = self._interval(law, law.prepare_final(block[chunk]), level, final)
                mean[idx[chunk]], low[idx[chunk]], high[idx[chunk]] = m, lo, hi
        return mean, low, high

    def _interval(self, law: Law, prep: Any, level: float, steps: np.ndarray):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mean, low, high = self._interval_raw(law, prep, level, steps)
        bad = ~(np.isfinite(mean) & np.isfinite(low) & np.isfinite(high))
        return tuple(np.where(bad, np.nan, a) for a in (mean, low, high))

    def _reach(self, steps: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """log((step + 1) / (last fitted step + 1)), zero within the fitted range; calibration."""
        d = self.discrepancy or {}
        last = int(d.get("last_step", -1))
        steps = np.asarray(steps, dtype=np.float64)
        if last < 0:
            return np.zeros(steps.shape), {}
        return np.log(np.maximum((steps + 1.0) / (last + 1.0), 1.0)), d.get("calibration") or {}

    def model_error(self, steps: np.ndarray) -> np.ndarray:
        """Relative (log) sd the law itself adds when predicting at ``steps``: zero within the
        observed range, growing with the log of how far past the last fitted step it goes."""
        reach, cal = self._reach(steps)
        return max(float(cal.get("extrapolation", 0.0)), 0.0) * reach

    def bias_factor(self, steps: Any) -> np.ndarray:
        """The law's measured mean miss when extrapolating, undone: ``exp(-bias * reach)``, one
        within the fitted range. ``bias`` comes with the calibration (see :func:`fit`)."""
        reach, cal = self._reach(steps)
        return np.exp(-float(cal.get("bias", 0.0)) * reach)

    def _interval_raw(self, law: Law, prep: Any, level: float, steps: np.ndarray):
        theta = self.theta
        pred, jac = law.jacobian(theta, prep)
        shift = self.bias_factor(steps)
        pred, jac = pred * shift, jac * shift[:, None]
        jac_x = jac * np.where(self.log_params, theta, 1.0)[None, :]
        var = np.einsum("ij,jk,ik->i", jac_x, self.cov, jac_x)
        z = norm.ppf(0.5 + level / 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.sqrt(np.maximum(var, 0.0)) / np.abs(pred)
        sd_log = np.sqrt(rel**2 + self.scatter**2 + self.model_error(steps) ** 2)
        pred = np.where(pred > 0, pred, np.nan)  # a law extrapolated below zero says nothing
        low, high = pred * np.exp(-z * sd_log), pred * np.exp(z * sd_log)
        name = getattr(law, "annealing_param", None)
        if name and not self.annealing_identified and self.prior is None:
            # The data cannot tell how much annealing helps: anything from no gain at all
            # (annealing term off) to the largest gain seen on public runs is possible; the
            # gain takes the loss below L0, by up to MAX_ANNEAL_GAIN for a full decay.
            k = [p.name for p in law.params].index(name)
            off = theta.copy()
            off[k] = 0.0
            no_gain = law.predict(off, prep) * shift
            depth = np.asarray(law.anneal_signal(prep), dtype=float)
            anneals = depth >= ANNEAL_SEEN
            l0_low = self.param_intervals(level)["L0"][0] * (1.0 - MAX_ANNEAL_GAIN * depth)
            high = np.where(anneals, np.maximum(high, no_gain * np.exp(z * self.scatter)), high)
            low = np.where(anneals, np.minimum(low, l0_low), low)
        return pred, low, high

    # -- reporting -------------------------------------------------------------------------
    def summary(self) -> str:
        """A few lines a person can read: law, parameters with intervals, fit quality, flags."""
        g = self.goodness
        lines = [
            f"{self.law} law fitted on {len(self.curves)} curve(s), {g.n_points} points "
            f"({self.fit_seconds:.2f} s)",
            f"  R^2 {g.r2:.5f}, mean rel. error {g.mean_rel_error:.5f}, "
            f"worst {g.worst_rel_error:.5f}, scatter {self.scatter:.5f}",
        ]
        for name, (lo, hi) in self.param_intervals().items():
            flag = "" if self.determined.get(name, True) else "  (not determined by the data)"
            lines.append(f"  {name:>6} = {self.params[name]:.6g}  [{lo:.4g}, {hi:.4g}]{flag}")
        if self.selection:
            lines.append(f"  chosen by: {self.selection.get('reason', '')}")
        if self.prior:
            moved = ", ".join(f"{name} {v['shift_in_prior_sd']:+.1f}"
                              for name, v in self.prior.get("features", {}).items())  # fmt: skip
            lines.append(f"  prior: {self.prior.get('source', '')}; the data moved it by "
                         f"(prior sds) {moved}")  # fmt: skip
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        g = self.goodness
        return {
            "schema": SCHEMA,
            "law": self.law,
            "law_options": self.law_options,
            "params": self.params,
            "cov": self.cov.tolist(),
            "log_params": list(self.log_params),
            "bounds": [list(b) for b in self.bounds],
            "goodness": {
                "r2": g.r2,
                "mean_rel_error": g.mean_rel_error,
                "worst_rel_error": g.worst_rel_error,
                "n_points": g.n_points,
                "per_curve": {k: list(v) for k, v in g.per_curve.items()},
            },
            "scatter": self.scatter,
            "autocorrelation": self.autocorrelation,
            "determined": self.determined,
            "annealing_identified": self.annealing_identified,
            "notes": self.notes,
            "curves": self.curves,
            "selection": self.selection,
            "objective": self.objective,
            "fit_seconds": self.fit_seconds,
            "prior": self.prior,
            "discrepancy": self.discrepancy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fit:
        schema = data.get("schema")
        if schema != SCHEMA:
            raise FitError(f"not a saved Fit of schema {SCHEMA!r} (found {schema!r})")
        try:
            g = data["goodness"]
            goodness = GoodnessOfFit(
                g["r2"], g["mean_rel_error"], g["worst_rel_error"], g["n_points"],
                {k: tuple(v) for k, v in g.get("per_curve", {}).items()},
            )
            out = cls(
                law=data["law"],
                params={k: float(v) for k, v in data["params"].items()},
                law_options=dict(data["law_options"]),
                cov=np.asarray(data["cov"], dtype=float),
                log_params=tuple(bool(b) for b in data["log_params"]),
                bounds=tuple((float(a), float(b)) for a, b in data["bounds"]),
                goodness=goodness,
                scatter=float(data["scatter"]),
                autocorrelation=float(data["autocorrelation"]),
                determined={k: bool(v) for k, v in data["determined"].items()},
                annealing_identified=bool(data["annealing_identified"]),
                notes=list(data.get("notes", [])),
                curves=list(data.get("curves", [])),
                selection=data.get("selection"),
                objective=float(data.get("objective", float("nan"))),
                fit_seconds=float(data.get("fit_seconds", float("nan"))),
                prior=data.get("prior"),
                discrepancy=data.get("discrepancy"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FitError(f"saved Fit is incomplete or malformed: {exc!r}") from None
        try:
            out.law_object  # noqa: B018 - validates law name and options
        except LawError as exc:
            raise FitError(f"saved Fit names a law this version cannot build: {exc}") from None
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the Fit as versioned JSON, atomically (no half-written file on failure)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fit:
        """Read a Fit written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FitError(f"{path}: no such file") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise FitError(f"{path}: not a readable JSON file ({exc})") from None
        if isinstance(data, dict) and data.get("schema") != SCHEMA and "fit" in data:
            if data["fit"] is None:
                raise FitError(f"{path}: the record holds no fit yet")
            data = data["fit"]  # a record (e.g. LRLawCallback's record.json) that embeds its fit
        if not isinstance(data, dict):
            raise FitError(f"{path}: expected a JSON object")
        return cls.from_dict(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _lrs_and_steps(lrs: Any, steps: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(lrs, LossCurve):
        arr = lrs.lrs
    elif hasattr(lrs, "lrs") and callable(lrs.lrs):
        arr = lrs.lrs()
    else:
        arr = np.asarray(lrs, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise FitError("predict() needs a one-dimensional, non-empty per-step LR array")
    if np.any(~np.isfinite(arr)) or np.any(arr < 0):
        raise FitError("predict(): learning rates must be finite and >= 0")
    if steps is None:
        st = np.array([len(arr) - 1])
    else:
        st = np.atleast_1d(np.asarray(steps, dtype=np.int64))
        if np.any(st < 0) or np.any(st >= len(arr)):
            raise FitError(f"predict(): steps must lie in 0..{len(arr) - 1}, the LR array's range")
    return arr, st


# -- fit() ---------------------------------------------------------------------------------


def fit(
    curves: LossCurve | Iterable[LossCurve],
    law: str | Law = "auto",
    *,
    law_options: Mapping[str, Any] | None = None,
    prior: str | os.PathLike[str] | Prior | Fit | None = None,
    calibration: str | Mapping[str, float] | None = "default",
    n_starts: int = 4,
    weights: str = "points",
    delta: float = HUBER_DELTA,
    min_step: int = 0,
) -> Fit:
    """Fit ``law`` jointly to ``curves`` (shared parameters) and return a :class:`Fit`.

    Args:
        curves: one or more :class:`LossCurve` (all points up to each curve's last step).
        law: "momentum" (Tissue et al. 2024), "multipower" (Luo et al. 2025), "power" (no
            annealing term), a Law object, or "auto": with two or more curves, the law with the
            lowest leave-one-curve-out error of the final loss; with one curve, "momentum".
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
            are dropped.
    """
    curves = _as_curves(curves)
    if min_step < 0:
        raise FitError(f"min_step must be >= 0, got {min_step}")
    if min_step > 0:
        kept = [c.tail(min_step) for c in curves if c.last_step >= min_step]
        if not kept:
            raise FitError(f"no curve has a point at step {min_step} or later (min_step)")
        curves = kept
    # The fit's linear algebra is on tiny matrices: BLAS threads only add latency (4x slower
    # measured on 2 busy cores). Only numpy's and scipy's BLAS are limited, not torch's, which
    # may be training in another thread of this process.
    with _numpy_blas_single_thread():
        return _fit(curves, law, law_options, prior, calibration, n_starts, weights, delta)


def _numpy_blas_single_thread():
    controller = ThreadpoolController()
    ours = [
        lib.filepath
        for lib in controller.lib_controllers
        if lib.user_api == "blas" and any(k in lib.filepath for k in ("numpy", "scipy"))
    ]
    return controller.select(filepath=ours).limit(limits=1)


def _fit(curves, law, law_options, prior, calibration, n_starts, weights, delta) -> Fit:
    if law == "auto":
        if isinstance(prior, Fit):
            law, law_options = prior.law, prior.law_options
        else:
            chosen = _fit_auto(curves, law_options or {}, prior, n_starts, weights, delta)
            return _calibrate(chosen, calibration)
    return _calibrate(
        _fit_one(curves, law, dict(law_options or {}), prior, n_starts, weights, delta), calibration
    )


def _calibrate(f: Fit, calibration: str | Mapping[str, float] | None) -> Fit:
    """Attach the model-discrepancy terms ``calibration`` names to a fresh Fit."""
    if calibration is None:
        return f
    if isinstance(calibration, str):
        if calibration != "default":
            raise FitError(f"calibration must be 'default', None or a dict, got {calibration!r}")
        cal = ((f.prior or {}).get("prior") or {}).get("calibration")
        if cal is None:
            try:
                cal = resolve_prior("default", f.law_object).calibration
            except PriorError:
                cal = None
        if cal is None:
            return f
    else:
        cal = dict(calibration)
        unknown = set(cal) - {"extrapolation", "bias", "n"}
        if unknown:
            raise FitError(f"unknown calibration terms {sorted(unknown)}; known: extrapolation, bias, n")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in cal.values()):
            raise FitError("calibration values must be finite numbers")
        if cal.get("extrapolation", 0.0) < 0:
            raise FitError("calibration 'extrapolation' must be >= 0")
    f.discrepancy = {
        "calibration": {k: float(v) for k, v in cal.items()},
        "last_step": max(int(c["last_step"]) for c in f.curves),
    }
    return f


def _fit_one(
    curves: list[LossCurve],
    law_name: str | Law,
    law_options: dict[str, Any],
    prior_spec: Any,
    n_starts: int,
    weights: str,
    delta: float,
) -> Fit:
    t0 = time.perf_counter()
    try:
        law = get_law(law_name, **law_options)
        prior = resolve_prior(prior_spec, law)
    except (LawError, PriorError) as exc:
        raise FitError(str(exc)) from None
    if weights not in ("points", "curves"):
        raise FitError(f"weights must be 'points' or 'curves', got {weights!r}")
    used = [c for c in curves if len(c)]
    names_seen = [c.name for c in used if c.name]
    if len(set(names_seen)) < len(names_seen):
        warnings.warn("fit(): several curves share a name; reports and plots tell curves apart "
                      "by name", stacklevel=3)
    n_points = sum(len(c) for c in used)
    n_params = len(law.params)
    needed = n_params + 1 if prior is None else 3
    if n_points < needed:
        raise FitError(
            f"the {law.name} law has {n_params} parameters and needs at least {needed} "
            f"loss points{' with a prior' if prior else ''}; the curves hold {n_points}"
        )
    for c in used:
        s1 = np.cumsum(c.lrs)[c.steps]
        if np.any(s1 <= 0):
            raise FitError(
                f"curve {c.name!r}: a loss is observed at step {int(c.steps[np.argmax(s1 <= 0)])}"
                " before any training at a non-zero LR; drop that point"
            )
    data = [_prepare(law, c) for c in used]
    if weights == "points":
        point_w = [np.ones(len(d.y)) for d in data]
    else:
        mean_n = n_points / len(data)
        point_w = [np.full(len(d.y), mean_n / len(d.y)) for d in data]
    space = _Space(
        law.params, min(float(d.y.min()) for d in data), max(float(d.y.max()) for d in data)
    )
    context = RunContext.of_curves(used)
    anneal_seen = max(float(np.max(law.anneal_signal(d.prep))) for d in data)
    if prior is not None and anneal_seen < ANNEAL_INFORMATIVE:
        prior = _narrow_annealing(prior, law)
    obj = _Objective(law, data, space, delta, point_w, prior, context)
    starts = law.initial_guesses([d.point_prep for d in data], [d.y for d in data], n_starts)
    if len(starts) == 0:
        raise FitError(f"could not find a starting point for the {law.name} law on these curves")
    x, fval, _ = _minimise(obj, starts)
    if prior is not None:
        # Weigh the data by their own scatter (and its autocorrelation) against the prior,
        # then refit from the first answer.
        res, _ = obj.residuals(x)
        s2, rho = _noise(obj, res, n_params)
        obj.data_weight = delta**2 / max(s2 * (1 + rho) / (1 - rho), 1e-300)
        x, fval, _ = _minimise(obj, np.vstack([space.to_theta(x), starts[:1]]))
    theta = space.to_theta(x)
    cov, _, rho, determined = _laplace(obj, x)
    res, _ = obj.residuals(x)
    preds = [np.exp(r + ly) for r, ly in zip(res, obj.log_y)]
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
        if (at_lower or at_upper) and not (name_is_annealing(p, a_name) and not identified):
            notes.append(f"parameter {p.name} sits at its {'lower' if at_lower else 'upper'} bound")

    return Fit(
        law=law.name,
        params={n: float(v) for n, v in zip(names, theta)},
        law_options=law.options(),
        cov=cov,
        log_params=tuple(bool(b) for b in space.is_log),
        bounds=tuple((float(a), float(b)) for a, b in zip(space.lower, space.upper)),
        goodness=_goodness(preds, data),
        scatter=_scatter(np.concatenate(res)),
        autocorrelation=rho,
        determined={n: bool(d) for n, d in zip(names, determined)},
        annealing_identified=identified,
        notes=notes,
        curves=[_curve_summary(c) for c in used],
        objective=fval,
        fit_seconds=time.perf_counter() - t0,
        prior=None if prior is None else _prior_record(prior, law, theta, cov, space, context),
    )


def _narrow_annealing(prior: Prior, law: Law) -> Prior:
    """The prior with its std narrowed on the features that involve the annealing coefficient."""
    a_name = getattr(law, "annealing_param", None)
    depends = getattr(law, "transfer_depends", {})
    std = [sd * PRIOR_NARROW_EARLY if a_name in depends.get(name, ()) else sd
           for name, sd in zip(prior.names, prior.std)]
    return dataclasses.replace(prior, std=tuple(std))


def _prior_record(prior: Prior, law: Law, theta: np.ndarray, cov: np.ndarray, space: _Space,
                  context: RunContext) -> dict[str, Any]:
    """Which prior was used and how far the data moved each feature from it."""
    from hf_lrlaw.priors import _feature_jacobian

    phi = law.transfer_features(theta, context.peak_lr, context.horizon)
    jac = _feature_jacobian(law, theta, context) * space.dtheta_dx(theta)[None, :]
    post_std = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, cov, jac), 0.0))
    mean, std = np.asarray(prior.mean), np.asarray(prior.std)
    return {
        "source": prior.source,
        "prior": prior.to_dict(),
        "context": {"peak_lr": context.peak_lr, "horizon": context.horizon},
        "features": {
            name: {
                "prior_mean": float(m),
                "prior_std": float(sd),
                "posterior": float(v),
                "posterior_std": float(ps),
                "shift_in_prior_sd": float((v - m) / sd),
                "std_ratio": float(ps / sd),
            }
            for name, m, sd, v, ps in zip(prior.names, mean, std, phi, post_std)
        },
    }


def name_is_annealing(p: Param, a_name: str | None) -> bool:
    return a_name is not None and p.name == a_name


def _curve_summary(c: LossCurve) -> dict[str, Any]:
    seen = c.observed_lrs()
    planned = c.meta.get("max_steps") or c.meta.get("total_steps")  # a trainer state's, a data set's
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


def _fit_auto(
    curves: list[LossCurve], law_options: Mapping[str, Any], prior: Any, n_starts: int,
    weights: str, delta: float,
) -> Fit:
    if law_options:
        raise FitError("law_options cannot be combined with law='auto'; name the law")
    used = [c for c in curves if len(c)]
    if len(used) < 2:
        chosen = _fit_one(curves, "momentum", {}, prior, n_starts, weights, delta)
        chosen.selection = {
            "method": "default",
            "reason": "one curve: no leave-one-curve-out comparison is possible; the momentum "
            "law (fewest parameters that model annealing) is the default",
        }
        return chosen
    errors: dict[str, float | None] = {}
    for name in available_laws():
        errs = []
        for i, held in enumerate(used):
            rest = used[:i] + used[i + 1 :]
            try:
                f = _fit_one(rest, name, {}, prior, n_starts, weights, delta)
            except FitError:
                errs = []
                break
            pred = f.predict(held.lrs, held.steps[-1:])[0]
            errs.append(abs(pred - held.losses[-1]) / held.losses[-1])
        errors[name] = float(np.mean(errs)) if errs else None
    ranked = sorted((e, n) for n, e in errors.items() if e is not None)
    if not ranked:
        raise FitError("no law could be fitted with one curve left out; give more points")
    best_err, best = ranked[0]
    chosen = _fit_one(curves, best, {}, prior, n_starts, weights, delta)
    table = ", ".join(f"{n} {e:.4%}" for e, n in ranked)
    chosen.selection = {
        "method": "leave-one-curve-out",
        "errors": errors,
        "reason": f"lowest mean leave-one-curve-out error of the final loss ({table})",
    }
    return chosen
