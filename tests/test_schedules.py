"""Schedule: exact agreement with transformers' schedulers, text/dict/JSON round trips, shapes."""

from __future__ import annotations

import contextlib
import io
import json
import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from transformers import get_scheduler

from hf_lrlaw.schedules import KINDS, Schedule, ScheduleError, cosine_curve, wsd_curve

RTOL = 1e-12


def _optimizer(lr: float, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def _stepped(optimizer: torch.optim.Optimizer, scheduler, steps: int, group: int = 0) -> np.ndarray:
    """The LR of each update, read before every ``scheduler.step()``, as the Trainer steps it."""
    out = np.empty(steps)
    for i in range(steps):
        out[i] = optimizer.param_groups[group]["lr"]
        optimizer.step()
        scheduler.step()
    return out


def _hf_lrs(s: Schedule) -> np.ndarray:
    name, kwargs = s.to_hf()
    optimizer = _optimizer(s.peak_lr)
    scheduler = get_scheduler(
        name,
        optimizer,
        num_warmup_steps=s.warmup_steps,
        num_training_steps=s.total_steps,
        scheduler_specific_kwargs=kwargs,
    )
    return _stepped(optimizer, scheduler, s.total_steps)


def _close(actual: np.ndarray, expected: np.ndarray, peak: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-15 * peak)


# -- exact agreement with transformers -------------------------------------------------------------

HF_CASES = (
    [
        # (schedule, expected lr_scheduler_type)
        (Schedule.constant(1e-3, 50), "constant"),
        (Schedule.constant(1e-3, 50, warmup_steps=7), "constant_with_warmup"),
        (Schedule.constant(1e-3, 50, warmup_steps=7, warmup_shape="cosine"), "warmup_stable_decay"),
        (
            Schedule.constant(1e-3, 50, warmup_steps=7, warmup_start_ratio=0.2),
            "warmup_stable_decay",
        ),
        (Schedule.linear(3e-4, 97), "linear"),
        (Schedule.linear(3e-4, 97, warmup_steps=10), "linear"),
        (Schedule.linear(3e-4, 97, warmup_steps=10, final_ratio=0.1), "polynomial"),
        (Schedule.linear(3e-4, 97, final_ratio=0.25), "polynomial"),
        (Schedule.linear(3e-4, 97, warmup_steps=10, final_ratio=1.0), "constant_with_warmup"),
        (
            Schedule.linear(
                3e-4,
                97,
                warmup_steps=10,
                warmup_shape="1-sqrt",
                warmup_start_ratio=0.1,
                final_ratio=0.1,
            ),
            "warmup_stable_decay",
        ),
        (Schedule.cosine(6e-4, 200), "cosine"),
        (Schedule.cosine(6e-4, 200, warmup_steps=13), "cosine"),
        (Schedule.cosine(6e-4, 200, final_ratio=0.1), "cosine_with_min_lr"),
        (Schedule.cosine(6e-4, 200, warmup_steps=13, final_ratio=0.1), "cosine_with_min_lr"),
        (Schedule.cosine(6e-4, 200, warmup_steps=13, warmup_shape="cosine"), "warmup_stable_decay"),
        (Schedule.cosine(1.0, 1000, warmup_steps=100), "cosine"),
        (Schedule.inverse_sqrt(1e-3, 300), "inverse_sqrt"),
        (Schedule.inverse_sqrt(1e-3, 300, warmup_steps=20), "inverse_sqrt"),
        (Schedule.inverse_sqrt(1e-3, 300, warmup_steps=20, timescale=7), "inverse_sqrt"),
        (Schedule.inverse_sqrt(1e-3, 300, timescale=50), "inverse_sqrt"),
    ]
    + [
        (
            Schedule.wsd(
                2e-3,
                240,
                warmup_steps=warmup,
                warmup_shape=warmup_shape,
                warmup_start_ratio=final if warmup else 0.0,
                decay_fraction=fraction,
                decay_shape=shape,
                final_ratio=final,
            ),
            "warmup_stable_decay",
        )
        for shape in ("linear", "cosine", "1-sqrt")
        for final in (0.0, 0.1)
        for warmup, warmup_shape in ((0, "linear"), (24, "linear"), (24, "cosine"), (11, "1-sqrt"))
        for fraction in (0.2, 0.333)
    ]
    + [
        (Schedule.wsd(1e-3, 100, decay_fraction=0.0), "warmup_stable_decay"),
        (Schedule.wsd(1e-3, 100, warmup_steps=10, decay_fraction=0.9), "warmup_stable_decay"),
        (Schedule.wsd(1e-3, 100, decay_fraction=1.0, final_ratio=0.5), "warmup_stable_decay"),
    ]
)


@pytest.mark.parametrize(("schedule", "hf_name"), HF_CASES, ids=[str(s) for s, _ in HF_CASES])
def test_to_hf_matches_transformers_scheduler_step_by_step(
    schedule: Schedule, hf_name: str
) -> None:
    assert schedule.to_hf()[0] == hf_name
    _close(_hf_lrs(schedule), schedule.lrs(), schedule.peak_lr)


def test_to_training_args_through_a_real_trainer(tmp_path) -> None:
    from transformers import Trainer, TrainingArguments

    for s in (
        Schedule.wsd(1e-3, 60, warmup_steps=6, warmup_start_ratio=0.1, final_ratio=0.1),
        Schedule.cosine(5e-4, 60, warmup_steps=5, final_ratio=0.05),
    ):
        args = TrainingArguments(
            output_dir=str(tmp_path), **s.to_training_args(), use_cpu=True, report_to=[]
        )
        trainer = Trainer(model=torch.nn.Linear(2, 1), args=args)
        trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
        lrs = _stepped(trainer.optimizer, trainer.lr_scheduler, s.total_steps)
        _close(lrs, s.lrs(), s.peak_lr)


def test_to_training_args_fields() -> None:
    s = Schedule.wsd(3e-4, 24000, warmup_steps=2160, warmup_start_ratio=0.1, final_ratio=0.1)
    assert s.to_training_args() == {
        "learning_rate": 3e-4,
        "max_steps": 24000,
        "warmup_steps": 2160,
        "lr_scheduler_type": "warmup_stable_decay",
        "lr_scheduler_kwargs": {
            "num_decay_steps": 4800,
            "decay_type": "linear",
            "min_lr_ratio": 0.1,
            "warmup_type": "linear",
        },
    }
    assert Schedule.cosine(1e-3, 10, final_ratio=0.1).to_hf() == (
        "cosine_with_min_lr",
        {"min_lr_rate": 0.1},
    )
    assert Schedule.inverse_sqrt(1e-3, 10).to_hf() == ("inverse_sqrt", {"timescale": 10_000})


NO_HF = [
    (Schedule.multistep(1e-3, 100), "no multistep scheduler"),
    (Schedule.two_stage(1e-3, 100), "no two_stage scheduler"),
    (Schedule.cyclic(1e-3, 100, warmup_steps=5), "no cyclic scheduler"),
    (Schedule.piecewise(1e-3, 100, at=[0, 1], ratios=[1, 0]), "no piecewise scheduler"),
    (Schedule.free_form([0.1, 0.2, 0.1]), "no free_form scheduler"),
    (Schedule.wsd(1e-3, 100, decay_shape="exponential", final_ratio=0.1), "exponential"),
    (Schedule.wsd(1e-3, 100, warmup_steps=10, final_ratio=0.1), "warmup_start_ratio=0.1"),
    (Schedule.cosine(1e-3, 100, warmup_steps=10, warmup_shape="cosine", final_ratio=0.1), "min_lr"),
    (Schedule.inverse_sqrt(1e-3, 100, warmup_steps=10, warmup_shape="cosine"), "linearly from 0"),
]


@pytest.mark.parametrize(("schedule", "reason"), NO_HF, ids=[str(s)[:60] for s, _ in NO_HF])
def test_to_hf_refuses_what_transformers_cannot_do_exactly(schedule: Schedule, reason: str) -> None:
    with pytest.raises(ScheduleError, match="no transformers scheduler is exactly") as err:
        schedule.to_hf()
    assert reason in str(err.value)
    assert "to_torch" in str(err.value)
    with pytest.raises(ScheduleError):
        schedule.to_training_args()


# -- torch adapter --------------------------------------------------------------------------------

ALL_KINDS = [
    Schedule.constant(1e-3, 80, warmup_steps=8, warmup_shape="1-sqrt"),
    Schedule.cosine(1e-3, 80, warmup_steps=8, final_ratio=0.1),
    Schedule.linear(1e-3, 80, final_ratio=0.3),
    Schedule.wsd(1e-3, 80, warmup_steps=8, decay_shape="exponential", final_ratio=0.01),
    Schedule.multistep(1e-3, 80, warmup_steps=8),
    Schedule.two_stage(1e-3, 80, switch_fraction=0.6, second_ratio=0.2),
    Schedule.inverse_sqrt(1e-3, 80, warmup_steps=8),
    Schedule.cyclic(1e-3, 80, warmup_steps=8, cycles=3, rewarmup_steps=4),
    Schedule.piecewise(1e-3, 80, warmup_steps=8, at=[0, 0.5, 0.9, 1], ratios=[1, 1, 0.3, 0.01]),
    Schedule.free_form(np.linspace(0.0, 2e-3, 80) ** 0.5, name="sqrt ramp"),
]


def test_every_kind_is_covered() -> None:
    assert sorted({s.kind for s in ALL_KINDS}) == sorted(KINDS)


@pytest.mark.parametrize("schedule", ALL_KINDS, ids=[s.kind for s in ALL_KINDS])
def test_to_torch_matches_lrs_and_holds_the_last_lr(schedule: Schedule) -> None:
    optimizer = _optimizer(123.0)  # to_torch sets the base LR to peak_lr
    scheduler = schedule.to_torch(optimizer)
    lrs = _stepped(optimizer, scheduler, schedule.total_steps + 5)
    expected = schedule.lrs()
    _close(lrs[: schedule.total_steps], expected, schedule.peak_lr)
    _close(lrs[schedule.total_steps :], np.full(5, expected[-1]), schedule.peak_lr)


def test_to_torch_keeps_group_lrs_when_asked_and_survives_a_checkpoint() -> None:
    s = Schedule.cyclic(1.0, 40, warmup_steps=4, cycles=2, min_ratio=0.2)
    optimizer = torch.optim.SGD(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1.0},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5},
        ]
    )
    scheduler = s.to_torch(optimizer, set_lr=False)
    first = _stepped(optimizer, scheduler, 15, group=1)
    _close(first, 0.5 * s.lrs()[:15], 1.0)

    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)  # as the Trainer saves scheduler.pt
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # as the Trainer loads it when resuming
    resumed_opt = _optimizer(9.0, groups=2)
    resumed = Schedule.constant(1.0, 3).to_torch(resumed_opt)  # any table: the state replaces it
    resumed.load_state_dict(state)
    for group, lr in zip(resumed_opt.param_groups, resumed.get_last_lr()):
        group["lr"] = lr  # what loading the optimizer's own state dict does
    _close(_stepped(resumed_opt, resumed, 25, group=1), 0.5 * s.lrs()[15:], 1.0)
    assert pickle.loads(pickle.dumps(scheduler.lr_lambdas[0]))(7) == scheduler.lr_lambdas[0](7)


