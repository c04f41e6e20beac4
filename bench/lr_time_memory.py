"""Would the momentum law rank cooldown shapes better with its memory counted in LR area?

Tissue et al.'s annealing area forgets a drop of the LR at ``lam`` per step. Real training
relaxes towards the lower noise floor more slowly at a low LR, so a fast exponential drop gets
credit the runs do not show (the demo's ranking is all WSD-exponential; trained, that shape is
the worst cooldown). This variant, not shipped, forgets at ``lam**((lr/peak)**p)`` per step and
integrates the momentum in LR area: ``m_i = lam**r_i * m_{i-1} + (lr_{i-1} - lr_i)``,
``S2 = sum r_i * m_i`` with ``r_i = (lr_i / peak)**p`` (``p = 0``: the shipped law). It is fitted
on the demo's pilots and judged on the cooldowns each set of curves has that it did not see.

    python bench/demo_regime.py --above-zero --runs regime.json   # the curves (8-10 minutes)
    python bench/lr_time_memory.py --runs regime.json --demo runs/demo --public
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_regime  # noqa: E402

from hf_lrlaw import LossCurve, Schedule, fit  # noqa: E402
from hf_lrlaw.laws import MomentumLaw  # noqa: E402
from hf_lrlaw.laws._common import anneal_signal, s1_areas  # noqa: E402
from hf_lrlaw.laws.areas import with_warmup_at_peak  # noqa: E402
from hf_lrlaw.laws.momentum import _Prep  # noqa: E402


def lr_time_area(lrs: np.ndarray, lam: float, p: float) -> np.ndarray:
    """S2 at every step of every row, the momentum forgetting per unit of (relative) LR area."""
    lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
    lw = np.stack([with_warmup_at_peak(r) for r in lrs])
    rel = (lw / lw.max(axis=1, keepdims=True)) ** p
    drops = np.zeros_like(lw)
    drops[:, 1:] = lw[:, :-1] - lw[:, 1:]
    m, total, out = np.zeros(len(lw)), np.zeros(len(lw)), np.empty_like(lw)
    for i in range(lw.shape[1]):
        m = lam ** rel[:, i] * m + drops[:, i]
        total = total + rel[:, i] * m
        out[:, i] = total
    return out


class LRTimeMomentum(MomentumLaw):
    """The momentum law with :func:`lr_time_area` as its S2 (per-step path only)."""

    name = "momentum-lr-time"
    prepare_final_pieces = None  # scored from per-step LRs

    def __init__(self, lam: float = 0.99, p: float = 1.0) -> None:
        super().__init__(lam=lam)
        self.p = p

    def prepare(self, lrs, steps):
        steps = np.asarray(steps, dtype=np.int64)
        s2 = lr_time_area(lrs, self.lam, self.p)[0][steps]
        return _Prep(s1_areas(lrs, self.warmup)[steps], s2, anneal_signal(lrs, steps))

    def prepare_final(self, lrs):
        lrs = np.atleast_2d(lrs)
        s1 = np.array([s1_areas(r, self.warmup)[-1] for r in lrs])
        anneal = np.array([anneal_signal(r, [len(r) - 1])[0] for r in lrs])
        return _Prep(s1, lr_time_area(lrs, self.lam, self.p)[:, -1], anneal)


def regime_sets(path):
    """Pilots (constant, its seed-1 repeat, WSD 20% linear) and the unseen runs of
    demo_regime's curves file."""
    runs = json.loads(Path(path).read_text())
    by = {(r["schedule"], r["seed"]): r for r in runs}

    def curve(text, seed=0):
        r = by[(text, seed)]
        return LossCurve(lrs=Schedule.parse(text).lrs(), steps=r["steps"], losses=r["losses"])

    texts = sorted({t for t, _ in by})
    const = next(t for t in texts if t.startswith("constant"))
    pilot = next(t for t in texts if "decay_fraction=0.2," in t and "linear" in t)
    tests = [t for t in texts if t not in (const, pilot)]
    actual = [by[(t, 0)]["losses"][-1] for t in tests]
    return [curve(const), curve(const, 1), curve(pilot)], tests, actual


