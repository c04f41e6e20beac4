"""LRLawCallback with a real transformers Trainer and a tiny GPT-2 on CPU (no downloads).

One main run (eval loss fitted, TensorBoard, candidates, checkpoints) is shared by most tests;
the others are short runs of their own.
"""

from __future__ import annotations

import copy
import glob
import json
import logging
import math
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from hf_lrlaw import Fit, FitError, LossCurve, Schedule, fit, load
from hf_lrlaw.callback import RECORD_SCHEMA, LRLawCallback, planned_lrs
from hf_lrlaw.testing import byte_datasets, tiny_args, tiny_gpt2

transformers.logging.set_verbosity_error()

MAIN_STEPS = 160
MAIN_ARGS = dict(
    max_steps=MAIN_STEPS,
    per_device_train_batch_size=8,
    learning_rate=3e-3,
    lr_scheduler_type="cosine",
    warmup_steps=10,
    logging_steps=10,
    eval_strategy="steps",
    eval_steps=10,
    save_strategy="steps",
    save_steps=80,
    report_to="tensorboard",
)
MAIN_CALLBACK = dict(
    fit_after=0.5,
    fit_every=0.125,
    candidates=["constant()", "wsd(decay_fraction=0.2)", "cosine()", "cosine(peak_lr=0.006)"],
)


