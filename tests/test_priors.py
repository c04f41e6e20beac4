"""Priors: learned from real curves, used by fit(), from files and from earlier fits."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hf_lrlaw
from hf_lrlaw import FitError, Schedule, datasets
from hf_lrlaw.fitting import PRIOR_NARROW_EARLY
from hf_lrlaw.laws import get_law
from hf_lrlaw.priors import Prior, PriorError, RunContext, resolve_prior, shipped_priors, size_prior


@pytest.fixture(scope="module")
def cosine_100m():
    return datasets.load("multipowerlaw", model="100M", schedule="cosine_24000")[0]


def test_shipped_priors_exist_for_both_laws_and_each_data_set():
    names = set(shipped_priors())
    for law in ("momentum", "multipower"):
        assert {law, f"{law}.multipowerlaw", f"{law}.lr-scheduling"} <= names
        p = resolve_prior("default", get_law(law))
        assert p.names == get_law(law).transfer_names
        assert all(s > 0 for s in p.std) and min(p.n_runs) >= 3
        assert p.calibration and p.calibration["extrapolation"] >= 0


def test_prior_is_used_and_can_be_turned_off(cosine_100m):
    head = cosine_100m.head(0.25)
    with_prior = hf_lrlaw.fit(head, "momentum", prior="default:lr-scheduling")
    without = hf_lrlaw.fit(head, "momentum")
    assert without.prior is None
    rec = with_prior.prior
    assert "lr-scheduling" in rec["source"]
    assert set(rec["features"]) == set(get_law("momentum").transfer_names)
    # How far the data moved each feature is recorded, and the posterior is tighter than the prior.
    for feat in rec["features"].values():
        assert np.isfinite(feat["shift_in_prior_sd"]) and 0 < feat["std_ratio"] <= 1.0 + 1e-9
    assert with_prior.params != without.params


def test_prior_from_file_round_trips(tmp_path, cosine_100m):
    p = resolve_prior("default", get_law("momentum"))
    path = p.save(tmp_path / "prior.json")
    q = Prior.load(path)
    assert q == p
    head = cosine_100m.head(0.3)
    a = hf_lrlaw.fit(head, "momentum", prior=p)
    b = hf_lrlaw.fit(head, "momentum", prior=str(path))
    assert a.params == b.params


def test_earlier_fit_as_prior_file_and_object(tmp_path):
    small = datasets.load("multipowerlaw", model="25M", schedule="cosine_24000")[0]
    big = datasets.load("multipowerlaw", model="100M", schedule="cosine_24000")[0]
    earlier = hf_lrlaw.fit(small, "momentum")
    path = earlier.save(tmp_path / "earlier.json")
    f1 = hf_lrlaw.fit(big.head(0.25), "auto", prior=earlier)  # auto takes the earlier fit's law
    f2 = hf_lrlaw.fit(big.head(0.25), "momentum", prior=path)
    assert f1.law == "momentum" and f1.params == pytest.approx(f2.params)
    assert "earlier fit" in f1.prior["source"]


def test_constant_prefix_with_prior_is_not_confident_about_annealing():
    const = datasets.load("multipowerlaw", model="100M", schedule="constant_24000")[0]
    truth = datasets.load("multipowerlaw", model="100M", schedule="cosine_24000")[0].final_loss
    cos = Schedule.cosine(3e-4, 24000, warmup_steps=2160, final_ratio=0.1)
    f = hf_lrlaw.fit(const.head(0.5), "momentum", prior="default:lr-scheduling")
    assert not f.annealing_identified and not f.determined["C"]
    feat = f.prior["features"]["log_anneal_gain"]
    assert feat["std_ratio"] > 0.8  # the data barely touched what they cannot know
    mean, low, high = f.predict_interval(cos)
    assert low[0] <= truth <= high[0]
    # The annealing schedule is predicted lower than the constant one: the prior knows annealing helps.
    assert mean[0] < f.predict(const)[0]


def test_shape_parameters_the_data_cannot_tell_are_said_to_come_from_the_prior():
    """Multi-power on one constant-LR prefix: its drop shape is the prior's, and the Fit says
    whose, since its intervals are only as good as that prior's match to the recipe."""
    const = datasets.load("multipowerlaw", model="100M", schedule="constant_24000")[0]
    f = hf_lrlaw.fit(const.head(0.5), "multipower", prior="default")
    loose = [n for n in ("C", "beta", "gamma") if not f.determined[n]]
    assert loose
    (note,) = [n for n in f.notes if "not determined by these curves alone" in n]
    assert all(name in note for name in loose) and f.prior["source"] in note
    plain = hf_lrlaw.fit(const.head(0.5), "multipower", prior=None)
    assert not any("prior" in n for n in plain.notes if "not determined" in n)


