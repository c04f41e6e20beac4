"""Branched cooldowns: a trial resumes from a real checkpoint of another trial that ran the same
LRs so far, runs its own schedule from there, and pays only for the rest; the searcher plans
the checkpoints, branches candidates from them and counts compute honestly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from transformers import TrainingArguments

from hf_lrlaw import Schedule
from hf_lrlaw.optimum import family, family_leaders
from hf_lrlaw.testing import byte_datasets, tiny_gpt2
from tune_search.branching import (
    BRANCH_KEY,
    CHECKPOINTS_KEY,
    SAVE_KEY,
    decode_checkpoints,
    encode_checkpoints,
    save_steps,
    shared_steps,
)
from tune_search.trainable import ScheduleTrainer

SEQ = 64
ARGS = {
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 16,
    "use_cpu": True,
    "dataloader_num_workers": 0,
    "report_to": "none",
    "disable_tqdm": True,
    "logging_steps": 1,
    "save_strategy": "no",
    "seed": 0,
}


def test_shared_steps_is_where_the_lrs_part():
    const = Schedule.constant(1e-3, 100, warmup_steps=10)
    wsd = Schedule.wsd(1e-3, 100, warmup_steps=10, decay_fraction=0.3)
    longer = Schedule.wsd(1e-3, 200, warmup_steps=10, decay_fraction=0.5)
    assert shared_steps(const, wsd) == 71  # the decay's first step is still at the peak
    assert np.all(const.lrs()[:71] == wsd.lrs()[:71]) and const.lrs()[71] != wsd.lrs()[71]
    assert shared_steps(const, longer) == 100  # all of the shorter run
    assert shared_steps(const, Schedule.constant(2e-3, 100, warmup_steps=10)) == 0
    assert shared_steps(const, Schedule.cosine(1e-3, 100, warmup_steps=10)) <= 11


def test_save_steps_are_the_branch_points_thinned_to_the_limit():
    const = Schedule.constant(1e-3, 1000, warmup_steps=10)
    wsds = [
        Schedule.wsd(1e-3, 1000, warmup_steps=10, decay_fraction=f) for f in np.arange(1, 20) / 20
    ]
    points = save_steps(const, wsds, limit=100)
    # every point where a cooldown starts, but the one that would save only 5% of a run
    assert points == sorted({shared_steps(const, w) for w in wsds} - {51})
    assert len(points) == 18
    thin = save_steps(const, wsds, limit=5)
    assert len(thin) == 5 and thin[-1] == points[-1] and set(thin) <= set(points)
    # a pilot that stops at step 500 can only save up to there; a cosine shares only the warmup
    assert max(save_steps(const, wsds, runs_to=500)) == 500
    assert save_steps(const, [Schedule.cosine(1e-3, 1000, warmup_steps=10)]) == []


def test_checkpoint_reports_round_trip_and_bad_values_are_no_checkpoints():
    saved = [(20, "/x/checkpoint-20"), (40, "/x/checkpoint-40")]
    assert decode_checkpoints(encode_checkpoints(saved)) == saved
    for bad in ("not json", "[[0, 'x']]", 5, None, "[[1]]"):
        assert decode_checkpoints(bad) == []


def _train(tmp_path, name, schedule, save=(), resume=None):
    train, val = byte_datasets(seq_len=SEQ, eval_chunks=8)
    args = TrainingArguments(output_dir=str(tmp_path / name), **ARGS)
    trainer = ScheduleTrainer(model=tiny_gpt2(seq_len=SEQ), args=args, train_dataset=train)
    trainer.set_schedule(schedule, save_steps=save, resumed=resume is not None)
    result = trainer.train(resume_from_checkpoint=resume)
    logs = [e for e in trainer.state.log_history if "loss" in e and "learning_rate" in e]
    # a resumed state carries the parent's log history up to the checkpoint: keep this run's
    start = 0 if resume is None else int(str(resume).rsplit("-", 1)[1])
    assert result.global_step == schedule.total_steps
    return {e["step"]: (e["loss"], e["learning_rate"]) for e in logs if e["step"] > start}


def test_a_branch_resumes_a_real_checkpoint_and_runs_its_own_schedule(tmp_path):
    # a schedule transformers has no scheduler for: the checkpoint holds its LR table
    parent = Schedule.multistep(5e-3, 24, warmup_steps=4, milestones=[0.75], factor=0.3)
    same = _train(tmp_path, "parent", parent, save=[12])
    ckpt = tmp_path / "parent" / "checkpoint-12"
    assert (ckpt / "optimizer.pt").is_file()
    # The same schedule from the checkpoint: the very losses the parent logged after update 12
    # (model, optimizer, data position and RNG restored), and only those steps are run.
    again = _train(tmp_path, "again", parent, resume=str(ckpt))
    assert sorted(again) == list(range(13, 25))
    for g in again:
        assert again[g][0] == pytest.approx(same[g][0], rel=1e-5, abs=1e-6)
    # A cooldown branched there starts from the parent's state (its first loss, measured before
    # its first update, is the parent's) and runs its own LRs, not the parent's table that the
    # checkpointed scheduler holds.
    child = Schedule.wsd(5e-3, 24, warmup_steps=4, decay_fraction=0.5)
    assert shared_steps(parent, child) >= 12
    branch = _train(tmp_path, "child", child, resume=str(ckpt))
    assert sorted(branch) == list(range(13, 25))
    np.testing.assert_allclose(
        [branch[g][1] for g in sorted(branch)], child.lrs()[12:24], rtol=1e-6, atol=1e-12
    )
    assert branch[13][0] == pytest.approx(same[13][0], rel=1e-5)
    assert not np.allclose([branch[g][0] for g in (23, 24)], [same[g][0] for g in (23, 24)])


def test_a_planned_save_survives_save_strategy_best(tmp_path):
    """save_strategy="best" saves only at a new best eval (here never after the first: the
    "best" is the highest loss); the branch checkpoint planned at step 12 is saved anyway."""
    train, val = byte_datasets(seq_len=SEQ, eval_chunks=8)
    best = {
        "save_strategy": "best",
        "metric_for_best_model": "eval_loss",
        "greater_is_better": True,
    }
    args = TrainingArguments(output_dir=str(tmp_path / "run"), eval_strategy="steps", eval_steps=1,
                             **{**ARGS, **best})  # fmt: skip
    trainer = ScheduleTrainer(
        model=tiny_gpt2(seq_len=SEQ), args=args, train_dataset=train, eval_dataset=val
    )
    trainer.set_schedule(Schedule.constant(5e-3, 16, warmup_steps=2), save_steps=[12])
    trainer.train()
    losses = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    assert losses[11] < losses[0]  # step 12's eval is no new best
    assert (tmp_path / "run" / "checkpoint-12" / "optimizer.pt").is_file()


# -- the searcher: checkpoints planned, candidates branched, compute counted ----------------


def _wsd_world():
    from tune_search.simulate import SimulatedWorld

    world = SimulatedWorld(seed=3)
    p, t, w = world.peak_lr, world.total_steps, world.warmup_steps
    space = [Schedule.wsd(p, t, warmup_steps=w, decay_fraction=f) for f in (0.1, 0.2, 0.3, 0.5)]
    space += [Schedule.cosine(p, t, warmup_steps=w)]
    pilot = Schedule.constant(p, t, warmup_steps=w)
    return world, space, pilot


def _searcher(world, space, pilot, **kw):
    from tune_search import LRLawSearcher

    return LRLawSearcher(
        space,
        metric="loss",
        pilots=[pilot],
        pilot_steps=None,
        law_options=world.fit_options("momentum"),
        **kw,
    )


def test_candidates_branch_from_the_pilots_checkpoints_and_pay_only_their_decay():
    from tune_search.testing import drive

    world, space, pilot = _wsd_world()
    first = _searcher(world, space, pilot, top_k=3).suggest("p0")
    assert first[SAVE_KEY] == save_steps(pilot, space)  # where each WSD's decay begins
    searcher = _searcher(world, space, pilot, top_k=3)
    result = drive(world, searcher, None)
    recs = searcher.book.records
    branched = [r for r in recs.values() if r.branch is not None]
    assert branched, searcher.log
    for rec in branched:
        parent, k = rec.branch
        child = Schedule.parse(rec.schedule)
        assert k <= shared_steps(Schedule.parse(recs[parent].schedule), child)
        assert k in recs[parent].checkpoints
        assert min(rec.steps) >= k  # it reported only the steps after its parent's checkpoint
        assert rec.compute == child.total_steps - k and rec.status == "finished"
    assert result.compute == searcher.compute_steps == sum(r.compute for r in recs.values())
    assert result.compute < sum(Schedule.parse(r.schedule).total_steps for r in recs.values())
    # without branching every run pays in full
    assert SAVE_KEY not in _searcher(world, space, pilot, branch=False).suggest("p0")
    plain = _searcher(world, space, pilot, top_k=3, branch=False)
    whole = drive(world, plain, None)
    assert all(r.branch is None for r in plain.book.records.values())
    assert whole.compute == sum(r.total_steps for r in plain.book.records.values())


def test_a_trainable_that_cannot_resume_is_counted_in_full():
    from tune_search.testing import drive

    world, space, pilot = _wsd_world()

    class WholeRunsOnly:  # a world without trial_curve: trials ignore the branch keys
        total_steps = world.total_steps

        def curve(self, schedule, trial_seed=0):
            return world.curve(schedule, trial_seed)

        def true_final(self, schedules):
            return world.true_final(schedules)

    searcher = _searcher(world, space, pilot, top_k=2)
    searcher.suggest("p0")
    searcher.on_trial_result(
        "p0", {"step": 0, "loss": 9.0, CHECKPOINTS_KEY: encode_checkpoints([(90, "/nowhere")])}
    )
    assert searcher.book.records["p0"].checkpoints == {90: "/nowhere"}
    searcher = _searcher(world, space, pilot, top_k=2)
    result = drive(WholeRunsOnly(), searcher, None)
    assert result.compute == sum(r.total_steps for r in searcher.book.records.values())


def test_the_search_stops_on_its_own_before_top_k_and_within_max_compute():
    from tune_search.testing import drive

    world, space, pilot = _wsd_world()
    # top_k is a cap: in a world the law describes, the search ends when no untried candidate
    # can beat the best finished run beyond the law's uncertainty
    free = _searcher(world, space, pilot, top_k=5, max_trials=20)
    drive(world, free, None)
    runs = [r for r in free.book.records.values() if r.role == "candidate"]
    assert len(runs) < 5 and free.finished_reason.startswith("no remaining candidate")
    # max_compute caps what is committed (running trials' remaining steps included)
    capped = _searcher(world, space, pilot, top_k=5, max_trials=20, max_compute=1.3)
    result = drive(world, capped, None, concurrency=2)
    assert result.compute <= 1.3 * world.total_steps
    assert capped.finished_reason.startswith("max_compute=1.3")
    with pytest.raises(ValueError, match="max_compute must be > 0"):
        _searcher(world, space, pilot, max_compute=0)


def _tiny_branch_search():
    """Data, horizon, a constant pilot and two cooldowns that can branch from it, at 30 steps."""
    train, val = byte_datasets(seq_len=SEQ, eval_chunks=8)
    peak, total, warm = 3e-3, 30, 3
    pilot = Schedule.constant(peak, total, warmup_steps=warm)
    space = [Schedule.wsd(peak, total, warmup_steps=warm, decay_fraction=f) for f in (0.2, 0.4)]
    return train, val, total, pilot, space


def _assert_branched_runs_continue_their_parents(recs, total, removed):
    """Each branched record resumed from its parent's checkpoint-k (gone once the search is
    over when ``removed``), its evals continue the parent's on the same cadence (every 3
    steps), and it paid only for the steps after k; returns those records."""
    kids = [r for r in recs.values() if r.branch is not None]
    assert kids
    for rec in kids:
        parent, k = rec.branch
        where = recs[parent].checkpoints[k]
        assert where.endswith(f"checkpoint-{k}") and os.path.exists(where) != removed
        assert os.path.isdir(os.path.dirname(where))
        assert rec.steps[0] == 3 * (k // 3 + 1) - 1 and rec.steps[-1] == total - 1
        assert rec.compute == total - k
    return kids


@pytest.mark.usefixtures("local_ray", "one_torch_thread")
def test_a_search_branches_real_trainer_runs_through_tune(tmp_path):
    from tune_search import search_schedules

    train, val, total, pilot, space = _tiny_branch_search()
    result = search_schedules(
        model_init=lambda: tiny_gpt2(seq_len=SEQ),
        train_dataset=train,
        eval_dataset=val,
        training_args={**ARGS, "eval_steps": 3, "logging_steps": 3},
        space=space,
        pilots=[pilot],
        pilot_steps=None,
        top_k=2,
        law_options={"lam": 0.5},
        fit_kwargs={"prior": None},
        stopper=False,
        max_concurrent_trials=1,
        output_dir=tmp_path / "search",
        lrlaw_callback=False,
    )
    recs = result.searcher.book.records
    # the search is over: its branch checkpoints are gone (keep_checkpoints=False), both the
    # trials' own and the copies Tune synced to the experiment folder
    _assert_branched_runs_continue_their_parents(recs, total, removed=True)
    assert list(Path(result.experiment_path).rglob("checkpoint-*")) == []
    assert list(Path(result.experiment_path).rglob("*.safetensors")) == []
    trials = json.loads((tmp_path / "search" / "trials.json").read_text())
    assert sum(t["compute"] for t in trials) == result.searcher.compute_steps
    # trial folders are named for the trial and its schedule, not for the whole config
    folders = {p.name for p in Path(result.experiment_path).iterdir() if p.is_dir()}
    for rec in recs.values():
        (name,) = [f for f in folders if f.startswith(rec.trial_id + "_")]
        kind = Schedule.parse(rec.schedule).kind
        assert name.startswith(f"{rec.trial_id}_{kind}_lr=0.003") and "checkpoint" not in name
        assert name.endswith("_branch") == (rec.branch is not None) and len(name) < 90


@pytest.mark.usefixtures("local_ray", "one_torch_thread")
def test_hyperparameter_search_branches_from_the_checkpoints_it_reports(tmp_path):
    from tune_search import LRLawSearcher

    train, val, total, pilot, space = _tiny_branch_search()
    searcher = LRLawSearcher(
        space,
        metric="eval_loss",
        pilots=[pilot],
        pilot_steps=None,
        top_k=2,
        law_options={"lam": 0.5},
        fit_kwargs={"prior": None},
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "hp"),
        eval_strategy="steps",
        eval_steps=3,
        max_steps=total,
        **{**ARGS, "logging_steps": 3},
    )
    trainer = ScheduleTrainer(
        model_init=lambda: tiny_gpt2(seq_len=SEQ), args=args, train_dataset=train, eval_dataset=val
    )
    trainer.hyperparameter_search(
        backend="ray",
        hp_space=lambda _: {},
        n_trials=4,
        direction="minimize",
        search_alg=searcher,
        storage_path=str(tmp_path / "results"),
        name="hps",
        resources_per_trial={"cpu": 1},
        max_concurrent_trials=1,
        verbose=0,
    )
    recs = searcher.book.records
    pilot_rec = next(r for r in recs.values() if r.role == "pilot")
    assert sorted(pilot_rec.checkpoints) == sorted(pilot_rec.planned) and pilot_rec.planned
    kids = _assert_branched_runs_continue_their_parents(recs, total, removed=False)
    assert searcher.compute_steps == total + sum(total - r.branch[1] for r in kids)

    # once it is over, the checkpoints saved for branches can go; one the user saved stays
    planned = [pilot_rec.checkpoints[k] for k in pilot_rec.planned]
    user = os.path.join(os.path.dirname(planned[0]), "checkpoint-7")
    os.makedirs(user)
    pilot_rec.checkpoints[7] = user
    assert sorted(searcher.remove_checkpoints()) == sorted(planned)
    assert not any(os.path.exists(w) for w in planned) and os.path.isdir(user)


@pytest.mark.usefixtures("local_ray", "one_torch_thread")
@pytest.mark.parametrize(
    ("save", "tune_checkpoints"), [({}, 0), ({"save_strategy": "steps", "save_steps": 5}, 6)]
)
def test_a_branch_save_at_an_eval_is_not_also_a_tune_checkpoint(tmp_path, save, tune_checkpoints):
    """transformers turns every save at an eval into a Tune checkpoint (model and optimizer
    again, in Tune's storage); a save only the search planned stays the branch checkpoint, the
    saves the Trainer was asked for (every 5 steps, one of them also a branch point: 25) are
    Tune checkpoints as before."""
    from tune_search import LRLawSearcher

    train, val, total, pilot, space = _tiny_branch_search()
    searcher = LRLawSearcher(space, metric="eval_loss", pilots=[pilot], pilot_steps=None,
                             top_k=1, fit_kwargs={"prior": None})  # fmt: skip
    args = TrainingArguments(
        output_dir=str(tmp_path / "hp"),
        eval_strategy="steps",
        eval_steps=1,  # every planned save falls on an eval
        max_steps=total,
        **{**ARGS, **save},
    )
    trainer = ScheduleTrainer(
        model_init=lambda: tiny_gpt2(seq_len=SEQ), args=args, train_dataset=train, eval_dataset=val
    )
    trainer.hyperparameter_search(backend="ray", hp_space=lambda _: {}, n_trials=1,
                                  direction="minimize", search_alg=searcher,
                                  storage_path=str(tmp_path / "results"), name="hps",
                                  resources_per_trial={"cpu": 1}, verbose=0)  # fmt: skip
    (pilot_rec,) = searcher.book.records.values()
    assert pilot_rec.planned and set(pilot_rec.planned) <= set(pilot_rec.checkpoints)
    assert all(os.path.isdir(w) for w in pilot_rec.checkpoints.values())
    assert len(list((tmp_path / "results").rglob("checkpoint_0*"))) == tune_checkpoints


def test_a_pilot_waits_for_the_checkpoint_it_branches_from_and_a_repeat_measures_noise(tmp_path):
    from tune_search import LRLawSearcher
    from tune_search.report import write_report
    from tune_search.testing import drive

    world, space, pilot = _wsd_world()
    p, t, w = world.peak_lr, world.total_steps, world.warmup_steps
    cooldown = Schedule.wsd(p, t, warmup_steps=w, decay_fraction=0.2)

    def searcher_with_a_repeat_and_a_branched_pilot():
        return LRLawSearcher(
            space,
            metric="loss",
            pilots=[pilot, (pilot, {"trial_seed": 7}), cooldown],
            pilot_steps=None,
            top_k=1,
            law_options=world.fit_options("momentum"),
        )

    searcher = searcher_with_a_repeat_and_a_branched_pilot()
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert second["trial_seed"] == 7 and second["schedule"] == first["schedule"]
    k = shared_steps(pilot, cooldown)
    assert k in first[SAVE_KEY]
    assert searcher.suggest("c") is None  # the cooldown waits for a's checkpoint at k
    searcher.on_trial_result(
        "a", {"step": k - 1, "loss": 3.5, CHECKPOINTS_KEY: encode_checkpoints([(k, "ck")])}
    )
    third = searcher.suggest("c")
    assert third[BRANCH_KEY] == {"trial_id": "a", "step": k, "checkpoint": "ck"}

    searcher = searcher_with_a_repeat_and_a_branched_pilot()
    drive(world, searcher, None, concurrency=2)
    recs = list(searcher.book.records.values())
    assert [r.role for r in recs[:3]] == ["pilot"] * 3 and recs[2].branch[1] == k
    write_report(searcher, tmp_path, figure=False)
    report = (tmp_path / "report.md").read_text()
    assert "Run-to-run noise: `constant(" in report and "finished 2 times" in report
    (verdict,) = [line for line in report.splitlines() if line.startswith("The recommendation ")]
    # the best of each family: one row per kind and shape, each its family's best-ranked
    ranking = searcher.ranking()
    leaders = family_leaders(ranking)
    assert sorted(family(r.schedule) for r in leaders) == ["cosine", "wsd linear"]
    assert [r.rank for r in leaders] == sorted(r.rank for r in leaders)
    for r in leaders:
        assert r is next(x for x in ranking if family(x.schedule) == family(r.schedule))
    assert "Best of each family" in report and f"| {leaders[-1].rank} | `" in report
    assert "full-length pilot" in verdict or "is a pilot" in verdict
    with pytest.raises(ValueError, match=r"pilots\[1\] must be a schedule or \(schedule"):
        LRLawSearcher(space, pilots=[pilot, (pilot, 1)])


def test_the_report_calls_a_win_over_the_pilot_only_beyond_the_noise_by_both_measures():
    from tune_search.report import pilot_verdict

    def verdict(gain, raw, spread=0.0014):
        return pilot_verdict("`wsd`, 1.8346", gain, raw, 1.8346, spread)

    # the demo's run of 2026-12-03: ahead by the noise-averaged losses, behind by the last ones
    assert verdict(0.0020, -0.0019).startswith("The recommendation is level with")
    assert verdict(0.0010, 0.0012).startswith("The recommendation is level with")
    won = verdict(0.0030, 0.0025)
    assert won.startswith("The recommendation beats") and "2.1x the run-to-run spread" in won
    assert verdict(-0.0030, -0.0020).startswith("The recommendation finished behind")
    assert "no repeated run" in verdict(0.001, 0.001, None) and "beats" in verdict(
        0.001, 0.001, None
    )
    assert "level with" in verdict(0.001, -0.001, None)
