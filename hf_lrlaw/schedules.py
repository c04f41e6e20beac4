"""Schedule: a learning-rate schedule as data -> per-step LR array; HF/torch adapters.

Step convention (the transformers one): ``lrs()[i]`` is the learning rate of the optimizer update
with index ``i`` (0-based), i.e. ``peak_lr * lr_lambda(i)`` of the transformers ``LambdaLR``
schedulers. Warmup follows transformers too: ``progress = i / warmup_steps`` (step 0 has LR 0 by
default), then each kind's curve of the steps after warmup, with the same float arithmetic as
transformers wherever transformers has that scheduler, so that ``to_hf()`` is exact.

Text form (round-trips exactly through :meth:`Schedule.parse`)::

    wsd(peak_lr=0.0003, total_steps=24000, warmup_steps=2160, decay_fraction=0.2,
        decay_shape=linear, final_ratio=0.1)
"""

from __future__ import annotations

import ast
import json
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "DECAY_SHAPES",
    "KINDS",
    "WARMUP_SHAPES",
    "Schedule",
    "ScheduleError",
    "ScheduleLambda",
    "constant_curve",
    "cosine_curve",
    "cyclic_curve",
    "inverse_sqrt_curve",
    "linear_curve",
    "multistep_curve",
    "two_stage_curve",
    "warmup_ramp",
    "wsd_curve",
]

_MAX_STEPS = 2**53  # step counts stay exact in float64 arithmetic


class ScheduleError(ValueError):
    """A schedule, its text or its parameters cannot be used; the message names the problem."""


# -- pure curve functions: multipliers of peak_lr at the given steps -------------------------------

_RAMPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda p: p,
    "cosine": lambda p: 0.5 * (1.0 - np.cos(np.pi * p)),
    "1-sqrt": lambda p: 1.0 - np.sqrt(1.0 - p),
}
_DECAYS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + np.cos(np.pi * p)),
    "1-sqrt": lambda p: 1.0 - np.sqrt(p),
}
WARMUP_SHAPES: tuple[str, ...] = tuple(_RAMPS)
DECAY_SHAPES: tuple[str, ...] = (*_DECAYS, "exponential")


def warmup_ramp(
    steps: np.ndarray, warmup_steps: int, shape: str = "linear", start_ratio: float = 0.0
) -> np.ndarray:
    """Warmup multipliers for ``steps < warmup_steps``: shape of ``steps / warmup_steps`` from
    ``start_ratio`` to 1, as transformers computes it (``get_wsd_schedule``'s warmup_type)."""
    progress = steps / max(1, warmup_steps)
    return _RAMPS[shape](progress) * (1.0 - start_ratio) + start_ratio


def constant_curve(steps: np.ndarray, total_steps: int, warmup_steps: int) -> np.ndarray:
    """Peak LR after warmup."""
    return np.ones(len(steps))


def cosine_curve(
    steps: np.ndarray, total_steps: int, warmup_steps: int, *, final_ratio: float
) -> np.ndarray:
    """Half cosine from 1 to ``final_ratio`` over the steps after warmup (transformers ``cosine`` /
    ``cosine_with_min_lr``: ``progress = (s - W) / (T - W)``, reaching ``final_ratio`` at s = T)."""
    progress = (steps - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + np.cos(np.pi * progress)) * (1.0 - final_ratio) + final_ratio


def linear_curve(
    steps: np.ndarray, total_steps: int, warmup_steps: int, *, final_ratio: float
) -> np.ndarray:
    """Straight line from 1 to ``final_ratio`` at s = T (transformers ``linear``: ``(T - s) / (T - W)``)."""
    remaining = (total_steps - steps) / max(1, total_steps - warmup_steps)
    return remaining * (1.0 - final_ratio) + final_ratio


