"""The registry of schedule kinds: each kind's parameters, its shape and its checks; coercion
of parameter values (shared by the constructors, the text form and ``from_dict``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_lrlaw.schedules.shapes import (
    DECAY_SHAPES,
    WARMUP_SHAPES,
    constant_curve,
    cosine_curve,
    cyclic_curve,
    inverse_sqrt_curve,
    linear_curve,
    milestone_steps,
    multistep_curve,
    piecewise_curve,
    two_stage_curve,
    wsd_curve,
    wsd_decay_steps,
)

if TYPE_CHECKING:
    from hf_lrlaw.schedules.schedule import Schedule

__all__ = ["COMMON", "COMMON_NAMES", "KINDS", "ScheduleError", "canonical_kind"]

MAX_STEPS = 2**53  # step counts stay exact in float64 arithmetic


class ScheduleError(ValueError):
    """A schedule, its text or its parameters cannot be used; the message names the problem."""

    __module__ = "hf_lrlaw"  # raised from submodules, public at the top level


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "float" | "int" | "choice" | "floats" | "text" | "array"
    default: Any = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    params: tuple[Param, ...]
    curve: Callable[..., np.ndarray] | None
    check: Callable[[Schedule, dict[str, Any]], None]


COMMON = (
    Param("peak_lr", "float"),
    Param("total_steps", "int"),
    Param("warmup_steps", "int", 0),
    Param("warmup_shape", "choice", "linear", WARMUP_SHAPES),
    Param("warmup_start_ratio", "float", 0.0),
)
COMMON_NAMES = tuple(p.name for p in COMMON)
_FINAL = Param("final_ratio", "float", 0.0)


def _in_range(
    name: str, value: float, lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False
) -> None:
    if value < lo or value > hi or (open_lo and value == lo) or (open_hi and value == hi):
        interval = f"{'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
        raise ScheduleError(f"{name} must be in {interval}, got {value!r}")


def _after_warmup(s: Schedule, what: str, step: int) -> None:
    if step <= s.warmup_steps:
        raise ScheduleError(
            f"{what} falls at step {step}, not after the warmup (warmup_steps={s.warmup_steps}, "
            f"total_steps={s.total_steps})"
        )


def _check_nothing(s: Schedule, p: dict[str, Any]) -> None:
    return None


def _check_final(s: Schedule, p: dict[str, Any]) -> None:
    _in_range("final_ratio", p["final_ratio"], 0.0, 1.0)


def _check_wsd(s: Schedule, p: dict[str, Any]) -> None:
    _check_final(s, p)
    _in_range("decay_fraction", p["decay_fraction"], 0.0, 1.0)
    if p["decay_shape"] == "exponential" and p["final_ratio"] <= 0:
        raise ScheduleError("decay_shape=exponential needs final_ratio > 0 (geometric decay)")
    decay = wsd_decay_steps(s.total_steps, p["decay_fraction"])
    if decay > s.total_steps - s.warmup_steps:
        raise ScheduleError(
            f"decay_fraction={p['decay_fraction']!r} gives {decay} decay steps but only "
            f"{s.total_steps - s.warmup_steps} steps follow the warmup "
            f"(total_steps={s.total_steps}, warmup_steps={s.warmup_steps})"
        )


def _check_multistep(s: Schedule, p: dict[str, Any]) -> None:
    _in_range("factor", p["factor"], 0.0, 1.0, open_lo=True)
    milestones = p["milestones"]
    for m in milestones:
        _in_range("each milestone", m, 0.0, 1.0, open_lo=True, open_hi=True)
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ScheduleError(f"milestones must be strictly increasing, got {list(milestones)}")
    if milestones:
        _after_warmup(
            s, f"milestone {milestones[0]!r}", milestone_steps(s.total_steps, milestones)[0]
        )


def _check_two_stage(s: Schedule, p: dict[str, Any]) -> None:
    _in_range("switch_fraction", p["switch_fraction"], 0.0, 1.0, open_lo=True, open_hi=True)
    _in_range("second_ratio", p["second_ratio"], 0.0, 1.0)
    _after_warmup(
        s, f"switch_fraction={p['switch_fraction']!r}", round(p["switch_fraction"] * s.total_steps)
    )


def _check_inverse_sqrt(s: Schedule, p: dict[str, Any]) -> None:
    if p["timescale"] < 1:
        raise ScheduleError(f"timescale must be >= 1, got {p['timescale']}")


def _check_cyclic(s: Schedule, p: dict[str, Any]) -> None:
    _in_range("min_ratio", p["min_ratio"], 0.0, 1.0)
    cycles, rewarm, after = p["cycles"], p["rewarmup_steps"], s.total_steps - s.warmup_steps
    if cycles < 1:
        raise ScheduleError(f"cycles must be >= 1, got {cycles}")
    if rewarm < 0:
        raise ScheduleError(f"rewarmup_steps must be >= 0, got {rewarm}")
    if cycles > after:
        raise ScheduleError(f"cycles={cycles} is more than the {after} steps after warmup")
    if cycles > 1 and after // cycles <= rewarm:
        raise ScheduleError(
            f"rewarmup_steps={rewarm} leaves no decay in a cycle of {after // cycles} steps "
            f"({after} steps after warmup / cycles={cycles})"
        )


def _check_piecewise(s: Schedule, p: dict[str, Any]) -> None:
    at, ratios = p["at"], p["ratios"]
    if len(at) != len(ratios) or len(at) < 2:
        raise ScheduleError(
            f"piecewise needs as many ratios as knots, two or more; got {len(at)} knots (at) "
            f"and {len(ratios)} ratios"
        )
    if at[0] != 0.0 or at[-1] != 1.0 or any(b <= a for a, b in zip(at, at[1:])):
        raise ScheduleError(
            "piecewise knots (at) must increase strictly from 0 to 1 (fractions of the steps "
            f"after warmup), got {short(list(at))}"
        )
    for r in ratios:
        _in_range("each ratio", r, 0.0, 1.0)
    if ratios[0] != 1.0:
        raise ScheduleError(
            f"piecewise ratios are multipliers of peak_lr and start at 1 (the LR after warmup "
            f"is the peak, as in every schedule), got a first ratio of {ratios[0]!r}"
        )


def _check_free_form(s: Schedule, p: dict[str, Any]) -> None:
    lrs = p["lrs"]
    if s.warmup_steps or s.warmup_shape != "linear" or s.warmup_start_ratio:
        raise ScheduleError("free_form has its warmup in the LR array; give no warmup parameters")
    if s.total_steps != len(lrs) or s.peak_lr != float(lrs.max()):
        raise ScheduleError(
            f"free_form takes total_steps and peak_lr from its array ({len(lrs)} steps, peak "
            f"{float(lrs.max())!r}); got total_steps={s.total_steps}, peak_lr={s.peak_lr!r}"
        )


KIND_SPECS: dict[str, Kind] = {
    "constant": Kind((), constant_curve, _check_nothing),
    "cosine": Kind((_FINAL,), cosine_curve, _check_final),
    "linear": Kind((_FINAL,), linear_curve, _check_final),
    "wsd": Kind(
        (
            Param("decay_fraction", "float", 0.2),
            Param("decay_shape", "choice", "linear", DECAY_SHAPES),
            _FINAL,
        ),
        wsd_curve,
        _check_wsd,
    ),
    "multistep": Kind(
        (Param("milestones", "floats", (0.8, 0.9)), Param("factor", "float", 0.316)),
        multistep_curve,
        _check_multistep,
    ),
    "two_stage": Kind(
        (Param("switch_fraction", "float", 0.5), Param("second_ratio", "float", 0.1)),
        two_stage_curve,
        _check_two_stage,
    ),
    # a default of None is resolved from warmup_steps at construction (see resolve_default)
    "inverse_sqrt": Kind(
        (Param("timescale", "int", None),), inverse_sqrt_curve, _check_inverse_sqrt
    ),
    "cyclic": Kind(
        (
            Param("cycles", "int", 2),
            Param("min_ratio", "float", 0.1),
            Param("rewarmup_steps", "int", None),
        ),
        cyclic_curve,
        _check_cyclic,
    ),
    "piecewise": Kind(
        (Param("at", "floats"), Param("ratios", "floats")), piecewise_curve, _check_piecewise
    ),
    "free_form": Kind((Param("lrs", "array"), Param("name", "text", None)), None, _check_free_form),
}
KINDS: tuple[str, ...] = tuple(KIND_SPECS)
_ALIASES = {
    "constant_with_warmup": "constant",
    "warmup_stable_decay": "wsd",
    "step": "multistep",
    "multi_step": "multistep",
    "twostage": "two_stage",
    "inverse_square_root": "inverse_sqrt",
    "freeform": "free_form",
    "piecewise_linear": "piecewise",
    "knots": "piecewise",
    "cosine_cyclic": "cyclic",
}


def canonical_kind(kind: object) -> str:
    if not isinstance(kind, str):
        raise ScheduleError(f"a schedule kind must be a string, got {kind!r}")
    name = kind.strip().lower().replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in KIND_SPECS:
        raise ScheduleError(f"unknown schedule kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return name


def resolve_default(kind: str, name: str, warmup_steps: int) -> Any:
    if kind == "inverse_sqrt" and name == "timescale":
        return warmup_steps or 10_000  # transformers' default
    if kind == "cyclic" and name == "rewarmup_steps":
        return warmup_steps
    return None


# -- value coercion (shared by constructors, parse and from_dict) ---------------------------------


def is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def coerce(param: Param, value: Any, kind: str) -> Any:
    name = param.name
    if param.type == "float":
        if not is_number(value):
            raise ScheduleError(f"{name} must be a number, got {short(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise ScheduleError(f"{name} is too large: {short(value)}") from None
        if not math.isfinite(number):
            raise ScheduleError(f"{name} must be finite, got {number!r}")
        return number + 0.0  # -0.0 -> 0.0, so equal values hash equally
    if param.type == "int":
        if not is_number(value):
            raise ScheduleError(f"{name} must be a whole number, got {short(value)}")
        integral = isinstance(value, numbers.Integral)
        if not integral and not (math.isfinite(float(value)) and float(value).is_integer()):
            raise ScheduleError(f"{name} must be a whole number, got {short(value)}")
        whole = int(value)
        if abs(whole) > MAX_STEPS:
            raise ScheduleError(f"{name}={whole} is too large (at most 2**53)")
        return whole
    if param.type == "choice":
        if not isinstance(value, str) or value.strip().lower() not in param.choices:
            raise ScheduleError(
                f"unknown {name} {short(value)} for {kind}; expected one of {', '.join(param.choices)}"
            )
        return value.strip().lower()
    if param.type == "text":
        if value is not None and not isinstance(value, str):
            raise ScheduleError(f"{name} must be a string, got {short(value)}")
        return value
    if param.type == "floats":
        items = [value] if is_number(value) else value
        if not isinstance(items, (list, tuple)):
            raise ScheduleError(f"{name} must be a list of numbers, got {short(value)}")
        return tuple(coerce(Param(f"each of {name}", "float"), v, kind) for v in items)
    return lr_array(value)


def lr_array(value: Any) -> np.ndarray:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Iterable, np.ndarray)):
        raise ScheduleError(f"lrs must be a sequence of numbers, got {short(value)}")
    items = list(value) if not isinstance(value, np.ndarray) else value
    if not isinstance(items, np.ndarray) and not all(is_number(v) for v in items):
        raise ScheduleError("lrs must contain only numbers")
    try:
        lrs = np.array(items, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ScheduleError("lrs must be a one-dimensional sequence of numbers") from None
    if lrs.ndim != 1 or len(lrs) == 0:
        raise ScheduleError("lrs must be a non-empty one-dimensional sequence of numbers")
    if not np.all(np.isfinite(lrs)):
        raise ScheduleError(f"lrs contains NaN or inf at step {int(np.argmin(np.isfinite(lrs)))}")
    if np.any(lrs < 0):
        raise ScheduleError(
            f"negative learning rate {float(lrs.min())!r} at step {int(np.argmax(lrs < 0))}"
        )
    if not np.any(lrs > 0):
        raise ScheduleError("every learning rate in lrs is zero")
    if len(lrs) > MAX_STEPS:
        raise ScheduleError("lrs is too long")
    lrs = lrs + 0.0  # a fresh array with -0.0 -> 0.0
    lrs.setflags(write=False)
    return lrs


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_value(param: Param, value: Any) -> str:
    if param.type == "float":
        return repr(value)
    if param.type in ("int", "choice"):
        return str(value)
    if param.type == "text":
        return repr(value)
    return "[" + ", ".join(repr(float(v)) for v in value) + "]"


def normalize(
    kind: object, common: Mapping[str, Any], given: Mapping[str, Any]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A schedule's kind (canonical), common fields and kind parameters, coerced and with
    defaults filled in; raises ScheduleError naming what is wrong. The kind's own check (which
    needs the built schedule) runs afterwards: ``KIND_SPECS[kind].check(schedule, params)``."""
    kind = canonical_kind(kind)
    spec = KIND_SPECS[kind]
    fields = {p.name: coerce(p, common[p.name], kind) for p in COMMON}
    if fields["peak_lr"] <= 0:
        raise ScheduleError(f"peak_lr must be > 0, got {fields['peak_lr']!r}")
    if fields["total_steps"] < 1:
        raise ScheduleError(f"total_steps must be >= 1, got {fields['total_steps']}")
    if not 0 <= fields["warmup_steps"] < fields["total_steps"]:
        raise ScheduleError(
            f"warmup_steps must be in [0, total_steps) = [0, {fields['total_steps']}), "
            f"got {fields['warmup_steps']}"
        )
    _in_range("warmup_start_ratio", fields["warmup_start_ratio"], 0.0, 1.0)
    known = [p.name for p in spec.params]
    unknown = [n for n in given if n not in known]
    if unknown:
        raise ScheduleError(
            f"unknown parameter {unknown[0]!r} for {kind}; its parameters are "
            f"{', '.join(COMMON_NAMES[:2] if kind == 'free_form' else COMMON_NAMES)}"
            f"{', ' if known else ''}{', '.join(known)}"
        )
    params: dict[str, Any] = {}
    for p in spec.params:
        value = given.get(p.name, p.default)
        if value is None and p.type != "text":
            value = resolve_default(kind, p.name, fields["warmup_steps"])
            if value is None:
                raise ScheduleError(f"missing parameter {p.name} for {kind}")
        params[p.name] = coerce(p, value, kind)
    return kind, fields, params
