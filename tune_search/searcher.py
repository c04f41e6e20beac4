"""LRLawSearcher: a Ray Tune Searcher that spends full runs only on the schedules the law ranks best.

How it searches: a few pilot schedules run first (constant and cosine, the pair the papers fit
their laws on; half-length by default), unless a prior fit of an earlier run is given. The law is
fitted jointly on every curve reported so far and every candidate is ranked by its predicted
final loss, with intervals from joint draws of the parameters (the predictions of two schedules
share the law's uncertainty, so their difference is judged, not two separate intervals). The
best untried candidate runs in full (preferring one from a family of schedules that has no run
yet), the law is refitted as results arrive, and the searcher returns FINISHED when ``top_k``
candidates ran in full or when no remaining candidate can beat the best beyond the law's
uncertainty (or before ``max_compute`` would be passed). Each trial saves checkpoints where
untried candidates' LRs leave its own; a WSD cooldown then resumes from the latest such
checkpoint and pays only for its decay (:mod:`tune_search.branching`). The recommendation is
the finished run with the lowest actual final loss.

The decisions are made by a Ray-free :class:`~tune_search.policy.SearchPolicy`; this class is
the ``ray.tune.search.Searcher`` adapter over it, as Ray's ``OptunaSearch`` is over a study.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.variant_generator import _has_unresolved_values

from hf_lrlaw.fit_result import Fit
from hf_lrlaw.ranking import Ranking
from hf_lrlaw.schedules import Schedule
from hf_lrlaw.schedules.labels import schedule_label
from tune_search.branching import BRANCH_KEY, remove_branch_checkpoints
from tune_search.policy import FINISHED, Calibration, SearchPolicy
from tune_search.records import CurveBook
from tune_search.space import ScheduleSpace

__all__ = ["LRLawSearcher", "trial_dirname"]


class LRLawSearcher(Searcher):
    """Rank every candidate schedule by the final loss the fitted law predicts; run the best.

    Example (a simulated world stands in for training: it reports a hidden law's curves):

    .. code-block:: python

        from ray import tune
        from tune_search import LRLawSearcher, LRLawStopper, ScheduleSpace, trial_dirname
        from tune_search.simulate import SimulatedWorld

        world = SimulatedWorld()
        space = ScheduleSpace(world.peak_lr, world.total_steps, world.warmup_steps)
        searcher = LRLawSearcher(space, metric="loss", mode="min", top_k=2,
                                 law_options=world.fit_options("momentum"))
        tuner = tune.Tuner(
            world.trainable(metric="loss"),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1,
                                        scheduler=LRLawStopper(searcher=searcher),
                                        max_concurrent_trials=2,
                                        trial_dirname_creator=trial_dirname),
        )
        tuner.fit()
        print(searcher.recommendation()["text"])
        print(searcher.ranking().to_markdown(5))

    Contract with trials: the suggested config holds the schedule as text under
    ``config["schedule"]`` (merged with the rest of ``param_space``); the trial runs exactly
    that schedule (``Schedule.parse(config["schedule"])``, then ``to_hf()`` or ``to_torch()``;
    :mod:`tune_search.trainable` does it for a ``Trainer``) and reports
    ``tune.report({"step": s, <metric>: loss})`` at its logging steps, where ``s`` is the
    0-based index of the last optimizer update before the loss was measured (the
    :class:`~hf_lrlaw.LossCurve` convention: an eval loss at Trainer ``global_step`` g is step
    ``g - 1``). A window-mean loss (the Trainer's train ``loss``) may add ``"window": w``, the
    number of steps it averages. A partial pilot's config also holds
    ``config["lrlaw_stop_step"]``: the trial may stop after reporting that step
    (:class:`~tune_search.LRLawStopper` stops it otherwise). Set ``num_samples=-1`` (or a cap):
    the searcher returns FINISHED itself. Reports without the metric or ``step``, NaN losses,
    steps outside the schedule, and trials that error are refused or recorded with a message
    (:attr:`messages`); the search goes on with what it has.

    Args:
        space: a :class:`~tune_search.ScheduleSpace` or a list of candidate schedules (or texts).
        metric: the reported loss (e.g. "eval_loss"). None: taken from ``TuneConfig(metric=...)``
            through ``set_search_properties`` (Tune calls it only when ``param_space`` is
            non-empty; pass ``metric=`` here otherwise).
        mode: "min" (a loss); "max" is refused.
        law: the law to fit ("momentum", "multipower", "power", "lrnoise" or "auto"). None:
            "lrnoise" (whose parameters hold across peak LRs) when the candidates differ in
            peak LR, else "momentum".
        law_options: options of the law (e.g. ``{"lam": 0.99}`` for short runs).
        pilots: schedules to run before the first fit. None: ``space.pilots()`` (constant and
            cosine at the space's reference setting; over several peak LRs, WSD runs of half
            the horizon at the lowest, middle and highest), or none when ``prior_fit`` is given.
            ``[]``: no pilots.
        top_k: how many candidates to run in full (pilots not counted); the search finishes
            when they are done, or earlier when no remaining candidate can beat the best.
        prior_fit: a :class:`~hf_lrlaw.Fit`, or a path to a saved Fit or to the callback's
            ``record.json`` (an earlier run of the same recipe): it ranks before any pilot, so
            no default pilots run, and it is the prior of every later fit (``hf_lrlaw.fit(...,
            prior=...)``); a record's curves also join the fits.
        pilot_steps: run pilots only this far: a fraction of the longest candidate horizon
            (float; default 0.5, the first half) or a step count (int); a shorter pilot runs
            in full; None or 1.0 runs them all in full. A partial
            pilot's config carries ``lrlaw_stop_step``; the trial (or ``LRLawStopper``) stops
            there, and a trial that runs on anyway only gives the fit more data.
        margin: a remaining candidate gets a full run only if the law cannot rule out that it
            beats the predicted best by more than this (relative; 0 = at all).
        level: the level of the law's intervals (0.9).
        max_trials: most trials to start, pilots included (default: pilots + 3 * top_k).
        diversify: prefer, among the candidates still open, the best one of a family (kind and
            decay shape, see :func:`~tune_search.space.family`) that has no run yet, so that a
            law's bias does not spend every full run on near-duplicates.
        max_steps: the most optimizer steps a trial can run: longer candidates are dropped
            (with one warning) instead of failing trials.
        fit_kwargs: more keyword arguments for :func:`hf_lrlaw.fit`, e.g. ``{"n_starts": 8}``.
            Unless ``prior_fit`` or ``law_options`` is given, or the law has no shipped prior
            (lrnoise), ``prior="default"`` (learned on public curves) is used until a trial
            whose LR decays to half its peak or less has finished, then the data alone;
            ``{"prior": None}`` fits the data alone throughout, ``{"min_step": n}`` leaves out
            points before step n (an initial plateau; lrnoise's default is 12% of the
            shortest pilot, the cut the law was chosen with).
        config_fn: optional ``Schedule -> dict`` of extra config keys per suggestion (e.g.
            ``Schedule.to_training_args`` for a plain Trainer in ``hyperparameter_search``).
        seed: seeds the ranking's joint draws.
        branch: ask each trial to save checkpoints where untried candidates' LRs leave its
            own (``config["lrlaw_save_steps"]``), and start a candidate from the latest such
            checkpoint of a trial whose LRs it shares up to there (``config["lrlaw_branch"]``):
            a WSD cooldown then pays only for its decay (:mod:`tune_search.branching`; the
            trainables here do it, a trainable that ignores the keys runs every trial in full).
            Needs the trials' folders to be readable from every worker (one machine, or a
            shared ``storage_path``); a trial that cannot find its checkpoint runs from step 0.
        max_checkpoints: the most checkpoints one trial is asked to save (evenly thinned).
        max_compute: a cap on the whole search's compute in full runs of the longest
            candidate (pilots and running trials' remaining steps included): no candidate is
            started that would pass it. None: no cap but ``top_k`` and ``max_trials``.
        optimized: add the law's own optimal schedule (:func:`hf_lrlaw.optimize`, a
            piecewise-linear schedule) at each horizon of the space to the candidates, refitted
            with the law until it has run (:mod:`tune_search.optima`); it runs for real when
            it ranks best, like any candidate. An optimum that idles at its floor LR (the
            momentum law's artefact) is left out, with a note.
        second_law: another law fitted on the same curves (e.g. "multipower" beside
            "momentum"); each candidate is ranked by the larger of the two predictions, so that
            neither law's boldest extrapolation is run first (:mod:`tune_search.second_law`).
    """

    def __init__(
        self,
        space: ScheduleSpace | Sequence[Schedule | str],
        metric: str | None = None,
        mode: str | None = "min",
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
        if mode not in (None, "min"):
            raise ValueError(f"LRLawSearcher minimises a loss: mode must be 'min', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.policy = SearchPolicy(
            space,
            metric,
            law,
            pilots,
            top_k,
            prior_fit,
            law_options=law_options,
            pilot_steps=pilot_steps,
            margin=margin,
            level=level,
            max_trials=max_trials,
            diversify=diversify,
            max_steps=max_steps,
            fit_kwargs=fit_kwargs,
            config_fn=config_fn,
            seed=seed,
            branch=branch,
            max_checkpoints=max_checkpoints,
            max_compute=max_compute,
            optimized=optimized,
            second_law=second_law,
        )
        self._num_samples_warned = False

    # -- Ray Searcher API ------------------------------------------------------------------------
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Take ``metric``/``mode`` from ``TuneConfig`` when this searcher has none; return False
        (as Ray's searchers do) rather than override a different metric given here, or when
        ``param_space`` holds search-space definitions this searcher does not sample."""
        if config and _has_unresolved_values(config):
            return False
        if mode is not None and mode != "min":
            raise ValueError(
                f"LRLawSearcher minimises a loss: mode must be 'min', got TuneConfig(mode={mode!r})"
            )
        if metric and self._metric and metric != self._metric:
            return False
        if metric:
            self._metric = metric
            self.book.metric = metric
        self._mode = "min"
        if isinstance(config, Mapping) and "schedule" in config:
            self.policy.note(
                "param_space has a 'schedule' key: each trial's suggested schedule replaces it"
            )
        samples = spec.get("num_samples")
        needed = len(self.policy.pilots) + self.policy.top_k
        if isinstance(samples, int) and 0 < samples < needed and not self._num_samples_warned:
            self._num_samples_warned = True
            self.book.warn(
                None,
                f"num_samples={samples} lets Tune start only {samples} "
                f"trial(s); this search wants {len(self.policy.pilots)} pilot(s) + "
                f"top_k={self.policy.top_k} full runs. Set num_samples=-1: the "
                "searcher finishes by itself",
            )
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return False  # the ConcurrencyLimiter limits; the searcher caps its own full runs

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self._metric:
            raise RuntimeError(
                "LRLawSearcher has no metric: pass LRLawSearcher(metric='eval_loss', ...) or "
                "TuneConfig(metric=...) with a non-empty param_space (Tune passes TuneConfig's "
                "metric to a searcher only then)"
            )
        self.book.metric = self._metric
        out = self.policy.suggest(trial_id)
        return Searcher.FINISHED if out == FINISHED else out

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.policy.on_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        self.policy.on_complete(trial_id, result, error)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ):
        raise NotImplementedError(
            "LRLawSearcher needs whole curves, not single values: give earlier runs as "
            "prior_fit= (a saved Fit or the callback's record.json)"
        )

    def save(self, checkpoint_path: str) -> None:
        """Write the search state (JSON) so that ``Tuner.restore`` resumes without repeating
        finished trials."""
        Path(checkpoint_path).write_text(json.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        """Read a state written by :meth:`save` (the same space; a different one is refused)."""
        try:
            state = json.loads(Path(checkpoint_path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{checkpoint_path}: not a saved LRLawSearcher state ({exc})"
            ) from None
        self.set_state(state)

    def get_state(self) -> dict[str, Any]:
        return {**self.policy.get_state(), "metric": self._metric, "mode": self._mode}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.policy.set_state(state)
        self._metric = state.get("metric") or self._metric
        self._mode = state.get("mode") or self._mode
        self.book.metric = self._metric

    # -- the policy's decisions and views --------------------------------------------------------
    @property
    def book(self) -> CurveBook:
        """The search's bookkeeping (:class:`~tune_search.records.CurveBook`): every trial's
        record and curve, and the joint fit on them; the stopper and the report read it."""
        return self.policy.book

    @property
    def space_description(self) -> str:
        """One line: how many candidates of which kinds."""
        return self.policy.space_description

    @property
    def law(self) -> str:
        return self.policy.law

    @property
    def top_k(self) -> int:
        return self.policy.top_k

    @property
    def max_trials(self) -> int:
        return self.policy.max_trials

    @property
    def candidates(self) -> list[Schedule]:
        return self.policy.candidates

    @property
    def pilots(self) -> list[str]:
        return self.policy.pilots

    @property
    def finished_reason(self) -> str | None:
        """Why the searcher returned FINISHED (None while it goes on)."""
        return self.policy.finished_reason

    @property
    def messages(self) -> list[str]:
        """Problems met on the way (bad reports, errored trials, fit failures), in order."""
        return self.policy.messages

    @property
    def log(self) -> list[str]:
        """What the searcher decided, in order."""
        return self.policy.log

    @property
    def compute_steps(self) -> int:
        """Optimizer steps the trials ran in total (as far as they reported)."""
        return self.policy.compute_steps

    def current_fit(self) -> Fit | None:
        """See :meth:`SearchPolicy.current_fit`."""
        return self.policy.current_fit()

    def ranking(self) -> Ranking | None:
        """See :meth:`SearchPolicy.ranking`."""
        return self.policy.ranking()

    def open_candidates(self, ranking: Ranking | None = None) -> list:
        """See :meth:`SearchPolicy.open_candidates`."""
        return self.policy.open_candidates(ranking)

    def recommendation(self) -> dict[str, Any]:
        """See :meth:`SearchPolicy.recommendation`."""
        return self.policy.recommendation()

    def calibration(self) -> Calibration:
        """The law's error on schedules it had not seen run, measured on this search's full
        runs (see :class:`Calibration`): measured and reported; the stop rule does not use it
        (widening its intervals by it did not choose better on the replay worlds)."""
        return self.policy.calibration()

    def trials(self) -> list[dict[str, Any]]:
        """Every trial the searcher started: id, schedule, role, status, steps run, final loss."""
        return self.policy.trials()

    def curves(self) -> list:
        """The reported curves as :class:`~hf_lrlaw.LossCurve` (prior curves first)."""
        return self.policy.curves()

    def summary(self) -> str:
        return self.policy.summary()

    def remove_checkpoints(
        self, experiment_path: str | os.PathLike[str] | None = None
    ) -> list[str]:
        """Delete the checkpoints saved for branched cooldowns once the search is over (e.g.
        after ``Trainer.hyperparameter_search``; ``search_schedules`` does it unless told to
        keep them), and their copies in ``experiment_path`` (a local Tune experiment folder,
        e.g. ``ResultGrid.experiment_path``); returns the folders removed (see
        ``branching.remove_branch_checkpoints``)."""
        mirrors = [] if experiment_path is None else [os.fspath(experiment_path)]
        if any("://" in m for m in mirrors):
            mirrors = []  # remote storage: Tune's own business
        return remove_branch_checkpoints(self.policy.book.records.values(), mirrors)


def trial_dirname(trial: Any) -> str:
    """A trial's folder name from its id and schedule, e.g. ``a1b2c_00003_wsd_lr=0.003_decay=0.2``
    (``tune.TuneConfig(trial_dirname_creator=trial_dirname)``; Tune's default spells out the
    whole config, a branch's checkpoint path included)."""
    config = getattr(trial, "config", None) or {}
    label = schedule_label(str(config.get("schedule", "")), width=48) if config else ""
    label = re.sub(r"[^A-Za-z0-9=.+-]+", "_", label.replace("\u2026", "")).strip("_")
    suffix = "_branch" if config.get(BRANCH_KEY) else ""
    return "_".join(p for p in (str(trial.trial_id), label) if p) + suffix
