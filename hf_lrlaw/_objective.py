"""The fit's objective and its pieces (private): the data a law is fitted to, the search space
of the parameters, the Huber objective with its gradient, multi-start L-BFGS-B, and the Laplace
uncertainty at the optimum.

Objective (the papers' choice): the sum over all points of all curves of ``Huber(delta)`` on
``log(pred) - log(loss)``. Positive parameters are searched in log space and the gradient is
analytic. A prior adds its Gaussian penalty on the law's transfer features.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from scipy.optimize import minimize

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fit_result import FitError, GoodnessOfFit
from hf_lrlaw.laws import Law
from hf_lrlaw.laws.base import Param

if TYPE_CHECKING:
    from hf_lrlaw.priors import Prior, RunContext

MAX_QUADRATURE = 8  # points used to average a prediction over a logging window
BINNED_QUADRATURE = 2  # and over a group of a binned curve (a small part of a long run)


@dataclass
class CurveData:
    """One curve as the objective sees it: its points (means of consecutive points when the
    curve is binned), the law prepared where they are evaluated, and the matrix averaging
    those evaluations into each point."""

    curve: LossCurve
    prep: Any
    y: np.ndarray
    window: sparse.csr_matrix | None  # maps predictions at quadrature steps to logged means
    point_prep: Any = None  # prepared at one step per point (for starting values)
    binned: bool = False  # the points are means of groups of the curve's points

    def __post_init__(self) -> None:
        if self.point_prep is None:
            self.point_prep = self.prep


def quadrature(
    steps: np.ndarray,
    windows: np.ndarray,
    groups: np.ndarray | None = None,
    max_quadrature: int = MAX_QUADRATURE,
) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Steps at which to evaluate a law, and the matrix averaging them into each group of
    points (default: each point its own group). A group's prediction is the mean of the law
    over the steps its points' windows cover (for windows that meet, exactly their merged
    window; for point values, the points' own steps), from at most ``max_quadrature`` of those
    steps, evenly spread."""
    n = len(steps)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    first = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    offsets = np.cumsum(windows) - windows  # where each window starts in their concatenation
    covered = np.add.reduceat(windows, first)
    q = np.minimum(covered, max_quadrature)
    rows = np.repeat(np.arange(len(first)), q)
    within = np.arange(q.sum()) - np.repeat(np.cumsum(q) - q, q)
    pos = np.repeat(offsets[first], q) + np.floor(
        (within + 0.5) * np.repeat(covered / q, q)
    ).astype(np.int64)
    point = np.searchsorted(offsets, pos, side="right") - 1
    at = (steps - windows + 1)[point] + (pos - offsets[point])
    eval_steps, cols = np.unique(at, return_inverse=True)
    weights = 1.0 / np.repeat(q, q)
    matrix = sparse.csr_matrix((weights, (rows, cols)), shape=(len(first), len(eval_steps)))
    return eval_steps, matrix