# -- shapes that cannot pass by accident ----------------------------------------------------------


def test_warmup_is_transformers_linear_warmup() -> None:
    lrs = Schedule.cosine(2.0, 100, warmup_steps=10).lrs()
    assert lrs[0] == 0.0
    np.testing.assert_array_equal(lrs[:10], 2.0 * np.arange(10) / 10)
    assert lrs[10] == 2.0
    started = Schedule.constant(1.0, 20, warmup_steps=10, warmup_start_ratio=0.1).lrs()
    assert started[0] == 0.1 and started[5] == pytest.approx(0.55) and started[10] == 1.0


def test_wsd_is_stable_then_decays_linearly_to_final_ratio() -> None:
    s = Schedule.wsd(3e-4, 24000, warmup_steps=2160, decay_fraction=0.2, final_ratio=0.1)
    lrs = s.lrs()
    stable_end = 24000 - 4800
    assert np.all(lrs[2160:stable_end] == 3e-4)
    assert lrs[stable_end] == 3e-4  # progress 0 of the decay
    assert lrs[stable_end + 1] < 3e-4
    assert np.all(np.diff(lrs[stable_end:]) < 0)
    # transformers' arithmetic: the last update (index T-1) is one decay step before final_ratio
    assert lrs[-1] == pytest.approx(3e-4 * (0.1 + 0.9 / 4800), rel=1e-12)
    # and the curve itself reaches final_ratio at progress 1 (step T)
    for shape in ("linear", "cosine", "1-sqrt", "exponential"):
        at_end = wsd_curve(
            np.array([24000]), 24000, 2160, decay_fraction=0.2, decay_shape=shape, final_ratio=0.1
        )
        assert at_end[0] == pytest.approx(0.1, rel=1e-12)