def test_intervals_widen_when_data_are_fewer(cosine_100m):
    target = Schedule.wsd(3e-4, 24000, warmup_steps=2160, decay_fraction=0.2)
    widths = []
    for frac in (1.0, 0.5, 0.25):
        _, lo, hi = hf_lrlaw.fit(
            cosine_100m.head(frac), "momentum", prior="default"
        ).predict_interval(target)
        widths.append(hi[0] - lo[0])
    assert widths[0] < widths[1] < widths[2]


def test_bad_priors_are_refused_clearly(tmp_path, cosine_100m):
    with pytest.raises(FitError, match="no shipped prior"):
        hf_lrlaw.fit(cosine_100m, "momentum", prior="default:imagenet")
    with pytest.raises(FitError, match="cannot be used with the power law"):
        hf_lrlaw.fit(cosine_100m, "power", prior=resolve_prior("default", get_law("momentum")))
    with pytest.raises(FitError, match="law options"):
        hf_lrlaw.fit(cosine_100m, "momentum", law_options={"lam": 0.99}, prior="default")
    (tmp_path / "bad.json").write_text(
        json.dumps({"schema": "hf_lrlaw.prior/1", "law": "momentum"})
    )
    with pytest.raises(FitError, match="malformed prior"):
        hf_lrlaw.fit(cosine_100m, "momentum", prior=tmp_path / "bad.json")
    with pytest.raises(PriorError, match="positive"):
        Prior("momentum", {}, ("a",), (0.0,), (-1.0,), "x")


def test_learn_prior_uses_only_runs_that_determine_a_feature():
    from hf_lrlaw.priors import learn_prior

    law = get_law("momentum")
    ctx = RunContext(1e-3, 10000)
    theta = np.array([2.5, 0.8, 0.5, 0.3])
    samples = [(theta * [1, 1, 1, 1 + 0.1 * i], ctx, {"C": i < 4}) for i in range(8)]
    p = learn_prior("momentum", samples, source="test")
    assert p.n_runs == (8, 8, 4)
    gains = [law.transfer_features(s[0], 1e-3, 10000)[2] for s in samples[:4]]
    assert p.mean[2] == pytest.approx(np.median(gains))


@pytest.fixture(scope="module")
def small_model_fits():
    """Momentum fits of the 25M and 100M training runs of the authors' split, with their sizes."""
    fits = [hf_lrlaw.fit(datasets.multipowerlaw_split(s)[0], "momentum") for s in ("25M", "100M")]
    return fits, [25e6, 100e6]


def test_size_prior_extrapolates_features_in_log_size(small_model_fits):
    fits, sizes = small_model_fits
    p = size_prior(fits, sizes, 400e6)
    a, b = (Prior.from_fit(f, widen=0.0).mean for f in fits)
    # On a line in log size: the 400M value continues the 25M -> 100M trend.
    for j in range(len(p.mean)):
        assert p.mean[j] == pytest.approx(b[j] + (b[j] - a[j]), abs=1e-6)
    assert all(s > 0 for s in p.std)


