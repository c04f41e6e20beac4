"""LRLawSearcher and LRLawStopper driven in-process against the simulated world (the same calls
Tune makes; no Ray runtime), plus their Searcher/TrialScheduler contracts."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from hf_lrlaw import Schedule, fit
from hf_lrlaw.curves import LossCurve
from tune_search import LRLawSearcher, LRLawStopper, ScheduleSpace
from tune_search.simulate import SimulatedWorld
from tune_search.testing import TrialStub, drive


def _world(law: str = "momentum", seed: int = 0, **kw) -> tuple[SimulatedWorld, ScheduleSpace]:
    world = SimulatedWorld(law=law, seed=seed, **kw)
    return world, ScheduleSpace(world.peak_lr, world.total_steps, world.warmup_steps)


def _searcher(world, space, **kw) -> LRLawSearcher:
    kw.setdefault("law_options", world.fit_options("momentum"))
    return LRLawSearcher(space, metric="loss", **kw)


def _small_space(world: SimulatedWorld) -> list[Schedule]:
    p, t, w = world.peak_lr, world.total_steps, world.warmup_steps
    return [Schedule.cosine(p, t, warmup_steps=w, final_ratio=f) for f in (0.0, 0.1, 0.3)] + [
        Schedule.wsd(p, t, warmup_steps=w, decay_fraction=d) for d in (0.1, 0.2, 0.3)
    ]


def _feed(searcher, world, trial_id, text, upto=None, metric="loss", nan_from=None, start=None):
    steps, losses = world.curve(text)
    last = None
    for j, (s, v) in enumerate(zip(steps.tolist(), losses.tolist())):
        if upto is not None and s > upto:
            break
        if start is not None and s < start:
            continue
        if nan_from is not None and j >= nan_from:
            v = float("nan")
        last = {"step": s, metric: v}
        searcher.on_trial_result(trial_id, last)
    return last


# -- the simulated world: the searcher finds the best with a few full runs --------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recommends_the_true_best_with_few_full_runs(seed):
    world, space = _world("momentum", seed)
    cands = space.candidates()
    assert len(cands) >= 500
    truth = world.true_final(cands)
    best = float(truth.min())
    searcher = _searcher(world, space, top_k=3, pilot_steps=0.5)
    result = drive(world, searcher, LRLawStopper(searcher=searcher), concurrency=2)
    assert result.finished_by == "searcher" and searcher.finished_reason
    assert result.full_runs <= 6.0  # pilots + top runs, in full-run units of compute
    assert sum(t["full"] for t in result.trials) <= 6
    rec = searcher.recommendation()
    assert rec["source"] == "finished run"
    gap = world.true_final(rec["text"])[0] / best - 1
    assert gap <= 0.002, (rec["text"], gap)  # the true best, or within the 0.3% noise of it
    roles = [t["role"] for t in searcher.trials()]
    assert roles[:2] == ["pilot", "pilot"]


def test_misspecified_law_still_lands_near_the_best():
    # the world follows the multi-power law; the searcher fits the momentum law
    world, space = _world("multipower", 0)
    truth = world.true_final(space.candidates())
    searcher = _searcher(world, space, top_k=3, pilot_steps=0.5)
    drive(world, searcher, LRLawStopper(searcher=searcher), concurrency=1)
    gap = world.true_final(searcher.recommendation()["text"])[0] / truth.min() - 1
    assert gap <= 0.005


def test_stopper_cuts_losing_trials_and_keeps_the_winner():
    world, space = _world("momentum", 3)
    texts = [str(s) for s in space.candidates()]
    rng = np.random.default_rng(0)
    order = list(rng.permutation(texts)[:12])
    truth = dict(zip(texts, world.true_final(texts)))

    class Fixed(Searcher):
        def __init__(self):
            super().__init__(metric="loss", mode="min")
            self.queue = list(order)

        def suggest(self, trial_id):
            return {"schedule": self.queue.pop(0)} if self.queue else Searcher.FINISHED

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

    full = drive(world, Fixed(), None)
    stopper = LRLawStopper(metric="loss", law_options=world.fit_options("momentum"))
    cut = drive(world, Fixed(), stopper)
    assert cut.compute < 0.8 * full.compute
    stopped = [t for t in cut.trials if t["stopped"]]
    assert stopped and all(d["why"] for d in stopper.decisions)
    best_text = min(order, key=truth.get)
    assert not any(t["schedule"] == best_text for t in stopped)
    # the stopped ones were losers: each truly worse than the best of the batch
    assert all(truth[t["schedule"]] > truth[best_text] for t in stopped)


# -- the Searcher contract ---------------------------------------------------------------------


def test_suggestions_carry_the_schedule_text_and_pilot_stop():
    world, space = _world()
    searcher = _searcher(
        world, space, pilot_steps=0.5, config_fn=lambda s: {"learning_rate": s.peak_lr}
    )
    first = searcher.suggest("a")
    assert Schedule.parse(first["schedule"]).kind == "constant"
    assert first["lrlaw_stop_step"] == world.total_steps // 2 - 1
    assert first["learning_rate"] == world.peak_lr
    second = searcher.suggest("b")
    assert Schedule.parse(second["schedule"]).kind == "cosine"
    assert searcher.suggest("c") is None  # waits for the pilots before ranking


def test_set_search_properties_like_rays_searchers():
    world, space = _world()
    s = LRLawSearcher(space)
    assert s.metric is None
    with pytest.raises(RuntimeError, match="no metric"):
        s.suggest("x")
    assert s.set_search_properties("eval_loss", "min", {"weight_decay": 0.1})
    assert s.metric == "eval_loss"
    # a different metric is not silently overridden
    assert s.set_search_properties("loss", "min", {"a": 1}) is False
    assert s.metric == "eval_loss"
    # search-space definitions in param_space are not this searcher's: refuse, Tune explains
    from ray import tune

    assert (
        LRLawSearcher(space).set_search_properties("loss", "min", {"lr": tune.uniform(0, 1)})
        is False
    )
    with pytest.raises(ValueError, match="mode must be 'min'"):
        LRLawSearcher(space).set_search_properties("loss", "max", {"a": 1})
    with pytest.raises(ValueError, match="mode must be 'min'"):
        LRLawSearcher(space, metric="loss", mode="max")
    warned = LRLawSearcher(space)
    warned.set_search_properties("loss", "min", {"a": 1}, num_samples=1)
    assert any("num_samples=1" in m for m in warned.messages)


def test_works_under_a_concurrency_limiter():
    world, space = _world("momentum", 4)
    searcher = _searcher(world, space, top_k=2)
    limited = ConcurrencyLimiter(searcher, max_concurrent=1)
    result = drive(world, limited, None, concurrency=4)
    assert result.finished_by == "searcher"
    assert len(result.trials) == 4  # two pilots, two full runs, one at a time
    assert searcher.recommendation()["source"] == "finished run"
    # Each full run carries the law's prediction from before it ran, with its interval.
    for t in searcher.trials():
        if t["role"] == "candidate":
            mean, low, high = t["predicted"]
            assert low <= mean <= high
        else:
            assert t["predicted"] is None


def test_save_and_restore_resume_mid_search(tmp_path):
    world, space = _world("momentum", 5)
    a = _searcher(world, space, top_k=2)
    for tid in ("p1", "p2"):
        cfg = a.suggest(tid)
        last = _feed(a, world, tid, cfg["schedule"])
        a.on_trial_complete(tid, last)
    cfg = a.suggest("c1")
    _feed(a, world, "c1", cfg["schedule"], upto=world.total_steps // 2)
    path = tmp_path / "state.pkl"
    a.save(str(path))
    assert json.loads(path.read_text())["schema"] == "tune_search.searcher/1"

    b = _searcher(world, space, top_k=2)
    b.restore(str(path))
    assert [t["trial_id"] for t in b.trials()] == ["p1", "p2", "c1"]
    # the running trial goes on where it was, and the restored searcher decides exactly as the
    # original would have (the next candidate, or FINISHED for the same reason)
    for s in (a, b):
        last = _feed(s, world, "c1", cfg["schedule"], start=world.total_steps // 2 + 1)
        s.on_trial_complete("c1", last)
    nxt_a, nxt_b = a.suggest("c2"), b.suggest("c2")
    assert nxt_b == nxt_a
    assert b.finished_reason == a.finished_reason
    if nxt_b not in (None, Searcher.FINISHED):  # not a pilot again: an untried candidate
        assert b.trials()[-1]["role"] == "candidate"
        assert nxt_b["schedule"] not in {t["schedule"] for t in b.trials() if t["trial_id"] != "c2"}
    assert [t["trial_id"] for t in b.trials()] == [t["trial_id"] for t in a.trials()]

    other = LRLawSearcher(_small_space(world), metric="loss")
    with pytest.raises(ValueError, match="different candidate list"):
        other.restore(str(path))
    (tmp_path / "bad.pkl").write_text("{}")
    with pytest.raises(ValueError, match="not a saved LRLawSearcher state"):
        b.restore(str(tmp_path / "bad.pkl"))


def test_prior_fit_ranks_before_any_pilot(tmp_path):
    world, space = _world("momentum", 6)
    curves = []
    for s in space.pilots():
        steps, losses = world.curve(s)
        curves.append(LossCurve(s.lrs(), steps, losses, name=s.kind))
    prior = fit(curves, "momentum", law_options=world.fit_options("momentum"))
    path = prior.save(tmp_path / "fit.json")
    searcher = _searcher(world, space, prior_fit=str(path), top_k=1)
    assert searcher.pilots == []
    first = searcher.suggest("a")
    ranking = searcher.ranking()
    assert first["schedule"] == str(ranking.best.schedule)
    result = drive(world, searcher, None)
    assert result.full_runs <= 2.0


def test_a_prior_fit_the_search_could_not_save_is_refused_at_once():
    """The searcher's saved state holds its prior as a saved Fit: a Fit of a law object that a
    saved Fit would not rebuild is refused when the searcher is made, not at Tune's first save."""
    from hf_lrlaw.laws import MomentumLaw

    class Shifted(MomentumLaw):
        name = "shifted-momentum"

    world, space = _world("momentum", 6)
    curves = [LossCurve(s.lrs(), *world.curve(s)) for s in space.pilots()]
    prior = fit(curves, Shifted(**world.fit_options("momentum")))
    with pytest.raises(ValueError, match="prior_fit: .*Shifted"):
        _searcher(world, space, prior_fit=prior, top_k=1)
    _searcher(world, space, prior_fit=fit(curves, "momentum", law_options=prior.law_options))