def test_wsd_exponential_is_geometric() -> None:
    lrs = Schedule.wsd(
        1.0, 100, decay_fraction=0.5, decay_shape="exponential", final_ratio=0.01
    ).lrs()
    ratios = lrs[51:] / lrs[50:-1]
    np.testing.assert_allclose(ratios, np.full(49, 0.01 ** (1 / 50)), rtol=1e-12)


def test_multistep_8_1_1_drops_at_80_and_90_percent() -> None:
    lrs = Schedule.multistep(1e-3, 1000, warmup_steps=50).lrs()
    assert np.all(lrs[50:800] == 1e-3)
    assert np.all(lrs[800:900] == pytest.approx(1e-3 * 0.316))
    assert np.all(lrs[900:] == pytest.approx(1e-3 * 0.316**2))


def test_two_stage_switches_once() -> None:
    lrs = Schedule.two_stage(3e-4, 100, switch_fraction=0.3, second_ratio=0.1).lrs()
    assert np.all(lrs[:30] == 3e-4) and np.all(lrs[30:] == pytest.approx(3e-5))


def test_cosine_reaches_final_ratio_at_progress_one() -> None:
    assert cosine_curve(np.array([110]), 110, 10, final_ratio=0.1)[0] == pytest.approx(
        0.1, rel=1e-12
    )
    lrs = Schedule.cosine(1.0, 110, warmup_steps=10, final_ratio=0.1).lrs()
    assert lrs[10] == 1.0 and lrs[60] == pytest.approx(0.55, rel=1e-12)
    assert np.all(np.diff(lrs[10:]) < 0) and lrs[-1] > 0.1


