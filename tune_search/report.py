"""The report of a schedule search: ranked table, recommendation, trials, and a figure of the
law's predicted curves for the top candidates against the actual curves of the runs made."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_lrlaw.files import json_ready, write_atomic, write_json
from hf_lrlaw.optimum import family_leaders
from hf_lrlaw.schedules import Schedule, ScheduleError
from tune_search.policy import PRIOR_MODEL_ERROR

if TYPE_CHECKING:
    from tune_search.searcher import LRLawSearcher

__all__ = ["hf_form", "recommended_dict", "write_report", "plot_search"]


def hf_form(schedule: Schedule) -> dict[str, Any]:
    """How to run ``schedule`` with transformers: the exact built-in scheduler as
    ``TrainingArguments`` keywords, or why there is none and what to do instead."""
    try:
        name, kwargs = schedule.to_hf()
    except ScheduleError as exc:
        return {
            "exact": False,
            "reason": str(exc),
            "use": "Schedule.parse(text).to_torch(optimizer), or "
            "tune_search.trainable.ScheduleTrainer(schedule=text)",
        }
    return {
        "exact": True,
        "lr_scheduler_type": name,
        "lr_scheduler_kwargs": kwargs,
        "training_args": schedule.to_training_args(),
    }


def recommended_dict(searcher: LRLawSearcher) -> dict[str, Any]:
    """The recommendation as JSON-ready data (what ``recommended.json`` holds)."""
    rec = searcher.recommendation()
    s: Schedule = rec["schedule"]
    out = {
        "schema": "tune_search.recommended/1",
        "schedule": rec["text"],
        "schedule_dict": s.to_dict(),
        "hf": hf_form(s),
        "source": rec["source"],
        "final_loss": rec.get("final_loss"),
        "last_loss": rec.get("last_loss"),
        "trial_id": rec.get("trial_id"),
        "predicted": rec.get("predicted"),
        "predicted_low": rec.get("low"),
        "predicted_high": rec.get("high"),
        "rank": rec.get("rank"),
        "metric": searcher.metric,
        "law": searcher.law,
        "finished": searcher.finished_reason,
        "calibration": _calibration_dict(searcher),
    }
    return json_ready(out)


def _calibration_dict(searcher: LRLawSearcher) -> dict[str, Any]:
    cal = searcher.calibration()
    return {
        "sigma": cal.sigma,
        "bias": cal.bias,
        "runs": len(cal.misses),
        "misses": [
            {"schedule": text, "predicted": pred, "actual": actual}
            for text, pred, actual in cal.misses
        ],
    }


def _misses_section(searcher: LRLawSearcher) -> list[str]:
    """Each full run's final loss against what the law predicted before it ran, and the
    calibration those misses imply."""
    rows = [
        t
        for t in searcher.trials()
        if t.get("predicted") and t["status"] == "finished" and t["final_loss"] is not None
    ]
    if not rows:
        return []
    cal = searcher.calibration()
    lines = [
        "",
        "## The law's misses",
        "",
        "Each full run's final loss against the law's prediction before it ran: the parameter "
        "interval the search decided on, and that interval widened by the error measured on "
        "the runs before it (calibrated).",
        "",
        "| trial | predicted | interval | calibrated | actual | miss | inside (param / calibrated) |",
        "|---|---:|---|---|---:|---:|---|",
    ]
    for t in rows:
        mean, low, high = t["predicted"]
        actual = t["final_loss"]
        c_low, c_high = t.get("calibrated") or (low, high)
        lines.append(
            f"| {t['trial_id']} | {_fmt(mean)} | [{_fmt(low)}, {_fmt(high)}] | "
            f"[{_fmt(c_low)}, {_fmt(c_high)}] | {_fmt(actual)} | {actual / mean - 1:+.2%} | "
            f"{'yes' if low <= actual <= high else 'no'} / "
            f"{'yes' if c_low <= actual <= c_high else 'no'} |"
        )
    bias = cal.bias
    lines += [
        "",
        f"Calibration: the law's error on a schedule it has not seen run is sigma "
        f"{cal.sigma:.2%} (log scale) from {len(cal.misses)} run(s) and the prior "
        f"{PRIOR_MODEL_ERROR:.1%} counted as one"
        + (f"; mean miss {math.expm1(bias):+.2%}" if bias is not None else "")
        + ".",
    ]
    return lines


def _fmt(x: Any, spec: str = ".5g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def write_report(
    searcher: LRLawSearcher, output_dir: str | Path, *, top: int = 10, figure: bool = True
) -> dict[str, Path]:
    """Write ``report.md``, ``report.png``, ``recommended.json``, ``ranking.csv``, ``fit.json``
    and ``trials.json`` into ``output_dir``; returns their paths by name."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    try:
        rec: dict[str, Any] | None = recommended_dict(searcher)
    except RuntimeError:  # nothing finished and nothing could be fitted
        rec = None
    if rec is not None:
        paths["recommended"] = write_json(out / "recommended.json", rec)
    trials = searcher.trials()
    paths["trials"] = write_json(out / "trials.json", trials)
    ranking = searcher.ranking()
    fit = searcher.current_fit()
    if ranking is not None:
        paths["ranking"] = write_atomic(out / "ranking.csv", ranking.to_csv())
    if fit is not None:
        paths["fit"] = fit.save(out / "fit.json")
    if figure:
        try:
            paths["figure"] = plot_search(searcher, out / "report.png")
        except Exception as exc:  # a figure problem never loses the rest of the report
            searcher.book.warn(None, f"the report figure could not be drawn: {exc}", "figure")

    total = max((t["total_steps"] for t in trials), default=0)
    compute = searcher.compute_steps
    n_cand = len(searcher.candidates)
    lines = [
        "# Learning-rate schedule search",
        "",
        f"{searcher.space_description}; law **{searcher.law}**; metric `{searcher.metric}`.",
        "",
        "## Recommended schedule",
        "",
    ]
    if rec is None:
        lines.append(
            "None: no trial finished and the law could not be fitted "
            f"({searcher.book.fit_error or 'no data'}); see the problems below."
        )
    else:
        lines += [f"`{rec['schedule']}`", ""]
    if rec is None:
        pass
    elif rec["source"] == "finished run":
        lines.append(
            f"From finished run {rec['trial_id']}: final {searcher.metric} "
            f"{_fmt(rec['final_loss'])} (noise-averaged; last reported {_fmt(rec['last_loss'])})"
            + (
                f", law's prediction {_fmt(rec['predicted'])} [{_fmt(rec['predicted_low'])}, "
                f"{_fmt(rec['predicted_high'])}], rank {rec['rank']} of {n_cand}."
                if rec.get("predicted") is not None
                else "."
            )
        )
    else:
        lines.append(
            "No candidate finished a full run: this is the law's predicted best "
            f"({_fmt(rec['predicted'])} [{_fmt(rec['predicted_low'])}, "
            f"{_fmt(rec['predicted_high'])}])."
        )
    hf = rec["hf"] if rec is not None else None
    lines.append("")
    if hf is None:
        pass
    elif hf["exact"]:
        lines += [
            f"transformers: `lr_scheduler_type={hf['lr_scheduler_type']!r}`, "
            f"`lr_scheduler_kwargs={hf['lr_scheduler_kwargs']!r}`, "
            f"`learning_rate={hf['training_args']['learning_rate']!r}`, "
            f"`warmup_steps={hf['training_args']['warmup_steps']!r}`, "
            f"`max_steps={hf['training_args']['max_steps']!r}`."
        ]
    else:
        lines += [f"No built-in transformers scheduler is exactly this schedule; use {hf['use']}."]
    lines += ["", f"Search finished because: {searcher.finished_reason or 'it was stopped early'}."]
    if total:
        lines += [
            "",
            f"Compute: {compute:,} optimizer steps = {compute / total:.2f} full runs "
            f"(a full grid: {n_cand} runs).",
        ]
    lines += _noise_lines(searcher, rec)
    lines += [
        "",
        "## Runs",
        "",
        "Predicted: the law's final-loss prediction when the run was chosen, before it ran. "
        "Steps: those the run paid for; a branch resumed from another run's checkpoint.",
        "",
        f"| trial | role | status | steps | final {searcher.metric} | predicted [90%] | schedule |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for t in trials:
        pred = t.get("predicted")
        shown = f"{_fmt(pred[0])} [{_fmt(pred[1])}, {_fmt(pred[2])}]" if pred else "-"
        steps = f"{t['steps_run']}/{t['total_steps']}"
        if t.get("branch"):
            parent, k = t["branch"]
            steps = f"{t['compute']} ({k}..{t['steps_run']} from {parent})"
        lines.append(
            f"| {t['trial_id']} | {t['role']} | {t['status']} | "
            f"{steps} | {_fmt(t['final_loss'])} | {shown} | "
            f"`{_short_text(t['schedule'])}` |"
        )
    lines += _misses_section(searcher)
    if ranking is not None:
        lines += [
            "",
            f"## Ranking by predicted final {searcher.metric} (top {top})",
            "",
            _short_text(ranking.to_markdown(top)),
        ]
        leaders = family_leaders(ranking)
        if len(leaders) > 1:
            lines += [
                "",
                "Best of each family (kind and decay shape): the top of a ranking is often one "
                "family's near-duplicates.",
                "",
                _short_text(replace(ranking, rows=leaders).to_markdown(len(leaders))),
            ]
    if fit is not None:
        lines += ["", "## Fit", "", "```", fit.summary(), "```"]
    msgs = searcher.messages
    if msgs:
        lines += ["", "## Problems met", ""] + [f"- {m}" for m in msgs]
    if "figure" in paths:
        lines += ["", "## Curves", "", f"![predicted vs actual]({paths['figure'].name})"]
    paths["report"] = write_atomic(out / "report.md", "\n".join(lines) + "\n")
    return paths


def run_noise(searcher: LRLawSearcher) -> tuple[str, list[float]] | None:
    """A schedule that finished more than once (a pilot repeated with another seed) and its
    final losses: the run-to-run noise of this setup. None if none did."""
    finals: dict[str, list[float]] = {}
    for rec in searcher.book.records.values():
        if rec.status == "finished" and rec.final_loss is not None:
            finals.setdefault(rec.schedule, []).append(float(rec.final_loss))
    repeated = [(t, v) for t, v in finals.items() if len(v) >= 2]
    return repeated[0] if repeated else None


def _noise_lines(searcher: LRLawSearcher, rec: dict[str, Any] | None) -> list[str]:
    """The measured run-to-run noise, and the recommendation's margin over the best pilot."""
    lines: list[str] = []
    noise = run_noise(searcher)
    spread = None
    if noise is not None:
        text, values = noise
        spread = max(values) - min(values)
        lines += [
            "",
            f"Run-to-run noise: `{_short_text(text)}` finished {len(values)} times (other seeds): "
            + ", ".join(_fmt(v) for v in values)
            + f"; spread {spread:.4f} ({spread / min(values):.2%}).",
        ]
    horizon = Schedule.parse(rec["schedule"]).total_steps if rec is not None else None
    pilots = [
        r
        for r in searcher.book.records.values()
        if r.role == "pilot"
        and r.status == "finished"
        and r.final_loss is not None
        and r.total_steps == horizon
    ]
    if rec is not None and rec["source"] == "finished run" and pilots:
        if rec["trial_id"] in {p.trial_id for p in pilots}:
            lines += ["", f"The recommendation is a pilot (`{_short_text(str(rec['schedule']))}`): no "
                      "candidate run finished below it."]  # fmt: skip
            return lines
        book = searcher.book
        best = min(pilots, key=lambda r: book.smoothed_final(r) or r.final_loss)
        base = book.smoothed_final(best) or best.final_loss
        gain, raw = base - rec["final_loss"], best.final_loss - rec["last_loss"]
        lines += ["", pilot_verdict(f"`{_short_text(best.schedule)}`, {_fmt(base)}", gain, raw,
                                    base, spread)]  # fmt: skip
    return lines


def pilot_verdict(pilot: str, gain: float, raw: float, base: float, spread: float | None) -> str:
    """The recommendation against the best full-length pilot: a win only when its margin
    exceeds the measured run-to-run spread by both measures, the noise-averaged final losses
    the search compares (``gain``) and the last reported ones (``raw``); else level or behind."""
    both = f"{gain:+.4f} noise-averaged, {raw:+.4f} by the last reported losses"
    if spread is None:
        limit, noise = 0.0, "no repeated run measured the run-to-run noise"
    else:
        limit, noise = spread, f"the run-to-run spread is {spread:.4f}"
    if min(gain, raw) > limit:
        times = f", {gain / spread:.1f}x the run-to-run spread" if spread else ""
        return (f"The recommendation beats the best full-length pilot ({pilot}) by {gain:.4f} "
                f"({gain / base:.2%}{times}; {both}; {noise}).")  # fmt: skip
    if max(gain, raw) < -limit:
        return (f"The recommendation finished behind the best full-length pilot ({pilot}): "
                f"{both}; {noise}.")  # fmt: skip
    return (f"The recommendation is level with the best full-length pilot ({pilot}): {both}; "
            f"{noise}.")  # fmt: skip


def plot_search(searcher: LRLawSearcher, path: str | Path, top: int = 4) -> Path:
    """Three panels: the LR schedules; the loss (actual curves of the runs made as points, the
    law's fit as lines, the predicted curves of the top untried candidates dashed, with bands);
    and the ranking (every candidate's predicted final loss with its interval, and the actual
    final loss of each run made at its rank)."""
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hf_lrlaw.plots import save_figure

    fit = searcher.current_fit()
    ranking = searcher.ranking()
    fig = Figure(figsize=(16, 5.2))
    FigureCanvasAgg(fig)
    ax_lr, ax_loss, ax_rank = fig.subplots(1, 3)
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    k = 0
    made: list[tuple[str, float, str]] = []
    for rec in searcher.book.records.values():
        curve = searcher.book.curve(rec)
        if curve is None:
            continue
        color = colors[k % len(colors)]
        k += 1
        s = Schedule.parse(rec.schedule)
        label = f"{rec.role} {rec.trial_id}: {_short(s)}"
        ax_lr.plot(s.lrs(), color=color, lw=1)
        ax_loss.plot(curve.steps, curve.losses, "o", ms=2.5, color=color, label=label)
        if rec.final_loss is not None:
            made.append((rec.schedule, rec.final_loss, color))
        if fit is not None:
            grid = _grid(s)
            ax_loss.plot(grid, fit.predict(s.lrs(), grid), "-", lw=1, color=color)
    if ranking is not None and fit is not None:
        tried = {r.schedule for r in searcher.book.records.values()}
        shown = 0
        for row in ranking:
            if str(row.schedule) in tried:
                continue
            color = colors[(k + shown) % len(colors)]
            s = row.schedule
            grid = _grid(s)
            mean, low, high = fit.predict_interval(s.lrs(), grid)
            ax_lr.plot(s.lrs(), "--", color=color, lw=1)
            ax_loss.plot(
                grid, mean, "--", color=color, lw=1.2, label=f"predicted #{row.rank}: {_short(s)}"
            )
            ax_loss.fill_between(grid, low, high, color=color, alpha=0.12)
            shown += 1
            if shown >= top:
                break
        _plot_ranking(ax_rank, ranking, made, searcher.metric or "loss")
    else:
        ax_rank.set_axis_off()
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("schedules")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(searcher.metric or "loss")
    ax_loss.set_title(
        f"actual (points), fitted (lines), predicted (dashed); {searcher.law} law", fontsize=10
    )
    losses = [
        v for r in searcher.book.records.values() for v in r.losses if math.isfinite(v) and v > 0
    ]
    if losses:
        lo, hi = np.percentile(losses, [0, 90])
        ax_loss.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    handles, labels = ax_loss.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7.5, frameon=False)
    rows = (len(handles) + 1) // 2
    fig.tight_layout(rect=(0, min(0.02 + 0.036 * rows, 0.4), 1, 1))
    return save_figure(fig, path, dpi=110)