def wsd_curve(
    steps: np.ndarray,
    total_steps: int,
    warmup_steps: int,
    *,
    decay_fraction: float,
    decay_shape: str,
    final_ratio: float,
) -> np.ndarray:
    """Warmup-stable-decay: 1 until the last ``round(decay_fraction * T)`` steps (Python round),
    then decay to ``final_ratio`` (``get_wsd_schedule`` arithmetic; exponential is geometric)."""
    decay_steps = _wsd_decay_steps(total_steps, decay_fraction)
    stable_end = total_steps - decay_steps
    progress = np.clip((steps - stable_end) / max(1, decay_steps), 0.0, None)
    if decay_shape == "exponential":
        decayed = final_ratio**progress
    else:
        decayed = np.maximum(
            0.0, _DECAYS[decay_shape](progress) * (1.0 - final_ratio) + final_ratio
        )
    return np.where(steps < stable_end, 1.0, decayed)


def multistep_curve(
    steps: np.ndarray,
    total_steps: int,
    warmup_steps: int,
    *,
    milestones: tuple[float, ...],
    factor: float,
) -> np.ndarray:
    """Multiply by ``factor`` at each milestone step ``round(m * T)`` ("8-1-1": 0.8 and 0.9)."""
    drops = np.asarray(_milestone_steps(total_steps, milestones), dtype=np.int64)
    return factor ** np.searchsorted(drops, steps, side="right").astype(np.float64)


def two_stage_curve(
    steps: np.ndarray,
    total_steps: int,
    warmup_steps: int,
    *,
    switch_fraction: float,
    second_ratio: float,
) -> np.ndarray:
    """Peak until step ``round(switch_fraction * T)``, then ``second_ratio`` (Luo et al. 2025)."""
    return np.where(steps < round(switch_fraction * total_steps), 1.0, second_ratio)


def inverse_sqrt_curve(
    steps: np.ndarray, total_steps: int, warmup_steps: int, *, timescale: int
) -> np.ndarray:
    """``1 / sqrt((s - W + timescale) / timescale)``, as transformers ``inverse_sqrt``."""
    return 1.0 / np.sqrt((steps + (timescale - warmup_steps)) / timescale)


def cyclic_curve(
    steps: np.ndarray,
    total_steps: int,
    warmup_steps: int,
    *,
    cycles: int,
    min_ratio: float,
    rewarmup_steps: int,
) -> np.ndarray:
    """Continual pre-training: the steps after warmup cut into ``cycles`` near-equal cycles, each a
    cosine from 1 to ``min_ratio``; every cycle but the first starts with a linear re-warmup from
    ``min_ratio`` to 1 over ``rewarmup_steps`` (one cycle is exactly ``cosine_curve``)."""
    starts = (np.arange(cycles + 1, dtype=np.int64) * (total_steps - warmup_steps)) // cycles
    offset = steps - warmup_steps
    cycle = np.searchsorted(starts, offset, side="right") - 1
    pos = offset - starts[cycle]
    length = starts[cycle + 1] - starts[cycle]
    rewarm = np.where(cycle > 0, rewarmup_steps, 0)
    up = (pos / np.maximum(rewarm, 1)) * (1.0 - min_ratio) + min_ratio
    progress = (pos - rewarm) / np.maximum(length - rewarm, 1)
    down = 0.5 * (1.0 + np.cos(np.pi * progress)) * (1.0 - min_ratio) + min_ratio
    return np.where(pos < rewarm, up, down)


def _wsd_decay_steps(total_steps: int, decay_fraction: float) -> int:
    return round(decay_fraction * total_steps)


def _milestone_steps(total_steps: int, milestones: Iterable[float]) -> list[int]:
    return [round(m * total_steps) for m in milestones]


# -- the registry of kinds ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    type: str  # "float" | "int" | "choice" | "floats" | "text" | "array"
    default: Any = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Kind:
    params: tuple[_Param, ...]
    curve: Callable[..., np.ndarray] | None
    check: Callable[[Schedule, dict[str, Any]], None]