def test_cyclic_restarts_with_rewarmup() -> None:
    s = Schedule.cyclic(1.0, 310, warmup_steps=10, cycles=3, min_ratio=0.1, rewarmup_steps=20)
    lrs = s.lrs()
    # cycles of 100 steps after the 10 warmup steps; the first has no re-warmup
    for start, last_progress in ((110, 99 / 100), (210, 79 / 80)):
        assert lrs[start - 1] == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * last_progress)))
        assert lrs[start] == pytest.approx(0.1)
        np.testing.assert_allclose(lrs[start : start + 20], 0.1 + 0.9 * np.arange(20) / 20)
        assert lrs[start + 20] == 1.0
    one = Schedule.cyclic(1e-3, 300, warmup_steps=30, cycles=1, min_ratio=0.2)
    np.testing.assert_array_equal(
        one.lrs(), Schedule.cosine(1e-3, 300, warmup_steps=30, final_ratio=0.2).lrs()
    )


def test_inverse_sqrt_default_timescale_is_transformers() -> None:
    assert Schedule.inverse_sqrt(1e-3, 100).param("timescale") == 10_000
    assert Schedule.inverse_sqrt(1e-3, 100, warmup_steps=9).param("timescale") == 9


def test_free_form_keeps_its_array() -> None:
    raw = np.array([0.0, 1e-4, 3e-4, 2e-4])
    s = Schedule.free_form(raw, name="mine")
    assert s.peak_lr == 3e-4 and len(s) == 4 and s.param("name") == "mine"
    np.testing.assert_array_equal(s.lrs(), raw)
    assert s == Schedule.free_form(raw.tolist(), name="mine") != Schedule.free_form(raw)


def test_replace_scaled_with_total_steps() -> None:
    s = Schedule.wsd(1e-3, 1000, warmup_steps=100, decay_fraction=0.2)
    assert s.replace(final_ratio=0.1) == Schedule.wsd(
        1e-3, 1000, warmup_steps=100, decay_fraction=0.2, final_ratio=0.1
    )
    np.testing.assert_allclose(s.scaled(2e-3).lrs(), 2 * s.lrs(), rtol=1e-15)
    longer = s.with_total_steps(2000)
    assert longer.warmup_steps == 100 and longer.param("decay_fraction") == 0.2
    assert np.all(longer.lrs()[100:1600] == 1e-3)
    free = Schedule.free_form([1.0, 2.0, 3.0])
    assert free.scaled(6.0).lrs().tolist() == [2.0, 4.0, 6.0]
    np.testing.assert_allclose(free.with_total_steps(5).lrs(), [1.0, 1.5, 2.0, 2.5, 3.0])
    np.testing.assert_allclose(
        Schedule.cosine(1.0, 50).relative(), Schedule.cosine(3.0, 50).lrs() / 3
    )
    with pytest.raises(ScheduleError, match="free_form takes total_steps and peak_lr"):
        free.replace(peak_lr=2.0)