def _plot_ranking(ax: Any, ranking: Any, made: list[tuple[str, float, str]], metric: str) -> None:
    """Predicted final loss of every candidate by rank, with its interval; runs made on top."""
    ranks = np.array([r.rank for r in ranking])
    pred = np.array([r.predicted for r in ranking])
    ax.fill_between(
        ranks,
        [r.low for r in ranking],
        [r.high for r in ranking],
        color="0.6",
        alpha=0.3,
        lw=0,
        label="90% interval",
    )
    ax.plot(ranks, pred, "-", color="0.2", lw=1.2, label="predicted final loss")
    where = {str(r.schedule): r.rank for r in ranking}
    for text, final, color in made:
        if text in where:
            ax.plot(where[text], final, "o", ms=6, color=color, mec="k", mew=0.6)
    ax.plot([], [], "o", color="0.5", mec="k", mew=0.6, label="actual final loss of a run made")
    ax.set_xscale("log")
    ax.set_xlabel(f"rank among {len(ranks):,} candidates")
    ax.set_ylabel(f"final {metric}")
    ax.set_title("ranking", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper left")


def _grid(s: Schedule) -> np.ndarray:
    area = np.cumsum(s.lrs())
    first = int(np.argmax(area > 0))
    return np.unique(np.linspace(first, s.total_steps - 1, 200).astype(np.int64))


_LONG_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d{5,}|\d\.\d+e-?\d+)")


def _short_text(text: str) -> str:
    """Schedule text for humans: floats to 4 significant digits (0.38333333 -> 0.3833); the
    exact text is in recommended.json and trials.json."""
    return _LONG_FLOAT.sub(lambda m: format(float(m.group(1)), ".4g"), text)


def _short(s: Schedule) -> str:
    text = str(s)
    inner = text[text.index("(") + 1 : -1].split(", ")
    keep = [p for p in inner if not p.startswith(("peak_lr=", "total_steps=", "warmup_steps="))]
    return f"{s.kind}({', '.join(keep)})"
