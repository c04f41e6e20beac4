"""Small numeric helpers shared by the laws."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import lsq_linear

from hf_lrlaw.laws.areas import TOP_RTOL, lr_area, with_warmup_at_peak
from hf_lrlaw.laws.base import LawError

WARMUP_MODES = ("peak", "actual", "include")


def warmup_end_rows(lrs: np.ndarray) -> np.ndarray:
    """:func:`~hf_lrlaw.laws.areas.warmup_end` of every row of a 2-D array, vectorised.

    Fast path: where a row rises monotonically to its first maximum (every ordinary schedule),
    that maximum ends the warmup and only the columns up to it are scanned.
    """
    lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
    n, t = lrs.shape
    if t < 2:
        return np.zeros(n, dtype=np.int64)
    first_max = np.argmax(lrs, axis=1)
    head = lrs[:, : int(first_max.max()) + 1]
    top = lrs[np.arange(n), first_max][:, None]
    first_top = np.argmax(head >= top * (1.0 - TOP_RTOL), axis=1)
    rising = np.diff(head, axis=1) >= 0
    before = np.arange(head.shape[1] - 1)[None, :] < first_top[:, None]
    ok = np.all(rising | ~before, axis=1)
    if np.all(ok):
        return first_top
    out = first_top.copy()
    out[~ok] = _warmup_end_rows_scan(lrs[~ok])
    return out


def _warmup_end_rows_scan(lrs: np.ndarray) -> np.ndarray:
    n, t = lrs.shape
    if t < 2:
        return np.zeros(n, dtype=np.int64)
    fall = np.diff(lrs, axis=1) < 0
    rise_end = np.where(fall.any(axis=1), np.argmax(fall, axis=1) + 1, t)
    in_rise = np.arange(t)[None, :] < rise_end[:, None]
    top = np.max(np.where(in_rise, lrs, -np.inf), axis=1)
    return np.argmax((lrs >= top[:, None] * (1.0 - TOP_RTOL)) & in_rise, axis=1)


def warmup_peak_rows(lrs: np.ndarray) -> np.ndarray:
    """:func:`~hf_lrlaw.laws.areas.with_warmup_at_peak` on every row of a 2-D array."""
    lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
    w = warmup_end_rows(lrs)
    at_w = lrs[np.arange(len(lrs)), w][:, None]
    return np.where(np.arange(lrs.shape[1])[None, :] < w[:, None], at_w, lrs)


def final_areas(lrs: np.ndarray, lam: float | None, warmup: str) -> tuple[np.ndarray, ...]:
    """S1 (and S2 when ``lam`` is given) at the last step of every row, in one pass over the
    array plus one over the warmup columns; the annealing signal of every row.

    ``S2(T-1) = lrs @ v`` with ``v_j = w_{j+1} - w_j`` (ends adjusted), the momentum weights
    ``w_i = (1 - lam**(T-i)) / (1 - lam)``; setting the warmup to its peak changes only the
    warmup columns, so it is a correction over those alone.
    """
    lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
    n, t = lrs.shape
    w_end = warmup_end_rows(lrs)
    peak = lrs[np.arange(n), w_end]
    cols = int(w_end.max())
    in_warmup = np.arange(cols)[None, :] < w_end[:, None]
    lift = np.where(in_warmup, peak[:, None] - lrs[:, :cols], 0.0)  # peak - lr in the warmup
    s1 = lrs.sum(axis=1)
    if warmup == "peak":
        s1 = s1 + lift.sum(axis=1)
    top = np.maximum(lrs.max(axis=1), 1e-300)
    anneal = (top - lrs[:, -1]) / top
    if lam is None:
        return s1, anneal
    weights = (1.0 - lam ** (t - np.arange(t))) / (1.0 - lam)
    v = np.zeros(t)
    v[:-1] += weights[1:]
    v[1:] -= weights[1:]
    s2 = lrs @ v
    if warmup != "include":
        s2 = s2 + lift @ v[:cols]
    return s1, s2, anneal


def s1_areas(lrs: np.ndarray, warmup: str) -> np.ndarray:
    """S1 at every step with the warmup counted as the law's option says."""
    return lr_area(with_warmup_at_peak(lrs) if warmup == "peak" else lrs)


def anneal_signal(lrs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """At each of ``steps``: the largest drop of the LR below its running maximum so far,
    relative to the run's peak LR (0 where the LR has not decayed yet)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    if len(lrs) == 0 or len(steps) == 0 or lrs.max() <= 0:
        return np.zeros(len(steps))
    drop = np.maximum.accumulate(np.maximum.accumulate(lrs) - lrs) / lrs.max()
    return drop[steps]


def anneal_signal_rows(lrs: np.ndarray) -> np.ndarray:
    """:func:`anneal_signal` of every row of a 2-D array over its whole length."""
    lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
    top = np.maximum(lrs.max(axis=1), 1e-300)
    return np.max(np.maximum.accumulate(lrs, axis=1) - lrs, axis=1) / top


def check_warmup(warmup: str) -> str:
    """``warmup`` if it is one of :data:`WARMUP_MODES`, else LawError."""
    if warmup not in WARMUP_MODES:
        raise LawError(f"warmup must be one of {WARMUP_MODES}, got {warmup!r}")
    return warmup


def projected_starts(
    bases: Sequence[np.ndarray],
    losses: Sequence[np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Bounded linear least squares of relative residuals for the parameters a law is linear in.

    ``bases[i]`` is the (points, linear params) design of curve ``i``; rows are divided by the
    observed loss so the residual approximates ``log(pred) - log(loss)``. Returns the solution and
    its residual sum of squares.
    """
    a = np.vstack([b / y[:, None] for b, y in zip(bases, losses)])
    rhs = np.concatenate([np.ones(len(y)) for y in losses])
    if not np.all(np.isfinite(a)):
        return np.full(a.shape[1], np.nan), np.inf
    res = lsq_linear(a, rhs, bounds=(lower, upper), method="bvls")
    return res.x, float(np.sum(res.fun**2))
