"""Two short training runs with LRLawCallback, for tests/test_callback_ddp.py.

Under ``torchrun --nproc_per_node 2`` (CPU, gloo) each process trains with its own
``output_dir`` (``<out>/<run>/rank<r>``) so that the test can see which process wrote files; run
alone it is the single-process reference. Each process writes ``<out>/result-rank<r>.json``.

    torchrun --nproc_per_node 2 --master_port 29512 tests/ddp_script.py --out /tmp/x --batch 4
    python tests/ddp_script.py --out /tmp/y --batch 8
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path

import torch
import transformers

from hf_lrlaw.callback import LRLawCallback
from hf_lrlaw.testing import byte_datasets, tiny_args, tiny_gpt2

STEPS = 40
STOP_STEPS = 80
THRESHOLD = 0.5  # no run reaches this loss: a confident fit stops the run
DDP_ARGS = (
    {"ddp_backend": "gloo", "ddp_find_unused_parameters": False}
    if int(os.environ.get("WORLD_SIZE", "1")) > 1
    else {}
)


def train(out: Path, batch: int, *, steps: int, stop: float | None, law: str = "auto") -> dict:
    """One run; what this process saw."""
    rank = int(os.environ.get("RANK", "0"))
    folder = out / f"rank{rank}"
    callback = LRLawCallback(
        law=law,
        fit_after=10,
        fit_every=5,
        min_points=5,
        stop_if_predicted_above=stop,
        plot=False,
    )
    args = tiny_args(
        folder,
        max_steps=steps,
        per_device_train_batch_size=batch,
        logging_steps=1,
        lr_scheduler_type="cosine",
        warmup_steps=4,
        **DDP_ARGS,
    )
    train_set, _ = byte_datasets(seq_len=64)
    trainer = transformers.Trainer(
        model=tiny_gpt2(seq_len=64), args=args, train_dataset=train_set, callbacks=[callback]
    )
    trainer.train()
    # after a resume the Trainer may hold a restored copy: report the one it ran
    (used,) = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, LRLawCallback)]
    return {
        "rank": rank,
        "world_size": args.world_size,
        "global_step": trainer.state.global_step,
        "history": used.history,
        "events": used.events,
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, required=True, help="per-device batch size")
    cli = parser.parse_args()
    transformers.logging.set_verbosity_error()
    result = {
        "record": train(cli.out / "record", cli.batch, steps=STEPS, stop=None),
        # the power law has no annealing term to leave undetermined: confident early
        "stop": train(cli.out / "stop", cli.batch, steps=STOP_STEPS, stop=THRESHOLD, law="power"),
    }
    rank = result["record"]["rank"]
    (cli.out / f"result-rank{rank}.json").write_text(json.dumps(result, indent=1))
    if torch.distributed.is_initialized():  # a clean exit: gloo aborts if left to the interpreter
        gc.collect()  # the trainers' DDP reducers go first, see examples/pretrain_with_callback.py
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
