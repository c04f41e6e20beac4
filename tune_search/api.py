"""search_schedules: the whole schedule search on a Hugging Face Trainer setup, in one call.

>>> result = search_schedules(                                  # doctest: +SKIP
...     model_init=make_model, train_dataset=train, eval_dataset=val,
...     peak_lr=3e-3, total_steps=2000, warmup_steps=100,
...     training_args={"per_device_train_batch_size": 32, "eval_steps": 100},
...     output_dir="runs/search")
>>> result.recommended                                           # doctest: +SKIP
Schedule.parse('wsd(peak_lr=0.003, total_steps=2000, warmup_steps=100, decay_fraction=0.2, ...)')
>>> result.ranking.to_markdown(5)                                # doctest: +SKIP

Pilots run first, the law is fitted on their curves, every candidate is ranked by predicted final
loss, the best few run in full (``LRLawStopper`` cuts those the law is sure will lose), and the
output folder gets ``recommended.json``, ``report.md`` + ``report.png``, ``ranking.csv``,
``fit.json`` and ``trials.json``. Ray: an existing connection is used as is; otherwise
``ray.init(address=address)`` (None starts a local instance). Trial results go to
``storage_path`` (shared storage or ``s3://...`` on a cluster); ``resume=True`` continues an
interrupted search with ``Tuner.restore`` without repeating finished trials.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_lrlaw.fitting import Fit
from hf_lrlaw.ranking import Ranking
from hf_lrlaw.schedules import Schedule
from tune_search.report import hf_form, write_report
from tune_search.searcher import LRLawSearcher, trial_dirname
from tune_search.space import ScheduleSpace
from tune_search.stopper import LRLawStopper

__all__ = ["SearchResult", "search_schedules"]

logger = logging.getLogger("tune_search")


@dataclass
class SearchResult:
    """What a search found and where it wrote it."""

    recommended: Schedule
    recommendation: dict[str, Any]
    ranking: Ranking | None
    fit: Fit | None
    trials: list[dict[str, Any]]
    searcher: LRLawSearcher
    files: dict[str, Path] = field(default_factory=dict)
    experiment_path: str = ""
    messages: list[str] = field(default_factory=list)

    @property
    def recommended_hf(self) -> dict[str, Any]:
        """The transformers form of the recommendation (see :func:`tune_search.report.hf_form`)."""
        return hf_form(self.recommended)

    @property
    def report_path(self) -> Path | None:
        return self.files.get("report")


def search_schedules(
    *,
    model_init: Callable[[], Any] | None = None,
    train_dataset: Any = None,
    eval_dataset: Any = None,
    training_args: Mapping[str, Any] | None = None,
    data_collator: Any = None,
    space: ScheduleSpace | Sequence[Schedule | str] | None = None,
    peak_lr: float | Sequence[float] | None = None,
    total_steps: int | Sequence[int] | None = None,
    warmup_steps: int | float | Sequence[int | float] = 0,
    metric: str = "eval_loss",
    law: str | None = None,
    law_options: Mapping[str, Any] | None = None,
    pilots: Sequence[Schedule | str] | None = None,
    pilot_steps: float | int | None = 0.5,
    top_k: int = 3,
    prior_fit: Fit | str | os.PathLike[str] | None = None,
    margin: float = 0.0,
    fit_kwargs: Mapping[str, Any] | None = None,
    stopper: bool = True,
    branch: bool = True,
    max_compute: float | None = None,
    optimized: bool = False,
    second_law: str | None = None,
    trainable: Callable[[dict[str, Any]], None] | None = None,
    max_concurrent_trials: int | None = None,
    resources_per_trial: Mapping[str, float] | None = None,
    output_dir: str | os.PathLike[str] = "lrlaw_search",
    storage_path: str | None = None,
    name: str = "lrlaw_search",
    address: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    lrlaw_callback: Mapping[str, Any] | bool | None = None,
    callbacks: Sequence[Any] = (),
    keep_checkpoints: bool = False,
    verbose: int = 0,
) -> SearchResult:
    """Search the schedule space with pilots + law + a few full runs; write the report.

    Args:
        model_init, train_dataset, eval_dataset, training_args, data_collator: the Trainer
            setup (see :func:`tune_search.trainable.hf_trainable`); learning rate, steps,
            warmup and scheduler come from each trial's schedule.
        space: the candidates; default ``ScheduleSpace(peak_lr, total_steps, warmup_steps)``
            with the default kinds (several hundred candidates).
        metric: "eval_loss" or "loss" (train loss), or what ``trainable`` reports.
        law, law_options, pilots, pilot_steps, top_k, prior_fit, margin, fit_kwargs, branch,
            max_compute, optimized, second_law: see :class:`~tune_search.LRLawSearcher` (``branch``: cooldowns resume
            from a checkpoint of a trial with the same LRs so far; the checkpoints are written
            under each trial's Tune folder).
        stopper: attach :class:`~tune_search.LRLawStopper` (it also ends partial pilots).
        trainable: a Tune function trainable to use instead of the HF one (e.g.
            ``SimulatedWorld().trainable()``); it must honour the trial contract.
        max_concurrent_trials: trials at a time (default: as many as resources allow).
        resources_per_trial: e.g. ``{"cpu": 4, "gpu": 1}`` (default one CPU).
        output_dir: where the report files go.
        storage_path: Tune's results (default ``<output_dir>/ray_results``); on a cluster, a
            path every node sees or a ``s3://``/``gs://`` URI.
        name: the experiment's name under ``storage_path``.
        address: ``ray.init(address=...)`` when Ray is not initialised yet ("auto" joins the
            cluster this machine belongs to; None starts a local instance).
        resume: continue the experiment ``storage_path/name`` if it exists.
        max_steps: trials refuse schedules of another length (see ``hf_trainable``).
        lrlaw_callback: options for the core's ``LRLawCallback`` in each trial (False: none).
        callbacks: ``ray.tune.Callback`` objects for the run (e.g. progress printing).
        keep_checkpoints: keep the checkpoints saved for branched cooldowns once the search has
            finished (by default they are deleted then: each holds a model and its optimizer
            state; an interrupted search keeps them for ``resume=True``; none is deleted when
            ``training_args`` ask the Trainer to save checkpoints of its own).
        verbose: Tune's verbosity (0 silent .. 2).
    """
    import ray
    from ray import tune

    if space is None:
        if peak_lr is None or total_steps is None:
            raise ValueError("give space=, or peak_lr= and total_steps= for the default space")
        space = ScheduleSpace(peak_lr, total_steps, warmup_steps)
    if trainable is None:
        if model_init is None or train_dataset is None:
            raise ValueError("give model_init= and train_dataset= (or trainable=)")
        from tune_search.trainable import hf_trainable

        trainable = tune.with_parameters(
            hf_trainable,
            model_init=model_init,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            training_args=dict(training_args or {}),
            metric=metric,
            data_collator=data_collator,
            max_steps=max_steps,
            lrlaw_callback=lrlaw_callback,
        )
    resources = dict(resources_per_trial or {"cpu": 1})
    trainable = tune.with_resources(trainable, resources)

    def make_searcher() -> LRLawSearcher:
        return LRLawSearcher(
            space,
            metric=metric,
            mode="min",
            law=law,
            law_options=law_options,
            pilots=pilots,
            pilot_steps=pilot_steps,
            top_k=top_k,
            prior_fit=prior_fit,
            margin=margin,
            fit_kwargs=fit_kwargs,
            branch=branch,
            max_compute=max_compute,
            optimized=optimized,
            second_law=second_law,
        )

    searcher = make_searcher()
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = storage_path or str(out / "ray_results")
    started_ray = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 0)
        started_ray = True
    try:
        experiment = _join(storage, name)
        if resume and tune.Tuner.can_restore(experiment):
            logger.info("resuming the search in %s", experiment)
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
        else:
            scheduler = LRLawStopper(searcher=searcher) if stopper else None
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=searcher.max_trials,
                    max_concurrent_trials=max_concurrent_trials,
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=name, storage_path=storage, verbose=verbose, callbacks=list(callbacks)
                ),
            )
        results = tuner.fit()
        experiment = results.experiment_path
        if resume:
            # the restored Tuner ran its own copy of the searcher: read its final state back
            searcher = make_searcher()
            searcher.restore_from_dir(experiment)
    finally:
        if started_ray:
            ray.shutdown()
    files = write_report(searcher, out)
    asked = str(dict(training_args or {}).get("save_strategy", "no")).lower()
    if not keep_checkpoints and asked.rsplit(".", 1)[-1] == "no":
        removed = searcher.remove_checkpoints(experiment)
        if removed:
            logger.info("removed %d branch checkpoints (keep_checkpoints=False)", len(removed))
    try:
        rec = searcher.recommendation()
    except RuntimeError as exc:
        problems = "; ".join(searcher.messages[:3])
        raise RuntimeError(
            f"the search found no schedule ({searcher.finished_reason or exc})"
            + (f": {problems}" if problems else "")
            + f"; see {files['report']}"
        ) from None
    return SearchResult(
        recommended=rec["schedule"],
        recommendation=rec,
        ranking=searcher.ranking(),
        fit=searcher.current_fit(),
        trials=searcher.trials(),
        searcher=searcher,
        files=files,
        experiment_path=str(experiment),
        messages=searcher.messages,
    )


def _join(storage: str, name: str) -> str:
    if "://" in storage:
        return storage.rstrip("/") + "/" + name
    return str(Path(storage) / name)