_COMMON = (
    _Param("peak_lr", "float"),
    _Param("total_steps", "int"),
    _Param("warmup_steps", "int", 0),
    _Param("warmup_shape", "choice", "linear", WARMUP_SHAPES),
    _Param("warmup_start_ratio", "float", 0.0),
)
_COMMON_NAMES = tuple(p.name for p in _COMMON)
_FINAL = _Param("final_ratio", "float", 0.0)


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
    decay = _wsd_decay_steps(s.total_steps, p["decay_fraction"])
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
            s, f"milestone {milestones[0]!r}", _milestone_steps(s.total_steps, milestones)[0]
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


def _check_free_form(s: Schedule, p: dict[str, Any]) -> None:
    lrs = p["lrs"]
    if s.warmup_steps or s.warmup_shape != "linear" or s.warmup_start_ratio:
        raise ScheduleError("free_form has its warmup in the LR array; give no warmup parameters")
    if s.total_steps != len(lrs) or s.peak_lr != float(lrs.max()):
        raise ScheduleError(
            f"free_form takes total_steps and peak_lr from its array ({len(lrs)} steps, peak "
            f"{float(lrs.max())!r}); got total_steps={s.total_steps}, peak_lr={s.peak_lr!r}"
        )


_KINDS: dict[str, _Kind] = {
    "constant": _Kind((), constant_curve, _check_nothing),
    "cosine": _Kind((_FINAL,), cosine_curve, _check_final),
    "linear": _Kind((_FINAL,), linear_curve, _check_final),
    "wsd": _Kind(
        (
            _Param("decay_fraction", "float", 0.2),
            _Param("decay_shape", "choice", "linear", DECAY_SHAPES),
            _FINAL,
        ),
        wsd_curve,
        _check_wsd,
    ),
    "multistep": _Kind(
        (_Param("milestones", "floats", (0.8, 0.9)), _Param("factor", "float", 0.316)),
        multistep_curve,
        _check_multistep,
    ),
    "two_stage": _Kind(
        (_Param("switch_fraction", "float", 0.5), _Param("second_ratio", "float", 0.1)),
        two_stage_curve,
        _check_two_stage,
    ),
    # a default of None is resolved from warmup_steps at construction (see _resolve_default)
    "inverse_sqrt": _Kind(
        (_Param("timescale", "int", None),), inverse_sqrt_curve, _check_inverse_sqrt
    ),
    "cyclic": _Kind(
        (
            _Param("cycles", "int", 2),
            _Param("min_ratio", "float", 0.1),
            _Param("rewarmup_steps", "int", None),
        ),
        cyclic_curve,
        _check_cyclic,
    ),
    "free_form": _Kind(
        (_Param("lrs", "array"), _Param("name", "text", None)), None, _check_free_form
    ),
}
KINDS: tuple[str, ...] = tuple(_KINDS)
_ALIASES = {
    "constant_with_warmup": "constant",
    "warmup_stable_decay": "wsd",
    "step": "multistep",
    "multi_step": "multistep",
    "twostage": "two_stage",
    "inverse_square_root": "inverse_sqrt",
    "freeform": "free_form",
    "cosine_cyclic": "cyclic",
}


