"""LRLawCallback: predict the final loss of a transformers Trainer run while it trains.

One line, ``Trainer(..., callbacks=[LRLawCallback()])``: the callback records the learning rate
of every optimizer update and the loss at every logging (or evaluation) step, fits the law on
world rank 0 every ``fit_every`` steps in a background thread, and reports the predicted final
loss of this run's schedule (and of any ``candidates``) with an interval:

* as metrics in the Trainer's logs (``lrlaw/predicted_final_loss``, ``..._low``, ``..._high``,
  ...), so ``state.log_history``, the progress printer and every ``report_to`` integration
  (TensorBoard, W&B, ...) record them;
* in ``<output_dir>/lrlaw/record.json`` (schema ``hf_lrlaw.record/1``: every recorded point,
  the schedule, the latest fit and predictions, the history of predictions and events; its
  ``curves`` load with :func:`hf_lrlaw.load`, its ``fit`` with :meth:`hf_lrlaw.Fit.load`),
  written at each fit and at the end of training, and ``<output_dir>/lrlaw/fit.png``, drawn at
  fits (within a small time budget) and at the end.

Only world rank 0 fits and writes; a stop decision is broadcast so that every process takes it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import hashlib
import inspect
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback
from transformers.trainer_callback import DefaultFlowCallback, ExportableState

from hf_lrlaw.curves import CurveError, LossCurve
from hf_lrlaw.fitting import Fit, FitError, fit
from hf_lrlaw.laws import LawError, available_laws, get_law
from hf_lrlaw.schedules import Schedule, ScheduleError

__all__ = ["LRLawCallback", "RECORD_SCHEMA", "planned_lrs"]

logger = logging.getLogger(__name__)

RECORD_SCHEMA = "hf_lrlaw.record/1"
_STATE_VERSION = 1
_PREFIX = "lrlaw/"
_FIT_KWARGS_EXCLUDED = ("curves", "law")
_JOIN_TIMEOUT_S = 600.0  # a fit never takes this long; past it a decision uses the last fit
# A periodic fit.png is skipped while drawing it would bring the CPU time spent on figures above
# this share of the training (wall) time so far (the final one is always drawn). Before the
# first figure its cost is taken to be _PLOT_GUESS_S.
_PLOT_SHARE = 0.005
_PLOT_GUESS_S = 0.25


# =================================================================================================
# The planned schedule: per-step LRs of the scheduler the Trainer really runs
# =================================================================================================


def planned_lrs(scheduler: Any, optimizer: Any, max_steps: int) -> tuple[np.ndarray, str]:
    """The LR of parameter group 0 at every scheduler step ``0..max_steps-1``, and how it was
    found, without stepping (or otherwise touching) ``scheduler``.

    * ``LambdaLR`` (every transformers scheduler, and :meth:`Schedule.to_torch`):
      ``base_lr * lr_lambda(i)``, the scheduler's own arithmetic, for every step.
    * ``ReduceLROnPlateau`` and other metric-driven schedulers: the current LR held (the plan
      is not knowable in advance).
    * Any other ``LRScheduler``: a copy of it, attached to a one-parameter stand-in optimizer
      with the same parameter groups, stepped to ``max_steps``; steps before the scheduler's
      current one are NaN (unknown).
    """
    from torch.optim.lr_scheduler import LambdaLR

    max_steps = int(max_steps)
    out = np.full(max_steps, np.nan)
    if max_steps <= 0:
        return out, "no steps"
    groups = getattr(optimizer, "param_groups", None) or getattr(
        getattr(scheduler, "optimizer", None), "param_groups", None
    )
    current = float(groups[0]["lr"]) if groups else float("nan")
    if scheduler is None:
        out[:] = current
        return out, "no scheduler: constant LR"
    name = type(scheduler).__name__
    if isinstance(scheduler, LambdaLR) and type(scheduler).get_lr is LambdaLR.get_lr:
        base, lam = float(scheduler.base_lrs[0]), scheduler.lr_lambdas[0]
        out[:] = np.fromiter((base * lam(i) for i in range(max_steps)), np.float64, max_steps)
        return out, f"{name} ({_lambda_name(lam)})"
    if name in ("ReduceLROnPlateau", "GreedyLR") or not hasattr(scheduler, "last_epoch"):
        out[:] = current
        return out, f"{name} (metric-driven: the plan holds the current LR)"
    start = max(0, int(scheduler.last_epoch))
    if start < max_steps:
        out[start] = current
        with contextlib.suppress(Exception):
            _step_copy(scheduler, out, start)
    return out, f"{name} (stepped on a copy)"


def _lambda_name(lam: Any) -> str:
    func = getattr(lam, "func", lam)  # functools.partial
    return getattr(func, "__qualname__", type(func).__name__)


def _step_copy(scheduler: Any, out: np.ndarray, start: int) -> None:
    """Fill ``out[start + 1:]`` by stepping a copy of ``scheduler`` on a stand-in optimizer."""
    import torch

    real = scheduler.optimizer
    stand_in = torch.optim.SGD(
        [
            {**{k: v for k, v in g.items() if k != "params"}, "params": [torch.zeros(1)]}
            for g in real.param_groups
        ],
        lr=float(real.param_groups[0]["lr"]),
    )
    memo: dict[int, Any] = {id(real): stand_in}
    inner = getattr(real, "optimizer", None)  # accelerate's AcceleratedOptimizer wraps one
    if inner is not None:
        memo[id(inner)] = stand_in
    clone = copy.deepcopy(scheduler, memo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(start + 1, len(out)):
            try:
                clone.step()
            except Exception:  # e.g. OneCycleLR past its total_steps: hold the last LR
                out[j:] = out[j - 1]
                return
            out[j] = float(stand_in.param_groups[0]["lr"])


def _schedule_from_args(args: Any, planned: np.ndarray) -> Schedule | None:
    """The :class:`Schedule` that ``TrainingArguments`` describe, if its per-step LRs are the
    planned ones (else None: a custom scheduler, or one without a Schedule form)."""
    total = len(planned)
    peak = float(args.learning_rate)
    if total < 1 or not np.all(np.isfinite(planned)) or peak <= 0:
        return None
    kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    kwargs = dict(args.lr_scheduler_kwargs or {})
    try:
        warmup = int(args.get_warmup_steps(total))
    except Exception:
        return None
    common = {"peak_lr": peak, "total_steps": total, "warmup_steps": warmup}
    try:
        if kind in ("constant", "constant_with_warmup"):
            s = Schedule.constant(**common)
        elif kind == "linear":
            s = Schedule.linear(**common)
        elif kind == "cosine" and kwargs.get("num_cycles", 0.5) == 0.5:
            s = Schedule.cosine(**common)
        elif kind == "cosine_with_min_lr":
            ratio = kwargs.get("min_lr_rate")
            if ratio is None and kwargs.get("min_lr") is not None:
                ratio = kwargs["min_lr"] / peak
            s = Schedule.cosine(**common, final_ratio=float(ratio or 0.0))
        elif kind == "warmup_stable_decay" and "num_decay_steps" in kwargs:
            final = float(kwargs.get("min_lr_ratio", 0.0))
            s = Schedule.make(
                "wsd",
                **common,
                warmup_shape=kwargs.get("warmup_type", "linear"),
                warmup_start_ratio=final if warmup else 0.0,
                decay_fraction=int(kwargs["num_decay_steps"]) / total,
                decay_shape=kwargs.get("decay_type", "cosine"),
                final_ratio=final,
            )
        elif kind == "inverse_sqrt":
            s = Schedule.inverse_sqrt(**common, timescale=kwargs.get("timescale") or None)
        elif kind == "polynomial" and float(kwargs.get("power", 1.0)) == 1.0:
            s = Schedule.linear(**common, final_ratio=float(kwargs.get("lr_end", 1e-7)) / peak)
        else:
            return None
    except (ScheduleError, TypeError, ValueError):
        return None
    lrs = s.lrs()
    if len(lrs) != total or not np.allclose(lrs, planned, rtol=1e-9, atol=1e-15 * peak):
        return None
    return s


def _resolve_candidate(item: Schedule | str, defaults: Mapping[str, Any] | None) -> Schedule:
    """A candidate as a Schedule; text may leave out ``peak_lr``, ``total_steps`` and
    ``warmup_steps``, which then default to this run's (``defaults``)."""
    if isinstance(item, Schedule):
        return item
    if not isinstance(item, str):
        raise ScheduleError(f"a candidate must be a Schedule or its text, got {type(item).__name__}")
    return Schedule.parse(item, defaults=defaults)


