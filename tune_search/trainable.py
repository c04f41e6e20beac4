"""One Hugging Face Trainer per Tune trial, running the trial's schedule exactly and reporting its
loss curve to Tune at every evaluation (or logging) step.

Two ways in:

* :func:`hf_trainable` - a Tune function trainable. Bind the model and data with
  ``tune.with_parameters(hf_trainable, model_init=..., train_dataset=..., eval_dataset=...,
  training_args={...})`` and give it to ``tune.Tuner`` with an :class:`~tune_search.LRLawSearcher`.
* :class:`ScheduleTrainer` - a ``Trainer`` subclass that takes the schedule from the trial's
  ``config["schedule"]``, so that ``trainer.hyperparameter_search(backend="ray",
  search_alg=LRLawSearcher(...))`` works (that method forbids ``optimizers=``: the schedule goes
  in through ``create_scheduler`` instead).

The schedule is applied with ``Schedule.to_training_args()`` where a transformers scheduler is
exactly that schedule, else ``Schedule.to_torch(optimizer)`` from ``create_scheduler``. Steps are
reported in the :class:`~hf_lrlaw.LossCurve` convention: an eval loss at ``global_step`` g is
step ``g - 1``; a train ``loss`` logged at g (the mean since the previous log p) is step ``g - 2``
with ``window = g - p`` (the first train log, which includes the untrained model, is dropped).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_lrlaw._extras import require

require("tune_search.trainable (the HF Trainer per trial)", "hf", "torch", "transformers")

from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402
from transformers.trainer_utils import HPSearchBackend  # noqa: E402

from hf_lrlaw.schedules import Schedule, ScheduleError  # noqa: E402
from hf_lrlaw.schedules.lambda_lr import ScheduleLambda  # noqa: E402
from tune_search.branching import (  # noqa: E402
    BRANCH_KEY,
    CHECKPOINTS_KEY,
    SAVE_KEY,
    encode_checkpoints,
)

__all__ = [
    "ScheduleTrainer",
    "TuneReportCallback",
    "hf_trainable",
    "apply_schedule",
    "ScheduleMismatchError",
]

logger = logging.getLogger("tune_search")

_OWN_KEYS = ("schedule", "lrlaw_stop_step", SAVE_KEY, BRANCH_KEY)
CHECKPOINT_PREFIX = "checkpoint"  # transformers' PREFIX_CHECKPOINT_DIR


class ScheduleMismatchError(ValueError):
    """The suggested schedule cannot run in this trial (e.g. its total_steps differs from the
    steps the trial can run)."""


def apply_schedule(args: TrainingArguments, schedule: Schedule) -> bool:
    """Set ``learning_rate``, ``max_steps``, ``warmup_steps`` and, where a transformers scheduler
    is exactly ``schedule``, ``lr_scheduler_type``/``lr_scheduler_kwargs`` on ``args``.
    Returns True when the transformers scheduler is exact (else ``create_scheduler`` must build
    it from ``Schedule.to_torch``)."""
    args.learning_rate = schedule.peak_lr
    args.max_steps = schedule.total_steps
    args.warmup_steps = schedule.warmup_steps
    try:
        name, kwargs = schedule.to_hf()
    except ScheduleError:
        return False
    args.lr_scheduler_type = name
    args.lr_scheduler_kwargs = dict(kwargs)
    return True


class _ScheduleControl(TrainerCallback):
    """Evaluates at the last step (so the final loss is always reported) and at a partial
    pilot's stop step, then stops there; saves a checkpoint after each of the trainer's
    ``lrlaw_save_steps`` updates; on a resumed run (a branch), runs this trainer's schedule from
    the resumed step whatever scheduler state the checkpoint held."""

    def __init__(self, trainer: ScheduleTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        schedule = self.trainer.lrlaw_schedule
        if schedule is None or state.global_step == 0 or lr_scheduler is None:
            return
        if not hasattr(lr_scheduler, "lr_lambdas"):
            raise ScheduleMismatchError(
                f"resumed from a checkpoint with a {type(lr_scheduler).__name__}, not a LambdaLR: "
                f"cannot run {schedule} from step {state.global_step}"
            )
        # LambdaLR.load_state_dict copies the checkpointed multiplier's state into this run's
        # (the parent's LR table into a ScheduleLambda): put this schedule's table back.
        factors = schedule.relative()
        step = lr_scheduler.last_epoch
        lr_scheduler.lr_lambdas = [ScheduleLambda(factors) for _ in lr_scheduler.lr_lambdas]
        for group, base, fn in zip(
            lr_scheduler.optimizer.param_groups, lr_scheduler.base_lrs, lr_scheduler.lr_lambdas
        ):
            group["lr"] = base * fn(step)
        lr_scheduler._last_lr = [g["lr"] for g in lr_scheduler.optimizer.param_groups]

    def on_step_end(self, args, state, control, **kwargs):
        planned = state.global_step in self.trainer.lrlaw_save_steps
        # a save only the search asked for (the Trainer's own save rules, run before this
        # callback, did not): not also made a Tune checkpoint, see _report_to_hp_search
        self.trainer._lrlaw_only_planned = planned and not control.should_save
        if planned:
            control.should_save = True
        stop = self.trainer.lrlaw_stop_step
        step = state.global_step - 1
        if state.global_step >= state.max_steps or (stop is not None and step >= stop):
            if args.eval_strategy != "no" and self.trainer.eval_dataset is not None:
                control.should_evaluate = True
            control.should_log = True
        if stop is not None and step >= stop:
            control.should_training_stop = True
        return control


class ScheduleTrainer(Trainer):
    """A ``Trainer`` that runs a :class:`~hf_lrlaw.Schedule` exactly.

    Args:
        schedule: a Schedule or its text; optional here: inside ``hyperparameter_search`` it
            comes from each trial's ``config["schedule"]``.
        max_steps_allowed: refuse (``ScheduleMismatchError``) a schedule whose total_steps
            differs from this, e.g. when the data or time budget fixes the run length.
        *args, **kwargs: as ``Trainer``.

    In ``hyperparameter_search(backend="ray")`` it also adds ``"step"`` (``global_step - 1``)
    to what the Trainer reports to Tune, as :class:`~tune_search.LRLawSearcher` needs, and the
    checkpoints it saved for branches (``CHECKPOINTS_KEY``), so that cooldowns resume from them.
    """

    def __init__(
        self,
        *args: Any,
        schedule: Schedule | str | None = None,
        max_steps_allowed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lrlaw_schedule: Schedule | None = None
        self.lrlaw_exact = True
        self.lrlaw_stop_step: int | None = None
        self.lrlaw_save_steps: frozenset[int] = frozenset()
        self._lrlaw_only_planned = False  # set per step by _ScheduleControl
        self.max_steps_allowed = max_steps_allowed
        self._lrlaw_checkpoints: list[tuple[int, str]] = []
        self._lrlaw_last_report: dict[str, Any] | None = None
        self.add_callback(_ScheduleControl(self))
        if schedule is not None:
            self.set_schedule(schedule)

    def __getstate__(self) -> dict[str, Any]:
        # hyperparameter_search(backend="ray") ships the Trainer to the trials. Its accelerator
        # shares accelerate's process-wide GradientState, which keeps weak references to the
        # dataloaders of any earlier training in this process: not picklable. The trial builds
        # a fresh accelerator instead (as _hp_search_setup does anyway).
        state = self.__dict__.copy()
        state.pop("accelerator", None)
        state.pop("gather_function", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.create_accelerator_and_postprocess()

    def set_schedule(
        self,
        schedule: Schedule | str,
        stop_step: int | None = None,
        save_steps: Sequence[int] = (),
        resumed: bool = False,
    ) -> None:
        """Use ``schedule`` for the next ``train()``; stop after ``stop_step`` (a partial
        pilot); save a checkpoint after each of ``save_steps`` updates (for branches).
        ``resumed``: the run will resume from another run's checkpoint (a branch): the schedule
        then runs as a LambdaLR, whatever transformers scheduler would be exact."""
        s = Schedule.parse(schedule) if isinstance(schedule, str) else schedule
        if self.max_steps_allowed is not None and s.total_steps != self.max_steps_allowed:
            raise ScheduleMismatchError(
                f"the schedule has total_steps={s.total_steps} but this trial runs exactly "
                f"{self.max_steps_allowed} steps: {s}"
            )
        self.lrlaw_schedule = s
        self.lrlaw_stop_step = None if stop_step is None else int(stop_step)
        self.lrlaw_save_steps = frozenset(int(k) for k in save_steps)
        self.lrlaw_exact = apply_schedule(self.args, s) and not resumed
        self.lr_scheduler = None

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lrlaw_schedule is None or self.lrlaw_exact or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        optimizer = self.optimizer if optimizer is None else optimizer
        self.lr_scheduler = self.lrlaw_schedule.to_torch(optimizer)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def train(self, resume_from_checkpoint: Any = None, trial: Any = None, **kwargs: Any):
        if isinstance(trial, Mapping) and "schedule" in trial:
            trial = dict(trial)
            text = trial.pop("schedule")
            stop = trial.pop("lrlaw_stop_step", None)
            saves = trial.pop(SAVE_KEY, ())
            path = branch_checkpoint(trial.pop(BRANCH_KEY, None))
            if resume_from_checkpoint is None and path is not None:
                resume_from_checkpoint = path
            self.set_schedule(text, stop, saves, resumed=resume_from_checkpoint is not None)
            self._lrlaw_checkpoints, self._lrlaw_last_report = [], None
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)

    def _report_to_hp_search(self, trial, step, metrics):
        # Tune gets "step" (the LossCurve index of this eval) and the branch checkpoints saved
        # so far; the objective must see neither.
        compute = getattr(self, "compute_objective", None)
        if self.hp_search_backend is None or trial is None or compute is None:
            return super()._report_to_hp_search(trial, step, metrics)
        own = ("step", CHECKPOINTS_KEY)
        self.compute_objective = lambda m: compute({k: v for k, v in m.items() if k not in own})
        report = {**metrics, "step": step - 1}
        saved = _existing(self._lrlaw_checkpoints)
        if saved:
            report[CHECKPOINTS_KEY] = encode_checkpoints(saved)
        # A save only the search planned (the Trainer was not asked to save) is not also
        # copied into Tune's storage as a Tune checkpoint, as transformers does for any save.
        ours = self.control.should_save and self._lrlaw_only_planned
        self.control.should_save = self.control.should_save and not ours
        try:
            super()._report_to_hp_search(trial, step, report)
        finally:
            self.compute_objective = compute
            self.control.should_save = self.control.should_save or ours
        self._lrlaw_last_report = {**report, "objective": self.objective}

    def _determine_best_metric(self, metrics, trial):
        # save_strategy="best" turns should_save into "is this eval a new best": a branch save
        # planned at this step must happen all the same
        best = super()._determine_best_metric(metrics=metrics, trial=trial)
        planned = self.state.global_step in self.lrlaw_save_steps
        return best or (planned and self.args.save_strategy == "best")

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.hp_search_backend != HPSearchBackend.RAY or trial is None:
            return
        where = os.path.join(
            self._get_output_dir(trial), f"{CHECKPOINT_PREFIX}-{self.state.global_step}"
        )
        if not self.args.should_save or not os.path.isdir(where):
            return
        self._lrlaw_checkpoints.append((self.state.global_step, os.path.abspath(where)))
        if self._lrlaw_last_report is not None:
            # the eval at this step was reported before the save: tell the search now, as
            # TuneReportCallback.on_save does, so that a waiting cooldown can branch at once
            from ray import tune

            saved = encode_checkpoints(_existing(self._lrlaw_checkpoints))
            tune.report({**self._lrlaw_last_report, CHECKPOINTS_KEY: saved})


class TuneReportCallback(TrainerCallback):
    """Report each evaluation (``metric`` = "eval_loss", ...) or train-loss log (``metric`` =
    "loss") to Tune as ``{"step", metric, ...}`` in the LossCurve step convention, from the
    world's rank-0 process only (the Trainer's logged losses are already reduced over ranks)."""

    def __init__(self, metric: str = "eval_loss", extra: Sequence[str] = ("epoch",)) -> None:
        self.metric = metric
        self.extra = tuple(extra)
        self._previous_log = 0
        self.reported: list[tuple[int, float]] = []
        self.checkpoints: list[tuple[int, str]] = []
        self._last: dict[str, Any] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous_log = state.global_step  # a resumed run's first window starts there

    def on_save(self, args, state, control, **kwargs):
        """A checkpoint the Trainer wrote: every later report lists it (``CHECKPOINTS_KEY``),
        and the last point is reported again at once, so a search learns of it now."""
        if not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, f"{CHECKPOINT_PREFIX}-{state.global_step}")
        if not os.path.isdir(path):
            return
        self.checkpoints.append((state.global_step, os.path.abspath(path)))
        if self._last is not None:
            self._report(dict(self._last), {})

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.metric == "loss" or not metrics or self.metric not in metrics:
            return
        self._report(
            {"step": state.global_step - 1, self.metric: float(metrics[self.metric])}, metrics
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.metric != "loss" or not logs or "loss" not in logs:
            return
        g = state.global_step
        window, self._previous_log = g - self._previous_log, g
        if window >= 1 and g - window - 1 >= 0:
            self._report({"step": g - 2, "loss": float(logs["loss"]), "window": window}, logs)

    def _report(self, result: dict[str, Any], source: Mapping[str, Any]) -> None:
        from ray import tune

        for key in self.extra:
            if key in source and key not in result:
                result[key] = source[key]
        saved = _existing(self.checkpoints)
        if saved:
            result[CHECKPOINTS_KEY] = encode_checkpoints(saved)
        if self._last is None or self._last["step"] != result["step"]:
            self.reported.append((result["step"], result[self.metric]))
        self._last = result
        tune.report(result)


def _existing(saved: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The checkpoints of ``saved`` still on disk (``save_total_limit`` rotates old ones out)."""
    return [(k, w) for k, w in saved if os.path.isdir(w)]


