"""LRLawCallback under DDP: two CPU processes on gloo through torchrun, against one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_lrlaw import LossCurve, fit

SCRIPT = Path(__file__).with_name("ddp_script.py")
TIMEOUT_S = 300  # a hang (ranks disagreeing on a collective) fails here instead of blocking


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    ddp = tmp_path_factory.mktemp("ddp")
    single = tmp_path_factory.mktemp("single")
    torchrun = Path(sys.executable).with_name("torchrun")
    _run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            str(SCRIPT),
            "--out",
            str(ddp),
            "--batch",
            "4",
        ],
        ddp,
    )
    _run([sys.executable, str(SCRIPT), "--out", str(single), "--batch", "8"], single)
    results = {
        "ddp": [json.loads((ddp / f"result-rank{r}.json").read_text()) for r in (0, 1)],
        "single": json.loads((single / "result-rank0.json").read_text()),
    }
    return results, ddp, single


def _record(folder: Path) -> dict:
    return json.loads((folder / "lrlaw" / "record.json").read_text())


@pytest.mark.slow
def test_two_processes_record_what_one_process_records(runs):
    results, ddp, single = runs
    rank0, rank1 = results["ddp"]
    assert rank0["record"]["world_size"] == 2 and rank1["record"]["world_size"] == 2
    mine, reference = _record(ddp / "record" / "rank0"), _record(single / "record" / "rank0")
    (a,), (b,) = mine["curves"], reference["curves"]
    assert a["lrs"] == b["lrs"]  # every step's LR, exactly
    assert a["steps"] == b["steps"] and a["windows"] == b["windows"]
    # the logged loss is the mean over the ranks' halves of the same global batch
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=0.02)
    assert [h["step"] for h in rank0["record"]["history"]][-1] == 40
    assert mine["run"]["world_size"] == 2
    # rank 0 fitted the gathered curve: its prediction is that curve's fit, as one process makes
    # it (the two runs' predictions are not compared: a 40-step fit moves with a 1e-7 change
    # in its losses, since L-BFGS-B from the same start lands in another basin)
    curve = LossCurve(a["lrs"], a["steps"], a["losses"], windows=a["windows"])
    options = mine["callback"]  # the fit options the callback recorded with its run
    kwargs = {"max_points": options["max_fit_points"], **options["fit_kwargs"]}
    refit = fit(curve.trained(), law=options["law"], **kwargs)
    (expected,), _, _ = refit.predict_interval(np.asarray(a["lrs"]), [len(a["lrs"]) - 1])
    assert mine["prediction"]["final_loss"] == pytest.approx(expected, rel=1e-9)
    assert mine["fit"]["params"] == pytest.approx(refit.params, rel=1e-9)


@pytest.mark.slow
def test_only_rank_zero_fits_and_writes(runs):
    results, ddp, _ = runs
    rank0, rank1 = results["ddp"]
    for run in ("record", "stop"):
        assert rank0[run]["files"] == ["lrlaw/record.json"]
        assert rank1[run]["files"] == []
        assert rank1[run]["history"] == [] and rank0[run]["history"]


@pytest.mark.slow
def test_stop_decision_is_taken_by_every_rank_at_the_same_step(runs):
    results, ddp, _ = runs
    rank0, rank1 = results["ddp"]
    single = results["single"]
    assert rank0["stop"]["global_step"] == rank1["stop"]["global_step"] == 15
    assert single["stop"]["global_step"] == 15  # the same decision as one process
    (event,) = [e for e in rank0["stop"]["events"] if e["kind"] == "stop"]
    assert event["step"] == 15
    assert _record(ddp / "stop" / "rank0")["run"]["global_step"] == 15