def _canonical_kind(kind: object) -> str:
    if not isinstance(kind, str):
        raise ScheduleError(f"a schedule kind must be a string, got {kind!r}")
    name = kind.strip().lower().replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in _KINDS:
        raise ScheduleError(f"unknown schedule kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return name


def _resolve_default(kind: str, name: str, warmup_steps: int) -> Any:
    if kind == "inverse_sqrt" and name == "timescale":
        return warmup_steps or 10_000  # transformers' default
    if kind == "cyclic" and name == "rewarmup_steps":
        return warmup_steps
    return None


# -- value coercion (shared by constructors, parse and from_dict) ---------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _coerce(param: _Param, value: Any, kind: str) -> Any:
    name = param.name
    if param.type == "float":
        if not _is_number(value):
            raise ScheduleError(f"{name} must be a number, got {_short(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise ScheduleError(f"{name} is too large: {_short(value)}") from None
        if not math.isfinite(number):
            raise ScheduleError(f"{name} must be finite, got {number!r}")
        return number + 0.0  # -0.0 -> 0.0, so equal values hash equally
    if param.type == "int":
        if not _is_number(value):
            raise ScheduleError(f"{name} must be a whole number, got {_short(value)}")
        integral = isinstance(value, numbers.Integral)
        if not integral and not (math.isfinite(float(value)) and float(value).is_integer()):
            raise ScheduleError(f"{name} must be a whole number, got {_short(value)}")
        whole = int(value)
        if abs(whole) > _MAX_STEPS:
            raise ScheduleError(f"{name}={whole} is too large (at most 2**53)")
        return whole
    if param.type == "choice":
        if not isinstance(value, str) or value.strip().lower() not in param.choices:
            raise ScheduleError(
                f"unknown {name} {_short(value)} for {kind}; expected one of {', '.join(param.choices)}"
            )
        return value.strip().lower()
    if param.type == "text":
        if value is not None and not isinstance(value, str):
            raise ScheduleError(f"{name} must be a string, got {_short(value)}")
        return value
    if param.type == "floats":
        items = [value] if _is_number(value) else value
        if not isinstance(items, (list, tuple)):
            raise ScheduleError(f"{name} must be a list of numbers, got {_short(value)}")
        return tuple(_coerce(_Param(f"each of {name}", "float"), v, kind) for v in items)
    return _lr_array(value)


def _lr_array(value: Any) -> np.ndarray:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Iterable, np.ndarray)):
        raise ScheduleError(f"lrs must be a sequence of numbers, got {_short(value)}")
    items = list(value) if not isinstance(value, np.ndarray) else value
    if not isinstance(items, np.ndarray) and not all(_is_number(v) for v in items):
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
    if len(lrs) > _MAX_STEPS:
        raise ScheduleError("lrs is too long")
    lrs = lrs + 0.0  # a fresh array with -0.0 -> 0.0
    lrs.setflags(write=False)
    return lrs


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format(param: _Param, value: Any) -> str:
    if param.type == "float":
        return repr(value)
    if param.type in ("int", "choice"):
        return str(value)
    if param.type == "text":
        return repr(value)
    return "[" + ", ".join(repr(float(v)) for v in value) + "]"


