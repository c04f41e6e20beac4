"""One training run as the callback sees it: its record, where its outputs go, and the fits made
at its boundaries (launched, snapshotted, taken back in the training thread).

:class:`TrainingRun` is created at ``on_train_begin`` and outlives the run, so that the
callback's views (``latest_fit``, ``history``, ...) still answer after ``train()`` returns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hf_lrlaw.callback.broadcast import broadcast_decision
from hf_lrlaw.callback.jobs import FitJob, FitResult
from hf_lrlaw.callback.options import (
    check_enough_points,
    choose_metric,
    eval_interval,
    resolve_candidates,
)
from hf_lrlaw.callback.plan import planned_lrs
from hf_lrlaw.callback.recording import Recorder, finite
from hf_lrlaw.callback.worker import FitWorker
from hf_lrlaw.callback.writer import history_entry, write_record
from hf_lrlaw.schedules import Schedule

__all__ = ["PREFIX", "FitSettings", "TrainingRun", "trial_label"]

logger = logging.getLogger("hf_lrlaw.callback")

PREFIX = "lrlaw/"  # the callback's metrics in the Trainer's logs
# A periodic fit.png is skipped while drawing it would bring the CPU time spent on figures above
# this share of the training (wall) time so far (the final one is always drawn). Before the
# first figure its cost is taken to be _PLOT_GUESS_S.
_PLOT_SHARE = 0.005
_JOIN_TIMEOUT_S = 600.0  # a fit never takes this long; past it a decision uses the last fit
_PLOT_GUESS_S = 0.25


def trial_label(state: Any) -> str | None:
    """During a hyper-parameter search, a folder name of this trial: its name, or a digest of
    its parameters when the search gives no name (so that trials do not overwrite each other)."""
    if not getattr(state, "is_hyper_param_search", False):
        return None
    if state.trial_name:
        return re.sub(r"[^\w.\-=,]+", "_", str(state.trial_name))
    if state.trial_params:
        text = json.dumps(state.trial_params, sort_keys=True, default=str)
        return "trial-" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return None


@dataclass(frozen=True)
class FitSettings:
    """The callback's options that every fit of a run uses."""

    law: str
    fit_kwargs: Mapping[str, Any]
    level: float
    min_points: int
    max_fit_points: int
    stop_confidence: float | None  # set when a stop decision needs the one-sided bound
    plot: bool
    callback_args: Mapping[str, Any]  # the constructor's arguments, for the record


