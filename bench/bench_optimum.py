"""The law's own optimal schedule on the public curves (Luo et al. 2025's multipowerlaw runs).

Per size: both laws fitted on the authors' split (cosine_24000, constant_24000, wsdcon_9),
`hf_lrlaw.optimize` over 24,000 steps at the runs' peak LR and warmup, and its predicted final
loss against cosine and WSD: the best of the default grid (WSD x 3 decay shapes x 12 fractions,
cosine, linear, all to the optimum's floor), and the runs that exist in the data, cosine_24000
(to 10% of the peak), wsd_20000_24000 (stable to step 20,000, then a geometric decay to 10%)
and wsdld_20000_24000 (the same, linear), with their measured final losses (the mean of their last 3 logged points), so that the law's error on a held-out
schedule sits next to the gains it predicts. Figure: the optimum's shape per size.

Run: python bench/bench_optimum.py [--out docs/optimum.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402

import hf_lrlaw  # noqa: E402
from hf_lrlaw import datasets  # noqa: E402
from hf_lrlaw.optimum import shape_text  # noqa: E402

HELD_OUT = ("cosine_24000", "wsd_20000_24000", "wsdld_20000_24000")


def measured(curve) -> float:
    return float(np.mean(curve.losses[-3:]))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="docs/optimum.png", help="the shapes' figure")
    ap.add_argument("--laws", default="multipower,momentum")
    args = ap.parse_args()
    print(f"# bench_optimum — {machine()}")
    rows, shapes = [], {}
    for size in ("25M", "100M", "400M"):
        train, _ = datasets.multipowerlaw_split(size)
        runs = {c.meta["schedule"]: c for c in datasets.load("multipowerlaw", model=size)}
        warmup = hf_lrlaw.fit(train, law="momentum").shared_run_values().get("warmup_steps", 0)
        for law in args.laws.split(","):
            f = hf_lrlaw.fit(train, law=law)
            t0 = time.perf_counter()
            opt = hf_lrlaw.optimize(f, total_steps=24000, warmup_steps=warmup)
            dt = time.perf_counter() - t0
            by = {
                r.schedule.kind
                + (" " + r.schedule.param("decay_shape") if r.schedule.kind == "wsd" else ""): r
                for r in opt.grid
            }
            cos = by["cosine"]
            data_pred = {}
            for name in HELD_OUT:
                c = runs[name]
                data_pred[name] = (float(f.predict(c, [len(c.lrs) - 1])[0]), measured(c))
            rows.append(
                (
                    size,
                    law,
                    f"{opt.predicted:.4f}",
                    f"{opt.gain:+.4f} ({opt.prob_better:.2f})",
                    f"{cos.predicted - opt.predicted:+.4f}",
                    *(
                        f"{p - opt.predicted:+.4f} / {a:.4f} ({p / a - 1:+.2%})"
                        for p, a in data_pred.values()
                    ),  # fmt: skip
                    f"{dt:.2f}",
                )
            )
            print(f"{size} {law}: {shape_text(opt.schedule)}; best grid {opt.baseline.schedule}")
            for n in opt.notes:
                print(f"  note: {n}")
            shapes[(size, law)] = (opt, f)
    print()
    print(
        table(
            rows,
            [
                "size",
                "law",
                "optimum predicted",
                "gain over best grid (P)",
                "gain over cosine",
                *(f"{n}: predicted gain / measured final (law's error)" for n in HELD_OUT),
                "s",
            ],
        )  # fmt: skip
    )
    if args.out:
        _figure(shapes, args.out)
        print(f"\nwrote {args.out}")


def _figure(shapes, out: str) -> None:
    from hf_lrlaw.plots import _new_figure, save_figure

    sizes = sorted({s for s, _ in shapes}, key=lambda s: float(s[:-1]))
    fig = _new_figure(4.0 * len(sizes), 3.4)
    axes = fig.subplots(1, len(sizes), sharey=True)
    for ax, size in zip(np.atleast_1d(axes), sizes):
        for (s, law), (opt, _) in sorted(shapes.items()):
            if s != size:
                continue
            lrs = opt.schedule.lrs() / opt.schedule.peak_lr
            ax.plot(np.arange(len(lrs)), lrs, lw=1.8, label=f"{law} optimum")
        best = next(
            opt for (s, law), (opt, _) in shapes.items() if s == size and law == "multipower"
        )
        base = best.baseline.schedule
        ax.plot(base.lrs() / base.peak_lr, "k--", lw=1, label="best grid (multipower)")
        ax.set_title(f"multipowerlaw {size}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("LR / peak LR")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    save_figure(fig, out)


if __name__ == "__main__":
    main()
