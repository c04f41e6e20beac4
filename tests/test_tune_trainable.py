"""Real training: ScheduleTrainer runs a schedule exactly, and a small schedule search on a tiny
GPT-2 completes end to end through tune_search.search_schedules and through transformers'
Trainer.hyperparameter_search(backend="ray", search_alg=LRLawSearcher(...))."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import TrainingArguments

from hf_lrlaw import Schedule
from hf_lrlaw.testing import byte_datasets as _byte_datasets
from hf_lrlaw.testing import tiny_gpt2
from tune_search.space import ScheduleSpace
from tune_search.trainable import ScheduleMismatchError, ScheduleTrainer

SEQ = 64


def make_model():
    return tiny_gpt2(seq_len=SEQ)


def byte_datasets():
    return _byte_datasets(seq_len=SEQ, eval_chunks=16)


TRAIN_ARGS = {
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 16,
    "use_cpu": True,
    "dataloader_num_workers": 0,
}


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule.multistep(1e-2, 12, warmup_steps=2, milestones=[0.5, 0.75], factor=0.3),  # torch
        Schedule.wsd(
            1e-2, 12, warmup_steps=2, decay_fraction=0.5, decay_shape="1-sqrt"
        ),  # exact HF
    ],
)
def test_schedule_trainer_runs_the_schedule_exactly(tmp_path, schedule):
    train, val = byte_datasets()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        **{**TRAIN_ARGS, "per_device_train_batch_size": 2},
    )
    trainer = ScheduleTrainer(
        model=make_model(), args=args, train_dataset=train, schedule=str(schedule)
    )
    trainer.train()
    logged = {
        e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e
    }
    steps = sorted(logged)
    assert steps == list(range(1, 13))
    np.testing.assert_allclose(
        [logged[g] for g in steps], schedule.lrs()[[g - 1 for g in steps]], rtol=1e-6, atol=1e-12
    )
    assert trainer.lrlaw_exact == (schedule.kind == "wsd")


def test_schedule_trainer_refuses_another_horizon(tmp_path):
    train, _ = byte_datasets()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", **TRAIN_ARGS)
    trainer = ScheduleTrainer(
        model=make_model(), args=args, train_dataset=train, max_steps_allowed=50
    )
    with pytest.raises(
        ScheduleMismatchError, match="total_steps=80 but this trial runs exactly 50"
    ):
        trainer.set_schedule(Schedule.cosine(1e-3, 80))


@pytest.mark.slow
def test_real_training_search_end_to_end(local_ray, tmp_path):
    from tune_search import LRLawSearcher, search_schedules

    train, val = byte_datasets()
    space = ScheduleSpace(1e-2, 80, 8)  # the default kinds: several hundred candidates
    assert len(space) >= 300
    result = search_schedules(
        model_init=make_model,
        train_dataset=train,
        eval_dataset=val,
        training_args={**TRAIN_ARGS, "eval_steps": 10, "logging_steps": 10},
        space=space,
        metric="eval_loss",
        top_k=2,
        pilot_steps=0.5,
        law_options={"lam": 0.95},
        max_concurrent_trials=2,
        output_dir=tmp_path / "search",
    )
    roles = [(t["role"], t["status"]) for t in result.trials]
    assert roles[:2] == [("pilot", "stopped"), ("pilot", "stopped")]  # half-length pilots
    full = [t for t in result.trials if t["role"] == "candidate" and t["status"] == "finished"]
    assert 1 <= len(full) <= 2 and len(result.trials) <= 4
    assert result.searcher.finished_reason
    assert result.ranking is not None and len(result.ranking) == len(space)
    rec = json.loads(result.files["recommended"].read_text())
    assert rec["source"] == "finished run"
    assert rec["schedule"] in {t["schedule"] for t in full}
    assert result.files["figure"].stat().st_size > 10_000
    for t in result.trials:  # every eval reached the searcher: points every 10 steps
        assert t["steps_run"] in (40, 80)

    # each trial ran with LRLawCallback; its record of a run is a prior for the next search
    records = sorted(Path(result.experiment_path).glob("*/hf/lrlaw/record.json"))
    assert len(records) >= len(full)  # the callback writes its record once it has fitted
    again = LRLawSearcher(space, metric="eval_loss", prior_fit=str(records[-1]), top_k=1)
    assert again.pilots == []
    first = again.suggest("next")
    assert first["schedule"] == str(again.ranking().best.schedule)


@pytest.mark.slow
def test_hyperparameter_search_with_the_searcher(local_ray, tmp_path):
    from tune_search import LRLawSearcher

    train, val = byte_datasets()
    space = ScheduleSpace(
        1e-2,
        60,
        6,
        kinds={
            "constant": {},
            "cosine": {"final_ratio": [0.0, 0.1]},
            "wsd": {
                "decay_fraction": [0.1, 0.2, 0.3],
                "decay_shape": ["linear", "exponential"],
                "final_ratio": [0.01, 0.1],
            },
            "multistep": {"milestones": [[0.8, 0.9]], "factor": [0.3]},
        },
    )
    searcher = LRLawSearcher(space, metric="eval_loss", top_k=1, law_options={"lam": 0.95})
    args = TrainingArguments(
        output_dir=str(tmp_path / "hp"),
        eval_strategy="steps",
        eval_steps=10,
        logging_steps=10,
        max_steps=60,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        **TRAIN_ARGS,
    )
    trainer = ScheduleTrainer(
        model_init=make_model, args=args, train_dataset=train, eval_dataset=val
    )
    best = trainer.hyperparameter_search(
        backend="ray",
        hp_space=lambda _: {},
        n_trials=8,
        direction="minimize",
        search_alg=searcher,
        storage_path=str(tmp_path / "results"),
        name="hps",
        resources_per_trial={"cpu": 1},
        max_concurrent_trials=2,
        verbose=0,
    )
    trials = searcher.trials()
    assert [(t["role"], t["status"], t["steps_run"]) for t in trials] == [
        ("pilot", "stopped", 30),
        ("pilot", "stopped", 30),
        ("candidate", "finished", 60),
    ]
    assert searcher.finished_reason == "top_k=1 candidates ran in full"
    assert "schedule" in best.hyperparameters
    # the objective is the eval loss, not polluted by the "step" the searcher needs
    assert 1.0 < best.objective < 6.0
    pilot, _, full = searcher.curves()
    assert pilot.steps.tolist() == [9, 19, 29]  # eval at global_step g -> step g-1
    assert full.steps.tolist() == [9, 19, 29, 39, 49, 59]
