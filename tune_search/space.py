"""ScheduleSpace: schedule kinds x parameter grids -> a deterministic list of candidate Schedules.

>>> from tune_search import ScheduleSpace, span
>>> space = ScheduleSpace(
...     peak_lr=3e-3, total_steps=2400, warmup_steps=240,
...     kinds={
...         "constant": {},
...         "cosine": {"final_ratio": [0.0, 0.1]},
...         "wsd": {"decay_fraction": span(0.1, 0.4, 4), "decay_shape": ["linear", "1-sqrt"],
...                 "final_ratio": [0.0, 0.1]},
...     },
... )
>>> len(space)
19
>>> str(space.candidates()[0])
'constant(peak_lr=0.003, total_steps=2400, warmup_steps=240)'

A parameter value is one value, a list of values (a grid) or :func:`span` (an evenly spaced
grid). Parameters that take a list themselves (multistep ``milestones``) take a list of lists
for a grid. ``peak_lr``, ``total_steps`` and ``warmup_steps`` are fixed or listed; a float
``warmup_steps`` below 1 is a fraction of ``total_steps``. Combinations that are not valid
schedules (a decay longer than the steps after the warmup, an exponential decay to 0, ...) are
skipped and counted in :attr:`ScheduleSpace.skipped`; equal schedules appear once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hf_lrlaw.fit_result import spans_peak_lrs
from hf_lrlaw.schedules import KINDS, Grid, Schedule, ScheduleError, schedule_grid
from hf_lrlaw.schedules import span as grid_span

__all__ = [
    "DEFAULT_KINDS",
    "ScheduleSpace",
    "SpaceError",
    "default_law",
    "family",
    "pilots_for",
    "several_peak_lrs",
    "span",
]

PILOT_DECAY = 0.2  # the cooldown of the pilots of a space of several peak LRs


class SpaceError(ValueError):
    """A schedule space cannot be built as asked; the message says why."""


def span(low: float, high: float, n: int, *, log: bool = False) -> tuple[float, ...]:
    """``n`` evenly spaced values from ``low`` to ``high`` (geometric with ``log=True``),
    rounded for people (4 significant digits): :func:`hf_lrlaw.schedules.span`, the grid
    values ``lrlaw rank --space`` uses too."""
    try:
        return grid_span(low, high, n, log=log)
    except ScheduleError as exc:
        raise SpaceError(str(exc)) from None


def family(schedule: Schedule) -> tuple:
    """A coarse shape class: kind, decay shape (WSD), number of drops (multistep), cycles
    (cyclic), with peak LR and horizon. Candidates of one family differ only in fine parameters;
    the searcher spreads its full runs over families so that one law's bias does not spend them
    all on near-duplicates."""
    s = schedule
    if s.kind == "wsd":
        detail: tuple = (s.param("decay_shape"),)
    elif s.kind == "multistep":
        detail = (len(s.param("milestones")),)
    elif s.kind == "cyclic":
        detail = (s.param("cycles"),)
    else:
        detail = ()
    return (s.kind, *detail, s.peak_lr, s.total_steps)


# Parameters whose single value is itself a list: a grid of them is a list of lists.
_LIST_PARAMS = {"milestones"}

# A broad default: ~1,000 candidates per (peak_lr, total_steps, warmup_steps).
DEFAULT_KINDS: dict[str, dict[str, Any]] = {
    "constant": {},
    "cosine": {"final_ratio": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]},
    "linear": {"final_ratio": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]},
    "wsd": {
        "decay_fraction": span(0.05, 0.6, 23),
        "decay_shape": ["linear", "cosine", "1-sqrt", "exponential"],
        "final_ratio": [0.0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5],
    },
    "multistep": {
        "milestones": [
            [0.5],
            [0.7],
            [0.8],
            [0.9],
            [0.5, 0.75],
            [0.6, 0.8],
            [0.7, 0.9],
            [0.8, 0.9],
            [0.8, 0.95],
            [0.5, 0.75, 0.9],
        ],
        "factor": [0.1, 0.2, 0.316, 0.5],
    },
}


def _grid(name: str, value: Any) -> list[Any]:
    """The values a parameter takes: one value, or a list of them."""
    if isinstance(value, Mapping):
        if "span" not in value:
            raise SpaceError(
                f"{name}: a dict value must be {{'span': [low, high, n], 'log': bool}}"
            )
        low, high, n = value["span"]
        return list(span(low, high, int(n), log=bool(value.get("log", False))))
    if name in _LIST_PARAMS:
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, (list, tuple)) for v in value)
        ):
            return [tuple(v) for v in value]
        if isinstance(value, (list, tuple)):
            return [tuple(value)]
        return [(value,)]
    if isinstance(value, (list, tuple, np.ndarray)):
        out = list(value)
        if not out:
            raise SpaceError(f"{name}: an empty list gives no candidates")
        return out
    return [value]


def _number_list(name: str, value: Any) -> list[Any]:
    values = _grid(name, value)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise SpaceError(f"{name} must be a number or a list of numbers, got {v!r}")
    return values


class ScheduleSpace:
    """Schedule kinds x parameter grids -> a deterministic list of :class:`Schedule` candidates.

    Args:
        peak_lr: the peak learning rate, or a list of them.
        total_steps: the run length in optimizer steps, or a list of them.
        warmup_steps: warmup steps, or a list; a float below 1 is a fraction of total_steps.
        kinds: schedule kind -> {parameter: value, list of values, or :func:`span`}. Kinds and
            parameter names are those of :class:`~hf_lrlaw.Schedule` (``wsd``: decay_fraction,
            decay_shape, final_ratio; ``cosine``/``linear``: final_ratio; ``multistep``:
            milestones, factor; ``two_stage``; ``inverse_sqrt``; ``cyclic``; ``constant``).
            Parameters left out take the Schedule default. ``None`` uses :data:`DEFAULT_KINDS`.
        warmup_shape: the warmup's shape for every candidate.
        extra: more candidates (Schedules or their text) appended after the grid.

    The list is built once, in a fixed order: peak_lr, total_steps, warmup_steps, then the kinds
    in the order given, then each kind's parameters in the Schedule's order (last varies fastest).
    """

    def __init__(
        self,
        peak_lr: float | Sequence[float],
        total_steps: int | Sequence[int],
        warmup_steps: int | float | Sequence[int | float] = 0,
        kinds: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        warmup_shape: str = "linear",
        extra: Iterable[Schedule | str] = (),
    ) -> None:
        self.peak_lrs = [float(v) for v in _number_list("peak_lr", peak_lr)]
        self.total_steps = [int(v) for v in _number_list("total_steps", total_steps)]
        for t in self.total_steps:
            if t < 1:
                raise SpaceError(f"total_steps must be >= 1, got {t}")
        self.warmups = list(_number_list("warmup_steps", warmup_steps))
        self.kinds: dict[str, dict[str, Any]] = {
            str(k): dict(v or {}) for k, v in (DEFAULT_KINDS if kinds is None else kinds).items()
        }
        for kind in self.kinds:
            if kind not in KINDS:
                raise SpaceError(f"unknown schedule kind {kind!r}; known kinds: {', '.join(KINDS)}")
            if kind == "free_form":
                raise SpaceError("free_form schedules go in extra=, not in a grid")
            for name, value in self.kinds[kind].items():
                _grid(f"{kind} {name}", value)  # validate now, not at the first candidates()
        self.warmup_shape = warmup_shape
        self.extra = [Schedule.parse(s) if isinstance(s, str) else s for s in extra]
        self.skipped: list[tuple[str, str]] = []
        self._candidates: tuple[Schedule, ...] | None = None

    # -- building --------------------------------------------------------------------------
    def _warmup(self, value: Any, total: int) -> int:
        if isinstance(value, float) and 0 < value < 1:
            return round(value * total)
        if float(value) != int(value) or value < 0:
            raise SpaceError(
                f"warmup_steps must be a whole number >= 0 or a fraction in (0, 1), got {value!r}"
            )
        return int(value)

    def _build(self) -> tuple[Schedule, ...]:
        found = Grid()
        for peak, total, warm in itertools.product(self.peak_lrs, self.total_steps, self.warmups):
            common = {
                "peak_lr": peak,
                "total_steps": total,
                "warmup_steps": self._warmup(warm, total),
                "warmup_shape": self.warmup_shape,
            }
            for kind, grid in self.kinds.items():
                found.extend(schedule_grid(kind, {n: _grid(n, v) for n, v in grid.items()}, common))
        found.extend(Grid(list(self.extra)))
        self.skipped = found.skipped
        return tuple(found.schedules)

    def candidates(self) -> list[Schedule]:
        """Every candidate, in the space's fixed order (a new list each call)."""
        if self._candidates is None:
            self._candidates = self._build()
        return list(self._candidates)

    def __len__(self) -> int:
        if self._candidates is None:
            self._candidates = self._build()
        return len(self._candidates)

    def __iter__(self):
        return iter(self.candidates())

    def reference(self) -> tuple[float, int, int]:
        """``(peak_lr, total_steps, warmup_steps)`` the default pilots use: the middle peak LR
        (the lower of two middles), the longest horizon, the middle warmup."""
        peaks = sorted(self.peak_lrs)
        total = max(self.total_steps)
        warms = sorted(self._warmup(w, total) for w in self.warmups)
        return peaks[(len(peaks) - 1) // 2], total, warms[(len(warms) - 1) // 2]

    def pilots(self) -> list[Schedule]:
        """Default pilot schedules (:func:`pilots_for`): constant and cosine to 0 at the reference
        setting; for several peak LRs, a short WSD run at the lowest, middle and highest."""
        peak, total, warm = self.reference()
        return pilots_for(self.peak_lrs, peak, total, warm, self.warmup_shape)

    def describe(self) -> str:
        """One line: how many candidates of which kinds, and how many combinations were skipped."""
        counts: dict[str, int] = {}
        for s in self.candidates():
            counts[s.kind] = counts.get(s.kind, 0) + 1
        kinds = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"
        skipped = f"; {len(self.skipped)} invalid combinations skipped" if self.skipped else ""
        return f"{len(self)} candidate schedules ({kinds}){skipped}"

    def __repr__(self) -> str:
        return (
            f"ScheduleSpace(peak_lr={self.peak_lrs}, total_steps={self.total_steps}, "
            f"warmup_steps={self.warmups}, kinds={list(self.kinds)})"
        )

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (inverse of :meth:`from_dict`)."""

        def plain(v: Any) -> Any:
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, list):
                return [plain(x) for x in v]
            if isinstance(v, (np.floating, np.integer)):
                return v.item()
            return v

        return {
            "peak_lr": self.peak_lrs,
            "total_steps": self.total_steps,
            "warmup_steps": [plain(w) for w in self.warmups],
            "kinds": {k: {n: plain(v) for n, v in g.items()} for k, g in self.kinds.items()},
            "warmup_shape": self.warmup_shape,
            "extra": [str(s) for s in self.extra if s.kind != "free_form"],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpace:
        """A space from :meth:`to_dict` output (or a hand-written JSON of the same keys; a
        parameter value may also be ``{"span": [low, high, n], "log": false}``)."""
        if not isinstance(data, Mapping):
            raise SpaceError("a schedule space description must be a JSON object")
        unknown = set(data) - {
            "peak_lr",
            "total_steps",
            "warmup_steps",
            "kinds",
            "warmup_shape",
            "extra",
        }
        if unknown:
            raise SpaceError(f"unknown key(s) in the space description: {sorted(unknown)}")
        for key in ("peak_lr", "total_steps"):
            if key not in data:
                raise SpaceError(f"the space description needs {key!r}")
        return cls(
            data["peak_lr"],
            data["total_steps"],
            data.get("warmup_steps", 0),
            data.get("kinds"),
            warmup_shape=data.get("warmup_shape", "linear"),
            extra=data.get("extra", ()),
        )

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> ScheduleSpace:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpaceError(f"the space description is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def fingerprint(self) -> str:
        """A short hash of the candidate list (a restored search checks it is the same space)."""
        return fingerprint(self.candidates())


def fingerprint(schedules: Sequence[Schedule]) -> str:
    """:meth:`ScheduleSpace.fingerprint` of a plain list of schedules."""
    h = hashlib.sha256()
    for s in schedules:
        h.update(str(s).encode() if s.kind != "free_form" else s.lrs().tobytes())
        h.update(b"\n")
    return h.hexdigest()[:16]


def several_peak_lrs(schedules: Sequence[Schedule]) -> bool:
    """Whether the schedules differ in peak LR (by more than 5%)."""
    return spans_peak_lrs([s.peak_lr for s in schedules])


def default_law(schedules: Sequence[Schedule]) -> str:
    """The law a search fits unless told: "lrnoise" (whose parameters hold across peak LRs)
    where the candidates differ in peak LR, else "momentum"."""
    return "lrnoise" if several_peak_lrs(schedules) else "momentum"


def pilots_for(
    peak_lrs: Sequence[float],
    peak: float,
    total: int,
    warmup: int,
    warmup_shape: str = "linear",
) -> list[Schedule]:
    """The default pilots. At one peak LR: constant and cosine to 0 at ``peak`` over ``total``
    steps, the pair the papers fit their laws on (run to ``pilot_steps``). At several: WSD with a
    20% linear cooldown over half the horizon at the lowest, the middle (``peak``) and the
    highest peak LR, each run in full: the rise of the loss with the LR, its annealing gain and
    the penalty a high LR keeps after its cooldown, at half a run per LR (bench_peak_lr.py,
    protocol P)."""
    common = {"warmup_steps": warmup, "warmup_shape": warmup_shape}
    peaks = sorted(set(float(p) for p in peak_lrs))
    if not several_peak_lrs([Schedule.constant(p, max(total, 1)) for p in peaks]):
        return [
            Schedule.constant(peak, total, **common),
            Schedule.cosine(peak, total, **common),
        ]
    half = max(total // 2, warmup + 2)
    chosen = sorted({peaks[0], float(peak), peaks[-1]})
    return [
        Schedule.wsd(p, half, decay_fraction=PILOT_DECAY, **common)  # type: ignore[arg-type]
        for p in chosen
    ]
