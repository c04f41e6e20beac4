"""The LR-noise law: loss curves across schedules *and* peak learning rates, with shared parameters.

``L(t) = L0 + A * S_p(t)**(-alpha) + B * m_t**(beta - 1) * N(t) + D * (m_t / 1e-3)**2``

* ``S_p(t) = 1e-3 * sum_{i<=t} (eta_i / 1e-3)**p``: training progress. With p < 1 a step at a
  higher LR buys less than its LR share (p = 1 is the LR area S1 of the other laws).
* ``m_t = max_{i<=t} eta_i``: the largest LR so far (the peak LR after the warmup).
* ``N(t) = eta_0 * ln(1 + n_0(t)) + sum_{k>=1} (eta_k - eta_{k-1}) * ln(1 + n_k(t))`` with
  ``n_k(t) = (S1(t) - S1(k-1)) / eta_k``, the number of steps since the change at step k counted
  at the LR of that change (S1 = cumulative LR). N is the SGD noise of the current LR, which
  builds up logarithmically in time (as the harmonic term of the last-iterate bound of convex
  SGD does at a constant LR) and which an LR decrease takes away only as fast as
  ``ln(1 + steps since)`` allows: a constant LR keeps ``eta * ln(1 + t)``; a decay to zero at the
  end removes most of it, a long decay more than a short one.
  The noise scales like ``m_t**beta`` across peak LRs (``m_t**(beta-1)`` times a sum linear in the
  LR changes).
* ``D * (m_t / 1e-3)**2``: a loss penalty of the largest LR that annealing does not remove.

Seven parameters shared across runs of different peak LRs: fitted jointly on such runs, the law
predicts the rise of the stable-phase loss with the LR, the annealing gain as a function of how
far and how slowly the LR falls, and therefore an interior optimal peak LR that falls as the
horizon grows (:func:`hf_lrlaw.optimal_peak_lr`). The LR changes are grouped as for the
multi-power law (``drop_pairs``, ``bin_final_drops``), so a curve costs O(points x log T).
Chosen by measurement among the candidates of bench/RESULTS.md ("Choosing the peak LR").
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any, NamedTuple

import numpy as np

from hf_lrlaw.laws._common import anneal_signal, anneal_signal_rows, projected_starts
from hf_lrlaw.laws.areas import bin_final_drops, drop_pairs, lr_area, lr_floor
from hf_lrlaw.laws.base import Param

__all__ = ["LRNoiseLaw"]

ETA_REF = 1e-3  # reference LR of S_p and of the penalty
BAND_WIDTH = 0.01  # of ln(LR), over which prepare_final groups updates for S_p
LN_REF = float(np.log(ETA_REF))
# ln(1 + n) varies faster with distance than the multi-power drop term: finer cells than its
# defaults keep the noise term within 3e-5 of the exact sum (bench: 1.8x the pairs)
PAIR_RATIO, PAIR_BAND = 4.0, 1.1


class _Prep(NamedTuple):
    n_steps: int
    s1: np.ndarray  # S1 at each evaluated step (or per row)
    log_rel: np.ndarray  # ln(eta / ETA_REF) per update up to the last evaluated step; for
    # prepare_final: per (row, LR band) the mean ln(eta / ETA_REF) of its updates
    idx: np.ndarray | None  # evaluated steps; None for prepare_final (the last column of each row)
    log_max: np.ndarray  # ln of the largest LR so far, per evaluated step (or row)
    pair_step: np.ndarray  # (step, bin of LR changes) pairs
    pair_k: np.ndarray  # ln(1 + n_k): n_k = LR area from the change to the step / LR of the change
    pair_drop: np.ndarray  # eta_{k-1} - eta_k summed over the bin (negative in the warmup)
    init: np.ndarray  # eta_0 * ln(1 + S1 / eta_0): the first LR's own noise, per step (or row)
    anneal: float | np.ndarray
    band_row: np.ndarray | None = None  # prepare_final: the row of each LR band
    band_count: np.ndarray | None = None  # prepare_final: the updates in each LR band


class LRNoiseLaw:
    """``L0 + A*S_p^-alpha + B*m^(beta-1)*N + D*(m/1e-3)^2`` (see the module docstring)."""

    name = "lrnoise"
    params = (
        Param(
            "L0",
            0.0,
            None,
            log=False,
            doc="loss at infinite progress and no LR noise",
            above_min_loss=True,
        ),
        Param("A", 1e-8, 1e8, doc="scale of the power law in the progress S_p"),
        Param("alpha", 1e-3, 5.0, doc="exponent of the power law in S_p"),
        Param("p", 0.05, 1.5, doc="LR exponent of the progress S_p = 1e-3 sum (eta/1e-3)^p"),
        Param("B", 1e-8, 1e8, doc="scale of the LR noise term"),
        Param("beta", 0.05, 3.0, doc="the noise scales like (largest LR)^beta"),
        Param("D", 1e-8, 10.0, doc="loss penalty of the largest LR so far, at 1e-3 (x (m/1e-3)^2)"),
    )
    annealing_param = "B"
    carries_peak_lr = True  # its parameters hold across runs of different peak LRs
    transfer_names = ("L0", "log_A", "log_alpha", "log_p", "log_B", "log_beta", "log_D")
    transfer_depends = {n: (p.name,) for n, p in zip(transfer_names, params)}

    def __init__(self, exact: bool = False) -> None:
        self.exact = bool(exact)

    def options(self) -> dict[str, Any]:
        return {"exact": self.exact}

    # -- features ---------------------------------------------------------------------------
    def prepare(self, lrs: np.ndarray, steps: np.ndarray) -> _Prep:
        lrs = np.asarray(lrs, dtype=np.float64)
        steps = np.asarray(steps, dtype=np.int64)
        floor = lr_floor(lrs)
        cs = lr_area(lrs)
        ps, area, drop, log_lr = drop_pairs(
            lrs, steps, start=0, exact=self.exact, ratio=PAIR_RATIO, band=PAIR_BAND
        )
        eta0 = max(float(lrs[0]), floor)
        return _Prep(
            n_steps=len(steps),
            s1=cs[steps],
            log_rel=np.log(np.maximum(lrs[: int(steps.max()) + 1], floor)) - LN_REF,
            idx=steps,
            log_max=np.log(np.maximum(np.maximum.accumulate(lrs)[steps], floor)),
            pair_step=ps,
            pair_k=np.log1p(area / np.exp(log_lr)),
            pair_drop=drop,
            init=eta0 * np.log1p(cs[steps] / eta0),
            anneal=anneal_signal(lrs, steps),
        )

    def prepare_final(self, lrs: np.ndarray) -> _Prep:
        lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
        n = len(lrs)
        floor = 1e-12 * np.maximum(lrs.max(axis=1), 1e-300)
        rows, bins = bin_final_drops(lrs, np.zeros(n, dtype=np.int64))
        # S_p at the last step only needs the sum of (eta/1e-3)^p over each row: the updates
        # grouped in narrow bands of log LR, each its count and mean (exact to (p*width)^2/24)
        log_rel = np.log(np.maximum(lrs, floor[:, None])) - LN_REF
        key = np.floor(log_rel / BAND_WIDTH).astype(np.int64)
        key = (np.arange(n)[:, None] << 32) + (key - key.min())
        unique, inverse, band_count = np.unique(key, return_inverse=True, return_counts=True)
        band_mean = np.bincount(inverse.ravel(), log_rel.ravel()) / band_count
        band_row = (unique >> 32).astype(np.int64)
        total = lrs.sum(axis=1)
        eta0 = np.maximum(lrs[:, 0], floor)
        return _Prep(
            n_steps=n,
            s1=total,
            log_rel=band_mean,
            idx=None,
            log_max=np.log(np.maximum(lrs.max(axis=1), floor)),
            pair_step=rows,
            pair_k=np.log1p(np.maximum(total[rows] - bins.area_before, 0.0) / np.exp(bins.log_lr)),
            pair_drop=bins.drop,
            init=eta0 * np.log1p(total / eta0),
            anneal=anneal_signal_rows(lrs),
            band_row=band_row,
            band_count=band_count,
        )

    # -- the law ------------------------------------------------------------------------------
    def _terms(self, theta: np.ndarray, prep: _Prep, derivs: bool):
        p, beta = theta[3], theta[5]
        w = np.exp(p * prep.log_rel)
        if prep.idx is None:
            w = w * prep.band_count
            sp = ETA_REF * np.bincount(prep.band_row, w, minlength=prep.n_steps)
            dsp = (
                ETA_REF * np.bincount(prep.band_row, w * prep.log_rel, minlength=prep.n_steps)
                if derivs
                else None
            )
        else:
            sp = ETA_REF * np.cumsum(w)[prep.idx]
            dsp = ETA_REF * np.cumsum(w * prep.log_rel)[prep.idx] if derivs else None
        raw = np.bincount(prep.pair_step, -prep.pair_drop * prep.pair_k, minlength=prep.n_steps)
        noise = (raw + prep.init) * np.exp((beta - 1.0) * prep.log_max)
        pen = np.exp(2.0 * (prep.log_max - LN_REF))
        return sp, dsp, noise, pen

    def predict(self, theta: np.ndarray, prep: _Prep) -> np.ndarray:
        l0, a, alpha, _, b, _, d = theta
        sp, _, noise, pen = self._terms(theta, prep, False)
        return l0 + a * sp ** (-alpha) + b * noise + d * pen

    def jacobian(self, theta: np.ndarray, prep: _Prep) -> tuple[np.ndarray, np.ndarray]:
        l0, a, alpha, _, b, _, d = theta
        sp, dsp, noise, pen = self._terms(theta, prep, True)
        power = sp ** (-alpha)
        jac = np.empty((prep.n_steps, 7))
        jac[:, 0] = 1.0
        jac[:, 1] = power
        jac[:, 2] = -a * np.log(sp) * power
        jac[:, 3] = -a * alpha * power / sp * dsp
        jac[:, 4] = noise
        jac[:, 5] = b * noise * prep.log_max
        jac[:, 6] = pen
        return l0 + a * power + b * noise + d * pen, jac

    def initial_guesses(
        self, preps: Sequence[_Prep], losses: Sequence[np.ndarray], n: int
    ) -> np.ndarray:
        """Variable projection: (L0, A, B, D) by bounded linear least squares on a grid of
        (alpha, p, beta)."""
        ceiling = max(float(y.max()) for y in losses)
        lower, upper = np.zeros(4), np.array([ceiling, np.inf, np.inf, 10.0])
        found = []
        for alpha, p, beta in product((0.15, 0.3, 0.5, 0.8), (0.5, 0.8, 1.0), (0.3, 0.6, 1.0)):
            unit = np.array([0.0, 1.0, alpha, p, 1.0, beta, 1.0])
            bases = []
            for prep in preps:
                sp, _, noise, pen = self._terms(unit, prep, False)
                bases.append(np.column_stack([np.ones_like(sp), sp ** (-alpha), noise, pen]))
            (l0, a, b, d), rss = projected_starts(bases, losses, lower, upper)
            if np.isfinite(rss):
                found.append(
                    (rss, [l0, max(a, 1e-6), alpha, p, max(b, 1e-6), beta, min(max(d, 1e-6), 9.0)])
                )
        found.sort(key=lambda item: item[0])
        return np.array([theta for _, theta in found[:n]])

    def transfer_features(self, theta: np.ndarray, peak_lr: float, horizon: int) -> np.ndarray:
        """The log of every positive parameter (L0 as is); no prior has been built for this law."""
        return np.array([theta[0], *np.log(np.maximum(theta[1:], 1e-300))])

    def anneal_signal(self, prep: _Prep) -> float | np.ndarray:
        return prep.anneal
