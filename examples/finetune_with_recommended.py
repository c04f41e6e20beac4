"""The last step of the user path: train with the schedule a search recommended.

Reads recommended.json (written by `make demo`, `search_schedules` or `lrlaw search`), builds the
schedule, and trains with it: through TrainingArguments when a built-in transformers scheduler is
exactly this schedule, otherwise with the schedule's own LambdaLR. LRLawCallback watches the run.

    python examples/finetune_with_recommended.py                         # runs/demo/recommended.json
    python examples/finetune_with_recommended.py --recommended runs/search/recommended.json \
        --max_steps 2000                                                 # same shape, new length
"""

import argparse
import json
import lzma
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import transformers

from hf_lrlaw import LRLawCallback, Schedule

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--recommended", default="runs/demo/recommended.json")
ap.add_argument("--max_steps", type=int, default=None, help="stretch the schedule to this length")
ap.add_argument("--out_dir", default="out/finetune")
ap.add_argument("--batch_size", type=int, default=16)
ap.add_argument("--seq_len", type=int, default=128)
ap.add_argument("--n_layer", type=int, default=2)
ap.add_argument("--n_embd", type=int, default=128)
ap.add_argument("--n_head", type=int, default=4)
args = ap.parse_args()

rec = json.loads(Path(args.recommended).read_text())
schedule = Schedule.parse(rec["schedule"])
if args.max_steps:  # the same shape over another length: the warmup keeps its share of the run
    warmup = round(schedule.warmup_steps * args.max_steps / schedule.total_steps)
    schedule = schedule.replace(total_steps=args.max_steps, warmup_steps=warmup)
print(f"schedule: {schedule}")

text = lzma.decompress((resources.files("hf_lrlaw") / "demo_data/shakespeare.txt.xz").read_bytes())
data = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
blocks = torch.from_numpy(
    data[: len(data) // args.seq_len * args.seq_len].reshape(-1, args.seq_len)
)
train = [{"input_ids": b, "labels": b} for b in blocks[:-64]]
held_out = [{"input_ids": b, "labels": b} for b in blocks[-64:]]

torch.manual_seed(0)
model = transformers.GPT2LMHeadModel(
    transformers.GPT2Config(
        vocab_size=256,
        n_positions=args.seq_len,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
)

common = dict(
    output_dir=args.out_dir,
    per_device_train_batch_size=args.batch_size,
    eval_strategy="steps",
    eval_steps=max(1, schedule.total_steps // 20),
    logging_steps=max(1, schedule.total_steps // 40),
    save_strategy="no",
    report_to="none",
    use_cpu=not torch.cuda.is_available(),
    disable_tqdm=True,
)
try:  # exact built-in scheduler: everything goes through TrainingArguments
    training_args = transformers.TrainingArguments(**common, **schedule.to_training_args())
    optimizers = (None, None)
    print(f"transformers scheduler: {schedule.to_hf()}")
except ValueError as why:  # no built-in one: the schedule's own LambdaLR
    print(f"no exact transformers scheduler ({why}); using Schedule.to_torch()")
    training_args = transformers.TrainingArguments(
        **common, max_steps=schedule.total_steps, learning_rate=schedule.peak_lr
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.peak_lr, weight_decay=0.0)
    optimizers = (optimizer, schedule.to_torch(optimizer))

trainer = transformers.Trainer(
    model=model,
    args=training_args,
    train_dataset=train,
    eval_dataset=held_out,
    optimizers=optimizers,
    # the first quarter is a byte-level plateau, as in the demo
    callbacks=[LRLawCallback(fit_kwargs={"min_step": schedule.total_steps // 4})],
)
trainer.train()
final = trainer.evaluate()["eval_loss"]
print(
    f"final eval loss {final:.4f}"
    + (
        f" (the search's run of this schedule reached {rec['final_loss']:.4f})"
        if rec.get("final_loss") and not args.max_steps
        else ""
    )
)