def demo_sets(folder):
    """The same from a ``make demo`` folder: its pilots and the cooldowns it chose (a branch's
    curve is its parent's up to the branch point, then its own)."""
    folder = Path(folder)
    trials = json.loads((folder / "trials.json").read_text())

    def points(tid):
        (progress,) = (folder / "ray_results").glob(f"*/{tid}*/progress.csv")
        rows = {int(r["step"]): float(r["eval_loss"]) for r in csv.DictReader(progress.open())}
        return dict(sorted(rows.items()))

    pilots, tests, actual = [], [], []
    for t in trials:
        own = points(t["trial_id"])
        if t["branch"]:
            base = points(t["branch"][0])
            own = {**{s: v for s, v in base.items() if s < min(own)}, **own}
        if t["role"] == "pilot":
            lrs = Schedule.parse(t["schedule"]).lrs()
            pilots.append(LossCurve(lrs=lrs, steps=list(own), losses=list(own.values())))
        else:
            tests.append(t["schedule"])
            actual.append(t["final_loss"])
    return pilots, tests, actual


def _short(text):
    return demo_regime._short(Schedule.parse(text))


def table(title, pilots, tests, actual, laws):
    actual = np.asarray(actual)
    print(f"\n{title}: actual " + ", ".join(f"{_short(t)} {y:.4f}" for t, y in zip(tests, actual)))
    print("\n| law | " + " | ".join(_short(t) for t in tests) + " | max abs | rank corr. |")
    print("|---|" + "---|" * (len(tests) + 2))
    for label, law in laws:
        f = fit(pilots, law, min_step=100, prior=None)
        mean, low, high = f.predict_final([Schedule.parse(t).lrs() for t in tests])
        err = mean / actual - 1
        cells = [f"{e:+.2%}{'*' if lo <= y <= hi else ''}" for e, lo, hi, y in
                 zip(err, low, high, actual)]  # fmt: skip
        corr = np.corrcoef(np.argsort(np.argsort(mean)), np.argsort(np.argsort(actual)))[0, 1]
        print(f"| {label} | " + " | ".join(cells) + f" | {np.abs(err).max():.2%} | {corr:.2f} |")


def public(sizes=("25M", "100M", "400M")):
    """The bundled multipowerlaw split (fit on its training runs, the held-out runs' final
    losses), the laws at the momentum law's default memory (lam 0.999)."""
    from hf_lrlaw import datasets

    laws = [("momentum lam=0.999 (shipped)", MomentumLaw(lam=0.999))]
    laws += [(f"LR-time p={p} lam=0.999", LRTimeMomentum(0.999, p)) for p in (0.5, 1.0)]
    print("\nmultipowerlaw split, held-out final losses: | size | law | mean abs | max abs |")
    for size in sizes:
        train, test = datasets.multipowerlaw_split(size)
        for label, law in laws:
            f = fit(train, law)
            err = np.abs([f.predict(c)[0] / c.losses[-1] - 1 for c in test])
            print(f"| {size} | {label} | {err.mean():.2%} | {err.max():.2%} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", help="curves written by bench/demo_regime.py --runs")
    ap.add_argument("--demo", help="a make demo output folder (runs/demo)")
    ap.add_argument("--public", action="store_true", help="the multipowerlaw split too")
    a = ap.parse_args(argv)
    laws = [("momentum lam=0.99 (shipped)", MomentumLaw(lam=0.99))]
    laws += [(f"LR-time p={p} lam={lam}", LRTimeMomentum(lam, p))
             for p in (1.0, 0.5, 0.25) for lam in (0.99, 0.97, 0.95)]  # fmt: skip
    print("predicted final loss vs actual (*: inside the 90% interval); rank corr.: Pearson of "
          "the predicted and actual ranks")  # fmt: skip
    if a.runs:
        table("demo_regime's runs", *regime_sets(a.runs), laws)
    if a.demo:
        table("the demo's chosen cooldowns", *demo_sets(a.demo), laws)
    if a.public:
        public()


if __name__ == "__main__":
    main()
