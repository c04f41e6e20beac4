"""The replay world: schedule search on the bundled real curves, through a real Tuner."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from ray import tune

from hf_lrlaw import datasets
from tune_search import LRLawSearcher, LRLawStopper
from tune_search.records import TrialRecord
from tune_search.replay import ReplayError, ReplayWorld, schedule_of_run
from tune_search.testing import drive


def test_replay_schedules_follow_the_runs():
    mapped = 0
    for name in ("lr-scheduling", "multipowerlaw"):
        for c in datasets.load(name):
            s = schedule_of_run(c)
            if s is None:
                assert "twostage" in c.meta["schedule"] or "wsdcon" in c.meta["schedule"]
                continue
            mapped += 1
            ours, theirs = s.lrs(), c.lrs[: s.total_steps]
            assert len(theirs) == s.total_steps
            gap = np.abs(ours - theirs)[s.warmup_steps :] / s.peak_lr
            assert gap.max() < 0.03, (c.name, str(s), gap.max())
            assert gap.mean() < 1e-3, (c.name, str(s), gap.mean())
    assert mapped >= 240


def test_the_124m_cell_holds_its_runs_and_their_truth():
    world = ReplayWorld.lr_scheduling("124M", 50000)
    runs = collections.defaultdict(list)
    for c in datasets.load("lr-scheduling", model="124M", dataset="slimpajama", total_steps=50000):
        if c.meta["peak_lr"] < 4e-3:  # the diverged 5e-3 run is no candidate by default
            runs[(c.meta["schedule"], c.meta["peak_lr"])].append(float(c.losses[-1]))
    assert len(world.candidates()) == len(runs)
    finals = sorted(np.mean(v) for v in runs.values())
    assert world.best()[1] == pytest.approx(finals[0])
    assert sorted(world.true_final(world.candidates())) == pytest.approx(finals)
    # replicates: different trial seeds replay different runs of one schedule
    doubled = ("constant", 1e-3)
    assert len(runs[doubled]) == 2
    text = next(str(s) for s in world.candidates() if s.peak_lr == 1e-3 and s.kind == "constant")
    finals_seen = sorted(float(world.curve(text, seed)[1][-1]) for seed in (0, 1))
    assert finals_seen == pytest.approx(sorted(runs[doubled]))
    # pilots are runs the data hold, at several peak LRs, cheaper than a full run each
    pilots = world.pilots()
    assert len({p.peak_lr for p in pilots}) == 3
    assert all(world.replayable(p) and p.total_steps < 50000 for p in pilots)
    assert ReplayWorld.lr_scheduling("124M", 50000, include_diverged=True).peak_lrs[-1] == 5e-3


def test_unknown_schedules_and_cells_are_refused_by_name():
    world = ReplayWorld.multipowerlaw("100M")
    with pytest.raises(ReplayError, match="no bundled run followed the schedule cosine"):
        world.curve("cosine(peak_lr=0.001, total_steps=24000)")
    with pytest.raises(ReplayError, match="STEPS must be a number"):
        ReplayWorld.from_text("lr-scheduling:124M:many")
    with pytest.raises(ReplayError, match="the runs have 15000, 25000"):
        ReplayWorld.from_text("lr-scheduling:124M:12345")
    with pytest.raises(ReplayError, match="models: 25M, 100M, 400M"):
        ReplayWorld.from_text("multipowerlaw:7M")


def test_a_run_whose_last_eval_falls_short_of_the_end_is_finished():
    rec = TrialRecord("t", "constant(peak_lr=0.001, total_steps=1000)", "candidate")
    for step in range(199, 800, 200):  # evals every 200 updates, the last (at 1000) missing
        rec.add_point(step, 3.0 - step / 1e4, 1)
    assert rec.final_loss == pytest.approx(3.0 - 799 / 1e4)
    early = TrialRecord("u", "constant(peak_lr=0.001, total_steps=1000)", "candidate")
    for step in range(199, 600, 200):  # stopped after update 600: an eval at 800 was due
        early.add_point(step, 3.0, 1)
    assert early.final_loss is None


def test_search_in_process_reaches_the_band_on_a_small_cell():
    world = ReplayWorld.multipowerlaw("25M")
    searcher = LRLawSearcher(world.space(), metric="loss", pilots=world.pilots(), top_k=2)
    result = drive(world, searcher, LRLawStopper(searcher=searcher))
    assert result.finished_by == "searcher"
    rec = searcher.recommendation()
    assert rec["source"] == "finished run"
    assert world.regret(rec["text"]) <= 0.002
    # the reported curves are the data's own points
    pilot = world.pilots()[0]
    steps, losses = world.curve(pilot)
    book = next(r for r in searcher.book.records.values() if r.schedule == str(pilot))
    n = len(book.steps)
    assert n >= 10
    assert book.steps == steps[:n].tolist() and book.losses == pytest.approx(losses[:n].tolist())


@pytest.mark.slow
def test_replay_world_through_a_real_tuner(local_ray, tmp_path):
    world = ReplayWorld.multipowerlaw("100M")
    # a pilot no bundled run followed: its trial errors with the schedule named, the search
    # goes on with the others
    bogus = "cosine(peak_lr=0.001, total_steps=24000, warmup_steps=2160)"
    searcher = LRLawSearcher(world.space(), metric="loss", pilots=[bogus, *world.pilots()], top_k=2)
    tuner = tune.Tuner(
        world.trainable(metric="loss"),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=LRLawStopper(searcher=searcher),
            num_samples=-1,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(name="replay", storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert len(results.errors) == 1
    assert "no bundled run followed the schedule cosine(peak_lr=0.001" in str(results.errors[0])
    rec = searcher.recommendation()
    assert rec["source"] == "finished run"
    assert world.regret(rec["text"]) <= 0.003
    finished = [t for t in searcher.trials() if t["status"] == "finished"]
    assert finished and all(world.replayable(t["schedule"]) for t in finished)
    # each finished run reported the real curve of its run, to its last eval
    for t in finished:
        steps, losses = world.curve(t["schedule"])
        record = searcher.book.records[t["trial_id"]]
        assert record.steps[-1] == steps[-1] and record.final_loss == pytest.approx(losses[-1])
    assert searcher.compute_steps <= 3 * world.total_steps


@pytest.mark.slow
def test_lrlaw_search_replay_from_the_command_line(local_ray, tmp_path, capsys):
    from tune_search.cli import main

    code = main(
        ["search", "--replay", "multipowerlaw:25M", "--top-k", "1", "--output-dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "replay multipowerlaw 25M 24k: the recommendation is" in out
    assert "nats above the cell's best run" in out and "the grid 4" in out
    assert (tmp_path / "recommended.json").is_file()
    assert main(["search", "--replay", "multipowerlaw:7M"]) == 2
    assert "models: 25M, 100M, 400M" in capsys.readouterr().err