# -- text, dict, JSON -----------------------------------------------------------------------------


def test_text_form_examples() -> None:
    s = Schedule.wsd(3e-4, 24000, warmup_steps=2160, decay_fraction=0.2, final_ratio=0.1)
    text = (
        "wsd(peak_lr=0.0003, total_steps=24000, warmup_steps=2160, decay_fraction=0.2, "
        "decay_shape=linear, final_ratio=0.1)"
    )
    assert str(s) == text and Schedule.parse(text) == s
    assert str(Schedule.multistep(1e-3, 100)) == (
        "multistep(peak_lr=0.001, total_steps=100, warmup_steps=0, milestones=[0.8, 0.9], "
        "factor=0.316)"
    )
    assert str(Schedule.free_form([0.5, 1.0], name="x")) == "free_form(lrs=[0.5, 1.0], name='x')"
    shaped = Schedule.wsd(1e-3, 100, warmup_steps=5, warmup_shape="1-sqrt", decay_shape="1-sqrt")
    assert "warmup_shape=1-sqrt" in str(shaped) and Schedule.parse(str(shaped)) == shaped


def test_parse_is_forgiving_about_form() -> None:
    s = Schedule.wsd(3e-4, 24000, warmup_steps=2160, decay_shape="1-sqrt", final_ratio=0.1)
    for text in (
        "wsd(peak_lr=3e-4,total_steps=24000,warmup_steps=2160,decay_shape='1-sqrt',final_ratio=0.1)",
        "  WSD ( peak_lr = 0.0003 , total_steps = 2.4e4 , warmup_steps = 2160 ,\n"
        ' decay_shape = "1-sqrt", final_ratio = 1e-1 , )  ',
        "warmup_stable_decay(final_ratio=0.1, decay_shape=1 - sqrt, warmup_steps=2160, "
        "total_steps=24000, peak_lr=0.0003, decay_fraction=0.2)",
    ):
        assert Schedule.parse(text) == s
    assert Schedule.parse("two-stage(peak_lr=1, total_steps=10)") == Schedule.two_stage(1.0, 10)
    assert Schedule.parse("inverse-sqrt(peak_lr=1, total_steps=10)").kind == "inverse_sqrt"
    assert Schedule.parse("multistep(peak_lr=1, total_steps=10, milestones=(0.5,))").param(
        "milestones"
    ) == (0.5,)


def test_parse_takes_left_out_common_parameters_from_defaults() -> None:
    run = {"peak_lr": 3e-4, "total_steps": 24000, "warmup_steps": 2160}
    full = "wsd(peak_lr=3e-4, total_steps=24000, warmup_steps=2160, decay_fraction=0.2)"
    assert Schedule.parse("wsd(decay_fraction=0.2)", defaults=run) == Schedule.parse(full)
    given = Schedule.parse("cosine(peak_lr=1e-3, warmup_steps=0)", defaults=run)
    assert (given.peak_lr, given.total_steps, given.warmup_steps) == (1e-3, 24000, 0)
    assert Schedule.parse("free_form(lrs=[1.0, 0.5])", defaults=run).total_steps == 2
    with pytest.raises(ScheduleError, match="defaults can only be peak_lr"):
        Schedule.parse("wsd()", defaults={**run, "decay_fraction": 0.2})
    with pytest.raises(ScheduleError, match="missing parameter peak_lr"):
        Schedule.parse("wsd(decay_fraction=0.2)", defaults={"total_steps": 10})


