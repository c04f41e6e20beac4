"""Backtests of early predictions on finished public runs, from Python and from `lrlaw`."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import hf_lrlaw
from hf_lrlaw import datasets
from hf_lrlaw.backtest import backtest, summarize
from hf_lrlaw.cli import main


@pytest.fixture(scope="module")
def runs():
    return [
        c
        for c in datasets.load("multipowerlaw", model="100M")
        if c.meta["schedule"] in ("cosine_24000", "wsd_20000_24000", "constant_24000")
    ]


def test_each_run_is_cut_fitted_alone_and_judged_at_its_end(runs):
    rows = backtest(runs, (0.25, 0.5), prior="default:lr-scheduling")
    assert [(r.curve, r.seen) for r in rows] == [(c.name, f) for c in runs for f in (0.25, 0.5)]
    for r, c in zip(rows[1::2], runs):
        assert r.failure is None and r.final_step == c.last_step and r.actual == c.losses[-1]
        assert r.last_fitted_step < 0.5 * len(c.lrs) <= r.last_fitted_step + 200
        # the same prediction as a fit of that prefix alone, made by hand
        f = hf_lrlaw.fit(c.head(0.5), "momentum", prior="default:lr-scheduling")
        assert r.predicted == pytest.approx(f.predict(c.lrs, [c.last_step])[0])
    errors = np.abs([r.error for r in rows])
    assert errors.mean() < 0.01  # a prior from the other public set predicts these ends to <1%
    by_seen = {s.seen: s for s in summarize(rows)}
    assert by_seen[0.5].mean_abs_error == pytest.approx(errors[1::2].mean())
    assert by_seen[0.5].coverage == np.mean([r.inside for r in rows[1::2]])
    assert by_seen[0.25].runs == 3 and by_seen[0.25].failed == 0


def test_a_run_that_cannot_be_cut_is_reported_not_raised(runs):
    # the public runs log from the end of their warmup (step ~2160): their first 5% has no point
    rows = backtest([runs[0]], (0.05,), prior=None)
    assert len(rows) == 1 and rows[0].failure and rows[0].predicted is None
    assert summarize(rows)[0].failed == 1 and summarize(rows)[0].coverage is None
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        backtest(runs, (0.5, 1.0))


def test_lrlaw_backtest_prints_and_writes_a_report(tmp_path, capsys):
    out = tmp_path / "report.csv"
    spec = "dataset:multipowerlaw:model=100M,schedule=cosine_24000,wsd_20000_24000"
    code = main(
        ["backtest", spec, "--prior", "default:lr-scheduling", "--at", "0.5", "-o", str(out)]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "from 0.5: 2/2 runs predicted, mean |error|" in stdout
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["curve"] for r in rows] == ["100M/cosine_24000", "100M/wsd_20000_24000"]
    assert all(abs(float(r["error"])) < 0.02 for r in rows)
    bad = tmp_path / "bad.csv"
    assert main(["backtest", spec, "--at", "0.5,2", "-o", str(bad)]) == 2
    assert "--at" in capsys.readouterr().err and not bad.exists()
