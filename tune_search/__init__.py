"""Ray Tune search over learning-rate schedules with the fitted law as surrogate.

Run a few pilot schedules, fit the law jointly on their curves, rank every candidate schedule
by predicted final loss, and spend full runs only on the best few:

* :class:`ScheduleSpace` - schedule kinds x parameter grids -> candidate Schedules;
* :class:`LRLawSearcher` - a ``ray.tune.search.Searcher`` doing the above;
* :class:`LRLawStopper` - a ``TrialScheduler`` that stops trials the law says will lose;
* :func:`search_schedules` - the whole search on a Hugging Face Trainer setup, with a report;
* :mod:`tune_search.trainable` - one HF Trainer per trial; :mod:`tune_search.simulate` - a
  simulated world for tests and benchmarks.

Everything that imports Ray lives in this package; ``hf_lrlaw`` never does.
"""

from tune_search.searcher import LRLawSearcher
from tune_search.space import DEFAULT_KINDS, ScheduleSpace, SpaceError, span
from tune_search.stopper import LRLawStopper

__all__ = [
    "DEFAULT_KINDS",
    "LRLawSearcher",
    "LRLawStopper",
    "ScheduleSpace",
    "SpaceError",
    "search_schedules",
    "span",
]


def __getattr__(name: str):
    if name == "search_schedules":  # imports transformers: only when asked for
        from tune_search.api import search_schedules

        return search_schedules
    raise AttributeError(f"module 'tune_search' has no attribute {name!r}")
