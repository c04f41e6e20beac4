"""The scaling law with LR annealing of Tissue et al. 2024 (the "momentum" law).

``L(s) = L0 + A * S1(s)**(-alpha) - C * S2(s)``: S1 is the area under the LR curve and S2 the
annealing area with momentum, ``m_i = lam * m_{i-1} + (eta_{i-1} - eta_i)``, ``S2 = sum m_i``.
Warmup: ``warmup="peak"`` counts warmup steps as if at the LR the warmup reaches (the paper's
choice); ``"actual"`` counts their real LRs in S1 but leaves the warmup's rise out of S2;
``"include"`` uses the real LRs in both, so the warmup's rise enters S2 as negative annealing
(a loss offset that grows with the peak LR).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from hf_lrlaw.laws._common import (
    anneal_signal,
    check_warmup,
    final_areas,
    projected_starts,
    s1_areas,
)
from hf_lrlaw.laws.areas import momentum_area, with_warmup_at_peak
from hf_lrlaw.laws.base import LawError, Param
from hf_lrlaw.laws.finals import final_sums, sums_work
from hf_lrlaw.schedules.pieces import SchedulePieces, Templates

__all__ = ["MomentumLaw"]

# C scales like peak_lr**-0.72 across the lr-scheduling runs (1e-4..3e-3); see
# bench/build_priors.py, which prints the regression. The transfer feature undoes it.
ANNEAL_LR_EXPONENT = 0.75


class _Prep(NamedTuple):
    s1: np.ndarray
    s2: np.ndarray
    anneal: float | np.ndarray


class MomentumLaw:
    """Tissue et al. 2024, ``L0 + A*S1^-alpha - C*S2``; ``lam`` is the momentum decay factor."""

    name = "momentum"
    params = (
        Param("L0", 0.0, None, log=False, doc="irreducible loss", above_min_loss=True),
        Param("A", 1e-8, 1e8, doc="scale of the power-law term"),
        Param("alpha", 1e-3, 5.0, doc="power-law exponent in S1"),
        Param("C", 1e-12, 1e12, doc="loss drop per unit of annealing area S2"),
    )
    annealing_param = "C"
    transfer_names = ("log_alpha", "log_power_at_horizon", "log_anneal_gain")
    transfer_depends = {
        "log_alpha": ("alpha",),
        "log_power_at_horizon": ("L0", "A", "alpha"),
        "log_anneal_gain": ("L0", "C"),
    }

    def __init__(self, lam: float = 0.999, warmup: str = "peak") -> None:
        if not 0.0 <= lam < 1.0:
            raise LawError(f"lam (the momentum decay factor) must be in [0, 1), got {lam}")
        self.lam = float(lam)
        self.warmup = check_warmup(warmup)

    def options(self) -> dict[str, Any]:
        return {"lam": self.lam, "warmup": self.warmup}

    def prepare(self, lrs: np.ndarray, steps: np.ndarray) -> _Prep:
        steps = np.asarray(steps, dtype=np.int64)
        s1 = s1_areas(lrs, self.warmup)[steps]
        s2_lrs = lrs if self.warmup == "include" else with_warmup_at_peak(lrs)
        s2 = momentum_area(s2_lrs, self.lam)[steps]
        return _Prep(s1, s2, anneal_signal(lrs, steps))

    def predict(self, theta: np.ndarray, prep: _Prep) -> np.ndarray:
        l0, a, alpha, c = theta
        return l0 + a * prep.s1 ** (-alpha) - c * prep.s2

    def jacobian(self, theta: np.ndarray, prep: _Prep) -> tuple[np.ndarray, np.ndarray]:
        l0, a, alpha, c = theta
        power = prep.s1 ** (-alpha)
        pred = l0 + a * power - c * prep.s2
        jac = np.empty((len(pred), 4))
        jac[:, 0] = 1.0
        jac[:, 1] = power
        jac[:, 2] = -a * np.log(prep.s1) * power
        jac[:, 3] = -prep.s2
        return pred, jac

    def initial_guesses(
        self, preps: Sequence[_Prep], losses: Sequence[np.ndarray], n: int
    ) -> np.ndarray:
        ceiling = max(float(y.max()) for y in losses)  # L0's bound, see Param.above_min_loss
        lower = np.array([0.0, 0.0, 0.0])
        upper = np.array([ceiling, np.inf, np.inf])
        found = []
        for alpha in np.geomspace(0.05, 2.0, 16):
            bases = [np.column_stack([np.ones_like(p.s1), p.s1 ** (-alpha), -p.s2]) for p in preps]
            (l0, a, c), rss = projected_starts(bases, losses, lower, upper)
            if np.isfinite(rss):
                found.append((rss, [l0, max(a, 1e-6), alpha, max(c, 1e-6)]))
        found.sort(key=lambda item: item[0])
        return np.array([theta for _, theta in found[:n]])

    def prepare_final(self, lrs: np.ndarray) -> _Prep:
        s1, s2, anneal = final_areas(lrs, self.lam, self.warmup)
        return _Prep(s1, s2, anneal)

    final_pieces_work = staticmethod(sums_work)  # its per-step cost, for chunking

    def prepare_final_pieces(self, block: Sequence[SchedulePieces], tpl: Templates) -> _Prep:
        """``prepare_final`` of schedules given as pieces (no per-step LRs)."""
        sums = final_sums(block, tpl, self.lam, self.warmup)
        return _Prep(sums.s1, sums.s2, sums.anneal_last)

    def scale_final_prep(self, prep: _Prep, rows: np.ndarray, peaks: np.ndarray) -> _Prep:
        """The prep of schedules ``rows`` of a unit-peak ``prep`` at peak LRs ``peaks``: the areas
        are linear in the LR, the annealing signal relative."""
        return _Prep(prep.s1[rows] * peaks, prep.s2[rows] * peaks, np.asarray(prep.anneal)[rows])

    def predict_draws(self, thetas: np.ndarray, prep: _Prep) -> np.ndarray:
        """``predict`` under many parameter vectors (rows of ``thetas``): (draws, schedules)."""
        l0, a, alpha, c = (thetas[:, [k]] for k in range(4))
        return l0 + a * np.exp(-alpha * np.log(prep.s1)[None, :]) - c * prep.s2[None, :]

    def transfer_features(self, theta: np.ndarray, peak_lr: float, horizon: int) -> np.ndarray:
        """Parameters in units that carry over between runs: the exponent, the power-law term
        at the end of the run relative to L0 (S1 = peak_lr * horizon), and the annealing
        coefficient relative to L0 with its measured dependence on the peak LR removed."""
        l0, a, alpha, c = theta
        l0 = max(l0, 1e-6)
        return np.array(
            [
                np.log(alpha),
                np.log(a) - alpha * np.log(peak_lr * horizon) - np.log(l0),
                np.log(c) + ANNEAL_LR_EXPONENT * np.log(peak_lr) - np.log(l0),
            ]
        )

    def anneal_signal(self, prep: _Prep) -> float:
        return prep.anneal
