"""The schedule search's policy, free of Ray: pilots first, then the candidates the fitted law
ranks best, a recommendation from what finished, and when to stop.

:class:`SearchPolicy` decides; :class:`~tune_search.LRLawSearcher` is the thin
``ray.tune.search.Searcher`` adapter over it (as Ray's ``OptunaSearch`` is over an Optuna study).
Its bookkeeping, the :class:`~tune_search.records.CurveBook` of every trial's curve and the
joint fit on them, is :attr:`SearchPolicy.book`, which :class:`~tune_search.LRLawStopper` and
the report use too.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from hf_lrlaw.fit_result import Fit, FitError
from hf_lrlaw.laws import carries_peak_lr
from hf_lrlaw.priors import shipped_priors
from hf_lrlaw.ranking import Ranking, rank
from hf_lrlaw.schedules import Schedule
from hf_lrlaw.threads import numpy_blas_single_thread
from tune_search.branching import (
    BRANCH_KEY,
    SAVE_KEY,
    branch_pending,
    branch_source,
    save_steps,
)
from tune_search.inputs import candidates_of, check_arguments, load_prior_fit, pilot_items
from tune_search.optima import LawOptima
from tune_search.records import (
    CANDIDATE_ROLES,
    DIVERGED,
    STOPPED,
    CurveBook,
    schedule_of,
)
from tune_search.records import FINISHED as TRIAL_FINISHED
from tune_search.second_law import SecondLaw
from tune_search.space import (
    ScheduleSpace,
    default_law,
    family,
    fingerprint,
    several_peak_lrs,
)

__all__ = ["FINISHED", "PRIOR_MODEL_ERROR", "STATE_SCHEMA", "Calibration", "SearchPolicy"]

logger = logging.getLogger("tune_search")

STATE_SCHEMA = "tune_search.searcher/1"
FINISHED = "FINISHED"  # what suggest() returns when the search is over (Ray's Searcher.FINISHED)

# The law's relative error on the final loss of a schedule it has not seen run, before the search
# has measured its own: lrnoise's horizon-transfer error on the 124M grid (MAPE 0.44%,
# bench_peak_lr.py) and momentum's from half a run (0.56-0.59%, bench_early.py) are a
# log-normal sigma of about 0.5%.
PRIOR_MODEL_ERROR = 0.005
# Where the lrnoise law's fits in a search begin, as a fraction of the shortest pilot: the cut the
# law was chosen with among eleven forms (bench/peak_lr_forms, min_step=3000 of 25k-step runs).
# On the replay cells: 0.0071 -> 0.0012 nats of regret at 50k, 0.0043 either way at 25k; at 10%
# instead, 0.0035 at 50k (bench/RESULTS.md, replay worlds).
LRNOISE_MIN_STEP = 0.12


@dataclass(frozen=True)
class Calibration:
    """The law's measured error on unseen schedules: each full run's final loss against what the
    law predicted for it before it ran, and the relative sigma that implies (the prior
    :data:`PRIOR_MODEL_ERROR` counts as one miss: sigma^2 = (prior^2 + sum miss^2) / (1 + n))."""

    sigma: float
    misses: tuple[tuple[str, float, float], ...]  # (schedule, predicted before the run, actual)

    @property
    def bias(self) -> float | None:
        """Mean log(actual / predicted) over the misses; None before any."""
        if not self.misses:
            return None
        return float(np.mean([math.log(a / p) for _, p, a in self.misses]))


class SearchPolicy:
    """Which schedule to run next, and which to recommend (see :class:`~tune_search.LRLawSearcher`
    for the arguments; ``metric`` is the reported loss the book reads)."""

    def __init__(
        self,
        space: ScheduleSpace | Sequence[Schedule | str],
        metric: str | None = None,
        law: str | None = None,
        pilots: Sequence[Schedule | str] | None = None,
        top_k: int = 3,
        prior_fit: Fit | str | os.PathLike[str] | None = None,
        *,
        law_options: Mapping[str, Any] | None = None,
        pilot_steps: float | int | None = 0.5,
        margin: float = 0.0,
        level: float = 0.9,
        max_trials: int | None = None,
        diversify: bool = True,
        max_steps: int | None = None,
        fit_kwargs: Mapping[str, Any] | None = None,
        config_fn: Callable[[Schedule], Mapping[str, Any]] | None = None,
        seed: int = 0,
        branch: bool = True,
        max_checkpoints: int = 16,
        max_compute: float | None = None,
        optimized: bool = False,
        second_law: str | None = None,
    ) -> None:
        candidates, self.space_description, default_pilots = candidates_of(space, max_steps)
        several = several_peak_lrs(candidates)
        if law is None:  # the law that can choose the peak LR where the space holds several
            law = default_law(candidates)
        elif several and law != "auto" and not carries_peak_lr(law):
            logger.warning(
                "LRLaw search: the space spans peak LRs %.3g..%.3g, which the %s law does not "
                "model (more LR area is always lower loss in it, so it ranks the highest LR "
                "first); law='lrnoise' (the default for such a space) carries the LR across runs",
                min(c.peak_lr for c in candidates),
                max(c.peak_lr for c in candidates),
                law,
            )
        check_arguments(law, top_k, level, pilot_steps, fit_kwargs or {})
        if max_compute is not None and not max_compute > 0:
            raise ValueError(f"max_compute must be > 0 full runs, got {max_compute!r}")
        if isinstance(max_checkpoints, bool) or int(max_checkpoints) < 1:
            raise ValueError(f"max_checkpoints must be >= 1, got {max_checkpoints!r}")
        self._longest = max(c.total_steps for c in candidates)
        self._candidates: list[Schedule] = candidates
        self._texts = [str(s) for s in candidates]
        self._fingerprint = fingerprint(candidates)
        self.law = law
        self.law_options = dict(law_options or {})
        self.top_k = int(top_k)
        self.margin = float(margin)
        self.level = float(level)
        self.pilot_steps = pilot_steps
        self.config_fn = config_fn
        self.diversify = bool(diversify)
        self.seed = int(seed)
        self.branch = bool(branch)
        self.max_checkpoints = int(max_checkpoints)
        self.max_compute = None if max_compute is None else float(max_compute)
        self.optima = LawOptima() if optimized else None
        self.second = None if second_law is None else SecondLaw(second_law, several_lrs=several)

        self.fit_kwargs = dict(fit_kwargs or {})
        if (
            prior_fit is None
            and "prior" not in self.fit_kwargs
            and not self.law_options
            and law in shipped_priors()
        ):
            # Pilots are young runs: the prior learned on public curves supplies what their
            # data cannot tell yet, until a finished run with LR decay shows it.
            self.fit_kwargs["prior"] = "default"
            until_annealed = True
        else:
            until_annealed = False
        self.book = CurveBook(
            metric,
            law,
            self.law_options,
            fit_kwargs=self.fit_kwargs,
            default_prior_until_annealed=until_annealed,
        )
        self._prior: Fit | None = None
        self._prior_source: str | None = None
        if prior_fit is not None:
            if "prior" in self.fit_kwargs:
                raise ValueError("give prior_fit= or fit_kwargs['prior'], not both")
            self._prior, self._prior_source, self.book.prior_curves = load_prior_fit(
                prior_fit, law, self.law_options
            )
            if self._prior.law != law:
                logger.warning(
                    "LRLaw search: the prior fit is of the %s law; the search fits "
                    "that law (not %s)",
                    self._prior.law,
                    law,
                )
                self.law = self._prior.law
            self.book.fit_kwargs["prior"] = self._prior
        self._pilot_config: list[dict[str, Any]] = []
        if pilots is None:
            pilot_list = [] if self._prior is not None else default_pilots()
        else:
            pilot_list, self._pilot_config = pilot_items(pilots)
        self._pilots = [str(p) for p in pilot_list]
        self._pilot_config += [{} for _ in range(len(self._pilots) - len(self._pilot_config))]
        if law == "lrnoise" and "min_step" not in self.fit_kwargs and pilot_list:
            shortest = min(p.total_steps for p in pilot_list)
            self.book.fit_kwargs["min_step"] = round(LRNOISE_MIN_STEP * shortest)
        self.max_trials = (
            (len(self._pilots) + 3 * self.top_k) if max_trials is None else int(max_trials)
        )
        self._next_pilot = 0
        self._finished: str | None = None
        self._ranking: Ranking | None = None
        self._ranking_fit: Fit | None = None
        self._ranking_failed: frozenset[str] = frozenset()
        self._fit_used: str | None = None
        self._log: list[str] = []

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next trial's config (``{"schedule": text, ...}``), None (wait for running
        trials), or :data:`FINISHED`."""
        if self._finished:
            return FINISHED
        started = len(self.book.records)
        errored = [r for r in self.book.records.values() if r.status == "error"]
        if len(errored) >= 3 and len(errored) == started and not any(r.steps for r in errored):
            return self._finish_or_wait(
                f"the first {started} trials all errored before reporting a loss: the trainable "
                "seems broken (see the trials' error files in the Tune results)"
            )
        if started >= self.max_trials:
            return self._finish_or_wait(f"max_trials={self.max_trials} trials started")
        # 1. pilots
        if self._next_pilot < len(self._pilots):
            text = self._pilots[self._next_pilot]
            extra = self._pilot_config[self._next_pilot]
            if not extra and self._parent_pilot_pending(schedule_of(text)):
                return None  # it branches from an earlier pilot's checkpoint, not saved yet
            self._next_pilot += 1
            return self._issue(trial_id, text, "pilot", extra)
        if self.book.running(("pilot",)) and self._prior is None:
            return None  # the first ranking waits for the pilots
        ended = [r for r in self.book.records.values() if r.completed]
        if ended and len(ended) >= min(2, started) and self.book.n_points == 0:
            return self._finish_or_wait(
                f"the {len(ended)} trial(s) that ended reported no usable {self.book.metric!r} "
                "(see the messages for what they reported): nothing to fit, so no full run "
                "would be chosen better than at random; check the metric the trials report"
            )
        # 2. the full runs
        full = self.book.finished(CANDIDATE_ROLES)
        if full >= self.top_k:
            return self._finish_or_wait(f"top_k={self.top_k} candidates ran in full")
        if full + self.book.running(CANDIDATE_ROLES) >= self.top_k:
            return None
        ranking = self.ranking()
        if ranking is None:
            if self.book.running():
                return None
            text = self._fallback_candidate()
            if text is None:
                return self._finish_or_wait("every candidate was tried")
            self.note(
                f"no fit is available ({self.book.fit_error}); suggesting the next "
                f"untried candidate in fallback order: {text}"
            )
            return self._issue(trial_id, text, "fallback")
        open_ = self.open_candidates(ranking)
        if not open_:
            reason = (
                "every candidate was tried"
                if self._untried_count() == 0
                else "no remaining candidate can beat the best beyond the law's uncertainty"
            )
            return self._finish_or_wait(reason)
        if self.max_compute is not None:
            room = self.max_compute * self._longest - self.committed_steps()
            open_ = [r for r in open_ if self.cost(r.schedule) <= room]
            if not open_:
                return self._finish_or_wait(
                    f"max_compute={self.max_compute:g} full runs: no open candidate fits in the "
                    f"{max(room, 0) / self._longest:.2f} run(s) left"
                )
        pick = open_[0]
        if self.diversify:
            run = self._families_run()
            pick = next((r for r in open_ if family(r.schedule) not in run), pick)
        config = self._issue(trial_id, str(pick.schedule), "candidate")
        record = self.book.records[trial_id]
        record.predicted = (pick.predicted, pick.low, pick.high)
        record.calibrated = self.calibrated_interval(pick)
        return config

    def on_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """A trial reported ``result``."""
        self.book.ingest(trial_id, result)

    def on_complete(self, trial_id: str, result: Mapping[str, Any] | None, error: bool) -> None:
        """A trial ended (``error``: it raised); its last result is ingested first."""
        rec = self.book.complete(trial_id, result, error)
        if rec is None:
            return
        status = rec.status
        if rec.role == "pilot" and status == STOPPED and self._pilot_stop(rec.schedule) is not None:
            rec.note = f"partial pilot, ran to step {rec.steps[-1] if rec.steps else None}"
        self.note(
            f"trial {trial_id} {status}: {rec.schedule}"
            + (f" (final {self.book.metric} {rec.final_loss:.5g})" if rec.final_loss else "")
        )

    def get_state(self) -> dict[str, Any]:
        """The search so far, JSON-ready (:meth:`set_state` reads it back)."""
        return {
            "schema": STATE_SCHEMA,
            "fingerprint": self._fingerprint,
            "pilots": self._pilots,
            "pilot_config": self._pilot_config,
            "next_pilot": self._next_pilot,
            "finished": self._finished,
            "book": self.book.state(),
            "prior": self._prior.to_dict() if self._prior is not None else None,
            "prior_source": self._prior_source,
            "log": self._log,
            "top_k": self.top_k,
            "law": self.law,
            "optima": self.optima.texts if self.optima else [],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`get_state` (the same candidates; another space is refused)."""
        if not isinstance(state, Mapping) or state.get("schema") != STATE_SCHEMA:
            raise ValueError(f"not a saved LRLawSearcher state (schema {STATE_SCHEMA!r})")
        if state.get("fingerprint") != self._fingerprint:
            raise ValueError(
                "the saved search ran over a different candidate list than this searcher's "
                "space; restore with the same ScheduleSpace"
            )
        self._pilots = list(state["pilots"])
        self._pilot_config = [dict(c) for c in state.get("pilot_config", [])]
        self._pilot_config += [{} for _ in range(len(self._pilots) - len(self._pilot_config))]
        self._next_pilot = int(state["next_pilot"])
        self._finished = state.get("finished")
        self.book.set_state(state["book"])
        self._prior = Fit.from_dict(state["prior"]) if state.get("prior") else self._prior
        self._prior_source = state.get("prior_source")
        if self._prior is not None:
            self.book.fit_kwargs["prior"] = self._prior
        self._log = list(state.get("log", []))
        if self.optima is not None:
            self.optima = LawOptima(state.get("optima", []))
        self._ranking, self._ranking_fit = None, None

    def __getstate__(self) -> dict[str, Any]:
        # the cached ranking is rebuilt from the fit on demand
        d = self.__dict__.copy()
        d["_ranking"], d["_ranking_fit"], d["_ranking_failed"] = None, None, frozenset()
        return d

    # -- decisions -------------------------------------------------------------------------------
    def current_fit(self) -> Fit | None:
        """The fit the ranking uses: the joint fit on every reported curve (with the prior fit
        as its prior, when given), or the prior fit itself before any curve can be fitted."""
        own = self.book.fit()
        if own is not None:
            self._fit_used = "fitted on the reported curves" + (
                f" with prior {self._prior_source}" if self._prior is not None else ""
            )
            return own
        if self._prior is not None:
            self._fit_used = f"prior fit ({self._prior_source})"
            return self._prior
        self._fit_used = None
        return own

    def ranking(self) -> Ranking | None:
        """Every candidate ranked by predicted final loss with the current fit, except those
        whose trial errored or diverged (they cannot be recommended). None when no fit is
        possible yet."""
        fit = self.current_fit()
        if fit is None:
            return None
        failed = frozenset(
            r.schedule for r in self.book.records.values() if r.status in ("error", "diverged")
        )
        ceiling = self.diverged_peak_lr()
        if (
            self._ranking is not None
            and self._ranking_fit is fit
            and self._ranking_failed == failed
        ):
            return self._ranking
        viable = [
            c
            for c, t in zip(self._candidates, self._texts)
            if t not in failed and (ceiling is None or c.peak_lr < ceiling * (1 - 1e-9))
        ]
        if not viable:
            return None
        try:
            with numpy_blas_single_thread():
                if self.optima is not None:
                    found = self.optima.current(fit, viable, self.book.tried(), self.note)
                    viable += [s for s in found if str(s) not in failed]
                offset = None
                if self.second is not None:
                    curves, kwargs = self.book.curves(), self.book.fit_kwargs
                    offset = self.second.offset(curves, fit, viable, kwargs, self.note)
                self._ranking = rank(
                    fit, viable, level=self.level, seed=self.seed, noise=False, offset=offset
                )
        except (FitError, ValueError, FloatingPointError) as exc:
            self.note(f"ranking failed: {exc}")
            return None
        self._ranking_fit, self._ranking_failed = fit, failed
        return self._ranking

    def diverged_peak_lr(self) -> float | None:
        """The lowest peak LR a trial diverged at: no candidate at it or above is ranked (the
        laws describe stable training and cannot see the edge of stability); None if none."""
        peaks = [
            schedule_of(r.schedule).peak_lr
            for r in self.book.records.values()
            if r.status == DIVERGED
        ]
        return min(peaks) if peaks else None

    def calibration(self) -> Calibration:
        """The law's error on schedules it had not seen run, measured on this search's own full
        runs (see :class:`Calibration`)."""
        misses = []
        for rec in self.book.records.values():
            if rec.role in CANDIDATE_ROLES and rec.predicted is not None:
                actual = rec.final_loss
                if actual is not None and rec.status == TRIAL_FINISHED and rec.predicted[0] > 0:
                    misses.append((rec.schedule, float(rec.predicted[0]), float(actual)))
        squares = sum(math.log(a / p) ** 2 for _, p, a in misses)
        sigma = math.sqrt((PRIOR_MODEL_ERROR**2 + squares) / (1 + len(misses)))
        return Calibration(sigma, tuple(misses))

    def calibrated_interval(self, row: Any) -> tuple[float, float]:
        """A ranked candidate's interval widened by the law's error measured on this search's
        runs (:meth:`calibration`), in log space: ``predicted * exp(+-z * sqrt(sd^2 +
        sigma^2))`` with ``sd`` the parameter interval's. What the report shows; the stop rule
        keeps the parameter interval (the calibrated one chose no better on the replay worlds,
        bench/RESULTS.md)."""
        sigma = self.calibration().sigma
        z = float(norm.ppf(0.5 + self.level / 2))
        mean, low, high = float(row.predicted), float(row.low), float(row.high)
        if not (mean > 0 and low > 0 and high > 0 and z > 0):
            return low, high
        sd = max(math.log(mean / low), math.log(high / mean)) / z
        half = z * math.sqrt(sd**2 + sigma**2)
        return mean * math.exp(-half), mean * math.exp(half)

    def surprised(self) -> bool:
        """Whether the last candidate that finished ended outside the calibrated interval the
        law gave it before it ran: then the law's ranking is not trusted to end the search."""
        done = [
            r
            for r in self.book.records.values()
            if r.role in CANDIDATE_ROLES and r.status == TRIAL_FINISHED and r.calibrated
        ]
        if not done:
            return False
        last = done[-1]
        actual = last.final_loss
        return actual is not None and not last.calibrated[0] <= actual <= last.calibrated[1]

    def open_candidates(self, ranking: Ranking | None = None) -> list:
        """Untried candidates that may still beat the best: the predicted leader, and every
        candidate whose correlated gap to it could be below ``-margin``, unless its optimistic
        bound is already above the best finished run's actual final loss; when the last full
        run ended outside its calibrated interval (:meth:`surprised`), every candidate whose
        optimistic bound is below that. While no run has finished and all of those were tried,
        the untried rest, best predicted first."""
        ranking = ranking or self.ranking()
        if ranking is None:
            return []
        tried = self.book.tried()
        best = self.book.best_finished()
        open_ = {str(ranking.best.schedule)} | {
            str(r.schedule) for r in ranking.contenders(-self.margin)
        }
        floor = best[1] * (1 - self.margin) if best is not None else math.inf
        surprised = best is not None and self.surprised()
        found = [
            r
            for r in ranking
            if (str(r.schedule) in open_ or surprised)
            and str(r.schedule) not in tried
            and r.low < floor
        ]
        if not found and best is None:  # nothing finished to beat yet: go down the ranking
            found = [r for r in ranking if str(r.schedule) not in tried]
        return found

    def recommendation(self) -> dict[str, Any]:
        """The schedule to use: the finished full-length run of a candidate (or of a pilot at a
        candidate horizon) with the lowest actual final loss; before any, the law's predicted
        best. Keys: ``schedule`` (:class:`Schedule`), ``text``, ``source`` ("finished run" or "law prediction"),
        ``final_loss`` (the run's final loss, measurement noise averaged out over its last
        points with the law's local shape), ``last_loss`` (the last reported value),
        ``trial_id``, and the law's ``predicted`` final loss with ``low``/``high``."""
        ranking = self.ranking()  # refits first, so that smoothing uses the latest fit
        # a pilot that ran a whole schedule of a candidate horizon is a schedule to use too
        horizons = {c.total_steps for c in self._candidates}
        usable = (
            set(self._texts)
            | set(self.optima.texts if self.optima else ())
            | {t for t in self._pilots if schedule_of(t).total_steps in horizons}
        )
        found = self.book.best_finished(allowed=usable) or self.book.best_finished()
        row = None
        if found is not None:
            best, smoothed = found
            out = {
                "schedule": Schedule.parse(best.schedule),
                "text": best.schedule,
                "source": "finished run",
                "final_loss": smoothed,
                "last_loss": best.final_loss,
                "trial_id": best.trial_id,
            }
            if ranking is not None:
                row = next((r for r in ranking if str(r.schedule) == best.schedule), None)
        elif ranking is not None:
            row = ranking.best
            out = {
                "schedule": row.schedule,
                "text": str(row.schedule),
                "source": "law prediction",
                "final_loss": None,
                "last_loss": None,
                "trial_id": None,
            }
        else:
            raise RuntimeError(
                "no recommendation yet: no trial has finished and no fit exists"
                + (f" ({self.book.fit_error})" if self.book.fit_error else "")
            )
        if row is not None:
            out.update(predicted=row.predicted, low=row.low, high=row.high, rank=row.rank)
        return out

    # -- views -------------------------------------------------------------------------------------
    @property
    def candidates(self) -> list[Schedule]:
        return list(self._candidates)

    @property
    def pilots(self) -> list[str]:
        return list(self._pilots)

    @property
    def finished_reason(self) -> str | None:
        """Why the search finished (None while it goes on)."""
        return self._finished

    @property
    def messages(self) -> list[str]:
        """Problems met on the way (bad reports, errored trials, fit failures), in order."""
        return list(self.book.messages)

    @property
    def log(self) -> list[str]:
        """What the searcher decided, in order."""
        return list(self._log)

    def trials(self) -> list[dict[str, Any]]:
        """Every trial the searcher started: id, schedule, role, status, steps run, final loss."""
        return [r.summary() for r in self.book.records.values()]

    def curves(self) -> list:
        """The reported curves as :class:`~hf_lrlaw.LossCurve` (prior curves first)."""
        return self.book.curves()

    @property
    def compute_steps(self) -> int:
        """Optimizer steps the trials ran in total (as far as they reported)."""
        return self.book.compute_steps

    def summary(self) -> str:
        """A few lines: the space, the fit, every trial, why the search finished."""
        second = f", checked by {self.second.law}" if self.second else ""
        lines = [f"LRLawSearcher over {self.space_description}; law {self.law}{second}"]
        fit = self.current_fit()
        if fit is not None:
            lines.append(f"fit: {self._fit_used}; " + fit.summary().splitlines()[0])
        for t in self.trials():
            final = f"{t['final_loss']:.5g}" if t["final_loss"] is not None else "-"
            lines.append(
                f"  {t['trial_id']} {t['role']:>9} {t['status']:>8} "
                f"{t['steps_run']:>7}/{t['total_steps']} final {final}  {t['schedule']}"
            )
        if self._finished:
            lines.append(f"finished: {self._finished}")
        return "\n".join(lines)

    # -- internals -------------------------------------------------------------------------------
    def _issue(
        self, trial_id: str, text: str, role: str, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        self.book.add_trial(trial_id, text, role)
        config: dict[str, Any] = {}
        if self.config_fn is not None:
            config.update(self.config_fn(Schedule.parse(text)))
        config.update(extra or {})
        config["schedule"] = text
        stop = self._pilot_stop(text) if role == "pilot" else None
        if stop is not None:
            config["lrlaw_stop_step"] = stop
        source = None
        if self.branch:
            schedule = schedule_of(text)
            # a trial with its own config (a pilot repeated with another seed) runs from step 0
            source = None if extra else self._branch_source(schedule)
            if source is not None:
                parent, k, where = source
                config[BRANCH_KEY] = {"trial_id": parent, "step": k, "checkpoint": where}
                self.book.records[trial_id].branch = (parent, k)
            tried = self.book.tried()
            others = [c for c, t in zip(self._candidates, self._texts) if t not in tried]
            runs_to = None if stop is None else stop + 1
            saves = [] if extra else save_steps(schedule, others, runs_to, self.max_checkpoints)
            if not extra:  # the pilots still to come branch from it: their points are kept
                waiting = [schedule_of(t) for t in self._pilots[self._next_pilot :]]
                saves = sorted(set(saves) | set(save_steps(schedule, waiting, runs_to)))
            saves = [k for k in saves if source is None or k > source[1]]
            self.book.records[trial_id].planned = saves
            if saves:
                config[SAVE_KEY] = saves
        branched = "" if source is None else f" (from {source[0]}'s checkpoint at {source[1]})"
        self.note(f"suggest {role} {trial_id}: {text}{branched}")
        return config

    def _parent_pilot_pending(self, schedule: Schedule) -> bool:
        return self.branch and branch_pending(self.book.records.values(), schedule)

    def _branch_source(self, schedule: Schedule) -> tuple[str, int, str] | None:
        return branch_source(self.book.records.values(), schedule)

    def cost(self, schedule: Schedule) -> int:
        """The updates a trial of ``schedule`` would run now (less a checkpoint it can branch
        from)."""
        source = self._branch_source(schedule) if self.branch else None
        return schedule.total_steps - (source[1] if source else 0)

    def committed_steps(self) -> int:
        """Updates run so far, plus what the running trials still have to run."""
        total = 0
        for rec in self.book.records.values():
            if rec.completed:
                total += rec.compute
            else:
                stop = self._pilot_stop(rec.schedule) if rec.role == "pilot" else None
                end = rec.total_steps if stop is None else stop + 1
                total += max(end - (rec.branch[1] if rec.branch else 0), rec.compute)
        return total

    def _pilot_stop(self, text: str) -> int | None:
        """The last step a pilot runs to: ``pilot_steps`` of the longest candidate horizon (a
        pilot shorter than that runs in full)."""
        if self.pilot_steps is None:
            return None
        total = Schedule.parse(text).total_steps
        if isinstance(self.pilot_steps, float):
            stop = max(1, round(self.pilot_steps * self._longest)) - 1
        else:
            stop = int(self.pilot_steps) - 1
        return None if stop >= total - 1 else stop

    def _finish_or_wait(self, reason: str) -> str | None:
        if self.book.running():
            return None
        self._finished = reason
        self.note(f"finished: {reason}")
        return FINISHED

    def _families_run(self) -> set:
        return {
            family(Schedule.parse(r.schedule))
            for r in self.book.records.values()
            if r.role != "pilot" or r.status == TRIAL_FINISHED
        }

    def _untried_count(self) -> int:
        return len(set(self._texts) - self.book.tried())

    def _fallback_candidate(self) -> str | None:
        tried = self.book.tried()
        order = self._texts
        if self._prior is not None:
            mean = self._prior.predict_final(self._candidates)[0]
            order = [self._texts[i] for i in np.argsort(mean, kind="stable")]
        return next((t for t in order if t not in tried), None)

    def note(self, text: str) -> None:
        """Add a decision to the log."""
        self._log.append(text)
        logger.info("LRLaw search: %s", text)
