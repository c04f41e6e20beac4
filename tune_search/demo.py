"""``make demo``: the whole user path on CPU in under ten minutes.

A tiny GPT-2 (built from a config, nothing downloaded) learns twelve Shakespeare plays byte by
byte. Two pilot runs (constant and cosine LR, each with LRLawCallback recording
its curve) are fitted with the scaling law; Ray Tune's LRLawSearcher ranks 1,000+ candidate
schedules by predicted final loss; the best three are trained in full; the report compares
prediction and outcome and names the recommended schedule.

    python -m tune_search.demo                       # CPU, default sizes
    python -m tune_search.demo --device cuda --steps 4000 --layers 6 --embd 384 --heads 6
    python -m tune_search.demo --quick               # a one-minute smoke run (used by the tests)

Writes <out>/report.md, report.png, recommended.json, ranking.csv, fit.json, trials.json.
"""

from __future__ import annotations

import argparse
import lzma
import os
import sys
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray needs no token

import numpy as np  # noqa: E402

from tune_search.space import DEFAULT_KINDS, ScheduleSpace, span  # noqa: E402

# The demo's candidate space: the default one with a finer WSD grid and two-stage schedules,
# ~1,100 schedules at one peak LR and horizon.
DEMO_KINDS = {
    **DEFAULT_KINDS,
    "wsd": {
        **DEFAULT_KINDS["wsd"],
        "decay_fraction": span(0.05, 0.6, 34),
        "final_ratio": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5],
    },
    "two_stage": {"switch_fraction": span(0.5, 0.9, 5), "second_ratio": [0.05, 0.1, 0.2, 0.3]},
}


def shakespeare() -> bytes:
    """The demo text (1.5 MB; see hf_lrlaw/demo_data/README.md for its source and licence)."""
    blob = resources.files("hf_lrlaw") / "demo_data" / "shakespeare.txt.xz"
    return lzma.decompress(blob.read_bytes())


class ByteBlocks:
    """Non-overlapping ``seq``-byte blocks of a text; a causal LM predicts each next byte."""

    def __init__(self, data: bytes, seq: int, limit: int | None = None):
        self.data = np.frombuffer(data, dtype=np.uint8)
        self.seq = seq
        self.n = (len(self.data) - 1) // seq if limit is None else limit

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import torch

        x = torch.from_numpy(self.data[i * self.seq : (i + 1) * self.seq].astype(np.int64))
        return {"input_ids": x, "labels": x.clone()}


