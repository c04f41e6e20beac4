"""LossCurve validation and the loaders: tidy CSV, trainer_state.json (from a real Trainer), JSON."""

from __future__ import annotations

import gzip
import json
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_lrlaw.curves import CurveError, LossCurve, load, read_csv, read_trainer_state, write_csv


def _same(a: LossCurve, b: LossCurve) -> bool:
    return (
        a.name == b.name
        and np.array_equal(a.lrs, b.lrs)
        and np.array_equal(a.steps, b.steps)
        and np.array_equal(a.losses, b.losses)
        and (np.array_equal(a.windows, b.windows) if a.windows is not None else b.windows is None)
    )


# -- LossCurve validation ----------------------------------------------------------------------
LRS = np.full(10, 1e-3)


@pytest.mark.parametrize(
    ("lrs", "steps", "match"),
    [
        (LRS, [5, 3], "unsorted steps"),
        (LRS, [3, 3], "duplicate steps"),
        (LRS, [3, 10], "known only for steps 0..9"),
        (np.r_[1e-3, -1e-4, LRS[2:]], [3, 5], "negative learning rate at step 1"),
        (np.zeros(10), [3, 5], "every learning rate is zero"),
        (np.r_[1e-3, np.nan, LRS[2:]], [3, 5], "NaN or inf"),
        (LRS, [-1, 5], "steps must be >= 0"),
    ],
)
def test_losscurve_rejects_bad_input(lrs, steps, match):
    with pytest.raises(CurveError, match=match):
        LossCurve(lrs, steps, [3.0, 2.0], name="bad")


def test_losscurve_drops_nan_losses_with_a_warning():
    with pytest.warns(
        UserWarning, match=r"dropped 2 non-finite or non-positive loss\(es\) at step\(s\) \[2, 4\]"
    ):
        curve = LossCurve(LRS, [1, 2, 3, 4], [3.0, np.nan, 2.5, -1.0], windows=[1, 2, 3, 4])
    assert curve.steps.tolist() == [1, 3]
    assert curve.losses.tolist() == [3.0, 2.5]
    assert curve.windows.tolist() == [1, 3]


def test_losscurve_window_before_step_zero():
    with pytest.raises(CurveError, match="window reaches before step 0"):
        LossCurve(LRS, [2], [3.0], windows=[4])


# -- CSV ---------------------------------------------------------------------------------------
def _curves() -> list[LossCurve]:
    warm = np.r_[np.linspace(0.0, 1e-3, 10), np.full(40, 1e-3)]
    return [
        LossCurve(warm, [9, 19, 49], [3.1, 2.7, 2.2], name="a", windows=[5, 10, 30]),
        LossCurve(np.geomspace(1e-3, 1e-5, 30), [0, 29], [3.3, 2.8], name='b, "quoted"'),
        LossCurve(np.full(7, 2e-4), [], [], name="no points yet"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_csv_round_trip(tmp_path, suffix):
    path = tmp_path / f"runs{suffix}"
    curves = _curves()
    write_csv(curves, path)
    back = read_csv(path)
    assert [c.name for c in back] == [c.name for c in curves]
    assert all(_same(a, b) for a, b in zip(curves, back))
    assert back[0].meta["source"] == str(path)
    if suffix.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert load(path)[0].name == "a"


@settings(max_examples=25, deadline=None)
@given(
    lrs=st.lists(st.floats(1e-7, 1.0), min_size=1, max_size=40),
    data=st.data(),
)
def test_csv_round_trip_is_exact(tmp_path_factory, lrs, data):
    n = len(lrs)
    steps = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n)))
    losses = data.draw(st.lists(st.floats(1e-3, 20.0), min_size=len(steps), max_size=len(steps)))
    curve = LossCurve(lrs, steps, losses, name="h")
    path = tmp_path_factory.mktemp("rt") / "h.csv"
    write_csv(curve, path)
    (back,) = read_csv(path)
    assert _same(curve, back)


def test_csv_without_curve_id_is_one_curve_named_after_the_file(tmp_path):
    path = tmp_path / "my-run.csv.gz"
    path.write_bytes(gzip.compress(b"step,lr,loss\n0,0.001,\n1,0.001,4.0\n2,0.0005,3.5\n"))
    (curve,) = read_csv(path)
    assert curve.name == "my-run"
    assert curve.lrs.tolist() == [0.001, 0.001, 0.0005]  # LR at every step: used as it is
    assert curve.steps.tolist() == [1, 2]


