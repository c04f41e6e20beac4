"""Bad input gets one clear error naming the problem and the input, never a traceback, a NaN
presented as a result, or a destroyed input; and the common Trainer log fits from the CLI.
Property-based cases throw generated CSV rows, fit files and schedule text at the CLI."""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import stat

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hf_lrlaw
from hf_lrlaw import FitError, LossCurve, Schedule
from hf_lrlaw.cli import main

W = "total_steps=24000, warmup_steps=2160"


@pytest.fixture(scope="module")
def fit_json(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fits")
    train, _ = hf_lrlaw.datasets.multipowerlaw_split("25M")
    path = folder / "fit.json"
    hf_lrlaw.fit(train, "momentum").save(path)
    return path


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("lrlaw: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _trainer_state(path, eval_every=5):
    """A transformers trainer_state.json of logging_steps=1 and a warmup from LR 0."""
    history = []
    for g in range(1, 201):
        lr = 1e-3 * min(1.0, (g - 1) / 20)
        history.append({"step": g, "loss": 5 * (g + 10) ** -0.3 + 1.0, "learning_rate": lr})
        if g % eval_every == 0:
            history.append({"step": g, "eval_loss": 5 * (g + 10) ** -0.3 + 1.05})
    path.write_text(json.dumps({"log_history": history, "max_steps": 200, "global_step": 200}))
    return path


def test_the_common_trainer_log_fits_from_the_cli(tmp_path, capsys):
    state = _trainer_state(tmp_path / "trainer_state.json")
    code, out, err = _run(["fit", state, "--law", "momentum", "-o", tmp_path / "f.json"], capsys)
    assert code == 0, err
    assert "before any training at a non-zero LR" in out  # the step-0 point, left out with a note
    saved = hf_lrlaw.Fit.load(tmp_path / "f.json")
    assert saved.curves[0]["n_points"] == 198  # 199 train-loss logs kept by the reader, 1 left out
    code, out, err = _run(
        ["fit", state, "--law", "momentum", "--metric", "eval_loss", "--min-step", "50"], capsys
    )
    assert code == 0, err
    assert "30 points" in out  # the evaluations after step 50: steps 54, 59, ..., 199
    code, _, err = _run(["fit", state, "--metric", "eval_accuracy"], capsys)
    assert code == 2 and "eval_accuracy" in _one_error(err)
    code, _, err = _run(["fit", state, "--min-step", "-3"], capsys)
    assert code == 2 and "--min-step" in _one_error(err)


def test_out_of_domain_predictions_are_flagged_never_nan(fit_json, tmp_path, capsys):
    f = hf_lrlaw.Fit.load(fit_json)
    far = Schedule.parse(f"wsd(peak_lr=3e-2, {W}, decay_fraction=0.5)")  # 100x the fitted LR
    good = Schedule.parse(f"wsd(peak_lr=3e-4, {W}, decay_fraction=0.2)")
    ranking = hf_lrlaw.rank(f, [far, good])
    assert ranking.best.schedule == good and ranking.best.prob_best == 1.0
    last = ranking[-1]
    assert last.schedule == far and not last.valid and last.prob_best == 0.0
    assert "below zero" in last.flag
    assert last.to_dict()["predicted"] is None
    assert "| - | - | 0.00 |" in ranking.to_markdown()
    with pytest.raises(FitError, match="gives no loss at step 23999"):
        f.predict(far)
    with pytest.raises(FitError, match="no training at a non-zero LR"):
        f.predict(np.zeros(100))
    with pytest.raises(FitError, match=r"level must be a probability in \(0, 1\)"):
        f.predict_interval(good, level=1)
    code, _, err = _run(["predict", fit_json, "--schedule", str(far)], capsys)
    assert code == 2 and "no prediction" in _one_error(err)
    out_file = tmp_path / "p.json"
    code, _, err = _run(
        ["predict", fit_json, "--schedule", str(far), "--schedule", str(good), "-o", out_file],
        capsys,
    )
    assert code == 0, err
    rows = json.loads(out_file.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert rows[0]["predicted"] is None and "below zero" in rows[0]["flag"]
    assert math.isfinite(rows[1]["predicted"]) and rows[1]["flag"] is None


def test_a_peak_lr_outside_the_fitted_runs_is_noted(fit_json):
    f = hf_lrlaw.Fit.load(fit_json)
    near = Schedule.parse(f"cosine(peak_lr=6e-4, {W})")
    row = hf_lrlaw.rank(f, [near])[0]
    assert row.valid and "extrapolation in peak LR" in row.flag


def test_fits_of_extreme_losses_save_strict_json_or_are_refused(tmp_path):
    steps = np.arange(50, 1000, 50)
    for scale in (1e150, 1e300):
        curve = LossCurve(np.full(1000, 1e-3), steps, scale * (2 + steps**-0.3))
        try:
            f = hf_lrlaw.fit(curve, "power")
        except FitError as exc:  # 1e300: the curvature overflows; said, not saved as NaN
            assert scale == 1e300 and "extreme losses" in str(exc)
            continue
        path = f.save(tmp_path / "huge.json")
        data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        assert data["schema"] == "hf_lrlaw.fit/1"
        assert hf_lrlaw.Fit.load(path).params == f.params  # what was saved loads back


def test_an_output_never_overwrites_an_input(fit_json, tmp_path, capsys):
    copy_ = tmp_path / "f.json"
    copy_.write_bytes(fit_json.read_bytes())
    before = copy_.read_bytes()
    schedules = tmp_path / "s.txt"
    schedules.write_text(f"cosine(peak_lr=3e-4, {W})\n")
    cases = [
        ["rank", copy_, "--schedules", schedules, "-o", copy_],
        ["rank", copy_, "--schedules", schedules, "-o", schedules.with_suffix(".json")],
        ["predict", copy_, "--schedules", schedules, "-o", copy_],
        ["fit", copy_, "-o", copy_],
        ["prior", copy_, "-o", copy_],
    ]
    for argv in cases[:1] + cases[2:]:
        code, _, err = _run(argv, capsys)
        assert code == 2 and "is one of the command's inputs" in _one_error(err), argv
        assert copy_.read_bytes() == before
    state = _trainer_state(tmp_path / "trainer_state.json")
    code, _, err = _run(["fit", tmp_path, "-o", state], capsys)
    assert code == 2 and "inputs" in _one_error(err)


def test_corrupt_fit_files_are_refused_naming_the_file_and_the_field(fit_json, tmp_path, capsys):
    good = json.loads(fit_json.read_text())

    def edit(name, change):
        data = copy.deepcopy(good)
        change(data)
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return path

    cases = {
        edit("shape.json", lambda d: d.update(cov=[[1.0, 2.0], [3.0, 4.0]])): "'cov' must be a 4x4",
        edit("nan.json", lambda d: d["cov"][0].__setitem__(0, None)): "'cov' holds NaN",
        edit("short.json", lambda d: d.update(log_params=d["log_params"][:2])): "'log_params'",
        edit("l0.json", lambda d: d["params"].update(L0=-1.0)): "L0=-1.0 is outside its bounds",
        edit("alpha.json", lambda d: d["params"].pop("alpha")): "has no 'alpha'",
        edit("schema.json", lambda d: d.pop("schema")): "not a saved Fit of schema",
    }
    gz = tmp_path / "fit.json.gz"
    gz.write_bytes(gzip.compress(b"not json"))
    cases[gz] = "not a readable JSON file"
    for path, expected in cases.items():
        with pytest.raises(FitError, match=str(path)) as caught:
            hf_lrlaw.Fit.load(path)
        assert expected in str(caught.value), (path, caught.value)
        code, _, err = _run(["predict", path, "--schedule", f"cosine(peak_lr=3e-4, {W})"], capsys)
        line = _one_error(err)
        assert code == 2 and str(path) in line and expected in line
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffcosine(peak_lr=3e-4, total_steps=24000)\n".encode())
    code, out, err = _run(["predict", fit_json, "--schedules", bom], capsys)
    assert code == 0, err


def test_arguments_are_checked_where_they_enter():
    train, _ = hf_lrlaw.datasets.multipowerlaw_split("25M")
    for kwargs, message in [
        ({"delta": -1}, "delta"),
        ({"delta": 0}, "delta"),
        ({"n_starts": 2.5}, "n_starts"),
        ({"n_starts": 0}, "n_starts"),
        ({"n_starts": -3}, "n_starts"),
        ({"law": None}, "law must be"),
        ({"max_points": 3}, "max_points"),
        ({"min_step": 1.5}, "min_step"),
    ]:
        with pytest.raises(FitError, match=message):
            hf_lrlaw.fit(train, **{"law": "momentum", **kwargs})
    from hf_lrlaw import LRLawCallback

    with pytest.raises(ValueError, match="/nonexistent.json: no such file"):
        LRLawCallback(prior="/nonexistent.json")
    with pytest.raises(ValueError, match="wrap it in a list"):
        LRLawCallback(candidates="wsd(decay_fraction=0.2)")
    from tune_search import LRLawSearcher, LRLawStopper

    with pytest.raises(ValueError, match="unknown law 'nope'"):
        LRLawSearcher(["constant(peak_lr=1e-3, total_steps=100)"], law="nope")
    with pytest.raises(ValueError, match="unknown law 'nope'"):
        LRLawStopper(law="nope")


def test_allocations_are_bounded_or_refused(fit_json, tmp_path, capsys):
    import tracemalloc

    with pytest.raises(hf_lrlaw.ScheduleError, match="more than the 100,000,000"):
        Schedule.parse("cosine(peak_lr=1e-3, total_steps=1000000000)").lrs()
    stray = tmp_path / "stray.csv"
    rows = "".join(f"{s},1e-3,{3 - s * 1e-4}\n" for s in range(1, 50))
    stray.write_text("step,lr,loss\n" + rows + "999999999999,1e-3,2.0\n")
    code, _, err = _run(["fit", stray], capsys)
    assert code == 2 and "row 51, column step" in _one_error(err)
    # 20 candidates of 2e6 steps: their LRs alone are 320 MB stacked; ranked in blocks instead
    f = hf_lrlaw.Fit.load(fit_json)
    cands = [
        Schedule.wsd(3e-4, 2_000_000, warmup_steps=2160, decay_fraction=0.04 * (i + 1))
        for i in range(20)
    ]
    tracemalloc.start()
    ranking = hf_lrlaw.rank(f, cands, n_samples=20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(ranking) == 20 and peak < 160e6, peak


def test_a_search_whose_trials_never_report_the_metric_stops_early():
    from tune_search import LRLawSearcher, ScheduleSpace
    from tune_search.simulate import SimulatedWorld
    from tune_search.testing import drive

    world = SimulatedWorld(law="momentum")
    space = ScheduleSpace(world.peak_lr, world.total_steps, world.warmup_steps)
    searcher = LRLawSearcher(
        space, metric="eval_loss", law_options=world.fit_options("momentum")
    )  # the trials report "loss"
    result = drive(world, searcher, metric="loss")
    assert result.full_runs <= 1.0  # the two half pilots, then the searcher gives up
    assert "reported no usable 'eval_loss'" in searcher.finished_reason
    assert any("has no 'eval_loss'" in m for m in searcher.messages)


def test_a_diverging_run_warns_once(caplog):
    import logging

    from ray.tune.experiment import Trial

    from tune_search import LRLawSearcher, LRLawStopper, ScheduleSpace
    from tune_search.simulate import SimulatedWorld

    world = SimulatedWorld(law="momentum", seed=4)
    space = ScheduleSpace(world.peak_lr, world.total_steps, world.warmup_steps)
    searcher = LRLawSearcher(space, metric="loss", law_options=world.fit_options("momentum"))
    stopper = LRLawStopper(searcher=searcher, stop_diverged=False)
    config = searcher.suggest("t1")
    trial = Trial("simulated", config=config, trial_id="t1", stub=True)
    stopper.on_trial_add(None, trial)
    steps, losses = world.curve(config["schedule"])
    with caplog.at_level(logging.WARNING, logger="tune_search"):
        for j, (step, loss) in enumerate(zip(steps[:30], losses[:30])):
            result = {"step": int(step), "loss": float("nan") if j >= 8 else float(loss)}
            searcher.on_trial_result("t1", result)  # Tune tells the searcher and the stopper
            stopper.on_trial_result(None, trial, result)
    diverged = [r.getMessage() for r in caplog.records if "diverged" in r.getMessage()]
    assert len(diverged) == 1, diverged


# -- property-based: generated input at the CLI, in this process ---------------------------------

number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-(10**13), 10**13),
    st.text("0123456789.e-+naNinf", max_size=8),
)


def _outcome(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    if code == 0:
        return code, out
    assert code == 2, (argv, code, err)  # 1 would be an internal error
    _one_error(err)
    return code, err


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.tuples(st.integers(-5, 400), number, number), min_size=0, max_size=40),
    header=st.sampled_from(
        ["step,lr,loss", "curve_id,step,lr,loss", "step,loss", "step,lr,loss,window"]
    ),
)
def test_generated_csv_files(rows, header, tmp_path, capsys):
    cols = header.split(",")
    lines = [header]
    for step, lr, loss in rows:
        cells = {"curve_id": "a", "step": step, "lr": lr, "loss": loss, "window": 1}
        lines.append(",".join(str(cells[c]) for c in cols))
    path = tmp_path / "gen.csv"
    path.write_text("\n".join(lines) + "\n")
    code, text = _outcome(["fit", path, "--law", "power", "-o", tmp_path / "gen.json"], capsys)
    if code == 0:
        saved = json.loads((tmp_path / "gen.json").read_text(), parse_constant=float)
        assert saved["schema"] == "hf_lrlaw.fit/1"


json_value = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.sampled_from(["params", "cov", "log_params", "bounds", "goodness", "scatter", "law",
                            "law_options", "determined", "curves", "discrepancy", "prior"]),
       value=json_value)  # fmt: skip
