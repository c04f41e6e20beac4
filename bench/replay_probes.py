"""The diagnostics behind the replay-world section of RESULTS: why the law searcher chooses as it
does on the lr-scheduling 124M cells.

1. ranks: fit lrnoise on a set of pilot runs of the 50k cell, rank its 54 candidates at 50k, and
   print where the cells within 0.002 nats of the best land (and the regret of the top five);
   the same for the 25k cell (36 candidates) from sets of its 15k runs;
2. cuts: the whole search (LRLawSearcher + LRLawStopper, the world's pilots) with its fits
   beginning at a fixed step, on the 50k and the 25k cells;
3. decay: fitted on every 124M run of <= 25k steps, the 50k prediction minus the truth of WSD at
   1e-3 and 2e-3 for each decay fraction.

    python bench/replay_probes.py        # about 2 minutes on 2 cores
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hf_lrlaw  # noqa: E402
from hf_lrlaw import LossCurve, Schedule, datasets  # noqa: E402
from tune_search import LRLawSearcher, LRLawStopper  # noqa: E402
from tune_search.replay import REPLICATE_FLOOR, ReplayWorld  # noqa: E402
from tune_search.testing import drive  # noqa: E402

FRACTIONS = (0.1, 0.2, 0.4, 0.6, 0.8, 0.9)


def wsd(peak: float, total: int, fraction: float) -> Schedule:
    return Schedule.wsd(peak, total, warmup_steps=300, decay_fraction=fraction)


def band_ranks(world: ReplayWorld, fit: hf_lrlaw.Fit) -> str:
    """Where the cells within 0.002 nats of the world's best rank by ``fit``, and the regret
    of its top five."""
    cands = world.candidates()
    texts = [str(c) for c in cands]
    truth = world.true_final(cands)
    best = truth.min()
    order = [texts.index(str(r.schedule)) for r in hf_lrlaw.rank(fit, cands, seed=0)]
    band = [k + 1 for k, i in enumerate(order) if truth[i] <= best + REPLICATE_FLOOR]
    return f"band ranks {band}, top-5 regrets {np.round(truth[order[:5]] - best, 4).tolist()}"


def ranks(world: ReplayWorld, sets: dict[str, list[Schedule]], cut: int) -> None:
    """Fit lrnoise on each set of pilot runs; print where the band's cells rank among the
    world's candidates, without a cut and with the fits beginning at ``cut``."""
    print(f"1. ranks of the band's cells (lrnoise, ranked at {world.total_steps // 1000}k)")
    for name, pilots in sets.items():
        curves = [LossCurve(p.lrs(), *world.curve(p), name=str(p)) for p in pilots]
        for min_step in (0, cut):
            fit = hf_lrlaw.fit(curves, law="lrnoise", min_step=min_step, prior=None)
            print(f"   {name}, min_step={min_step}: {band_ranks(world, fit)}")


def pilot_sets(world: ReplayWorld) -> dict[str, list[Schedule]]:
    """The world's pilots, and richer sets of the shorter runs that the data hold."""
    if world.total_steps == 50000:
        return {
            "the world's pilots (WSD 20% of 25k at 1e-4, 1e-3, 2e-3)": world.pilots(),
            "every WSD cooldown of 25k at those LRs (18 runs)": [
                wsd(p, 25000, f) for p in (1e-4, 1e-3, 2e-3) for f in FRACTIONS
            ],
        }
    return {
        "the world's pilots (WSD 20% of 15k at 5e-4, 2e-3)": world.pilots(),
        "those and WSD 60% of 15k at 1e-3": world.pilots() + [wsd(1e-3, 15000, 0.6)],
        "WSD 60% of 15k at 5e-4, 2e-3": [wsd(p, 15000, 0.6) for p in (5e-4, 2e-3)],
        "WSD 20% and 60% of 15k at 5e-4, 2e-3": [
            wsd(p, 15000, f) for p in (5e-4, 2e-3) for f in (0.2, 0.6)
        ],
        "every WSD cooldown of 15k at 5e-4, 1e-3, 2e-3 (18 runs)": [
            wsd(p, 15000, f) for p in (5e-4, 1e-3, 2e-3) for f in FRACTIONS
        ],
    }


def cuts() -> None:
    print("2. the search's regret with its fits beginning at a fixed step")
    for horizon in (50000, 25000):
        world = ReplayWorld.lr_scheduling("124M", horizon)
        row = []
        for cut in (0, 1000, 2000, 2500, 3000, 5000):
            searcher = LRLawSearcher(
                world.space(),
                metric="loss",
                pilots=world.pilots(),
                pilot_steps=world.pilot_steps,
                fit_kwargs={"min_step": cut},
            )
            drive(world, searcher, LRLawStopper(searcher=searcher))
            row.append(f"{cut}: {world.regret(searcher.recommendation()['text']):.4f}")
        print(f"   {world.name}: " + ", ".join(row))


def decay(world: ReplayWorld) -> None:
    runs = [
        c
        for c in datasets.load("lr-scheduling", model="124M", dataset="slimpajama")
        if c.meta["total_steps"] <= 25000 and c.losses[-1] < 5
    ]
    fit = hf_lrlaw.fit(runs, law="lrnoise", min_step=3000, prior=None)
    fractions = (0.2, 0.4, 0.6, 0.8, 0.9, 0.994)
    print("3. predicted minus true final loss at 50k, WSD by decay fraction (fit: runs <= 25k)")
    for peak in (1e-3, 2e-3):
        scheds = [wsd(peak, 50000, f) for f in fractions]
        gap = fit.predict_final(scheds)[0] - world.true_final(scheds)
        pred_best = fractions[int(np.argmin(fit.predict_final(scheds)[0]))]
        true_best = fractions[int(np.argmin(world.true_final(scheds)))]
        cells = ", ".join(f"{f}: {g:+.4f}" for f, g in zip(fractions, gap))
        print(f"   {peak:g}: {cells}; best fraction predicted {pred_best}, true {true_best}")


def main() -> int:
    logging.getLogger("tune_search").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    world = ReplayWorld.lr_scheduling("124M", 50000)
    ranks(world, pilot_sets(world), 3000)
    short = ReplayWorld.lr_scheduling("124M", 25000)
    ranks(short, pilot_sets(short), 1800)
    cuts()
    decay(world)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
