"""The callback's options checked where they enter (one ``ValueError`` naming the option), the
schedule text of its candidates, and the Trainer settings it needs (which metric, enough points).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hf_lrlaw.callback.recording import Recorder, finite
from hf_lrlaw.fitting import fit
from hf_lrlaw.laws import LawError, available_laws, get_law
from hf_lrlaw.laws.areas import warmup_end
from hf_lrlaw.schedules import Schedule, ScheduleError

__all__ = [
    "FIT_KWARGS_EXCLUDED",
    "check_enough_points",
    "check_options",
    "choose_metric",
    "eval_interval",
    "resolve_candidate",
    "resolve_candidates",
]

FIT_KWARGS_EXCLUDED = ("curves", "law")


def check_options(
    law: str,
    metric: str,
    fit_after: int | float,
    fit_every: int | float,
    min_points: int,
    candidates: Sequence[Schedule | str] | None,
    level: float,
    stop_if_predicted_above: float | None,
    stop_confidence: float,
    output_subdir: str,
    fit_kwargs: Mapping[str, Any] | None,
    max_fit_points: int,
) -> tuple[list[Schedule | str], dict[str, Any]]:
    """Check the constructor's arguments; returns the candidates (checked) and the fit keyword
    arguments (a copy)."""
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
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (value > 0 and (isinstance(value, int) or value < 1))
        ):
            raise ValueError(
                f"LRLawCallback: {name} must be a number of steps (int >= 1) or a fraction "
                f"of max_steps in (0, 1), got {value!r}"
            )
    if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 5:
        raise ValueError(f"LRLawCallback: min_points must be an int >= 5, got {min_points!r}")
    if not 0 < level < 1:
        raise ValueError(f"LRLawCallback: level must be in (0, 1), got {level!r}")
    if stop_if_predicted_above is not None and finite(stop_if_predicted_above) is None:
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
    if (
        isinstance(max_fit_points, bool)
        or not isinstance(max_fit_points, int)
        or (max_fit_points < min_points)
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
    accepted = set(inspect.signature(fit).parameters) - set(FIT_KWARGS_EXCLUDED)
    unknown = sorted(set(fit_kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"LRLawCallback: fit_kwargs has {unknown}, which hf_lrlaw.fit() does not take "
            f"(it takes {sorted(accepted)}; set the law with law=)"
        )
    if fit_kwargs.get("law_options"):
        if law == "auto":
            raise ValueError(
                "LRLawCallback: fit_kwargs['law_options'] needs a named law, e.g. law='momentum'"
            )
        try:
            get_law(law, **fit_kwargs["law_options"])
        except LawError as exc:
            raise ValueError(f"LRLawCallback: {exc}") from None
    if isinstance(candidates, (str, Schedule)):
        raise ValueError(
            f"LRLawCallback: candidates must be a list of schedules (or their texts), got one "
            f"{type(candidates).__name__}: {str(candidates)[:60]!r}; wrap it in a list"
        )
    texts = []
    for item in candidates or ():
        try:  # check the text now; missing peak_lr/total_steps come from the run later
            resolve_candidate(item, {"peak_lr": 1.0, "total_steps": 1000})
        except ScheduleError as exc:
            raise ValueError(f"LRLawCallback: candidate {item!r}: {exc}") from None
        texts.append(item)
    return texts, fit_kwargs


def resolve_candidate(item: Schedule | str, defaults: Mapping[str, Any] | None) -> Schedule:
    """A candidate as a Schedule; text may leave out ``peak_lr``, ``total_steps`` and
    ``warmup_steps``, which then default to this run's (``defaults``)."""
    if isinstance(item, Schedule):
        return item
    if not isinstance(item, str):
        raise ScheduleError(
            f"a candidate must be a Schedule or its text, got {type(item).__name__}"
        )
    return Schedule.parse(item, defaults=defaults)


