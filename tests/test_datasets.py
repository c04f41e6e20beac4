"""The bundled public loss curves: counts, per-step LRs against the files, meta, filters."""

from __future__ import annotations

import csv
import gzip
import io
from importlib import resources

import numpy as np
import pytest

from hf_lrlaw import datasets
from hf_lrlaw.curves import LossCurve

PACKAGE = resources.files("hf_lrlaw.datasets")
MPL_STEMS = [
    "constant_24000",
    "constant_72000",
    "cosine_24000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_9",
    "wsdcon_18",
]


def _tidy(name: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A tidy file of the lr-scheduling set, read independently of the package's parser."""
    text = gzip.decompress(PACKAGE.joinpath("lr-scheduling", name).read_bytes()).decode()
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        rows.setdefault(row["curve_id"], []).append(
            (int(row["step"]), float(row["lr"]), float(row["loss"] or "nan"))
        )
    return {cid: tuple(np.array(col) for col in zip(*r)) for cid, r in rows.items()}


@pytest.fixture(scope="module")
def val_curves() -> list[LossCurve]:
    return datasets.load("lr-scheduling")


def test_package_data_found_through_importlib_resources():
    assert datasets.available() == ["lr-scheduling", "multipowerlaw"]
    for name in datasets.available():
        assert PACKAGE.joinpath(name, "LICENSE").read_text().startswith("MIT License")
    readme = PACKAGE.joinpath("README.md").read_text()
    assert "Luo" in readme and "Schaipp" in readme and "MIT" in readme
    assert PACKAGE.joinpath("ATTRIBUTION").is_file()
    info = datasets.info("multipowerlaw")
    assert info.curves == 27 and "MIT" in info.license and "arXiv:2503.12811" in info.citation
    assert "2501.18965" in str(datasets.info("lr-scheduling"))
    with pytest.raises(ValueError, match="no bundled data set 'nope'"):
        datasets.load("nope")


# -- multipowerlaw -----------------------------------------------------------------------------
def test_multipowerlaw_counts_names_and_meta():
    curves = datasets.load("multipowerlaw")
    assert len(curves) == 27
    assert curves[0].name == "25M/constant_24000"
    assert {c.meta["model"] for c in curves} == {"25M", "100M", "400M"}
    for c in curves:
        m = c.meta
        assert m["collection"] == "multipowerlaw" and m["schedule"] in MPL_STEMS
        assert (
            m["params"] == {"25M": 25_000_000, "100M": 100_000_000, "400M": 400_000_000}[m["model"]]
        )
        assert m["peak_lr"] == 3e-4 and m["warmup_steps"] == 2160
        assert len(c.lrs) == m["total_steps"]
        assert c.steps[-1] < m["total_steps"]  # a run of T steps is used below step T only
        assert len(c) > 90


def test_multipowerlaw_lrs_match_the_files_at_every_logged_step():
    for c in datasets.load("multipowerlaw"):
        text = PACKAGE.joinpath(*c.meta["source"].split("/")).read_text()
        table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1)
        steps, lrs, losses = table[:, 0].astype(int), table[:, 1], table[:, 2]
        keep = steps < c.meta["total_steps"]
        assert np.array_equal(c.steps, steps[keep]) and np.array_equal(c.losses, losses[keep])
        np.testing.assert_allclose(c.lrs[steps[keep]], lrs[keep], rtol=1e-12, atol=0)


def test_multipowerlaw_schedules():
    by_name = {c.name: c for c in datasets.load("multipowerlaw", model="100M")}
    for c in by_name.values():
        np.testing.assert_array_equal(c.lrs[:2160], np.linspace(0, 3e-4, 2160))
    cosine = by_name["100M/cosine_24000"].lrs
    assert cosine[2160] == pytest.approx(3e-4) and cosine[-1] == pytest.approx(3e-5, rel=1e-4)
    wsd = by_name["100M/wsd_20000_24000"].lrs
    assert np.all(wsd[2160:20000] == 3e-4) and wsd[20000] == pytest.approx(3e-4)
    assert wsd[22000] == pytest.approx(np.sqrt(3e-4 * 3e-5))  # geometric: the mean halfway
    wsdld = by_name["100M/wsdld_20000_24000"].lrs
    assert wsdld[22000] == pytest.approx((3e-4 + 3e-5) / 2)
    two = by_name["100M/wsdcon_3"].lrs
    assert len(two) == 16000 and two[7999] == 3e-4 and np.all(two[8000:] == 3e-5)


