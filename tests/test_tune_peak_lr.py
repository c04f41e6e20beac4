"""The search over peak LRs: the pilots and law of a space of several peak LRs, a world whose
best LR is interior (the lrnoise law fitted on the 124M grid), and a trial that diverges."""

from __future__ import annotations

import numpy as np
import pytest

from tune_search import LRLawSearcher, LRLawStopper, ScheduleSpace
from tune_search.records import DIVERGED, TrialRecord
from tune_search.simulate import SimulatedWorld
from tune_search.testing import drive

PEAKS = [7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2]
KINDS = {"wsd": {"decay_fraction": [0.1, 0.2, 0.4]}, "cosine": {"final_ratio": [0.0, 0.1]}}


def _space(world: SimulatedWorld, peaks=PEAKS) -> ScheduleSpace:
    return ScheduleSpace(peaks, world.total_steps, world.warmup_steps, KINDS)


def test_a_space_of_several_peak_lrs_gets_lr_pilots_and_the_lrnoise_law():
    world = SimulatedWorld(law="lrnoise")
    space = _space(world)
    pilots = space.pilots()
    assert [p.peak_lr for p in pilots] == [7.5e-4, 3e-3, 1.2e-2]  # lowest, middle, highest
    assert all(p.kind == "wsd" and p.total_steps == world.total_steps // 2 for p in pilots)
    s = LRLawSearcher(space, metric="loss")
    assert s.law == "lrnoise"
    assert s.book.fit_kwargs.get("prior") is None  # no prior ships for lrnoise
    first = s.suggest("p0")
    assert "lrlaw_stop_step" not in first  # a half-horizon pilot runs in full
    one = _space(world, peaks=[3e-3])
    assert [p.kind for p in one.pilots()] == ["constant", "cosine"]
    assert LRLawSearcher(one, metric="loss").law == "momentum"


def test_a_single_peak_law_over_several_peak_lrs_is_warned_about(caplog):
    world = SimulatedWorld(law="lrnoise")
    with caplog.at_level("WARNING", logger="tune_search"):
        LRLawSearcher(_space(world), metric="loss", law="momentum")
    assert "does not model" in caplog.text and "lrnoise" in caplog.text


@pytest.mark.parametrize("seed", [0, 1])
def test_searcher_finds_the_interior_peak_lr(seed):
    world = SimulatedWorld(law="lrnoise", seed=seed)
    space = _space(world)
    cands = space.candidates()
    truth = world.true_final(cands)
    best_lr = cands[int(np.argmin(truth))].peak_lr
    assert PEAKS[0] < best_lr < PEAKS[-1]  # the world's optimum is interior
    searcher = LRLawSearcher(space, metric="loss", top_k=3)
    result = drive(world, searcher, LRLawStopper(searcher=searcher), concurrency=2)
    assert result.finished_by == "searcher"
    assert result.full_runs <= 5.0  # 3 half-length pilots + at most 3 full runs
    rec = searcher.recommendation()
    assert world.true_final(rec["text"])[0] / truth.min() - 1 <= 0.002
    # the law fitted on the pilots alone already ranks an interior LR first
    ranked = [r.schedule.peak_lr for r in searcher.ranking().top(3)]
    assert max(ranked) < PEAKS[-1]


def test_a_diverging_trial_is_stopped_left_out_and_fences_off_its_lr():
    world = SimulatedWorld(law="lrnoise", diverge_lr=1.2e-2)
    space = _space(world)
    searcher = LRLawSearcher(space, metric="loss", top_k=3)
    stopper = LRLawStopper(searcher=searcher)
    result = drive(world, searcher, stopper, concurrency=2)
    assert result.finished_by == "searcher"
    records = list(searcher.book.records.values())
    diverged = [r for r in records if r.status == DIVERGED]
    assert len(diverged) == 1 and "peak_lr=0.012" in diverged[0].schedule
    rec = diverged[0]
    assert rec.steps_run < 0.5 * rec.total_steps  # stopped early
    assert any(d["why"].startswith("diverged") for d in stopper.decisions)
    fitted = searcher.book.fit()
    assert fitted is not None and len(fitted.curves) == len(records) - 1  # left out, not broken
    assert all(c["name"] != f"pilot:{rec.trial_id}" for c in fitted.curves)
    later = records[records.index(rec) + 1 :]
    assert later and all("peak_lr=0.012" not in r.schedule for r in later)
    assert all(r.schedule.peak_lr < 1.2e-2 for r in searcher.ranking())
    assert "peak_lr=0.012" not in searcher.recommendation()["text"]
    assert any("diverged" in m for m in searcher.messages)


def test_divergence_needs_a_sustained_rise():
    rec = TrialRecord("t", "constant(peak_lr=0.001, total_steps=1000, warmup_steps=0)")
    for i, loss in enumerate([5.0, 4.5, 4.0, 5.5, 4.0, 3.9]):  # one spike that recovers
        rec.add_point(100 * i, loss, 1)
        assert rec.diverging() is None
    for j, loss in enumerate([4.9, 5.0, 5.1]):
        rec.add_point(700 + 100 * j, loss, 1)
    assert "rose from 3.9" in rec.diverging()
    rec.add_point(1000 - 1, float("nan"), 1)
    assert "nan" in rec.diverging()
