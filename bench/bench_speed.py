"""Speed of the law core: fit time per law on the published split, and prediction throughput.

Fit: each law fitted jointly on cosine_24000 + constant_24000 + wsdcon_9 of each multipowerlaw
size (targets on 2 cores: momentum < 1 s, multipower < 10 s); best of --repeat runs.
Throughput: final loss (with its interval) of N WSD/cosine schedules of 24,000 steps, scored by
Fit.predict_final (target >= 2,000 schedules/s for momentum).

Run: python bench/bench_speed.py [--repeat 3] [--schedules 4000]
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
from hf_lrlaw import Schedule, datasets  # noqa: E402


def candidates(n: int) -> list[Schedule]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        if i % 2:
            out.append(
                Schedule.wsd(
                    3e-4,
                    24000,
                    warmup_steps=2160,
                    decay_fraction=float(rng.uniform(0.05, 0.6)),
                    decay_shape=["linear", "cosine", "1-sqrt"][i % 3],
                    final_ratio=float(rng.uniform(0, 0.2)),
                )
            )
        else:
            out.append(
                Schedule.cosine(
                    3e-4, 24000, warmup_steps=2160, final_ratio=float(rng.uniform(0, 0.3))
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--schedules", type=int, default=4000)
    args = ap.parse_args()
    print(f"# bench_speed — {machine()}")
    rows = []
    for size in ("25M", "100M", "400M"):
        train, _ = datasets.multipowerlaw_split(size)
        for law in ("power", "momentum", "multipower"):
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                hf_lrlaw.fit(train, law)
                times.append(time.perf_counter() - t0)
            rows.append((size, law, f"{min(times):.3f}", f"{np.median(times):.3f}"))
            print(
                f"  fit {size:5s} {law:10s} best {min(times):.3f} s, median {np.median(times):.3f} s",
                flush=True,
            )
    print()
    print(table(rows, ["size", "law", "fit s (best)", "fit s (median)"]))

    scheds = candidates(args.schedules)
    lrs = np.stack([s.lrs() for s in scheds])
    train, _ = datasets.multipowerlaw_split("100M")
    trows = []
    for law in ("momentum", "multipower"):
        f = hf_lrlaw.fit(train, law)
        f.predict_final(lrs[:64])  # warm up
        t0 = time.perf_counter()
        mean, low, high = f.predict_final(lrs)
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        hf_lrlaw.rank(f, scheds[:1000])
        dr = time.perf_counter() - t1
        trows.append((law, args.schedules, f"{args.schedules / dt:,.0f}", f"{1000 / dr:,.0f}"))
        print(
            f"  {law:10s} predict_final {args.schedules / dt:,.0f} schedules/s; "
            f"rank (with 400 joint draws) {1000 / dr:,.0f} schedules/s",
            flush=True,
        )
    print()
    print(table(trows, ["law", "schedules (24,000 steps)", "predict_final per s", "rank() per s"]))


if __name__ == "__main__":
    main()