def resolve_candidates(
    candidates: Sequence[Schedule | str], args: Any, lrs: np.ndarray, max_steps: int
) -> list[Schedule]:
    """The candidates as Schedules of this run: text takes the run's peak LR, length and warmup
    where it leaves them out."""
    defaults = {
        "peak_lr": float(np.max(lrs)) if len(lrs) and np.max(lrs) > 0 else args.learning_rate,
        "total_steps": max_steps,
        "warmup_steps": int(warmup_end(lrs)),
    }
    resolved = []
    for item in candidates:
        try:
            resolved.append(resolve_candidate(item, defaults))
        except ScheduleError as exc:
            raise ValueError(
                f"LRLawCallback: candidate {item!r} does not fit this run "
                f"(max_steps={max_steps}): {exc}"
            ) from None
    return resolved


def eval_interval(args: Any, state: Any) -> int | None:
    """Steps between evaluations during training (None: no evaluation)."""
    strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
    if strategy == "steps":
        return max(1, int(state.eval_steps or args.logging_steps or 1))
    if strategy == "epoch":
        epochs = max(1, math.ceil(float(state.num_train_epochs or 1)))
        return max(1, math.ceil(state.max_steps / epochs))
    return None


def choose_metric(metric: str, args: Any, state: Any, fit_after_step: int, min_points: int) -> str:
    """The loss the fits use: ``metric``, or for ``"auto"`` the eval loss when evaluation gives
    ``min_points`` points by the first fit, else the train loss. ValueError saying what to set
    when the Trainer's settings give no such loss."""
    logging_on = str(getattr(args.logging_strategy, "value", args.logging_strategy)) != "no"
    interval = eval_interval(args, state)
    if metric.startswith("eval_"):
        if interval is None:
            raise ValueError(
                f"LRLawCallback(metric={metric!r}) needs evaluation during training: "
                "set TrainingArguments(eval_strategy='steps', eval_steps=...) and pass an "
                "eval_dataset, or use metric='loss'"
            )
        return metric
    if metric == "loss":
        if not logging_on:
            raise ValueError(
                "LRLawCallback(metric='loss') needs the train loss: set "
                "TrainingArguments(logging_strategy='steps', logging_steps=...)"
            )
        return "loss"
    if interval is not None and fit_after_step // interval >= min_points:
        return "eval_loss"
    if not logging_on:
        if interval is not None:
            return "eval_loss"
        raise ValueError(
            "LRLawCallback needs a loss to fit: set TrainingArguments(logging_strategy="
            "'steps', logging_steps=...) or evaluate during training (eval_strategy='steps')"
        )
    return "loss"


def check_enough_points(
    recorder: Recorder, args: Any, state: Any, fit_after_step: int, min_points: int
) -> None:
    """Warn (once) when the run will record fewer points than a fit needs, or ends before the
    first fit."""
    metric, max_steps = recorder.metric, recorder.max_steps
    if metric == "loss":
        strategy = str(getattr(args.logging_strategy, "value", args.logging_strategy))
        every = (
            state.logging_steps
            if strategy == "steps"
            else math.ceil(max_steps / max(1, math.ceil(state.num_train_epochs or 1)))
        )
    else:
        every = eval_interval(args, state) or max_steps
    expected = max_steps // max(1, every) - (1 if metric == "loss" else 0)
    if expected < min_points:
        what = "logging_steps" if metric == "loss" else "eval_steps"
        recorder.say(
            "few_points",
            f"LRLawCallback: only about {max(expected, 0)} {metric} point(s) will be "
            f"recorded in {max_steps} steps, fewer than min_points={min_points}: "
            f"set {what} <= {max(1, max_steps // (min_points + 1))} to get fits",
            warn=True,
        )
    if fit_after_step > max_steps:
        recorder.say(
            "late",
            f"LRLawCallback: fit_after={fit_after_step} is past max_steps={max_steps}: no fit "
            "will be made",
            warn=True,
        )