MALFORMED = [
    ("", "expected kind"),
    ("cosine", "expected kind"),
    ("cosine(peak_lr=1, total_steps=10", "matching parentheses"),
    ("cosine peak_lr=1, total_steps=10)", "expected kind"),
    ("nope(peak_lr=1, total_steps=10)", "unknown schedule kind 'nope'"),
    ("cosine(peak_lr=abc, total_steps=10)", "peak_lr must be a number"),
    ("cosine(peak_lr=1e-3e, total_steps=10)", "cannot read"),
    ("cosine(peak_lr=1, total_steps=10.5)", "total_steps must be a whole number"),
    ("cosine(peak_lr=1)", "missing parameter total_steps"),
    ("cosine(total_steps=10)", "missing parameter peak_lr"),
    ("cosine(peak_lr=1, total_steps=10, bogus=2)", "unknown parameter 'bogus' for cosine"),
    ("cosine(peak_lr=1, total_steps=10, peak_lr=2)", "more than once"),
    ("cosine(1e-3, 10)", "name=value"),
    ("cosine(peak_lr=1, total_steps=10)(x=1)", "extra text"),
    ("cosine(peak_lr=1, total_steps=10, final_ratio=[0.1])", "final_ratio must be a number"),
    ("cosine(peak_lr=1, total_steps=10, final_ratio=True)", "cannot read value"),
    ("cosine(peak_lr=__import__('os'), total_steps=10)", "cannot read value"),
    ("wsd(peak_lr=1, total_steps=10, decay_shape=quadratic)", "unknown decay_shape 'quadratic'"),
    ("free_form(lrs=[[1.0]])", "nested lists"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_parse_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=None) as err:
        Schedule.parse(text)
    assert message in str(err.value)


def test_dict_and_json_forms() -> None:
    s = Schedule.multistep(1e-3, 100, warmup_steps=5, milestones=(0.5, 0.75), factor=0.1)
    d = s.to_dict()
    assert d == {
        "kind": "multistep",
        "peak_lr": 1e-3,
        "total_steps": 100,
        "warmup_steps": 5,
        "warmup_shape": "linear",
        "warmup_start_ratio": 0.0,
        "milestones": [0.5, 0.75],
        "factor": 0.1,
    }
    assert Schedule.from_dict(d) == s and Schedule.from_json(json.dumps(d)) == s
    assert Schedule.from_dict(
        {"kind": "cosine", "peak_lr": 1, "total_steps": 5}
    ) == Schedule.cosine(1.0, 5)
    for bad, message in (
        ("{", "cannot be read"),
        ("[1, 2]", "must be a mapping"),
        ('{"peak_lr": 1}', "needs a 'kind'"),
        ('{"kind": "cosine", "peak_lr": 1, "total_steps": 5, "x": 1}', "unknown parameter 'x'"),
    ):
        with pytest.raises(ScheduleError, match=message):
            Schedule.from_json(bad)


def test_equality_and_hash_by_value() -> None:
    a = Schedule.cosine(1e-3, 100, warmup_steps=10)
    b = Schedule("cosine", 0.001, 100, 10, param_items={"final_ratio": 0})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != a.replace(final_ratio=0.1) and a != "cosine"
    assert a.params["final_ratio"] == 0.0
    with pytest.raises(TypeError):
        a.params["final_ratio"] = 1.0  # type: ignore[index]
    with pytest.raises(ScheduleError, match="has no parameter"):
        a.param("factor")


# -- validation -----------------------------------------------------------------------------------

INVALID = [
    (lambda: Schedule.cosine(0.0, 10), "peak_lr must be > 0"),
    (lambda: Schedule.cosine(-1e-3, 10), "peak_lr must be > 0"),
    (lambda: Schedule.cosine(float("nan"), 10), "peak_lr must be finite"),
    (lambda: Schedule.cosine(1e-3, 0), "total_steps must be >= 1"),
    (
        lambda: Schedule.cosine(1e-3, 10, warmup_steps=10),
        "warmup_steps must be in [0, total_steps)",
    ),
    (lambda: Schedule.cosine(1e-3, 10, warmup_steps=-1), "warmup_steps must be in"),
    (lambda: Schedule.cosine(1e-3, 10, warmup_shape="step"), "unknown warmup_shape 'step'"),
    (lambda: Schedule.cosine(1e-3, 10, final_ratio=1.5), "final_ratio must be in [0.0, 1.0]"),
    (lambda: Schedule.wsd(1e-3, 10, decay_fraction=-0.1), "decay_fraction must be in"),
    (lambda: Schedule.wsd(1e-3, 100, warmup_steps=90, decay_fraction=0.2), "20 decay steps"),
    (lambda: Schedule.wsd(1e-3, 100, decay_shape="exponential"), "needs final_ratio > 0"),
    (lambda: Schedule.multistep(1e-3, 100, milestones=(0.9, 0.8)), "strictly increasing"),
    (lambda: Schedule.multistep(1e-3, 100, milestones=(1.0,)), "each milestone must be in"),
    (lambda: Schedule.multistep(1e-3, 100, factor=0.0), "factor must be in"),
    (lambda: Schedule.multistep(1e-3, 100, warmup_steps=85), "not after the warmup"),
    (lambda: Schedule.two_stage(1e-3, 100, switch_fraction=1.0), "switch_fraction must be in"),
    (lambda: Schedule.two_stage(1e-3, 100, second_ratio=2.0), "second_ratio must be in"),
    (lambda: Schedule.inverse_sqrt(1e-3, 100, timescale=0), "timescale must be >= 1"),
    (lambda: Schedule.cyclic(1e-3, 100, cycles=0), "cycles must be >= 1"),
    (lambda: Schedule.cyclic(1e-3, 100, cycles=4, rewarmup_steps=25), "leaves no decay"),
    (lambda: Schedule.piecewise(1e-3, 100, at=[0, 1], ratios=[1]), "as many ratios as knots"),
    (
        lambda: Schedule.piecewise(1e-3, 100, at=[0, 0.5, 0.5, 1], ratios=[1] * 4),
        "increase strictly",
    ),
    (lambda: Schedule.piecewise(1e-3, 100, at=[0.1, 1], ratios=[1, 0]), "from 0 to 1"),
    (lambda: Schedule.piecewise(1e-3, 100, at=[0, 1], ratios=[1, 1.5]), "each ratio must be in"),
    (lambda: Schedule.piecewise(1e-3, 100, at=[0, 1], ratios=[0.5, 0.1]), "start at 1"),
    (lambda: Schedule.free_form([0.1, -0.1]), "negative learning rate -0.1 at step 1"),
    (lambda: Schedule.free_form([0.0, 0.0]), "every learning rate in lrs is zero"),
    (lambda: Schedule.free_form([]), "non-empty"),
    (lambda: Schedule.free_form([0.1, float("inf")]), "NaN or inf at step 1"),
    (
        lambda: Schedule.make("cosine", peak_lr=1, total_steps=5, decay=1),
        "unknown parameter 'decay'",
    ),
    (lambda: Schedule.make("spline", peak_lr=1, total_steps=5), "unknown schedule kind"),
    (lambda: Schedule.make("free_form", lrs=[1.0], warmup_steps=1), "warmup_steps must be in"),
    (lambda: Schedule.make("free_form", lrs=[1.0, 2.0], peak_lr=3.0), "takes total_steps and"),
]


@pytest.mark.parametrize(("build", "message"), INVALID, ids=[m for _, m in INVALID])
def test_validation_names_the_problem(build, message: str) -> None:
    with pytest.raises(ScheduleError) as err:
        build()
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


# -- properties -----------------------------------------------------------------------------------

_ratio = st.floats(0.0, 1.0)
_shape = st.sampled_from(["linear", "cosine", "1-sqrt"])


def _knots(draw: st.DrawFn) -> dict[str, list[float]]:
    inner = sorted(set(draw(st.lists(st.floats(0.001, 0.999), max_size=6))))
    ratios = draw(st.lists(_ratio, min_size=len(inner) + 2, max_size=len(inner) + 2))
    ratios[0] = 1.0
    return {"at": [0.0, *inner, 1.0], "ratios": ratios}


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    kind = draw(st.sampled_from(KINDS))
    if kind == "free_form":
        lrs = draw(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=60))
        assume(max(lrs) > 0)
        name = draw(st.none() | st.text(max_size=10))
        return Schedule.free_form(lrs, name=name)
    total = draw(st.integers(1, 3000))
    common = {
        "peak_lr": draw(st.floats(1e-8, 10.0)),
        "total_steps": total,
        "warmup_steps": draw(st.integers(0, total - 1)),
        "warmup_shape": draw(_shape),
        "warmup_start_ratio": draw(st.sampled_from([0.0, 0.1]) | _ratio),
    }
    params = {
        "constant": {},
        "cosine": {"final_ratio": draw(_ratio)},
        "linear": {"final_ratio": draw(_ratio)},
        "wsd": {
            "decay_fraction": draw(_ratio),
            "decay_shape": draw(st.sampled_from(["linear", "cosine", "1-sqrt", "exponential"])),
            "final_ratio": draw(st.floats(1e-6, 1.0)),
        },
        "multistep": {
            "milestones": sorted(set(draw(st.lists(st.floats(0.01, 0.99), max_size=3)))),
            "factor": draw(st.floats(0.01, 1.0)),
        },
        "two_stage": {
            "switch_fraction": draw(st.floats(0.01, 0.99)),
            "second_ratio": draw(_ratio),
        },
        "inverse_sqrt": {"timescale": draw(st.none() | st.integers(1, 10**6))},
        "cyclic": {
            "cycles": draw(st.integers(1, 5)),
            "min_ratio": draw(_ratio),
            "rewarmup_steps": draw(st.none() | st.integers(0, 50)),
        },
        "piecewise": _knots(draw),
    }[kind]
    try:
        return Schedule.make(kind, **common, **params)
    except ScheduleError:
        assume(False)
        raise


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(schedules())
def test_round_trips_through_text_dict_and_json(s: Schedule) -> None:
    assert Schedule.parse(str(s)) == s
    assert hash(Schedule.parse(str(s))) == hash(s)
    assert Schedule.from_dict(s.to_dict()) == s
    assert Schedule.from_json(s.to_json()) == s
    assert s.replace() == s


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(schedules())
def test_lrs_are_a_valid_schedule(s: Schedule) -> None:
    lrs = s.lrs()
    assert lrs.dtype == np.float64 and lrs.shape == (s.total_steps,) == (len(s),)
    assert np.all(np.isfinite(lrs)) and np.all(lrs >= 0)
    assert lrs.max() <= s.peak_lr
    if s.kind != "free_form" and s.warmup_steps == 0:
        assert lrs[0] == s.peak_lr
    if s.kind != "free_form" and s.warmup_steps > 0:
        assert lrs[0] == s.peak_lr * s.warmup_start_ratio
        assert lrs[s.warmup_steps] == s.peak_lr


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.from_regex(r"[a-z_\-]{1,12}\(.{0,40}\)", fullmatch=True))
def test_arbitrary_text_raises_only_schedule_error(text: str) -> None:
    with contextlib.suppress(ScheduleError):
        assert isinstance(Schedule.parse(text), Schedule)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(schedules(), st.data())
