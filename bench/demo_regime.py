"""Is the demo's regime one the law can predict? Real runs of the demo's model, then the law
fitted on the pilots and judged on cooldowns it has not seen.

Trains (two worker processes, one torch thread each): a constant run that saves checkpoints,
WSD cooldowns branched from them (linear, 1-sqrt, exponential), a cosine run, and the constant
run again with another seed (the seed-to-seed noise of a final loss). Then fits the momentum
law on the pilots (constant + cosine, or constant alone) with several memory factors ``lam``
and start steps, and prints each cooldown's predicted final loss against its actual one; then
the larger of the momentum and multi-power predictions as one cautious surrogate (its misses,
and what it ranks first among the demo's 1,070 candidates, against each law alone).

    python bench/demo_regime.py                 # the demo's defaults (about 4 minutes)
    python bench/demo_regime.py --runs out.json # keep the curves; --analyse-only re-reads them
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def options(argv=None):
    return parser().parse_args(argv)


def parser(doc=__doc__):
    """The regime's options (model, run length, LR, evals, --runs); other scripts add theirs."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--peak-lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=256, help="256: bytes; more: a BPE of that many")
    ap.add_argument("--eval-every", type=int, default=40)
    ap.add_argument("--eval-blocks", type=int, default=256)
    ap.add_argument("--runs", default=None, help="JSON file of the curves (written, or read)")
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument(
        "--above-zero",
        action="store_true",
        help="also train cooldowns that end above zero (10-20%% of the peak) and 1-sqrt 30%% to 0",
    )
    return ap


# Cooldowns ending above zero: the picks of bench/lr_time_memory.py's variant law, and a control.
ABOVE_ZERO = [
    (0.3, "1-sqrt", 0.2),
    (0.3, "1-sqrt", 0.0),
    (0.1667, "1-sqrt", 0.1),
    (0.3833, "linear", 0.2),
]


def schedules(a):
    from hf_lrlaw import Schedule

    p, t, w = a.peak_lr, a.steps, a.warmup
    const = Schedule.constant(p, t, warmup_steps=w)
    cooldowns = [
        Schedule.wsd(p, t, warmup_steps=w, decay_fraction=f, decay_shape=shape, final_ratio=r)
        for f, shape, r in [
            (0.1, "linear", 0.0),
            (0.2, "linear", 0.0),
            (0.3, "linear", 0.0),
            (0.5, "linear", 0.0),
            (0.2, "1-sqrt", 0.0),
            (0.4, "exponential", 0.02),
        ]
        + ABOVE_ZERO * a.above_zero
    ]
    return const, Schedule.cosine(p, t, warmup_steps=w), cooldowns


def train_one(a, text, out_dir, seed=0, save=(), resume=None):
    """One run; returns {"schedule", "seed", "steps", "losses", "branch"}."""
    import torch
    from transformers import GPT2LMHeadModel, TrainerCallback, TrainingArguments

    from tune_search.demo import gpt2_config, text_blocks
    from tune_search.trainable import ScheduleTrainer

    torch.set_num_threads(1)
    train, val = text_blocks(a.seq, a.eval_blocks, a.vocab)
    config = gpt2_config(a.layers, a.embd, a.heads, a.seq, a.vocab)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    points: list[tuple[int, float]] = []

    class Keep(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kw):
            points.append((state.global_step - 1, float(metrics["eval_loss"])))

    args = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=a.batch,
        per_device_eval_batch_size=64,
        eval_strategy="steps",
        eval_steps=a.eval_every,
        logging_steps=a.eval_every,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=seed,
    )
    trainer = ScheduleTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=val, callbacks=[Keep()]
    )
    trainer.set_schedule(text, save_steps=save, resumed=resume is not None)
    trainer.train(resume_from_checkpoint=resume)
    steps, losses = zip(*points)
    return {
        "schedule": text,
        "seed": seed,
        "steps": list(steps),
        "losses": list(losses),
        "branch": None if resume is None else int(str(resume).rsplit("-", 1)[1]),
    }


def worker(job):
    a, kind, root = job
    from tune_search.branching import shared_steps

    const, cosine, cooldowns = schedules(a)
    out, t0 = [], time.perf_counter()
    if kind == "constant+branches":
        cuts = sorted({shared_steps(const, c) for c in cooldowns})
        out.append(train_one(a, str(const), f"{root}/const", 0, save=cuts))
        for c in cooldowns:
            k = shared_steps(const, c)
            out.append(
                train_one(a, str(c), f"{root}/b{k}", 0, resume=f"{root}/const/checkpoint-{k}")
            )
    else:
        out.append(train_one(a, str(cosine), f"{root}/cos", 0))
        out.append(train_one(a, str(const), f"{root}/const1", 1))
    print(f"  worker {kind}: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def analyse(a, runs):
    from hf_lrlaw import LossCurve, Schedule, fit

    const, cosine, cooldowns = schedules(a)
    by = {(r["schedule"], r["seed"]): r for r in runs}

    def curve(text, seed=0, start=0):
        r = by[(text, seed)]
        s = np.asarray(r["steps"])
        keep = s >= start
        return LossCurve(
            lrs=Schedule.parse(text).lrs(), steps=s[keep], losses=np.asarray(r["losses"])[keep]
        )

    c0, c1 = by[(str(const), 0)]["losses"][-1], by[(str(const), 1)]["losses"][-1]
    print(
        f"\nseed-to-seed noise of the constant run's final loss: {c0:.4f} vs {c1:.4f} "
        f"({abs(c0 - c1) / c0:.2%})"
    )
    finals = ", ".join(f"{_short(c)} {by[(str(c), 0)]['losses'][-1]:.4f}" for c in cooldowns)
    cos = by[(str(cosine), 0)]["losses"][-1]
    print(f"actual final losses: constant {c0:.4f}, cosine {cos:.4f}; cooldowns: {finals}")
    pilot_sets = {
        "constant + cosine (the old demo)": [curve(str(const)), curve(str(cosine))],
        "constant + WSD 20%": [curve(str(const)), curve(str(cooldowns[1]))],
        "constant x2 + WSD 20% (the demo)": [
            curve(str(const)),
            curve(str(const), seed=1),
            curve(str(cooldowns[1])),
        ],
    }
    variants = [("momentum", {"lam": lam}) for lam in (0.999, 0.99, 0.98)]
    variants += [("multipower", None), ("lrnoise", None)]
    print(
        f"\nfits from step {a.steps // 8}; predicted final loss of each cooldown vs actual (*:"
        " inside the 90% interval)"
    )
    print("\n| pilots | law | " + " | ".join(_short(c) for c in cooldowns) + " | max abs |")
    print("|---|---|" + "---|" * len(cooldowns) + "---|")
    for name, cs in pilot_sets.items():
        for law, opts in variants:
            try:
                f = fit(cs, law, law_options=opts, min_step=a.steps // 8, prior=None)
            except Exception as exc:  # noqa: BLE001 - a failed variant is a row, not a crash
                print(f"| {name} | {law} {opts or ''} | failed: {exc} |")
                continue
            mean, low, high = f.predict_final(cooldowns)
            actual = np.array([by[(str(c), 0)]["losses"][-1] for c in cooldowns])
            err = mean / actual - 1
            seen = [any(np.array_equal(c.lrs(), x.lrs) for x in cs) for c in cooldowns]
            unseen = [abs(e) for e, was in zip(err, seen) if not was]
            cells = [
                "(pilot)"
                if any(np.array_equal(c.lrs(), x.lrs) for x in cs)
                else f"{e:+.2%}{'*' if lo <= y <= hi else ''}"
                for c, e, lo, hi, y in zip(cooldowns, err, low, high, actual)
            ]
            label = law + (f" lam={opts['lam']}" if opts else "")
            print(f"| {name} | {label} | " + " | ".join(cells) + f" | {max(unseen):.2%} |")
    pessimist(a, pilot_sets["constant x2 + WSD 20% (the demo)"], cooldowns, by)


def pessimist(a, pilots, cooldowns, by):
    """Two laws as one cautious surrogate: each schedule's larger predicted final loss of the
    momentum (lam 0.99) and multi-power fits of the demo's pilots; its misses on the cooldowns,
    and what each law and the pair rank first among the demo's candidates."""
    from hf_lrlaw import fit
    from tune_search.demo import DEMO_KINDS
    from tune_search.space import ScheduleSpace

    fits = [
        fit(pilots, "momentum", law_options={"lam": 0.99}, min_step=a.steps // 8, prior=None),
        fit(pilots, "multipower", min_step=a.steps // 8, prior=None),
    ]
    actual = np.array([by[(str(c), 0)]["losses"][-1] for c in cooldowns])
    worst = np.maximum(*(f.predict_final(cooldowns)[0] for f in fits))
    cells = ", ".join(f"{_short(c)} {e:+.2%}" for c, e in zip(cooldowns, worst / actual - 1))
    print(f"\nthe larger of momentum lam=0.99 and multipower (demo pilots): {cells}")
    cands = ScheduleSpace(a.peak_lr, a.steps, a.warmup, kinds=DEMO_KINDS).candidates()
    preds = [f.predict_final(cands)[0] for f in fits]
    for name, v in (("momentum", preds[0]), ("multipower", preds[1]), ("the larger", None)):
        v = np.maximum(*preds) if v is None else v
        top = [
            f"{_short(cands[i])} ({preds[0][i]:.4f} / {preds[1][i]:.4f})"
            for i in np.argsort(v, kind="stable")[:3]
        ]
        print(f"  {name} ranks first (momentum / multipower): " + "; ".join(top))


def _short(s):
    p = s.params
    if s.kind == "wsd":
        end = f" to {p['final_ratio']:.0%}" if p["final_ratio"] >= 0.05 else ""
        return f"wsd-{p['decay_shape']} {p['decay_fraction']:.0%}{end}"
    return s.kind


def main(argv=None):
    a = options(argv)
    if a.analyse_only:
        runs = json.loads(Path(a.runs).read_text())
    else:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as root:
            ctx = mp.get_context("spawn")
            with ctx.Pool(2) as pool:
                parts = pool.map(worker, [(a, "constant+branches", root), (a, "pilots", root)])
        runs = [r for part in parts for r in part]
        print(f"trained {len(runs)} runs in {time.perf_counter() - t0:.0f} s")
        if a.runs:
            Path(a.runs).write_text(json.dumps(runs))
    analyse(a, runs)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