def prepare(
    law: Law,
    curve: LossCurve,
    max_points: int | None = None,
    max_quadrature: int = MAX_QUADRATURE,
) -> CurveData:
    """The curve ready for the objective; with more than ``max_points`` points, their means in
    ``max_points`` groups of consecutive points (window-weighted: a merged train-loss window's
    mean is exact), so that the cost of a fit does not grow with the length of the log."""
    windows = curve.point_windows
    if max_points is not None and len(curve) > max_points:
        groups = (np.arange(len(curve)) * max_points) // len(curve)
        first = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        y = np.add.reduceat(windows * curve.losses, first) / np.add.reduceat(windows, first)
        eval_steps, matrix = quadrature(
            curve.steps, windows, groups, min(max_quadrature, BINNED_QUADRATURE)
        )
        middle = curve.steps[(first + np.r_[first[1:], len(curve)] - 1) // 2]
        return CurveData(
            curve,
            law.prepare(curve.lrs, eval_steps),
            y,
            matrix,
            law.prepare(curve.lrs, middle),
            binned=True,
        )
    if np.all(windows == 1):
        return CurveData(curve, law.prepare(curve.lrs, curve.steps), curve.losses, None)
    eval_steps, matrix = quadrature(curve.steps, windows, max_quadrature=max_quadrature)
    prep = law.prepare(curve.lrs, eval_steps)
    return CurveData(curve, prep, curve.losses, matrix, law.prepare(curve.lrs, curve.steps))


# -- parameter transforms ------------------------------------------------------------------


class Space:
    """Natural parameters <-> search space (log for positive scale parameters)."""

    def __init__(self, params: Sequence[Param], loss_floor: float, loss_ceiling: float):
        self.params = tuple(params)
        self.is_log = np.array([p.log for p in params])
        lower = np.array([p.lower for p in params], dtype=float)
        upper = np.array(
            [
                p.upper
                if p.upper is not None
                else loss_ceiling
                if p.above_min_loss
                else loss_floor * (1 - 1e-9)
                for p in params
            ]
        )
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


def safe_log(pred: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """log(pred), continued smoothly below ``floor`` so that bad parameters get a finite cost.

    Returns the log and its derivative with respect to ``pred``.
    """
    ok = pred > floor
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(ok, np.log(np.where(ok, pred, 1.0)), math.log(floor) + pred / floor - 1)
        dlog = np.where(ok, 1.0 / np.where(ok, pred, 1.0), 1.0 / floor)
    return log_p, dlog


class Objective:
    """Huber data term scaled by ``data_weight / delta**2``, plus the prior's penalty if any.

    With ``data_weight = delta**2 / (s**2 * inflation)`` the data term is the negative
    log-likelihood of residuals of scale ``s`` with ``inflation`` for their autocorrelation,
    which is what the prior must be weighed against.
    """

    def __init__(
        self,
        law: Law,
        data: Sequence[CurveData],
        space: Space,
        delta: float,
        point_weights: Sequence[np.ndarray],
        prior: Prior | None = None,
        context: RunContext | None = None,
    ):
        self.law, self.data, self.space, self.delta = law, data, space, delta
        self.weights = point_weights
        self.floor = 1e-3 * min(float(d.y.min()) for d in data)
        self.log_y = [np.log(d.y) for d in data]
        self.prior, self.context = prior, context
        self.data_weight = 1.0

    def _pred_jac(self, theta: np.ndarray, d: CurveData) -> tuple[np.ndarray, np.ndarray]:
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
            log_p, dlog = safe_log(pred, self.floor)
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


def minimise(obj: Objective, starts: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Run L-BFGS-B from each start in turn; stop early once two starts reach the same optimum."""
    best_x, best_f, n_ok, agreed = None, np.inf, 0, False
    for theta0 in starts:
        if agreed:
            break
        x0 = obj.space.to_x(np.asarray(theta0, dtype=float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = minimize(
                obj,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=obj.space.bounds,
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


def goodness(preds: Sequence[np.ndarray], curves: Sequence[LossCurve]) -> GoodnessOfFit:
    """How well ``preds`` match the curves' losses: R^2, mean and worst relative error, per
    curve too."""
    y = np.concatenate([c.losses for c in curves])
    p = np.concatenate(preds)
    rel = np.abs(p - y) / y
    with np.errstate(over="ignore", invalid="ignore"):  # losses of 1e300: R^2 is not defined
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - float(np.sum((p - y) ** 2)) / ss_tot if 0 < ss_tot < np.inf else float("nan")
    per = {}
    for k, (pc, c) in enumerate(zip(preds, curves)):
        rc = np.abs(pc - c.losses) / c.losses
        per[c.name or f"curve{k}"] = (float(rc.mean()), float(rc.max()))
    return GoodnessOfFit(r2, float(rel.mean()), float(rel.max()), len(y), per)


def noise(obj: Objective, res: Sequence[np.ndarray], n_params: int) -> tuple[float, float]:
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


def laplace(obj: Objective, x: np.ndarray) -> tuple[np.ndarray, float, float, list[bool]]:
    """Parameter covariance in search space, residual scale, lag-1 autocorrelation, and which
    parameters the data (not the prior) determine."""
    res, jacs = obj.residuals(x)
    jac = np.vstack(jacs)
    p = jac.shape[1]
    s2, rho = noise(obj, res, p)
    # Data information, in units of the residual scale inflated for autocorrelation.
    info = jac.T @ jac / max(s2 * (1 + rho) / (1 - rho), 1e-300)
    box = (obj.space.x_upper - obj.space.x_lower) / 4.0
    determined = determined_by_data(info, box)
    if obj.prior is not None:
        theta = obj.space.to_theta(x)
        _, _, prec = obj.prior.penalty(obj.law, theta, obj.space.dtheta_dx(theta), obj.context)
        info = info + prec
    cov = inverse(info, box)
    return cov, math.sqrt(s2), rho, determined


def inverse(info: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Inverse of an information matrix; directions it barely constrains get the variance of
    the search box instead of a confident number."""
    with np.errstate(all="ignore"):  # extreme data (losses of 1e300) overflow here, not fail
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


def determined_by_data(info: np.ndarray, box: np.ndarray) -> list[bool]:
    std = np.sqrt(np.maximum(np.diag(inverse(info, box)), 0.0))
    return [bool(s < 0.5 * b) for s, b in zip(std, box)]


def scatter(residuals: np.ndarray) -> float:
    """Robust scale of the data around the fit, in log-loss units (relative error)."""
    if len(residuals) < 3:
        return float(np.sqrt(np.mean(residuals**2))) if len(residuals) else 0.0
    mad = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    clip = 3 * mad if mad > 0 else np.inf
    return float(np.sqrt(np.mean(np.clip(residuals, -clip, clip) ** 2)))