def test_pooled_earlier_fits_centre_on_them_and_widen_by_their_spread():
    fits = [
        hf_lrlaw.fit(datasets.load("multipowerlaw", model="100M", schedule=s), "momentum")
        for s in ("cosine_24000", "wsd_20000_24000", "wsdld_20000_24000")
    ]
    one = [Prior.from_fit(f) for f in fits]
    pooled = Prior.from_fits(fits)
    assert "3 earlier fits pooled" in pooled.source
    for j in range(len(pooled.names)):
        values = [p.mean[j] for p in one]
        assert min(values) <= pooled.mean[j] <= max(values)
        assert pooled.std[j] >= min(p.std[j] for p in one)
    assert Prior.from_fits(fits[:1]) == one[0]
    with pytest.raises(PriorError, match="at least one"):
        Prior.from_fits([])


def test_a_fit_that_mixes_peak_lrs_is_refused_as_a_prior():
    runs = datasets.load("lr-scheduling", model="33M", dataset="slimpajama")
    assert len({c.meta["peak_lr"] for c in runs}) == 2
    mixed = hf_lrlaw.fit(runs, "momentum")
    with pytest.raises(PriorError, match="fit each peak LR separately"):
        size_prior([mixed], [33e6], 360e6)
    with pytest.raises(FitError, match=r"peak LRs \[0.001, 0.002\].*fit each peak LR separately"):
        hf_lrlaw.fit(runs[0].head(0.3), "momentum", prior=mixed)
    one_peak = [c for c in runs if c.meta["peak_lr"] == runs[0].meta["peak_lr"]]
    hf_lrlaw.fit(runs[0].head(0.3), "momentum", prior=hf_lrlaw.fit(one_peak, "momentum"))


def test_size_prior_is_not_widened_by_a_fit_that_cannot_tell_a_feature(small_model_fits):
    """A fit on a constant-LR run does not determine the annealing gain; beside well-determined
    fits it must not drag that feature's mean or blow up its std (the real sweep has such fits:
    a diverged run, constant runs)."""
    fits, sizes = small_model_fits
    base = size_prior(fits, sizes, 400e6)
    const = datasets.load("multipowerlaw", model="25M", schedule="constant_24000")[0]
    blind = hf_lrlaw.fit(const.head(0.3), "momentum")
    assert not blind.determined["C"]
    both = size_prior([*fits, blind], [*sizes, 25e6], 400e6)
    k = base.names.index("log_anneal_gain")
    assert abs(both.mean[k] - base.mean[k]) < 0.5 * base.std[k]
    assert both.std[k] < 2 * base.std[k]


def test_early_in_a_decay_the_prior_sets_the_annealing_gain():
    """Before the LR has fallen to half its peak, the first small decay of a cosine run is
    confounded with the power law's curvature: the prior's std on the annealing features is
    narrowed (recorded), and the 25%-prefix predictions of real cosine runs hold up."""
    momentum = get_law("momentum")
    shipped = resolve_prior("default:multipowerlaw", momentum)
    k = shipped.names.index("log_anneal_gain")
    runs = [
        c
        for c in datasets.load("lr-scheduling")
        if c.meta["schedule"] == "cosine-to-10%" and c.meta["model"] == "124M"
    ][:8]
    assert len(runs) >= 4
    errors = []
    for run in runs:
        early = hf_lrlaw.fit(run.head(0.25), "momentum", prior="default:multipowerlaw")
        assert early.prior["prior"]["std"][k] == pytest.approx(PRIOR_NARROW_EARLY * shipped.std[k])
        final = early.predict(run.lrs, run.steps[-1:])[0]
        errors.append(abs(final / run.losses[-1] - 1))
    late = hf_lrlaw.fit(runs[0].head(0.75), "momentum", prior="default:multipowerlaw")
    assert late.prior["prior"]["std"][k] == pytest.approx(shipped.std[k])
    # With the prior's std left as shipped, these prefixes read a large annealing gain and miss
    # the final loss by 5.9% on average (0.36% with the rule; 0.60% when it narrowed 3x).
    assert np.mean(errors) < 0.02, errors


