"""How well a saved fit predicts curves: per curve, the error on the points it did not see and
the error and interval of the last point (``lrlaw evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fit_result import Fit

__all__ = ["evaluate"]


def evaluate(fit: Fit, curves: Sequence[LossCurve], level: float = 0.9) -> dict[str, Any]:
    """Accuracy of ``fit`` on ``curves``: per curve, the mean ``|pred - loss| / loss`` over the
    points the fit did not see (all points of a curve it does not know, by name), and the error
    and interval of the last point. ``mean_rel_error`` averages the per-curve means over the
    curves with held-out points."""
    rows = []
    for c in curves:
        if not len(c):
            continue
        seen_last = fit.fitted_last_step(c)
        held = c.steps > seen_last
        in_sample = not held.any()
        mask = np.ones(len(c), dtype=bool) if in_sample else held
        steps, losses = c.steps[mask], c.losses[mask]
        pred = fit.predict(c.lrs, steps)
        m, lo, hi = fit.predict_interval(c.lrs, [c.last_step], level=level)
        final = float(c.losses[-1])
        rows.append(
            {
                "curve": c.name,
                "points": int(mask.sum()),
                "in_sample": bool(in_sample),
                "mean_rel_error": float(np.mean(np.abs(pred - losses) / losses)),
                "last_step": c.last_step,
                "loss": final,
                "predicted": float(m[0]),
                "low": float(lo[0]),
                "high": float(hi[0]),
                "final_rel_error": float((m[0] - final) / final),
                "covered": bool(lo[0] <= final <= hi[0]),
            }
        )
    held_rows = [r for r in rows if not r["in_sample"]]
    use = held_rows or rows
    return {
        "law": fit.law,
        "level": level,
        "curves": rows,
        "held_out_curves": len(held_rows),
        "mean_rel_error": float(np.mean([r["mean_rel_error"] for r in use])) if use else None,
        "mean_final_abs_rel_error": (
            float(np.mean([abs(r["final_rel_error"]) for r in use])) if use else None
        ),
        "coverage": float(np.mean([r["covered"] for r in use])) if use else None,
    }
