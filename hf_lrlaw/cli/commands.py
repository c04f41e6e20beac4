"""The ``lrlaw`` subcommands: each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_lrlaw.cli.inputs import (
    UsageError,
    check_out,
    fractions_from,
    is_fit_file,
    law_options_from,
    load_curves,
    load_fit,
    parse_size,
    prior_spec,
    steps_from,
    until_from,
)
from hf_lrlaw.cli.schedule_args import MAX_CANDIDATES, schedules_from
from hf_lrlaw.curves import LossCurve
from hf_lrlaw.evaluation import evaluate
from hf_lrlaw.files import json_ready, json_text, write_atomic
from hf_lrlaw.fit_result import Fit, FitError
from hf_lrlaw.fitting import fit as fit_law

__all__ = [
    "cmd_backtest",
    "cmd_datasets",
    "cmd_evaluate",
    "cmd_fit",
    "cmd_optimize",
    "cmd_plot",
    "cmd_peak_lr",
    "cmd_predict",
    "cmd_prior",
    "cmd_rank",
]


def _inputs(args: argparse.Namespace, *more: str | None) -> list[str]:
    """The files a command reads: ``more`` and its ``--schedules`` files and ``--prior``."""
    out = [m for m in more if m]
    out += list(getattr(args, "schedules", None) or [])
    prior = getattr(args, "prior", None)
    return out + ([prior] if prior else [])


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _fit_from_args(args: argparse.Namespace, curves: list[LossCurve]) -> Fit:
    until = until_from(args.until)
    prior = prior_spec(args.prior)
    if until is not None:
        curves = [c.head(until) for c in curves]
    options = law_options_from(args.option)
    if args.law == "auto" and options:
        raise UsageError("--option needs a named law (--law momentum|multipower|power)")
    return fit_law(
        curves,
        law=args.law,
        law_options=options or None,
        prior=prior,
        n_starts=args.n_starts,
        weights=args.weights,
        min_step=args.min_step,
    )


def cmd_fit(args: argparse.Namespace) -> int:
    out = check_out(args.output, (".json",), "-o", _inputs(args, *args.curves))
    curves = load_curves(args.curves, args.metric)
    result = _fit_from_args(args, curves)
    print(result.summary())
    if out is not None:
        result.save(out)
        print(f"wrote {out}")
    return 0


def cmd_prior(args: argparse.Namespace) -> int:
    from hf_lrlaw.priors import Prior, size_prior

    out = check_out(args.output, (".json",), "-o", args.fits)
    if (args.sizes is None) != (args.target is None):
        raise UsageError("--sizes and --target go together (a size sweep's prior)")
    fits = [load_fit(p) for p in args.fits]
    if args.sizes is None:
        prior = Prior.from_fits(fits)
    else:
        sizes = [parse_size(t) for t in args.sizes.split(",") if t.strip()]
        if len(sizes) != len(fits):
            raise UsageError(
                f"--sizes: {len(sizes)} size(s) for {len(fits)} fit(s); give one per fit, in order"
            )
        prior = size_prior(fits, sizes, parse_size(args.target, "--target"))
    rows = [(n, f"{m:.4f}", f"{sd:.4f}") for n, m, sd in zip(prior.names, prior.mean, prior.std)]
    print(f"{prior.law} prior from {prior.source}")
    print(_table(rows, ("feature", "mean", "std")))
    if out is not None:
        prior.save(out)
        print(f"wrote {out}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from hf_lrlaw.backtest import backtest, summarize

    out = check_out(args.output, (".json", ".csv", ".md"), "-o", _inputs(args, *args.curves))
    fractions = fractions_from(args.at)
    prior = prior_spec(args.prior)
    curves = load_curves(args.curves)
    options = law_options_from(args.option)
    rows = backtest(
        curves,
        fractions,
        args.law,
        level=args.level,
        law_options=options or None,
        prior=prior,
        calibration="default" if prior else None,
    )
    if not rows:
        raise UsageError("no curve with points to backtest")
    pct = f"{args.level:.0%}"
    header = ("curve", "seen", "predicted", f"{pct} interval", "actual", "error", "inside")
    table = []
    for r in rows:
        if r.failure is not None:
            table.append(
                (
                    r.curve,
                    f"{r.seen:.3g}",
                    "-",
                    "-",
                    f"{r.actual:.4f}",
                    "-",
                    f"fit failed: {r.failure}",
                )
            )
        else:
            table.append(
                (
                    r.curve,
                    f"{r.seen:.3g}",
                    f"{r.predicted:.4f}",
                    f"[{r.low:.4f}, {r.high:.4f}]",
                    f"{r.actual:.4f}",
                    f"{r.error:+.2%}",
                    "yes" if r.inside else "no",
                )
            )
    summary = summarize(rows)
    lines = [
        f"{args.law} law, prior {prior or 'none'}: final loss predicted from each run's first "
        f"{', '.join(f'{f:.3g}' for f in fractions)} of its steps"
    ]
    for s in summary:
        done = s.runs - s.failed
        lines.append(
            f"  from {s.seen:.3g}: {done}/{s.runs} runs predicted"
            + (
                ""
                if not done
                else f", mean |error| {s.mean_abs_error:.2%}, worst "
                f"{s.worst_abs_error:.2%}, {pct} interval covers {s.coverage:.0%}"
            )
        )
    print(_table(table, header))
    print("\n".join(lines))
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".json":
            data = {
                "law": args.law,
                "prior": prior,
                "level": args.level,
                "summary": [vars(s) for s in summary],
                "runs": [{**vars(r), "error": r.error, "inside": r.inside} for r in rows],
            }
            text = json_text(data)
        elif suffix == ".csv":
            text = _csv([{**vars(r), "error": r.error, "inside": r.inside} for r in rows])
        else:
            md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            md += ["| " + " | ".join(row) + " |" for row in table]
            text = "\n".join(md + [""] + lines) + "\n"
        write_atomic(out, text)
        print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    out = check_out(args.output, (".json", ".csv"), "-o", _inputs(args, args.fit))
    fit = load_fit(args.fit)
    schedules = schedules_from(args, fit.run_defaults())
    if not schedules:
        raise UsageError("give at least one --schedule TEXT or --schedules FILE")
    steps = steps_from(args.steps)
    rows: list[dict[str, Any]] = []
    for s in schedules:
        at = [s.total_steps - 1] if steps is None else steps
        bad = [t for t in at if not 0 <= t < s.total_steps]
        if bad:
            raise UsageError(
                f"--steps {bad[0]} is outside 0..{s.total_steps - 1}, the steps of {s}"
            )
        try:
            mean, low, high = fit.predict_interval(s, at, level=args.level)
            flag = None
            note = fit.extrapolation_note(s)
        except FitError as exc:  # out of the law's domain: flagged, never a NaN
            mean = low = high = np.full(len(at), np.nan)
            flag, note = str(exc), None
        for t, m, lo, hi in zip(at, mean, low, high):
            row = {"schedule": str(s), "step": int(t), "predicted": float(m), "low": float(lo)}
            rows.append({**row, "high": float(hi), "flag": flag, "note": note})
    if all(r["flag"] for r in rows):  # nothing to show
        raise UsageError(f"no prediction: {rows[0]['flag']}")
    unused = [k for k in ("flag", "note") if not any(r[k] for r in rows)]
    for r in rows:  # a column no row needs is left out
        for k in unused:
            del r[k]
        r["level"] = args.level
    if args.json:
        text = json_text(
            ({"law": fit.law, "level": args.level, "notes": fit.notes, "predictions": rows}),
            indent=1,
        )
        print(text)
    else:
        pct = f"{args.level:.0%} interval"
        table = [
            (
                r["schedule"],
                r["step"],
                f"{r['predicted']:.4f}",
                f"[{r['low']:.4f}, {r['high']:.4f}]",
            )
            if not r.get("flag")
            else (r["schedule"], r["step"], "-", f"no prediction: {r['flag']}")
            for r in rows
        ]
        print(_table(table, ("schedule", "step", "predicted loss", pct)))
        for note in dict.fromkeys(r["note"] for r in rows if r.get("note")):
            print(f"note: {note}")
        for note in fit.notes:
            print(f"note: {note}")
    if out is not None:
        if out.suffix.lower() == ".csv":
            write_atomic(out, _csv(rows))
        else:
            write_atomic(out, json_text((rows), indent=1))
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV; an empty cell where a value is missing (never "nan")."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(json_ready(list(rows)))
    return buf.getvalue()


def cmd_rank(args: argparse.Namespace) -> int:
    from hf_lrlaw.ranking import rank

    out = check_out(args.output, (".csv", ".md", ".json"), "-o", _inputs(args, args.fit))
    plot_out = check_out(args.plot, (".png", ".pdf", ".svg"), "--plot", _inputs(args, args.fit))
    fit = load_fit(args.fit)
    horizons = steps_from(args.horizon, "--horizon", minimum=2)
    defaults = fit.run_defaults() or fit.shared_run_values() or None
    if horizons:
        defaults = {**(defaults or {}), "total_steps": horizons[0]}
    schedules = schedules_from(args, defaults)
    if not schedules:
        raise UsageError("give candidates with --schedules FILE, --space SPEC or --schedule TEXT")
    if horizons:
        if len(schedules) * len(horizons) > MAX_CANDIDATES:
            raise UsageError(
                f"{len(schedules)} candidates x {len(horizons)} horizons is more than "
                f"{MAX_CANDIDATES} candidates"
            )
        schedules = list(dict.fromkeys(s.with_total_steps(h) for s in schedules for h in horizons))
    ranking = rank(fit, schedules, level=args.level)
    print(f"{len(ranking)} candidate(s), {fit.law} law, best first:")
    print(ranking.to_markdown(k=args.top))
    for note in ranking.notes:
        print(f"note: {note}")
    fig = None
    if plot_out is not None:
        from hf_lrlaw.plots import plot_ranking

        fig = plot_ranking(ranking, k=min(args.top, 40))
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".csv":
            text = ranking.to_csv()
        elif suffix == ".md":
            text = ranking.to_markdown(k=len(ranking)) + "\n"
        else:
            text = json_text(
                (
                    {
                        "law": ranking.law,
                        "level": ranking.level,
                        "notes": ranking.notes,
                        "rows": ranking.to_dicts(),
                    }
                ),
                indent=1,
            )
        write_atomic(out, text)
        print(f"wrote {out}")
    if fig is not None and plot_out is not None:
        from hf_lrlaw.plots import save_figure

        save_figure(fig, plot_out)
        print(f"wrote {plot_out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from hf_lrlaw.plots import plot_fit, save_figure

    out = check_out(
        args.output, (".png", ".pdf", ".svg"), "-o", _inputs(args, args.fit, *args.inputs)
    )
    inputs = list(args.inputs)
    fit_path = args.fit
    if fit_path is None and inputs and is_fit_file(inputs[0]):
        fit_path = inputs.pop(0)
    curves = load_curves(inputs, getattr(args, "metric", None))
    if fit_path is not None:
        if args.law != "auto" or args.option or args.until is not None or args.prior:
            raise UsageError(
                "--law, --option, --until and --prior fit on the fly; not with a saved fit"
            )
        fit = load_fit(fit_path)
    else:
        if not curves:
            raise UsageError("give a saved fit (fit.json) or curves to fit on the fly")
        fit = _fit_from_args(args, curves)
        print(fit.summary())
    schedules = schedules_from(args, fit.run_defaults())
    if args.label and len(args.label) != len(schedules):
        raise UsageError(f"--label: {len(args.label)} given for {len(schedules)} schedule(s)")
    if not curves and not schedules:
        raise UsageError("nothing to plot: give curves or --schedule")
    fig = plot_fit(
        fit,
        curves,
        predict=schedules,
        labels=args.label or None,
        level=args.level,
        title=args.title,
        max_points=args.max_points,
    )
    save_figure(fig, out)
    print(f"wrote {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    out = check_out(args.output, (".json", ".md"), "-o", [args.fit, *args.curves])
    plot_out = check_out(args.plot, (".png", ".pdf", ".svg"), "--plot", [args.fit, *args.curves])
    fit = load_fit(args.fit)
    curves = [c for c in load_curves(args.curves) if len(c)]
    if not curves:
        raise UsageError("the curves hold no loss point")
    report = evaluate(fit, curves, args.level)
    table = [
        (
            r["curve"],
            r["points"],
            "fitted" if r["in_sample"] else "held out",
            f"{r['mean_rel_error']:.3%}",
            f"{r['loss']:.4f}",
            f"{r['predicted']:.4f}",
            f"[{r['low']:.4f}, {r['high']:.4f}]",
            f"{r['final_rel_error']:+.3%}",
        )
        for r in report["curves"]
    ]
    header = (
        "curve",
        "points",
        "part",
        "mean |rel err|",
        "last loss",
        "predicted",
        f"{args.level:.0%} interval",
        "last rel err",
    )
    text = _table(table, header)
    summary = (
        f"{fit.law} law on {len(report['curves'])} curve(s) ({report['held_out_curves']} with "
        f"held-out points): mean |rel err| {report['mean_rel_error']:.3%}, last point "
        f"{report['mean_final_abs_rel_error']:.3%}, {report['coverage']:.0%} of last points in "
        "their interval"
    )
    if args.json:
        print(json_text((report), indent=1))
    else:
        print(text)
        print(summary)
    fig = None
    if plot_out is not None:
        from hf_lrlaw.plots import plot_predictions_vs_actual

        fig = plot_predictions_vs_actual({fit.law: fit}, curves, level=args.level)
    if out is not None:
        if out.suffix.lower() == ".md":
            md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            md += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
            write_atomic(out, "\n".join(md) + f"\n\n{summary}\n")
        else:
            write_atomic(out, json_text((report), indent=1))
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    if fig is not None and plot_out is not None:
        from hf_lrlaw.plots import save_figure

        save_figure(fig, plot_out)
        print(f"wrote {plot_out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from hf_lrlaw import datasets

    if args.name is None:
        rows = [(n, datasets.info(n).curves, datasets.info(n).title) for n in datasets.available()]
        print(_table(rows, ("name", "curves", "")))
        print("use as CURVES: dataset:NAME[:key=value,...]; 'lrlaw datasets NAME' lists curves")
        return 0
    if args.name not in datasets.available():
        raise UsageError(
            f"no bundled data set {args.name!r}; available: {', '.join(datasets.available())}"
        )
    print(datasets.info(args.name))
    curves = datasets.load(args.name)
    print()
    rows = [
        (
            c.name,
            c.meta.get("model", ""),
            c.meta.get("schedule", ""),
            c.meta.get("peak_lr", ""),
            len(c.lrs),
            len(c),
        )
        for c in curves
    ]
    print(_table(rows, ("curve", "model", "schedule", "peak_lr", "steps", "points")))
    return 0


def cmd_peak_lr(args: argparse.Namespace) -> int:
    from hf_lrlaw.peak_lr import PeakLR, optimal_peak_lr, time_transfer

    out = check_out(args.output, (".json", ".csv", ".md"), "-o", _inputs(args, args.fit))
    plot_out = check_out(args.plot, (".png", ".pdf", ".svg"), "--plot", _inputs(args, args.fit))
    fit = load_fit(args.fit)
    horizons = steps_from(args.horizon, "--horizon", minimum=2)
    found: dict[str, list[PeakLR]] = {
        family: time_transfer(fit, family, horizons, level=args.level)
        if horizons
        else [optimal_peak_lr(fit, family, level=args.level)]
        for family in args.schedule
    }
    rows = [{"family": family, **r.to_dict()} for family, results in found.items() for r in results]
    pct = f"{args.level:.0%} interval"
    table = [
        (
            r["family"],
            f"{r['total_steps']:,}",
            f"{r['peak_lr']:.3g}",
            f"[{r['low']:.3g}, {r['high']:.3g}]",
            f"{r['loss']:.4f}",
            f"[{r['loss_low']:.4f}, {r['loss_high']:.4f}]",
            "at the edge of the searched LRs" if r["at_edge"] else "",
        )
        for r in rows
    ]
    header = ("family", "steps", "optimal peak LR", pct, "predicted loss", pct, "note")
    print(f"optimal peak LR, {fit.law} law (intervals: the fit's parameter uncertainty):")
    print(_table(table, header))
    if len(found) > 1:
        for i in range(len(horizons or [None])):
            best = min((results[i] for results in found.values()), key=lambda r: r.loss)
            print(f"best at {best.total_steps:,} steps: {best.schedule}")
    for note in fit.notes:
        print(f"note: {note}")
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".csv":
            text = _csv(rows)
        elif suffix == ".md":
            md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            text = "\n".join(md + ["| " + " | ".join(row) + " |" for row in table]) + "\n"
        else:
            text = json_text({"law": fit.law, "level": args.level, "rows": rows}, indent=1)
        write_atomic(out, text)
        print(f"wrote {out}")
    if plot_out is not None:
        from hf_lrlaw.plots import plot_time_transfer

        plot_time_transfer(found, plot_out)
        print(f"wrote {plot_out}")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from hf_lrlaw.optimum import optimize

    out = check_out(args.output, (".json",), "-o", _inputs(args, args.fit))
    plot_out = check_out(args.plot, (".png", ".pdf", ".svg"), "--plot", _inputs(args, args.fit))
    fit = load_fit(args.fit)
    peak: float | tuple[float, float] | None = None
    if args.peak_lr is not None:
        try:
            values = [float(v) for v in args.peak_lr.split(",")]
        except ValueError:
            values = []
        if len(values) not in (1, 2):
            raise UsageError(f"--peak-lr takes LR or LOW,HIGH, got {args.peak_lr!r}")
        peak = values[0] if len(values) == 1 else (values[0], values[1])
    found = optimize(
        fit,
        total_steps=args.total_steps,
        peak_lr=peak,
        warmup_steps=args.warmup_steps,
        final_lr=args.final_lr,
        monotone=not args.no_monotone,
        knots=args.knots,
        level=args.level,
    )
    print(f"{fit.law} law:")
    print(found.summary())
    from hf_lrlaw.schedules.labels import schedule_label

    print("the best grid schedule of each family (predicted, above the optimum by):")
    for r in found.grid:
        print(
            f"  {r.predicted:.4f}  {r.predicted - found.predicted:+.4f}  {schedule_label(r.schedule)}"
        )
    if out is not None:
        write_atomic(out, json_text({"law": fit.law, **found.to_dict()}, indent=1))
        print(f"wrote {out}")
    if plot_out is not None:
        from hf_lrlaw.plots import plot_optimum

        plot_optimum(found, fit, plot_out)
        print(f"wrote {plot_out}")
    return 0