class LRSpy(transformers.TrainerCallback):
    """The LR in the optimizer at the start of every update (what that update uses)."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs[state.global_step] = optimizer.param_groups[0]["lr"]


class StopAt(transformers.TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return byte_datasets(seq_len=64, eval_chunks=64)


def _trainer(out, data, callbacks, *, model=None, optimizers=(None, None), **overrides):
    train, evaluation = data
    args = tiny_args(out, **{"per_device_train_batch_size": 8, **overrides})
    return transformers.Trainer(
        model=model or tiny_gpt2(seq_len=64),
        args=args,
        train_dataset=train,
        eval_dataset=evaluation if args.eval_strategy != "no" else None,
        callbacks=callbacks,
        optimizers=optimizers,
    )


def _record(out) -> dict:
    return json.loads((Path(out) / "lrlaw" / "record.json").read_text())


def _lrlaw_logs(trainer) -> list[dict]:
    return [h for h in trainer.state.log_history if "lrlaw/predicted_final_loss" in h]


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("main") / "tiny-gpt2"
    spy, callback = LRSpy(), LRLawCallback(**MAIN_CALLBACK)
    trainer = _trainer(out, data, [spy, callback], **MAIN_ARGS)
    trainer.train()
    return trainer, callback, spy, out


# -- construction and arguments ------------------------------------------------------------------


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown law"):
        LRLawCallback(law="nope")
    with pytest.raises(ValueError, match="metric"):
        LRLawCallback(metric="accuracy")
    with pytest.raises(ValueError, match="fit_every"):
        LRLawCallback(fit_every=0)
    with pytest.raises(ValueError, match="fit_after"):
        LRLawCallback(fit_after=1.5)
    with pytest.raises(ValueError, match="level"):
        LRLawCallback(level=1.0)
    with pytest.raises(ValueError, match="does not take"):
        LRLawCallback(fit_kwargs={"bogus": 1})
    with pytest.raises(ValueError, match="named law"):
        LRLawCallback(fit_kwargs={"law_options": {"lam": 0.99}})
    with pytest.raises(ValueError, match="lam"):
        LRLawCallback(law="momentum", fit_kwargs={"law_options": {"lam": 5.0}})
    with pytest.raises(ValueError, match="candidate"):
        LRLawCallback(candidates=["zigzag()"])
    with pytest.raises(ValueError, match="min_points must be at least 8"):
        LRLawCallback(law="multipower", min_points=5)
    LRLawCallback(law="momentum", fit_kwargs={"law_options": {"lam": 0.99}, "n_starts": 2})


def test_pickle_round_trip_before_training():
    callback = LRLawCallback(candidates=[Schedule.parse("constant(peak_lr=0.001, total_steps=50)")])
    again = pickle.loads(pickle.dumps(callback))
    assert again.state() == callback.state()
    assert copy.deepcopy(callback).state()["args"] == callback.state()["args"]


def test_eval_metric_without_evaluation_says_what_to_set(tmp_path, data):
    trainer = _trainer(tmp_path, data, [LRLawCallback(metric="eval_loss")], max_steps=5)
    with pytest.raises(ValueError, match="eval_strategy"):
        trainer.train()


# -- the main run -----------------------------------------------------------------------------------


def test_callback_goes_before_the_reporting_integrations(main_run):
    trainer, callback, _, _ = main_run
    names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    assert names.index("LRLawCallback") < names.index("TensorBoardCallback")
    assert names[0] == "DefaultFlowCallback"


def test_lr_of_every_step_is_the_one_the_optimizer_used(main_run):
    trainer, callback, spy, out = main_run
    record = _record(out)
    lrs = np.array(record["curves"][0]["lrs"])
    assert len(lrs) == MAIN_STEPS
    used = np.array([spy.lrs[g] for g in range(MAIN_STEPS)])
    assert np.array_equal(lrs, used)  # exact, at every step, with logging_steps=10
    schedule = Schedule.cosine(3e-3, MAIN_STEPS, warmup_steps=10)
    np.testing.assert_allclose(lrs, schedule.lrs(), rtol=1e-12, atol=1e-18)
    assert record["schedule"]["text"] == str(schedule)
    assert np.array_equal(np.array(record["planned_lrs"]), used)
    logged = {
        h["step"]: h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h
    }
    assert all(lrs[g - 1] == lr for g, lr in logged.items())


def test_windows_and_metrics(main_run):
    trainer, callback, _, out = main_run
    record = _record(out)
    assert record["metric"] == "eval_loss"  # auto: 8 evaluations by fit_after
    (evals,) = record["curves"]
    (train,) = record["other_curves"]
    assert evals["meta"]["metric"] == "eval_loss" and "windows" not in evals
    assert evals["steps"] == list(range(9, MAIN_STEPS, 10))  # eval at global step g -> g - 1
    logged_eval = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert evals["losses"] == logged_eval
    # train loss at global step g averages updates g-9..g, computed before each: steps g-11..g-2
    assert train["steps"] == list(range(18, MAIN_STEPS, 10))
    assert train["windows"] == [10] * len(train["steps"])
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert train["losses"] == logged[1:]  # the first log includes the untrained model: left out


def test_fits_reach_log_history_and_the_progress_logs(main_run):
    trainer, callback, _, out = main_run
    logs = _lrlaw_logs(trainer)
    assert len(logs) >= 3
    for entry in logs:
        assert entry["lrlaw/predicted_final_loss_low"] <= entry["lrlaw/predicted_final_loss"]
        assert entry["lrlaw/predicted_final_loss"] <= entry["lrlaw/predicted_final_loss_high"]
        assert entry["lrlaw/annealing_identified"] in (0.0, 1.0)
        assert entry["lrlaw/fit_step"] < entry["step"]
        assert math.isfinite(entry["lrlaw/predicted_final_loss"])
    # fits at fit_after, every fit_every (one still running when the next is due is skipped)
    # and at the end
    fit_steps = [e["step"] for e in callback.history]
    assert fit_steps[0] == 80 and fit_steps[-1] == MAIN_STEPS and len(fit_steps) >= 3
    assert set(fit_steps) <= {80, 100, 120, 140, 160}
    assert callback.history[-1]["final"] and not callback.history[-2]["final"]
    final = callback.latest_prediction
    last_eval = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h][-1]
    assert abs(final["final_loss"] - last_eval) < 0.1  # fitted through the last point
    assert callback.events == []


def test_tensorboard_event_file_has_the_predictions(main_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, _, _, out = main_run
    (events,) = glob.glob(str(out / "runs" / "*" / "events.out.tfevents.*"))
    acc = EventAccumulator(events)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for key in (
        "predicted_final_loss",
        "predicted_final_loss_low",
        "predicted_final_loss_high",
        "best_candidate_final_loss",
    ):
        assert f"train/lrlaw/{key}" in tags
    scalars = acc.Scalars("train/lrlaw/predicted_final_loss")
    logged = _lrlaw_logs(trainer)
    assert [s.step for s in scalars] == [h["step"] for h in logged]
    np.testing.assert_allclose(
        [s.value for s in scalars], [h["lrlaw/predicted_final_loss"] for h in logged], rtol=1e-6
    )


def test_record_loads_with_the_core_loaders(main_run):
    trainer, callback, _, out = main_run
    path = out / "lrlaw" / "record.json"
    record = _record(out)
    assert record["schema"] == RECORD_SCHEMA
    assert record["run"]["finished"] and record["run"]["global_step"] == MAIN_STEPS
    curves = load(path)
    assert [c.meta["metric"] for c in curves] == ["eval_loss"]
    curve = curves[0]
    assert isinstance(curve, LossCurve) and len(curve.lrs) == MAIN_STEPS
    try:
        loaded = Fit.load(path)
    except FitError as exc:
        if RECORD_SCHEMA in str(exc):
            pytest.xfail(
                "core: Fit.load must read the 'fit' of a record whose schema is "
                f"{RECORD_SCHEMA!r} ({exc})"
            )
        raise
    assert loaded.params == callback.latest_fit.params
    mean, _, _ = loaded.predict_interval(curve.lrs, [MAIN_STEPS - 1])
    assert mean[0] == pytest.approx(record["prediction"]["final_loss"], rel=1e-9)


def test_record_rebuilds_the_fit(main_run):
    _, callback, _, out = main_run
    record = _record(out)
    again = Fit.from_dict(record["fit"])
    assert again.params == callback.latest_fit.params
    assert record["history"] == callback.history


def test_fit_png_is_written(main_run):
    _, _, _, out = main_run
    png = out / "lrlaw" / "fit.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_candidates(main_run):
    trainer, callback, _, out = main_run
    record = _record(out)
    rows = record["candidates"]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["schedule"].startswith("constant(peak_lr=0.003, total_steps=160")
    assert rows[1]["schedule"].startswith("wsd(peak_lr=0.003, total_steps=160, warmup_steps=10")
    # "cosine()" filled in from the run is this run's schedule: the same prediction
    assert rows[2]["schedule"] == record["schedule"]["text"]
    assert rows[2]["predicted"] == pytest.approx(record["prediction"]["final_loss"], rel=1e-9)
    assert all(r["flag"] is None for r in rows[:3])
    # 2x the run's peak LR: predicted (the law's extrapolation), flagged, never named the best
    assert "peak LR 0.006 outside the fitted runs' 0.003" in rows[3]["flag"]
    entry = _lrlaw_logs(trainer)[-1]
    assert math.isfinite(entry["lrlaw/candidate_3_final_loss"])
    best = min(range(3), key=lambda i: entry[f"lrlaw/candidate_{i}_final_loss"])
    assert entry["lrlaw/best_candidate"] == best
    assert entry["lrlaw/best_candidate_final_loss"] == entry[f"lrlaw/candidate_{best}_final_loss"]


def test_pickle_after_training(main_run):
    _, callback, _, _ = main_run
    again = pickle.loads(pickle.dumps(callback))
    assert again.history == callback.history
    assert again.latest_fit.params == callback.latest_fit.params


def test_spike_does_not_drag_the_fit(main_run):
    _, _, _, out = main_run
    curve = LossCurve.from_dict(_record(out)["other_curves"][0])  # the train loss, windowed
    assert curve.meta["metric"] == "loss" and curve.windows is not None
    clean = fit(curve, law="momentum")
    losses = curve.losses.copy()
    losses[len(losses) // 2] *= 1.5  # a loss spike at one log
    spiked = fit(curve.replace(losses=losses), law="momentum")
    base = clean.predict(curve.lrs)[0]
    assert spiked.predict(curve.lrs)[0] == pytest.approx(base, rel=0.01)


# -- resume -------------------------------------------------------------------------------------


@pytest.mark.parametrize("restore", [True, False], ids=["restored-state", "from-log-history"])
def test_resume_finds_every_point_exactly_once(main_run, data, tmp_path, restore):
    _, _, _, out = main_run
    checkpoint = out / "checkpoint-80"
    assert (
        "LRLawCallback"
        in json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]
    )
    resumed_out = tmp_path / "tiny-gpt2"
    spy, callback = LRSpy(), LRLawCallback(**MAIN_CALLBACK)
    trainer = _trainer(
        resumed_out,
        data,
        [spy, callback],
        **{**MAIN_ARGS, "report_to": "none", "save_strategy": "no"},
        restore_callback_states_from_checkpoint=restore,
    )
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert min(spy.lrs) == 80  # it did resume
    full, resumed = _record(out), _record(resumed_out)
    for key in ("curves", "other_curves"):
        for a, b in zip(full[key], resumed[key], strict=True):
            assert b["steps"] == a["steps"]  # every point, once
            assert b.get("windows") == a.get("windows")
            np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-4)
            assert b["lrs"] == a["lrs"]
    assert resumed["run"]["resumed_from_step"] == 80
    # the fit of boundary 80 starts after the checkpoint is saved: the resumed run makes it
    steps = [h["step"] for h in resumed["history"]]
    assert steps[0] == 80 and steps[-1] == MAIN_STEPS


# -- variants -----------------------------------------------------------------------------------


def test_train_loss_with_gradient_accumulation_and_a_high_threshold(tmp_path, data):
    spy = LRSpy()
    callback = LRLawCallback(
        fit_after=20, fit_every=10, stop_if_predicted_above=50.0, fit_kwargs={"prior": "default"}
    )  # a prior steadies early fits
    trainer = _trainer(
        tmp_path,
        data,
        [spy, callback],
        max_steps=50,
        logging_steps=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        lr_scheduler_type="linear",
        warmup_steps=5,
    )
    trainer.train()
    assert trainer.state.global_step == 50  # a high threshold never stops the run
    record = _record(tmp_path)
    assert record["metric"] == "loss"
    (curve,) = record["curves"]
    assert curve["steps"] == list(range(2, 50, 2)) and set(curve["windows"]) == {2}
    assert curve["lrs"] == [spy.lrs[g] for g in range(50)]  # one LR per update, not per batch
    assert {h["step"] for h in callback.history} <= {20, 30, 40, 50}
    assert callback.history[0]["step"] == 20 and callback.history[-1]["step"] == 50
    assert record["run"]["gradient_accumulation_steps"] == 2
    assert all(e["kind"] != "stop" for e in callback.events)


def test_stop_if_predicted_above(tmp_path, data):
    # The power law has no annealing gain to leave undetermined, so its first fit is confident
    # that a loss of 0.5 is out of reach (with the default law a stop waits until the LR decay
    # has been seen). Fit at 18, decision at the next boundary: stop at 26.
    callback = LRLawCallback(law="power", fit_after=18, fit_every=8, stop_if_predicted_above=0.5)
    trainer = _trainer(tmp_path, data, [callback], max_steps=60, logging_steps=2)
    trainer.train()
    assert trainer.state.global_step == 26
    assert callback.history[0]["step"] == 18 and callback.history[0]["stop_low"] > 0.5
    (stop,) = [e for e in callback.events if e["kind"] == "stop"]
    assert stop["step"] == 26
    assert _record(tmp_path)["run"]["global_step"] == 26
    assert any(h.get("lrlaw/stopped") == 1.0 for h in trainer.state.log_history)


def test_epoch_based_run_with_a_torch_scheduler(tmp_path, data):
    train, _ = byte_datasets(seq_len=64, eval_chunks=64, train_bytes=64 * 8 * 30)
    model = tiny_gpt2(seq_len=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30, eta_min=3e-4)
    spy = LRSpy()
    callback = LRLawCallback(fit_after=12, fit_every=6, min_points=5, background=False)
    trainer = _trainer(
        tmp_path,
        (train, None),
        [spy, callback],
        model=model,
        optimizers=(optimizer, scheduler),
        max_steps=-1,
        num_train_epochs=1,
        per_device_train_batch_size=8,
        logging_steps=2,
    )
    trainer.train()
    assert trainer.state.global_step == 30
    record = _record(tmp_path)
    assert record["schedule"]["source"].startswith("CosineAnnealingLR")
    assert record["schedule"]["text"] is None  # not the TrainingArguments' schedule
    used = [spy.lrs[g] for g in range(30)]
    np.testing.assert_allclose(record["planned_lrs"], used, rtol=1e-12)
    assert record["curves"][0]["lrs"] == used
    # a fit at every boundary (in the training loop: none is skipped); early ones may be
    # ill-posed on so few points, and are then reported as failed
    failed = [e["step"] for e in callback.events if e["kind"] == "fit_failed"]
    assert sorted([h["step"] for h in callback.history] + failed) == [12, 18, 24, 30]


def test_custom_lambda_scheduler_with_zero_lr_steps(tmp_path, data):
    lrs = np.concatenate([np.zeros(6), np.full(34, 2e-3)])  # no training for 6 steps
    model = tiny_gpt2(seq_len=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    scheduler = Schedule.free_form(lrs).to_torch(optimizer)
    callback = LRLawCallback(fit_after=30, fit_every=10, min_points=5)
    trainer = _trainer(
        tmp_path,
        data,
        [callback],
        model=model,
        optimizers=(optimizer, scheduler),
        max_steps=40,
        logging_steps=2,
    )
    trainer.train()
    record = _record(tmp_path)
    assert record["curves"][0]["lrs"] == lrs.tolist()
    assert record["schedule"]["source"].startswith("LambdaLR")
    # points whose window lies in the zero-LR steps are recorded but not fitted
    assert record["curves"][0]["steps"][0] == 2
    assert record["fit"]["curves"][0]["n_points"] < len(record["curves"][0]["steps"])
    assert [h["step"] for h in callback.history] == [30, 40]


def test_run_shorter_than_fit_after(tmp_path, data, caplog):
    callback = LRLawCallback(fit_after=50)
    trainer = _trainer(tmp_path, data, [callback], max_steps=12, logging_steps=2)
    with caplog.at_level(logging.WARNING, logger="hf_lrlaw.callback"):
        trainer.train()
    assert "before fit_after=50: no fit was made" in caplog.text
    record = _record(tmp_path)
    assert record["fit"] is None and record["prediction"] is None
    assert len(record["curves"][0]["steps"]) == 5
    assert not (tmp_path / "lrlaw" / "fit.png").exists()
    assert _lrlaw_logs(trainer) == []


def test_nan_loss_is_flagged_as_divergence(tmp_path, data, caplog):
    model = tiny_gpt2(seq_len=64)
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        if calls["n"] == 21:  # the forward pass of update 21
            output.loss = output.loss * float("nan")
        return output

    model.register_forward_hook(poison)
    callback = LRLawCallback(fit_after=16, fit_every=8)
    trainer = _trainer(
        tmp_path,
        data,
        [callback],
        model=model,
        max_steps=32,
        logging_steps=2,
        logging_nan_inf_filter=False,
    )
    with caplog.at_level(logging.WARNING, logger="hf_lrlaw.callback"):
        trainer.train()
    assert trainer.state.global_step == 32
    (event,) = [e for e in callback.events if e["kind"] == "divergence"]
    assert event["step"] == 22
    assert "diverged" in caplog.text
    assert any(h.get("lrlaw/diverged") == 1.0 for h in trainer.state.log_history)
    record = _record(tmp_path)
    assert max(record["curves"][0]["steps"]) < 20  # only the finite losses are points
    assert record["events"][0]["kind"] == "divergence"


def test_failing_fit_warns_and_training_completes(tmp_path, data, caplog):
    callback = LRLawCallback(fit_after=12, fit_every=6, fit_kwargs={"weights": "nope"})
    trainer = _trainer(tmp_path, data, [callback], max_steps=24, logging_steps=1)
    with caplog.at_level(logging.WARNING, logger="hf_lrlaw.callback"):
        trainer.train()
    assert trainer.state.global_step == 24
    assert "failed" in caplog.text and "training continues" in caplog.text
    kinds = [e["kind"] for e in callback.events]
    assert kinds.count("fit_failed") >= 2  # at 12, (18,) and at the end
    assert _record(tmp_path)["fit"] is None


def test_points_before_min_step_do_not_count_towards_the_first_fit(tmp_path, data, caplog):
    """With ``fit_kwargs={"min_step": 10}`` the first fit waits for min_points points from step
    10 on, instead of failing at fit_after on too few of them."""
    callback = LRLawCallback(fit_after=8, fit_every=4, min_points=6, fit_kwargs={"min_step": 10})
    trainer = _trainer(tmp_path, data, [callback], max_steps=24, logging_steps=1)
    with caplog.at_level(logging.WARNING, logger="hf_lrlaw.callback"):
        trainer.train()
    assert not [e for e in callback.events if e["kind"] == "fit_failed"]
    assert "failed" not in caplog.text
    fitted_at = [h["step"] for h in _record(tmp_path)["history"]]
    assert fitted_at and min(fitted_at) >= 16  # 6 points from step 10 on exist from step 16


def test_lr_of_zero_everywhere_warns_and_training_completes(tmp_path, data, caplog):
    callback = LRLawCallback(fit_after=6, fit_every=3, min_points=5)
    trainer = _trainer(tmp_path, data, [callback], max_steps=12, logging_steps=1, learning_rate=0.0)
    with caplog.at_level(logging.WARNING, logger="hf_lrlaw.callback"):
        trainer.train()
    assert trainer.state.global_step == 12
    kinds = [e["kind"] for e in callback.events]
    assert kinds[0] == "zero_lr" and "fit_failed" in kinds
    assert "zero" in caplog.text
    assert _record(tmp_path)["curves"][0]["lrs"] == [0.0] * 12


class SetLR(transformers.TrainerCallback):
    """Other code changing the optimizer's LR behind the scheduler's back."""

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if 5 <= state.global_step < 8:
            optimizer.param_groups[0]["lr"] = 1e-4


def test_lr_other_than_the_plan_is_recorded_and_flagged(tmp_path, data, caplog):
    spy, callback = LRSpy(), LRLawCallback(fit_after=10, fit_every=5, min_points=5)
    trainer = _trainer(
        tmp_path,
        data,
        [SetLR(), spy, callback],
        max_steps=20,
        logging_steps=1,
        lr_scheduler_type="constant",
    )
    with caplog.at_level(logging.WARNING, logger="hf_lrlaw.callback"):
        trainer.train()
    lrs = _record(tmp_path)["curves"][0]["lrs"]
    assert lrs == [spy.lrs[g] for g in range(20)]
    assert lrs[5:8] == [1e-4] * 3 and lrs[4] == lrs[8] == 3e-3
    kinds = {e["kind"] for e in callback.events}
    # the Trainer logs the scheduler's LR, not the one the optimizer used: both are flagged
    assert {"lr_plan_mismatch", "lr_mismatch"} <= kinds
    assert "scheduler's plan" in caplog.text


# -- helpers -------------------------------------------------------------------------------------


def test_planned_lrs_of_torch_schedulers_leave_them_untouched():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, source = planned_lrs(step, optimizer, 10)
    assert source.startswith("StepLR")
    np.testing.assert_allclose(plan, 0.1 * 0.5 ** (np.arange(10) // 3))
    assert step.last_epoch == 0 and optimizer.param_groups[0]["lr"] == 0.1
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    plan, source = planned_lrs(plateau, optimizer, 5)
    assert "metric-driven" in source and np.all(plan == 0.1)


def test_predictions_that_are_not_losses_are_withheld():
    from types import SimpleNamespace

    from hf_lrlaw.callback.jobs import FitResult as _Result
    from hf_lrlaw.callback.worker import check_sane

    job = SimpleNamespace(metric="eval_loss")
    good = {"final_loss": 1.5, "low": 0.0, "high": 1.7}
    check_sane(job, _Result(step=10, final=False, prediction=good))
    for bad in (
        {"final_loss": -6.9, "low": -5.6, "high": -8.6},
        {"final_loss": 1.5, "low": 1.6, "high": 1.7},
        {"final_loss": float("nan"), "low": 1.0, "high": 2.0},
    ):
        with pytest.raises(FitError, match="not a loss"):
            check_sane(job, _Result(step=10, final=False, prediction=bad))
    row = {"index": 0, "predicted": -0.1, "low": -0.2, "high": 0.1}
    with pytest.raises(FitError, match="candidate 0"):
        check_sane(job, _Result(step=10, final=False, prediction=good, candidates=[row]))


def test_trials_of_a_search_write_to_their_own_folders():
    from types import SimpleNamespace

    from hf_lrlaw.callback.run import trial_label as _trial_label

    plain = SimpleNamespace(is_hyper_param_search=False, trial_name="x", trial_params={"lr": 1})
    assert _trial_label(plain) is None
    named = SimpleNamespace(is_hyper_param_search=True, trial_name="run 3/a", trial_params=None)
    assert _trial_label(named) == "run_3_a"
    a = SimpleNamespace(is_hyper_param_search=True, trial_name=None, trial_params={"lr": 1e-3})
    b = SimpleNamespace(is_hyper_param_search=True, trial_name=None, trial_params={"lr": 2e-3})
    assert _trial_label(a).startswith("trial-") and _trial_label(a) != _trial_label(b)


def test_tiny_helpers_are_self_contained(tmp_path):
    train, evaluation = byte_datasets(seq_len=32, eval_chunks=4)
    item = train[0]
    assert item["input_ids"].shape == (32,) and torch.equal(item["input_ids"], item["labels"])
    assert len(evaluation) == 4 and int(train.chunks.max()) < 256
    shutil.rmtree(tmp_path, ignore_errors=True)