def test_generated_fit_files(key, value, fit_json, tmp_path, capsys):
    data = json.loads(fit_json.read_text())
    data[key] = value
    path = tmp_path / "gen_fit.json"
    path.write_text(json.dumps(data))
    code, text = _outcome(["predict", path, "--schedule", f"cosine(peak_lr=3e-4, {W})"], capsys)
    if code == 0:
        assert "nan" not in text.lower()


schedule_text = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda kind, params: f"{kind}({', '.join(params)})",
        st.sampled_from(["wsd", "cosine", "constant", "linear", "multistep", "cyclic", "two_stage",
                         "inverse_sqrt", "free_form", "nope"]),
        st.lists(
            st.builds(lambda k, v: f"{k}={v}",
                      st.sampled_from(["peak_lr", "total_steps", "warmup_steps", "decay_fraction",
                                       "final_ratio", "milestones", "cycles", "decay_shape", "x"]),
                      st.one_of(number, st.just("[0.5, 0.9]"), st.just("1-sqrt"))),
            max_size=5,
        ),
    ),
)  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=schedule_text)
def test_generated_schedule_text(text, fit_json, capsys):
    code, out = _outcome(["predict", fit_json, "--schedule", text], capsys)
    if code == 0:
        assert "nan" not in out.lower()


def test_the_mode_of_a_replaced_output_is_kept(fit_json, tmp_path, capsys):
    target = tmp_path / "out.json"
    target.write_text("{}")
    os.chmod(target, 0o600)
    code, _, err = _run(["fit", "dataset:multipowerlaw:model=25M,split=train", "--law", "momentum",
                         "-o", target], capsys)  # fmt: skip
    assert code == 0, err
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
