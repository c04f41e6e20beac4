"""Accuracy of every law on both bundled public data sets.

multipowerlaw: the authors' split per model size (fit on cosine_24000, constant_24000,
wsdcon_9; predict the other six); figure = mean over the six test curves of the mean
|pred - loss| / loss (PredE) and the worst point (WorstE).
lr-scheduling: the model-size sweep 33M..360M; per size fit on its constant run and its longest
cosine run, predict its other runs; figures = mean and worst relative error of the final loss.

lrnoise (the law that carries the peak LR) is in both: on the single-peak multipowerlaw runs its
LR terms are not identified; the sweep's constant (1e-3) and cosine (2e-3) runs differ in peak LR.

Run: python bench/bench_accuracy.py [--quick] [--laws lrnoise,momentum,multipower]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SWEEP_SIZES, machine, mean_rel_error, sweep_split, table, worst_rel_error

import hf_lrlaw
from hf_lrlaw import datasets

VARIANTS = {
    "power": ("power", {}),
    "momentum": ("momentum", {}),
    "momentum warmup=actual": ("momentum", {"warmup": "actual"}),
    "momentum warmup=include": ("momentum", {"warmup": "include"}),
    "multipower": ("multipower", {}),
    "multipower warmup=exclude": ("multipower", {"warmup": "exclude"}),
    "lrnoise": ("lrnoise", {}),
}


def multipowerlaw_rows(variants):
    rows = []
    for size in ("25M", "100M", "400M"):
        train, test = datasets.multipowerlaw_split(size)
        for name, (law, opts) in variants.items():
            t0 = time.perf_counter()
            f = hf_lrlaw.fit(train, law, law_options=opts)
            dt = time.perf_counter() - t0
            pred = [f.predict(c.lrs, c.steps) for c in test]
            pe = np.mean([mean_rel_error(p, c) for p, c in zip(pred, test)])
            we = np.max([worst_rel_error(p, c) for p, c in zip(pred, test)])
            rows.append((size, name, f"{pe:.5f}", f"{we:.5f}", f"{dt:.2f}"))
            print(
                f"  multipowerlaw {size:5s} {name:28s} PredE {pe:.5f} WorstE {we:.5f} ({dt:.2f} s)",
                flush=True,
            )
    return rows


def sweep_rows(variants):
    rows = []
    for size in SWEEP_SIZES:
        train, test = sweep_split(size)
        for name, (law, opts) in variants.items():
            f = hf_lrlaw.fit(train, law, law_options=opts)
            errs = [
                abs(f.predict(c.lrs, c.steps[-1:])[0] - c.losses[-1]) / c.losses[-1] for c in test
            ]
            rows.append((size, name, len(test), f"{np.mean(errs):.4f}", f"{np.max(errs):.4f}"))
            print(
                f"  lr-scheduling {size:5s} {name:28s} final-loss error mean {np.mean(errs):.4f} "
                f"worst {np.max(errs):.4f} ({len(test)} runs)",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="default law options only")
    ap.add_argument("--laws", metavar="NAME,...", help="only these rows (e.g. lrnoise,momentum)")
    args = ap.parse_args()
    variants = VARIANTS if not args.quick else {k: v for k, v in VARIANTS.items() if "=" not in k}
    if args.laws:
        wanted = [w.strip() for w in args.laws.split(",")]
        unknown = [w for w in wanted if w not in VARIANTS]
        if unknown:
            raise SystemExit(f"--laws: unknown row(s) {unknown}; known: {sorted(VARIANTS)}")
        variants = {k: VARIANTS[k] for k in wanted}
    print(f"# bench_accuracy — {machine()}")
    print(
        "multipowerlaw, authors' split (fit cosine_24000 + constant_24000 + wsdcon_9; test the other six):"
    )
    a = multipowerlaw_rows(variants)
    print(
        "lr-scheduling size sweep (fit constant + longest cosine; test the size's other runs, final loss):"
    )
    b = sweep_rows(variants)
    print()
    print(table(a, ["size", "law", "PredE (mean of 6)", "WorstE", "fit s"]))
    print()
    print(table(b, ["size", "law", "held-out runs", "final-loss error mean", "worst"]))


if __name__ == "__main__":
    main()