def test_multipowerlaw_split_and_filters():
    train, test = datasets.multipowerlaw_split("400M")
    assert [c.meta["schedule"] for c in train] == ["cosine_24000", "constant_24000", "wsdcon_9"]
    assert sorted(c.meta["schedule"] for c in test) == sorted(
        set(MPL_STEMS) - {"cosine_24000", "constant_24000", "wsdcon_9"}
    )
    assert all(c.meta["model"] == "400M" for c in train + test)
    picked = datasets.load("multipowerlaw", model="25m", schedules=["cosine_72000", "wsdcon_18"])
    assert [c.name for c in picked] == ["25M/cosine_72000", "25M/wsdcon_18"]
    assert len(datasets.load("multipowerlaw", where=lambda m: m["total_steps"] == 16000)) == 9
    with pytest.raises(ValueError, match="model must be one of"):
        datasets.multipowerlaw_split("7B")
    with pytest.raises(ValueError, match="no curve has meta\\['colour'\\]"):
        datasets.load("multipowerlaw", colour="red")


# -- lr-scheduling -----------------------------------------------------------------------------
def test_lr_scheduling_loads_completely():
    # Load time is measured in bench/, not asserted here (shared machines make timings flaky).
    for cached in (datasets._ls_table, datasets._ls_manifest):
        cached.cache_clear()
    curves = datasets.load("lr-scheduling")
    assert len(curves) == 235
    assert len({c.name for c in curves}) == 235 and len({c.meta["curve_id"] for c in curves}) == 235
    assert len(datasets.load("lr-scheduling", kind="train")) == 235


def test_lr_scheduling_meta(val_curves):
    manifest = list(
        csv.DictReader(io.StringIO(PACKAGE.joinpath("lr-scheduling", "manifest.csv").read_text()))
    )
    for c, row in zip(val_curves, manifest):
        m = c.meta
        assert m["curve_id"] == row["curve_id"] and m["collection"] == "lr-scheduling"
        assert m["dataset"] == row["dataset"] and m["schedule"] == row["schedule"]
        assert f"{m['model']}({m['model_config']})" == row["model"]
        assert m["params"] == int(row["params"]) and m["peak_lr"] == float(row["peak_lr"])
        assert m["total_steps"] == int(row["total_steps"]) == len(c.lrs)
        assert m["warmup_steps"] == m["warmup"] == 300
        assert m["kind"] == "val" and m["file_step_offset"] == -1
        assert m["warmup_shape"] in ("linear", "cosine")  # every run follows one exact warmup
        assert c.name.startswith(f"{m['model']} {m['dataset']} {m['schedule']} lr")
    assert val_curves[0].name == "60M openwebtext2 wsd-linear-cooldown0.2 lr0.001 T12500"


def test_lr_scheduling_lrs_match_the_files_at_every_logged_step(val_curves):
    train_log, val = _tidy("train_log.csv.gz"), _tidy("val_curves.csv.gz")
    worst = 0.0
    for c in val_curves:
        total = c.meta["total_steps"]
        for steps, lrs, _ in (train_log[c.meta["curve_id"]], val[c.meta["curve_id"]]):
            # step 0 of the validation file has a placeholder LR of 0; the LR logged at
            # total_steps belongs to no update
            keep = (steps > 0) & (steps < total)
            worst = max(worst, float(np.max(np.abs(c.lrs[steps[keep]] - lrs[keep]) / lrs[keep])))
        assert c.lrs[0] == pytest.approx(c.meta["peak_lr"] / 100)  # update 0 runs at peak/100
    assert worst < 1e-9


