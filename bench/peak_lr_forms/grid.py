"""Data helpers for the issue-16 measurements: the 124M SlimPajama grid, cells, fits, predictions."""

from __future__ import annotations

import time
import warnings
from collections import defaultdict

import numpy as np

import hf_lrlaw
from hf_lrlaw import LossCurve, datasets

DIVERGED = 5.0  # a final loss above this is a diverged run (the 5e-3 cosine run ends at 7.55)
PEAKS = (1e-4, 5e-4, 1e-3, 2e-3, 3e-3)


def short(s: str) -> str:
    return (
        s.replace("wsd-linear-cooldown", "wsd")
        .replace("wsd-1-sqrt-cooldown", "sqrt")
        .replace("cosine-to-10%", "cos10")
        .replace("cosine-to-0", "cos0")
        .replace("constant", "const")
    )


def load_grid() -> tuple[list[LossCurve], list[LossCurve]]:
    """(kept, excluded) 124M SlimPajama validation curves; excluded = diverged."""
    cs = datasets.load("lr-scheduling", model="124M", dataset="slimpajama")
    kept = [c for c in cs if c.losses[-1] < DIVERGED and np.all(np.isfinite(c.losses))]
    return kept, [c for c in cs if c not in kept]


def cut(c: LossCurve, until: int, tag: str = "") -> LossCurve:
    """The run as a run of ``until`` steps: LRs and points before ``until`` only (for a constant
    run this *is* the constant run of that horizon; its schedule does not depend on the horizon)."""
    keep = c.steps < until - 200  # same last point as the runs of that horizon (until - 201)
    meta = dict(c.meta, total_steps=until, cut_from=c.meta["total_steps"])
    return LossCurve(
        c.lrs[:until].copy(),
        c.steps[keep],
        c.losses[keep],
        name=f"{c.name} cut{until}{tag}",
        meta=meta,
    )


def thin(c: LossCurve, k: int) -> LossCurve:
    if k <= 1:
        return c
    idx = np.r_[np.arange(0, len(c.steps) - 1, k), len(c.steps) - 1]
    idx = np.unique(idx)
    return LossCurve(c.lrs, c.steps[idx], c.losses[idx], name=c.name, meta=c.meta)


def cells(curves, horizon: int) -> dict:
    """(peak, schedule) -> dict(truth=mean final loss of the replicates, runs=[...], lrs, end)."""
    out = defaultdict(list)
    for c in curves:
        if c.meta["total_steps"] == horizon and "cut_from" not in c.meta:
            out[(c.meta["peak_lr"], c.meta["schedule"])].append(c)
    res = {}
    for key, runs in out.items():
        res[key] = dict(
            truth=float(np.mean([r.losses[-1] for r in runs])),
            runs=runs,
            lrs=runs[0].lrs,
            end=int(runs[0].steps[-1]),
        )
    return res


def predict_final_law(law, theta, lrs_list, ends) -> np.ndarray:
    """Predicted loss at step ends[i] of LR array lrs_list[i], vectorised per length."""
    out = np.empty(len(lrs_list))
    groups = defaultdict(list)
    for i, e in enumerate(ends):
        groups[int(e)].append(i)
    for e, idx in groups.items():
        arr = np.stack([lrs_list[i][: e + 1] for i in idx])
        out[idx] = law.predict(theta, law.prepare_final(arr))
    return out


def do_fit(curves, law, n_starts=4):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = hf_lrlaw.fit(curves, law=law, prior=None, calibration=None, n_starts=n_starts)
    return f, time.perf_counter() - t0