def test_truncated_and_mutated_text_raises_only_schedule_error(s: Schedule, data) -> None:
    text = str(s)
    cut = data.draw(st.integers(0, len(text) - 1))
    with pytest.raises(ScheduleError):
        Schedule.parse(text[:cut])
    at = data.draw(st.integers(0, len(text)))
    mutated = text[:at] + data.draw(st.text(max_size=3)) + text[at + data.draw(st.integers(0, 3)) :]
    with contextlib.suppress(ScheduleError):
        Schedule.parse(mutated)
    with contextlib.suppress(ScheduleError):
        Schedule.from_json(s.to_json()[:cut])


def test_one_grid_builder_rounds_for_people_and_round_trips():
    from hf_lrlaw.cli import parse_space
    from hf_lrlaw.schedules import schedule_grid, span

    values = span(0.05, 0.6, 34)
    assert 0.4333 in values and 0.433333333333 not in values
    assert all(float(f"{v:.4g}") == v for v in values)
    assert span(100, 1000, 4, integer=True) == (100, 400, 700, 1000)
    grid = schedule_grid(
        "wsd", {"decay_fraction": values, "decay_shape": ["linear", "1-sqrt"]},
        {"peak_lr": 1e-3, "total_steps": 1000, "warmup_steps": 10},
    )  # fmt: skip
    assert len(grid.schedules) == 68 and not grid.skipped
    assert all(Schedule.parse(str(s)) == s for s in grid.schedules)
    assert "decay_fraction=0.4333," in str(grid.schedules[2 * 23])
    # the CLI's --space grammar builds the same candidates with the same rounding
    cli = parse_space(
        "wsd:peak_lr=1e-3;total_steps=1000;warmup_steps=10;decay_fraction=lin(0.05,0.6,34);"
        "decay_shape=linear,1-sqrt"
    )
    assert cli == grid.schedules


def test_parsing_bad_text_raises_no_python_warnings():
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for text in (
            'cosine(peak_lr="\\p", total_steps=10)',
            "cosine(peak_lr=1if, total_steps=10)",
        ):
            with pytest.raises(ScheduleError):
                Schedule.parse(text)
    assert not seen, [str(w.message) for w in seen]