def test_lr_scheduling_steps_and_losses(val_curves):
    train_log, val = _tidy("train_log.csv.gz"), _tidy("val_curves.csv.gz")
    c = val_curves[0]
    steps, _, losses = val[c.meta["curve_id"]]
    assert steps[0] == 0 and losses[0] > 10  # the untrained model: dropped
    np.testing.assert_array_equal(c.steps, steps[1:] - 1)  # measured after s updates: step s - 1
    np.testing.assert_array_equal(c.losses, losses[1:])
    (t,) = datasets.load("lr-scheduling", kind="train", curve_id=c.meta["curve_id"])
    steps, _, losses = train_log[c.meta["curve_id"]]
    np.testing.assert_array_equal(t.steps, steps - 2)  # the batch of update s, before it
    np.testing.assert_array_equal(t.losses, losses)
    assert t.meta["file_step_offset"] == -2 and t.windows is None


def _formula(meta: dict) -> np.ndarray | None:
    """The LR of each update, from the schedule code of the runs (epfml/schedules-and-scaling)."""
    total, peak, schedule = meta["total_steps"], meta["peak_lr"], meta["schedule"]
    s = np.arange(total, dtype=np.float64)
    if schedule.startswith(("wsd-linear", "wsd-1-sqrt")) or schedule == "constant":
        frac = float(schedule.split("cooldown")[1]) if "cooldown" in schedule else 0.0
        hold = total - int(frac * total)
        x = np.clip((s - hold) / max(total - hold, 1), 0, 1)
        out = np.where(s < 300, s / 300 + (1 - s / 300) / 100, 1.0)
        return peak * np.where(s < hold, out, 1 - (np.sqrt(x) if "sqrt" in schedule else x))
    if schedule.startswith("cosine"):  # OneCycleLR(div_factor=100), warmup ends at step 299
        floor = 0.1 if schedule == "cosine-to-10%" else 1e-7 / peak
        warm = 1 + (0.01 - 1) / 2 * (np.cos(np.pi * s / 299) + 1)
        decay = floor + (1 - floor) / 2 * (np.cos(np.pi * (s - 299) / (total - 300)) + 1)
        return peak * np.where(s <= 299, warm, decay)
    return None


@pytest.mark.parametrize(
    ("schedule", "max_abs", "max_area"),
    [
        ("constant", 1e-12, 1e-12),
        ("wsd-linear-cooldown0.2", 0.02, 2e-4),
        ("wsd-1-sqrt-cooldown0.2", 0.03, 1e-4),
        ("cosine-to-10%", 1e-3, 2e-4),
        ("cosine-to-0", 1e-3, 1e-5),
    ],
)
def test_lr_scheduling_interpolation_reproduces_the_schedules(schedule, max_abs, max_area):
    """At every step, not only the logged ones: |deviation| / peak, and the LR area from step 199."""
    curves = datasets.load("lr-scheduling", schedule=schedule)
    assert curves
    for c in curves[:4] + curves[-2:]:
        exact = _formula(c.meta)
        assert np.max(np.abs(c.lrs - exact)) / c.meta["peak_lr"] < max_abs, c.name
        area, exact_area = np.cumsum(c.lrs)[199:], np.cumsum(exact)[199:]
        assert np.max(np.abs(area - exact_area) / exact_area) < max_area, c.name


def test_lr_scheduling_filters(val_curves):
    picked = datasets.load(
        "lr-scheduling", model="124M", dataset="slimpajama", schedule="cosine-to-10%", peak_lr=1e-3
    )
    assert len(picked) == 7
    assert all(c.meta["model"] == "124M" and c.meta["peak_lr"] == 1e-3 for c in picked)
    same = datasets.load(
        "lr-scheduling", model="124M(L12H12E768)", schedule="cosine-to-10%", peak_lr=0.001
    )
    assert [c.name for c in same] == [c.name for c in picked]
    several = datasets.load("lr-scheduling", total_steps=[15000, 25000], schedule="constant")
    assert several and {c.meta["total_steps"] for c in several} <= {15000, 25000}
    long = datasets.load("lr-scheduling", where=lambda m: m["total_steps"] >= 100000)
    assert {c.meta["schedule"] for c in long} >= {"wsd_twostage-mid=0.19-cooldown0.2"}
    assert len(datasets.load("lr-scheduling", dataset="openwebtext2")) == 21
    assert datasets.load("lr-scheduling", peak_lr=0.123) == []
    with pytest.raises(ValueError, match="kind must be 'val' or 'train'"):
        datasets.load("lr-scheduling", kind="test")
    with pytest.raises(ValueError, match="multipowerlaw has one loss"):
        datasets.load("multipowerlaw", kind="val")
