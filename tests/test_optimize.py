"""The law's own optimal schedule: analytic gradients against finite differences, the
constraints the optimum keeps, its export as a scheduler in a real Trainer, and `lrlaw optimize`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hf_lrlaw
from hf_lrlaw import FitError, LossCurve, Schedule, datasets, get_law
from hf_lrlaw.cli import main
from hf_lrlaw.laws.gradients import final_loss_gradient, has_gradient
from hf_lrlaw.optimum import MIN_RATIO, knot_positions

PNG = b"\x89PNG\r\n\x1a\n"
T = 6000  # steps of the optimised runs here: the fits are of 24k-step runs, the shape is what counts
W = 540


@pytest.fixture(scope="module")
def multipower_fit():
    train, _ = datasets.multipowerlaw_split("25M")
    return hf_lrlaw.fit(train, law="multipower")


@pytest.fixture(scope="module")
def momentum_fit():
    train, _ = datasets.multipowerlaw_split("25M")
    return hf_lrlaw.fit(train, law="momentum")


# -- gradients -----------------------------------------------------------------------------------


def _test_lrs(rng: np.random.Generator, total: int = 400, warmup: int = 40) -> np.ndarray:
    """A warmup, then a wiggly non-monotone curve: every step's LR differs from its neighbours."""
    body = 0.55 + 0.3 * np.cos(np.linspace(0, 7, total - warmup)) * rng.uniform(0.6, 1.0)
    body *= 1.0 + 0.05 * rng.standard_normal(total - warmup)
    lrs = 3e-4 * np.concatenate([np.linspace(0.05, 1.0, warmup), np.clip(body, 0.01, 1.0)])
    return lrs


LAWS = [
    ("momentum", {"warmup": "peak"}),
    ("momentum", {"warmup": "actual"}),
    ("momentum", {"warmup": "include"}),
    ("multipower", {"warmup": "include"}),
    ("multipower", {"warmup": "exclude"}),
]


@pytest.mark.parametrize(("name", "options"), LAWS, ids=[f"{n}-{o['warmup']}" for n, o in LAWS])
def test_final_loss_gradient_matches_the_law_and_finite_differences(name, options, request):
    fit = request.getfixturevalue(f"{name}_fit")
    law = get_law(name, **options)
    assert has_gradient(law)
    rng = np.random.default_rng(0)
    lrs = _test_lrs(rng)
    theta = fit.theta
    loss, grad = final_loss_gradient(law, theta, lrs)
    exact = get_law(name, **options, **({"exact": True} if name == "multipower" else {}))
    expected = exact.predict(theta, exact.prepare(lrs, np.array([len(lrs) - 1])))[0]
    assert loss == pytest.approx(expected, rel=1e-12)
    # central differences away from the warmup's last step (a kink the warmup options put there)
    idx = np.r_[0, 5, 20, 60:400:37, 398, 399]
    h = 1e-6 * lrs.max()
    fd = []
    for j in idx:
        up, down = lrs.copy(), lrs.copy()
        up[j] += h
        down[j] -= h
        fd.append(
            (final_loss_gradient(law, theta, up)[0] - final_loss_gradient(law, theta, down)[0])
            / (2 * h)
        )
    np.testing.assert_allclose(grad[idx], fd, rtol=2e-5, atol=1e-9 * np.abs(grad).max())


def test_a_law_without_a_gradient_is_said_so():
    assert not has_gradient(get_law("lrnoise"))


# -- constraints ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def optimum(multipower_fit):
    return hf_lrlaw.optimize(multipower_fit, total_steps=T, warmup_steps=W, final_lr=3e-6)


