"""Schedules <-> transformers: the built-in scheduler that is exactly a Schedule, and the Schedule
that ``TrainingArguments`` describe (both directions live here, so that they agree).

Only attributes of the ``TrainingArguments`` object are read: this module imports neither
transformers nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hf_lrlaw.schedules.kinds import ScheduleError, short
from hf_lrlaw.schedules.shapes import wsd_decay_steps

if TYPE_CHECKING:
    from hf_lrlaw.schedules.schedule import Schedule

__all__ = ["hf_form", "to_hf", "to_training_args", "training_args_form"]


def to_hf(s: Schedule) -> tuple[str, dict[str, Any]]:
    """``(lr_scheduler_type, lr_scheduler_kwargs)`` of the transformers scheduler that is exactly
    ``s`` (Trainer warmup_steps = ``s.warmup_steps``); else ScheduleError saying why."""
    form, reason = hf_form(s)
    if form is None:
        raise ScheduleError(
            f"no transformers scheduler is exactly {short(str(s))}: {reason}; use "
            "Schedule.to_torch(optimizer) and pass it as Trainer(optimizers=(optimizer, "
            "scheduler)), or a custom scheduler"
        )
    return form


def to_training_args(s: Schedule) -> dict[str, Any]:
    """Keyword arguments for ``transformers.TrainingArguments`` that give ``s``."""
    name, kwargs = to_hf(s)
    return {
        "learning_rate": s.peak_lr,
        "max_steps": s.total_steps,
        "warmup_steps": s.warmup_steps,
        "lr_scheduler_type": name,
        "lr_scheduler_kwargs": kwargs,
    }


def hf_form(s: Schedule) -> tuple[tuple[str, dict[str, Any]] | None, str]:
    """The exact transformers form of ``s`` or None, with the reason when None."""
    p = s.params
    plain_warmup = s.warmup_steps == 0 or (
        s.warmup_shape == "linear" and s.warmup_start_ratio == 0.0
    )
    final = p.get("final_ratio", p.get("min_ratio"))
    wsd_reason = (
        "transformers' warmup_stable_decay warms up from min_lr_ratio * peak; set "
        f"warmup_start_ratio={final!r} (= final_ratio) to use it"
    )
    plain_reason = "transformers warms this scheduler up linearly from 0 only"

    def wsd(decay_steps: int, decay_shape: str, final_ratio: float) -> tuple[str, dict[str, Any]]:
        return "warmup_stable_decay", {
            "num_decay_steps": decay_steps,
            "decay_type": decay_shape,
            "min_lr_ratio": final_ratio,
            "warmup_type": s.warmup_shape,
        }

    fits_wsd = s.warmup_steps == 0 or s.warmup_start_ratio == final
    after = s.total_steps - s.warmup_steps
    if s.kind == "constant":
        if plain_warmup:
            return ("constant_with_warmup" if s.warmup_steps else "constant", {}), ""
        return wsd(0, "linear", s.warmup_start_ratio), ""
    if s.kind == "linear":
        if plain_warmup and final == 0.0:
            return ("linear", {}), ""
        if plain_warmup and final == 1.0:
            return ("constant_with_warmup" if s.warmup_steps else "constant", {}), ""
        if plain_warmup:
            return ("polynomial", {"lr_end": final * s.peak_lr, "power": 1.0}), ""
        return (wsd(after, "linear", final), "") if fits_wsd else (None, wsd_reason)
    if s.kind == "cosine":
        if plain_warmup:
            form = (
                ("cosine", {}) if final == 0.0 else ("cosine_with_min_lr", {"min_lr_rate": final})
            )
            return form, ""
        return (wsd(after, "cosine", final), "") if fits_wsd else (None, wsd_reason)
    if s.kind == "wsd":
        if p["decay_shape"] == "exponential":
            return None, "transformers' warmup_stable_decay has no exponential decay_type"
        if not fits_wsd:
            return None, wsd_reason
        return wsd(wsd_decay_steps(s.total_steps, p["decay_fraction"]), p["decay_shape"], final), ""
    if s.kind == "inverse_sqrt":
        return (
            (("inverse_sqrt", {"timescale": p["timescale"]}), "")
            if plain_warmup
            else (None, plain_reason)
        )
    return None, f"transformers has no {s.kind} scheduler"


def training_args_form(args: Any, total_steps: int) -> tuple[str, dict[str, Any]] | None:
    """``(kind, parameters)`` of the Schedule that ``TrainingArguments`` describe for a run of
    ``total_steps`` (the inverse of :func:`hf_form`), or None where no Schedule kind has that
    scheduler (a custom one, cosine with restarts, ...). ``Schedule.from_training_args`` builds
    it and checks it against the scheduler's real plan."""
    peak = float(args.learning_rate)
    if total_steps < 1 or peak <= 0:
        return None
    kind = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    kwargs = dict(args.lr_scheduler_kwargs or {})
    try:
        warmup = int(args.get_warmup_steps(total_steps))
    except Exception:
        return None
    common = {"peak_lr": peak, "total_steps": total_steps, "warmup_steps": warmup}
    if kind in ("constant", "constant_with_warmup"):
        return "constant", common
    if kind == "linear":
        return "linear", common
    if kind == "cosine" and kwargs.get("num_cycles", 0.5) == 0.5:
        return "cosine", common
    if kind == "cosine_with_min_lr":
        ratio = kwargs.get("min_lr_rate")
        if ratio is None and kwargs.get("min_lr") is not None:
            ratio = kwargs["min_lr"] / peak
        return "cosine", {**common, "final_ratio": float(ratio or 0.0)}
    if kind == "warmup_stable_decay" and "num_decay_steps" in kwargs:
        final = float(kwargs.get("min_lr_ratio", 0.0))
        return "wsd", {
            **common,
            "warmup_shape": kwargs.get("warmup_type", "linear"),
            "warmup_start_ratio": final if warmup else 0.0,
            "decay_fraction": int(kwargs["num_decay_steps"]) / total_steps,
            "decay_shape": kwargs.get("decay_type", "cosine"),
            "final_ratio": final,
        }
    if kind == "inverse_sqrt":
        return "inverse_sqrt", {**common, "timescale": kwargs.get("timescale") or None}
    if kind == "polynomial" and float(kwargs.get("power", 1.0)) == 1.0:
        return "linear", {**common, "final_ratio": float(kwargs.get("lr_end", 1e-7)) / peak}
    return None
