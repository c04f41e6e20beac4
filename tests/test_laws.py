"""The laws' building blocks against plain reference loops, and their analytic derivatives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hf_lrlaw import Schedule, datasets
from hf_lrlaw.laws import LawError, available_laws, get_law
from hf_lrlaw.laws._common import warmup_end_rows
from hf_lrlaw.laws.areas import (
    lr_area,
    momentum_area,
    momentum_area_final,
    warmup_end,
    with_warmup_at_peak,
)


def ref_momentum_area(lrs, lam):
    m, s2, out = 0.0, 0.0, []
    for i, eta in enumerate(lrs):
        m = lam * m + ((lrs[i - 1] - eta) if i > 0 else 0.0)
        s2 += m
        out.append(s2)
    return np.array(out)


def ref_multipower_drop(lrs, t, c, beta, gamma, start):
    total = 0.0
    for k in range(max(start, 1), t + 1):
        d = lrs[k - 1] - lrs[k]
        if d != 0:
            s_k = sum(lrs[k : t + 1])
            total += d * (1 - (c * lrs[k] ** (-gamma) * s_k + 1) ** (-beta))
    return total


lr_arrays = arrays(
    np.float64,
    st.integers(2, 60),
    elements=st.floats(1e-6, 1e-2, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(lrs=lr_arrays, lam=st.sampled_from([0.0, 0.5, 0.9, 0.999]))
def test_areas_match_plain_loops(lrs, lam):
    np.testing.assert_allclose(lr_area(lrs), np.cumsum(lrs), rtol=1e-12)
    ref = ref_momentum_area(lrs, lam)
    np.testing.assert_allclose(momentum_area(lrs, lam), ref, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(
        momentum_area_final(lrs[None, :], lam)[0], ref[-1], rtol=1e-9, atol=1e-15
    )


@settings(max_examples=60, deadline=None)
@given(lrs=lr_arrays)
def test_warmup_end_is_the_rise_to_the_first_top(lrs):
    w = warmup_end(lrs)
    # Non-decreasing up to w, and lrs[w] is the largest value of the rise.
    assert np.all(np.diff(lrs[: w + 1]) >= 0)
    rise = lrs[: (np.flatnonzero(np.diff(lrs) < 0)[:1].tolist() or [len(lrs) - 1])[0] + 1]
    top = rise.max() * (1 - 1e-6)
    assert lrs[w] >= top and np.all(lrs[:w] < top)
    assert warmup_end_rows(lrs[None, :])[0] == w
    peaked = with_warmup_at_peak(lrs)
    assert np.all(peaked[:w] == lrs[w]) and np.array_equal(peaked[w:], lrs[w:])


def test_warmup_end_ignores_rounding_wobble_on_the_plateau():
    """Interpolated or logged LRs differ in the last bits along a plateau (the public
    lr-scheduling constant runs do, by 2e-19): the warmup still ends where the plateau starts,
    not at its highest bit near the end of the run."""
    lrs = Schedule.constant(1e-3, 10000, warmup_steps=100).lrs()
    wobbly = lrs + np.where(np.arange(len(lrs)) >= 100, 1e-19 * np.sin(np.arange(len(lrs))), 0.0)
    assert warmup_end(lrs) <= 100
    assert warmup_end(wobbly) == warmup_end(lrs)
    rows = np.vstack([wobbly, lrs, Schedule.cosine(1e-3, 10000, warmup_steps=300).lrs()])
    np.testing.assert_array_equal(warmup_end_rows(rows), [warmup_end(r) for r in rows])
    run = next(c for c in datasets.load("lr-scheduling", model="33M") if "constant" in c.name)
    assert warmup_end(run.lrs) < 0.05 * len(run.lrs)


@settings(max_examples=25, deadline=None)
@given(
    lrs=arrays(np.float64, st.integers(3, 40), elements=st.floats(1e-5, 1e-3)),
    warmup=st.sampled_from(["exclude", "include"]),
)
def test_multipower_drop_exact_matches_plain_loop(lrs, warmup):
    law = get_law("multipower", warmup=warmup, exact=True)
    theta = np.array([2.0, 0.5, 0.5, 300.0, 2.0, 0.6, 0.6])
    steps = np.arange(len(lrs))
    pred = law.predict(theta, law.prepare(lrs, steps))
    start = warmup_end(lrs) + 1 if warmup == "exclude" else 0
    ref = [
        2.0
        + 0.5 * np.sum(lrs[: t + 1]) ** -0.5
        - 300 * ref_multipower_drop(lrs, t, 2.0, 0.6, 0.6, start)
        for t in steps
    ]
    np.testing.assert_allclose(pred, ref, rtol=1e-10)


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule.cosine(3e-4, 24000, warmup_steps=2160, final_ratio=0.1),
        Schedule.wsd(3e-4, 24000, warmup_steps=2160, decay_fraction=0.2, decay_shape="1-sqrt"),
        Schedule.multistep(1e-3, 8000, warmup_steps=300),
        Schedule.cyclic(1e-3, 9000, warmup_steps=300, cycles=3),
    ],
    ids=["cosine", "wsd", "multistep", "cyclic"],
)
def test_binned_multipower_drop_is_close_to_exact(schedule):
    lrs = schedule.lrs()
    steps = np.arange(300, len(lrs), 128)
    theta = np.array([2.5, 0.6, 0.45, 450.0, 2.0, 0.6, 0.65]) * [1, 1, 1, 3e-4 / lrs.max(), 1, 1, 1]
    for warmup in ("exclude", "include"):
        exact = get_law("multipower", warmup=warmup, exact=True)
        binned = get_law("multipower", warmup=warmup)
        a = exact.predict(theta, exact.prepare(lrs, steps))
        b = binned.predict(theta, binned.prepare(lrs, steps))
        assert np.max(np.abs(a - b) / a) < 5e-5


@pytest.mark.parametrize("name", available_laws())
def test_prepare_final_agrees_with_prepare_at_the_last_step(name):
    law = get_law(name)
    scheds = [
        Schedule.cosine(3e-4, 6000, warmup_steps=500, final_ratio=0.1),
        Schedule.wsd(3e-4, 6000, warmup_steps=500, decay_fraction=0.3),
        Schedule.constant(3e-4, 6000, warmup_steps=500),
    ]
    theta = {
        "momentum": [2.5, 0.6, 0.5, 0.4],
        "power": [2.5, 0.6, 0.5],
        "multipower": [2.5, 0.6, 0.45, 450.0, 2.0, 0.6, 0.65],
        "lrnoise": [2.5, 1.1, 0.34, 0.6, 0.36, 0.41, 0.012],
    }[name]
    theta = np.array(theta, dtype=float)
    batch = law.predict(theta, law.prepare_final(np.stack([s.lrs() for s in scheds])))
    one = [law.predict(theta, law.prepare(s.lrs(), [s.total_steps - 1]))[0] for s in scheds]
    np.testing.assert_allclose(batch, one, rtol=5e-5)  # both binned: each within ~2e-5 of exact


@pytest.mark.parametrize("name", available_laws())
def test_jacobian_matches_finite_differences(name):
    law = get_law(name)
    lrs = Schedule.wsd(3e-4, 5000, warmup_steps=400, decay_fraction=0.4, final_ratio=0.05).lrs()
    steps = np.arange(450, 5000, 97)
    prep = law.prepare(lrs, steps)
    theta = {
        "momentum": [2.5, 0.6, 0.5, 0.4],
        "power": [2.5, 0.6, 0.5],
        "multipower": [2.5, 0.6, 0.45, 450.0, 2.0, 0.6, 0.65],
        "lrnoise": [2.5, 1.1, 0.34, 0.6, 0.36, 0.41, 0.012],
    }[name]
    theta = np.array(theta, dtype=float)
    pred, jac = law.jacobian(theta, prep)
    np.testing.assert_allclose(pred, law.predict(theta, prep), rtol=1e-13)
    for k in range(len(theta)):
        h = 1e-6 * max(abs(theta[k]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        fd = (law.predict(up, prep) - law.predict(down, prep)) / (2 * h)
        np.testing.assert_allclose(jac[:, k], fd, rtol=1e-5, atol=1e-9, err_msg=law.params[k].name)


def test_unknown_law_and_bad_options_are_clear():
    with pytest.raises(LawError, match="unknown law 'cosine'"):
        get_law("cosine")
    with pytest.raises(LawError, match="lam"):
        get_law("momentum", lam=1.5)
    with pytest.raises(LawError, match="warmup"):
        get_law("multipower", warmup="peak")
    with pytest.raises(LawError, match="bad option"):
        get_law("power", colour="red")