def test_optimum_keeps_warmup_peak_floor_and_is_non_increasing(optimum):
    s = optimum.schedule
    assert isinstance(s, Schedule) and s.kind == "piecewise"
    assert (s.total_steps, s.warmup_steps, s.peak_lr) == (T, W, 3e-4)
    lrs = s.lrs()
    warm = Schedule.constant(3e-4, T, warmup_steps=W).lrs()[:W]
    np.testing.assert_array_equal(lrs[:W], warm)
    body = lrs[W:]
    assert body[0] == 3e-4 and body.max() <= 3e-4
    assert body.min() >= 3e-6 * (1 - 1e-12)
    assert np.all(np.diff(body) <= 1e-18)
    assert optimum.converged, optimum.message


def test_optimum_beats_every_grid_schedule_and_its_prediction_is_the_fits(optimum, multipower_fit):
    mean, low, high = multipower_fit.predict_final([optimum.schedule])
    assert (optimum.predicted, optimum.low, optimum.high) == pytest.approx(
        (mean[0], low[0], high[0])
    )
    assert optimum.baseline is not None and optimum.grid[0] == optimum.baseline
    assert optimum.predicted <= optimum.baseline.predicted + 1e-7
    assert optimum.gain == pytest.approx(optimum.baseline.predicted - optimum.predicted)
    families = {hf_lrlaw.optimum.family(r.schedule) for r in optimum.grid}
    assert {"cosine", "linear", "wsd linear", "wsd cosine", "wsd 1-sqrt"} <= families
    cosine = next(r for r in optimum.grid if r.schedule.kind == "cosine")
    assert optimum.predicted < cosine.predicted - 0.005  # the multipower optimum is WSD-like
    # ... a stable phase, then a decay over a fraction of the run (Luo et al. 2025)
    rel = optimum.schedule.lrs()[W:] / 3e-4
    stable = np.mean(rel > 0.99)
    assert 0.4 < stable < 0.95
    assert rel[-1] < 0.05


def test_optimum_round_trips_through_text_in_a_few_dozen_numbers(optimum):
    text = str(optimum.schedule)
    assert len(text) < 2000
    back = Schedule.parse(text)
    assert back == optimum.schedule
    np.testing.assert_array_equal(back.lrs(), optimum.schedule.lrs())
    assert Schedule.from_json(optimum.schedule.to_json()) == optimum.schedule
    stretched = back.with_total_steps(2 * T)
    assert stretched.kind == "piecewise" and stretched.total_steps == 2 * T


def test_more_knots_converge(multipower_fit):
    coarse, fine = (
        hf_lrlaw.optimize(multipower_fit, total_steps=T, warmup_steps=W, knots=k, candidates=[])
        for k in (12, 48)
    )
    assert len(fine.schedule.param("ratios")) == 48
    assert fine.predicted <= coarse.predicted + 1e-6
    assert coarse.predicted - fine.predicted < 5e-4
    assert fine.baseline is None and np.isnan(fine.gain)


def test_non_monotone_keeps_the_cap_and_floor_and_is_no_worse(multipower_fit, optimum):
    free = hf_lrlaw.optimize(
        multipower_fit, total_steps=T, warmup_steps=W, final_lr=3e-6, monotone=False, candidates=[]
    )
    body = free.schedule.lrs()[W:]
    assert body.max() <= 3e-4 and body.min() >= 3e-6 * (1 - 1e-12)
    assert free.predicted <= optimum.predicted + 1e-5


def test_momentum_optimum_notes_its_time_at_the_floor(momentum_fit):
    found = hf_lrlaw.optimize(momentum_fit, total_steps=T, warmup_steps=W)
    assert found.predicted <= found.baseline.predicted + 1e-7
    idle = np.mean(found.schedule.lrs()[W:] <= 3e-7 * 1.01)
    assert (idle >= 0.05) == any("at its floor" in n for n in found.notes)


