"""The law's optimum trained for real on the demo's model: does it beat the grid and the pilots?

The demo's regime (bench/demo_regime.py: GPT-2 2 x 128 over Shakespeare bytes, 800 steps, peak
LR 3e-3, warmup 40, evals every 40 steps on 256 held-out blocks; two worker processes, one torch
thread each). Protocol:

1. Pilots as the demo runs them: the constant run (seed 0) and its seed-1 repeat, each saving a
   checkpoint at step 640, and WSD 20% linear (the rule of thumb) branched from each there.
2. The demo's fit: the momentum law, lam 0.99, from step 100 (the first eighth is the byte-level
   plateau), no prior, on constant x2 + WSD 20% (seed 0). The multipower law is tried on the
   same curves and on the two curves constant + WSD 20% (seed 0).
3. ``opt = hf_lrlaw.optimize(fit, total_steps=800, peak_lr=3e-3, warmup_steps=40)`` (default
   floor) under the momentum law, and again under the multipower law (the law ``optimize``
   says to judge a momentum optimum with); the best grid candidate is ``opt.baseline.schedule``;
   the best pilot is the pilot schedule with the lower final loss (seed 0). Every prediction
   is made before those runs.
4. Each of the three trained with seeds 0, 1, 2 (a pilot's own run is reused where schedule and
   seed match); the final loss is the last eval (step 800), as in demo_regime.
5. Table: each law's predicted final loss with its 90% interval, actual per seed, mean +- sd,
   miss (predicted / mean - 1), and the per-seed differences optimum - grid, optimum - pilot.
   Figure: the LR shapes and the eval-loss curves (--figure).

    python bench/bench_optimum_training.py                    # about 8 minutes on 2 cores
    python bench/bench_optimum_training.py --runs out.json    # keep the curves (a rerun trains
                                                              # only the runs out.json lacks)
    python bench/bench_optimum_training.py --runs out.json --analyse-only   # re-read them
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402
from demo_regime import parser, schedules, train_one  # noqa: E402

PILOT_DECAY = 0.2


def worker(job):
    """Runs ``tasks`` in order: (schedule text, seed, steps to save at, checkpoint to resume)."""
    a, root, tasks = job
    out = []
    for text, seed, save, resume in tasks:
        name = f"{root}/run{zlib.crc32(text.encode())}-{seed}{'b' if resume else ''}"
        t0 = time.perf_counter()
        out.append(train_one(a, text, name, seed, save=save,
                             resume=None if resume is None else f"{root}/{resume}"))  # fmt: skip
        print(f"  {_label(text)} seed {seed}: {out[-1]['losses'][-1]:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        if save:  # a later task branches from this run's checkpoints: give them a known name
            os.rename(name, f"{root}/{text_key(text, seed)}")
    return out


def text_key(text, seed):
    return f"base{zlib.crc32(text.encode())}-{seed}"


def _label(text, width=60):
    from hf_lrlaw import Schedule
    from hf_lrlaw.optimum import shape_text
    from hf_lrlaw.schedules.labels import schedule_label

    s = Schedule.parse(text)
    return f"piecewise: {shape_text(s)}" if s.kind == "piecewise" else schedule_label(s, width)


def pilots_and_fits(a, runs):
    """The pilot curves, the demo's momentum fit, the multipower fits (or why not)."""
    from hf_lrlaw import LossCurve, Schedule, fit

    const, _, _ = schedules(a)
    wsd = Schedule.wsd(a.peak_lr, a.steps, warmup_steps=a.warmup, decay_fraction=PILOT_DECAY)
    by = {(r["schedule"], r["seed"]): r for r in runs}

    def curve(text, seed):
        r = by[(text, seed)]
        return LossCurve(lrs=Schedule.parse(text).lrs(), steps=r["steps"], losses=r["losses"])

    demo = [curve(str(const), 0), curve(str(const), 1), curve(str(wsd), 0)]
    kw = {"min_step": a.steps // 8, "prior": None}
    fits = {"momentum": fit(demo, "momentum", law_options={"lam": 0.99}, **kw)}
    for name, cs in [("multipower", demo), ("multipower (2 curves)", [demo[0], demo[2]])]:
        try:
            fits[name] = fit(cs, "multipower", **kw)
        except Exception as exc:  # noqa: BLE001 - a failed fit is reported, not a crash
            fits[name] = f"failed: {exc}"
    pilot = min([str(const), str(wsd)], key=lambda t: by[(t, 0)]["losses"][-1])
    return const, wsd, fits, pilot


def main(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--figure", default="docs/optimum_training.png")
    a = ap.parse_args(argv)
    import hf_lrlaw
    from hf_lrlaw import Schedule
    from tune_search.branching import shared_steps

    print(f"# bench_optimum_training — {machine()}")
    t0 = time.perf_counter()
    saved = a.runs and Path(a.runs).exists()
    runs = json.loads(Path(a.runs).read_text()) if saved else []  # trained again only if missing
    with tempfile.TemporaryDirectory() as root, mp.get_context("spawn").Pool(2) as pool:
        const, _, _ = schedules(a)
        wsd = Schedule.wsd(a.peak_lr, a.steps, warmup_steps=a.warmup, decay_fraction=PILOT_DECAY)
        k = shared_steps(const, wsd)
        if not a.analyse_only and not {(str(wsd), s) for s in (0, 1)} <= {
            (r["schedule"], r["seed"]) for r in runs
        }:
            jobs = [(a, root, [(str(const), s, [k], None),
                               (str(wsd), s, (), f"{text_key(str(const), s)}/checkpoint-{k}")])
                    for s in (0, 1)]  # fmt: skip
            runs = [r for part in pool.map(worker, jobs) for r in part]
            print(f"pilots trained in {time.perf_counter() - t0:.0f} s", flush=True)
        const, wsd, fits, pilot = pilots_and_fits(a, runs)
        fit = fits["momentum"]
        opt = hf_lrlaw.optimize(fit, total_steps=a.steps, peak_lr=a.peak_lr, warmup_steps=a.warmup)
        print(f"\nmomentum law (lam 0.99, from step {a.steps // 8}) on constant x2 + WSD 20%:")
        print(opt.summary())
        named = {"optimum": str(opt.schedule), "best grid": str(opt.baseline.schedule)}
        mp_fit = fits["multipower"]
        if not isinstance(mp_fit, str):  # the law optimize() says to judge a momentum optimum with
            mp_opt = hf_lrlaw.optimize(mp_fit, total_steps=a.steps, peak_lr=a.peak_lr,
                                       warmup_steps=a.warmup)  # fmt: skip
            print(f"\nmultipower law on the same curves:\n{mp_opt.summary()}")
            named["multipower optimum"] = str(mp_opt.schedule)
        named["best pilot"] = pilot
        texts = list(dict.fromkeys(named.values()))
        preds = {}  # law -> schedule text -> (mean, low, high)
        for name, f in fits.items():
            if isinstance(f, str):
                print(f"\n{name} law: {f}")
                continue
            m, lo, hi = f.predict_final([Schedule.parse(t) for t in texts], level=0.9)
            preds[name] = {t: v for t, *v in zip(texts, m, lo, hi)}
        for name in [n for n in preds if n.startswith("multipower (")]:
            f = fits[name]
            print(f"\n{name} law:\n" + hf_lrlaw.optimize(
                f, total_steps=a.steps, peak_lr=a.peak_lr, warmup_steps=a.warmup).summary())  # fmt: skip
        seeds = list(range(a.seeds))
        have = {(r["schedule"], r["seed"]) for r in runs}
        todo = [(t, s) for s in seeds for t in texts if (t, s) not in have]
        if todo and not a.analyse_only:
            t1 = time.perf_counter()
            jobs = [(a, root, [(t, s, (), None)]) for t, s in todo]
            runs += [r for part in pool.imap_unordered(worker, jobs) for r in part]
            print(f"{len(todo)} runs trained in {time.perf_counter() - t1:.0f} s", flush=True)
    if a.runs and not a.analyse_only:
        Path(a.runs).write_text(json.dumps(runs))
    by = {(r["schedule"], r["seed"]): r for r in runs}
    final = {t: np.array([by[(t, s)]["losses"][-1] for s in seeds]) for t in texts}
    laws = [n for n in ("momentum", "multipower") if n in preds]
    rows = []
    for name, t in named.items():
        y = final[t]
        cells = [f"{preds[n][t][0]:.4f} [{preds[n][t][1]:.4f}, {preds[n][t][2]:.4f}]" for n in laws]
        misses = [f"{preds[n][t][0] / y.mean() - 1:+.2%}" for n in laws]
        rows.append([f"{name}: {_label(t)}", *cells, *(f"{v:.4f}" for v in y),
                     f"{y.mean():.4f} ± {y.std(ddof=1):.4f}", *misses])  # fmt: skip
    for mine in [n for n in named if n.endswith("optimum")]:
        for other in ("best grid", "best pilot"):
            d = final[named[mine]] - final[named[other]]
            p = [f"{preds[n][named[mine]][0] - preds[n][named[other]][0]:+.4f}" for n in laws]
            rows.append([f"{mine} − {other.split()[1]}", *p, *(f"{v:+.4f}" for v in d),
                         f"{d.mean():+.4f} ± {d.std(ddof=1):.4f}", *[""] * len(laws)])  # fmt: skip
    print(f"\nfinal eval loss at step {a.steps} (seeds {seeds}; a pilot schedule's seeds 0-1 are "
          f"the pilot runs, branched at step {k}); predictions made before the runs\n")  # fmt: skip
    print(table(rows, ["schedule", *(f"{n} predicted [90%]" for n in laws),
                       *(f"seed {s}" for s in seeds), "mean ± sd",
                       *(f"miss ({n})" for n in laws)]))  # fmt: skip
    if a.figure:
        figure(a, named, by, seeds, a.figure)
        print(f"\nfigure: {a.figure}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


def figure(a, named, by, seeds, path):
    from hf_lrlaw import Schedule
    from hf_lrlaw.plots import _new_figure, save_figure

    fig = _new_figure(11, 4)
    lr_ax, loss_ax = fig.subplots(1, 2)
    for (name, t), color in zip(named.items(), ["C3", "C0", "C1", "C2"]):
        lr_ax.plot(Schedule.parse(t).lrs(), color=color, label=f"{name}: {_label(t, 44)}")
        for s in seeds:
            r = by[(t, s)]
            steps, losses = list(r["steps"]), list(r["losses"])
            if r["branch"]:  # a branched pilot: its parent constant run's points before the cut
                parent = by[(str(schedules(a)[0]), s)]
                head = [
                    (x, y) for x, y in zip(parent["steps"], parent["losses"]) if x < r["branch"]
                ]
                steps, losses = [x for x, _ in head] + steps, [y for _, y in head] + losses
            keep = np.asarray(steps) >= a.steps // 4
            loss_ax.plot(np.asarray(steps)[keep], np.asarray(losses)[keep], color=color,
                         alpha=0.8, lw=1, label=name if s == seeds[0] else None)  # fmt: skip
    lr_ax.set(xlabel="step", ylabel="learning rate", title="LR schedules")
    lr_ax.legend(fontsize=7, loc="lower left")
    loss_ax.set(xlabel="step", ylabel="eval loss (nats/byte)",
                title=f"eval loss, seeds {seeds[0]}-{seeds[-1]}")  # fmt: skip
    loss_ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