def test_csv_lr_interpolation(tmp_path):
    path = tmp_path / "sparse.csv"
    # LR logged at steps 10, 20, 40 only; a loss row without LR at step 30; step 50 past the logs
    path.write_text(
        "curve_id,step,lr,loss\n"
        "r,10,0.001,4.0\nr,20,0.002,3.0\nr,30,,2.5\nr,40,0.001,2.2\nr,50,,2.0\n"
    )
    (curve,) = read_csv(path)
    lrs = curve.lrs
    assert len(lrs) == 51
    assert np.all(lrs[:11] == 0.001)  # before the first log: the first logged LR, held
    assert lrs[15] == pytest.approx(0.0015) and lrs[30] == pytest.approx(0.0015)
    assert np.all(lrs[40:] == 0.001)  # after the last log: held
    (step_wise,) = read_csv(path, lr_interpolation="previous")
    assert step_wise.lrs[19] == 0.001 and step_wise.lrs[20] == 0.002 and step_wise.lrs[39] == 0.002
    with pytest.raises(ValueError, match="lr_interpolation"):
        read_csv(path, lr_interpolation="cubic")


def test_csv_schedule_as_array_and_mapping(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("curve_id,step,lr,loss\nx,4,0.002,3.0\nx,9,0.001,2.5\ny,9,0.001,2.6\n")
    x_lrs = np.r_[np.full(5, 0.002), np.full(7, 0.001)]
    y_lrs = np.full(10, 0.001)
    x, y = read_csv(path, schedule={"x": x_lrs, "y": y_lrs})
    assert np.array_equal(x.lrs, x_lrs) and np.array_equal(y.lrs, y_lrs)
    with pytest.warns(UserWarning, match="step 4 is 0.001, the logged one 0.002"):
        read_csv(path, schedule=y_lrs)
    with pytest.raises(CurveError, match="curve 'y'.*no entry"):
        read_csv(path, schedule={"x": x_lrs})


def test_csv_schedule_object_and_text(tmp_path):
    from hf_lrlaw import schedules

    sched = schedules.Schedule.cosine(1e-3, 100, warmup_steps=10, final_ratio=0.1)
    expected = sched.lrs()
    path = tmp_path / "cos.csv"
    rows = "".join(f"c,{s},{float(expected[s])!r},{3.0 - s / 100}\n" for s in (20, 50, 99))
    path.write_text("curve_id,step,lr,loss\n" + rows)
    for given_as in (sched, str(sched)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the logged LRs agree with the schedule
            (curve,) = read_csv(path, schedule=given_as)
        assert np.array_equal(curve.lrs, expected)
    with pytest.raises(CurveError, match="cannot read the schedule"):
        read_csv(path, schedule="no_such_kind(peak_lr=1)")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("curve_id,step,lr,loss\n", "no data rows"),
        ("curve_id,step,loss\nr,0,1.0\n", "lacks the column.*lr"),
        ("step,lr,lr,loss\n0,1,1,1\n", "repeats the column"),
        (
            "curve_id,step,lr,loss\nr,0,0.001,3\nr,1,abc,2\n",
            r"row 3, column lr: 'abc' is not a number",
        ),
        ("curve_id,step,lr,loss\nr,1.5,0.001,3\n", r"row 2, column step: '1.5' is not a whole"),
        ("curve_id,step,lr,loss\nr,0,0.001\n", "row 2: 3 fields"),
        ("curve_id,step,lr,loss\nr,0,-0.001,3\n", "row 2, column lr: .* >= 0"),
        ("curve_id,step,lr,loss\nr,0,,\n", "row 2: neither lr nor loss"),
        ("curve_id,step,lr,loss\nr,-1,0.001,3\n", "row 2, column step"),
        (
            "curve_id,step,lr,loss\nr,5,0.001,3\nr,2,0.001,2\n",
            "row 3: curve 'r': step 2 comes after step 5",
        ),
        (
            "curve_id,step,lr,loss\nr,5,0.001,3\nq,1,0.001,3\nr,5,0.001,2\n",
            "row 4: curve 'r': step 5 repeats",
        ),
        ("curve_id,step,lr,loss\nr,5,,3\n", "curve 'r': no learning rate"),
        ("curve_id,step,lr,loss\nr,5,0,3\n", "every learning rate is zero"),
    ],
)
def test_malformed_csv(tmp_path, content, match):
    path = tmp_path / "broken.csv"
    path.write_text(content)
    with pytest.raises(CurveError, match=match) as info:
        read_csv(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_broken_gzip_and_binary(tmp_path):
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(b"step,lr,loss\n0,0.001,3\n" * 50)[:30])
    with pytest.raises(CurveError, match="cut.csv.gz: broken gzip"):
        read_csv(path)
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(CurveError, match="binary.csv: not UTF-8"):
        read_csv(path)


