"""A second law as a check on the first: each candidate ranked by the larger of the two laws'
predicted final losses.

A law fitted on a few pilots ranks first the candidates it extrapolates to most boldly, and
those are the ones it misses most: on the demo's pilots the momentum law's favourites (WSD with
a fast exponential decay, 1.771) are 1.834 to the multi-power law, and the multi-power law's
(long decays to 30% of the peak, 1.756) are 1.803 to the momentum law; each finished 1.5-2.2%
above its own law's prediction when run. Where the two agree, neither is extrapolating alone.
The first law keeps its intervals and draws; the second only raises a prediction it disagrees
with (``hf_lrlaw.rank(offset=...)``). Measured: bench/demo_regime.py, bench/RESULTS.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fit_result import Fit, FitError
from hf_lrlaw.fitting import fit
from hf_lrlaw.laws import available_laws, carries_peak_lr
from hf_lrlaw.schedules import Schedule

__all__ = ["SecondLaw"]

logger = logging.getLogger("tune_search")


class SecondLaw:
    """Fits ``law`` on the search's curves (no prior; the first law's ``min_step``) and gives
    the ranking its excess over the first law's predictions."""

    def __init__(
        self, law: str, law_options: Mapping[str, Any] | None = None, several_lrs: bool = False
    ) -> None:
        if law not in available_laws():
            raise ValueError(f"unknown second_law {law!r}; use one of {available_laws()}")
        if several_lrs and not carries_peak_lr(law):
            logger.warning(
                "LRLaw search: second_law=%r does not model the peak LR while the candidates "
                "span several (more LR area is always lower loss in it); bench/RESULTS.md "
                "measured the search worse with such a second law",
                law,
            )
        self.law = law
        self.law_options = dict(law_options or {})
        self.fit: Fit | None = None

    def offset(
        self,
        curves: Sequence[LossCurve],
        first: Fit,
        candidates: Sequence[Schedule],
        fit_kwargs: Mapping[str, Any],
        note: Callable[[str], None],
    ) -> np.ndarray | None:
        """``max(0, second - first)`` per candidate (0 where either law has no prediction), or
        None (and a note) when the second law cannot be fitted."""
        kwargs = {k: v for k, v in fit_kwargs.items() if k in ("min_step", "max_points")}
        try:
            self.fit = fit(
                list(curves), self.law, law_options=self.law_options, prior=None, **kwargs
            )
            second = np.asarray(self.fit.predict_final(list(candidates))[0], dtype=np.float64)
            own = np.asarray(first.predict_final(list(candidates))[0], dtype=np.float64)
        except (FitError, ValueError, FloatingPointError) as exc:
            note(f"second law {self.law}: not used this round ({exc})")
            return None
        both = np.isfinite(second) & np.isfinite(own)
        return np.where(both, np.maximum(np.where(both, second - own, 0.0), 0.0), 0.0)
