"""Speed of the law core: fit time per law on the published split, and prediction throughput.

Fit: each law fitted jointly on cosine_24000 + constant_24000 + wsdcon_9 of each multipowerlaw
size (targets on 2 cores: momentum < 1 s, multipower < 10 s); best of --repeat runs.
Throughput at 24,000 steps, in one run: the final loss with its interval (Fit.predict_final)
and rank() (with 400 joint draws) of a realistic grid (4 peak LRs x WSD 34 lengths x 4 shapes
x 8 final LRs + cosine + linear, 4,384 schedules: shapes shared between candidates) and of a
random set (WSD/cosine with random lengths and final LRs: every decay its own shape), each
scored from the schedules' pieces (the fast path) and from their per-step LR arrays (the path
before it, and still the one of kinds without pieces); then how the fast path's cost grows with
the candidates (distinct shapes; one grid at 1-16 peak LRs, each shape scored once at a unit
peak and rescaled) and the steps. Targets (2 cores): final loss >= 20,000/s (momentum) and >= 2,000/s
(multi-power), rank() >= 5,000/s (momentum).

Run: python bench/bench_speed.py [--repeat 3] [--schedules 4000] [--no-fits]
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
    ap.add_argument("--no-fits", action="store_true", help="throughput only")
    args = ap.parse_args()
    print(f"# bench_speed — {machine()}")
    if not args.no_fits:
        fit_times(args)
    throughput(args)


def grid(total: int = 24000, warmup: int = 2160, peaks=(1e-4, 2e-4, 3e-4, 5e-4)) -> list[Schedule]:
    out = []
    for peak in peaks:
        for f in np.round(np.linspace(0.05, 0.6, 34), 4):
            for shape in ("linear", "cosine", "1-sqrt", "exponential"):
                for r in (0.0, 0.001, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3):
                    if shape == "exponential" and r == 0:
                        r = 0.002
                    out.append(
                        Schedule.wsd(
                            peak,
                            total,
                            warmup_steps=warmup,
                            decay_fraction=float(f),
                            decay_shape=shape,
                            final_ratio=r,
                        )  # fmt: skip
                    )
        for r in (0.0, 0.01, 0.1, 0.2):
            out.append(Schedule.cosine(peak, total, warmup_steps=warmup, final_ratio=r))
            out.append(Schedule.linear(peak, total, warmup_steps=warmup, final_ratio=r))
    return out


def _rate(fn, arg, n: int, repeat: int = 2) -> float:
    """Calls per second of ``fn(arg)`` on ``n`` schedules, best of ``repeat``."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return n / best


def throughput(args) -> None:
    train, _ = datasets.multipowerlaw_split("100M")
    fits = {law: hf_lrlaw.fit(train, law) for law in ("momentum", "multipower")}
    sets = {"grid": grid(), "random": candidates(args.schedules)}
    rows = []
    for law, f in fits.items():
        for name, scheds in sets.items():
            m = len(scheds) if law == "momentum" else min(len(scheds), 1000)
            sub = scheds[:: max(1, len(scheds) // m)][:m]
            f.predict_final(sub[:32])  # warm up
            fast = _rate(f.predict_final, sub, len(sub))
            slow = _rate(lambda xs, f=f: f.predict_final([s.lrs() for s in xs]), sub, len(sub), 1)
            r = sub[: min(len(sub), 2000 if law == "momentum" else 300)]
            rank_rate = _rate(lambda xs, f=f: hf_lrlaw.rank(f, xs), r, len(r), 1)
            rows.append((law, name, len(sub), f"{slow:,.0f}", f"{fast:,.0f}",
                         f"{fast / slow:.1f}x", f"{rank_rate:,.0f}"))  # fmt: skip
            print(f"  {law:10s} {name:6s} final loss {slow:,.0f}/s per-step -> {fast:,.0f}/s "
                  f"pieces ({fast / slow:.1f}x); rank {rank_rate:,.0f}/s", flush=True)  # fmt: skip
    print()
    print(table(rows, ["law", "set", "schedules", "final loss/s, per-step LRs",
                       "final loss/s, pieces", "ratio", "rank()/s (pieces)"]))  # fmt: skip
    f = fits["momentum"]
    srows = []
    for n in (1000, 4000, 16000):  # every candidate its own shape
        scheds = candidates(n)
        srows.append(("random candidates", n, 24000, f"{_rate(f.predict_final, scheds, n):,.0f}"))
    for k in (1, 4, 16):  # one shape is scored once for every peak LR it is tried at
        scheds = grid(peaks=tuple(np.geomspace(1e-4, 1e-3, k)) if k > 1 else (3e-4,))
        srows.append((f"grid, {k} peak LR(s)", len(scheds), 24000,
                      f"{_rate(f.predict_final, scheds, len(scheds)):,.0f}"))  # fmt: skip
    for steps in (6000, 24000, 96000):
        scheds = grid(steps, steps // 11)
        srows.append(("steps", len(scheds), steps,
                      f"{_rate(f.predict_final, scheds, len(scheds)):,.0f}"))  # fmt: skip
    print()
    print(table(srows, ["growing", "schedules", "steps", "momentum final loss/s (pieces)"]))


def fit_times(args) -> None:
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


if __name__ == "__main__":
    main()
