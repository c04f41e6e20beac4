"""Pure schedule shapes: multipliers of ``peak_lr`` at given steps, one small function per kind.

Each function follows transformers' arithmetic wherever transformers has that scheduler (so that
``Schedule.to_hf()`` is exact): warmup ``progress = i / warmup_steps``, then the kind's curve of
the steps after warmup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = [
    "DECAY_SHAPES",
    "WARMUP_SHAPES",
    "constant_curve",
    "cosine_curve",
    "cyclic_curve",
    "inverse_sqrt_curve",
    "linear_curve",
    "milestone_steps",
    "multistep_curve",
    "piecewise_curve",
    "two_stage_curve",
    "warmup_ramp",
    "wsd_curve",
    "wsd_decay_steps",
]

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
    decay_steps = wsd_decay_steps(total_steps, decay_fraction)
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
    drops = np.asarray(milestone_steps(total_steps, milestones), dtype=np.int64)
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


def piecewise_curve(
    steps: np.ndarray,
    total_steps: int,
    warmup_steps: int,
    *,
    at: tuple[float, ...],
    ratios: tuple[float, ...],
) -> np.ndarray:
    """Straight lines between knots: ``ratios[j]`` at progress ``at[j]`` of the steps after
    warmup, ``progress = (s - W) / (T - 1 - W)``, so the first update after warmup takes
    ``ratios[0]`` and the last update ``ratios[-1]`` (what an optimised schedule is saved as)."""
    progress = (steps - warmup_steps) / max(1, total_steps - 1 - warmup_steps)
    return np.interp(progress, np.asarray(at), np.asarray(ratios))


def wsd_decay_steps(total_steps: int, decay_fraction: float) -> int:
    """Steps of a WSD decay: ``round(decay_fraction * total_steps)`` (Python's round)."""
    return round(decay_fraction * total_steps)


def milestone_steps(total_steps: int, milestones: Iterable[float]) -> list[int]:
    """The step of each milestone fraction: ``round(m * total_steps)``."""
    return [round(m * total_steps) for m in milestones]
