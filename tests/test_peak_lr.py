"""Choosing the peak LR: the lrnoise law fitted jointly over runs of several peak LRs, the
optimal peak LR of a schedule family per horizon, and rank / lrlaw over a peak-LR space."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import hf_lrlaw
from hf_lrlaw import FitError, LossCurve, Schedule, datasets
from hf_lrlaw.cli import main
from hf_lrlaw.laws import get_law

TRUE = np.array([2.5, 1.1, 0.34, 0.6, 0.36, 0.41, 0.012])  # L0 A alpha p B beta D (fit A's)
PEAKS = (5e-4, 1e-3, 2e-3)


def generated(theta=TRUE, peaks=PEAKS, total=8000, noise=0.002, seed=0) -> list[LossCurve]:
    """Curves of the lrnoise law (constant, cosine, WSD 20% per peak LR), with 0.2% noise."""
    law, rng, out = get_law("lrnoise"), np.random.default_rng(seed), []
    steps = np.arange(400, total, 80)
    for peak in peaks:
        for s in (
            Schedule.constant(peak, total, warmup_steps=200),
            Schedule.cosine(peak, total, warmup_steps=200),
            Schedule.wsd(peak, total, warmup_steps=200, decay_fraction=0.2),
        ):
            y = law.predict(theta, law.prepare(s.lrs(), steps))
            y = y * np.exp(noise * rng.standard_normal(len(y)))
            out.append(LossCurve(s.lrs(), steps, y, name=f"{s.kind} {peak:g}"))
    return out


def brute_force_optimum(theta, family: Schedule) -> float:
    """The peak LR of ``family`` with the lowest final loss of the law, on a fine log grid."""
    law = get_law("lrnoise")
    grid = np.geomspace(1e-4, 1e-2, 241)
    lrs = np.stack([family.scaled(float(g)).lrs() for g in grid])
    return float(grid[int(np.argmin(law.predict(theta, law.prepare_final(lrs))))])


def test_joint_fit_recovers_known_parameters_and_optimum():
    f = hf_lrlaw.fit(generated(), law="lrnoise")
    np.testing.assert_allclose(f.theta, TRUE, rtol=0.1)
    family = Schedule.wsd(1e-3, 20000, warmup_steps=200, decay_fraction=0.2)
    truth = brute_force_optimum(TRUE, family)
    found = hf_lrlaw.optimal_peak_lr(f, family)
    assert not found.at_edge
    assert abs(np.log(found.peak_lr / truth)) < 0.1
    assert found.low <= found.peak_lr <= found.high
    assert found.low / 1.5 < truth < found.high * 1.5
    assert found.loss == pytest.approx(f.predict_final([found.schedule])[0][0])


def test_auto_offers_the_lrnoise_law_only_across_peak_lrs():
    across = generated(total=3000)
    chosen = hf_lrlaw.fit(across[::2], law="auto")
    assert "lrnoise" in chosen.selection["errors"]
    assert chosen.law == "lrnoise"  # the law that generated them wins the leave-one-out
    one_peak = generated(peaks=(1e-3,), total=3000)
    single = hf_lrlaw.fit(one_peak, law="auto")
    assert "lrnoise" not in single.selection["errors"]


def test_single_peak_laws_say_they_cannot_choose_the_lr():
    curves = generated(total=3000)
    f = hf_lrlaw.fit(curves, law="momentum")
    assert any("do not choose a peak LR" in n for n in f.notes)
    with pytest.raises(FitError, match="lrnoise"):
        hf_lrlaw.optimal_peak_lr(f, "wsd(decay_fraction=0.2)")
    one = hf_lrlaw.fit(generated(peaks=(1e-3,), total=3000), law="lrnoise")
    with pytest.raises(FitError, match="one peak LR"):
        hf_lrlaw.optimal_peak_lr(one, "wsd(decay_fraction=0.2)")
    # and its candidates at another LR are flagged, not silently ranked
    other = Schedule.wsd(2e-3, 3000, warmup_steps=200, decay_fraction=0.2)
    assert "not identified" in hf_lrlaw.rank(one, [other]).best.flag
    assert "does not model" in hf_lrlaw.rank(f, [other.scaled(8e-3)]).best.flag


@pytest.fixture(scope="module")
def grid_fit(tmp_path_factory):
    """lrnoise fitted on the bundled 124M grid's 25k-step runs (peak LR 1e-4..2e-3)."""
    curves = datasets.load("lr-scheduling", model="124M", dataset="slimpajama")
    runs = [c for c in curves if c.meta["total_steps"] == 25000 and c.losses[-1] < 5]
    assert len({c.meta["peak_lr"] for c in runs}) >= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = hf_lrlaw.fit(runs, law="lrnoise", min_step=3000)
    path = tmp_path_factory.mktemp("grid") / "fit.json"
    f.save(path)
    return f, path


