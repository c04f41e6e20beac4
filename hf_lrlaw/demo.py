"""The interim ``make demo``: fit both laws to the bundled public curves and check their
predictions, through the ``lrlaw`` command (``cli.main`` in-process).

For each model size of the multi-power-law data (25M, 100M, 400M) and each law (momentum,
multipower): fit on the authors' three training curves (cosine_24000, constant_24000,
wsdcon_9), predict the six others (constant/cosine over 72000 steps, two WSD decays, two
two-stage runs), measure the error, and plot. Then rank WSD and cosine candidates with the
largest model's fits. Everything lands in ``--out`` (default ``runs/demo``): fit JSONs, PNG
figures, per-fit accuracy JSONs, rankings, ``report.md`` and ``lrlaw.log`` (the commands' output).

    python -m hf_lrlaw.demo [--out runs/demo] [--models 25M,100M,400M] [--laws momentum,multipower]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_lrlaw import cli

MODELS = ("25M", "100M", "400M")
LAWS = ("momentum", "multipower")
#: the candidates ranked at the end: every run of the data has peak 3e-4, 24000 steps, 2160 warmup
SPACE = (
    "wsd:peak_lr=3e-4;total_steps=24000;warmup_steps=2160;decay_fraction=0.1,0.2,0.3,0.5;"
    "decay_shape=linear,1-sqrt,cosine;final_ratio=0,0.1 | "
    "cosine:peak_lr=3e-4;total_steps=24000;warmup_steps=2160;final_ratio=0,0.1 | "
    "linear:peak_lr=3e-4;total_steps=24000;warmup_steps=2160;final_ratio=0,0.1"
)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which (the command's error is on stderr)."""


def _run(argv: list[str], log: io.TextIOBase) -> None:
    """``lrlaw ARGV`` in-process; its stdout goes to the log, its errors to stderr."""
    log.write(f"\n$ lrlaw {' '.join(_quote(a) for a in argv)}\n")
    with contextlib.redirect_stdout(log):  # type: ignore[type-var]
        code = cli.main(argv)
    log.flush()
    if code != 0:
        raise DemoError(f"'lrlaw {argv[0]}' failed with exit code {code} (see above)")


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " ;|()") else arg


