"""LRLawStopper: stop a running trial once the law is confident it will finish worse than the best.

ASHA compares trials at the same step, which punishes schedules that keep a high LR and anneal
late (they look worse until their decay, then finish best). The law predicts each trial's *final*
loss from its schedule and its curve so far, so a trial is stopped only when even the optimistic
end of its predicted final loss is worse than the best finished trial by ``margin``.

.. code-block:: python

    from ray import tune
    from tune_search import LRLawSearcher, LRLawStopper

    searcher = LRLawSearcher(space, metric="eval_loss")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=LRLawStopper(searcher=searcher),
                                    num_samples=-1),
    )

With ``searcher=`` the stopper shares the searcher's curves and fit (one fit for both); alone
(e.g. with random search, ``metric``/``mode`` from ``TuneConfig``) it keeps and fits its own.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from hf_lrlaw.laws import available_laws
from tune_search.records import DIVERGED, CurveBook, schedule_of

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from tune_search.searcher import LRLawSearcher

__all__ = ["LRLawStopper"]


class LRLawStopper(FIFOScheduler):
    """Stop trials the fitted law says will finish worse than the best finished trial.

    Args:
        metric, mode: the reported loss and "min"; taken from ``TuneConfig`` when None, or from
            ``searcher``.
        searcher: an :class:`~tune_search.LRLawSearcher` to share curves and fit with.
        law, law_options, fit_kwargs: the law to fit (and more :func:`hf_lrlaw.fit` keywords)
            when not sharing a searcher's.
        margin: stop when the trial's optimistic predicted final loss exceeds the best finished
            trial's final loss by this much (relative).
        level: the level of the law's interval (0.9: the optimistic end is the 5% quantile).
        grace: never stop before this fraction of a trial's schedule has run.
        min_points: never stop a trial with fewer reported points than this.
        anchor: shift each trial's prediction by its own recent residual (the mean of
            ``log(loss) - log(law)`` over its last points), so that a law that fits some runs
            a little off still judges each run on its own level.
        stop_diverged: stop a trial that diverged: it reported a NaN/inf loss, or its loss
            stayed 20% above its lowest for 3 reports (``tune_search.records.DIVERGENCE_*``).
    """

    def __init__(
        self,
        metric: str | None = None,
        mode: str | None = None,
        *,
        searcher: LRLawSearcher | None = None,
        law: str = "momentum",
        law_options: Mapping[str, Any] | None = None,
        fit_kwargs: Mapping[str, Any] | None = None,
        margin: float = 0.0025,
        level: float = 0.9,
        grace: float = 0.2,
        min_points: int = 5,
        anchor: bool = True,
        stop_diverged: bool = True,
    ) -> None:
        if mode not in (None, "min"):
            raise ValueError(f"LRLawStopper minimises a loss: mode must be 'min', got {mode!r}")
        if law != "auto" and law not in available_laws():
            raise ValueError(f"unknown law {law!r}; use 'auto' or one of {available_laws()}")
        super().__init__()
        self._searcher = searcher
        if searcher is not None:
            metric = metric or searcher.metric
        self._metric = metric
        self._mode = mode or ("min" if metric else None)
        self._own_book = (
            None
            if searcher is not None
            else CurveBook(metric, law, law_options, fit_kwargs=fit_kwargs)
        )
        self.margin = float(margin)
        self.level = float(level)
        self.grace = float(grace)
        self.min_points = int(min_points)
        self.anchor = bool(anchor)
        self.stop_diverged = bool(stop_diverged)
        self.decisions: list[dict[str, Any]] = []

    # -- Ray TrialScheduler API --------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if mode is not None and mode != "min":
            return False
        if metric and self.metric and metric != self.metric:
            return False
        if metric:
            self._metric = metric
        self._mode = "min"
        if self._own_book is not None:
            self._own_book.metric = self.metric
        return True

    @property
    def metric(self) -> str | None:
        if self._metric is None and self._searcher is not None:
            return self._searcher.metric
        return self._metric

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if not self.metric:
            raise ValueError(
                "LRLawStopper has no metric: pass LRLawStopper(metric=...) or "
                "TuneConfig(metric=..., mode='min')"
            )
        if "schedule" not in trial.config:
            raise ValueError(
                f"trial {trial.trial_id} has no config['schedule']: LRLawStopper "
                "needs each trial's schedule text (LRLawSearcher puts it there; "
                "with another search, use tune.grid_search over schedule texts)"
            )
        book = self._book
        if book is not None and trial.trial_id not in book.records:
            book.add_trial(trial.trial_id, str(trial.config["schedule"]), "external")

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        book, metric = self._book, self.metric
        book.metric = metric
        book.ingest(trial.trial_id, result, schedule=str(trial.config.get("schedule")))
        rec = book.records.get(trial.trial_id)
        if rec is None or "step" not in result or metric not in result:
            return TrialScheduler.CONTINUE
        step = result["step"]
        stop_at = trial.config.get("lrlaw_stop_step")
        if stop_at is not None and isinstance(step, (int, float)) and step >= stop_at:
            return self._decide(trial, "STOP", f"partial pilot reached step {stop_at}")
        loss = result[metric]
        if self.stop_diverged and not (isinstance(loss, (int, float)) and math.isfinite(loss)):
            return self._decide(trial, "STOP", f"reported {metric}={loss!r}")
        if self.stop_diverged and rec.status == DIVERGED:
            return self._decide(trial, "STOP", rec.note or "diverged")
        if rec.role == "pilot":
            return TrialScheduler.CONTINUE
        total = rec.total_steps
        if step + 1 < self.grace * total or len(rec.steps) < self.min_points or step >= total - 1:
            return TrialScheduler.CONTINUE
        fit = book.fit()
        if fit is None:
            return TrialScheduler.CONTINUE
        found = book.best_finished()
        if found is None or found[0].trial_id == trial.trial_id:
            return TrialScheduler.CONTINUE
        best_loss = found[1]
        try:
            optimistic, predicted = self._optimistic_final(fit, rec)
        except Exception:  # a prediction problem never stops a trial
            return TrialScheduler.CONTINUE
        if optimistic > best_loss * (1 + self.margin):
            return self._decide(
                trial,
                "STOP",
                f"predicted final {predicted:.5g} (optimistic {optimistic:.5g}) > best finished "
                f"{best_loss:.5g} x (1 + {self.margin})",
                step=step,
            )
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        if self._own_book is not None:
            self._own_book.complete(trial.trial_id, result, error=False)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        if self._own_book is not None:
            self._own_book.complete(trial.trial_id, None, error=True)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        if self._own_book is not None:
            self._own_book.complete(trial.trial_id, None, error=False)

    def debug_string(self) -> str:
        stopped = sum(1 for d in self.decisions if d["decision"] == "STOP")
        return f"LRLawStopper: {stopped} trial(s) stopped"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))

    # -- internals -----------------------------------------------------------------------------
    @property
    def _book(self) -> CurveBook:
        if self._searcher is not None:
            return self._searcher.book
        return self._own_book

    def _optimistic_final(self, fit: Any, rec: Any) -> tuple[float, float]:
        schedule = schedule_of(rec.schedule)
        lrs = schedule.lrs()
        mean, low, _ = fit.predict_interval(lrs, [len(lrs) - 1], level=self.level)
        mean, low = float(mean[0]), float(low[0])
        if self.anchor:
            steps = np.asarray(rec.steps, dtype=np.int64)
            losses = np.asarray(rec.losses, dtype=float)
            ok = np.isfinite(losses) & (losses > 0) & (np.cumsum(lrs)[steps] > 0)
            steps, losses = steps[ok], losses[ok]
            k = max(3, len(steps) // 5)
            if len(steps) >= 3:
                pred = fit.predict(lrs, steps[-k:])
                shift = float(np.mean(np.log(losses[-k:]) - np.log(pred)))
                mean, low = mean * math.exp(shift), low * math.exp(shift)
        return low, mean

    def _decide(self, trial: Trial, decision: str, why: str, step: int | None = None) -> str:
        self.decisions.append(
            {
                "trial_id": trial.trial_id,
                "decision": decision,
                "why": why,
                "step": step,
                "schedule": trial.config.get("schedule"),
            }
        )
        return TrialScheduler.STOP if decision == "STOP" else TrialScheduler.CONTINUE