def test_a_search_offers_no_optimum_that_idles_at_its_floor(momentum_fit, multipower_fit):
    from tune_search.optima import law_optima

    p = 3e-4
    grid = [Schedule.wsd(p, T, warmup_steps=W, decay_fraction=f) for f in (0.1, 0.2, 0.3)]
    grid.append(Schedule.cosine(p, T, warmup_steps=W))
    idling = hf_lrlaw.optimize(momentum_fit, total_steps=T, warmup_steps=W, candidates=grid)
    assert idling.idle >= 0.05 and idling.idle == pytest.approx(
        np.mean(idling.schedule.lrs()[W:] <= MIN_RATIO * p * 1.01)
    )
    found, notes = law_optima(momentum_fit, grid)
    assert found == [] and len(notes) == 1
    assert f"{idling.idle:.0%} of the run after warmup at its floor" in notes[0]
    found, notes = law_optima(multipower_fit, grid)  # a decay to the floor, not an idle
    assert len(found) == 1 and notes == [] and found[0].kind == "piecewise"


def test_bad_constraints_raise_or_are_noted(multipower_fit):
    with pytest.raises(FitError, match="final_lr must be in"):
        hf_lrlaw.optimize(multipower_fit, total_steps=T, warmup_steps=W, final_lr=3e-4)
    with pytest.raises(FitError, match="peak_lr must be > 0"):
        hf_lrlaw.optimize(multipower_fit, total_steps=T, peak_lr=(2e-4, 1e-4))
    with pytest.raises(FitError, match="knots must be"):
        knot_positions(2)
    with pytest.raises(FitError, match="too few steps"):
        hf_lrlaw.optimize(multipower_fit, total_steps=10, warmup_steps=8)
    low = hf_lrlaw.optimize(multipower_fit, total_steps=T, warmup_steps=W, final_lr=0.0,
                            peak_lr=(1e-4, 3e-4), knots=12, candidates=[])  # fmt: skip
    assert any("below 0.1% of the peak" in n for n in low.notes)
    assert any("does not model the peak LR" in n for n in low.notes)
    assert low.schedule.peak_lr == 3e-4
    assert np.all(np.isfinite([low.predicted, low.low, low.high]))


# -- a law fitted across peak LRs chooses the peak too (finite differences) -----------------------


def test_lrnoise_optimum_searches_the_peak_lr():
    theta = np.array([2.5, 1.1, 0.34, 0.6, 0.36, 0.41, 0.012])
    law, rng, curves = get_law("lrnoise"), np.random.default_rng(0), []
    steps = np.arange(200, 4000, 80)
    for peak in (5e-4, 1e-3, 2e-3):
        for s in (Schedule.constant(peak, 4000, warmup_steps=100),
                  Schedule.wsd(peak, 4000, warmup_steps=100, decay_fraction=0.2)):  # fmt: skip
            y = law.predict(theta, law.prepare(s.lrs(), steps))
            curves.append(
                LossCurve(s.lrs(), steps, y * np.exp(0.002 * rng.standard_normal(len(y))))
            )
    fit = hf_lrlaw.fit(curves, law="lrnoise")
    found = hf_lrlaw.optimize(
        fit, total_steps=4000, warmup_steps=100, peak_lr=(2e-4, 8e-3), knots=12
    )
    assert 2e-4 < found.schedule.peak_lr < 8e-3
    family = Schedule.wsd(1e-3, 4000, warmup_steps=100, decay_fraction=0.2)
    best_wsd = hf_lrlaw.optimal_peak_lr(fit, family)
    assert abs(np.log(found.schedule.peak_lr / best_wsd.peak_lr)) < np.log(2.0)
    assert found.predicted <= best_wsd.loss + 1e-6


# -- the exported scheduler in a real Trainer ----------------------------------------------------