def test_write_csv_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.csv"
    write_csv(_curves()[:1], path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_csv(_curves(), path)
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left


def test_write_csv_rejects_duplicate_names_and_nothing(tmp_path):
    curve = _curves()[0]
    with pytest.raises(CurveError, match="two curves are named 'a'"):
        write_csv([curve, curve], tmp_path / "x.csv")
    with pytest.raises(CurveError, match="no curves"):
        write_csv([], tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


# -- JSON and load() ---------------------------------------------------------------------------
def test_load_json_records(tmp_path):
    curves = _curves()
    record = tmp_path / "record.json"
    record.write_text(
        json.dumps({"schema": "hf-lrlaw/record/1", "curves": [c.to_dict() for c in curves]})
    )
    assert all(_same(a, b) for a, b in zip(curves, load(record)))
    single = tmp_path / "one.json"
    single.write_text(json.dumps(curves[1].to_dict()))
    assert _same(load(single)[0], curves[1])
    listed = tmp_path / "list.json.gz"
    listed.write_bytes(gzip.compress(json.dumps([c.to_dict() for c in curves]).encode()))
    assert len(load(listed)) == 3


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.json", "", "empty file"),
        ("bad.json", '{"curves": [', "not valid JSON"),
        ("other.json", '{"hello": 1}', "expected {'curves'"),
        ("notlist.json", '{"curves": 3}', "'curves' must be a list"),
        (
            "item.json",
            '{"curves": [{"lrs": [0.001], "steps": [3], "losses": [1.0]}]}',
            r"curves\[0\]: .*step 3",
        ),
        ("state.json", '{"log_history": [{"step": 5}]}', "no 'loss' in log_history"),
        ("curves.txt", "x", "unknown kind of file"),
    ],
)
def test_malformed_json_and_unknown_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CurveError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


def test_trainer_state_edge_cases(tmp_path):
    state = {
        "max_steps": 6,
        "log_history": [
            {"eval_loss": 5.5, "step": 0},  # eval_on_start: the untrained model, dropped
            {
                "loss": 5.0,
                "learning_rate": 1e-3,
                "step": 2,
            },  # includes the untrained model: dropped
            {"loss": 4.0, "learning_rate": 8e-4, "step": 4},
            {"eval_loss": 3.9, "step": 4},
            {"eval_loss": 3.8, "step": 4},  # evaluated again at the same step: the last one wins
            {"loss": 3.5, "learning_rate": 6e-4, "step": 6},
            {"train_loss": 4.2, "train_runtime": 1.0, "step": 6},
        ],
    }
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(state))
    train = read_trainer_state(path)
    assert train.steps.tolist() == [2, 4] and train.windows.tolist() == [2, 2]
    assert train.losses.tolist() == [4.0, 3.5]
    assert train.lrs == pytest.approx([1e-3, 1e-3, 9e-4, 8e-4, 7e-4, 6e-4])
    evals = read_trainer_state(tmp_path, metric="eval_loss")
    assert evals.steps.tolist() == [3] and evals.losses.tolist() == [3.8] and evals.windows is None
    with pytest.raises(CurveError, match="no 'eval_accuracy' in log_history; it logs"):
        read_trainer_state(path, metric="eval_accuracy")
    state["log_history"][2]["step"] = 1
    path.write_text(json.dumps(state))
    with pytest.raises(CurveError, match=r"log_history\[2\]: step 1 comes after step 2"):
        read_trainer_state(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CurveError, match="no trainer_state.json"):
        read_trainer_state(tmp_path / "empty")


