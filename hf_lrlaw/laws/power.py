"""The baseline every annealing law must beat: a power law in the LR area, ``L0 + A*S1^-alpha``.

It knows how much has been trained (S1) but not that lowering the LR lowers the loss.
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
from hf_lrlaw.laws.base import Param
from hf_lrlaw.laws.finals import final_sums, sums_work
from hf_lrlaw.schedules.pieces import SchedulePieces, Templates

__all__ = ["PowerLaw"]


class _Prep(NamedTuple):
    s1: np.ndarray
    anneal: float | np.ndarray


class PowerLaw:
    """``L0 + A * S1**(-alpha)``, S1 the area under the LR curve (warmup as in the momentum law)."""

    name = "power"
    params = (
        Param("L0", 0.0, None, log=False, doc="irreducible loss"),
        Param("A", 1e-8, 1e8, doc="scale of the power-law term"),
        Param("alpha", 1e-3, 5.0, doc="power-law exponent in S1"),
    )
    annealing_param = None
    transfer_names = ("log_alpha", "log_power_at_horizon")
    transfer_depends = {"log_alpha": ("alpha",), "log_power_at_horizon": ("L0", "A", "alpha")}

    def __init__(self, warmup: str = "peak") -> None:
        self.warmup = check_warmup(warmup)
        if self.warmup == "include":
            self.warmup = "actual"  # no S2 here: "include" and "actual" are the same law

    def options(self) -> dict[str, Any]:
        return {"warmup": self.warmup}

    def prepare(self, lrs: np.ndarray, steps: np.ndarray) -> _Prep:
        steps = np.asarray(steps, dtype=np.int64)
        return _Prep(s1_areas(lrs, self.warmup)[steps], anneal_signal(lrs, steps))

    def predict(self, theta: np.ndarray, prep: _Prep) -> np.ndarray:
        l0, a, alpha = theta
        return l0 + a * prep.s1 ** (-alpha)

    def jacobian(self, theta: np.ndarray, prep: _Prep) -> tuple[np.ndarray, np.ndarray]:
        l0, a, alpha = theta
        power = prep.s1 ** (-alpha)
        jac = np.column_stack([np.ones_like(power), power, -a * np.log(prep.s1) * power])
        return l0 + a * power, jac

    def initial_guesses(
        self, preps: Sequence[_Prep], losses: Sequence[np.ndarray], n: int
    ) -> np.ndarray:
        floor = min(float(y.min()) for y in losses)
        lower, upper = np.zeros(2), np.array([floor * (1 - 1e-6), np.inf])
        found = []
        for alpha in np.geomspace(0.05, 2.0, 16):
            bases = [np.column_stack([np.ones_like(p.s1), p.s1 ** (-alpha)]) for p in preps]
            (l0, a), rss = projected_starts(bases, losses, lower, upper)
            if np.isfinite(rss):
                found.append((rss, [l0, max(a, 1e-6), alpha]))
        found.sort(key=lambda item: item[0])
        return np.array([theta for _, theta in found[:n]])

    def prepare_final(self, lrs: np.ndarray) -> _Prep:
        s1, anneal = final_areas(lrs, None, self.warmup)
        return _Prep(s1, anneal)

    final_pieces_work = staticmethod(sums_work)  # its per-step cost, for chunking

    def prepare_final_pieces(self, block: Sequence[SchedulePieces], tpl: Templates) -> _Prep:
        """``prepare_final`` of schedules given as pieces (no per-step LRs)."""
        sums = final_sums(block, tpl, None, self.warmup)
        return _Prep(sums.s1, sums.anneal_last)

    def scale_final_prep(self, prep: _Prep, rows: np.ndarray, peaks: np.ndarray) -> _Prep:
        """The prep of schedules ``rows`` of a unit-peak ``prep`` at peak LRs ``peaks``."""
        return _Prep(prep.s1[rows] * peaks, np.asarray(prep.anneal)[rows])

    def predict_draws(self, thetas: np.ndarray, prep: _Prep) -> np.ndarray:
        """``predict`` under many parameter vectors (rows of ``thetas``): (draws, schedules)."""
        l0, a, alpha = (thetas[:, [k]] for k in range(3))
        return l0 + a * np.exp(-alpha * np.log(prep.s1)[None, :])

    def transfer_features(self, theta: np.ndarray, peak_lr: float, horizon: int) -> np.ndarray:
        """The exponent, and the power-law term at the end of the run relative to L0."""
        l0, a, alpha = theta
        return np.array(
            [
                np.log(alpha),
                np.log(a) - alpha * np.log(peak_lr * horizon) - np.log(max(l0, 1e-6)),
            ]
        )

    def anneal_signal(self, prep: _Prep) -> float:
        return prep.anneal
