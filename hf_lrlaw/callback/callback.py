"""LRLawCallback: predict the final loss of a transformers Trainer run while it trains.

One line, ``Trainer(..., callbacks=[LRLawCallback()])``: the callback records the learning rate
of every optimizer update and the loss at every logging (or evaluation) step, fits the law on
world rank 0 every ``fit_every`` steps in a background thread, and reports the predicted final
loss of this run's schedule (and of any ``candidates``) with an interval:

* as metrics in the Trainer's logs (``lrlaw/predicted_final_loss``, ``..._low``, ``..._high``,
  ...), so ``state.log_history``, the progress printer and every ``report_to`` integration
  (TensorBoard, W&B, ...) record them;
* in ``<output_dir>/lrlaw/record.json`` and ``fit.png`` (:mod:`~hf_lrlaw.callback.writer`).

Only world rank 0 fits and writes; a stop decision is broadcast so that every process takes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_lrlaw.callback.broadcast import broadcast_decision
from hf_lrlaw.callback.jobs import FitJob, FitResult
from hf_lrlaw.callback.options import (
    check_enough_points,
    check_options,
    choose_metric,
    eval_interval,
    resolve_candidate,
)
from hf_lrlaw.callback.ordering import place_before_reporters
from hf_lrlaw.callback.plan import planned_lrs
from hf_lrlaw.callback.recording import Recorder, finite
from hf_lrlaw.callback.worker import FitWorker
from hf_lrlaw.callback.writer import history_entry, write_record
from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fit_result import Fit
from hf_lrlaw.laws.areas import warmup_end
from hf_lrlaw.schedules import Schedule, ScheduleError

__all__ = ["LRLawCallback", "trial_label"]

logger = logging.getLogger("hf_lrlaw.callback")

_PREFIX = "lrlaw/"
_JOIN_TIMEOUT_S = 600.0  # a fit never takes this long; past it a decision uses the last fit
# A periodic fit.png is skipped while drawing it would bring the CPU time spent on figures above
# this share of the training (wall) time so far (the final one is always drawn). Before the
# first figure its cost is taken to be _PLOT_GUESS_S.
_PLOT_SHARE = 0.005
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


@dataclass
class _Run:
    """Everything the callback knows of the run being trained (one per ``train()`` call)."""

    recorder: Recorder
    worker: FitWorker
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

    def is_boundary(self, g: int) -> bool:
        return g >= self.fit_after and (g - self.fit_after) % self.fit_every == 0


class LRLawCallback(TrainerCallback, ExportableState):
    """A [`TrainerCallback`] that predicts the final loss of the run, and of other schedules,
    from the loss curve so far (the LR-annealing scaling laws of :mod:`hf_lrlaw`).

    It records the LR the optimizer used at every update (read from the optimizer on the host,
    no device synchronisation, whatever ``logging_steps`` is) and the loss the Trainer logs (a
    mean over the logging window and over processes, modelled as such) or the evaluation loss.
    From ``fit_after`` on, every ``fit_every`` steps, world rank 0 fits the law in a background
    thread and reports the predicted final loss of this run's schedule (the one the Trainer's
    scheduler really runs) with an interval, the identifiability flag and, with ``candidates``,
    the predicted final loss of each candidate and the best. The results enter the Trainer's
    logs at the next logging step (so ``state.log_history`` and every ``report_to`` integration
    record them; the callback places itself before the integrations to that end) and
    ``<output_dir>/lrlaw/record.json`` and ``fit.png``.

    Example:

    ```python
    from hf_lrlaw import LRLawCallback

    trainer = Trainer(
        model=model,
        args=TrainingArguments("out", max_steps=2000, lr_scheduler_type="cosine", logging_steps=10),
        train_dataset=train,
        callbacks=[LRLawCallback(candidates=["wsd(decay_fraction=0.2)", "constant()"])],
    )
    trainer.train()  # logs lrlaw/predicted_final_loss, ..._low, ..._high, lrlaw/best_candidate...
    ```

    What to expect: with the train loss (noisy: about 0.03 nats per step on small models, less
    per logging window) the interval is wide early and while no LR decay has been seen the
    annealing gain is not identified (``lrlaw/annealing_identified`` = 0): without a prior the
    interval then spans everything from no gain to the largest gain measured on public runs
    (below the irreducible loss L0). Spikes do not drag the robust
    (Huber) fit. Evaluation losses give cleaner fits when they are frequent enough.

    Args:
        law (`str`, *optional*, defaults to `"auto"`):
            The law to fit: a name :func:`hf_lrlaw.fit` accepts (`"momentum"`, `"multipower"`,
            `"power"`) or `"auto"` (with the one curve of a run: `"momentum"`, the fastest law
            that models annealing; `"multipower"` fits take seconds, not milliseconds).
        metric (`str`, *optional*, defaults to `"auto"`):
            The loss to fit: `"loss"` (the logged train loss), `"eval_loss"` or another
            `"eval_*loss"` key of the evaluation metrics, or `"auto"`: the eval loss when
            evaluation during training gives at least `min_points` points by `fit_after`,
            otherwise the train loss.
        fit_after (`int` or `float`, *optional*, defaults to 0.2):
            The first fit happens at this global step (a float in (0, 1): that fraction of
            `max_steps`), once `min_points` points exist (from `fit_kwargs["min_step"]` on,
            if set: a run's initial plateau, left out of the fits).
        fit_every (`int` or `float`, *optional*, defaults to 0.1):
            Refit every this many steps (a float in (0, 1): a fraction of `max_steps`).
        min_points (`int`, *optional*, defaults to 8):
            Fewest recorded points for a fit.
        candidates (`list` of `Schedule` or `str`, *optional*):
            Other schedules to predict the final loss of. Text may leave out `peak_lr`,
            `total_steps` and `warmup_steps` (e.g. `"wsd(decay_fraction=0.2)"`): they default
            to this run's.
        level (`float`, *optional*, defaults to 0.9):
            Probability of the reported intervals.
        stop_if_predicted_above (`float`, *optional*):
            Stop training (`control.should_training_stop`) once the law is confident, with
            probability `stop_confidence`, that the final loss will be above this value. The
            decision is taken at each fit boundary from the fit made at the previous boundary
            (rank 0 waits for it if it is still running) and broadcast, so every process stops
            at the same step. While the annealing gain is not identified (and no prior is used)
            the interval reaches below the irreducible loss: a stop then waits until the LR
            decay has been seen.
        stop_confidence (`float`, *optional*, defaults to 0.95):
            One-sided probability needed to stop (0.95: the lower end of a 90% interval is above
            the threshold).
        background (`bool`, *optional*, defaults to `True`):
            Fit in a background thread (training does not wait for it unless a stop decision
            needs its result). `False` fits in the training loop.
        plot (`bool`, *optional*, defaults to `True`):
            Write `fit.png` (observed curve, fitted law, predicted remainder with its band,
            candidates) at each fit and at the end; a figure takes about 0.2 s of CPU, so a
            periodic one is skipped while figures would take more than 0.5% of the training
            time so far (in runs shorter than about 50 s only the last one is drawn).
        output_subdir (`str`, *optional*, defaults to `"lrlaw"`):
            Folder under `args.output_dir` for `record.json` and `fit.png` (per trial during a
            hyper-parameter search).
        prior (`str`, *optional*, defaults to `"default"`):
            The prior of :func:`hf_lrlaw.fit`: `"default"` (learned from 262 public runs; it
            supplies what a young run's data cannot tell, above all the annealing gain before
            the LR has decayed, and the data outweigh it as they accumulate), a path to a prior
            (`lrlaw prior`: earlier runs pooled, or smaller models' runs for this size) or to an
            earlier run's `fit.json`/`record.json`, or `None` (data only). Each fit's
            entry in `record.json` says which prior it used and how far the data moved it.
        fit_kwargs (`dict`, *optional*):
            Keyword arguments for :func:`hf_lrlaw.fit` (e.g. `{"law_options": {"lam": 0.99}}`,
            `{"n_starts": 8}`); JSON-serialisable values survive checkpoints.
        max_fit_points (`int`, *optional*, defaults to 256):
            With more train-loss points than this, contiguous logging windows are merged (the
            mean over the merged window is exact) so that a fit stays a few tens of ms.

    Metrics added to the logs after each fit (rank 0): `lrlaw/predicted_final_loss`,
    `lrlaw/predicted_final_loss_low`, `lrlaw/predicted_final_loss_high`,
    `lrlaw/annealing_identified` (1 or 0), `lrlaw/fit_step` (the data the fit saw) and, with
    candidates, `lrlaw/best_candidate` (its index), `lrlaw/best_candidate_final_loss` (with
    `_low`, `_high`) and `lrlaw/candidate_<i>_final_loss`; `lrlaw/diverged` and
    `lrlaw/stopped` when that happens. Integrations prefix them as they do all train logs
    (TensorBoard: `train/lrlaw/...`).

    Checkpoints: the recorded curve is saved with each checkpoint (`ExportableState`) and
    restored by `trainer.train(resume_from_checkpoint=...)` with
    `TrainingArguments(restore_callback_states_from_checkpoint=True)`; without it the curve
    before the checkpoint is rebuilt from the Trainer's `log_history` and the scheduler's plan.
    """

    def __init__(
        self,
        law: str = "auto",
        metric: str = "auto",
        fit_after: int | float = 0.2,
        fit_every: int | float = 0.1,
        min_points: int = 8,
        candidates: Sequence[Schedule | str] | None = None,
        level: float = 0.9,
        stop_if_predicted_above: float | None = None,
        stop_confidence: float = 0.95,
        background: bool = True,
        plot: bool = True,
        output_subdir: str = "lrlaw",
        fit_kwargs: Mapping[str, Any] | None = None,
        max_fit_points: int = 256,
        prior: str | None = "default",
    ) -> None:
        texts, fit_kwargs = check_options(
            law, metric, fit_after, fit_every, min_points, candidates, level,
            stop_if_predicted_above, stop_confidence, output_subdir, fit_kwargs, max_fit_points,
        )  # fmt: skip
        if prior is not None and not isinstance(prior, (str, os.PathLike)):
            raise ValueError(
                f"LRLawCallback: prior must be 'default', a path or None, got {type(prior).__name__}"
            )
        self.law = law
        self.metric = metric
        self.fit_after = fit_after
        self.fit_every = fit_every
        self.min_points = min_points
        self.candidates = texts
        self.level = float(level)
        self.stop_if_predicted_above = (
            None if stop_if_predicted_above is None else float(stop_if_predicted_above)
        )
        self.stop_confidence = float(stop_confidence)
        self.background = bool(background)
        self.plot = bool(plot)
        self.output_subdir = output_subdir
        self.fit_kwargs = {"prior": None if prior is None else str(prior), **fit_kwargs}
        self.max_fit_points = max_fit_points
        self._run: _Run | None = None
        self._warned_state_args = False
        # set by Trainer._load_callback_state on the instance it builds from a checkpoint
        self._checkpoint: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Trainer's callbacks: the training objects stay behind.
        out = dict(self.__dict__)
        if self._run is not None:
            out["_run"] = _Run(**{**self._run.__dict__, "scheduler": None, "optimizer": None})
        return out

    # -- state ------------------------------------------------------------------------------

    def _init_args(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-ready (candidates as text)."""
        return {
            "law": self.law,
            "metric": self.metric,
            "fit_after": self.fit_after,
            "fit_every": self.fit_every,
            "min_points": self.min_points,
            "candidates": [str(c) for c in self.candidates],
            "level": self.level,
            "stop_if_predicted_above": self.stop_if_predicted_above,
            "stop_confidence": self.stop_confidence,
            "background": self.background,
            "plot": self.plot,
            "output_subdir": self.output_subdir,
            "fit_kwargs": {k: v for k, v in self.fit_kwargs.items() if _json_safe(v)},
            "max_fit_points": self.max_fit_points,
        }

    def state(self) -> dict[str, Any]:
        """Checkpointed state (`ExportableState`): the constructor's arguments and the record."""
        args = self._init_args()
        dropped = sorted(set(self.fit_kwargs) - set(args["fit_kwargs"]))
        if dropped and not self._warned_state_args:
            self._warned_state_args = True
            logger.warning(
                "LRLawCallback: fit_kwargs %s are not JSON-serialisable and are left out of the "
                "checkpoint; a run resumed from it fits without them",
                dropped,
            )
        saved = self._run.recorder.checkpoint() if self._run is not None else None
        return {"args": args, "attributes": {"_checkpoint": saved}}

    # -- public views -------------------------------------------------------------------------

    @property
    def latest_fit(self) -> Fit | None:
        """The last successful fit (world rank 0), or None."""
        self._take_result()
        latest = self._run.latest if self._run else None
        return latest.fit if latest else None

    @property
    def latest_prediction(self) -> dict[str, Any] | None:
        """The last prediction of this run's final loss (a dict with ``final_loss``, ``low``,
        ``high``, ``level``, ``annealing_identified``, ``fit_step``, ...), or None."""
        self._take_result()
        latest = self._run.latest if self._run else None
        return dict(latest.prediction) if latest and latest.prediction else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per fit: the step and the predictions it made."""
        self._take_result()
        return list(self._run.recorder.history) if self._run else []

    @property
    def events(self) -> list[dict[str, Any]]:
        """Divergence, failed fits, LR mismatches, stop decisions: ``{"step", "kind", ...}``."""
        return list(self._run.recorder.events) if self._run else []

    @property
    def record_path(self) -> Path | None:
        """``<output_dir>/<output_subdir>/record.json`` once training has begun."""
        return None if self._run is None else self._run.folder / "record.json"

    def curve(self, metric: str | None = None) -> LossCurve:
        """The recorded curve of ``metric`` (default: the one fitted) with its per-step LRs:
        the recorded ones, then the planned ones up to ``max_steps``."""
        if self._run is None:
            raise ValueError("LRLawCallback.curve(): nothing is recorded before training begins")
        rec = self._run.recorder
        metric = metric or rec.metric or "loss"
        steps, losses, windows = rec.arrays(metric)
        return LossCurve(
            rec.lrs_for_fit(),
            steps,
            losses,
            name=self._run.name,
            windows=windows if metric == "loss" else None,
            meta={"metric": metric, "source": "LRLawCallback"},
        )

    # -- events from the Trainer --------------------------------------------------------------

    def on_init_end(self, args, state, control, **kwargs):
        self._place_before_reporters()

    def on_train_begin(self, args, state, control, **kwargs):
        self._place_before_reporters()
        restored, self._checkpoint = self._checkpoint, None
        if self._run is not None:
            self._run.worker.wait()
        max_steps = int(state.max_steps)
        fit_after, fit_every = _steps_of(self.fit_after, max_steps), _steps_of(self.fit_every, max_steps)
        scheduler, optimizer = kwargs.get("lr_scheduler"), kwargs.get("optimizer")
        planned, source = planned_lrs(scheduler, optimizer, max_steps)
        metric = choose_metric(self.metric, args, state, fit_after, self.min_points)
        rec = Recorder(max_steps, planned, source, metric, scheduler, int(state.global_step))
        if state.global_step > 0:
            rec.restore(restored, state)
        rec.fill_plan_gaps()
        lrs = rec.lrs_for_fit()
        if not np.any(lrs > 0):
            rec.event(state.global_step, "zero_lr", "the planned learning rate is zero at every "
                      "step: the law cannot be fitted (no training happens)", warn=True)  # fmt: skip
        trial = trial_label(state)
        base = Path(args.output_dir).name or "run"
        folder = Path(args.output_dir) / self.output_subdir
        world_size = int(getattr(args, "world_size", 1) or 1)
        self._run = _Run(
            recorder=rec,
            worker=FitWorker(self.background),
            scheduler=scheduler,
            optimizer=optimizer,
            schedule=Schedule.from_training_args(args, planned),
            candidates=self._resolve_candidates(args, lrs, max_steps),
            fit_after=fit_after,
            fit_every=fit_every,
            folder=folder / trial if trial else folder,
            name=f"{base}/{trial}" if trial else base,
            info={
                "name": f"{base}/{trial}" if trial else base,
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
        check_enough_points(rec, args, state, fit_after, self.min_points)

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # After optimizer.step() and before lr_scheduler.step(): the LR this update used. A
        # Python float on the host: no device synchronisation.
        run = self._run
        if run is None or not run.active:
            return
        groups = (optimizer or run.optimizer).param_groups
        run.recorder.record_lr(state.global_step, groups[0]["lr"])

    def on_step_begin(self, args, state, control, **kwargs):
        run = self._run
        if run is None or not run.active:
            return
        g = state.global_step
        if state.is_world_process_zero and run.is_boundary(g):
            self._launch(g, final=False)

    def on_step_end(self, args, state, control, **kwargs):
        run = self._run
        if run is None or not run.active:
            return
        run.recorder.done = int(state.global_step)
        if state.is_world_process_zero:
            self._take_result()
        if (
            self.stop_if_predicted_above is not None
            and run.is_boundary(state.global_step)
            and self._decide_stop(state)
        ):
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        run = self._run
        if run is None or not run.active or logs is None:
            return
        g = state.global_step
        added: dict[str, float] = {}
        if "loss" in logs and run.recorder.record_train_loss(g, logs):
            added[_PREFIX + "diverged"] = 1.0
        if "learning_rate" in logs and g >= 1:
            run.recorder.check_logged_lr(g, logs["learning_rate"])
        if state.is_world_process_zero:
            self._take_result()
            added.update(run.unpublished)
            run.unpublished = {}
            if added:
                logs.update(added)
                history = state.log_history
                if history and history[-1].get("step") == g and all(
                    history[-1].get(k) is v for k, v in logs.items() if k not in added
                ):
                    history[-1].update(added)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        run = self._run
        if run is None or not run.active or not metrics or state.global_step < 1:
            return
        run.recorder.record_eval(state.global_step, metrics)

    def on_train_end(self, args, state, control, **kwargs):
        run = self._run
        if run is None or not run.active:
            return
        run.recorder.done = int(state.global_step)
        run.info["finished"] = True
        if state.is_world_process_zero:
            run.worker.wait()
            self._take_result()
            g = int(state.global_step)
            if g >= run.fit_after:
                self._launch(g, final=True, wait=True)
                self._take_result()
            else:
                run.recorder.say(
                    "short",
                    f"LRLawCallback: training ended at step {g}, before fit_after="
                    f"{run.fit_after}: no fit was made. {self.record_path} holds the "
                    f"{run.recorder.n_points()} recorded point(s); set fit_after (and "
                    "min_points) lower to get predictions from short runs",
                    warn=True,
                )
                self._write_record_now()
            if run.latest and run.latest.prediction:
                p = run.latest.prediction
                logger.info(
                    "LRLawCallback: predicted final %s %.4f [%.4f, %.4f] (%.0f%%) from the fit at "
                    "step %d; record: %s",
                    run.recorder.metric, p["final_loss"], p["low"], p["high"], 100 * self.level,
                    p["fit_step"], self.record_path,
                )  # fmt: skip
        run.active = False
        run.scheduler = run.optimizer = None

    # -- fits ------------------------------------------------------------------------------------

    def _resolve_candidates(self, args: Any, lrs: np.ndarray, max_steps: int) -> list[Schedule]:
        defaults = {
            "peak_lr": float(np.max(lrs)) if len(lrs) and np.max(lrs) > 0 else args.learning_rate,
            "total_steps": max_steps,
            "warmup_steps": int(warmup_end(lrs)),
        }
        resolved = []
        for item in self.candidates:
            try:
                resolved.append(resolve_candidate(item, defaults))
            except ScheduleError as exc:
                raise ValueError(
                    f"LRLawCallback: candidate {item!r} does not fit this run "
                    f"(max_steps={max_steps}): {exc}"
                ) from None
        return resolved

    def _launch(self, g: int, *, final: bool, wait: bool = False) -> None:
        """Start a fit on the data through global step ``g`` (rank 0)."""
        run = self._run
        assert run is not None
        rec = run.recorder
        if run.worker.busy():
            if not wait:
                rec.say("busy", "LRLawCallback: a fit was still running at a fit boundary; "
                        "that fit is skipped (fit less often, or set a larger fit_every)")  # fmt: skip
                return
            run.worker.wait()
        self._take_result()
        since = self.fit_kwargs.get("min_step", 0)  # points before it are not fitted
        since = since if isinstance(since, int) and not isinstance(since, bool) else 0
        n = rec.n_points(since=since)
        if n < self.min_points:
            rec.say(
                f"few_{g}" if final else "few",
                f"LRLawCallback: {n} {rec.metric} point(s) at step {g}"
                f"{f' from step {since} (min_step) on' if since > 0 else ''}, fewer than "
                f"min_points={self.min_points}: no fit yet",
                warn=final,
            )
            if final:
                self._write_record_now()
            return
        if rec.version == run.fitted_version:
            if final:  # nothing new since the last fit: the record says the run is over
                self._write_record_now()
            return
        run.fitted_version = rec.version
        run.worker.start(self._job(g, final), wait=wait)

    def _job(self, g: int, final: bool) -> FitJob:
        """A snapshot of everything a fit at global step ``g`` needs (training thread)."""
        run = self._run
        assert run is not None
        rec = run.recorder
        rec.check_plan(g)
        lrs = rec.lrs_for_fit()
        record = {
            "run": {**run.info, "global_step": int(g)},
            "metric": rec.metric,
            "schedule": {
                "text": None if run.schedule is None else str(run.schedule),
                "source": rec.plan_source,
                "peak_lr": float(np.max(lrs)) if len(lrs) else None,
            },
            "planned_lrs": [float(x) for x in np.nan_to_num(rec.planned)],
            "callback": self._init_args(),
        }
        elapsed = time.perf_counter() - run.t_begin
        plot_due = final or run.plot_spent + (run.plot_last or _PLOT_GUESS_S) <= _PLOT_SHARE * elapsed
        return FitJob(
            step=g, final=final, metric=rec.metric, lrs=lrs,
            points={m: rec.arrays(m) for m in rec.points}, folder=run.folder, record=record,
            history=list(rec.history), events=list(rec.events), candidates=list(run.candidates),
            run_name=run.name, law=self.law, fit_kwargs=dict(self.fit_kwargs), level=self.level,
            min_points=self.min_points, max_fit_points=self.max_fit_points,
            stop_confidence=None if self.stop_if_predicted_above is None else self.stop_confidence,
            plot=self.plot and plot_due, previous=run.latest,
        )  # fmt: skip

    def _take_result(self) -> None:
        """Take in a finished fit (training thread): metrics to publish, history, warnings."""
        run = self._run
        result = run.worker.take() if run is not None else None
        if result is None:
            return
        if result.plot_cpu:
            run.plot_spent += result.plot_cpu
            run.plot_last = result.plot_cpu
        if result.fit is None:
            run.recorder.event(result.step, "fit_failed", result.failure, warn=True)
            return
        run.latest = result
        run.recorder.history.append(history_entry(result))
        if result.final:
            return
        p = result.prediction or {}
        metrics = {
            "predicted_final_loss": p.get("final_loss"),
            "predicted_final_loss_low": p.get("low"),
            "predicted_final_loss_high": p.get("high"),
            "annealing_identified": 1.0 if p.get("annealing_identified") else 0.0,
            "fit_step": float(result.step),
        }
        if result.candidates:
            best = min(result.candidates, key=lambda r: r["predicted"])
            metrics["best_candidate"] = float(best["index"])
            metrics["best_candidate_final_loss"] = best["predicted"]
            metrics["best_candidate_final_loss_low"] = best["low"]
            metrics["best_candidate_final_loss_high"] = best["high"]
            for row in result.candidates:
                metrics[f"candidate_{row['index']}_final_loss"] = row["predicted"]
        run.unpublished.update(
            {_PREFIX + k: float(v) for k, v in metrics.items() if finite(v) is not None}
        )

    def _write_record_now(self) -> None:
        run = self._run
        if run is None:
            return
        try:
            write_record(self._job(run.recorder.done, True), run.latest, new=False)
        except Exception as exc:
            logger.warning("LRLawCallback: could not write %s: %s", run.folder, exc)

    # -- decisions -------------------------------------------------------------------------------

    def _decide_stop(self, state: Any) -> bool:
        """Whether to stop, identical on every process: rank 0 decides from the last fit made
        at an earlier boundary and broadcasts its decision."""
        run = self._run
        assert run is not None
        g = int(state.global_step)
        decision = False
        if state.is_world_process_zero:
            try:
                if not run.worker.wait(_JOIN_TIMEOUT_S):
                    logger.warning("LRLawCallback: the fit did not finish in %.0f s; the stop "
                                   "decision uses the previous fit", _JOIN_TIMEOUT_S)  # fmt: skip
                self._take_result()
                latest = run.latest
                decision = bool(
                    latest is not None and latest.stop_low is not None and latest.step < g
                    and latest.stop_low > self.stop_if_predicted_above
                )  # fmt: skip
            except Exception as exc:  # never leave the other ranks waiting
                logger.warning("LRLawCallback: stop decision failed (%s); not stopping", exc)
                decision = False
        decision = broadcast_decision(decision, run.world_size)
        if decision:
            run.recorder.stopped_at = g
            if state.is_world_process_zero and run.latest is not None:
                p = run.latest.prediction or {}
                message = (
                    f"stopping at step {g}: the final {run.recorder.metric} is predicted "
                    f"{p.get('final_loss', float('nan')):.4f} and above "
                    f"{self.stop_if_predicted_above} with probability >= {self.stop_confidence} "
                    f"(fit at step {run.latest.step})"
                )
                run.recorder.event(g, "stop", message)
                logger.warning("LRLawCallback: %s", message)
                run.unpublished[_PREFIX + "stopped"] = 1.0
        return decision

    def _place_before_reporters(self) -> None:
        # Only from on_init_end / on_train_begin: the CallbackHandler is a frame or two up.
        if not place_before_reporters(self):
            logger.info(
                "LRLawCallback: could not find the Trainer's callback list; its metrics reach "
                "state.log_history but not the integrations listed before it"
            )


def _steps_of(value: int | float, max_steps: int) -> int:
    """``fit_after`` / ``fit_every`` in steps: an int as is, a fraction of ``max_steps``."""
    if isinstance(value, float):
        return max(1, math.ceil(value * max_steps))
    return int(value)


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True