@dataclass
class TrainingRun:
    """Everything the callback knows of the run being trained (one per ``train()`` call)."""

    recorder: Recorder
    worker: FitWorker
    settings: FitSettings
    scheduler: Any
    optimizer: Any
    schedule: Schedule | None  # the Schedule the TrainingArguments describe, if exact
    candidates: list[Schedule]
    fit_after: int
    fit_every: int
    folder: Path
    name: str
    info: dict[str, Any]
    world_size: int
    active: bool = True
    latest: FitResult | None = None  # the last successful fit
    unpublished: dict[str, float] = field(default_factory=dict)
    fitted_version: int = -1
    t_begin: float = field(default_factory=time.perf_counter)
    plot_spent: float = 0.0
    plot_last: float = 0.0

    @classmethod
    def begin(
        cls,
        args: Any,
        state: Any,
        scheduler: Any,
        optimizer: Any,
        restored: Mapping[str, Any] | None,
        *,
        settings: FitSettings,
        metric: str,
        fit_after: int | float,
        fit_every: int | float,
        candidates: Sequence[Schedule | str],
        output_subdir: str,
        background: bool,
    ) -> TrainingRun:
        """The run the Trainer is starting (``on_train_begin``): its plan, its record (restored
        from ``restored``, the checkpointed state, or the log history when resuming), the
        callback's candidates as schedules of this run, and where its outputs go."""
        max_steps = int(state.max_steps)
        after, every = _steps_of(fit_after, max_steps), _steps_of(fit_every, max_steps)
        planned, source = planned_lrs(scheduler, optimizer, max_steps)
        rec = Recorder(
            max_steps,
            planned,
            source,
            choose_metric(metric, args, state, after, settings.min_points),
            scheduler,
            int(state.global_step),
        )
        if state.global_step > 0:
            rec.restore(restored, state)
        rec.fill_plan_gaps()
        lrs = rec.lrs_for_fit()
        if not np.any(lrs > 0):
            rec.event(
                state.global_step,
                "zero_lr",
                "the planned learning rate is zero at every step: the law cannot be fitted (no "
                "training happens)",
                warn=True,
            )
        trial = trial_label(state)
        base = Path(args.output_dir).name or "run"
        folder = Path(args.output_dir) / output_subdir
        name = f"{base}/{trial}" if trial else base
        world_size = int(getattr(args, "world_size", 1) or 1)
        run = cls(
            recorder=rec,
            worker=FitWorker(background),
            settings=settings,
            scheduler=scheduler,
            optimizer=optimizer,
            schedule=Schedule.from_training_args(args, planned),
            candidates=resolve_candidates(candidates, args, lrs, max_steps),
            fit_after=after,
            fit_every=every,
            folder=folder / trial if trial else folder,
            name=name,
            info={
                "name": name,
                "output_dir": str(args.output_dir),
                "global_step": int(state.global_step),
                "max_steps": max_steps,
                "num_train_epochs": state.num_train_epochs,
                "logging_steps": state.logging_steps,
                "eval_steps": state.eval_steps if eval_interval(args, state) else None,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "per_device_train_batch_size": args.per_device_train_batch_size,
                "world_size": world_size,
                "trial_name": state.trial_name,
                "trial_params": state.trial_params,
                "resumed_from_step": int(state.global_step) or None,
            },
            world_size=world_size,
        )
        check_enough_points(rec, args, state, after, settings.min_points)
        return run

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Trainer's callbacks: the training objects stay behind.
        return {**self.__dict__, "scheduler": None, "optimizer": None}

    def is_boundary(self, g: int) -> bool:
        """Whether a fit is due at global step ``g``."""
        return g >= self.fit_after and (g - self.fit_after) % self.fit_every == 0

    def launch(self, g: int, *, final: bool, wait: bool = False) -> None:
        """Start a fit on the data through global step ``g`` (rank 0): in the background, or
        now with ``wait``; skipped while the last one still runs or nothing is new."""
        rec, settings = self.recorder, self.settings
        if self.worker.busy():
            if not wait:
                rec.say(
                    "busy",
                    "LRLawCallback: a fit was still running at a fit boundary; that fit is "
                    "skipped (fit less often, or set a larger fit_every)",
                )
                return
            self.worker.wait()
        self.take_result()
        since = settings.fit_kwargs.get("min_step", 0)  # points before it are not fitted
        since = since if isinstance(since, int) and not isinstance(since, bool) else 0
        n = rec.n_points(since=since)
        if n < settings.min_points:
            rec.say(
                f"few_{g}" if final else "few",
                f"LRLawCallback: {n} {rec.metric} point(s) at step {g}"
                f"{f' from step {since} (min_step) on' if since > 0 else ''}, fewer than "
                f"min_points={settings.min_points}: no fit yet",
                warn=final,
            )
            if final:
                self.write_record_now()
            return
        if rec.version == self.fitted_version:
            if final:  # nothing new since the last fit: the record says the run is over
                self.write_record_now()
            return
        self.fitted_version = rec.version
        self.worker.start(self.job(g, final), wait=wait)

    def job(self, g: int, final: bool) -> FitJob:
        """A snapshot of everything a fit at global step ``g`` needs (training thread)."""
        rec, settings = self.recorder, self.settings
        rec.check_plan(g)
        lrs = rec.lrs_for_fit()
        record = {
            "run": {**self.info, "global_step": int(g)},
            "metric": rec.metric,
            "schedule": {
                "text": None if self.schedule is None else str(self.schedule),
                "source": rec.plan_source,
                "peak_lr": float(np.max(lrs)) if len(lrs) else None,
            },
            "planned_lrs": [float(x) for x in np.nan_to_num(rec.planned)],
            "callback": dict(settings.callback_args),
        }
        elapsed = time.perf_counter() - self.t_begin
        budget = self.plot_spent + (self.plot_last or _PLOT_GUESS_S) <= _PLOT_SHARE * elapsed
        return FitJob(
            step=g,
            final=final,
            metric=rec.metric,
            lrs=lrs,
            points={m: rec.arrays(m) for m in rec.points},
            folder=self.folder,
            record=record,
            history=list(rec.history),
            events=list(rec.events),
            candidates=list(self.candidates),
            run_name=self.name,
            law=settings.law,
            fit_kwargs=dict(settings.fit_kwargs),
            level=settings.level,
            min_points=settings.min_points,
            max_fit_points=settings.max_fit_points,
            stop_confidence=settings.stop_confidence,
            plot=settings.plot and (final or budget),
            previous=self.latest,
        )

    def take_result(self) -> None:
        """Take in a finished fit (training thread): metrics to publish, history, warnings."""
        result = self.worker.take()
        if result is None:
            return
        if result.plot_cpu:
            self.plot_spent += result.plot_cpu
            self.plot_last = result.plot_cpu
        if result.fit is None:
            self.recorder.event(result.step, "fit_failed", result.failure, warn=True)
            return
        self.latest = result
        self.recorder.history.append(history_entry(result))
        if not result.final:
            self.unpublished.update(_metrics(result))

    def decide_stop(self, state: Any, threshold: float, confidence: float) -> bool:
        """Whether to stop, identical on every process: rank 0 decides from the last fit made
        at an earlier boundary (waiting for one still running) and broadcasts its decision."""
        g = int(state.global_step)
        decision = False
        if state.is_world_process_zero:
            try:
                if not self.worker.wait(_JOIN_TIMEOUT_S):
                    logger.warning(
                        "LRLawCallback: the fit did not finish in %.0f s; the stop decision "
                        "uses the previous fit",
                        _JOIN_TIMEOUT_S,
                    )
                self.take_result()
                latest = self.latest
                decision = bool(
                    latest is not None
                    and latest.stop_low is not None
                    and latest.step < g
                    and latest.stop_low > threshold
                )
            except Exception as exc:  # never leave the other ranks waiting
                logger.warning("LRLawCallback: stop decision failed (%s); not stopping", exc)
                decision = False
        decision = broadcast_decision(decision, self.world_size)
        if decision:
            self.recorder.stopped_at = g
            if state.is_world_process_zero and self.latest is not None:
                p = self.latest.prediction or {}
                message = (
                    f"stopping at step {g}: the final {self.recorder.metric} is predicted "
                    f"{p.get('final_loss', float('nan')):.4f} and above {threshold} with "
                    f"probability >= {confidence} (fit at step {self.latest.step})"
                )
                self.recorder.event(g, "stop", message)
                logger.warning("LRLawCallback: %s", message)
                self.unpublished[PREFIX + "stopped"] = 1.0
        return decision

    def write_record_now(self) -> None:
        """record.json from the last successful fit (a run that ends without a new fit)."""
        try:
            write_record(self.job(self.recorder.done, True), self.latest, new=False)
        except Exception as exc:
            logger.warning("LRLawCallback: could not write %s: %s", self.folder, exc)


