"""Ray Tune search over learning-rate schedules with the fitted law as surrogate.

Run a few pilot schedules, fit the law jointly on their curves, rank every candidate schedule
by predicted final loss, and spend full runs only on the best few:

* :class:`ScheduleSpace` - schedule kinds x parameter grids -> candidate Schedules;
* :class:`LRLawSearcher` - a ``ray.tune.search.Searcher`` doing the above;
* :class:`LRLawStopper` - a ``TrialScheduler`` that stops trials the law says will lose;
* :func:`search_schedules` - the whole search on a Hugging Face Trainer setup, with a report;
* :mod:`tune_search.policy` - the Ray-free decisions the searcher adapts to Tune, and
  :mod:`tune_search.records` - their bookkeeping (trials, curves, the joint fit);
* :mod:`tune_search.trainable` - one HF Trainer per trial; :mod:`tune_search.simulate` - a
  simulated world; :mod:`tune_search.replay` - the bundled real curves replayed as trials;
  :mod:`tune_search.testing` - drivers that run a search against either without Ray (tests and
  benchmarks).

Everything that imports Ray lives in this package; ``hf_lrlaw`` never does.
"""

from hf_lrlaw._extras import require

require("tune_search (the Ray Tune search)", "tune", "ray")

from tune_search.searcher import LRLawSearcher, trial_dirname  # noqa: E402
from tune_search.space import DEFAULT_KINDS, ScheduleSpace, SpaceError, span  # noqa: E402
from tune_search.stopper import LRLawStopper  # noqa: E402

__all__ = [
    "DEFAULT_KINDS",
    "LRLawSearcher",
    "LRLawStopper",
    "ScheduleSpace",
    "SpaceError",
    "search_schedules",
    "span",
    "trial_dirname",
]


def __getattr__(name: str):
    if name == "search_schedules":  # imports transformers: only when asked for
        require("tune_search.search_schedules", "all", "torch", "transformers")
        from tune_search.api import search_schedules

        return search_schedules
    raise AttributeError(f"module 'tune_search' has no attribute {name!r}")
