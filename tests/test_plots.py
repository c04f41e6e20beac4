"""hf_lrlaw.plots: figures for fits, predictions and rankings, built without pyplot state."""

from __future__ import annotations

import threading

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from hf_lrlaw import Schedule, datasets, fit, rank
from hf_lrlaw.plots import (
    eval_steps,
    plot_fit,
    plot_predictions_vs_actual,
    plot_ranking,
    save_figure,
    schedule_label,
)

PNG = b"\x89PNG\r\n\x1a\n"
WSD = Schedule.parse(
    "wsd(peak_lr=3e-4, total_steps=24000, warmup_steps=2160, decay_fraction=0.2, "
    "decay_shape=1-sqrt, final_ratio=0.1)"
)


def _thin(curve, k):
    return curve.replace(steps=curve.steps[::k], losses=curve.losses[::k])


@pytest.fixture(scope="module")
def split():
    return datasets.multipowerlaw_split("25M")


@pytest.fixture(scope="module")
def heads(split):
    return [c.head(0.5) for c in split[0]]


@pytest.fixture(scope="module")
def momentum_fit(heads):
    return fit(heads, law="momentum")


@pytest.fixture(scope="module")
def multipower_fit(heads):
    return fit([_thin(c, 4) for c in heads], law="multipower")


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    assert plt.get_fignums() == []
    yield
    assert plt.get_fignums() == [], "a plot function left a pyplot figure behind"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 1000


@pytest.mark.parametrize("law", ["momentum", "multipower"])
def test_plot_fit_with_remainder_and_predictions(law, request, heads, split, tmp_path):
    f = request.getfixturevalue(f"{law}_fit")
    held = split[1][0]
    out = tmp_path / "sub" / "fit.png"
    fig = plot_fit(
        f,
        heads,
        predict=[WSD, held, WSD.lrs() * 0.5],
        labels=["wsd 1-sqrt", None, "half LR"],
        path=out,
        max_points=150,
    )
    assert isinstance(fig, Figure)
    assert _is_png(out)
    assert [p.name for p in out.parent.iterdir()] == ["fit.png"]  # no temporary file left
    loss_ax, lr_ax = fig.axes
    assert lr_ax.get_ylabel() == "learning rate"
    legend = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert "wsd 1-sqrt" in legend and "half LR" in legend and held.name in legend
    assert any(c.name in legend for c in heads)
    styles = {line.get_linestyle() for line in loss_ax.get_lines()}
    assert {"-", "--"} <= styles  # fitted part solid, remainder / predictions dashed
    assert law in fig.get_suptitle()
    assert len(loss_ax.collections) >= 3  # prediction bands
    for line in loss_ax.get_lines():
        if line.get_linestyle() in ("-", "--") and len(line.get_xdata()) > 2:
            assert len(line.get_xdata()) <= 150


def test_plot_fit_accepts_a_single_curve_and_schedule_text(momentum_fit, heads):
    fig = plot_fit(momentum_fit, heads[0], predict=[str(WSD)])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("wsd lr=0.0003 T=24000") for t in legend)


def test_held_out_points_are_drawn_hollow(momentum_fit, split):
    # the full curves, of which the fit saw the first half: held-out points are hollow markers
    fig = plot_fit(momentum_fit, split[0])
    hollow = [
        ln
        for ln in fig.axes[0].get_lines()
        if ln.get_marker() == "o" and ln.get_markerfacecolor() == "none"
    ]
    assert hollow
    assert any("held out" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_unidentified_annealing_is_flagged(split):
    constant = [c.head(0.5) for c in split[0] if c.meta["schedule"] == "constant_24000"]
    f = fit(constant, law="momentum")
    assert not f.annealing_identified
    fig = plot_fit(f, constant, predict=[WSD])
    assert "annealing not identified" in fig.get_suptitle()


def test_plot_fit_title_and_errors(momentum_fit, heads):
    fig = plot_fit(momentum_fit, heads, title="my run")
    assert fig.get_suptitle().startswith("my run")
    with pytest.raises(ValueError, match="labels"):
        plot_fit(momentum_fit, heads, predict=[WSD], labels=["a", "b"])
    with pytest.raises(ValueError, match="level"):
        plot_fit(momentum_fit, heads, level=1.5)


def test_plot_ranking(momentum_fit, tmp_path):
    candidates = [
        WSD.replace(decay_fraction=d, decay_shape=s)
        for d in (0.1, 0.2, 0.3)
        for s in ("linear", "1-sqrt")
    ]
    ranking = rank(momentum_fit, candidates)
    out = tmp_path / "rank.png"
    fig = plot_ranking(ranking, k=4, path=out)
    assert _is_png(out)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 4 and labels[0].startswith("1. wsd")
    assert "T=24000" not in labels[0]  # shared fields go to the title
    assert "T=24000" in fig.axes[0].get_title()
    with pytest.raises(ValueError):
        plot_ranking(ranking, k=0)


def test_plot_predictions_vs_actual(momentum_fit, multipower_fit, split, tmp_path):
    out = tmp_path / "pva.png"
    fig = plot_predictions_vs_actual(
        {"momentum": momentum_fit, "multipower": multipower_fit}, split[1], path=out
    )
    assert _is_png(out)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 2 and legend[0].startswith("momentum: mean |error|")


def test_figures_build_in_threads(momentum_fit, heads, tmp_path):
    errors = []

    def work(i):
        try:
            plot_fit(momentum_fit, heads, predict=[WSD], path=tmp_path / f"f{i}.png", max_points=60)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(_is_png(tmp_path / f"f{i}.png") for i in range(3))


def test_save_figure_leaves_nothing_on_failure(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    target = tmp_path / "taken"
    target.mkdir()
    with pytest.raises(OSError):
        save_figure(fig, target)  # a folder: os.replace fails
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert list(target.iterdir()) == []
    save_figure(fig, tmp_path / "f.svg")
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")


def test_eval_steps_grid():
    lrs = Schedule.parse(
        "two_stage(peak_lr=3e-4, total_steps=16000, warmup_steps=2160, "
        "switch_fraction=0.5, second_ratio=0.1)"
    ).lrs()
    grid = eval_steps(lrs, 100, include=[2160, 12000])
    assert len(grid) <= 100
    assert np.all(np.diff(grid) > 0)
    assert grid[-1] == len(lrs) - 1 and {2160, 12000} <= set(grid.tolist())
    area = np.cumsum(lrs)
    assert area[grid[0]] >= 0.02 * area[-1] > area[grid[0] - 1]  # skips the tiny-area start
    assert eval_steps(lrs, 100, include=[300])[0] == 300  # ... unless asked for earlier steps
    after_drop = grid[(grid >= 8000) & (grid < 8100)]
    assert len(after_drop) >= 4  # denser right after the abrupt LR change
    plain = eval_steps(np.full(5000, 1e-3), 50)
    assert len(plain) <= 50 and plain[0] > 0 and plain[-1] == 4999
    assert len(eval_steps(np.full(3, 1e-3), 400)) <= 3


def test_schedule_label():
    assert schedule_label(WSD) == "wsd lr=0.0003 T=24000 W=2160 decay=0.2 1-sqrt final=0.1"
    assert len(schedule_label(WSD, width=20)) == 20
    assert schedule_label("not a schedule (") == "not a schedule ("
    free = Schedule.free_form(np.linspace(1e-3, 0, 100), name="mine")
    assert schedule_label(free) == "free_form mine"
