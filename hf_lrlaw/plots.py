"""Matplotlib figures: a fitted law against its data, predicted curves, rankings.

Every function builds its own :class:`matplotlib.figure.Figure` with an Agg canvas (never the
``pyplot`` global state), so it is safe in threads, in callbacks and on machines without a
display. Each returns the figure; with ``path`` it also saves it atomically (PNG unless the
suffix says ``.pdf`` or ``.svg``).

>>> from hf_lrlaw import datasets, fit
>>> from hf_lrlaw.plots import plot_fit
>>> train, test = datasets.multipowerlaw_split("25M")
>>> f = fit([c.head(0.5) for c in train], law="momentum")
>>> fig = plot_fit(f, train, predict=test[:2], path="fit.png")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.files import write_atomic
from hf_lrlaw.fit_result import Fit
from hf_lrlaw.optimum import Optimum
from hf_lrlaw.peak_lr import PeakLR
from hf_lrlaw.ranking import Ranking
from hf_lrlaw.schedules import Schedule
from hf_lrlaw.schedules.labels import family_label, labels_without_common, schedule_label, truncate

__all__ = [
    "plot_fit",
    "plot_optimum",
    "plot_predictions_vs_actual",
    "plot_ranking",
    "plot_time_transfer",
    "save_figure",
    "schedule_label",
]

_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
_MAX_MARKERS = 1500  # observed points drawn per curve (evenly thinned beyond that)
_DPI = 120


# -- saving --------------------------------------------------------------------------------------


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = _DPI) -> Path:
    """Write ``fig`` to ``path`` atomically (:func:`hf_lrlaw.files.write_atomic`): PNG, or
    PDF/SVG by suffix. Missing parent folders are created."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower(), "png")
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    return write_atomic(path, buffer.getvalue())


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# -- evaluation grid -----------------------------------------------------------------------------


def _jumps(lrs: np.ndarray, limit: int = 8) -> np.ndarray:
    """Steps right after the largest abrupt LR changes (> 5 % of the peak in one step)."""
    if len(lrs) < 2:
        return np.zeros(0, dtype=np.int64)
    diff = np.abs(np.diff(lrs))
    big = np.flatnonzero(diff > 0.05 * float(lrs.max()))
    if len(big) > limit:
        big = np.sort(big[np.argsort(diff[big])[-limit:]])
    return big + 1