# -- the schedule ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Schedule:
    """A learning-rate schedule as data: a kind, its peak LR, horizon, warmup and parameters.

    Build one with a constructor per kind (:meth:`cosine`, :meth:`wsd`, ...), :meth:`make`,
    :meth:`parse` or :meth:`from_dict`. Every construction validates; equal schedules compare and
    hash equal. ``param_items`` holds the kind's parameters in canonical order (read them through
    :attr:`params`). Warmup: ``warmup_steps`` steps of ``warmup_shape`` (transformers'
    ``warmup_type``) from ``warmup_start_ratio * peak_lr`` (0 by default, as transformers) to peak.
    """

    kind: str
    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    warmup_shape: str = "linear"
    warmup_start_ratio: float = 0.0
    param_items: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        kind = _canonical_kind(self.kind)
        spec = _KINDS[kind]
        common = {p.name: _coerce(p, getattr(self, p.name), kind) for p in _COMMON}
        if common["peak_lr"] <= 0:
            raise ScheduleError(f"peak_lr must be > 0, got {common['peak_lr']!r}")
        if common["total_steps"] < 1:
            raise ScheduleError(f"total_steps must be >= 1, got {common['total_steps']}")
        if not 0 <= common["warmup_steps"] < common["total_steps"]:
            raise ScheduleError(
                f"warmup_steps must be in [0, total_steps) = [0, {common['total_steps']}), "
                f"got {common['warmup_steps']}"
            )
        _in_range("warmup_start_ratio", common["warmup_start_ratio"], 0.0, 1.0)
        items = self.param_items
        given = dict(items.items() if isinstance(items, Mapping) else items)
        known = [p.name for p in spec.params]
        unknown = [n for n in given if n not in known]
        if unknown:
            raise ScheduleError(
                f"unknown parameter {unknown[0]!r} for {kind}; its parameters are "
                f"{', '.join(_COMMON_NAMES[:2] if kind == 'free_form' else _COMMON_NAMES)}"
                f"{', ' if known else ''}{', '.join(known)}"
            )
        params: dict[str, Any] = {}
        for p in spec.params:
            value = given.get(p.name, p.default)
            if value is None and p.type != "text":
                value = _resolve_default(kind, p.name, common["warmup_steps"])
                if value is None:
                    raise ScheduleError(f"missing parameter {p.name} for {kind}")
            params[p.name] = _coerce(p, value, kind)
        for name, value in {"kind": kind, **common}.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "param_items", tuple(params.items()))
        spec.check(self, params)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def make(cls, kind: str, **kwargs: Any) -> Schedule:
        """Any kind by name (aliases such as ``two-stage`` accepted) with keyword parameters."""
        name = _canonical_kind(kind)
        common = {k: kwargs.pop(k) for k in _COMMON_NAMES if k in kwargs}
        if name == "free_form":
            if "lrs" not in kwargs:
                raise ScheduleError("missing parameter lrs for free_form")
            lrs = _lr_array(kwargs["lrs"])
            kwargs["lrs"] = lrs
            common.setdefault("peak_lr", float(lrs.max()))
            common.setdefault("total_steps", len(lrs))
        for required in ("peak_lr", "total_steps"):
            if required not in common:
                raise ScheduleError(f"missing parameter {required} for {name}")
        return cls(name, param_items=tuple(kwargs.items()), **common)

    @classmethod
    def constant(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
    ) -> Schedule:
        """Warmup, then peak LR to the end."""
        return cls.make(
            "constant",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
        )

    @classmethod
    def cosine(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
        final_ratio: float = 0.0,
    ) -> Schedule:
        """Warmup, then a half cosine to ``final_ratio * peak_lr`` (transformers cosine[_with_min_lr])."""
        return cls.make(
            "cosine",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
            final_ratio=final_ratio,
        )

    @classmethod
    def linear(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
        final_ratio: float = 0.0,
    ) -> Schedule:
        """Warmup, then a straight line to ``final_ratio * peak_lr`` (transformers linear)."""
        return cls.make(
            "linear",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
            final_ratio=final_ratio,
        )

    @classmethod
    def wsd(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
        decay_fraction: float = 0.2,
        decay_shape: str = "linear",
        final_ratio: float = 0.0,
    ) -> Schedule:
        """Warmup-stable-decay: the last ``round(decay_fraction * total_steps)`` steps decay with
        ``decay_shape`` (linear, cosine, 1-sqrt, exponential) to ``final_ratio * peak_lr``."""
        return cls.make(
            "wsd",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
            decay_fraction=decay_fraction,
            decay_shape=decay_shape,
            final_ratio=final_ratio,
        )

    @classmethod
    def multistep(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
        milestones: Iterable[float] = (0.8, 0.9),
        factor: float = 0.316,
    ) -> Schedule:
        """Step decay: times ``factor`` at each milestone (fractions of total_steps; 8-1-1 default)."""
        return cls.make(
            "multistep",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
            milestones=tuple(milestones),
            factor=factor,
        )

    @classmethod
    def two_stage(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
        switch_fraction: float = 0.5,
        second_ratio: float = 0.1,
    ) -> Schedule:
        """Constant peak, then constant ``second_ratio * peak_lr`` from ``switch_fraction`` on."""
        return cls.make(
            "two_stage",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
            switch_fraction=switch_fraction,
            second_ratio=second_ratio,
        )

    @classmethod
    def inverse_sqrt(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
        timescale: int | None = None,
    ) -> Schedule:
        """Inverse square root decay after warmup (transformers inverse_sqrt; ``timescale``
        defaults to ``warmup_steps or 10_000`` and is fixed at construction)."""
        return cls.make(
            "inverse_sqrt",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
            timescale=timescale,
        )

    @classmethod
    def cyclic(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        warmup_steps: int = 0,
        warmup_shape: str = "linear",
        warmup_start_ratio: float = 0.0,
        cycles: int = 2,
        min_ratio: float = 0.1,
        rewarmup_steps: int | None = None,
    ) -> Schedule:
        """Repeated cosine cycles to ``min_ratio * peak_lr``, each after the first re-warmed
        linearly over ``rewarmup_steps`` (default: ``warmup_steps``), as in continual pre-training."""
        return cls.make(
            "cyclic",
            peak_lr=peak_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_shape=warmup_shape,
            warmup_start_ratio=warmup_start_ratio,
            cycles=cycles,
            min_ratio=min_ratio,
            rewarmup_steps=rewarmup_steps,
        )

    @classmethod
    def free_form(cls, lrs: Iterable[float] | np.ndarray, name: str | None = None) -> Schedule:
        """Any per-step LR array (peak_lr is its maximum, total_steps its length)."""
        return cls.make("free_form", lrs=lrs, name=name)

    # -- views -------------------------------------------------------------------------------

    @property
    def params(self) -> Mapping[str, Any]:
        """The kind's parameters, read-only, in canonical order."""
        return MappingProxyType(dict(self.param_items))

    def param(self, name: str) -> Any:
        """One parameter of the kind by name."""
        for key, value in self.param_items:
            if key == name:
                return value
        raise ScheduleError(f"{self.kind} has no parameter {name!r}")

    def __len__(self) -> int:
        return self.total_steps

    def relative(self) -> np.ndarray:
        """Per-step multipliers of ``peak_lr`` (what a ``LambdaLR`` returns), float64."""
        if self.kind == "free_form":
            return self.param("lrs") / self.peak_lr
        steps = np.arange(self.total_steps, dtype=np.int64)
        w = self.warmup_steps
        out = np.empty(self.total_steps, dtype=np.float64)
        out[:w] = warmup_ramp(steps[:w], w, self.warmup_shape, self.warmup_start_ratio)
        curve = _KINDS[self.kind].curve
        assert curve is not None
        out[w:] = curve(steps[w:], self.total_steps, w, **self.params)
        return out

    def lrs(self) -> np.ndarray:
        """The LR of every optimizer update ``0..total_steps-1`` (a fresh float64 array)."""
        if self.kind == "free_form":
            return np.array(self.param("lrs"), dtype=np.float64)
        return self.peak_lr * self.relative()

    # -- text, dict, JSON --------------------------------------------------------------------

    def __str__(self) -> str:
        parts = []
        if self.kind != "free_form":
            for p in _COMMON:
                value = getattr(self, p.name)
                if p.name in ("peak_lr", "total_steps", "warmup_steps") or value != p.default:
                    parts.append(f"{p.name}={_format(p, value)}")
        for p in _KINDS[self.kind].params:
            value = self.param(p.name)
            if value is not None:
                parts.append(f"{p.name}={_format(p, value)}")
        return f"{self.kind}({', '.join(parts)})"

    def __repr__(self) -> str:
        if self.kind == "free_form":
            name = self.param("name")
            label = f", name={name!r}" if name is not None else ""
            return f"Schedule.free_form(<{self.total_steps} LRs, peak {self.peak_lr!r}>{label})"
        return f"Schedule.parse({str(self)!r})"

    @classmethod
    def parse(cls, text: str, defaults: Mapping[str, Any] | None = None) -> Schedule:
        """Inverse of ``str()``: ``kind(name=value, ...)``; numbers, bare or quoted words, lists.

        ``defaults`` fills the common parameters (``peak_lr``, ``total_steps``, ``warmup_steps``,
        ...) that the text leaves out, e.g. those of the run a fit describes, so that
        ``"wsd(decay_fraction=0.2)"`` is enough; free_form takes its own from its array.
        """
        if not isinstance(text, str):
            raise ScheduleError(f"schedule text must be a string, got {type(text).__name__}")
        match = re.fullmatch(r"\s*([A-Za-z_][\w\-]*)\s*\((.*)\)\s*", text, flags=re.DOTALL)
        if match is None:
            raise ScheduleError(
                f"cannot read schedule text {_short(text)}: expected kind(name=value, ...) "
                "with matching parentheses"
            )
        kind = _canonical_kind(match.group(1))
        source = f"_({match.group(2)})"
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as err:
            raise ScheduleError(f"cannot read schedule text {_short(text)}: {err.msg}") from None
        except (ValueError, RecursionError, MemoryError, OverflowError) as err:
            raise ScheduleError(f"cannot read schedule text {_short(text)}: {err}") from None
        call = tree.body
        if not (
            isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"
        ):
            raise ScheduleError(
                f"cannot read schedule text {_short(text)}: extra text around kind(...)"
            )
        if call.args or any(k.arg is None for k in call.keywords):
            raise ScheduleError(
                f"cannot read schedule text {_short(text)}: every parameter must be name=value"
            )
        names = [k.arg for k in call.keywords]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ScheduleError(
                f"parameter {repeated[0]} is given more than once in {_short(text)}"
            )
        values = {k.arg: _literal(k.value, source, k.arg) for k in call.keywords}
        if defaults and kind != "free_form":
            unknown = sorted(set(defaults) - set(_COMMON_NAMES))
            if unknown:
                raise ScheduleError(
                    f"schedule defaults can only be {', '.join(_COMMON_NAMES)}, got {unknown[0]!r}"
                )
            values = {**defaults, **values}
        return cls.make(kind, **values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``kind`` and every parameter (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {"kind": self.kind}
        out.update({name: getattr(self, name) for name in _COMMON_NAMES})
        for name, value in self.param_items:
            out[name] = (
                value.tolist()
                if isinstance(value, np.ndarray)
                else (list(value) if isinstance(value, tuple) else value)
            )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Inverse of :meth:`to_dict` (also accepts any subset that :meth:`make` accepts)."""
        if not isinstance(data, Mapping):
            raise ScheduleError(f"a schedule dict must be a mapping, got {type(data).__name__}")
        values = dict(data)
        if "kind" not in values:
            raise ScheduleError("a schedule dict needs a 'kind' key")
        kind = values.pop("kind")
        if any(not isinstance(k, str) for k in values):
            raise ScheduleError("schedule dict keys must be strings")
        return cls.make(kind, **values)

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Schedule:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as err:
            raise ScheduleError(f"schedule JSON cannot be read: {err}") from None
        return cls.from_dict(data)

    # -- value semantics -----------------------------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        params = tuple(
            (k, v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in self.param_items
        )
        return (
            self.kind,
            self.peak_lr,
            self.total_steps,
            self.warmup_steps,
            self.warmup_shape,
            self.warmup_start_ratio,
            params,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def replace(self, **changes: Any) -> Schedule:
        """A copy with some fields or parameters changed (validated again)."""
        values = {name: getattr(self, name) for name in _COMMON_NAMES}
        if self.kind == "free_form":
            values = {}
        values.update(dict(self.param_items))
        values.update(changes)
        return Schedule.make(self.kind, **values)

    def scaled(self, peak_lr: float) -> Schedule:
        """The same shape with another peak LR (a free-form array is scaled as a whole)."""
        if self.kind == "free_form":
            lr = _coerce(_COMMON[0], peak_lr, self.kind)
            if lr <= 0:
                raise ScheduleError(f"peak_lr must be > 0, got {lr!r}")
            return self.replace(lrs=self.param("lrs") * (lr / self.peak_lr))
        return self.replace(peak_lr=peak_lr)

    def with_total_steps(self, total_steps: int) -> Schedule:
        """The same shape over another horizon: step counts (warmup, timescale, re-warmup) are
        kept, fractions scale with it; a free-form array is linearly resampled."""
        if self.kind != "free_form":
            return self.replace(total_steps=total_steps)
        n = _coerce(_COMMON[1], total_steps, self.kind)
        if n < 1:
            raise ScheduleError(f"total_steps must be >= 1, got {n}")
        old = self.param("lrs")
        grid = np.linspace(0.0, len(old) - 1.0, n) if n > 1 else np.zeros(1)
        return self.replace(lrs=np.interp(grid, np.arange(len(old)), old))

    # -- adapters ------------------------------------------------------------------------------

    def to_hf(self) -> tuple[str, dict[str, Any]]:
        """``(lr_scheduler_type, lr_scheduler_kwargs)`` of the transformers scheduler that is
        exactly this schedule (Trainer warmup_steps = ``warmup_steps``); else ScheduleError."""
        form, reason = _hf_form(self)
        if form is None:
            raise ScheduleError(
                f"no transformers scheduler is exactly {_short(str(self))}: {reason}; use "
                "Schedule.to_torch(optimizer) and pass it as Trainer(optimizers=(optimizer, "
                "scheduler)), or a custom scheduler"
            )
        return form

    def to_training_args(self) -> dict[str, Any]:
        """Keyword arguments for ``transformers.TrainingArguments`` that give this schedule."""
        name, kwargs = self.to_hf()
        return {
            "learning_rate": self.peak_lr,
            "max_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "lr_scheduler_type": name,
            "lr_scheduler_kwargs": kwargs,
        }

    def to_torch(
        self, optimizer: torch.optim.Optimizer, last_epoch: int = -1, *, set_lr: bool = True
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """A ``LambdaLR`` whose multiplier at step i is ``lrs()[i] / peak_lr`` (the last one
        beyond total_steps). ``set_lr`` sets every param group's base LR to ``peak_lr``; pass
        False to keep per-group base LRs (each is then scaled by the same multipliers)."""
        from torch.optim.lr_scheduler import LambdaLR

        if set_lr:
            for group in optimizer.param_groups:
                group["lr"] = self.peak_lr
                if last_epoch != -1 or "initial_lr" in group:
                    group["initial_lr"] = self.peak_lr
        return LambdaLR(optimizer, ScheduleLambda(self.relative()), last_epoch=last_epoch)


class ScheduleLambda:
    """Picklable ``LambdaLR`` multiplier from a table; its state (a float64 tensor) loads with
    ``torch.load(weights_only=True)``, as the Trainer does when resuming."""

    def __init__(self, factors: np.ndarray) -> None:
        import torch

        self.factors = torch.as_tensor(np.asarray(factors, dtype=np.float64))

    def __call__(self, step: int) -> float:
        index = min(max(int(step), 0), len(self.factors) - 1)
        return float(self.factors[index])


def _literal(node: ast.expr, source: str, name: str) -> Any:
    """A parameter value from its syntax node: numbers, strings, None, bare words, flat lists."""
    if (
        isinstance(node, ast.Constant)
        and not isinstance(node.value, (bool, complex, bytes))
        and (node.value is not Ellipsis)
    ):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and _is_number(node.operand.value)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(item, source, name) for item in node.elts]
        if any(isinstance(item, list) for item in items):
            raise ScheduleError(f"{name}: nested lists are not allowed")
        return items
    if isinstance(node, ast.Name):
        return node.id
    segment = ast.get_source_segment(source, node) or ""
    word = re.sub(r"\s+", "", segment)
    if isinstance(node, ast.BinOp) and re.fullmatch(r"[A-Za-z0-9_.\-]+", word):
        return word  # a bare word with a dash, e.g. 1-sqrt
    raise ScheduleError(f"{name}: cannot read value {_short(segment)}")


def _hf_form(s: Schedule) -> tuple[tuple[str, dict[str, Any]] | None, str]:
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
        return wsd(
            _wsd_decay_steps(s.total_steps, p["decay_fraction"]), p["decay_shape"], final
        ), ""
    if s.kind == "inverse_sqrt":
        return (
            (("inverse_sqrt", {"timescale": p["timescale"]}), "")
            if plain_warmup
            else (None, plain_reason)
        )
    return None, f"transformers has no {s.kind} scheduler"
