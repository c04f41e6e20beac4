"""What one fit of the callback works on (:class:`FitJob`) and what it gives back
(:class:`FitResult`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hf_lrlaw.fit_result import Fit
from hf_lrlaw.schedules import Schedule

__all__ = ["FitJob", "FitResult"]


@dataclass
class FitJob:
    """A snapshot of everything one fit needs, taken in the training thread."""

    step: int  # global step of the data (updates done)
    final: bool  # the fit at the end of training
    metric: str
    lrs: np.ndarray  # actual LRs for the updates done, then the plan
    points: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # metric -> steps, losses, windows
    folder: Path | None
    record: dict[str, Any]  # the record's run/schedule/callback parts
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]
    candidates: list[Schedule]
    run_name: str
    law: str = "auto"
    fit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    level: float = 0.9
    min_points: int = 8
    max_fit_points: int = 256
    stop_confidence: float | None = None  # set when a stop decision needs the one-sided bound
    plot: bool = False  # draw fit.png with this fit
    previous: FitResult | None = None  # the last successful fit, for the record if this one fails


@dataclass
class FitResult:
    """What one fit gave: the Fit, this run's predicted final loss, the candidates' ranking."""

    step: int
    final: bool
    fit: Fit | None = None
    prediction: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    stop_low: float | None = None
    error: str | None = None
    seconds: float = 0.0  # fit, prediction and ranking
    plot_seconds: float = 0.0  # drawing and writing fit.png
    plot_cpu: float = 0.0  # CPU time of the figure (its share of training time is budgeted)
    cpu_seconds: float = 0.0  # CPU time of all the above (this thread), as training feels it

    @property
    def failure(self) -> str:
        return f"the fit at step {self.step} failed: {self.error}; training continues"
