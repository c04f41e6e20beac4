"""hf-lrlaw: predict a language model's loss curve under any learning-rate schedule.

Fit the scaling law with LR annealing (Tissue et al. 2024) or the multi-power law (Luo et al.
2025) to the first part of one or two runs, predict the loss under any other schedule, and rank
candidate schedules before paying for full training runs; fitted across runs of several peak
LRs (``law="lrnoise"``), choose the peak LR with the schedule for a horizon (``optimal_peak_lr``); find the law's own
optimal free-form schedule (``optimize``).
"""

from hf_lrlaw import datasets
from hf_lrlaw._version import __version__ as __version__
from hf_lrlaw.curves import CurveError, LossCurve, load, read_csv, read_trainer_state, write_csv
from hf_lrlaw.fit_result import Fit, FitError, GoodnessOfFit
from hf_lrlaw.fitting import fit
from hf_lrlaw.laws import LawError, available_laws, get_law
from hf_lrlaw.optimum import Optimum, optimize
from hf_lrlaw.peak_lr import PeakLR, optimal_peak_lr, optimal_schedule, time_transfer
from hf_lrlaw.priors import Prior, PriorError, size_prior
from hf_lrlaw.ranking import Ranked, Ranking, rank
from hf_lrlaw.schedules import Schedule, ScheduleError

__all__ = [
    "CurveError",
    "LRLawCallback",
    "Fit",
    "FitError",
    "GoodnessOfFit",
    "LawError",
    "LossCurve",
    "Optimum",
    "PeakLR",
    "Prior",
    "PriorError",
    "Ranked",
    "Ranking",
    "Schedule",
    "ScheduleError",
    "available_laws",
    "datasets",
    "fit",
    "get_law",
    "load",
    "optimal_peak_lr",
    "optimal_schedule",
    "optimize",
    "rank",
    "read_csv",
    "read_trainer_state",
    "size_prior",
    "time_transfer",
    "write_csv",
]


def __getattr__(name: str):
    # The callback imports transformers: only when asked for, so the law core stays light.
    if name == "LRLawCallback":
        from hf_lrlaw.callback import LRLawCallback  # ImportError naming the [hf] extra

        return LRLawCallback
    raise AttributeError(f"module 'hf_lrlaw' has no attribute {name!r}")