def _steps_of(value: int | float, max_steps: int) -> int:
    """``fit_after`` / ``fit_every`` in steps: an int as is, a fraction of ``max_steps``."""
    if isinstance(value, float):
        return max(1, math.ceil(value * max_steps))
    return int(value)


def _metrics(result: FitResult) -> dict[str, float]:
    """The metrics a fit adds to the Trainer's logs (``lrlaw/...``)."""
    p = result.prediction or {}
    metrics = {
        "predicted_final_loss": p.get("final_loss"),
        "predicted_final_loss_low": p.get("low"),
        "predicted_final_loss_high": p.get("high"),
        "annealing_identified": 1.0 if p.get("annealing_identified") else 0.0,
        "fit_step": float(result.step),
    }
    # a candidate the law cannot speak for (another peak LR than the fit saw: the row's flag
    # says why) is reported, but never named the best
    trusted = [r for r in result.candidates if not r.get("flag") and finite(r["predicted"])]
    if trusted:
        best = min(trusted, key=lambda r: r["predicted"])
        metrics["best_candidate"] = float(best["index"])
        metrics["best_candidate_final_loss"] = best["predicted"]
        metrics["best_candidate_final_loss_low"] = best["low"]
        metrics["best_candidate_final_loss_high"] = best["high"]
    if result.candidates:
        for row in result.candidates:
            metrics[f"candidate_{row['index']}_final_loss"] = row["predicted"]
    return {PREFIX + k: float(v) for k, v in metrics.items() if finite(v) is not None}
