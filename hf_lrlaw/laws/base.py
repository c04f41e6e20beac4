"""The protocol every law implements, and the parameter description the fitter works from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Param", "Law", "LawError", "Prepared"]


class LawError(ValueError):
    """An unknown law or a bad law option."""

    __module__ = "hf_lrlaw"  # raised from submodules, public at the top level


@dataclass(frozen=True)
class Param:
    """One law parameter: its name, natural-space bounds, and whether it is searched in log space.

    ``upper=None`` on L0 means a bound the fitter takes from the data: the smallest observed
    loss, or, with ``above_min_loss``, the largest. A law that subtracts an annealing gain
    reaches below L0 once the LR decays, so its L0 can lie above every loss of an annealed run.
    """

    name: str
    lower: float
    upper: float | None
    log: bool = True
    doc: str = ""
    above_min_loss: bool = False


Prepared = Any
"""A law's parameter-independent precomputation for one LR array at some steps."""


@runtime_checkable
class Law(Protocol):
    """A loss-curve law ``L(step; lrs, params)``.

    ``prepare`` does all the work that does not depend on the parameters (areas, LR changes),
    once per curve; ``predict`` and ``jacobian`` are then cheap and are what the fitter calls in
    its inner loop. Parameters are natural-space float arrays in the order of ``params``.
    """

    name: str
    params: tuple[Param, ...]

    def options(self) -> dict[str, Any]:
        """The law's options (decay factor, warmup handling, ...), for saving a Fit."""
        ...

    def prepare(self, lrs: np.ndarray, steps: np.ndarray) -> Prepared:
        """Precompute what ``predict`` needs for the run with per-step LRs ``lrs`` at ``steps``."""
        ...

    def predict(self, theta: np.ndarray, prep: Prepared) -> np.ndarray:
        """Loss at the prepared steps."""
        ...

    def jacobian(self, theta: np.ndarray, prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
        """Loss at the prepared steps and its derivatives, shape (steps, params)."""
        ...

    def initial_guesses(
        self, preps: Sequence[Prepared], losses: Sequence[np.ndarray], n: int
    ) -> np.ndarray:
        """Up to ``n`` starting points (rows) for the multi-start fit, from the data."""
        ...

    def prepare_final(self, lrs: np.ndarray) -> Prepared:
        """Like ``prepare``, for the last step of every row of a 2-D LR array (many schedules of
        one horizon), vectorised across rows: ``predict`` then gives one loss per schedule."""
        ...

    def transfer_features(self, theta: np.ndarray, peak_lr: float, horizon: int) -> np.ndarray:
        """Functions of the parameters that stay nearly constant across runs of other sizes,
        peak LRs and lengths (named by ``transfer_names``); what a prior is put on."""
        ...

    def anneal_signal(self, prep: Prepared) -> float | np.ndarray:
        """How far the LR has decayed below its running maximum, relative to the peak (0 = not
        at all): up to the last prepared step, or per row for ``prepare_final``."""
        ...


def param_names(law: Law) -> tuple[str, ...]:
    return tuple(p.name for p in law.params)


def as_theta(law: Law, values: Mapping[str, float] | Sequence[float] | np.ndarray) -> np.ndarray:
    """Parameters as the law's ordered float array (from a dict or a sequence)."""
    names = param_names(law)
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        if missing:
            raise LawError(f"law {law.name!r} needs parameters {missing}")
        return np.array([float(values[n]) for n in names])
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(names),):
        raise LawError(f"law {law.name!r} takes {len(names)} parameters {names}, got {arr.shape}")
    return arr