def test_default_prior_gives_way_once_a_decayed_run_finished():
    """The learned prior fills in for young pilots; once a run that anneals has finished,
    the data alone decide (the prior was learned on other recipes)."""
    world, space = _world("momentum", 3)
    searcher = LRLawSearcher(space, metric="loss", pilot_steps=None)
    const, cos = (searcher.suggest(tid)["schedule"] for tid in ("c", "k"))
    assert (const.split("(")[0], cos.split("(")[0]) == ("constant", "cosine")
    _feed(searcher, world, "c", const, upto=world.total_steps // 4)
    _feed(searcher, world, "k", cos, upto=world.total_steps // 4)
    young = searcher.current_fit()
    assert young is not None and young.prior is not None
    last = _feed(searcher, world, "k", cos, start=world.total_steps // 4 + 1)
    searcher.on_trial_complete("k", last)
    grown = searcher.current_fit()
    assert grown is not None and grown.prior is None
    own = LRLawSearcher(space, metric="loss", fit_kwargs={"prior": "default"})
    assert not own.book.default_prior_until_annealed  # a prior the user asked for stays


# -- bad input: a clear message, and the search goes on ----------------------------------------


def test_empty_space_and_bad_arguments():
    with pytest.raises(ValueError, match="no candidates"):
        LRLawSearcher(ScheduleSpace(1e-3, 100, kinds={}), metric="loss")
    with pytest.raises(ValueError, match="no candidates; all 1 combinations were invalid"):
        LRLawSearcher(ScheduleSpace(1e-3, 100, 90, kinds={"wsd": {"decay_fraction": 0.5}}))
    with pytest.raises(ValueError, match="pilots\\[0\\] is not a schedule"):
        LRLawSearcher([Schedule.cosine(1e-3, 100)], pilots=["triangle(x=1)"])
    with pytest.raises(ValueError, match="top_k"):
        LRLawSearcher([Schedule.cosine(1e-3, 100)], top_k=0)
    with pytest.raises(ValueError, match="no candidates with total_steps <= max_steps=50"):
        LRLawSearcher([Schedule.cosine(1e-3, 100)], max_steps=50)


def test_candidates_longer_than_the_trials_can_run_are_dropped(caplog):
    world, _ = _world()
    cands = _small_space(world) + [Schedule.cosine(world.peak_lr, 2 * world.total_steps)]
    with caplog.at_level(logging.WARNING, logger="tune_search"):
        s = LRLawSearcher(cands, metric="loss", max_steps=world.total_steps)
    assert len(s.candidates) == len(cands) - 1
    assert "max_steps" in caplog.text
    assert all(Schedule.parse(p).total_steps == world.total_steps for p in s.pilots)


def test_bad_reports_are_refused_one_by_one(caplog):
    world, _ = _world()
    s = LRLawSearcher(_small_space(world), metric="loss", top_k=1)
    cfg = s.suggest("t1")
    total = Schedule.parse(cfg["schedule"]).total_steps
    with caplog.at_level(logging.WARNING, logger="tune_search"):
        s.on_trial_result("t1", {"step": 9, "other": 1.0})  # no metric
        s.on_trial_result("t1", {"loss": 3.0})  # no step
        s.on_trial_result("t1", {"step": 1.5, "loss": 3.0})  # not a whole step
        s.on_trial_result("t1", {"step": total + 5, "loss": 3.0})  # past the schedule
        s.on_trial_result("t1", {"step": 3, "loss": "low"})  # not a number
        s.on_trial_result("unknown", {"step": 3, "loss": 3.0})  # not ours: ignored
    msgs = "\n".join(s.messages)
    for needle in (
        "has no 'loss'",
        "has no 'step'",
        "whole number",
        "outside the schedule's steps",
        "must be a number",
    ):
        assert needle in msgs
    assert caplog.text.count("has no 'step'") == 1  # once per trial, not per report
    assert s.trials()[0]["steps_run"] == 0


def test_errored_and_diverged_trials_do_not_stop_the_search():
    world, _ = _world("momentum", 7)
    cands = _small_space(world)
    s = LRLawSearcher(cands, metric="loss", top_k=2, law_options=world.fit_options("momentum"))
    p1 = s.suggest("p1")
    _feed(s, world, "p1", p1["schedule"], upto=world.total_steps // 3)
    s.on_trial_complete("p1", error=True)  # the pilot crashed a third of the way
    p2 = s.suggest("p2")
    last = _feed(s, world, "p2", p2["schedule"])
    s.on_trial_complete("p2", last)
    c1 = s.suggest("c1")
    assert c1 not in (None, Searcher.FINISHED)
    last = _feed(s, world, "c1", c1["schedule"], nan_from=10)  # diverges
    assert math.isnan(last["loss"])
    s.on_trial_complete("c1", last)
    c2 = s.suggest("c2")
    assert c2 not in (None, Searcher.FINISHED) and c2["schedule"] != c1["schedule"]
    last = _feed(s, world, "c2", c2["schedule"])
    s.on_trial_complete("c2", last)
    status = {t["trial_id"]: t["status"] for t in s.trials()}
    assert status == {"p1": "error", "p2": "finished", "c1": "diverged", "c2": "finished"}
    rec = s.recommendation()
    assert rec["trial_id"] in ("p2", "c2")  # never the diverged run
    msgs = "\n".join(s.messages)
    assert "errored" in msgs and "diverged" in msgs


def test_fit_failures_fall_back_instead_of_crashing():
    world, _ = _world()
    cands = _small_space(world)
    s = LRLawSearcher(cands, metric="loss", top_k=1)
    for tid in ("p1", "p2"):
        cfg = s.suggest(tid)
        # one point each: no law can be fitted on two points
        s.on_trial_result(tid, {"step": world.total_steps - 1, "loss": 3.0})
        s.on_trial_complete(tid, {"step": world.total_steps - 1, "loss": 3.0})
    cfg = s.suggest("c1")
    assert cfg not in (None, Searcher.FINISHED)
    assert any("fallback order" in line for line in s.log)
    assert s.trials()[-1]["role"] == "fallback"


def test_restarted_trial_replaces_its_curve():
    world, _ = _world()
    s = LRLawSearcher(_small_space(world), metric="loss")
    cfg = s.suggest("t")
    _feed(s, world, "t", cfg["schedule"], upto=world.total_steps // 2)
    n_before = len(s.book.records["t"].steps)
    _feed(s, world, "t", cfg["schedule"], upto=world.total_steps // 4)  # a retry from the start
    rec = s.book.records["t"]
    assert len(rec.steps) < n_before and rec.restarts == 1
    assert rec.steps == sorted(rec.steps)


def test_stopper_contract():
    world, _ = _world()
    st = LRLawStopper()
    assert st.set_search_properties("loss", "min")
    assert st.set_search_properties("eval_loss", "min") is False
    assert st.set_search_properties("loss", "max") is False
    with pytest.raises(ValueError, match="no config\\['schedule'\\]"):
        st.on_trial_add(None, TrialStub("x", {}))
    with pytest.raises(ValueError, match="no metric"):
        LRLawStopper().on_trial_add(
            None, TrialStub("x", {"schedule": "cosine(peak_lr=1, total_steps=9)"})
        )
    trial = TrialStub("p", {"schedule": str(_small_space(world)[0]), "lrlaw_stop_step": 99})
    st.on_trial_add(None, trial)
    assert st.on_trial_result(None, trial, {"step": 39, "loss": 3.0}) == TrialScheduler.CONTINUE
    assert st.on_trial_result(None, trial, {"step": 119, "loss": 3.0}) == TrialScheduler.STOP
    bad = TrialStub("n", {"schedule": str(_small_space(world)[0])})
    st.on_trial_add(None, bad)
    assert st.on_trial_result(None, bad, {"step": 39, "loss": float("nan")}) == TrialScheduler.STOP


def test_a_failed_leader_does_not_end_the_search():
    # the longer run is the law's favourite, but the trials cannot run it
    world, _ = _world("momentum", 8)
    p, t, w = world.peak_lr, world.total_steps, world.warmup_steps
    longer = Schedule.cosine(p, 2 * t, warmup_steps=w)
    s = LRLawSearcher(
        _small_space(world) + [longer],
        metric="loss",
        top_k=1,
        law_options=world.fit_options("momentum"),
        pilots=[
            Schedule.constant(p, t, warmup_steps=w),
            Schedule.cosine(p, t, warmup_steps=w, final_ratio=0.3),
        ],
    )
    for tid in ("p1", "p2"):
        cfg = s.suggest(tid)
        s.on_trial_complete(tid, _feed(s, world, tid, cfg["schedule"]))
    assert str(s.ranking().best.schedule) == str(longer)
    first = s.suggest("c1")
    assert first["schedule"] == str(longer)
    s.on_trial_complete("c1", error=True)
    assert str(longer) not in {str(r.schedule) for r in s.ranking()}
    nxt = s.suggest("c2")
    assert nxt not in (None, Searcher.FINISHED) and nxt["schedule"] != str(longer)


class _EndsHigher:
    """The simulated world, with every run's last logged loss 3% above the hidden law's: a law
    that is systematically wrong by 3% about final losses (Huber leaves one point per curve
    nearly out of the fit, so the refits do not learn it)."""

    def __init__(self, world: SimulatedWorld, bias: float) -> None:
        self.world, self.bias = world, bias
        self.total_steps = world.total_steps

    def curve(self, schedule, trial_seed=0):
        steps, losses = self.world.curve(schedule, trial_seed)
        return steps, np.where(steps == steps[-1], losses * (1 + self.bias), losses)

    def true_final(self, schedules):
        return self.world.true_final(schedules) * (1 + self.bias)


def test_calibrated_intervals_cover_a_law_wrong_by_3_percent_once_it_missed(tmp_path):
    from tune_search.report import write_report

    world = SimulatedWorld(law="momentum", noise=0.0, seed=3)
    space = ScheduleSpace(
        world.peak_lr,
        world.total_steps,
        world.warmup_steps,
        kinds={"wsd": {"decay_fraction": [0.1, 0.2, 0.3, 0.4, 0.5]}, "cosine": {}},
    )
    # a negative margin keeps the search going to top_k: three full runs to learn from
    searcher = LRLawSearcher(
        space,
        metric="loss",
        top_k=3,
        margin=-0.05,
        law_options=world.fit_options("momentum"),
        fit_kwargs={"prior": None},
    )
    drive(_EndsHigher(world, 0.03), searcher, None)
    runs = [t for t in searcher.trials() if t["role"] == "candidate" and t["status"] == "finished"]
    assert len(runs) == 3
    for i, t in enumerate(runs):
        mean, low, high = t["predicted"]
        c_low, c_high = t["calibrated"]
        actual = t["final_loss"]
        assert actual / mean - 1 == pytest.approx(0.03, abs=0.01)  # the law's miss
        assert not low <= actual <= high  # the parameter interval never covers it
        # the prior alone (0.5%) does not cover it; from the first miss on, the calibrated one does
        assert (c_low <= actual <= c_high) == (i >= 1)
    cal = searcher.calibration()
    assert len(cal.misses) == 3 and math.expm1(cal.bias) == pytest.approx(0.03, abs=0.01)
    # with the default margin, a run that ends outside its calibrated interval does not end the
    # search (the law's ranking is not trusted); one that ends inside it may
    default = LRLawSearcher(
        space,
        metric="loss",
        top_k=3,
        law_options=world.fit_options("momentum"),
        fit_kwargs={"prior": None},
    )
    drive(_EndsHigher(world, 0.03), default, None)
    made = [t for t in default.trials() if t["role"] == "candidate"]
    assert len(made) == 2 and default.finished_reason.startswith("no remaining candidate")
    write_report(searcher, tmp_path, figure=False)
    report = (tmp_path / "report.md").read_text()
    assert "## The law's misses" in report and "| no / no |" in report and "| no / yes |" in report
    assert json.loads((tmp_path / "recommended.json").read_text())["calibration"]["runs"] == 3


def test_optimized_search_runs_the_laws_own_optimum_for_real(tmp_path):
    # a multi-power world: its optimum is a WSD-like free-form curve no grid candidate is
    world, _ = _world("multipower", 0)
    space = _small_space(world)
    searcher = LRLawSearcher(space, metric="loss", law="multipower", top_k=3, optimized=True,
                             law_options=world.fit_options("multipower"))  # fmt: skip
    result = drive(world, searcher, concurrency=1)
    ran = [t for t in result.trials if Schedule.parse(t["schedule"]).kind == "piecewise"]
    assert len(ran) == 1, [t["schedule"] for t in result.trials]
    optimum = Schedule.parse(ran[0]["schedule"])
    assert (optimum.total_steps, optimum.warmup_steps) == (world.total_steps, world.warmup_steps)
    assert ran[0]["full"]
    assert any("optimum joins the candidates" in line for line in searcher.policy.log)
    record = next(r for r in searcher.policy.book.records.values() if r.schedule == str(optimum))
    low, high = record.predicted[1], record.predicted[2]
    assert low < record.predicted[0] < high  # predicted before it ran, like any candidate
    truth = world.true_final(space + [optimum])
    rec = searcher.recommendation()
    assert world.true_final(rec["text"])[0] <= truth.min() * 1.003  # within the world's noise
    # a restored search keeps the optimum it ran instead of refitting a near-duplicate
    state = tmp_path / "state.pkl"
    searcher.save(str(state))
    again = LRLawSearcher(space, metric="loss", law="multipower", optimized=True,
                          law_options=world.fit_options("multipower"))  # fmt: skip
    again.restore(str(state))
    assert again.policy.optima.texts == [str(optimum)]


def test_second_law_ranks_each_candidate_by_the_larger_of_two_predictions():
    world, _ = _world("momentum", seed=1)
    space = _small_space(world)
    searcher = _searcher(world, space, second_law="multipower", top_k=1)
    drive(world, searcher)
    policy = searcher.policy
    ranked = {str(r.schedule): r.predicted for r in policy.ranking()}
    first, second = policy.current_fit(), policy.second.fit  # those of that ranking
    assert second is not None and second.law == "multipower"
    own, other = first.predict_final(space)[0], second.predict_final(space)[0]
    assert (other > own + 1e-4).any()  # the second law disagrees somewhere: the test can fail
    for s, a, b in zip(space, own, other):
        assert ranked[str(s)] == pytest.approx(max(a, b), rel=1e-9)
    assert "checked by multipower" in policy.summary()
    with pytest.raises(ValueError, match="unknown second_law"):
        _searcher(world, space, second_law="nope")


def test_a_second_law_blind_to_the_peak_lr_is_warned_over_several_lrs(caplog):
    cands = [Schedule.wsd(lr, 2000, warmup_steps=100, decay_fraction=0.2) for lr in (1e-3, 3e-3)]
    with caplog.at_level(logging.WARNING, logger="tune_search"):
        LRLawSearcher(cands, metric="loss", law="lrnoise", second_law="multipower")
    assert "second_law='multipower' does not model the peak LR" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tune_search"):
        LRLawSearcher(cands[:1], metric="loss", second_law="multipower")
    assert "second_law" not in caplog.text
