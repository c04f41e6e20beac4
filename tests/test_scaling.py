"""The cost of a fit grows linearly with the log, not with its square: the multi-power law's
loss-drop sum meets O(log T) cells per evaluated step, long curves are fitted on means of
consecutive points, and memory stays O(points + steps). Ratios in one run, not timings."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

import hf_lrlaw
from hf_lrlaw import LossCurve, Schedule
from hf_lrlaw.laws import get_law
from hf_lrlaw.laws.areas import drop_pairs

THETA = np.array([2.78263, 0.599602, 0.448637, 638.908, 0.00209659, 0.242483, 1.35375])


def _schedules(total: int) -> list[Schedule]:
    w = total // 10
    return [
        Schedule.cosine(3e-4, total, warmup_steps=w, final_ratio=0.1),
        Schedule.wsd(3e-4, total, warmup_steps=w, decay_fraction=0.2, decay_shape="1-sqrt"),
        Schedule.multistep(3e-4, total, warmup_steps=w),
        Schedule.cyclic(3e-4, total, warmup_steps=w, cycles=3),
    ]


def test_the_loss_drop_sum_meets_log_many_cells_per_step():
    lrs = _schedules(20_000)[0].lrs()
    counts = {}
    for k in (1_000, 16_000):
        steps = np.unique(np.linspace(2_000, 19_999, k).astype(np.int64))
        counts[k] = len(drop_pairs(lrs, steps)[0])
    assert counts[16_000] / counts[1_000] < 16 * 1.3  # linear in the steps, not quadratic
    assert counts[16_000] < 16_000 * 6 * np.log2(20_000)  # O(log T) cells a step


@pytest.mark.parametrize("schedule", _schedules(24_000), ids=lambda s: s.kind)
def test_the_multi_level_sum_matches_the_exact_one(schedule):
    law, exact = get_law("multipower"), get_law("multipower", exact=True)
    lrs = schedule.lrs()
    steps = np.unique(np.r_[np.linspace(2_500, 23_999, 60).astype(np.int64), 23_999])
    approx = law.predict(THETA, law.prepare(lrs, steps))
    truth = exact.predict(THETA, exact.prepare(lrs, steps))
    assert np.max(np.abs(approx / truth - 1)) < 5e-5


def _curves(points: int, total: int = 20_000, noise: float = 0.003) -> list[LossCurve]:
    hidden = get_law("multipower")
    rng = np.random.default_rng(0)
    out = []
    for s in (Schedule.constant(3e-4, total, warmup_steps=2_000), _schedules(total)[0]):
        lrs = s.lrs()
        at = np.unique(np.linspace(2_000, total - 1, points).astype(np.int64))
        loss = hidden.predict(THETA, hidden.prepare(lrs, at))
        out.append(LossCurve(lrs, at, loss * np.exp(rng.normal(0, noise, len(at))), name=s.kind))
    return out


def test_a_binned_fit_predicts_as_the_full_one_and_is_judged_on_every_point():
    curves = _curves(3_000)
    binned = hf_lrlaw.fit(curves, "momentum")  # 512 groups a curve
    full = hf_lrlaw.fit(curves, "momentum", max_points=None)
    wsd = Schedule.wsd(3e-4, 20_000, warmup_steps=2_000, decay_fraction=0.2)
    assert abs(binned.predict(wsd)[0] / full.predict(wsd)[0] - 1) < 1e-3
    assert binned.goodness.n_points == full.goodness.n_points == sum(len(c) for c in curves)
    assert binned.scatter == pytest.approx(full.scatter, rel=0.2)  # per point, not per mean
    a, b = binned.param_intervals(), full.param_intervals()
    for name in ("alpha", "C"):  # the same uncertainty, though fitted on 6x fewer points
        assert np.log(np.diff(a[name])[0] / np.diff(b[name])[0]) == pytest.approx(0, abs=0.7)


def test_cost_and_memory_do_not_grow_with_the_log():
    small, large = _curves(2_000), _curves(20_000)
    seconds = {}
    for name, curves in (("small", small), ("large", large)):
        t0 = time.perf_counter()
        hf_lrlaw.fit(curves, "multipower")
        seconds[name] = time.perf_counter() - t0
    assert seconds["large"] / seconds["small"] < 3.0, seconds  # 10x the points
    tracemalloc.start()
    hf_lrlaw.fit(_curves(8_000), "multipower", n_starts=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100e6, peak  # its (step, change) pairs alone used to take 2.5 GB