def _lrlaw_callback(options: Mapping[str, Any] | None) -> Any | None:
    """The core's LRLawCallback when it is available (it records per-step LRs and losses and
    writes ``<output_dir>/lrlaw/record.json``); None otherwise."""
    if options is False:
        return None
    try:
        from hf_lrlaw.callback import LRLawCallback
    except ImportError:
        logger.debug("hf_lrlaw.callback is not available: trials run without LRLawCallback")
        return None
    try:
        return LRLawCallback(**dict(options or {}))
    except Exception as exc:  # its options are the callback's business; the trial goes on
        logger.warning("LRLawCallback(%s) could not be created: %s", dict(options or {}), exc)
        return None


def hf_trainable(
    config: dict[str, Any],
    *,
    model_init: Callable[[], Any],
    train_dataset: Any,
    eval_dataset: Any = None,
    training_args: Mapping[str, Any] | None = None,
    metric: str = "eval_loss",
    data_collator: Any = None,
    max_steps: int | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    lrlaw_callback: Mapping[str, Any] | bool | None = None,
    output_root: str | None = None,
) -> None:
    """A Tune function trainable: one :class:`ScheduleTrainer` run of ``config["schedule"]``.

    Args:
        config: the trial's config; ``config["schedule"]`` (text) is required, a partial
            pilot's ``config["lrlaw_stop_step"]`` is honoured, and any other key that names a
            ``TrainingArguments`` field (e.g. ``weight_decay``) is applied.
        model_init: returns a fresh model (called once per trial).
        train_dataset, eval_dataset, data_collator: as for ``Trainer``.
        training_args: other ``TrainingArguments`` (batch size, eval_steps, ``use_cpu``, ...);
            learning rate, steps, warmup and scheduler come from the schedule.
        metric: "eval_loss" (needs ``eval_dataset``) or "loss" (the train loss window means).
        max_steps: the trial can run exactly this many steps; another horizon is refused with
            ``ScheduleMismatchError`` (the trial errors, the search goes on).
        callbacks: more ``TrainerCallback`` objects.
        lrlaw_callback: options for :class:`hf_lrlaw.callback.LRLawCallback` (attached when the
            module is available), or False to leave it out.
        output_root: where trials write their Trainer output (default: the Tune trial folder).
    """
    from ray import tune

    if "schedule" not in config:
        raise ValueError("hf_trainable needs config['schedule'] (the LRLawSearcher sets it)")
    schedule = Schedule.parse(config["schedule"])
    if max_steps is not None and schedule.total_steps != max_steps:
        raise ScheduleMismatchError(
            f"the schedule has total_steps={schedule.total_steps} but this trial runs exactly "
            f"{max_steps} steps: {schedule}"
        )
    if metric != "loss" and eval_dataset is None:
        raise ValueError(f"metric={metric!r} needs an eval_dataset (or use metric='loss')")
    context = tune.get_context()
    trial_dir = Path(output_root or context.get_trial_dir() or ".")
    if output_root:
        trial_dir = trial_dir / (context.get_trial_id() or "trial")
    kwargs: dict[str, Any] = {
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "logging_steps": 10,
        "eval_strategy": "steps" if eval_dataset is not None else "no",
    }
    kwargs.update(training_args or {})
    kwargs["output_dir"] = str(trial_dir / "hf")
    extra = {k: v for k, v in config.items() if k not in _OWN_KEYS}
    fields = set(TrainingArguments.__dataclass_fields__)
    for key, value in extra.items():
        if key in fields:
            kwargs[key] = value
    if kwargs.get("eval_strategy") != "no" and "eval_steps" not in kwargs:
        kwargs["eval_steps"] = max(1, schedule.total_steps // 20)
    args = TrainingArguments(**kwargs)
    report = TuneReportCallback(metric)
    cbs = [report, *callbacks]
    if lrlaw_callback is None:  # defaults: the trial's metric, no figure per fit
        lrlaw_callback = {
            "plot": False,
            "metric": metric if metric == "loss" or metric.startswith("eval_") else "auto",
        }
    lrlaw = _lrlaw_callback(lrlaw_callback)
    if lrlaw is not None:
        cbs.append(lrlaw)
    trainer = ScheduleTrainer(
        model_init=model_init,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        callbacks=cbs,
    )
    resume = branch_checkpoint(config.get(BRANCH_KEY))
    trainer.set_schedule(
        schedule, config.get("lrlaw_stop_step"), config.get(SAVE_KEY, ()), resume is not None
    )
    os.makedirs(args.output_dir, exist_ok=True)
    trainer.train(resume_from_checkpoint=resume)


def branch_checkpoint(branch: Mapping[str, Any] | None) -> str | None:
    """The checkpoint folder a branch resumes from (``config["lrlaw_branch"]``), or None to run
    from step 0: no branch, or its checkpoint is not readable here (another node's disk)."""
    if not branch:
        return None
    path = str(branch.get("checkpoint", ""))
    if path and os.path.isdir(path):
        return path
    logger.warning(
        "trial cannot branch from %s's checkpoint %r (not a folder on this machine): it runs "
        "from step 0 and the search counts the whole run",
        branch.get("trial_id"),
        path,
    )
    return None