def test_exported_lambda_lr_runs_the_optimum_step_by_step_in_a_trainer(optimum, tmp_path):
    import transformers

    from hf_lrlaw.testing import byte_datasets, tiny_args, tiny_gpt2

    s = optimum.schedule.replace(total_steps=40, warmup_steps=4)
    train, _ = byte_datasets(seq_len=32, eval_chunks=4)
    model = tiny_gpt2(n_layer=1, n_embd=32, seq_len=32)
    opt = torch.optim.AdamW(model.parameters(), lr=s.peak_lr)
    args = tiny_args(tmp_path, max_steps=40, logging_steps=1, per_device_train_batch_size=4)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train,
                                   optimizers=(opt, s.to_torch(opt)))  # fmt: skip
    trainer.train()
    logged = {
        e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e
    }
    assert sorted(logged) == list(range(1, 41))
    np.testing.assert_allclose([logged[k] for k in range(1, 41)], s.lrs(), rtol=1e-6, atol=1e-12)


# -- the CLI and the figure ----------------------------------------------------------------------


def test_lrlaw_optimize_writes_a_schedule_that_parses_back(multipower_fit, tmp_path, capsys):
    fit_path = multipower_fit.save(tmp_path / "fit.json")
    out, fig = tmp_path / "schedule.json", tmp_path / "optimum.png"
    argv = ["optimize", fit_path, "--total-steps", T, "--warmup-steps", W, "--knots", 24,
            "-o", out, "--plot", fig]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert "stable to" in printed and "best grid schedule" in printed
    saved = json.loads(out.read_text())
    s = Schedule.parse(saved["schedule"])
    assert s.kind == "piecewise" and s.total_steps == T and len(s.param("ratios")) == 24
    assert saved["law"] == "multipower"
    assert saved["predicted"] == pytest.approx(multipower_fit.predict_final([s])[0][0], rel=1e-12)
    assert saved["baseline"]["predicted"] >= saved["predicted"] - 1e-7
    assert fig.read_bytes()[:8] == PNG
    # a bad option is one clear error, and nothing is written over the fit
    before = fit_path.read_bytes()
    assert main(["optimize", str(fit_path), "--peak-lr", "a,b,c"]) != 0
    assert "--peak-lr takes" in capsys.readouterr().err
    assert main(["optimize", str(fit_path), "--total-steps", str(T), "-o", str(fit_path)]) != 0
    assert fit_path.read_bytes() == before


def test_an_implausible_gain_raises_the_floor_unless_final_lr_is_given():
    """Half a constant and half a cosine run leave the multi-power law's gamma > 1: its optimum
    drops to 0.1% of the peak in the last step for a 'gain' no real schedule shows."""
    from tune_search.simulate import SimulatedWorld

    world = SimulatedWorld(law="multipower", seed=0)
    t, w, p = world.total_steps, world.warmup_steps, world.peak_lr
    curves = []
    for s in (Schedule.constant(p, t, warmup_steps=w), Schedule.cosine(p, t, warmup_steps=w)):
        steps, losses = world.curve(str(s))
        half = steps <= t // 2
        curves.append(LossCurve(s.lrs()[: t // 2 + 1], steps[half], losses[half]))
    fit = hf_lrlaw.fit(curves, law="multipower")
    gamma = fit.theta[[q.name for q in fit.law_object.params].index("gamma")]
    assert gamma > 1
    raw = hf_lrlaw.optimize(fit, total_steps=t, warmup_steps=w, final_lr=1e-3 * p)
    assert raw.gain > 0.005 * raw.baseline.predicted  # the exploit, when asked for this floor
    assert raw.schedule.lrs()[-2] > 0.5 * p  # ... a cliff at the last step
    guarded = hf_lrlaw.optimize(fit, total_steps=t, warmup_steps=w)
    assert any("more than a free-form shape plausibly gains" in n for n in guarded.notes)
    assert guarded.gain <= 0.005 * guarded.baseline.predicted
    assert guarded.schedule.lrs()[-1] >= 0.01 * p * (1 - 1e-9)
    rel = guarded.schedule.lrs()[w:] / p
    assert np.mean(rel > 0.99) < 0.95  # a decay over a fraction of the run, not a cliff