def run_demo(
    out: Path, models: Sequence[str] = MODELS, laws: Sequence[str] = LAWS, rank_top: int = 10
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the accuracy table ``{law: {model: error}}``."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    accuracy: dict[str, dict[str, dict[str, Any]]] = {law: {} for law in laws}
    timings: dict[str, float] = {}
    jobs = [(m, law) for m in models for law in laws]
    with open(out / "lrlaw.log", "w") as log:
        for i, (model, law) in enumerate(jobs, start=1):
            tag = f"{law}_{model}"
            fit_json = out / f"fit_{tag}.json"
            print(f"[{i}/{len(jobs)}] fitting {law} on {model} (cosine_24000, constant_24000, "
                  "wsdcon_9) ...", end=" ", flush=True)  # fmt: skip
            t = time.perf_counter()
            _run(["fit", f"dataset:multipowerlaw:model={model},split=train", "--law", law,
                  "-o", str(fit_json)], log)  # fmt: skip
            timings[tag] = time.perf_counter() - t
            _run(["evaluate", str(fit_json), f"dataset:multipowerlaw:model={model},split=test",
                  "-o", str(out / f"accuracy_{tag}.json"),
                  "--plot", str(out / f"pred_vs_actual_{tag}.png")], log)  # fmt: skip
            _run(["plot", str(fit_json), f"dataset:multipowerlaw:model={model}",
                  "--title", f"{law} law, {model} model: fitted on 3 runs, 6 held out",
                  "-o", str(out / f"fit_{tag}.png")], log)  # fmt: skip
            report = json.loads((out / f"accuracy_{tag}.json").read_text())
            accuracy[law][model] = report
            print(f"fit {timings[tag]:.1f} s, held-out mean rel. error "
                  f"{report['mean_rel_error']:.3%}")  # fmt: skip
        rank_model = models[-1]
        rankings: dict[str, str] = {}
        for law in laws:
            tag = f"{law}_{rank_model}"
            print(f"ranking {SPACE.count('|') + 1} schedule families with {law} on {rank_model} "
                  "...", flush=True)  # fmt: skip
            _run(["rank", str(out / f"fit_{tag}.json"), "--space", SPACE, "--top", str(rank_top),
                  "-o", str(out / f"ranking_{tag}.md"),
                  "--plot", str(out / f"ranking_{tag}.png")], log)  # fmt: skip
            _run(["rank", str(out / f"fit_{tag}.json"), "--space", SPACE,
                  "-o", str(out / f"ranking_{tag}.csv")], log)  # fmt: skip
            rankings[law] = (out / f"ranking_{tag}.md").read_text()
    elapsed = time.perf_counter() - t0
    _write_report(out, models, laws, accuracy, timings, rankings, rank_model, rank_top, elapsed)
    print(f"done in {elapsed:.1f} s: {out / 'report.md'}")
    return {law: {m: r["mean_rel_error"] for m, r in by.items()} for law, by in accuracy.items()}


def _write_report(
    out: Path,
    models: Sequence[str],
    laws: Sequence[str],
    accuracy: dict[str, dict[str, dict[str, Any]]],
    timings: dict[str, float],
    rankings: dict[str, str],
    rank_model: str,
    rank_top: int,
    elapsed: float,
) -> None:
    lines = [
        "# hf-lrlaw demo: the laws on the multi-power-law curves",
        "",
        "Data: the public loss curves of Luo et al. 2025 (ICLR 2025, arXiv:2503.12811, MIT "
        "licence), bundled as `hf_lrlaw.datasets`. Each law is fitted on the authors' three "
        "training runs per model size (`cosine_24000`, `constant_24000`, `wsdcon_9`) and "
        "predicts the six other runs (`constant_72000`, `cosine_72000`, `wsd_20000_24000`, "
        "`wsdld_20000_24000`, `wsdcon_3`, `wsdcon_18`), whose losses it never saw.",
        "",
        "## Accuracy on the six held-out runs",
        "",
        "Mean over the six runs of each run's mean `|predicted - loss| / loss` over all its "
        "points (lower is better); in brackets the error of the last point, then how many last "
        "points fall in their 90 % interval.",
        "",
        "| law | " + " | ".join(models) + " | fit time |",
        "|---|" + "---:|" * len(models) + "---:|",
    ]
    for law in laws:
        cells = []
        for m in models:
            r = accuracy[law][m]
            cells.append(f"{r['mean_rel_error']:.3%} (last {r['mean_final_abs_rel_error']:.3%}, "
                         f"{sum(c['covered'] for c in r['curves'])}/{len(r['curves'])})")  # fmt: skip
        t = sum(timings[f"{law}_{m}"] for m in models) / len(models)
        lines.append(f"| {law} | " + " | ".join(cells) + f" | {t:.1f} s |")
    lines += ["", "Per run (mean relative error over its points):", ""]
    lines.append("| law | model | " + " | ".join(
        c["curve"].split("/", 1)[-1] for c in accuracy[laws[0]][models[0]]["curves"]) + " |")
    lines.append("|---|---|" + "---:|" * len(accuracy[laws[0]][models[0]]["curves"]))
    for law in laws:
        for m in models:
            cells = [f"{c['mean_rel_error']:.3%}" for c in accuracy[law][m]["curves"]]
            lines.append(f"| {law} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Figures", ""]
    for m in models:
        for law in laws:
            tag = f"{law}_{m}"
            lines.append(f"- {law}, {m}: [fit and predictions](fit_{tag}.png), "
                         f"[predicted vs observed last loss](pred_vs_actual_{tag}.png), "
                         f"[fit](fit_{tag}.json), [accuracy](accuracy_{tag}.json)")  # fmt: skip
    lines += [
        "",
        f"## Ranking WSD, cosine and linear schedules ({rank_model}, 24000 steps, peak 3e-4)",
        "",
        "Candidates: " + f"`{SPACE}`",
        "",
    ]
    for law in laws:
        tag = f"{law}_{rank_model}"
        table = rankings[law].strip().splitlines()
        lines += [f"### {law} law (top {rank_top}; [all](ranking_{tag}.csv), "
                  f"[figure](ranking_{tag}.png))", "", *table[: rank_top + 2], ""]  # fmt: skip
    notes = []
    for law in laws:
        for m in models:
            fit = json.loads((out / f"fit_{law}_{m}.json").read_text())
            notes += [f"- {law} {m}: {n}" for n in fit.get("notes", [])]
    if notes:
        lines += ["## Notes from the fits", "", *notes, ""]
    lines += [f"Total time {elapsed:.1f} s. The commands and their output: `lrlaw.log`.", ""]
    cli._write_text(out / "report.md", "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hf_lrlaw.demo",
        description="Fit the momentum and multi-power laws to the bundled public curves, "
        "predict held-out schedules, plot, rank candidates (uses the lrlaw command).",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (runs/demo)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="model sizes, comma-separated (25M,100M,400M)")  # fmt: skip
    parser.add_argument("--laws", default=",".join(LAWS),
                        help="laws, comma-separated (momentum,multipower)")  # fmt: skip
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    laws = [law.strip() for law in args.laws.split(",") if law.strip()]
    bad = [m for m in models if m not in MODELS] + [law for law in laws if law not in
                                                     ("momentum", "multipower", "power")]  # fmt: skip
    if bad or not models or not laws:
        parser.error(f"unknown model or law: {', '.join(bad) or '(none given)'}")
    try:
        run_demo(Path(args.out), models, laws)
    except DemoError as exc:
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
