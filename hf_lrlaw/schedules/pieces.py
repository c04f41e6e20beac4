"""A schedule's LRs as a few pieces instead of one float per step, where its kind allows.

Ranking many candidates needs only sums over each LR curve (its area, the momentum-weighted
area, the steps where it changes), and most of a curve is flat: a WSD run is a warmup, a stable
phase and a decay. Pieces describe it in O(1) numbers plus shared templates: a constant multiple
of the peak, or ``template * scale + offset`` where the template (a warmup ramp, a cosine, a
decay shape of some length) is one array shared by every candidate that has it. The arithmetic
is the one the kind's curve does (:mod:`hf_lrlaw.schedules.shapes`), so LRs computed from pieces
equal :meth:`Schedule.lrs` to the last bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hf_lrlaw.limits import BLOCK_FLOATS
from hf_lrlaw.schedules.schedule import Schedule
from hf_lrlaw.schedules.shapes import (
    _DECAYS,
    _RAMPS,
    milestone_steps,
    piecewise_curve,
    wsd_decay_steps,
)

__all__ = ["Piece", "SchedulePieces", "Templates", "schedule_pieces"]


@dataclass(frozen=True)
class Piece:
    """Steps ``start..stop-1`` at multipliers of the peak: ``rel`` (constant), or
    ``templates[key] * scale + offset``, or ``offset ** templates[key]`` (``geometric``), or
    the explicit multipliers ``values``."""

    start: int
    stop: int
    rel: float | None = None
    key: tuple | None = None
    scale: float = 1.0
    offset: float = 0.0
    values: np.ndarray | None = None
    geometric: bool = False

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SchedulePieces:
    """One schedule: its peak LR and length, the warmup ramp (``warmup`` steps of
    ``templates[("ramp", shape, warmup)] * (1 - start) + start``; None without warmup), and
    pieces covering the steps after it."""

    peak: float
    total: int
    warmup: int
    ramp: Piece | None
    pieces: tuple[Piece, ...]


class Templates:
    """The shared shape arrays of one scoring call, each made once, and sums of them. Every
    template is monotone (ramps rise, decays fall), so its ends are its extremes."""

    def __init__(self, budget: int = BLOCK_FLOATS) -> None:
        self.budget = budget  # floats of template arrays kept at once (their sums stay)
        self._floats = 0
        self._arrays: dict[tuple, np.ndarray] = {}
        self._sums: dict[tuple, float] = {}
        self._powers: dict[float, np.ndarray] = {}
        self._memo: dict[object, Any] = {}

    def __getitem__(self, key: tuple) -> np.ndarray:
        arr = self._arrays.get(key)
        if arr is None:
            arr = _TEMPLATE[key[0]](*key[1:])
            if self._floats + len(arr) > self.budget:  # bounded memory: start afresh
                self._arrays.clear()
                self._floats = 0
            self._arrays[key] = arr
            self._floats += len(arr)
        return arr

    def cached(self, key: tuple, what: str, make: Callable[[np.ndarray], float]) -> float:
        """``make(template)``, computed once per template and ``what``."""
        full = (*key, what)
        if full not in self._sums:
            self._sums[full] = float(make(self[key]))
        return self._sums[full]

    def memo(self, key: object, make: Callable[[], Any]) -> Any:
        """``make()``, once per ``key`` in this call."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def powers(self, lam: float, n: int) -> np.ndarray:
        """``lam**(n-1-i)`` for ``i < n`` (a view of one array per ``lam``, grown as needed)."""
        have = self._powers.get(lam)
        if have is None or len(have) < n:
            size = max(n, 4096, 2 * len(have) if have is not None else 0)
            have = self._powers[lam] = lam ** np.arange(size - 1, -1, -1.0)
        return have[len(have) - n :]

    def rel_at(self, piece: Piece, i: int) -> float:
        """The piece's multiplier at its ``i``-th step."""
        if piece.values is not None:
            return float(piece.values[i])
        if piece.key is None:
            return float(piece.rel)
        if piece.geometric:
            return float(piece.offset ** self[piece.key][i])
        return float(self[piece.key][i] * piece.scale + piece.offset)

    def rel(self, piece: Piece) -> np.ndarray:
        """The piece's multipliers of the peak, step by step."""
        if piece.values is not None:
            return piece.values
        if piece.key is None:
            return np.full(piece.length, piece.rel)
        if piece.geometric:
            return piece.offset ** self[piece.key]
        return self[piece.key] * piece.scale + piece.offset


