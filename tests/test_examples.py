"""Every example and the demo run end to end in a reduced form, so none of them rots."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TINY = ["--batch_size", "4", "--seq_len", "32", "--n_layer", "1", "--n_embd", "32", "--n_head", "2"]


def run(cmd, cwd, timeout=600, env=None):
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    full_env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_TMPDIR": ray_tmp,
        "PYTHON": sys.executable,
        **(env or {}),
    }
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_pretrain_with_callback(tmp_path):
    out = run(
        [
            sys.executable,
            str(EXAMPLES / "pretrain_with_callback.py"),
            "--max_steps",
            "120",
            "--eval_every",
            "5",
            "--warmup_steps",
            "5",
            "--out_dir",
            "pre",
            *TINY,
        ],
        tmp_path,
    )
    record = json.loads((tmp_path / "pre/lrlaw/record.json").read_text())
    assert record["history"], "no fit succeeded"
    assert (tmp_path / "pre/lrlaw/fit.png").stat().st_size > 0
    assert "final eval_loss reached" in out or "final loss reached" in out


@pytest.mark.slow
def test_multi_gpu_script_on_cpu(tmp_path):
    run(
        [
            "bash",
            str(EXAMPLES / "multi_gpu.sh"),
            "cpu",
            "--max_steps",
            "30",
            "--eval_every",
            "5",
            "--warmup_steps",
            "3",
            "--out_dir",
            str(tmp_path / "ddp"),
            *TINY,
        ],
        ROOT,
        env={"PORT": str(free_port())},
    )
    assert (tmp_path / "ddp/lrlaw/record.json").exists()


@pytest.mark.slow
def test_search_then_finetune_with_recommended(tmp_path):
    out = run(
        [
            sys.executable,
            str(EXAMPLES / "search_schedules.py"),
            "--simulate",
            "--output-dir",
            "search",
        ],
        tmp_path,
    )
    rec_path = tmp_path / "search/recommended.json"
    rec = json.loads(rec_path.read_text())
    assert "recommended:" in out and rec["schedule"]
    out = run(
        [
            sys.executable,
            str(EXAMPLES / "finetune_with_recommended.py"),
            "--recommended",
            str(rec_path),
            "--max_steps",
            "40",
            "--out_dir",
            "ft",
            *TINY,
        ],
        tmp_path,
    )
    assert "final eval loss" in out
    assert (tmp_path / "ft/lrlaw/record.json").exists()


@pytest.mark.slow
def test_demo_quick(tmp_path):
    out = run([sys.executable, "-m", "tune_search.demo", "--quick", "--out", "demo"], tmp_path)
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert stage in out
    report = (tmp_path / "demo/report.md").read_text()
    assert "## Setup" in report and "## Recommended schedule" in report
    n_candidates = int(re.search(r"Search: ([\d,]+) candidates", report).group(1).replace(",", ""))
    assert n_candidates >= 1000
    # the repeated pilot measures the run-to-run noise; the cooldown pilot branched from the
    # constant run's checkpoint and paid only for its decay
    assert "Run-to-run noise: `constant(" in report and "finished 2 times" in report
    assert re.search(r"\| pilot \| finished \| \d+ \(\d+\.\.60 from \w+\)", report), report
    assert "Search finished because:" in report and "full runs (a full grid:" in report
    rec = json.loads((tmp_path / "demo/recommended.json").read_text())
    assert rec["schedule"] and "hf" in rec
    assert (tmp_path / "demo/report.png").stat().st_size > 0


def test_readme_law_snippet_runs_and_its_size_prior_predicts(capsys):
    """The README's self-contained Python block ("The law on its own") runs as printed."""
    readme = (ROOT / "README.md").read_text()
    after = readme[readme.index("The law on its own") :]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    mean, low, high = scope["early"].predict_interval(scope["big"].lrs, scope["big"].steps[-1:])
    final = scope["big"].losses[-1]
    assert low[0] <= final <= high[0] and abs(mean[0] / final - 1) < 0.01
    assert "| rank |" in capsys.readouterr().out


def test_demo_text_as_bpe_tokens_of_the_training_text_only():
    """bench/demo_regime.py --vocab: a byte-level BPE trained on the 95% the model trains on
    (the held-out blocks never reach the tokenizer); 256 stays bytes, fewer is refused."""
    from tune_search.demo import bpe_ids, shakespeare, text_blocks

    raw_train, raw_held = text_blocks(128, 8)
    train, held = text_blocks(128, 8, vocab=400)
    assert len(held) == len(raw_held) == 8
    assert train.data.max() < 400
    assert len(np.unique(train.data)) > len(np.unique(raw_train.data)) + 100  # merges in use
    text = shakespeare()
    # subwords: fewer tokens than bytes, and the same ids when trained again (not the cache)
    assert len(train.data) < 0.9 * int(len(text) * 0.95)
    cut = int(len(text) * 0.95)
    assert np.array_equal(bpe_ids.__wrapped__(text[:cut], text[cut:], 400)[0], train.data)
    alone = bpe_ids(text[:cut], text[cut : cut + 1000] + b"zyzzyva qwxq", 400)[0]
    assert np.array_equal(alone, train.data)  # other held-out text: the same tokenizer
    assert raw_train.data.max() < 256 and len(raw_train.data) == int(len(text) * 0.95)
    with pytest.raises(ValueError, match="vocab must be 256"):
        text_blocks(128, 8, vocab=100)