# -- a real transformers Trainer run -------------------------------------------------------------
MAX_STEPS, LOGGING_STEPS, EVAL_STEPS, WARMUP, PEAK = 20, 5, 10, 4, 1e-3


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory):
    import torch
    import transformers

    class Bytes(torch.utils.data.Dataset):
        def __init__(self, n: int, seed: int) -> None:
            generator = torch.Generator().manual_seed(seed)
            self.data = torch.randint(0, 256, (n, 32), generator=generator)

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.data[i], "labels": self.data[i]}

    class RecordLR(transformers.TrainerCallback):
        """The LR each optimizer update actually uses."""

        def __init__(self) -> None:
            self.lrs: list[float] = []

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            self.lrs.append(optimizer.param_groups[0]["lr"])

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=256, n_positions=64)
    out = tmp_path_factory.mktemp("run") / "tiny-gpt2"
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=MAX_STEPS,
        logging_steps=LOGGING_STEPS,
        eval_strategy="steps",
        eval_steps=EVAL_STEPS,
        save_strategy="steps",
        save_steps=MAX_STEPS,
        learning_rate=PEAK,
        lr_scheduler_type="linear",
        warmup_steps=WARMUP,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        seed=0,
    )
    recorder = RecordLR()
    trainer = transformers.Trainer(
        model=transformers.GPT2LMHeadModel(config),
        args=args,
        train_dataset=Bytes(48, 1),
        eval_dataset=Bytes(16, 2),
        callbacks=[recorder],
    )
    trainer.train()
    return out, trainer.state.log_history, np.array(recorder.lrs)


def test_trainer_state_from_a_real_run(trainer_run):
    out, history, actual = trainer_run
    assert len(actual) == MAX_STEPS
    train_logs = [e for e in history if "loss" in e]
    eval_logs = [e for e in history if "eval_loss" in e]
    assert [e["step"] for e in train_logs] == [5, 10, 15, 20]
    # the logged learning_rate is the LR the update with that global step used
    for e in train_logs:
        assert e["learning_rate"] == pytest.approx(actual[e["step"] - 1], rel=1e-12)

    checkpoint = out / f"checkpoint-{MAX_STEPS}"
    curve = read_trainer_state(out)  # the output_dir: its newest checkpoint
    assert curve.name == f"tiny-gpt2/checkpoint-{MAX_STEPS}"
    assert curve.meta["source"] == str(checkpoint / "trainer_state.json")
    assert curve.meta["logging_steps"] == LOGGING_STEPS and curve.meta["max_steps"] == MAX_STEPS
    # train loss at global step g averages the updates since the last log, each computed on
    # the model before that update: step g - 2, window g - previous; the first log is dropped
    assert curve.steps.tolist() == [8, 13, 18]
    assert curve.windows.tolist() == [5, 5, 5]
    assert curve.losses.tolist() == [e["loss"] for e in train_logs[1:]]
    # LRs: the logged ones at g - 1, straight lines between them (exact for linear decay),
    # the first logged LR held before step 4 (the warmup before the first log is unknown)
    assert len(curve.lrs) == MAX_STEPS
    np.testing.assert_allclose(curve.lrs[WARMUP:], actual[WARMUP:], rtol=1e-12)
    assert np.all(curve.lrs[:WARMUP] == actual[LOGGING_STEPS - 1])

    evals = read_trainer_state(checkpoint / "trainer_state.json", metric="eval_loss")
    assert evals.steps.tolist() == [EVAL_STEPS - 1, 2 * EVAL_STEPS - 1]
    assert evals.windows is None
    assert evals.losses.tolist() == [e["eval_loss"] for e in eval_logs]

    assert _same(load(checkpoint)[0], curve)
    assert _same(load(checkpoint / "trainer_state.json")[0], curve)


def test_trainer_state_with_schedule(trainer_run):
    out, _, actual = trainer_run
    with_array = read_trainer_state(out, schedule=actual)
    np.testing.assert_array_equal(with_array.lrs, actual)
    longer = np.r_[actual, np.full(10, actual[-1])]
    with pytest.warns(UserWarning, match="schedule has 30 steps but the run's max_steps is 20"):
        read_trainer_state(out, schedule=longer)
    from hf_lrlaw import schedules

    sched = schedules.Schedule.linear(PEAK, MAX_STEPS, warmup_steps=WARMUP)
    for given_as in (sched, str(sched)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # agrees with the logged LRs
            curve = read_trainer_state(out, schedule=given_as)
        np.testing.assert_allclose(curve.lrs, actual, rtol=1e-12, atol=0)
    with pytest.warns(UserWarning, match="logged one"):
        read_trainer_state(out, schedule=schedules.Schedule.constant(PEAK, MAX_STEPS))
