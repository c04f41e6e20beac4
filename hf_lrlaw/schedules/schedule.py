"""Schedule: a learning-rate schedule as data -> per-step LR array; text, JSON and HF/torch forms.

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

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from hf_lrlaw.limits import check_run_steps
from hf_lrlaw.schedules import hf
from hf_lrlaw.schedules.kinds import (
    COMMON,
    COMMON_NAMES,
    KIND_SPECS,
    ScheduleError,
    canonical_kind,
    coerce,
    lr_array,
    normalize,
)
from hf_lrlaw.schedules.lambda_lr import lambda_lr
from hf_lrlaw.schedules.shapes import warmup_ramp
from hf_lrlaw.schedules.text import format_schedule, parse_schedule

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

__all__ = ["Schedule", "Warmup"]


class Warmup(TypedDict, total=False):
    """The warmup of every kind but free_form: ``warmup_steps`` steps of ``warmup_shape``
    (linear, cosine, 1-sqrt; transformers' ``warmup_type``) from ``warmup_start_ratio * peak_lr``
    (0 by default, as transformers) to the peak."""

    warmup_steps: int
    warmup_shape: str
    warmup_start_ratio: float


@dataclass(frozen=True, eq=False)
class Schedule:
    """A learning-rate schedule as data: a kind, its peak LR, horizon, warmup and parameters.

    Build one with a constructor per kind (:meth:`cosine`, :meth:`wsd`, ...), :meth:`make`,
    :meth:`parse` or :meth:`from_dict`. Every construction validates; equal schedules compare and
    hash equal. ``param_items`` holds the kind's parameters in canonical order (read them through
    :attr:`params`). Warmup: see :class:`Warmup`.
    """

    kind: str
    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    warmup_shape: str = "linear"
    warmup_start_ratio: float = 0.0
    param_items: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        items = self.param_items
        given = dict(items.items() if isinstance(items, Mapping) else items)
        common = {name: getattr(self, name) for name in COMMON_NAMES}
        kind, fields, params = normalize(self.kind, common, given)
        for name, value in {"kind": kind, **fields}.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "param_items", tuple(params.items()))
        KIND_SPECS[kind].check(self, params)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def make(cls, kind: str, **kwargs: Any) -> Schedule:
        """Any kind by name (aliases such as ``two-stage`` accepted) with keyword parameters."""
        name = canonical_kind(kind)
        common = {k: kwargs.pop(k) for k in COMMON_NAMES if k in kwargs}
        if name == "free_form":
            if "lrs" not in kwargs:
                raise ScheduleError("missing parameter lrs for free_form")
            lrs = lr_array(kwargs["lrs"])
            kwargs["lrs"] = lrs
            common.setdefault("peak_lr", float(lrs.max()))
            common.setdefault("total_steps", len(lrs))
        for required in ("peak_lr", "total_steps"):
            if required not in common:
                raise ScheduleError(f"missing parameter {required} for {name}")
        return cls(name, param_items=tuple(kwargs.items()), **common)

    @classmethod
    def constant(cls, peak_lr: float, total_steps: int, **warmup: Unpack[Warmup]) -> Schedule:
        """Warmup, then peak LR to the end."""
        return cls.make("constant", peak_lr=peak_lr, total_steps=total_steps, **warmup)

    @classmethod
    def cosine(
        cls, peak_lr: float, total_steps: int, *, final_ratio: float = 0.0, **warmup: Unpack[Warmup]
    ) -> Schedule:
        """Warmup, then a half cosine to ``final_ratio * peak_lr`` (transformers cosine[_with_min_lr])."""
        return cls.make(
            "cosine", peak_lr=peak_lr, total_steps=total_steps, final_ratio=final_ratio, **warmup
        )

    @classmethod
    def linear(
        cls, peak_lr: float, total_steps: int, *, final_ratio: float = 0.0, **warmup: Unpack[Warmup]
    ) -> Schedule:
        """Warmup, then a straight line to ``final_ratio * peak_lr`` (transformers linear)."""
        return cls.make(
            "linear", peak_lr=peak_lr, total_steps=total_steps, final_ratio=final_ratio, **warmup
        )

    @classmethod
    def wsd(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        decay_fraction: float = 0.2,
        decay_shape: str = "linear",
        final_ratio: float = 0.0,
        **warmup: Unpack[Warmup],
    ) -> Schedule:
        """Warmup-stable-decay: the last ``round(decay_fraction * total_steps)`` steps decay with
        ``decay_shape`` (linear, cosine, 1-sqrt, exponential) to ``final_ratio * peak_lr``."""
        return cls.make(
            "wsd",
            peak_lr=peak_lr,
            total_steps=total_steps,
            decay_fraction=decay_fraction,
            decay_shape=decay_shape,
            final_ratio=final_ratio,
            **warmup,
        )

    @classmethod
    def multistep(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        milestones: Iterable[float] = (0.8, 0.9),
        factor: float = 0.316,
        **warmup: Unpack[Warmup],
    ) -> Schedule:
        """Step decay: times ``factor`` at each milestone (fractions of total_steps; 8-1-1 default)."""
        return cls.make(
            "multistep",
            peak_lr=peak_lr,
            total_steps=total_steps,
            milestones=tuple(milestones),
            factor=factor,
            **warmup,
        )

    @classmethod
    def two_stage(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        switch_fraction: float = 0.5,
        second_ratio: float = 0.1,
        **warmup: Unpack[Warmup],
    ) -> Schedule:
        """Constant peak, then constant ``second_ratio * peak_lr`` from ``switch_fraction`` on."""
        return cls.make(
            "two_stage",
            peak_lr=peak_lr,
            total_steps=total_steps,
            switch_fraction=switch_fraction,
            second_ratio=second_ratio,
            **warmup,
        )

    @classmethod
    def inverse_sqrt(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        timescale: int | None = None,
        **warmup: Unpack[Warmup],
    ) -> Schedule:
        """Inverse square root decay after warmup (transformers inverse_sqrt; ``timescale``
        defaults to ``warmup_steps or 10_000`` and is fixed at construction)."""
        return cls.make(
            "inverse_sqrt", peak_lr=peak_lr, total_steps=total_steps, timescale=timescale, **warmup
        )

    @classmethod
    def cyclic(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        cycles: int = 2,
        min_ratio: float = 0.1,
        rewarmup_steps: int | None = None,
        **warmup: Unpack[Warmup],
    ) -> Schedule:
        """Repeated cosine cycles to ``min_ratio * peak_lr``, each after the first re-warmed
        linearly over ``rewarmup_steps`` (default: ``warmup_steps``), as in continual pre-training."""
        return cls.make(
            "cyclic",
            peak_lr=peak_lr,
            total_steps=total_steps,
            cycles=cycles,
            min_ratio=min_ratio,
            rewarmup_steps=rewarmup_steps,
            **warmup,
        )

    @classmethod
    def piecewise(
        cls,
        peak_lr: float,
        total_steps: int,
        *,
        at: Iterable[float],
        ratios: Iterable[float],
        **warmup: Unpack[Warmup],
    ) -> Schedule:
        """Straight lines through knots after warmup: ``ratios[j] * peak_lr`` at fraction
        ``at[j]`` of the steps after warmup (0 = the first update after warmup, 1 = the last;
        ``ratios[0]`` is 1); what :func:`hf_lrlaw.optimize` returns, a few dozen numbers
        instead of an array."""
        return cls.make(
            "piecewise",
            peak_lr=peak_lr,
            total_steps=total_steps,
            at=tuple(at),
            ratios=tuple(ratios),
            **warmup,
        )

    @classmethod
    def free_form(cls, lrs: Iterable[float] | np.ndarray, name: str | None = None) -> Schedule:
        """Any per-step LR array (peak_lr is its maximum, total_steps its length)."""
        return cls.make("free_form", lrs=lrs, name=name)

    @classmethod
    def from_training_args(cls, args: Any, planned: np.ndarray) -> Schedule | None:
        """The Schedule that ``transformers.TrainingArguments`` describe, if its per-step LRs are
        ``planned`` (the Trainer's scheduler's real plan); else None (a custom scheduler, or one
        without a Schedule form)."""
        planned = np.asarray(planned, dtype=np.float64)
        if not len(planned) or not np.all(np.isfinite(planned)):
            return None
        form = hf.training_args_form(args, len(planned))
        if form is None:
            return None
        try:
            s = cls.make(form[0], **form[1])
        except (ScheduleError, TypeError, ValueError):
            return None
        lrs = s.lrs()
        if len(lrs) != len(planned) or not np.allclose(
            lrs, planned, rtol=1e-9, atol=1e-15 * s.peak_lr
        ):
            return None
        return s

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
        check_run_steps(self.total_steps, f"{str(self)[:80]}: total_steps", ScheduleError)
        steps = np.arange(self.total_steps, dtype=np.int64)
        w = self.warmup_steps
        out = np.empty(self.total_steps, dtype=np.float64)
        out[:w] = warmup_ramp(steps[:w], w, self.warmup_shape, self.warmup_start_ratio)
        curve = KIND_SPECS[self.kind].curve
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
        common = {name: getattr(self, name) for name in COMMON_NAMES}
        return format_schedule(self.kind, common, self.params)

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
        kind, values = parse_schedule(text, defaults)
        return cls.make(kind, **values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``kind`` and every parameter (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {"kind": self.kind}
        out.update({name: getattr(self, name) for name in COMMON_NAMES})
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
        common = tuple(getattr(self, name) for name in COMMON_NAMES)
        return (self.kind, *common, params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def replace(self, **changes: Any) -> Schedule:
        """A copy with some fields or parameters changed (validated again)."""
        values = {name: getattr(self, name) for name in COMMON_NAMES}
        if self.kind == "free_form":
            values = {}
        values.update(dict(self.param_items))
        values.update(changes)
        return Schedule.make(self.kind, **values)

    def scaled(self, peak_lr: float) -> Schedule:
        """The same shape with another peak LR (a free-form array is scaled as a whole)."""
        if self.kind == "free_form":
            lr = coerce(COMMON[0], peak_lr, self.kind)
            if lr <= 0:
                raise ScheduleError(f"peak_lr must be > 0, got {lr!r}")
            return self.replace(lrs=self.param("lrs") * (lr / self.peak_lr))
        return self.replace(peak_lr=peak_lr)

    def with_total_steps(self, total_steps: int) -> Schedule:
        """The same shape over another horizon: step counts (warmup, timescale, re-warmup) are
        kept, fractions scale with it; a free-form array is linearly resampled."""
        if self.kind != "free_form":
            return self.replace(total_steps=total_steps)
        n = coerce(COMMON[1], total_steps, self.kind)
        if n < 1:
            raise ScheduleError(f"total_steps must be >= 1, got {n}")
        old = self.param("lrs")
        grid = np.linspace(0.0, len(old) - 1.0, n) if n > 1 else np.zeros(1)
        return self.replace(lrs=np.interp(grid, np.arange(len(old)), old))

    # -- adapters ------------------------------------------------------------------------------

    def to_hf(self) -> tuple[str, dict[str, Any]]:
        """``(lr_scheduler_type, lr_scheduler_kwargs)`` of the transformers scheduler that is
        exactly this schedule (Trainer warmup_steps = ``warmup_steps``); else ScheduleError."""
        return hf.to_hf(self)

    def to_training_args(self) -> dict[str, Any]:
        """Keyword arguments for ``transformers.TrainingArguments`` that give this schedule."""
        return hf.to_training_args(self)

    def to_torch(
        self, optimizer: torch.optim.Optimizer, last_epoch: int = -1, *, set_lr: bool = True
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """A ``LambdaLR`` whose multiplier at step i is ``lrs()[i] / peak_lr`` (the last one
        beyond total_steps). ``set_lr`` sets every param group's base LR to ``peak_lr``; pass
        False to keep per-group base LRs (each is then scaled by the same multipliers)."""
        return lambda_lr(optimizer, self.relative(), self.peak_lr, last_epoch, set_lr=set_lr)