def options(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m tune_search.demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--out", default="runs/demo", help="output folder")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=800, help="optimizer steps of a full run")
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--peak-lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=40, help="steps between evaluations")
    ap.add_argument("--eval-blocks", type=int, default=64, help="held-out blocks per evaluation")
    ap.add_argument("--top-k", type=int, default=3, help="candidates trained in full")
    ap.add_argument("--law", default="momentum", help="law the searcher fits")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="trials at a time (default: one per CPU Ray sees)",
    )
    ap.add_argument("--address", default=None, help="ray.init address (e.g. auto for a cluster)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the path")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.batch, args.seq = 60, 6, 4, 32
        args.layers, args.embd, args.heads, args.eval_every, args.eval_blocks = 1, 32, 2, 6, 8
        args.top_k = min(args.top_k, 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    t0 = time.perf_counter()
    out = Path(args.out)

    def say(msg: str) -> None:
        elapsed = time.perf_counter() - t0
        print(f"[{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {msg}", flush=True)

    say("[1/4] loading the text and building the model")
    import torch
    from ray import tune
    from transformers import GPT2Config, GPT2LMHeadModel

    from tune_search.api import search_schedules

    text = shakespeare()
    cut = int(len(text) * 0.95)
    train = ByteBlocks(text[:cut], args.seq)
    val = ByteBlocks(
        text[cut:], args.seq, limit=min(args.eval_blocks, (len(text) - cut - 1) // args.seq)
    )
    config = GPT2Config(
        n_layer=args.layers,
        n_embd=args.embd,
        n_head=args.heads,
        vocab_size=256,
        n_positions=args.seq,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )

    def make_model():
        torch.manual_seed(0)
        return GPT2LMHeadModel(config)

    n_params = sum(p.numel() for p in make_model().parameters())
    tokens = args.steps * args.batch * args.seq
    space = ScheduleSpace(args.peak_lr, args.steps, args.warmup, kinds=DEMO_KINDS)
    say(
        f"      GPT-2 {args.layers} layer(s) x {args.embd} wide: {n_params:,} parameters; a full run "
        f"is {args.steps} steps x {args.batch} x {args.seq} bytes = {tokens:,} tokens "
        f"({tokens / len(train.data):.2f} passes over {len(train.data):,} bytes of Shakespeare)"
    )
    say(f"      {space.describe()}")

    class Progress(tune.Callback):
        """One line per evaluation, at most one every few seconds per trial."""

        def __init__(self) -> None:
            self.last: dict[str, float] = {}
            self.count = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.count += 1
            sched = trial.config.get("schedule", "?")
            role = "pilot" if self.count <= 2 else "candidate"
            say(f"      trial {self.count} started, {role}: {sched}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            now = time.perf_counter()
            if now - self.last.get(trial.trial_id, 0.0) < 10.0:
                return
            self.last[trial.trial_id] = now
            loss = result.get("eval_loss")
            if loss is not None and "step" in result:
                say(
                    f"      {trial.trial_id}: step {int(result['step']) + 1}/{args.steps}, "
                    f"eval loss {loss:.4f}"
                )

        def on_trial_complete(self, iteration, trials, trial, **info):
            say(f"      {trial.trial_id} finished")

    say(
        f"[2/4] searching: 2 pilot runs -> fit the {args.law} law -> rank {len(space):,} "
        f"candidates -> the best {args.top_k} in full"
    )
    training_args = {
        "per_device_train_batch_size": args.batch,
        "per_device_eval_batch_size": 64,
        "eval_strategy": "steps",
        "eval_steps": args.eval_every,
        "logging_steps": args.eval_every,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": args.device == "cpu",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }
    result = search_schedules(
        model_init=make_model,
        train_dataset=train,
        eval_dataset=val,
        training_args=training_args,
        space=space,
        metric="eval_loss",
        law=args.law,
        top_k=args.top_k,
        pilot_steps=None,
        output_dir=out,
        address=args.address,
        # The first quarter (the byte-level plateau, before the model learns more than
        # unigram statistics) is no power law; the law is fitted from there on.
        fit_kwargs={"min_step": args.steps // 4},
        # Five runs in all: the law-based stopper pays off in larger searches; here its early
        # judgement would fall on the byte-level plateau of the first ~250 steps.
        stopper=False,
        max_concurrent_trials=args.concurrency,
        max_steps=args.steps,
        resources_per_trial={"cpu": 1, "gpu": 1 if args.device == "cuda" else 0},
        callbacks=[Progress()],
    )

    say("[3/4] writing the report")
    report = result.files["report"]
    setup = [
        "",
        "## Setup",
        "",
        f"- Model: GPT-2, {args.layers} layer(s), width {args.embd}, {args.heads} heads, "
        f"{n_params:,} parameters, built from a config (random init, byte vocabulary of 256).",
        f"- Data: twelve Shakespeare plays (Project Gutenberg, public domain), "
        f"{len(train.data):,} training bytes; evaluation on {len(val)} held-out blocks of "
        f"{args.seq} bytes.",
        f"- A full run: {args.steps} steps of {args.batch} x {args.seq} bytes = {tokens:,} "
        f"tokens, peak LR {args.peak_lr}, warmup {args.warmup} steps, AdamW.",
        f"- Search: {len(space):,} candidates, 2 pilot runs (constant, cosine), the best "
        f"{args.top_k} in full; {time.perf_counter() - t0:.0f} s in all on {args.device}.",
        "",
    ]
    body = report.read_text().split("\n")
    report.write_text("\n".join(body[:3] + setup + body[3:]))

    say("[4/4] done")
    print(f"\nRecommended schedule: {result.recommended}")
    hf = result.recommended_hf
    if hf["exact"]:
        print(
            f"  TrainingArguments(lr_scheduler_type={hf['lr_scheduler_type']!r}, "
            f"lr_scheduler_kwargs={hf['lr_scheduler_kwargs']!r}, ...)"
        )
    if result.ranking is not None:
        print("\n" + result.ranking.to_markdown(10))
    print(f"\nReport: {report}\nRecommendation: {result.files.get('recommended')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