def test_calibration_bias_shifts_only_extrapolated_predictions(cosine_100m):
    head = cosine_100m.head(0.5)
    last = int(head.steps[-1])
    plain = hf_lrlaw.fit(head, "momentum", calibration=None)
    shifted = hf_lrlaw.fit(head, "momentum", calibration={"extrapolation": 0.0, "bias": 0.01})
    steps = np.array([head.steps[0], last, 2 * last + 1, len(cosine_100m.lrs) - 1])
    ratio = shifted.predict(cosine_100m, steps) / plain.predict(cosine_100m, steps)
    expected = np.exp(-0.01 * np.log(np.maximum((steps + 1) / (last + 1), 1.0)))
    np.testing.assert_allclose(ratio, expected, rtol=1e-12)
    assert ratio[0] == ratio[1] == 1.0 and ratio[2] < 1.0
    # The interval's centre, the vectorised final loss and the ranking all carry the same shift.
    mean, low, high = shifted.predict_interval(cosine_100m, steps)
    np.testing.assert_allclose(mean, shifted.predict(cosine_100m, steps), rtol=1e-12)
    assert np.all(low < mean) and np.all(mean < high)
    final = shifted.predict_final([cosine_100m.lrs])[0]
    assert final[0] == pytest.approx(shifted.predict(cosine_100m)[0], rel=1e-9)
    with pytest.raises(FitError, match="unknown calibration terms"):
        hf_lrlaw.fit(head, "momentum", calibration={"drift": 0.1})
    with pytest.raises(FitError, match="finite"):
        hf_lrlaw.fit(head, "momentum", calibration={"bias": float("nan")})


def test_shipped_bias_improves_early_predictions_on_the_other_data_set():
    """The bias learned on multipowerlaw prefixes (K-fold) carries over to lr-scheduling runs."""
    prior = resolve_prior("default:multipowerlaw", get_law("momentum"))
    assert prior.calibration["bias"] > 0  # the law over-predicts the final loss from a prefix
    errors = {"bias": [], "no bias": []}
    for c in datasets.load("lr-scheduling", model="124M")[::4]:
        head = c.head(0.25)
        for key, cal in (
            ("bias", "default"),
            ("no bias", {"extrapolation": prior.calibration["extrapolation"]}),
        ):
            f = hf_lrlaw.fit(head, "momentum", prior=prior, calibration=cal)
            errors[key].append(abs(f.predict(c)[0] - c.final_loss) / c.final_loss)
    assert np.mean(errors["bias"]) < 0.85 * np.mean(errors["no bias"])


def test_prior_from_an_earlier_fit_keeps_its_spread_but_not_the_shipped_bias(cosine_100m):
    earlier = hf_lrlaw.fit(cosine_100m, "momentum")
    assert earlier.discrepancy["calibration"]["bias"] != 0
    cal = Prior.from_fit(earlier).calibration
    assert (
        "bias" not in cal
        and cal["extrapolation"] == earlier.discrepancy["calibration"]["extrapolation"]
    )


def test_a_prior_argument_is_resolved_once(tmp_path, cosine_100m):
    from hf_lrlaw.priors import PriorChoice

    path = tmp_path / "prior.json"
    resolve_prior("default", get_law("momentum")).save(path)
    choice = PriorChoice.resolve(str(path))
    path.unlink()  # read once, where it was resolved; nothing reads it again
    early = hf_lrlaw.fit(cosine_100m.head(0.25), "momentum", prior=choice)
    assert early.prior["source"] == choice.given.source
    with pytest.raises(hf_lrlaw.FitError, match="no such file"):
        hf_lrlaw.fit(cosine_100m.head(0.25), "momentum", prior=str(path))
