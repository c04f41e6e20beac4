"""Search efficiency in a simulated world: full-run compute to reach a schedule within 0.5% of the best.

Each world hides a law with realistic parameters (multi-power or momentum law fitted on the
bundled public curves of Luo et al. 2025, three model sizes, time-scaled to 2,400 steps) and adds
0.3% measurement noise to every logged loss. The candidates are ``ScheduleSpace``'s default grid
(678 schedules: constant, cosine, linear, WSD x 4 decay shapes, multistep). The searcher always
fits the momentum law, so the multi-power worlds measure it under misspecification.

Methods, all driven in-process by ``tune_search.simulate.drive`` (the same Searcher /
TrialScheduler calls Tune makes; Ray's own ``ASHAScheduler`` object):

* ``lrlaw``: LRLawSearcher (pilots constant + cosine run to half their horizon, top_k=3) with
  LRLawStopper;
* ``random+asha``: random candidates without replacement, ASHA (reduction factor 3, grace
  period 1/27 of the run, time attribute = step);
* ``random+law``: the same random candidates with LRLawStopper instead of ASHA;
* ``random``: random candidates, every run in full;
* ``grid``: the full grid, every candidate in full (the only way a grid knows its best).

Compute counts every optimizer step run (stopped trials count what they ran), in units of one
full run. A method reaches the target when its recommendation (the finished full-length run with
the lowest final loss; for lrlaw, noise-averaged with the law's local shape) has a true final loss
within 0.5% of the best candidate's. Random methods run up to a budget of ``--budget`` full runs;
a seed that never reaches the target counts the whole budget (reported as censored).

**Replay worlds** (``--part replay``): the same question on real curves. A
``tune_search.replay.ReplayWorld`` holds the bundled runs of one cell of the public data; a trial
reports the real validation curve of the run whose schedule was suggested (a replicate chosen by
the trial's seed where the data hold several). Cells: lr-scheduling 124M at 50k steps (5 peak LRs x
11 schedules, 54 runs) and at 25k (4 x 9, 36), multipowerlaw 25M / 100M / 400M at 24k (4 runs).
The target band is 0.002 nats (``REPLICATE_FLOOR``, the replicate noise of these runs), and the
peers are what users would pick instead, all through the same driver with Ray's own objects:

* ``lrlaw`` / ``lrlaw, no stopper``: LRLawSearcher with the world's pilots (``world.pilots()``:
  the default design where the data hold it), top_k=3, with and without LRLawStopper;
* ``random`` and ``random+ASHA`` as above;
* ``TPE`` and ``TPE+ASHA``: Ray's ``OptunaSearch`` (Optuna's TPE sampler, seeded) over
  ``peak_lr`` x ``shape`` choices (a combination the data lack is a trial that fails at once,
  costing nothing);
* ``WSD 20%``: the rule of thumb, WSD with a 20% linear cooldown, run in full at each peak LR in
  a random order (an LR sweep of the recommended shape);
* ``grid``: every candidate in full.

Metrics per seed: full-run compute until the recommendation (the finished full-length candidate
run with the lowest reported final loss) is within 0.002 nats of the cell's best (mean of
replicates); seeds that never get there count the whole grid; and the regret of the
recommendation after 3 full runs of compute.

    python bench/bench_search.py                # all worlds, 10 seeds, ~3 minutes on 2 cores
    python bench/bench_search.py --seeds 3 --worlds multipower:100M
    python bench/bench_search.py --part replay --seeds 20
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small fits: threads only add overhead
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import argparse  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray.tune.schedulers import ASHAScheduler  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from tune_search import LRLawSearcher, LRLawStopper, ScheduleSpace  # noqa: E402
from tune_search.replay import REPLICATE_FLOOR, ReplayWorld  # noqa: E402
from tune_search.simulate import SimulatedWorld  # noqa: E402
from tune_search.testing import drive  # noqa: E402

TOL = 0.005
WORLDS = [
    "multipower:25M",
    "multipower:100M",
    "multipower:400M",
    "momentum:25M",
    "momentum:100M",
    "momentum:400M",
]


class RandomSearch(Searcher):
    """Candidates in a random order without replacement (what tune.choice over the list gives,
    minus repeats)."""

    def __init__(self, texts: list[str], seed: int, metric: str = "loss") -> None:
        super().__init__(metric=metric, mode="min")
        self.order = list(np.random.default_rng(seed).permutation(texts))

    def suggest(self, trial_id: str):
        return {"schedule": self.order.pop()} if self.order else Searcher.FINISHED

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        pass


def first_within(result, truth: dict[str, float], best: float, key=None) -> float | None:
    for compute, text, _ in result.trajectory:
        if truth[text] <= best * (1 + TOL):
            return compute / result.full_run_steps
    return None


def run_lrlaw(world, space, texts, truth, best, args):
    searcher = LRLawSearcher(
        space,
        metric="loss",
        law=args.fit_law,
        top_k=args.top_k,
        pilot_steps=args.pilot_steps,
        law_options=world.fit_options(args.fit_law),
    )
    stopper = None if args.no_stopper else LRLawStopper(searcher=searcher)
    # the recommendation after each completion is the searcher's own (noise-averaged)
    trajectory: list[tuple[int, str, float]] = []
    original = searcher.on_trial_complete

    def on_complete(trial_id, result=None, error=False):
        original(trial_id, result=result, error=error)
        try:
            rec = searcher.recommendation()
        except RuntimeError:
            return
        if rec["source"] == "finished run":
            trajectory.append((searcher.compute_steps, rec["text"], rec["final_loss"]))

    searcher.on_trial_complete = on_complete
    res = drive(world, searcher, stopper, concurrency=args.concurrency)
    res.trajectory = trajectory
    reached = first_within(res, truth, best)
    final = truth[searcher.recommendation()["text"]] / best - 1
    stopped = sum(1 for t in res.trials if t["stopped"])
    return reached, res.full_runs, final, len(res.trials), stopped


def run_random(world, texts, truth, best, seed, args, asha: bool, lawstop: bool = False):
    searcher = RandomSearch(texts, seed)
    scheduler = None
    if lawstop:
        scheduler = LRLawStopper(
            metric="loss", law=args.fit_law, law_options=world.fit_options(args.fit_law)
        )
    elif asha:
        np.random.seed(seed)  # noqa: NPY002 - ASHA draws brackets from the global generator
        scheduler = ASHAScheduler(
            time_attr="step",
            metric="loss",
            mode="min",
            max_t=world.total_steps - 1,
            grace_period=world.total_steps / 27,
            reduction_factor=3,
        )
    budget = args.budget * world.total_steps
    res = drive(world, searcher, scheduler, concurrency=args.concurrency, budget_steps=budget)
    reached = first_within(res, truth, best)
    return reached, res.full_runs


REPLAY_WORLDS = [
    "lr-scheduling:124M:50000",
    "lr-scheduling:124M:25000",
    "multipowerlaw:25M:24000",
    "multipowerlaw:100M:24000",
    "multipowerlaw:400M:24000",
]
BUDGET_RUNS = 3.0


class CellSearch(Searcher):
    """A searcher over ``peak_lr`` x ``shape`` (e.g. Ray's OptunaSearch) whose suggestions are
    turned into the schedule text the trials run."""

    def __init__(self, inner: Searcher, texts: list[str]) -> None:
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner = inner
        self.cells = {cell_of(t): t for t in texts}

    def suggest(self, trial_id: str):
        config = self.inner.suggest(trial_id)
        if not isinstance(config, dict):
            return config
        peak, shape = config["peak_lr"], config["shape"]
        text = self.cells.get((peak, shape)) or shape.replace("(", f"(peak_lr={peak:g}, ", 1)
        return {**config, "schedule": text}

    def on_trial_result(self, trial_id, result) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)


def cell_of(text: str) -> tuple[float, str]:
    """(peak LR, the schedule text without it)."""
    from hf_lrlaw import Schedule

    peak = Schedule.parse(text).peak_lr
    return peak, re.sub(r"peak_lr=[^,)]+, ", "", text, count=1)


def replay_outcome(res, world, truth, best, pilots=()):
    """(compute to the band or None, regret after BUDGET_RUNS, final regret) from the trials in
    completion order (concurrency 1: cumulative steps are the compute at each completion)."""
    full = world.total_steps
    compute, rec, reached, at_budget = 0, None, None, None
    for t in res.trials:
        compute += t["compute"]
        if at_budget is None and compute > BUDGET_RUNS * full + 1:
            at_budget = rec
        if (
            t["full"]
            and t["schedule"] in truth
            and t["final"] is not None
            and (rec is None or t["final"] < rec[1])
        ):
            rec = (t["schedule"], float(t["final"]))
        if reached is None and rec is not None and truth[rec[0]] <= best + REPLICATE_FLOOR:
            reached = compute / full
    if at_budget is None:
        at_budget = rec

    def regret(r):
        return truth[r[0]] - best if r is not None else float("inf")

    return reached, regret(at_budget), regret(rec), compute / full


def run_replay_method(name, world, texts, truth, best, seed, args):
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    full = world.total_steps
    budget = len(texts) * full
    asha = None
    if name.endswith("ASHA"):
        np.random.seed(seed)  # noqa: NPY002 - ASHA draws brackets from the global generator
        asha = ASHAScheduler(
            time_attr="step",
            metric="loss",
            mode="min",
            max_t=full - 1,
            grace_period=full / 27,
            reduction_factor=3,
        )
    if name.startswith("lrlaw"):
        # "lrlaw, cap 3": full runs are no longer counted; the search may spend 3 full runs of
        # compute (pilots included), so cheap branched cooldowns can be many
        capped = re.search(r"cap ([0-9.]+)", name)
        second = re.search(r"second law (\w+)", name)  # e.g. "lrlaw, second law multipower"
        searcher = LRLawSearcher(
            world.space(),
            metric="loss",
            pilots=world.pilots(),
            pilot_steps=world.pilot_steps,
            top_k=100 if capped else args.top_k,
            max_trials=200 if capped else None,
            seed=seed,
            branch="no branching" not in name,
            max_compute=float(capped.group(1)) if capped else None,
            second_law=second.group(1) if second else None,
        )
        stopper = None if "no stopper" in name else LRLawStopper(searcher=searcher)
        res = drive(world, searcher, stopper)
        out = replay_outcome(res, world, truth, best)
        final = truth[searcher.recommendation()["text"]] - best
        return out[0], out[1], final, out[3]
    if name.startswith("random"):
        searcher = RandomSearch(texts, seed)
    elif name.startswith("TPE"):
        peaks = sorted({cell_of(t)[0] for t in texts})
        shapes = sorted({cell_of(t)[1] for t in texts})
        inner = OptunaSearch(
            space={"peak_lr": tune.choice(peaks), "shape": tune.choice(shapes)},
            metric="loss",
            mode="min",
            seed=seed,
        )
        searcher = CellSearch(inner, texts)
    elif name == "WSD 20%":
        rule = [t for t in texts if "decay_fraction=0.2," in t and "decay_shape=linear" in t]
        searcher = RandomSearch(rule, seed)
    elif name == "grid":
        searcher = RandomSearch(texts, seed)
    else:
        raise ValueError(name)
    res = drive(world, searcher, asha, budget_steps=budget, max_trials=4 * len(texts))
    return replay_outcome(res, world, truth, best)


REPLAY_METHODS = [
    "lrlaw",
    "lrlaw, no stopper",
    "lrlaw, no branching",
    "lrlaw, no stopper, cap 3",
    "random",
    "random+ASHA",
    "TPE",
    "TPE+ASHA",
    "WSD 20%",
]


def replay_main(args) -> None:
    logging.getLogger("ray").setLevel(logging.ERROR)
    optuna_logger = logging.getLogger("optuna")
    optuna_logger.setLevel(logging.ERROR)
    print(
        f"\n# replay worlds: real curves; band {REPLICATE_FLOOR} nats; {args.replay_seeds} seeds; "
        f"regret after {BUDGET_RUNS:g} full runs of compute; compute in full runs (censored "
        "seeds count the grid)"
    )
    print(
        "| world | candidates | within band | method | compute to band (mean) | reached | "
        f"regret after {BUDGET_RUNS:g} runs (median) | <= {REPLICATE_FLOOR} after "
        f"{BUDGET_RUNS:g} runs | final regret (median) | compute used (mean) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for spec in args.replay_worlds.split(","):
        collection, model, horizon = spec.split(":")
        if collection == "lr-scheduling":
            world = ReplayWorld.lr_scheduling(model, int(horizon))
        else:
            world = ReplayWorld.multipowerlaw(model, int(horizon))
        cands = world.candidates()
        texts = [str(c) for c in cands]
        truth = dict(zip(texts, world.true_final(cands).tolist()))
        best = min(truth.values())
        band = sum(v <= best + REPLICATE_FLOOR for v in truth.values())
        wanted = [m.strip() for m in args.replay_methods.split(";")]
        methods = [m for m in wanted if len(world.peak_lrs) > 1 or m != "WSD 20%"]
        for name in methods:
            rows = []
            for seed in range(args.replay_seeds):
                world.seed = seed
                rows.append(run_replay_method(name, world, texts, truth, best, seed, args))
            reached = [r[0] for r in rows]
            ok = [x is not None for x in reached]
            comp = [x if x is not None else float(len(texts)) for x in reached]
            at3 = np.array([r[1] for r in rows])
            fin = np.array([r[2] for r in rows])
            print(
                f"| {world.name} | {len(texts)} | {band} | {name} | {np.mean(comp):.2f} | "
                f"{np.mean(ok):.0%} | {np.median(at3):.4f} | "
                f"{np.mean(at3 <= REPLICATE_FLOOR + 1e-12):.0%} | {np.median(fin):.4f} | "
                f"{np.mean([r[3] for r in rows]):.2f} |",
                flush=True,
            )
        print(
            f"| {world.name} | {len(texts)} | {band} | grid | {len(texts):.2f} | 100% | - | - | "
            f"0.0000 | {len(texts):.2f} |",
            flush=True,
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--worlds", default=",".join(WORLDS))
    ap.add_argument("--fit-law", default="momentum")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--pilot-steps", type=float, default=0.5)
    ap.add_argument("--budget", type=float, default=40.0, help="full runs for random methods")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.003)
    ap.add_argument("--no-stopper", action="store_true")
    ap.add_argument(
        "--part", choices=["all", "simulated", "replay"], default="all", help="which worlds"
    )
    ap.add_argument("--replay-worlds", default=",".join(REPLAY_WORLDS))
    ap.add_argument("--replay-seeds", type=int, default=20)
    ap.add_argument("--replay-methods", default=";".join(REPLAY_METHODS), help="separated by ;")
    args = ap.parse_args(argv)
    if args.pilot_steps >= 1:
        args.pilot_steps = None
    logging.getLogger("tune_search").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.part == "replay":
        replay_main(args)
        return 0

    print(
        f"# search efficiency: compute (full runs) to reach a schedule within {TOL:.1%} of the "
        f"best; {args.seeds} seeds per world, noise {args.noise:.1%}, fit law {args.fit_law}, "
        f"pilots to {args.pilot_steps or 1.0:g} of their horizon, top_k={args.top_k}, "
        f"concurrency {args.concurrency}, random budget {args.budget:g} runs"
    )
    header = (
        f"{'world':<17} {'cands':>5} {'p<=0.5%':>7} | {'lrlaw':>6} {'ok':>4} {'used':>5} "
        f"{'final':>6} | {'rnd+asha':>8} {'ok':>4} | {'rnd+law':>7} {'ok':>4} | "
        f"{'random':>6} {'ok':>4} | {'grid':>5} | {'vs asha':>7} {'vs rnd':>6} "
        f"{'vs grid':>7}"
    )
    print(header)
    print("-" * len(header))
    totals = {"lrlaw": [], "asha": [], "lawstop": [], "random": [], "grid": []}
    t0 = time.perf_counter()
    for spec in args.worlds.split(","):
        law, model = spec.split(":")
        rows = {
            "lrlaw": [],
            "lrlaw_ok": [],
            "used": [],
            "final": [],
            "asha": [],
            "asha_ok": [],
            "random": [],
            "random_ok": [],
            "lawstop": [],
            "lawstop_ok": [],
        }
        for seed in range(args.seeds):
            world = SimulatedWorld(law=law, model=model, seed=seed, noise=args.noise)
            space = ScheduleSpace(world.peak_lr, world.total_steps, world.warmup_steps)
            cands = space.candidates()
            texts = [str(s) for s in cands]
            finals = world.true_final(cands)
            truth = dict(zip(texts, finals))
            best = float(finals.min())
            frac = float(np.mean(finals <= best * (1 + TOL)))
            reached, used, final, _, _ = run_lrlaw(world, space, texts, truth, best, args)
            rows["lrlaw"].append(reached if reached is not None else used)
            rows["lrlaw_ok"].append(reached is not None)
            rows["used"].append(used)
            rows["final"].append(final)
            for name, asha, lawstop in (
                ("asha", True, False),
                ("random", False, False),
                ("lawstop", False, True),
            ):
                r, u = run_random(world, texts, truth, best, 1000 + seed, args, asha, lawstop)
                rows[name].append(r if r is not None else args.budget)
                rows[f"{name}_ok"].append(r is not None)
        grid = float(len(cands))
        m = {k: float(np.mean(v)) for k, v in rows.items()}
        totals["lrlaw"].append(m["lrlaw"])
        totals["asha"].append(m["asha"])
        totals["lawstop"].append(m["lawstop"])
        totals["random"].append(m["random"])
        totals["grid"].append(grid)
        print(
            f"{spec:<17} {len(cands):>5} {frac:>7.1%} | {m['lrlaw']:>6.2f} {m['lrlaw_ok']:>4.0%} "
            f"{m['used']:>5.2f} {m['final']:>6.2%} | {m['asha']:>8.2f} {m['asha_ok']:>4.0%} | "
            f"{m['lawstop']:>7.2f} {m['lawstop_ok']:>4.0%} | "
            f"{m['random']:>6.2f} {m['random_ok']:>4.0%} | {grid:>5.0f} | "
            f"{m['lrlaw'] / m['asha']:>7.2f} {m['lrlaw'] / m['random']:>6.2f} "
            f"{m['lrlaw'] / grid:>7.3f}"
        )
    t = {k: float(np.mean(v)) for k, v in totals.items()}
    print("-" * len(header))
    print(
        f"{'all worlds':<31} | {t['lrlaw']:>6.2f} {'':>4} {'':>5} {'':>6} | {t['asha']:>8.2f} "
        f"{'':>4} | {t['lawstop']:>7.2f} {'':>4} | {t['random']:>6.2f} {'':>4} | "
        f"{t['grid']:>5.0f} | "
        f"{t['lrlaw'] / t['asha']:>7.2f} {t['lrlaw'] / t['random']:>6.2f} "
        f"{t['lrlaw'] / t['grid']:>7.3f}"
    )
    print(
        f"\nratios (compute to within {TOL:.1%}, lrlaw / other): vs random+ASHA "
        f"{t['lrlaw'] / t['asha']:.2f}, vs random {t['lrlaw'] / t['random']:.2f}, vs full grid "
        f"{t['lrlaw'] / t['grid']:.4f}"
    )
    print(
        f"stopper vs ASHA, both with random search on the same budget: random+LRLawStopper "
        f"{t['lawstop']:.2f} vs random+ASHA {t['asha']:.2f} full runs "
        f"({t['lawstop'] / t['asha']:.2f}x)"
    )
    print(
        "columns: p<=0.5% = share of candidates within 0.5% of the best; ok = share of seeds that "
        "reached the target (others count the compute they used, capped by the budget); used = "
        "lrlaw's total compute until FINISHED; final = true gap of lrlaw's final recommendation"
    )
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.part == "all":
        replay_main(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