# =================================================================================================
# Small helpers: encodings, files, windows
# =================================================================================================


def _encode_floats(values: np.ndarray) -> dict[str, Any]:
    raw = np.ascontiguousarray(values, dtype="<f8").tobytes()
    return {
        "encoding": "float64-le/zlib/base64",
        "n": len(values),
        "data": base64.b64encode(zlib.compress(raw, 6)).decode("ascii"),
    }


def _decode_floats(blob: Mapping[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(blob["data"]))
    out = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    if len(out) != int(blob["n"]):
        raise ValueError("corrupt float array in the callback state")
    return out


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _merge_windows(
    steps: np.ndarray, losses: np.ndarray, windows: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most about ``max_points`` points: runs of contiguous windows (each starting where the
    previous one ends) merged into one window whose loss is their step-weighted mean, which is
    exactly the mean over the merged window. Point values that are not contiguous are kept."""
    n = len(steps)
    if n <= max_points or max_points < 1:
        return steps, losses, windows
    k = math.ceil(n / max_points)
    starts = steps - windows + 1
    contiguous = np.zeros(n, dtype=bool)
    contiguous[1:] = starts[1:] == steps[:-1] + 1
    out_s, out_l, out_w = [], [], []
    i = 0
    while i < n:
        j = i + 1
        while j < n and j - i < k and contiguous[j]:
            j += 1
        w = windows[i:j]
        out_s.append(steps[j - 1])
        out_w.append(int(w.sum()))
        out_l.append(float(np.dot(losses[i:j], w) / w.sum()))
        i = j
    return (
        np.asarray(out_s, dtype=np.int64),
        np.asarray(out_l, dtype=np.float64),
        np.asarray(out_w, dtype=np.int64),
    )


# =================================================================================================
# What a fit works on, and what it gives back
# =================================================================================================


@dataclass
class _Job:
    """A snapshot of everything one fit needs, taken in the training thread."""

    step: int  # global step of the data (updates done)
    final: bool  # the fit at the end of training
    metric: str
    lrs: np.ndarray  # actual LRs for the updates done, then the plan
    points: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # metric -> steps, losses, windows
    folder: Path | None
    record: dict[str, Any]  # the record's run/schedule/callback parts
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]
    candidates: list[Schedule]
    run_name: str


@dataclass
class _Result:
    step: int
    final: bool
    fit: Fit | None = None
    prediction: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    stop_low: float | None = None
    error: str | None = None
    seconds: float = 0.0  # fit, prediction and ranking
    plot_seconds: float = 0.0  # drawing and writing fit.png
    cpu_seconds: float = 0.0  # CPU time of all the above (this thread), as training feels it


def _trial_label(state: Any) -> str | None:
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


def _failure(result: _Result) -> str:
    return f"the fit at step {result.step} failed: {result.error}; training continues"


# =================================================================================================
# The callback
# =================================================================================================


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
        if law != "auto" and law not in available_laws():
            raise ValueError(
                f"LRLawCallback: unknown law {law!r}; use 'auto' or one of {available_laws()}"
            )
        if not isinstance(metric, str) or not (
            metric in ("auto", "loss") or (metric.startswith("eval_") and metric.endswith("loss"))
        ):
            raise ValueError(
                f"LRLawCallback: metric must be 'auto', 'loss' (the train loss) or an "
                f"evaluation loss such as 'eval_loss', got {metric!r}"
            )
        for name, value in (("fit_after", fit_after), ("fit_every", fit_every)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                value > 0 and (isinstance(value, int) or value < 1)
            ):
                raise ValueError(
                    f"LRLawCallback: {name} must be a number of steps (int >= 1) or a fraction "
                    f"of max_steps in (0, 1), got {value!r}"
                )
        if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 5:
            raise ValueError(f"LRLawCallback: min_points must be an int >= 5, got {min_points!r}")
        if not 0 < level < 1:
            raise ValueError(f"LRLawCallback: level must be in (0, 1), got {level!r}")
        if stop_if_predicted_above is not None and _finite(stop_if_predicted_above) is None:
            raise ValueError(
                "LRLawCallback: stop_if_predicted_above must be a finite loss value or None, "
                f"got {stop_if_predicted_above!r}"
            )
        if not 0.5 < stop_confidence < 1:
            raise ValueError(
                f"LRLawCallback: stop_confidence must be in (0.5, 1), got {stop_confidence!r}"
            )
        if not isinstance(output_subdir, str) or not output_subdir:
            raise ValueError("LRLawCallback: output_subdir must be a non-empty folder name")
        if isinstance(max_fit_points, bool) or not isinstance(max_fit_points, int) or (
            max_fit_points < min_points
        ):
            raise ValueError(
                f"LRLawCallback: max_fit_points must be an int >= min_points ({min_points}), "
                f"got {max_fit_points!r}"
            )
        if law != "auto" and min_points < len(get_law(law).params) + 1:
            raise ValueError(
                f"LRLawCallback: the {law} law has {len(get_law(law).params)} parameters; "
                f"min_points must be at least {len(get_law(law).params) + 1}, got {min_points}"
            )
        fit_kwargs = dict(fit_kwargs or {})
        accepted = set(inspect.signature(fit).parameters) - set(_FIT_KWARGS_EXCLUDED)
        unknown = sorted(set(fit_kwargs) - accepted)
        if unknown:
            raise ValueError(
                f"LRLawCallback: fit_kwargs has {unknown}, which hf_lrlaw.fit() does not take "
                f"(it takes {sorted(accepted)}; set the law with law=)"
            )
        if fit_kwargs.get("law_options"):
            if law == "auto":
                raise ValueError(
                    "LRLawCallback: fit_kwargs['law_options'] needs a named law, e.g. "
                    "law='momentum'"
                )
            try:
                get_law(law, **fit_kwargs["law_options"])
            except LawError as exc:
                raise ValueError(f"LRLawCallback: {exc}") from None
        texts = []
        for item in candidates or ():
            try:  # check the text now; missing peak_lr/total_steps come from the run later
                _resolve_candidate(item, {"peak_lr": 1.0, "total_steps": 1000})
            except ScheduleError as exc:
                raise ValueError(f"LRLawCallback: candidate {item!r}: {exc}") from None
            texts.append(item)

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
        if prior is not None and not isinstance(prior, (str, os.PathLike)):
            raise ValueError(
                f"LRLawCallback: prior must be 'default', a path or None, got {type(prior).__name__}"
            )
        self.fit_kwargs = {"prior": None if prior is None else str(prior), **fit_kwargs}
        self.max_fit_points = max_fit_points
        self._reset()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # set by Trainer._load_callback_state on the instance it builds from a checkpoint
        self._checkpoint: dict[str, Any] | None = None

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        """Forget any previous run (a new ``train()`` call)."""
        self._active = False
        self._scheduler: Any = None
        self._optimizer: Any = None
        self._lrs = np.full(0, np.nan)
        self._planned = np.full(0, np.nan)  # by scheduler step
        self._plan_source = ""
        self._schedule: Schedule | None = None
        self._points: dict[str, dict[int, tuple[float, int]]] = {}
        self._prev_train_log = 0
        self._events: list[dict[str, Any]] = []
        self._history: list[dict[str, Any]] = []
        self._resolved: list[Schedule] = []
        self._metric_used = ""
        self._max_steps = 0
        self._done = 0  # updates done (the Trainer's global_step)
        self._version = 0  # bumped at each new point of the fitted metric
        self._fitted_version = -1
        self._fit_after_step = 0
        self._fit_every_step = 1
        self._folder: Path | None = None
        self._run_name = ""
        self._run_info: dict[str, Any] = {}
        self._pending: _Result | None = None  # finished in the thread, not yet taken in
        self._latest: _Result | None = None  # the last successful fit
        self._unpublished: dict[str, float] = {}
        self._stopped_at: int | None = None
        self._diverged_at: int | None = None
        self._said: set[str] = set()
        self._t_begin = time.perf_counter()
        self._plot_spent = 0.0
        self._plot_last = 0.0
        self._warned_state_args = False
        self._world_size = 1

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Trainer's callbacks: leave out threads, locks and training objects.
        out = dict(self.__dict__)
        for key in ("_lock", "_thread", "_scheduler", "_optimizer"):
            out[key] = None
        out["_pending"] = None
        return out

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
        n = min(self._done, len(self._lrs))
        attributes = {
            "_checkpoint": {
                "version": _STATE_VERSION,
                "global_step": n,
                "lrs": _encode_floats(self._lrs[:n]),
                "points": {
                    m: [[s, v, w] for s, (v, w) in sorted(p.items())]
                    for m, p in self._points.items()
                },
                "events": self._events,
                "history": self._history,
                "stopped_at": self._stopped_at,
                "diverged_at": self._diverged_at,
            }
        }
        return {"args": args, "attributes": attributes}

    # -- public views -------------------------------------------------------------------------

    @property
    def latest_fit(self) -> Fit | None:
        """The last successful fit (world rank 0), or None."""
        self._take_result()
        return self._latest.fit if self._latest else None

    @property
    def latest_prediction(self) -> dict[str, Any] | None:
        """The last prediction of this run's final loss (a dict with ``final_loss``, ``low``,
        ``high``, ``level``, ``annealing_identified``, ``fit_step``, ...), or None."""
        self._take_result()
        return dict(self._latest.prediction) if self._latest and self._latest.prediction else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per fit: the step and the predictions it made."""
        self._take_result()
        return list(self._history)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Divergence, failed fits, LR mismatches, stop decisions: ``{"step", "kind", ...}``."""
        return list(self._events)

    @property
    def record_path(self) -> Path | None:
        """``<output_dir>/<output_subdir>/record.json`` once training has begun."""
        return None if self._folder is None else self._folder / "record.json"

    def curve(self, metric: str | None = None) -> LossCurve:
        """The recorded curve of ``metric`` (default: the one fitted) with its per-step LRs:
        the recorded ones, then the planned ones up to ``max_steps``."""
        metric = metric or self._metric_used or "loss"
        steps, losses, windows = self._arrays(metric)
        return LossCurve(
            self._lrs_for_fit(),
            steps,
            losses,
            name=self._run_name,
            windows=windows if metric == "loss" else None,
            meta={"metric": metric, "source": "LRLawCallback"},
        )

    # -- events from the Trainer --------------------------------------------------------------

    def on_init_end(self, args, state, control, **kwargs):
        self._place_before_reporters()

    def on_train_begin(self, args, state, control, **kwargs):
        self._place_before_reporters()
        restored = self._checkpoint
        self._checkpoint = None
        self._wait_for_thread()
        self._reset()
        self._scheduler = kwargs.get("lr_scheduler")
        self._optimizer = kwargs.get("optimizer")
        self._max_steps = int(state.max_steps)
        self._done = int(state.global_step)
        self._prev_train_log = int(state.global_step)
        self._world_size = int(getattr(args, "world_size", 1) or 1)
        self._fit_after_step = self._steps_of(self.fit_after)
        self._fit_every_step = self._steps_of(self.fit_every)
        self._metric_used = self._choose_metric(args, state)
        self._lrs = np.full(self._max_steps, np.nan)

        self._planned, self._plan_source = planned_lrs(
            self._scheduler, self._optimizer, self._max_steps
        )
        if state.global_step > 0:
            self._restore(restored, state)
        self._fill_plan_gaps()
        lrs = self._lrs_for_fit()
        self._schedule = _schedule_from_args(args, self._planned)
        if not np.any(lrs > 0):
            self._event(state.global_step, "zero_lr", "the planned learning rate is zero at "
                        "every step: the law cannot be fitted (no training happens)", warn=True)
        self._resolve_candidates(args, lrs)
        trial = _trial_label(state)
        base = Path(args.output_dir).name or "run"
        self._run_name = f"{base}/{trial}" if trial else base
        folder = Path(args.output_dir) / self.output_subdir
        self._folder = folder / trial if trial else folder
        self._run_info = {
            "name": self._run_name,
            "output_dir": str(args.output_dir),
            "global_step": int(state.global_step),
            "max_steps": self._max_steps,
            "num_train_epochs": state.num_train_epochs,
            "logging_steps": state.logging_steps,
            "eval_steps": state.eval_steps if self._eval_interval(args, state) else None,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "world_size": self._world_size,
            "trial_name": state.trial_name,
            "trial_params": state.trial_params,
            "resumed_from_step": int(state.global_step) or None,
        }
        self._check_enough_points(args, state)
        self._active = True

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # After optimizer.step() and before lr_scheduler.step(): the LR this update used. A
        # Python float on the host: no device synchronisation.
        if not self._active:
            return
        g = state.global_step
        if g >= len(self._lrs):
            self._lrs = np.concatenate([self._lrs, np.full(max(g + 1, 2 * len(self._lrs)) -
                                                            len(self._lrs), np.nan)])
        groups = (optimizer or self._optimizer).param_groups
        lr = groups[0]["lr"]
        self._lrs[g] = lr if isinstance(lr, float) else float(lr)

    def on_step_begin(self, args, state, control, **kwargs):
        if not self._active:
            return
        g = state.global_step
        if state.is_world_process_zero and self._is_boundary(g):
            self._launch(g, final=False)

    def on_step_end(self, args, state, control, **kwargs):
        if not self._active:
            return
        self._done = int(state.global_step)
        if state.is_world_process_zero:
            self._take_result()
        if (
            self.stop_if_predicted_above is not None
            and self._is_boundary(state.global_step)
            and self._decide_stop(state)
        ):
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._active or logs is None:
            return
        g = state.global_step
        added: dict[str, float] = {}
        if "loss" in logs:
            self._record_train_loss(g, logs, added)
        if "learning_rate" in logs and g >= 1:
            self._check_logged_lr(g, logs["learning_rate"])
        if state.is_world_process_zero:
            self._take_result()
            added.update(self._unpublished)
            self._unpublished = {}
            if added:
                logs.update(added)
                history = state.log_history
                if history and history[-1].get("step") == g and all(
                    history[-1].get(k) is v for k, v in logs.items() if k not in added
                ):
                    history[-1].update(added)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self._active or not metrics or state.global_step < 1:
            return
        g = state.global_step
        for key, value in metrics.items():
            if key.startswith("eval_") and key.endswith("loss"):
                self._record_point(key, g - 1, value, 1, g)

    def on_train_end(self, args, state, control, **kwargs):
        if not self._active:
            return
        self._done = int(state.global_step)
        self._run_info["finished"] = True
        if state.is_world_process_zero:
            self._wait_for_thread()
            self._take_result()
            g = int(state.global_step)
            if g >= self._fit_after_step:
                self._launch(g, final=True, wait=True)
                self._take_result()
            else:
                self._say(
                    "short",
                    f"LRLawCallback: training ended at step {g}, before fit_after="
                    f"{self._fit_after_step}: no fit was made. {self.record_path} holds the "
                    f"{self._n_points()} recorded point(s); set fit_after (and min_points) "
                    "lower to get predictions from short runs",
                    warn=True,
                )
                self._write_record_now()
            if self._latest and self._latest.prediction:
                p = self._latest.prediction
                logger.info(
                    "LRLawCallback: predicted final %s %.4f [%.4f, %.4f] (%.0f%%) from the fit at "
                    "step %d; record: %s",
                    self._metric_used, p["final_loss"], p["low"], p["high"], 100 * self.level,
                    p["fit_step"], self.record_path,
                )
        self._active = False
        self._scheduler = None
        self._optimizer = None

    # -- recording ---------------------------------------------------------------------------

    def _record_train_loss(self, g: int, logs: Mapping[str, Any], added: dict[str, float]) -> None:
        window, self._prev_train_log = g - self._prev_train_log, g
        value = logs["loss"]
        grad_norm = logs.get("grad_norm")
        bad_grad = grad_norm is not None and _finite(grad_norm) is None
        if _finite(value) is None or bad_grad:
            what = f"loss {value}" if _finite(value) is None else f"grad_norm {grad_norm}"
            if self._diverged_at is None:
                self._diverged_at = g
                added[_PREFIX + "diverged"] = 1.0
                self._event(
                    g, "divergence", f"the Trainer logged {what} at step {g}: the run diverged; "
                    "predictions use the finite points before it", warn=True,
                )
            if _finite(value) is None:
                return
        if window < 1 or g - window - 1 < 0:
            return  # the first log of a run averages the untrained model's loss too
        self._record_point("loss", g - 2, value, window, g)

    def _record_point(self, metric: str, step: int, value: Any, window: int, g: int) -> None:
        v = _finite(value)
        if v is None:
            if metric != "loss" and self._diverged_at is None:
                self._diverged_at = g
                self._event(g, "divergence", f"{metric} is {value} at step {g}", warn=True)
            return
        self._points.setdefault(metric, {})[int(step)] = (v, int(window))
        if metric == self._metric_used:
            self._version += 1

    def _check_logged_lr(self, g: int, logged: Any) -> None:
        mine = self._lrs[g - 1] if g - 1 < len(self._lrs) else np.nan
        value = _finite(logged)
        if value is None:
            return
        if np.isnan(mine):
            self._lrs[g - 1] = value
            self._say("lr_gap", "LRLawCallback: the optimizer's LR was not captured at some "
                      "steps; using the logged one", warn=True)
        elif abs(mine - value) > 1e-12 * max(abs(value), 1e-30):
            self._event(g, "lr_mismatch", f"logged LR {value!r} at step {g} but the optimizer "
                        f"used {mine!r}; the recorded one is kept", warn=True, once=True)

    def _event(self, g: int, kind: str, message: str, *, warn: bool = False,
               once: bool = False) -> None:
        if once and any(e["kind"] == kind for e in self._events):
            return
        self._events.append({"step": int(g), "kind": kind, "message": message})
        if warn:
            logger.warning("LRLawCallback: %s", message)

    def _say(self, key: str, message: str, *, warn: bool = False) -> None:
        if key in self._said:
            return
        self._said.add(key)
        (logger.warning if warn else logger.info)(message)

    def _n_points(self, metric: str | None = None, since: int = 0) -> int:
        points = self._points.get(metric or self._metric_used, {})
        return len(points) if since <= 0 else sum(1 for s in points if s >= since)

    def _arrays(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items = sorted(self._points.get(metric, {}).items())
        steps = np.array([s for s, _ in items], dtype=np.int64)
        losses = np.array([v for _, (v, _) in items], dtype=np.float64)
        windows = np.array([w for _, (_, w) in items], dtype=np.int64)
        return steps, losses, windows

    # -- schedule -----------------------------------------------------------------------------

    def _fill_plan_gaps(self) -> None:
        """Steps the plan does not know (a resumed run with a scheduler stepped on a copy): the
        recorded LRs."""
        n = min(len(self._planned), len(self._lrs))
        gaps = np.isnan(self._planned[:n]) & ~np.isnan(self._lrs[:n])
        self._planned[:n][gaps] = self._lrs[:n][gaps]

    def _lrs_for_fit(self) -> np.ndarray:
        """Per-step LRs for updates ``0..max_steps-1``: recorded for the updates done, then the
        scheduler's plan (shifted by any updates whose scheduler step was skipped)."""
        n = min(self._done, self._max_steps)
        out = np.empty(self._max_steps)
        out[:n] = self._lrs[:n]
        lag = self._current_lag(n)
        idx = np.clip(np.arange(n, self._max_steps) - lag, 0, len(self._planned) - 1)
        out[n:] = self._planned[idx] if len(self._planned) else np.nan
        holes = np.isnan(out)
        if np.any(holes):  # steps not captured: take the plan (warned about in _check_logged_lr)
            planned = self._planned[np.clip(np.arange(self._max_steps), 0, len(self._planned) - 1)]
            out[holes] = planned[holes]
            out = np.nan_to_num(out, nan=0.0)
        return out

    def _check_plan(self, g: int) -> None:
        """Warn once where the LRs the optimizer used differ from the scheduler's plan (skipped
        fp16 steps, an LR set by other code): the recorded ones are the truth."""
        if any(e["kind"] == "lr_plan_mismatch" for e in self._events):
            return
        n = min(g, len(self._lrs), len(self._planned))
        used, plan = self._lrs[:n], self._planned[:n]
        known = ~np.isnan(used) & ~np.isnan(plan)
        scale = np.maximum(np.abs(used), np.abs(plan))
        off = known & (np.abs(used - plan) > 1e-9 * np.where(scale > 0, scale, 1.0))
        if np.any(off):
            k = int(np.argmax(off))
            self._event(
                g, "lr_plan_mismatch",
                f"the optimizer used a learning rate other than the scheduler's plan at "
                f"{int(off.sum())} of {n} steps (first at step {k}: {used[k]!r} instead of "
                f"{plan[k]!r}); the recorded LRs are used for the steps done and the plan, "
                f"shifted by {self._current_lag(g)} skipped scheduler step(s), for the rest",
                warn=True,
            )

    def _current_lag(self, g: int) -> int:
        """Updates whose scheduler step was skipped (fp16 overflow steps), which shift the rest
        of the plan: updates done minus scheduler steps done."""
        last_epoch = getattr(self._scheduler, "last_epoch", None)
        if not isinstance(last_epoch, int) or isinstance(last_epoch, bool):
            return 0
        return max(0, int(g) - last_epoch)

    def _resolve_candidates(self, args: Any, lrs: np.ndarray) -> None:
        from hf_lrlaw.laws.areas import warmup_end

        defaults = {
            "peak_lr": float(np.max(lrs)) if len(lrs) and np.max(lrs) > 0 else args.learning_rate,
            "total_steps": self._max_steps,
            "warmup_steps": int(warmup_end(lrs)),
        }
        resolved = []
        for item in self.candidates:
            try:
                resolved.append(_resolve_candidate(item, defaults))
            except ScheduleError as exc:
                raise ValueError(
                    f"LRLawCallback: candidate {item!r} does not fit this run "
                    f"(max_steps={self._max_steps}): {exc}"
                ) from None
        self._resolved = resolved

    # -- configuration checks ----------------------------------------------------------------

    def _steps_of(self, value: int | float) -> int:
        if isinstance(value, float):
            return max(1, math.ceil(value * self._max_steps))
        return int(value)

    @staticmethod
    def _eval_interval(args: Any, state: Any) -> int | None:
        strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
        if strategy == "steps":
            return max(1, int(state.eval_steps or args.logging_steps or 1))
        if strategy == "epoch":
            epochs = max(1, math.ceil(float(state.num_train_epochs or 1)))
            return max(1, math.ceil(state.max_steps / epochs))
        return None

    def _choose_metric(self, args: Any, state: Any) -> str:
        logging_on = str(getattr(args.logging_strategy, "value", args.logging_strategy)) != "no"
        interval = self._eval_interval(args, state)
        if self.metric.startswith("eval_"):
            if interval is None:
                raise ValueError(
                    f"LRLawCallback(metric={self.metric!r}) needs evaluation during training: "
                    "set TrainingArguments(eval_strategy='steps', eval_steps=...) and pass an "
                    "eval_dataset, or use metric='loss'"
                )
            return self.metric
        if self.metric == "loss":
            if not logging_on:
                raise ValueError(
                    "LRLawCallback(metric='loss') needs the train loss: set "
                    "TrainingArguments(logging_strategy='steps', logging_steps=...)"
                )
            return "loss"
        if interval is not None and self._fit_after_step // interval >= self.min_points:
            return "eval_loss"
        if not logging_on:
            if interval is not None:
                return "eval_loss"
            raise ValueError(
                "LRLawCallback needs a loss to fit: set TrainingArguments(logging_strategy="
                "'steps', logging_steps=...) or evaluate during training (eval_strategy='steps')"
            )
        return "loss"

    def _check_enough_points(self, args: Any, state: Any) -> None:
        if self._metric_used == "loss":
            strategy = str(getattr(args.logging_strategy, "value", args.logging_strategy))
            every = (
                state.logging_steps if strategy == "steps"
                else math.ceil(self._max_steps / max(1, math.ceil(state.num_train_epochs or 1)))
            )
        else:
            every = self._eval_interval(args, state) or self._max_steps
        expected = self._max_steps // max(1, every) - (1 if self._metric_used == "loss" else 0)
        if expected < self.min_points:
            what = "logging_steps" if self._metric_used == "loss" else "eval_steps"
            self._say(
                "few_points",
                f"LRLawCallback: only about {max(expected, 0)} {self._metric_used} point(s) will be "
                f"recorded in {self._max_steps} steps, fewer than min_points={self.min_points}: "
                f"set {what} <= {max(1, self._max_steps // (self.min_points + 1))} to get fits",
                warn=True,
            )
        if self._fit_after_step > self._max_steps:
            self._say(
                "late",
                f"LRLawCallback: fit_after={self._fit_after_step} is past max_steps="
                f"{self._max_steps}: no fit will be made",
                warn=True,
            )

    def _is_boundary(self, g: int) -> bool:
        return g >= self._fit_after_step and (g - self._fit_after_step) % self._fit_every_step == 0

    # -- resume --------------------------------------------------------------------------------

    def _restore(self, saved: Mapping[str, Any] | None, state: Any) -> None:
        g = int(state.global_step)
        if saved is not None and int(saved.get("version", 0)) == _STATE_VERSION:
            try:
                lrs = _decode_floats(saved["lrs"])
                n = min(len(lrs), g, len(self._lrs))
                self._lrs[:n] = lrs[:n]
                for metric, rows in saved.get("points", {}).items():
                    self._points[metric] = {
                        int(s): (float(v), int(w)) for s, v, w in rows if int(s) < g
                    }
                self._events = [e for e in saved.get("events", []) if e.get("step", 0) <= g]
                self._history = [h for h in saved.get("history", []) if h.get("step", 0) <= g]
                self._diverged_at = saved.get("diverged_at")
                self._say("restored", f"LRLawCallback: restored {n} LRs and "
                          f"{sum(len(p) for p in self._points.values())} points from the checkpoint")
                if n == g:
                    return
            except (KeyError, TypeError, ValueError, zlib.error) as exc:
                logger.warning("LRLawCallback: the checkpointed state is unreadable (%s); "
                               "rebuilding the curve from log_history", exc)
        else:
            self._say(
                "rebuild",
                "LRLawCallback: resuming without the callback's checkpointed state (set "
                "TrainingArguments(restore_callback_states_from_checkpoint=True) to restore "
                "it); the curve before the checkpoint is rebuilt from log_history and the "
                "scheduler's plan",
            )
        self._rebuild_from_log_history(state)

    def _rebuild_from_log_history(self, state: Any) -> None:
        g_now = int(state.global_step)
        prev = 0
        for entry in state.log_history or []:
            g = entry.get("step")
            if not isinstance(g, int) or g < 1 or g > g_now:
                continue
            if "learning_rate" in entry and np.isnan(self._lrs[g - 1]):
                value = _finite(entry["learning_rate"])
                if value is not None:
                    self._lrs[g - 1] = value
            if "loss" in entry:
                window, prev = g - prev, g
                if window >= 1 and g - window - 1 >= 0 and (g - 2) not in self._points.get(
                    "loss", {}
                ):
                    self._record_point("loss", g - 2, entry["loss"], window, g)
            for key, value in entry.items():
                if (key.startswith("eval_") and key.endswith("loss")
                        and (g - 1) not in self._points.get(key, {})):
                    self._record_point(key, g - 1, value, 1, g)
        n = min(g_now, len(self._lrs), len(self._planned))
        gaps = np.isnan(self._lrs[:n])
        self._lrs[:n][gaps] = self._planned[:n][gaps]

    # -- fitting ---------------------------------------------------------------------------------

    def _launch(self, g: int, *, final: bool, wait: bool = False) -> None:
        """Start a fit on the data through global step ``g`` (rank 0)."""
        if self._thread is not None and self._thread.is_alive():
            if not wait:
                self._say("busy", "LRLawCallback: a fit was still running at a fit boundary; "
                          "that fit is skipped (fit less often, or set a larger fit_every)")
                return
            self._wait_for_thread()
        self._take_result()
        since = self.fit_kwargs.get("min_step", 0)  # points before it are not fitted
        since = since if isinstance(since, int) and not isinstance(since, bool) else 0
        n = self._n_points(since=since)
        if n < self.min_points:
            self._say(
                f"few_{g}" if final else "few",
                f"LRLawCallback: {n} {self._metric_used} point(s) at step {g}"
                f"{f' from step {since} (min_step) on' if since > 0 else ''}, fewer than "
                f"min_points={self.min_points}: no fit yet",
                warn=final,
            )
            if final:
                self._write_record_now()
            return
        if self._version == self._fitted_version:
            if final:  # nothing new since the last fit: the record says the run is over
                self._write_record_now()
            return
        self._fitted_version = self._version
        job = self._snapshot(g, final)
        if self.background and not wait:
            thread = threading.Thread(target=self._work, args=(job,), name="lrlaw-fit",
                                      daemon=True)
            self._thread = thread
            thread.start()
        else:
            self._work(job)

    def _snapshot(self, g: int, final: bool) -> _Job:
        self._check_plan(g)
        lrs = self._lrs_for_fit()
        points = {m: self._arrays(m) for m in self._points}
        record = {
            "run": {**self._run_info, "global_step": int(g)},
            "metric": self._metric_used,
            "schedule": {
                "text": None if self._schedule is None else str(self._schedule),
                "source": self._plan_source,
                "peak_lr": float(np.max(lrs)) if len(lrs) else None,
            },
            "planned_lrs": [float(x) for x in np.nan_to_num(self._planned)],
            "callback": self._init_args(),
        }
        return _Job(
            step=g, final=final, metric=self._metric_used, lrs=lrs, points=points,
            folder=self._folder, record=record, history=list(self._history),
            events=list(self._events), candidates=list(self._resolved), run_name=self._run_name,
        )

    def _work(self, job: _Job) -> None:
        """Fit, predict, write the record and the figure; never raises."""
        t0, c0 = time.perf_counter(), time.thread_time()
        result = _Result(step=job.step, final=job.final)
        curve = None
        try:
            curve, fit_curve = self._curves_for_fit(job)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result.fit = fit(fit_curve, law=self.law, **self.fit_kwargs)
                self._predict(job, result)
        except (FitError, CurveError, LawError, ScheduleError) as exc:
            result.fit, result.error = None, str(exc)
        except Exception as exc:  # a fit must never take training down
            result.fit, result.error = None, f"{type(exc).__name__}: {exc}"
            logger.debug("LRLawCallback: fit failed", exc_info=True)
        result.seconds = time.perf_counter() - t0
        try:
            self._write(job, result, curve, c0)
        except Exception as exc:
            logger.warning("LRLawCallback: could not write %s: %s", job.folder, exc)
        with self._lock:
            self._pending = result

    def _curves_for_fit(self, job: _Job) -> tuple[LossCurve, LossCurve]:
        steps, losses, windows = job.points.get(job.metric, (np.zeros(0, np.int64),) * 3)
        is_train = job.metric == "loss"
        if not is_train:
            windows = np.ones(len(steps), dtype=np.int64)
        curve = LossCurve(job.lrs, steps, losses, name=job.run_name,
                          windows=windows if is_train else None,
                          meta={"metric": job.metric, "source": "LRLawCallback"})
        # A point whose window starts before any training at a non-zero LR tells nothing (and
        # the laws cannot evaluate it): leave it out of the fit.
        area = np.cumsum(job.lrs)
        keep = area[np.maximum(steps - windows + 1, 0)] > 0
        f_steps, f_losses, f_windows = steps[keep], losses[keep], windows[keep]
        if is_train:
            f_steps, f_losses, f_windows = _merge_windows(
                f_steps, f_losses, f_windows, self.max_fit_points
            )
        if len(f_steps) < self.min_points:
            raise FitError(
                f"{len(f_steps)} usable {job.metric} point(s), fewer than min_points="
                f"{self.min_points} (points before any training at a non-zero LR are left out)"
            )
        fit_curve = LossCurve(job.lrs, f_steps, f_losses, name=job.run_name,
                              windows=f_windows if is_train else None, meta=dict(curve.meta))
        return curve, fit_curve

    def _predict(self, job: _Job, result: _Result) -> None:
        f = result.fit
        assert f is not None
        last = len(job.lrs) - 1
        mean, low, high = f.predict_interval(job.lrs, [last], level=self.level)
        result.prediction = {
            "fit_step": job.step,
            "final_step": last,
            "final_loss": float(mean[0]),
            "low": float(low[0]),
            "high": float(high[0]),
            "level": self.level,
            "annealing_identified": bool(f.annealing_identified),
            "law": f.law,
            "notes": list(f.notes),
            "fit_seconds": float(f.fit_seconds),
        }
        if self.stop_if_predicted_above is not None:
            _, stop_low, _ = f.predict_interval(
                job.lrs, [last], level=2 * self.stop_confidence - 1
            )
            result.stop_low = float(stop_low[0])
        if job.candidates:
            from hf_lrlaw.ranking import rank

            ranking = rank(f, job.candidates, level=self.level)
            by_id = {id(r.schedule): r for r in ranking}
            result.candidates = [
                {"index": i, **by_id[id(s)].to_dict()} for i, s in enumerate(job.candidates)
            ]
        self._check_sane(job, result)

    @staticmethod
    def _check_sane(job: _Job, result: _Result) -> None:
        """A fit whose predictions are not losses (non-positive, or an interval that does not
        hold its mean) is ill-posed: nothing of it is reported."""
        p = result.prediction or {}
        rows = [(p.get("final_loss"), p.get("low"), p.get("high"), "this run")]
        rows += [(r["predicted"], r["low"], r["high"], f"candidate {r['index']}")
                 for r in result.candidates]
        for mean, low, high, what in rows:
            values = [_finite(mean), _finite(low), _finite(high)]
            if None in values or not (values[0] > 0 and 0 <= values[1] <= values[0] <= values[2]):
                raise FitError(
                    f"the fitted {result.fit.law if result.fit else ''} law predicts a final "
                    f"{job.metric} of {mean:.4g} [{low:.4g}, {high:.4g}] for {what}, which is not "
                    "a loss: the fit is ill-posed at this point of the run (e.g. an annealing "
                    "gain extrapolated from little LR decay), so no prediction is reported; "
                    "more points, or a prior (fit_kwargs={'prior': 'default'}), help"
                )

    def _write(self, job: _Job, result: _Result, curve: LossCurve | None, c0: float) -> None:
        """fit.png, then record.json (which says how long the work took)."""
        if job.folder is None:
            return
        if self.plot and result.fit is not None and curve is not None and self._plot_due(job):
            t0, c1 = time.perf_counter(), time.thread_time()
            try:
                self._plot(job, result, curve)
            except Exception as exc:
                logger.warning("LRLawCallback: could not draw %s: %s",
                               job.folder / "fit.png", exc)
            result.plot_seconds = time.perf_counter() - t0
            plot_cpu = time.thread_time() - c1
            self._plot_spent += plot_cpu
            self._plot_last = plot_cpu
        result.cpu_seconds = time.thread_time() - c0
        if result.fit is not None:
            record = self._record(job, result, new=True)
        else:
            record = self._record(job, self._latest, new=False)
            record["events"].append({"step": job.step, "kind": "fit_failed",
                                     "message": _failure(result)})
        _write_json_atomic(job.folder / "record.json", record)

    def _plot_due(self, job: _Job) -> bool:
        if job.final:
            return True
        elapsed = time.perf_counter() - self._t_begin
        return self._plot_spent + (self._plot_last or _PLOT_GUESS_S) <= _PLOT_SHARE * elapsed

    def _record(self, job: _Job, result: _Result | None, *, new: bool) -> dict[str, Any]:
        """The record.json content; ``new``: ``result`` is not in the history yet."""
        curves, others = [], []
        empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
        points = {job.metric: empty, **job.points}
        for metric, (steps, losses, windows) in sorted(points.items()):
            # LossCurve.to_dict's format, written even where LossCurve would refuse the data
            # (e.g. an LR of zero at every step): the record keeps what happened
            c = {
                "name": job.run_name,
                "lrs": job.lrs.tolist(),
                "steps": steps.tolist(),
                "losses": losses.tolist(),
                "meta": {"metric": metric, "source": "LRLawCallback"},
            }
            if metric == "loss":
                c["windows"] = windows.tolist()
            (curves if metric == job.metric else others).append(c)
        history = list(job.history)
        if new and result is not None and result.prediction is not None:
            history.append(self._history_entry(result))
        import hf_lrlaw

        return {
            "schema": RECORD_SCHEMA,
            "producer": f"hf_lrlaw {hf_lrlaw.__version__} LRLawCallback",
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **job.record,
            "curves": curves,
            "other_curves": others,
            "fit": None if result is None or result.fit is None else result.fit.to_dict(),
            "prediction": None if result is None else result.prediction,
            "candidates": [] if result is None else result.candidates,
            "history": history,
            "events": list(job.events),
        }

    def _plot(self, job: _Job, result: _Result, curve: LossCurve) -> None:
        from hf_lrlaw.plots import plot_fit, schedule_label

        p = result.prediction or {}
        title = (
            f"{job.run_name}: predicted final {job.metric} {p.get('final_loss', float('nan')):.4f} "
            f"[{p.get('low', float('nan')):.4f}, {p.get('high', float('nan')):.4f}] "
            f"at step {len(job.lrs)} (fit at step {job.step})"
        )
        labels = [f"#{i} {schedule_label(s, 40)}" for i, s in enumerate(job.candidates)]
        plot_fit(result.fit, [curve], predict=list(job.candidates), labels=labels or None,
                 level=self.level, title=title, path=job.folder / "fit.png")

    def _write_record_now(self) -> None:
        if self._folder is None:
            return
        job = self._snapshot(self._done, True)
        try:
            record = self._record(job, self._latest, new=False)
            _write_json_atomic(job.folder / "record.json", record)
        except Exception as exc:
            logger.warning("LRLawCallback: could not write %s: %s", job.folder, exc)

    def _history_entry(self, result: _Result) -> dict[str, Any]:
        p = result.prediction or {}
        entry = {
            "step": result.step,
            "final": result.final,
            "final_loss": p.get("final_loss"),
            "low": p.get("low"),
            "high": p.get("high"),
            "annealing_identified": p.get("annealing_identified"),
            "law": p.get("law"),
            "seconds": round(result.seconds, 4),
        }
        if result.plot_seconds:
            entry["plot_seconds"] = round(result.plot_seconds, 4)
        entry["cpu_seconds"] = round(result.cpu_seconds, 4)
        if result.stop_low is not None:
            entry["stop_low"] = result.stop_low
        if result.candidates:
            best = min(result.candidates, key=lambda r: r["predicted"])
            entry["best_candidate"] = best["index"]
            entry["best_candidate_final_loss"] = best["predicted"]
        return entry

    def _wait_for_thread(self, timeout: float | None = None) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def _take_result(self) -> None:
        """Take in a finished fit (training thread): metrics to publish, history, warnings."""
        if self._pending is None:
            return
        with self._lock:
            result, self._pending = self._pending, None
        if result is None:
            return
        if result.fit is None:
            self._event(result.step, "fit_failed", _failure(result), warn=True)
            return
        self._latest = result
        self._history.append(self._history_entry(result))
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
        self._unpublished.update(
            {_PREFIX + k: float(v) for k, v in metrics.items() if _finite(v) is not None}
        )

    # -- decisions -------------------------------------------------------------------------------

    def _decide_stop(self, state: Any) -> bool:
        """Whether to stop, identical on every process: rank 0 decides from the last fit made
        at an earlier boundary and broadcasts its decision."""
        g = int(state.global_step)
        decision = False
        if state.is_world_process_zero:
            try:
                if self._thread is not None and not self._wait_for_thread(_JOIN_TIMEOUT_S):
                    logger.warning("LRLawCallback: the fit did not finish in %.0f s; the stop "
                                   "decision uses the previous fit", _JOIN_TIMEOUT_S)
                self._take_result()
                latest = self._latest
                if (
                    latest is not None and latest.stop_low is not None and latest.step < g
                    and latest.stop_low > self.stop_if_predicted_above
                ):
                    decision = True
            except Exception as exc:  # never leave the other ranks waiting
                logger.warning("LRLawCallback: stop decision failed (%s); not stopping", exc)
                decision = False
        decision = self._broadcast(decision)
        if decision:
            self._stopped_at = g
            if state.is_world_process_zero and self._latest is not None:
                p = self._latest.prediction or {}
                message = (
                    f"stopping at step {g}: the final {self._metric_used} is predicted "
                    f"{p.get('final_loss', float('nan')):.4f} and above "
                    f"{self.stop_if_predicted_above} with probability >= {self.stop_confidence} "
                    f"(fit at step {self._latest.step})"
                )
                self._event(g, "stop", message)
                logger.warning("LRLawCallback: %s", message)
                self._unpublished[_PREFIX + "stopped"] = 1.0
        return decision

    def _broadcast(self, decision: bool) -> bool:
        if self._world_size <= 1:
            return decision
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
            return decision
        backend = str(dist.get_backend())
        if "gloo" in backend or backend == "mpi":
            device = torch.device("cpu")
        else:
            device = torch.device("cuda", torch.cuda.current_device())
        flag = torch.tensor([1 if decision else 0], dtype=torch.int32, device=device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    # -- callback order ------------------------------------------------------------------------

    def _place_before_reporters(self) -> None:
        """Move this callback right after DefaultFlowCallback in the Trainer's callback list, so
        that the metrics it adds to ``logs`` in ``on_log`` reach the reporting integrations
        (TensorBoard, W&B, ...) and the progress printer, which the Trainer puts before user
        callbacks. The list is the CallbackHandler's, found from the caller's frame (a callback
        gets no reference to the Trainer)."""
        handler = None
        frame = sys._getframe(1)
        for _ in range(6):
            if frame is None:
                break
            owner = frame.f_locals.get("self")
            callbacks = getattr(owner, "callbacks", None)
            if isinstance(callbacks, list) and any(cb is self for cb in callbacks):
                handler = owner
                break
            frame = frame.f_back
        if handler is None:
            self._say(
                "order",
                "LRLawCallback: could not find the Trainer's callback list; its metrics reach "
                "state.log_history but not the integrations listed before it",
            )
            return
        callbacks = handler.callbacks
        me = next(i for i, cb in enumerate(callbacks) if cb is self)
        target = 0
        for i, cb in enumerate(callbacks):
            if isinstance(cb, DefaultFlowCallback):
                target = i + 1
        if me > target:
            callbacks.insert(target, callbacks.pop(me))
