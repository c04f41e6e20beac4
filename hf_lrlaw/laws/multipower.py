"""The multi-power law of Luo et al. 2025.

``L(t) = L0 + A * S1(t)**(-alpha) - LD(t)`` with
``LD(t) = B * sum_k (eta_{k-1} - eta_k) * G(eta_k**(-gamma) * S_k(t))``,
``G(x) = 1 - (C*x + 1)**(-beta)`` and ``S_k(t) = sum_{tau=k..t} eta_tau``. S1 includes the
warmup's area (the paper's ``S1 + S_W``). Only steps where the LR changes enter LD; they are
grouped into bins that shrink towards each evaluated step (see ``bin_drops``), so a curve costs
O(points x log(gap)) per evaluation instead of O(points x steps). ``warmup="exclude"`` leaves the
warmup's rise out of LD (the paper), ``"include"`` sums it too (the authors' released code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from hf_lrlaw.laws._common import (
    anneal_signal,
    anneal_signal_rows,
    projected_starts,
    warmup_end_rows,
)
from hf_lrlaw.laws.areas import bin_final_drops, drop_pairs, lr_area, warmup_end
from hf_lrlaw.laws.base import LawError, Param
from hf_lrlaw.laws.finals import changes_work, final_changes
from hf_lrlaw.schedules.pieces import SchedulePieces, Templates

__all__ = ["MultiPowerLaw"]

WARMUP_MODES = ("exclude", "include")


class _Prep(NamedTuple):
    s1: np.ndarray  # S1 at each step
    n_steps: int
    pair_step: np.ndarray  # which step a (step, bin) pair belongs to
    pair_area: np.ndarray  # S_k(t) of the pair (area from the bin to the step)
    pair_drop: np.ndarray  # the bin's LR drop
    pair_log_lr: np.ndarray  # the bin's log LR
    anneal: float | np.ndarray


class MultiPowerLaw:
    """Luo et al. 2025: power law in the LR area minus a multi-power loss-drop term."""

    name = "multipower"
    params = (
        Param("L0", 0.0, None, log=False, doc="irreducible loss", above_min_loss=True),
        Param("A", 1e-8, 1e8, doc="scale of the power-law term"),
        Param("alpha", 1e-3, 5.0, doc="power-law exponent in S1"),
        Param("B", 1e-6, 1e12, doc="scale of the loss drop"),
        Param("C", 1e-6, 1e6, doc="rate inside the loss-drop saturation G"),
        Param("beta", 1e-3, 10.0, doc="exponent of the saturation G"),
        Param("gamma", 1e-3, 3.0, doc="exponent of the LR in G's argument"),
    )
    annealing_param = "B"
    transfer_names = (
        "log_alpha",
        "log_power_at_horizon",
        "log_drop_scale",
        "log_drop_rate",
        "log_beta",
        "log_gamma",
    )
    transfer_depends = {
        "log_alpha": ("alpha",),
        "log_power_at_horizon": ("L0", "A", "alpha"),
        "log_drop_scale": ("L0", "B"),
        "log_drop_rate": ("C", "gamma"),
        "log_beta": ("beta",),
        "log_gamma": ("gamma",),
    }

    def __init__(self, warmup: str = "include", exact: bool = False) -> None:
        if warmup not in WARMUP_MODES:
            raise LawError(f"warmup must be one of {WARMUP_MODES}, got {warmup!r}")
        self.warmup = warmup
        self.exact = bool(exact)

    def options(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "exact": self.exact}

    def _start(self, lrs: np.ndarray) -> int:
        return warmup_end(lrs) + 1 if self.warmup == "exclude" else 0

    def prepare(self, lrs: np.ndarray, steps: np.ndarray) -> _Prep:
        lrs = np.asarray(lrs, dtype=np.float64)
        steps = np.asarray(steps, dtype=np.int64)
        cs = lr_area(lrs)
        pair_step, pair_area, pair_drop, pair_log_lr = drop_pairs(
            lrs, steps, start=self._start(lrs), exact=self.exact
        )
        return _Prep(
            s1=cs[steps],
            n_steps=len(steps),
            pair_step=pair_step,
            pair_area=pair_area,
            pair_drop=pair_drop,
            pair_log_lr=pair_log_lr,
            anneal=anneal_signal(lrs, steps),
        )

    def _drop_terms(self, theta: np.ndarray, prep: _Prep):
        _, _, _, _, c, beta, gamma = theta
        x = np.exp(-gamma * prep.pair_log_lr) * prep.pair_area
        log_u = np.log1p(c * x)
        u_beta = np.exp(-beta * log_u)  # (1 + C x)^-beta
        return x, log_u, u_beta

    def predict(self, theta: np.ndarray, prep: _Prep) -> np.ndarray:
        l0, a, alpha, b = theta[:4]
        _, _, u_beta = self._drop_terms(theta, prep)
        ld = np.bincount(prep.pair_step, prep.pair_drop * (1.0 - u_beta), minlength=prep.n_steps)
        return l0 + a * prep.s1 ** (-alpha) - b * ld

    def jacobian(self, theta: np.ndarray, prep: _Prep) -> tuple[np.ndarray, np.ndarray]:
        l0, a, alpha, b, c, beta, gamma = theta
        x, log_u, u_beta = self._drop_terms(theta, prep)
        d = prep.pair_drop
        n = prep.n_steps

        def per_step(values: np.ndarray) -> np.ndarray:
            return np.bincount(prep.pair_step, values, minlength=n)

        ld = per_step(d * (1.0 - u_beta))
        dg_dcx = beta * u_beta / (1.0 + c * x)  # dG / d(C x)
        power = prep.s1 ** (-alpha)
        jac = np.empty((n, 7))
        jac[:, 0] = 1.0
        jac[:, 1] = power
        jac[:, 2] = -a * np.log(prep.s1) * power
        jac[:, 3] = -ld
        jac[:, 4] = -b * per_step(d * dg_dcx * x)
        jac[:, 5] = -b * per_step(d * u_beta * log_u)
        jac[:, 6] = b * c * per_step(d * dg_dcx * x * prep.pair_log_lr)
        return l0 + a * power - b * ld, jac

    def initial_guesses(
        self, preps: Sequence[_Prep], losses: Sequence[np.ndarray], n: int
    ) -> np.ndarray:
        ceiling = max(float(y.max()) for y in losses)  # L0's bound, see Param.above_min_loss
        lower, upper = np.zeros(3), np.array([ceiling, np.inf, np.inf])
        found = []
        for c in (0.5, 2.0, 8.0):
            for beta in (0.3, 0.6):
                for gamma in (0.3, 0.6):
                    unit = np.array([0, 1, 1, 1, c, beta, gamma], dtype=float)
                    lds = [
                        np.bincount(
                            p.pair_step,
                            p.pair_drop * (1 - self._drop_terms(unit, p)[2]),
                            minlength=p.n_steps,
                        )
                        for p in preps
                    ]
                    for alpha in np.geomspace(0.1, 1.5, 10):
                        bases = [
                            np.column_stack([np.ones_like(p.s1), p.s1 ** (-alpha), -ld])
                            for p, ld in zip(preps, lds)
                        ]
                        (l0, a, b), rss = projected_starts(bases, losses, lower, upper)
                        if np.isfinite(rss):
                            theta = [l0, max(a, 1e-6), alpha, max(b, 1e-3), c, beta, gamma]
                            found.append((rss, theta))
        found.sort(key=lambda item: item[0])
        return np.array([theta for _, theta in found[:n]])

    def prepare_final(self, lrs: np.ndarray) -> _Prep:
        lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
        n = len(lrs)
        starts = warmup_end_rows(lrs) + 1 if self.warmup == "exclude" else np.zeros(n, int)
        rows, bins = bin_final_drops(lrs, starts, exact=self.exact)
        total = lrs.sum(axis=1)
        return _Prep(
            s1=total,
            n_steps=n,
            pair_step=rows,
            pair_area=np.maximum(total[rows] - bins.area_before, 0.0),
            pair_drop=bins.drop,
            pair_log_lr=bins.log_lr,
            anneal=anneal_signal_rows(lrs),
        )

    final_pieces_work = staticmethod(changes_work)  # its per-step cost, for chunking

    def prepare_final_pieces(self, block: Sequence[SchedulePieces], tpl: Templates) -> _Prep:
        """``prepare_final`` of schedules given as pieces: per-step work only where the LR
        changes."""
        rows, bins, total, anneal = final_changes(
            block, tpl, self.warmup == "exclude", exact=self.exact
        )
        return _Prep(
            s1=total,
            n_steps=len(block),
            pair_step=rows,
            pair_area=np.maximum(total[rows] - bins.area_before, 0.0),
            pair_drop=bins.drop,
            pair_log_lr=bins.log_lr,
            anneal=anneal,
        )

    def scale_final_prep(self, prep: _Prep, rows: np.ndarray, peaks: np.ndarray) -> _Prep:
        """The prep of schedules ``rows`` of a unit-peak ``prep`` at peak LRs ``peaks``: areas
        and drops scale with the LR, log LRs shift (bins are relative to each row's top)."""
        counts = np.bincount(prep.pair_step, minlength=prep.n_steps)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        owner = np.repeat(np.arange(len(rows)), counts[rows])  # the new schedule of each pair
        within = np.arange(len(owner)) - np.repeat(np.cumsum(counts[rows]) - counts[rows],
                                                   counts[rows])  # fmt: skip
        pick = first[rows][owner] + within
        scale = peaks[owner]
        return _Prep(
            s1=prep.s1[rows] * peaks,
            n_steps=len(rows),
            pair_step=owner,
            pair_area=prep.pair_area[pick] * scale,
            pair_drop=prep.pair_drop[pick] * scale,
            pair_log_lr=prep.pair_log_lr[pick] + np.log(scale),
            anneal=np.asarray(prep.anneal)[rows],
        )

    def transfer_features(self, theta: np.ndarray, peak_lr: float, horizon: int) -> np.ndarray:
        """The exponents; the power-law term at the end of the run relative to L0; the largest
        loss drop (full decay from the peak) relative to L0; and the rate inside G at the peak
        LR, ``C * peak_lr**(1 - gamma)`` per step (G's argument grows like that)."""
        l0, a, alpha, b, c, beta, gamma = theta
        l0 = max(l0, 1e-6)
        log_peak = np.log(peak_lr)
        return np.array(
            [
                np.log(alpha),
                np.log(a) - alpha * np.log(peak_lr * horizon) - np.log(l0),
                np.log(b) + log_peak - np.log(l0),
                np.log(c) + (1 - gamma) * log_peak,
                np.log(beta),
                np.log(gamma),
            ]
        )

    def anneal_signal(self, prep: _Prep) -> float:
        return prep.anneal