def test_bundled_grid_optimum_is_interior_and_falls_with_the_horizon(grid_fit):
    f, _ = grid_fit
    found = hf_lrlaw.time_transfer(f, "wsd(decay_fraction=0.2)", [15000, 50000, 100000])
    assert not any(r.at_edge for r in found)
    lrs = [r.peak_lr for r in found]
    assert lrs[0] > lrs[1] > lrs[2]
    # the data's best WSD-20% peak LR at 15k-50k is 1e-3 of 1e-4..3e-3 (its vertex 0.97-1.23e-3)
    assert 5e-4 < lrs[1] < 2e-3
    # a budget in tokens is spent at the fitted runs' batch (124M: 50 x 2 x 2 x 512 per step)
    tokens = hf_lrlaw.time_transfer(
        f, "wsd(decay_fraction=0.2)", [50000 * 102400], tokens_per_step=102400
    )
    assert tokens[0].total_steps == 50000 and tokens[0].peak_lr == pytest.approx(lrs[1])
    with pytest.raises(ValueError, match="tokens_per_step must be >= 1"):
        hf_lrlaw.time_transfer(f, "wsd", [1000], tokens_per_step=0)
    best = hf_lrlaw.optimal_schedule(f, ["wsd(decay_fraction=0.2)", "constant"], total_steps=50000)
    assert best[0].schedule.kind == "wsd"  # a decay beats the constant LR at its own best LR
    assert best[0].loss < best[1].loss


def test_rank_over_a_peak_lr_space_prefers_an_interior_lr(grid_fit):
    f, _ = grid_fit
    peaks = np.geomspace(1e-4, 3e-3, 8)
    cands = [Schedule.wsd(float(p), 50000, warmup_steps=300, decay_fraction=0.2) for p in peaks]
    ranking = hf_lrlaw.rank(f, cands)
    assert peaks[0] < ranking.best.schedule.peak_lr < peaks[-1]
    assert all(r.flag is None for r in ranking)  # inside the fitted LRs (and near): no flag


def test_lrlaw_rank_space_with_horizons(grid_fit, tmp_path, capsys):
    _, path = grid_fit
    out = tmp_path / "ranking.json"
    rc = main(
        [
            "rank",
            str(path),
            "--space",
            "wsd:peak_lr=log(1e-4,3e-3,8),decay_fraction=0.1,0.2,0.4",
            "--horizon",
            "25000,50000",
            "-o",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 8 * 3 * 2
    parsed = [Schedule.parse(r["schedule"]) for r in rows]
    assert {s.total_steps for s in parsed} == {25000, 50000}
    assert {s.warmup_steps for s in parsed} == {300}  # the fitted runs' shared warmup
    best = parsed[0]
    assert 1e-4 < best.peak_lr < 3e-3


def test_lrlaw_peak_lr_command(grid_fit, tmp_path, capsys):
    _, path = grid_fit
    out, fig = tmp_path / "peak.json", tmp_path / "transfer.png"
    rc = main(
        [
            "peak-lr",
            str(path),
            "--schedule",
            "wsd(decay_fraction=0.2)",
            "--schedule",
            "cosine(final_ratio=0.1)",
            "--horizon",
            "15000,50000",
            "-o",
            str(out),
            "--plot",
            str(fig),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "best at 50,000 steps" in printed
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4
    wsd = [r for r in rows if r["family"].startswith("wsd")]
    assert wsd[0]["total_steps"] == 15000 and wsd[0]["peak_lr"] > wsd[1]["peak_lr"]
    assert all(r["low"] <= r["peak_lr"] <= r["high"] for r in rows)
    assert fig.stat().st_size > 10_000


def test_lrlaw_peak_lr_refuses_a_single_peak_law(tmp_path, capsys):
    f = hf_lrlaw.fit(generated(total=3000), law="momentum")
    path = tmp_path / "fit.json"
    f.save(path)
    assert main(["peak-lr", str(path), "--schedule", "cosine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lrnoise" in err
