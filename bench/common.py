"""Shared helpers for the benchmarks: the evaluation splits of the bundled public curves."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable

import numpy as np

from hf_lrlaw import LossCurve, datasets

SWEEP_SIZES = ("33M", "53M", "60M", "93M", "124M", "152M", "209M", "360M")


def machine() -> str:
    """One line naming the date and machine, for bench/RESULTS.md."""
    return (
        f"{time.strftime('%Y-%m-%d')}, {platform.node() or 'unknown host'}, "
        f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def mean_rel_error(pred: np.ndarray, curve: LossCurve) -> float:
    """Mean over the curve's points of |pred - loss| / loss (the papers' PredE for one curve)."""
    return float(np.mean(np.abs(pred - curve.losses) / curve.losses))


def worst_rel_error(pred: np.ndarray, curve: LossCurve) -> float:
    return float(np.max(np.abs(pred - curve.losses) / curve.losses))


def sweep_split(size: str) -> tuple[list[LossCurve], list[LossCurve]]:
    """lr-scheduling model-size sweep (SlimPajama): fit on the constant run and the longest
    cosine run of one size; the other runs of that size are held out."""
    curves = datasets.load("lr-scheduling", model=size, dataset="slimpajama")
    const = [c for c in curves if c.meta["schedule"] == "constant"]
    cos = [c for c in curves if c.meta["schedule"].startswith("cosine")]
    if not const or not cos:
        raise ValueError(f"size {size} lacks a constant or a cosine run")

    # 124M has runs at five peak LRs; the sweep's runs sit at 1e-3 (constant) and 2e-3 (cosine)
    # for the small sizes, so prefer those and hold out only runs inside the fitted LR range:
    # the laws do not extrapolate to peak LRs never observed.
    def pick(runs):
        return max(runs, key=lambda c: (c.meta["peak_lr"] in (1e-3, 2e-3), c.meta["total_steps"]))

    fit_on = [pick(const), pick(cos)]
    lo = min(c.meta["peak_lr"] for c in fit_on)
    hi = max(c.meta["peak_lr"] for c in fit_on)
    ids = {id(c) for c in fit_on}
    held = [c for c in curves if id(c) not in ids and lo <= c.meta["peak_lr"] <= hi]
    return fit_on, held


def law_options(pairs: Iterable[str]) -> dict[str, float | str]:
    """``["lam=0.998", "warmup=actual"]`` -> ``{"lam": 0.998, "warmup": "actual"}`` (--option)."""
    out: dict[str, float | str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def table(rows: Iterable[Iterable[object]], header: Iterable[str]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(lines)
