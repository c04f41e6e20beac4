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

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_lrlaw.callback.options import (
    check_options,
)
from hf_lrlaw.callback.ordering import place_before_reporters
from hf_lrlaw.callback.run import PREFIX, FitSettings, TrainingRun
from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fit_result import Fit
from hf_lrlaw.priors import PriorChoice, PriorError
from hf_lrlaw.schedules import Schedule

__all__ = ["LRLawCallback"]

logger = logging.getLogger("hf_lrlaw.callback")


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
            With more points than this, a fit is made on the means of this many groups of
            consecutive points (``hf_lrlaw.fit(max_points=...)``; for contiguous logging
            windows the mean over the merged window is exact) so that a fit stays a few tens
            of ms however long the run.

    Metrics added to the logs after each fit (rank 0): `lrlaw/predicted_final_loss`,
    `lrlaw/predicted_final_loss_low`, `lrlaw/predicted_final_loss_high`,
    `lrlaw/annealing_identified` (1 or 0), `lrlaw/fit_step` (the data the fit saw) and, with
    candidates, `lrlaw/best_candidate` (its index), `lrlaw/best_candidate_final_loss` (with
    `_low`, `_high`) and `lrlaw/candidate_<i>_final_loss`. A candidate at another peak LR than
    the run's ("what would 2x the LR give?") is predicted, but flagged in `record.json` and
    never named the best: one run does not show how the loss depends on the LR (with the
    momentum law, more LR always looks better). Choose the LR from runs at several LRs with
    `law="lrnoise"` (`hf_lrlaw.optimal_peak_lr`, `lrlaw peak-lr`). `lrlaw/diverged` and
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
            law,
            metric,
            fit_after,
            fit_every,
            min_points,
            candidates,
            level,
            stop_if_predicted_above,
            stop_confidence,
            output_subdir,
            fit_kwargs,
            max_fit_points,
        )
        if prior is not None and not isinstance(prior, (str, os.PathLike)):
            raise ValueError(
                f"LRLawCallback: prior must be 'default', a path or None, got {type(prior).__name__}"
            )
        if prior is not None:
            try:  # a missing or unreadable prior file fails here, not at every fit of the run
                PriorChoice.resolve(str(prior))
            except PriorError as exc:
                raise ValueError(f"LRLawCallback: prior={str(prior)!r}: {exc}") from None
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
        self._run: TrainingRun | None = None
        self._warned_state_args = False
        # set by Trainer._load_callback_state on the instance it builds from a checkpoint
        self._checkpoint: dict[str, Any] | None = None

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
        self._run = TrainingRun.begin(
            args,
            state,
            kwargs.get("lr_scheduler"),
            kwargs.get("optimizer"),
            restored,
            settings=FitSettings(
                law=self.law,
                fit_kwargs=dict(self.fit_kwargs),
                level=self.level,
                min_points=self.min_points,
                max_fit_points=self.max_fit_points,
                stop_confidence=None
                if self.stop_if_predicted_above is None
                else self.stop_confidence,
                plot=self.plot,
                callback_args=self._init_args(),
            ),
            metric=self.metric,
            fit_after=self.fit_after,
            fit_every=self.fit_every,
            candidates=self.candidates,
            output_subdir=self.output_subdir,
            background=self.background,
        )

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
            run.launch(g, final=False)

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
            added[PREFIX + "diverged"] = 1.0
        if "learning_rate" in logs and g >= 1:
            run.recorder.check_logged_lr(g, logs["learning_rate"])
        if state.is_world_process_zero:
            self._take_result()
            added.update(run.unpublished)
            run.unpublished = {}
            if added:
                logs.update(added)
                history = state.log_history
                if (
                    history
                    and history[-1].get("step") == g
                    and all(history[-1].get(k) is v for k, v in logs.items() if k not in added)
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
                run.launch(g, final=True, wait=True)
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
                run.write_record_now()
            if run.latest and run.latest.prediction:
                p = run.latest.prediction
                logger.info(
                    "LRLawCallback: predicted final %s %.4f [%.4f, %.4f] (%.0f%%) from the fit at "
                    "step %d; record: %s",
                    run.recorder.metric,
                    p["final_loss"],
                    p["low"],
                    p["high"],
                    100 * self.level,
                    p["fit_step"],
                    self.record_path,
                )
        run.active = False
        run.scheduler = run.optimizer = None

    # -- fits ------------------------------------------------------------------------------------

    # -- decisions -------------------------------------------------------------------------------

    def _decide_stop(self, state: Any) -> bool:
        assert self._run is not None and self.stop_if_predicted_above is not None
        return self._run.decide_stop(state, self.stop_if_predicted_above, self.stop_confidence)

    def _take_result(self) -> None:
        if self._run is not None:
            self._run.take_result()

    def _place_before_reporters(self) -> None:
        # Only from on_init_end / on_train_begin: the CallbackHandler is a frame or two up.
        if not place_before_reporters(self):
            logger.info(
                "LRLawCallback: could not find the Trainer's callback list; its metrics reach "
                "state.log_history but not the integrations listed before it"
            )


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True