def _progress(n: int, length: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) / max(1, length)


_TEMPLATE: dict[str, Callable[..., np.ndarray]] = {
    "ramp": lambda shape, w: _RAMPS[shape](_progress(w, w)),
    "cosine": lambda t, w: 0.5 * (1.0 + np.cos(np.pi * _progress(t - w, t - w))),
    "linear": lambda t, w: (t - np.arange(w, t, dtype=np.int64)) / max(1, t - w),
    "decay": lambda shape, d: _DECAYS[shape](_progress(d, d)),
    "progress": lambda d: _progress(d, d),
}


def schedule_pieces(s: Schedule, peak: float | None = None) -> SchedulePieces | None:
    """The schedule as pieces (at ``peak`` instead of its peak LR if given), or None for a kind
    whose LRs have no such form (inverse_sqrt, cyclic, free_form: those are scored from their
    per-step LRs)."""
    make = _KIND_PIECES.get(s.kind)
    if make is None:
        return None
    t, w = s.total_steps, s.warmup_steps
    if w >= t:
        return None
    pieces = tuple(p for p in make(s, t, w) if p.stop > p.start)
    start = s.warmup_start_ratio
    ramp = (
        Piece(0, w, key=("ramp", s.warmup_shape, w), scale=1.0 - start, offset=start) if w else None
    )
    return SchedulePieces(s.peak_lr if peak is None else peak, t, w, ramp, pieces)


def _final_ratio(s: Schedule) -> float:
    return float(s.param("final_ratio"))


def _wsd(s: Schedule, t: int, w: int) -> list[Piece]:
    p = dict(s.param_items)
    d = wsd_decay_steps(t, p["decay_fraction"])
    r, shape = float(p["final_ratio"]), p["decay_shape"]
    stable = Piece(w, t - d, rel=1.0)
    if shape == "exponential":
        return [stable, Piece(t - d, t, key=("progress", d), offset=r, geometric=True)]
    return [stable, Piece(t - d, t, key=("decay", shape, d), scale=1.0 - r, offset=r)]


def _multistep(s: Schedule, t: int, w: int) -> list[Piece]:
    factor = s.param("factor")
    edges = [w, *(m for m in milestone_steps(t, s.param("milestones")) if w < m < t), t]
    edges = sorted(set(edges))
    drops = milestone_steps(t, s.param("milestones"))
    # at step a: factor ** (the milestones at or before a), as multistep_curve
    return [
        Piece(a, b, rel=float(np.float64(factor) ** np.float64(sum(m <= a for m in drops))))
        for a, b in zip(edges, edges[1:])
    ]


def _piecewise(s: Schedule, t: int, w: int) -> list[Piece]:
    steps = np.arange(w, t, dtype=np.int64)
    return [
        Piece(w, t, values=piecewise_curve(steps, t, w, at=s.param("at"), ratios=s.param("ratios")))
    ]


def _two_stage(s: Schedule, t: int, w: int) -> list[Piece]:
    switch = round(s.param("switch_fraction") * t)
    return [Piece(w, switch, rel=1.0), Piece(switch, t, rel=float(s.param("second_ratio")))]


_KIND_PIECES: dict[str, Callable[[Schedule, int, int], list[Piece]]] = {
    "constant": lambda s, t, w: [Piece(w, t, rel=1.0)],
    "cosine": lambda s, t, w: [
        Piece(w, t, key=("cosine", t, w), scale=1.0 - _final_ratio(s), offset=_final_ratio(s))
    ],
    "linear": lambda s, t, w: [
        Piece(w, t, key=("linear", t, w), scale=1.0 - _final_ratio(s), offset=_final_ratio(s))
    ],
    "wsd": _wsd,
    "multistep": _multistep,
    "two_stage": _two_stage,
    "piecewise": _piecewise,
}