def eval_steps(
    lrs: np.ndarray, max_points: int = 400, include: Sequence[int] = (), min_area: float = 0.02
) -> np.ndarray:
    """At most ``max_points`` steps in ``0..T-1`` to draw a predicted curve at: half geometric,
    half linear, denser right after abrupt LR changes, from the step where the LR area reaches
    ``min_area`` of its total (the laws diverge at tiny areas) or the first of ``include``.
    Every step of ``include`` (within range) is kept."""
    lrs = np.asarray(lrs, dtype=np.float64)
    t = len(lrs)
    n = max(2, int(max_points))
    area = np.cumsum(lrs)
    positive = np.flatnonzero(area > 0)
    first = int(positive[0]) if len(positive) else t - 1
    start = int(np.searchsorted(area, min_area * area[-1]))
    inc = np.asarray([s for s in include if first <= s < t], dtype=np.int64)
    if len(inc):
        start = min(start, int(inc.min()))
    start = int(np.clip(start, first, t - 1))
    last = t - 1
    extra: list[np.ndarray] = []
    budget = min(n // 4, 12 * len(_jumps(lrs)))
    if budget:
        per = max(2, budget // max(1, len(_jumps(lrs))))
        for j in _jumps(lrs):
            reach = max(2, min(2000, last - j + 1))
            extra.append(j - 1 + np.unique(np.geomspace(1, reach, per).astype(np.int64)))
    n_main = max(2, n - budget - len(inc))
    n_geo = n_main // 2
    geo = np.geomspace(max(start, 1), max(last, 1), max(n_geo, 1)).astype(np.int64)
    lin = np.linspace(start, last, max(n_main - n_geo, 2)).round().astype(np.int64)
    required = np.unique(np.concatenate([inc, [start, last]]))
    others = np.unique(np.concatenate([geo, lin, *extra]))
    others = others[(others > start) & (others < last)]
    others = np.setdiff1d(others, required)
    room = max(0, n - len(required))
    if len(others) > room:
        others = others[np.unique(np.linspace(0, len(others) - 1, room).round().astype(np.int64))]
        others = others[:room]
    return np.unique(np.concatenate([required, others]))


# -- plot_fit ------------------------------------------------------------------------------------


@dataclass
class _Item:
    label: str
    lrs: np.ndarray
    steps: np.ndarray | None  # observed points, if any
    losses: np.ndarray | None
    fitted_last: int  # last step the fit saw of this run (-1: a pure prediction)


def _as_item(obj: Any, label: str | None, index: int) -> _Item:
    if isinstance(obj, LossCurve):
        return _Item(
            label or obj.name or f"curve {index + 1}",
            np.asarray(obj.lrs),
            np.asarray(obj.steps),
            np.asarray(obj.losses),
            -1,
        )
    if isinstance(obj, str):
        obj = Schedule.parse(obj)
    if isinstance(obj, Schedule):
        return _Item(label or schedule_label(obj, 56), obj.lrs(), None, None, -1)
    lrs = np.asarray(obj, dtype=np.float64)
    if lrs.ndim != 1 or len(lrs) == 0:
        raise ValueError("each item of predict= must be a Schedule, a LossCurve or a 1-D LR array")
    return _Item(label or f"schedule {index + 1}", lrs, None, None, -1)


def _thin(steps: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(steps) <= _MAX_MARKERS:
        return steps, losses
    keep = np.unique(np.linspace(0, len(steps) - 1, _MAX_MARKERS).round().astype(np.int64))
    return steps[keep], losses[keep]


def _fit_headline(fit: Fit) -> tuple[str, str]:
    g = fit.goodness
    stats = (
        f"R\u00b2 {g.r2:.4f} \u00b7 mean rel. error {g.mean_rel_error:.3%} \u00b7 "
        f"worst {g.worst_rel_error:.2%} \u00b7 {g.n_points} points"
    )
    flags = []
    if not fit.annealing_identified:
        flags.append("annealing not identified")
    loose = [n for n, ok in fit.determined.items() if not ok]
    annealing = getattr(fit.law_object, "annealing_param", None)
    loose = [n for n in loose if not (n == annealing and not fit.annealing_identified)]
    if loose:
        flags.append("not determined: " + ", ".join(loose))
    return stats, " \u00b7 ".join(flags)


def plot_fit(
    fit: Fit,
    curves: Sequence[LossCurve] | LossCurve = (),
    *,
    predict: Sequence[Schedule | LossCurve | np.ndarray | str] = (),
    labels: Sequence[str] | None = None,
    level: float = 0.9,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    max_points: int = 400,
) -> Figure:
    """The fitted law against the loss curves, with predicted curves and their bands.

    For each curve: its observed points (filled where the fit used them, hollow where it did
    not: held out), and the law over the curve's whole LR array, solid over the part the fit saw
    and dashed, with the prediction band at ``level``, over the rest. Which part the fit saw is
    read from ``fit.curves`` (matched by curve name; a curve the fit does not know is all
    prediction). Each item of ``predict`` (a Schedule or its text, a LossCurve, or a per-step
    LR array) adds a dashed predicted curve with its band (a LossCurve's points drawn hollow),
    labelled by ``labels`` or a short form of the schedule. A lower panel shows the LR schedules.

    Args:
        fit: the fitted law.
        curves: the curves to show with the law.
        predict: extra runs to predict.
        labels: one label per item of ``predict``.
        level: the probability of the bands.
        title: the figure's headline (default: the law and its number of curves); the goodness
            of fit and the fit's flags (e.g. "annealing not identified") are always shown.
        path: where to save the figure (PNG; atomically).
        max_points: at most this many steps are evaluated per curve.

    Returns:
        The figure.
    """
    if isinstance(curves, LossCurve):
        curves = [curves]
    if isinstance(predict, (Schedule, LossCurve, str)):
        predict = [predict]
    curves, predict = list(curves), list(predict)
    if labels is not None and len(labels) != len(predict):
        raise ValueError(f"labels: {len(labels)} given for {len(predict)} item(s) of predict")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    items = [
        _Item(
            c.name or f"curve {i + 1}",
            np.asarray(c.lrs),
            np.asarray(c.steps),
            np.asarray(c.losses),
            fit.fitted_last_step(c),
        )
        for i, c in enumerate(curves)
    ]
    items += [
        _as_item(obj, None if labels is None else labels[i], i) for i, obj in enumerate(predict)
    ]

    fig = _new_figure(11.0, 7.0)
    ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    colors = _colors(len(items))
    observed: list[np.ndarray] = []
    means: list[np.ndarray] = []
    any_band = any_fitted = any_held = False
    firsts = [int(it.steps[0]) for it in items if it.steps is not None and len(it.steps)]
    for item, color in zip(items, colors):
        include = [] if item.steps is None or not len(item.steps) else [int(item.steps[0])]
        if item.fitted_last >= 0:
            include.append(item.fitted_last)
        # start where the data start (the laws blow up before): this run's, else any run's
        start = include[0] if include else (min(firsts) if firsts else None)
        grid = eval_steps(item.lrs, max_points, include)
        if start is not None and (grid >= start).sum() >= 2:
            grid = grid[grid >= start]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mean, low, high = fit.predict_interval(item.lrs, grid, level=level)
        ok = np.isfinite(mean)
        grid, mean, low, high = grid[ok], mean[ok], low[ok], high[ok]
        seen = grid <= item.fitted_last
        ahead = grid >= item.fitted_last
        if item.steps is not None and len(item.steps):
            steps, losses = _thin(item.steps, item.losses)
            used = steps <= item.fitted_last
            if used.any():
                ax.plot(
                    steps[used],
                    losses[used],
                    "o",
                    ms=2.5,
                    color=color,
                    alpha=0.35,
                    mec="none",
                    zorder=1,
                )
                any_fitted = True
            if (~used).any():
                ax.plot(
                    steps[~used],
                    losses[~used],
                    "o",
                    ms=3,
                    mfc="none",
                    mec=color,
                    alpha=0.5,
                    mew=0.7,
                    zorder=1,
                )
                any_held = True
            observed.append(item.losses)
        label = item.label
        if seen.sum() >= 2:
            ax.plot(grid[seen], mean[seen], "-", color=color, lw=1.6, label=label, zorder=3)
            label = None
        if ahead.sum() >= 1:
            ax.plot(grid[ahead], mean[ahead], "--", color=color, lw=1.6, label=label, zorder=3)
            if fit.annealing_identified:
                ax.fill_between(grid[ahead], low[ahead], high[ahead], color=color, alpha=0.13, lw=0)
            else:  # very wide bands: light fill and edges, so the curves stay readable
                ax.fill_between(grid[ahead], low[ahead], high[ahead], color=color, alpha=0.04, lw=0)
                for edge in (low, high):
                    ax.plot(grid[ahead], edge[ahead], ":", color=color, lw=0.7, alpha=0.6)
            any_band = True
        means.append(mean)
        stride = max(1, len(item.lrs) // 4000)
        lr_steps = np.unique(
            np.concatenate(
                [
                    np.arange(0, len(item.lrs), stride),
                    _jumps(item.lrs),
                    _jumps(item.lrs) - 1,
                    [len(item.lrs) - 1],
                ]
            )
        )
        ax_lr.plot(lr_steps, item.lrs[lr_steps], color=color, lw=1.2)

    _set_loss_limits(ax, observed, means)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))

    handles, names = ax.get_legend_handles_labels()
    names = [truncate(n, 56) for n in names]
    style = [Line2D([], [], color="0.3", lw=1.6, label="law, fitted part")]
    if any_band:
        style += [
            Line2D([], [], color="0.3", lw=1.6, ls="--", label="law, predicted"),
            Patch(color="0.3", alpha=0.15, label=f"{level:.0%} band"),
        ]
    if any_fitted:
        style.append(
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                ms=4,
                color="0.3",
                alpha=0.5,
                mec="none",
                label="loss, fitted",
            )
        )
    if any_held:
        style.append(
            Line2D([], [], ls="", marker="o", ms=4, mfc="none", mec="0.3", label="loss, held out")
        )
    ax.legend(
        handles + style,
        names + [h.get_label() for h in style],
        fontsize=7.5,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        frameon=False,
    )

    stats, flags = _fit_headline(fit)
    headline = title or f"{fit.law} law fitted on {len(fit.curves)} curve(s)"
    fig.suptitle("\n".join(x for x in (headline, stats, flags) if x), fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _set_loss_limits(ax: Any, observed: list[np.ndarray], means: list[np.ndarray]) -> None:
    """Y limits from the data and the predicted means (bands may run off the axes: the laws'
    blow-up at tiny areas and the wide bands of unidentified fits would hide everything)."""
    obs = np.concatenate(observed) if observed else np.zeros(0)
    pred = np.concatenate(means) if means else np.zeros(0)
    pred = pred[np.isfinite(pred)]
    if not len(obs) and not len(pred):
        return
    core_lo = min(
        float(obs.min()) if len(obs) else np.inf, float(pred.min()) if len(pred) else np.inf
    )
    core_hi = float(np.quantile(obs, 0.995)) if len(obs) else float(np.quantile(pred, 0.95))
    span = max(core_hi - core_lo, 1e-6 * max(abs(core_hi), 1.0))
    ax.set_ylim(core_lo - 0.06 * span, core_hi + 0.06 * span)


# -- plot_ranking --------------------------------------------------------------------------------


def plot_ranking(
    ranking: Ranking,
    k: int = 20,
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """The predicted final loss of the top ``k`` candidates with their intervals, best on top.

    Candidates the data cannot rule out (``ranking.contenders()``) are drawn in colour, the
    others in grey; each row shows its probability of being the best. Parameters every shown
    candidate shares (peak LR, steps, warmup) go to the subtitle instead of every label.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rows = ranking.top(k)
    if not rows:
        raise ValueError("the ranking is empty")
    n = len(rows)
    labels, common = labels_without_common([r.schedule for r in rows], 70)
    labels = [f"{r.rank}. {lab}" for r, lab in zip(rows, labels)]
    contenders = {id(r) for r in ranking.contenders()}
    fig = _new_figure(10.0, 1.4 + 0.3 * n)
    ax = fig.subplots()
    y = np.arange(n)
    pred = np.array([r.predicted for r in rows])
    low = np.array([r.low for r in rows])
    high = np.array([r.high for r in rows])
    for i, r in enumerate(rows):
        color = "C0" if id(r) in contenders else "0.55"
        ax.errorbar(
            pred[i],
            y[i],
            xerr=[[pred[i] - low[i]], [high[i] - pred[i]]],
            fmt="o",
            color=color,
            ms=4,
            capsize=2.5,
            lw=1.2,
        )
    ax.axvline(ranking.best.predicted, color="C3", lw=0.8, ls=":")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"predicted final loss ({ranking.level:.0%} interval)")
    ax.grid(axis="x", alpha=0.3)
    x_right = float(high.max())
    span = max(x_right - float(low.min()), 1e-9)
    ax.set_xlim(float(low.min()) - 0.02 * span, x_right + 0.22 * span)
    for i, r in enumerate(rows):
        ax.text(
            x_right + 0.04 * span,
            y[i],
            f"P(best) {r.prob_best:.2f}",
            va="center",
            fontsize=7,
            color="0.3",
        )
    head = title or (
        f"Top {n} of {len(ranking)} candidates by predicted final loss ({ranking.law} law)"
    )
    sub = [common] if common else []
    if ranking.notes:
        sub.append(f"{len(ranking.notes)} note(s) on the fit: " + truncate(ranking.notes[0], 90))
    ax.set_title("\n".join([head, *sub]), fontsize=9.5)
    if path is not None:
        save_figure(fig, path)
    return fig


# -- plot_predictions_vs_actual ------------------------------------------------------------------


def plot_predictions_vs_actual(
    fits: Fit | Mapping[str, Fit],
    curves: Sequence[LossCurve],
    *,
    level: float = 0.9,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Predicted against observed loss at the last observed step of each curve, with the
    prediction intervals at ``level``: one colour per fit (``fits`` may map labels to fits)."""
    if isinstance(fits, Fit):
        fits = {fits.law: fits}
    curves = [c for c in curves if len(c)]
    if not fits or not curves:
        raise ValueError("plot_predictions_vs_actual needs at least one fit and one curve")
    fig = _new_figure(6.8, 6.0)
    ax = fig.subplots()
    actual = np.array([c.final_loss for c in curves])
    everything = [actual]
    for j, (label, f) in enumerate(fits.items()):
        pred, low, high = (np.empty(len(curves)) for _ in range(3))
        for i, c in enumerate(curves):
            m, lo, hi = f.predict_interval(c.lrs, [c.last_step], level=level)
            pred[i], low[i], high[i] = m[0], lo[0], hi[0]
        err = float(np.mean(np.abs(pred - actual) / actual))
        shift = (j - (len(fits) - 1) / 2) * 0.004 * max(float(np.ptp(actual)), 1e-3)
        ax.errorbar(
            actual + shift,
            pred,
            yerr=[pred - low, high - pred],
            fmt="o",
            ms=4,
            capsize=2,
            color=f"C{j}",
            label=f"{label}: mean |error| {err:.2%}",
            alpha=0.85,
        )
        everything += [pred]
    for c, a in zip(curves, actual):
        ax.annotate(
            truncate(c.name, 28),
            (a, a),
            fontsize=6.5,
            color="0.35",
            xytext=(4, -9),
            textcoords="offset points",
        )
    both = np.concatenate(everything)
    lo_, hi_ = float(both.min()), float(both.max())
    pad = 0.08 * max(hi_ - lo_, 1e-3)
    ax.plot([lo_ - pad, hi_ + pad], [lo_ - pad, hi_ + pad], color="0.5", lw=0.8, ls="--")
    ax.set_xlim(lo_ - pad, hi_ + pad)
    ax.set_ylim(lo_ - pad, hi_ + pad)
    ax.set_xlabel("observed loss at the last step")
    ax.set_ylabel(f"predicted loss ({level:.0%} interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Predicted vs observed final loss", fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig


# -- plot_time_transfer --------------------------------------------------------------------------


def plot_time_transfer(
    transfers: Sequence[PeakLR] | Mapping[str, Sequence[PeakLR]],
    path: str | os.PathLike[str] | None = None,
    *,
    observed: Mapping[int, float] | None = None,
    title: str | None = None,
) -> Figure:
    """The predicted optimal peak LR against the horizon, with its interval, for one or more
    schedule families (:func:`hf_lrlaw.time_transfer`), and beside it the predicted final loss
    against the peak LR at each horizon (how flat the optimum is). ``observed`` maps a horizon
    to a measured optimal LR, drawn as crosses."""
    series = dict(transfers) if isinstance(transfers, Mapping) else {"": list(transfers)}
    if not series or not all(len(v) for v in series.values()):
        raise ValueError("time transfer needs at least one horizon per schedule family")
    fig = _new_figure(11.0, 4.2)
    ax_lr, ax_loss = fig.subplots(1, 2)
    for j, (label, rows) in enumerate(series.items()):
        rows = sorted(rows, key=lambda r: r.total_steps)
        name = label or family_label(rows[0].schedule, 40)
        h = np.array([r.total_steps for r in rows], float)
        ax_lr.plot(h, [r.peak_lr for r in rows], "o-", color=f"C{j}", ms=4, label=name)
        ax_lr.fill_between(
            h, [r.low for r in rows], [r.high for r in rows], color=f"C{j}", alpha=0.18, lw=0
        )
    shades = _colors(len(next(iter(series.values()))))
    for k, r in enumerate(sorted(next(iter(series.values())), key=lambda r: r.total_steps)):
        ok = np.isfinite(r.predicted)
        ax_loss.plot(
            r.grid[ok], r.predicted[ok], color=shades[k], lw=1.3, label=f"{r.total_steps:,}"
        )
        ax_loss.plot([r.peak_lr], [r.loss], "o", color=shades[k], ms=4)
    if observed:
        hs = sorted(observed)
        ax_lr.plot(hs, [observed[x] for x in hs], "kx", ms=7, mew=1.5, label="measured")
    for ax in (ax_lr, ax_loss):
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
    ax_lr.set_yscale("log")
    ax_lr.set_xlabel("horizon (optimizer steps)")
    ax_lr.set_ylabel(f"optimal peak LR ({next(iter(series.values()))[0].level:.0%} interval)")
    ax_lr.legend(fontsize=8)
    ax_loss.set_xlabel("peak LR")
    ax_loss.set_ylabel("predicted final loss")
    ax_loss.legend(title="steps", fontsize=7, title_fontsize=8)
    first, rows0 = next(iter(series.items()))
    ax_loss.set_title(
        f"{first or family_label(rows0[0].schedule, 40)}: predicted final loss against peak LR",
        fontsize=9,
    )
    _limit_to_optima(ax_loss, next(iter(series.values())))
    ax_lr.set_title(title or "Predicted optimal peak LR against the horizon", fontsize=9.5)
    if path is not None:
        save_figure(fig, path)
    return fig


def _limit_to_optima(ax: Any, rows: Sequence[PeakLR]) -> None:
    """Zoom the loss-vs-LR panel onto a decade either side of the optima, where it matters."""
    lrs = [r.peak_lr for r in rows]
    ax.set_xlim(min(lrs) / 10, max(lrs) * 10)
    inside = np.concatenate(
        [r.predicted[(r.grid >= min(lrs) / 10) & (r.grid <= max(lrs) * 10)] for r in rows]
    )
    inside = inside[np.isfinite(inside)]
    if len(inside):
        lo, hi = float(inside.min()), float(np.quantile(inside, 0.8))
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))


# -- plot_optimum --------------------------------------------------------------------------------


def plot_optimum(
    optimum: Optimum,
    fit: Fit,
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """The law's optimal schedule against the best grid schedule of each family: their LRs over
    the run, and the loss the law predicts for each over its last half, with the final loss's
    interval at the end (:func:`hf_lrlaw.optimize`)."""
    items = [("optimum", optimum.schedule, optimum.predicted, optimum.low, optimum.high)]
    labels, _ = labels_without_common([r.schedule for r in optimum.grid], 50)
    items += [
        (label, r.schedule, r.predicted, r.low, r.high) for label, r in zip(labels, optimum.grid)
    ]
    fig = _new_figure(11.0, 4.2)
    ax_lr, ax_loss = fig.subplots(1, 2)
    total = optimum.schedule.total_steps
    steps = np.unique(np.linspace(total // 2, total - 1, 300).astype(int))
    for j, (label, schedule, mean, low, high) in enumerate(items):
        style = {"color": "k", "lw": 2.2} if j == 0 else {"color": f"C{j - 1}", "lw": 1.1}
        lrs = schedule.lrs()
        ax_lr.plot(np.arange(len(lrs)), lrs, label=f"{label}: {mean:.4f}", **style)
        ax_loss.plot(steps, fit.predict(schedule, steps), **style)
        ax_loss.errorbar([total - 1 + 0.01 * j * total], [mean], yerr=[[mean - low], [high - mean]],
                         fmt="o", ms=3, capsize=2, **style)  # fmt: skip
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.legend(fontsize=7, title="predicted final loss", title_fontsize=7.5)
    ax_lr.grid(alpha=0.3)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"predicted loss (final: {optimum.level:.0%} interval)")
    ax_loss.grid(alpha=0.3)
    finals = [m for _, _, m, _, _ in items]
    spread = max(max(finals) - min(finals), 1e-4)
    ax_loss.set_ylim(min(finals) - 1.5 * spread, max(finals) + 4 * spread)
    gain = (
        f"; {optimum.gain:+.4f} below the best grid schedule (P {optimum.prob_better:.2f})"
        if optimum.baseline is not None
        else ""
    )
    ax_lr.set_title(title or f"The {fit.law} law's optimal schedule{gain}", fontsize=9.5)
    ax_loss.set_title("predicted loss over the second half of the run", fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig
