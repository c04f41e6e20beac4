"""Step-time overhead of LRLawCallback on a tiny CPU model with logging_steps=1 (the worst case:
the cheapest steps, a log at every step, the fits competing with training for the same cores).

Three configurations train the same tiny GPT-2 (2 layers, 64 wide, batch 16, sequence 64) for
the same steps in one process, interleaved round-robin so that a change in machine load hits
them alike:

* ``none``: no callback (the reference);
* ``record``: LRLawCallback recording every step's LR and loss, no fit (``fit_after`` past the
  end; the record is written once at the end);
* ``fits``: LRLawCallback with its defaults: a fit every 10% of the run from 20% on, in a
  background thread, each writing record.json and fit.png, and a last fit at the end.

Figures, measured two ways. Differential: the median over rounds of each configuration's ``train()`` wall time divided by the
reference's in the same round (1.010 = 1% slower), the same ratio of the process's CPU time
(all threads; steadier than wall time when other processes share the cores), the mean step
time, and the callback's own cost per fit (fit + prediction, figure). Accounted: the CPU time
the callback itself uses (its events in the training thread, timed with ``time.thread_time``,
plus the fits' thread CPU time), as a share of the reference run's CPU time; under machine load
it resolves what the differential figures drown in noise. Targets: ``record`` < 1.01, ``fits``
< 1.03. The cost of the fits is fixed per fit (about ten per run), so its share
shrinks as runs get longer: the figures hold for this run length.

On a machine whose cores are shared with other work, torch's default threads spin and every
step slows many-fold; ``--threads 1`` then gives steadier figures (the fit thread then has a core
of its own: compare CPU-time ratios).

Run: python bench/bench_callback_overhead.py [--steps 1000] [--rounds 3] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
import transformers  # noqa: E402
from common import machine  # noqa: E402

import hf_lrlaw  # noqa: E402
from hf_lrlaw.callback import LRLawCallback  # noqa: E402
from hf_lrlaw.testing import byte_datasets, tiny_args, tiny_gpt2  # noqa: E402

CONFIGS = ("none", "record", "fits")
EVENTS = (
    "on_init_end",
    "on_train_begin",
    "on_step_begin",
    "on_optimizer_step",
    "on_step_end",
    "on_log",
    "on_evaluate",
    "on_train_end",
)


def _timed(name: str):
    def event(self, *args, **kwargs):
        c0 = time.thread_time()
        try:
            return getattr(LRLawCallback, name)(self, *args, **kwargs)
        finally:
            self.events_cpu += time.thread_time() - c0

    return event


class TimedLRLawCallback(LRLawCallback):
    """LRLawCallback that adds up the CPU time its events take in the training thread."""

    events_cpu = 0.0


for _name in EVENTS:
    setattr(TimedLRLawCallback, _name, _timed(_name))


class StepClock(transformers.TrainerCallback):
    """Wall time between consecutive step ends (the first step's is left out: warm-up)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self.last is not None:
            self.times.append(now - self.last)
        self.last = now


def run(config: str, steps: int, train, folder: Path) -> dict:
    clock = StepClock()
    callbacks: list = [clock]
    lrlaw = None
    if config == "record":
        lrlaw = TimedLRLawCallback(fit_after=steps + 1)
    elif config == "fits":
        lrlaw = TimedLRLawCallback()
    if lrlaw is not None:
        callbacks.append(lrlaw)
    args = tiny_args(
        folder / config,
        max_steps=steps,
        per_device_train_batch_size=16,
        logging_steps=1,
        lr_scheduler_type="cosine",
        warmup_steps=steps // 20,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=tiny_gpt2(seq_len=64), args=args, train_dataset=train, callbacks=callbacks
    )
    # the Trainer's log printer would dominate a log-every-step run: keep the console quiet
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    used = next(
        (cb for cb in trainer.callback_handler.callbacks if isinstance(cb, LRLawCallback)), None
    )
    history = used.history if used is not None else []
    return {
        "wall": wall,
        "cpu": cpu,
        "step": statistics.fmean(clock.times),
        "fits": len(history),
        # CPU time of the callback: its events in the training thread (the final fit and
        # figure included), and the periodic fits in the background thread
        "events_cpu": used.events_cpu if used is not None else 0.0,
        "thread_cpu": sum(h.get("cpu_seconds", 0.0) for h in history if not h["final"]),
        "fit_s": [h["seconds"] for h in history],
        "plot_s": [h.get("plot_seconds", 0.0) for h in history],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 steps, 2 rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's, one per core: the worst case, "
        "the fits compete with training for every core)",
    )
    cli = parser.parse_args()
    if cli.threads:
        torch.set_num_threads(cli.threads)
    steps, rounds = (200, 2) if cli.quick else (cli.steps, cli.rounds)
    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_lrlaw.callback").setLevel(logging.ERROR)
    train, _ = byte_datasets(seq_len=64)

    print(
        "LRLawCallback overhead, logging_steps=1, tiny GPT-2 2x64 (125K params), batch 16, "
        f"seq 64, {steps} steps, {rounds} rounds"
    )
    print(
        f"{machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, hf_lrlaw {hf_lrlaw.__version__}"
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        run("none", 20, train, Path(tmp) / "warmup")  # imports, allocator, first-call costs
        for r in range(rounds):
            for config in CONFIGS[r % 3 :] + CONFIGS[: r % 3]:  # rotate the order each round
                results[config].append(run(config, steps, train, Path(tmp) / f"r{r}"))
                last = results[config][-1]
                print(
                    f"  round {r + 1} {config:>6}: {last['wall']:.2f} s wall, "
                    f"{last['cpu']:.2f} s CPU",
                    flush=True,
                )
    print(f"load average at end:   {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(
        "| configuration | wall-time ratio (median) | per round | CPU-time ratio (median) | "
        "extra wall s per run | mean step | fits | per fit: fit + predict | figure |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for config in CONFIGS:
        ratios = [a["wall"] / b["wall"] for a, b in zip(results[config], results["none"])]
        cpu = [a["cpu"] / b["cpu"] for a, b in zip(results[config], results["none"])]
        rows = results[config]
        fit_s = [x for row in rows for x in row["fit_s"]]
        plot_s = [x for row in rows for x in row["plot_s"]]
        print(
            f"| {config} | {statistics.median(ratios):.3f} | "
            f"{', '.join(f'{x:.3f}' for x in ratios)} | {statistics.median(cpu):.3f} | "
            f"{statistics.median(a['wall'] - b['wall'] for a, b in zip(rows, results['none'])):+.2f}"
            " | "
            f"{statistics.fmean(r['step'] for r in rows) * 1e3:.1f} ms | "
            f"{rows[0]['fits']} | "
            + (f"{statistics.median(fit_s) * 1e3:.0f} ms | " if fit_s else "- | ")
            + (f"{max(plot_s) * 1e3:.0f} ms |" if plot_s else "- |")
        )
    print(
        "(figure: the slowest fit.png of a run, in wall time; periodic figures are skipped while "
        "figures would take over 0.5% of the training time)"
    )
    print()
    base_cpu = statistics.median(r["cpu"] for r in results["none"])
    print(
        "| configuration | callback CPU in the training thread | in the fit thread | "
        "per step (training thread) | accounted overhead |"
    )
    print("|---|---:|---:|---:|---:|")
    accounted = {}
    for config in CONFIGS[1:]:
        rows = results[config]
        events = statistics.median(r["events_cpu"] for r in rows)
        thread = statistics.median(r["thread_cpu"] for r in rows)
        accounted[config] = (events + thread) / base_cpu
        print(
            f"| {config} | {events:.3f} s | {thread:.3f} s | {events / steps * 1e6:.0f} us | "
            f"{accounted[config]:.2%} |"
        )
    print()
    target = {"record": 1.01, "fits": 1.03}
    walls = [r["wall"] for r in results["none"]]
    spread = (max(walls) - min(walls)) / statistics.median(walls)
    for config, limit in target.items():
        verdict = "meets" if 1 + accounted[config] < limit else "MISSES"
        ratios = [a["wall"] / b["wall"] for a, b in zip(results[config], results["none"])]
        cpu = [a["cpu"] / b["cpu"] for a, b in zip(results[config], results["none"])]
        print(
            f"{config}: accounted ratio {1 + accounted[config]:.4f} {verdict} the target < "
            f"{limit}; differential wall {statistics.median(ratios):.3f}, CPU "
            f"{statistics.median(cpu):.3f}"
        )
    print(
        f"run-to-run spread of the reference's wall time: {spread:.1%} (differential ratios "
        "closer to 1 than this are noise)"
    )


if __name__ == "__main__":
    main()
