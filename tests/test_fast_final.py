"""The fast path for final losses (schedules as pieces, no per-step LR array) against the
per-step computation: ``Fit.predict`` of the whole curve, on every schedule kind and law mode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import hf_lrlaw
from hf_lrlaw import Schedule
from hf_lrlaw.fit_result import final_preps
from hf_lrlaw.schedules import KINDS
from hf_lrlaw.schedules.pieces import Templates, schedule_pieces

T, W, P = 6000, 500, 3e-4


def _every_kind() -> list[Schedule]:
    make = Schedule.parse
    base = f"peak_lr={P}, total_steps={T}, warmup_steps={W}"
    out = [
        make(f"constant({base}, warmup_shape=1-sqrt)"),
        make(f"cosine({base}, final_ratio=0.1)"),
        make(f"linear(peak_lr={P}, total_steps={T}, final_ratio=0.3)"),
        make(f"wsd({base}, decay_fraction=0.25, decay_shape=exponential, final_ratio=0.01)"),
        make(f"wsd({base}, decay_fraction=0.3, decay_shape=1-sqrt, final_ratio=0.0)"),
        make(
            f"wsd({base}, decay_fraction=0.2, decay_shape=cosine, warmup_shape=cosine, "
            "warmup_start_ratio=0.1, final_ratio=0.05)"
        ),  # fmt: skip
        make(f"wsd(peak_lr={P}, total_steps={T}, decay_fraction=0.1, final_ratio=0.001)"),
        make(f"multistep({base}, milestones=[0.5, 0.8, 0.9], factor=0.3)"),
        make(f"two_stage({base}, switch_fraction=0.6, second_ratio=0.2)"),
        make(f"inverse_sqrt({base})"),
        make(f"cyclic({base}, cycles=3, rewarmup_steps=100)"),
        make(f"piecewise({base}, at=[0, 0.5, 0.8, 1], ratios=[1, 1, 0.3, 0.01])"),
        make(f"piecewise({base}, at=[0, 0.3, 0.6, 1], ratios=[1, 0.4, 0.7, 0.05])"),  # rises again
        Schedule.free_form(P * np.linspace(0.1, 1.0, T) ** 0.5, name="sqrt ramp"),
    ]
    assert {s.kind for s in out} == set(KINDS)  # a new kind must join this test
    return out


SCHEDULES = _every_kind()
MODES = [
    ("momentum", {}),
    ("momentum", {"warmup": "actual"}),
    ("momentum", {"warmup": "include", "lam": 0.99}),
    ("power", {}),
    ("multipower", {"exact": True}),
    ("multipower", {"warmup": "exclude", "exact": True}),
]


@pytest.fixture(scope="module")
def train():
    return hf_lrlaw.datasets.multipowerlaw_split("25M")[0]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[s.kind for s in SCHEDULES])
def test_pieces_give_the_schedules_lrs_to_the_last_bit(schedule: Schedule) -> None:
    sp = schedule_pieces(schedule)
    if schedule.kind in ("inverse_sqrt", "cyclic", "free_form"):
        assert sp is None  # scored from their per-step LRs
        return
    tpl = Templates()
    parts = ([sp.ramp] if sp.ramp is not None else []) + list(sp.pieces)
    rel = np.concatenate([tpl.rel(p) for p in parts])
    assert np.array_equal(sp.peak * rel, schedule.lrs())


@pytest.mark.parametrize("law,options", MODES, ids=[f"{n}-{o}" for n, o in MODES])
def test_fast_final_losses_equal_the_whole_curves_last_point(train, law, options) -> None:
    fitted = {k: v for k, v in options.items() if k != "exact"}  # an exact fit is slow
    fit = hf_lrlaw.fit(train, law, law_options=fitted)
    fit = dataclasses.replace(fit, law_options={**fit.law_options, **options})
    mean, low, high = fit.predict_final(SCHEDULES)
    whole = np.array([fit.predict(s, [T - 1])[0] for s in SCHEDULES])
    np.testing.assert_allclose(mean, whole, rtol=1e-9, atol=0)
    assert np.all(low < mean) and np.all(mean < high)
    used = [len(idx) for idx, *_ in final_preps(fit.law_object, SCHEDULES)]
    assert sum(used) == len(SCHEDULES) and len(used) == 2  # one block of pieces, one of arrays


def test_binned_multipower_equals_its_per_step_binning(train) -> None:
    """The default multi-power law bins distant LR changes (2e-5 of the loss); the pieces build
    the same bins as the per-step arrays."""
    fit = hf_lrlaw.fit(train, "multipower")
    law = fit.law_object
    fast = fit.predict_final(SCHEDULES)[0]
    arrays = law.predict(fit.theta, law.prepare_final(np.stack([s.lrs() for s in SCHEDULES])))
    np.testing.assert_allclose(fast, arrays * fit.bias_factor(T - 1), rtol=1e-9, atol=0)
    whole = np.array([fit.predict(s, [T - 1])[0] for s in SCHEDULES])
    np.testing.assert_allclose(fast, whole, rtol=1e-4, atol=0)
    pieced = [s for s in SCHEDULES if schedule_pieces(s) is not None]
    prep = law.prepare_final_pieces([schedule_pieces(s) for s in pieced], Templates())
    per_step = law.prepare_final(np.stack([s.lrs() for s in pieced]))
    np.testing.assert_allclose(prep.anneal, per_step.anneal, rtol=0, atol=1e-12)


@pytest.mark.parametrize("law,options", [*MODES, ("multipower", {})], ids=str)
def test_one_shape_at_many_peak_lrs_is_each_schedule_on_its_own(train, law, options) -> None:
    """A shape is prepared once at a unit peak LR and rescaled: every schedule of a mixed call
    equals its per-step computation on its own, whatever else the call holds."""
    fitted = {k: v for k, v in options.items() if k != "exact"}
    fit = hf_lrlaw.fit(train, law, law_options=fitted)
    fit = dataclasses.replace(fit, law_options={**fit.law_options, **options})
    lawo = fit.law_object
    mixed = [
        s.replace(peak_lr=s.peak_lr * f)
        for f in (1.0, 3.7, 0.2)
        for s in SCHEDULES
        if s.kind != "free_form"
    ]
    order = np.random.default_rng(0).permutation(len(mixed))
    mixed = [mixed[i] for i in order]
    assert len({s.peak_lr for s in mixed}) == 3
    fast = fit.predict_final(mixed)[0]
    alone = np.array(
        [lawo.predict(fit.theta, lawo.prepare_final(s.lrs()[None, :]))[0] for s in mixed]
    )
    np.testing.assert_allclose(fast, alone * fit.bias_factor(T - 1), rtol=1e-9, atol=0)
    blocks = [len(idx) for idx, *_ in final_preps(lawo, mixed)]
    assert sum(blocks) == len(mixed)


def test_rank_draws_match_the_per_draw_loop(train) -> None:
    fit = hf_lrlaw.fit(train, "momentum")
    law = fit.law_object
    (_, prep, _, _), *_ = final_preps(law, SCHEDULES[:9])
    thetas = np.array([fit.theta * (1 + 0.01 * k) for k in range(5)])
    many = law.predict_draws(thetas, prep)
    loop = np.stack([law.predict(t, prep) for t in thetas])
    np.testing.assert_allclose(many, loop, rtol=1e-12)


def test_many_shapes_and_long_runs_stay_in_bounded_memory(train) -> None:
    """Templates are shared per call but not all kept: 40 distinct decays of 1e6 steps."""
    import tracemalloc

    fit = hf_lrlaw.fit(train, "momentum")
    cands = [
        Schedule.wsd(P, 1_000_000, warmup_steps=W, decay_fraction=0.02 * (i + 1)) for i in range(40)
    ]
    tracemalloc.start()
    mean = fit.predict_final(cands)[0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.all(np.isfinite(mean)) and peak < 80e6, peak
    np.testing.assert_allclose(mean[-1], fit.predict(cands[-1], [999_999])[0], rtol=1e-9)


def test_rank_offset_moves_each_candidate_by_its_own_amount(train) -> None:
    fit = hf_lrlaw.fit(train, "momentum")
    cands = [Schedule.wsd(P, T, warmup_steps=W, decay_fraction=d) for d in (0.1, 0.2, 0.4, 0.8)]
    base = {str(r.schedule): r for r in hf_lrlaw.rank(fit, cands, noise=False)}
    leader = hf_lrlaw.rank(fit, cands, noise=False).best.schedule
    offset = np.array([0.5 if s == leader else 0.001 * k for k, s in enumerate(cands)])
    moved = hf_lrlaw.rank(fit, cands, noise=False, offset=offset)
    assert moved.rows[-1].schedule == leader  # half a nat worse: last
    for s, o in zip(cands, offset):
        row, was = next(r for r in moved if r.schedule == s), base[str(s)]
        for field in ("predicted", "low", "high"):
            assert getattr(row, field) == pytest.approx(getattr(was, field) + o, rel=1e-12)
    with pytest.raises(hf_lrlaw.FitError, match="one finite number per schedule"):
        hf_lrlaw.rank(fit, cands, offset=[0.0, 0.0])
