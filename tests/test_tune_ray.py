"""LRLawSearcher / LRLawStopper as Ray Tune citizens: real Tuner runs on a local Ray (2 CPUs)
against the simulated world, resuming an interrupted search, bad trials, the high-level entry."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import ray
from ray import tune

from hf_lrlaw import Schedule
from tune_search import LRLawSearcher, LRLawStopper, ScheduleSpace
from tune_search.simulate import SimulatedWorld

pytestmark = pytest.mark.slow


def _run_config(tmp_path: Path, name: str, **kw) -> tune.RunConfig:
    return tune.RunConfig(name=name, storage_path=str(tmp_path / "results"), verbose=0, **kw)


def test_simulated_search_through_tuner(local_ray, tmp_path):
    world = SimulatedWorld(law="momentum", seed=1)
    space = ScheduleSpace(world.peak_lr, world.total_steps, world.warmup_steps)
    cands = space.candidates()
    assert len(cands) >= 500
    truth = world.true_final(cands)
    # no metric here: it comes from TuneConfig through set_search_properties (param_space is
    # non-empty, which is when Tune passes it on)
    searcher = LRLawSearcher(
        space, top_k=3, pilot_steps=0.5, law_options=world.fit_options("momentum")
    )
    tuner = tune.Tuner(
        world.trainable(metric="loss"),
        param_space={"trial_seed": 7},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            search_alg=searcher,
            scheduler=LRLawStopper(searcher=searcher),
            num_samples=-1,
            max_concurrent_trials=2,
        ),
        run_config=_run_config(tmp_path, "sim"),
    )
    results = tuner.fit()
    assert not results.errors
    assert searcher.metric == "loss" and searcher.finished_reason
    configs = [r.config for r in results]
    assert all("schedule" in c and c["trial_seed"] == 7 for c in configs)  # merged config
    full = [t for t in searcher.trials() if t["status"] == "finished"]
    assert 1 <= len(full) <= 6
    assert searcher.compute_steps <= 6 * world.total_steps
    rec = searcher.recommendation()
    gap = world.true_final(rec["text"])[0] / truth.min() - 1
    assert gap <= 0.002, (rec["text"], gap)


def test_stopper_cuts_losers_in_a_grid(local_ray, tmp_path):
    world = SimulatedWorld(law="momentum", seed=2)
    p, t, w = world.peak_lr, world.total_steps, world.warmup_steps
    grid = [
        Schedule.wsd(p, t, warmup_steps=w, decay_fraction=0.2, decay_shape="1-sqrt"),
        Schedule.wsd(p, t, warmup_steps=w, decay_fraction=0.15, decay_shape="linear"),
        Schedule.constant(p, t, warmup_steps=w),
        Schedule.cosine(p, t, warmup_steps=w, final_ratio=0.5),
        Schedule.linear(p, t, warmup_steps=w, final_ratio=0.5),
        Schedule.multistep(p, t, warmup_steps=w, milestones=[0.5], factor=0.5),
    ]
    texts = [str(s) for s in grid]
    stopper = LRLawStopper(law_options=world.fit_options("momentum"))
    tuner = tune.Tuner(
        world.trainable(metric="loss"),
        param_space={"schedule": tune.grid_search(texts)},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", scheduler=stopper, max_concurrent_trials=2
        ),
        run_config=_run_config(tmp_path, "grid"),
    )
    results = tuner.fit()
    steps = {r.config["schedule"]: r.metrics["step"] + 1 for r in results}
    truth = dict(zip(texts, world.true_final(texts)))
    best = min(texts, key=truth.get)
    assert steps[best] == t  # the winner runs to the end
    assert sum(steps.values()) < 0.8 * len(texts) * t  # losers were cut
    stopped = [d for d in stopper.decisions if d["decision"] == "STOP"]
    assert stopped and all(truth[d["schedule"]] > truth[best] for d in stopped)


def test_interrupted_search_resumes_without_repeating_finished_trials(
    local_ray, tmp_path, monkeypatch
):
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")  # snapshot after every step
    world = SimulatedWorld(law="momentum", seed=3)
    space = ScheduleSpace(
        world.peak_lr,
        world.total_steps,
        world.warmup_steps,
        kinds={
            "constant": {},
            "cosine": {"final_ratio": [0.0, 0.1]},
            "wsd": {
                "decay_fraction": [0.1, 0.2, 0.3],
                "decay_shape": ["linear", "1-sqrt"],
                "final_ratio": [0.0, 0.1],
            },
            "multistep": {"milestones": [[0.8, 0.9]], "factor": [0.1]},
        },
    )
    log = tmp_path / "starts.tsv"
    marker = tmp_path / "interrupted"
    experiment = tmp_path / "results" / "resume"
    simulated = world.trainable(metric="loss", sleep=0.002, start_log=str(log))

    def trainable(config):
        # Full runs wait until the driver has been interrupted once: the search cannot end
        # before the interruption (it did when the law chose to stop after one full run).
        while "lrlaw_stop_step" not in config and not marker.exists():
            time.sleep(0.02)
        simulated(config)

    def persisted() -> set[str]:
        """Trials that the experiment state on the storage path has TERMINATED and that the
        searcher state saved beside it knows as completed: what Tuner.restore will read."""
        try:
            state = json.loads(next(experiment.glob("experiment_state-*.json")).read_text())
            saved = json.loads(next(experiment.glob("searcher-state-*.pkl")).read_text())
        except (StopIteration, OSError, ValueError):  # not written yet, or mid-copy
            return set()
        trials = [json.loads(t[0]) for t in state["trial_data"]]
        done = {t["trial_id"] for t in trials if t["status"] == "TERMINATED"}
        return done & {r["trial_id"] for r in saved["book"]["records"] if r["completed"]}

    class Interrupt(tune.Callback):
        """Fails the driver once both pilots have terminated and their termination has reached
        the storage path (the experiment state and the searcher state: a snapshot's sync is
        asynchronous and may lag a few steps behind); the restored run goes on."""

        def __init__(self) -> None:
            self.terminated: set[str] | None = None

        def on_step_begin(self, iteration, trials, **info):
            if marker.exists():
                return
            pilots = {t.trial_id for t in trials if "lrlaw_stop_step" in t.config}
            if len(pilots) == 2 and pilots <= persisted():
                self.terminated = pilots
                marker.touch()
                raise RuntimeError("simulated interruption of the driver")

    def make() -> LRLawSearcher:
        return LRLawSearcher(
            space, metric="loss", top_k=3, law_options=world.fit_options("momentum")
        )

    searcher = make()
    interrupt = Interrupt()
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, max_concurrent_trials=2),
        run_config=_run_config(tmp_path, "resume", callbacks=[interrupt]),
    )
    with pytest.raises(Exception, match="simulated interruption"):
        tuner.fit()
    done_before = interrupt.terminated
    assert done_before is not None and len(done_before) >= 2
    assert done_before <= {t["trial_id"] for t in searcher.trials() if t["status"] != "running"}
    # a sync still in flight when the driver failed may be rewriting the files: wait until
    # they hold the terminations again (the file's content, not a time)
    deadline = time.monotonic() + 120
    while not done_before <= persisted():
        assert time.monotonic() < deadline, "the experiment state never reached the storage path"
        time.sleep(0.05)
    path = str(experiment)
    assert tune.Tuner.can_restore(path)
    results = tune.Tuner.restore(path, trainable=trainable).fit()
    assert not results.errors

    starts = [line.split("\t") for line in log.read_text().splitlines()]
    started = [tid for tid, _ in starts]
    repeated = {tid for tid in started if started.count(tid) > 1}
    assert not (repeated & done_before)  # finished trials did not run again
    schedules = [s for _, s in starts]
    assert len(set(schedules)) == len(set(started))  # and no schedule under a new trial id

    resumed = make()
    resumed.restore_from_dir(path)
    assert resumed.finished_reason
    assert done_before <= {t["trial_id"] for t in resumed.trials()}
    assert resumed.recommendation()["source"] == "finished run"


def test_bad_trials_do_not_stop_the_search(local_ray, tmp_path):
    world = SimulatedWorld(law="momentum", seed=4)
    p, t, w = world.peak_lr, world.total_steps, world.warmup_steps
    longer = Schedule.cosine(p, 2 * t, warmup_steps=w)  # the trials can only run t steps
    space = ScheduleSpace(
        p,
        t,
        w,
        kinds={
            "constant": {},
            "cosine": {"final_ratio": [0.0, 0.1]},
            "wsd": {"decay_fraction": [0.1, 0.2], "decay_shape": ["linear", "1-sqrt"]},
            "multistep": {"milestones": [[0.8, 0.9]], "factor": [0.1, 0.3]},
        },
        extra=[longer],
    )
    trainable = world.trainable(
        metric="loss", fail_schedules=["constant"], nan_schedules=["multistep"], max_steps=t
    )
    searcher = LRLawSearcher(
        space,
        metric="loss",
        top_k=2,
        law_options=world.fit_options("momentum"),
        pilots=[
            Schedule.constant(p, t, warmup_steps=w),
            Schedule.cosine(p, t, warmup_steps=w),
            longer,
        ],
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=LRLawStopper(searcher=searcher),
            num_samples=-1,
            max_concurrent_trials=2,
        ),
        run_config=_run_config(tmp_path, "bad"),
    )
    results = tuner.fit()
    assert len(results.errors) >= 2  # the constant pilot and the too-long schedule
    status = {t["schedule"]: t["status"] for t in searcher.trials()}
    assert status[str(Schedule.constant(p, t, warmup_steps=w))] == "error"
    assert status[str(longer)] == "error"
    assert searcher.finished_reason
    rec = searcher.recommendation()
    assert rec["source"] == "finished run" and "multistep" not in rec["text"], searcher.summary()
    assert any("errored" in m for m in searcher.messages)


def test_reports_missing_metric_or_step_are_skipped(local_ray, tmp_path, monkeypatch):
    # Tune's strict metric checking would end the experiment on a report without the metric
    # (with its own clear message); with it off, the searcher skips such reports and goes on.
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    world = SimulatedWorld(law="momentum", seed=5)

    def sloppy(config):
        steps, losses = world.curve(config["schedule"])
        for j, (s, v) in enumerate(zip(steps.tolist(), losses.tolist())):
            if j == 3:
                tune.report({"step": s, "accuracy": 0.5})  # no metric
            elif j == 5:
                tune.report({"loss": v})  # no step
            else:
                tune.report({"step": s, "loss": v})

    p, t, w = world.peak_lr, world.total_steps, world.warmup_steps
    cands = [Schedule.cosine(p, t, warmup_steps=w, final_ratio=f) for f in (0.0, 0.1)] + [
        Schedule.wsd(p, t, warmup_steps=w, decay_fraction=d) for d in (0.1, 0.2)
    ]
    searcher = LRLawSearcher(
        cands, metric="loss", top_k=1, law_options=world.fit_options("momentum")
    )
    tuner = tune.Tuner(
        sloppy,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1),
        run_config=_run_config(tmp_path, "sloppy"),
    )
    results = tuner.fit()
    assert not results.errors and searcher.finished_reason
    msgs = "\n".join(searcher.messages)
    assert "has no 'loss'" in msgs and "has no 'step'" in msgs
    assert searcher.recommendation()["source"] == "finished run"


def test_search_schedules_writes_the_report_and_the_cli_runs(local_ray, tmp_path, capsys):
    from tune_search import search_schedules
    from tune_search.cli import main

    world = SimulatedWorld(law="momentum", seed=6)
    space = ScheduleSpace(world.peak_lr, world.total_steps, world.warmup_steps)
    result = search_schedules(
        trainable=world.trainable(metric="loss"),
        space=space,
        metric="loss",
        top_k=2,
        pilot_steps=0.5,
        law_options=world.fit_options("momentum"),
        output_dir=tmp_path / "out",
        max_concurrent_trials=2,
    )
    files = result.files
    for key in ("recommended", "report", "figure", "ranking", "fit", "trials"):
        assert files[key].is_file(), key
    rec = json.loads(files["recommended"].read_text())
    assert Schedule.parse(rec["schedule"]) == result.recommended
    assert Schedule.from_dict(rec["schedule_dict"]) == result.recommended
    assert rec["source"] == "finished run"
    # the transformers form is there either way: the exact scheduler, or why there is none
    try:
        expected = result.recommended.to_hf()[0]
    except ValueError:
        assert rec["hf"]["exact"] is False and rec["hf"]["reason"] and rec["hf"]["use"]
    else:
        assert rec["hf"]["exact"] is True and rec["hf"]["lr_scheduler_type"] == expected
    report = files["report"].read_text()
    assert "## Recommended schedule" in report and rec["schedule"] in report
    assert "report.png" in report
    assert str(tmp_path / "out" / "ray_results") in result.experiment_path
    assert ray.is_initialized()  # it used the running instance and left it alone

    code = main(
        [
            "search",
            "--simulate",
            "25M",
            "--kinds",
            "wsd,cosine,constant",
            "--top-k",
            "1",
            "--pilot-steps",
            "0.5",
            "--max-concurrent",
            "2",
            "--output-dir",
            str(tmp_path / "cli"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "recommended (finished run):" in out and "| rank |" in out
    assert (tmp_path / "cli" / "recommended.json").is_file()
