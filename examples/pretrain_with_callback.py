"""Pre-train a tiny GPT-2 on CPU and watch LRLawCallback predict its final loss.

The model is a 2-layer GPT-2 over bytes, the text twelve Shakespeare plays (1.5 MB, shipped with
hf_lrlaw), the schedule a cosine with warmup. Once it has enough evaluation losses past the
first quarter of the run (a byte-level plateau, which no annealing law describes: left out with
`min_step`), the callback fits the scaling law to them and logs the predicted final loss of
this run, with a 90% interval, and of three other schedules. At the end it leaves
out/pretrain/lrlaw/record.json and fit.png behind and this script compares the predictions
with the loss the run really reached.

This CPU-sized model (0.45M parameters, 2M tokens) is far from the LLM runs the law and its
default prior were validated on: expect its predictions to be off by a few percent (on CPU,
2026-11-26: +5% from half the run, +1.5% at the end, the intervals too narrow) and its ranking
of the other schedules to be unreliable. Scale it up on a GPU for the regime the law is for.

    python examples/pretrain_with_callback.py                 # CPU, about 1-2 minutes
    python examples/pretrain_with_callback.py --device cuda --max_steps 4000 --n_layer 6 --n_embd 384 --n_head 6
    python examples/pretrain_with_callback.py --max_steps 200 # a quick look
"""

import argparse
import gc
import importlib.resources
import importlib.util
import json
import lzma
from pathlib import Path

import numpy as np
import torch
import transformers

from hf_lrlaw.callback import LRLawCallback

# -- defaults (each can be overridden on the command line: --name value) -----------------------
out_dir = "out/pretrain"
device = "cpu"  # or "cuda"
max_steps = 1000
batch_size = 16
seq_len = 128
n_layer, n_embd, n_head = 2, 128, 4
learning_rate = 3e-3
warmup_steps = 50
eval_every = 25
candidates = ["constant()", "wsd(decay_fraction=0.2)", "linear()"]
prior = "default"  # learned on public LLM curves; "none" fits the run's own data only
skip_fraction = 0.25  # the byte-level plateau at the start, which no annealing law describes
ddp_backend = ""  # "gloo" for CPU processes under torchrun (see multi_gpu.sh)
seed = 0
# -----------------------------------------------------------------------------------------------

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
for name, value in list(globals().items()):
    if name.startswith("_") or not isinstance(value, (int, float, str)) or name == "name":
        continue
    parser.add_argument(f"--{name}", type=type(value), default=value)
globals().update(vars(parser.parse_args()))


class ByteChunks(torch.utils.data.Dataset):
    """Fixed-length chunks of bytes; labels are the inputs (the model shifts them)."""

    def __init__(self, data: np.ndarray) -> None:
        n = len(data) // seq_len
        self.chunks = torch.from_numpy(data[: n * seq_len].astype(np.int64).reshape(n, seq_len))

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.chunks[i], "labels": self.chunks[i]}


try:
    with lzma.open(importlib.resources.files("hf_lrlaw") / "demo_data/shakespeare.txt.xz") as f:
        text = f.read()
except FileNotFoundError:
    text = Path(importlib.util.find_spec("pydoc_data.topics").origin).read_bytes()
tokens = np.frombuffer(text, dtype=np.uint8)
held_out = 64 * seq_len
train_set, eval_set = ByteChunks(tokens[:-held_out]), ByteChunks(tokens[-held_out:])

torch.manual_seed(seed)
config = transformers.GPT2Config(
    vocab_size=256,
    n_positions=seq_len,
    n_embd=n_embd,
    n_layer=n_layer,
    n_head=n_head,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    bos_token_id=0,
    eos_token_id=0,
)
model = transformers.GPT2LMHeadModel(config)
print(
    f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
    f"{len(train_set) * seq_len / 1e6:.2f}M training bytes, device {device}"
)

args = transformers.TrainingArguments(
    output_dir=out_dir,
    use_cpu=device == "cpu",
    bf16=device == "cuda" and torch.cuda.is_bf16_supported(),
    max_steps=max_steps,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=64,
    learning_rate=learning_rate,
    lr_scheduler_type="cosine",
    warmup_steps=warmup_steps,
    weight_decay=0.1,
    logging_steps=10,
    eval_strategy="steps",
    eval_steps=eval_every,
    save_strategy="no",
    report_to="none",
    disable_tqdm=True,
    seed=seed,
    ddp_backend=ddp_backend or None,
    ddp_find_unused_parameters=False,
)
callback = LRLawCallback(  # the one line this example is about
    candidates=candidates,
    prior=None if prior == "none" else prior,
    fit_kwargs={"min_step": int(skip_fraction * max_steps)},
)
trainer = transformers.Trainer(
    model=model, args=args, train_dataset=train_set, eval_dataset=eval_set, callbacks=[callback]
)
trainer.train()
is_main = trainer.is_world_process_zero()
if torch.distributed.is_initialized():
    # Shut down while the interpreter is alive: a process group left to its exit can abort the
    # rank from gloo's threads (pytorch/pytorch#190489). Drop the DDP wrapper first: if its
    # reducer held the group's last reference, the group would be destroyed holding the GIL that
    # a gloo thread may still need (a deadlock); destroyed from Python, it releases the GIL.
    torch.distributed.barrier()
    del trainer, model
    gc.collect()
    torch.distributed.destroy_process_group()
if not is_main:
    raise SystemExit(0)  # only rank 0 fits and writes

# -- how good were the predictions? ------------------------------------------------------------
record = json.loads((Path(out_dir) / "lrlaw" / "record.json").read_text())
actual = record["curves"][0]["losses"][-1]
print(f"\nfitted metric: {record['metric']}; schedule: {record['schedule']['text']}")
print(f"final {record['metric']} reached: {actual:.4f}")
print("| fit at step | predicted final | 90% interval | error | annealing identified |")
print("|---:|---:|---|---:|---|")
if not record["history"]:
    print("| - | no fit succeeded (see the warnings above) | | | |")
for h in record["history"]:
    print(
        f"| {h['step']} | {h['final_loss']:.4f} | [{h['low']:.4f}, {h['high']:.4f}] | "
        f"{(h['final_loss'] - actual) / actual:+.2%} | {h['annealing_identified']} |"
    )
print("\npredicted final loss of the candidates (last fit):")
for row in record["candidates"]:
    print(
        f"  #{row['index']} {row['schedule']}: {row['predicted']:.4f} "
        f"[{row['low']:.4f}, {row['high']:.4f}]"
    )
print(
    f"\nwrote {Path(out_dir) / 'lrlaw' / 'record.json'} and {Path(out_dir) / 'lrlaw' / 'fit.png'}"
)
