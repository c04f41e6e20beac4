"""A tiny GPT-2 and a byte-level text data set for tests, benchmarks and examples: no downloads,
CPU-fast (needs the ``[hf]`` extra: torch and transformers).

The text is the standard library's ``pydoc_data/topics.py`` (about 0.75 MB of English, shipped
with every CPython), tokenised as bytes (vocabulary 256) and cut into fixed-length chunks. The
model is a randomly initialised ``GPT2LMHeadModel`` built from a ``GPT2Config``::

    from hf_lrlaw.testing import byte_datasets, tiny_args, tiny_gpt2

    train, evaluation = byte_datasets(seq_len=64)
    trainer = transformers.Trainer(
        model=tiny_gpt2(seq_len=64),
        args=tiny_args(tmp_path, max_steps=100, learning_rate=3e-3),
        train_dataset=train,
        eval_dataset=evaluation,
    )

Speed: a 2-layer, 64-wide model at batch 8 and sequence 64 runs at about 50 optimizer steps per
second with one torch thread; its loss falls from 5.5 (uniform over bytes) to about 2.3 within
100 steps at LR 3e-3. Use ``torch.set_num_threads(1)`` for such runs on a machine whose cores are
shared with other work: with a thread per core, OpenMP's waiting makes steps 10-20x slower.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from hf_lrlaw._extras import require

require("hf_lrlaw.testing", "hf", "torch", "transformers")

import torch  # noqa: E402

__all__ = [
    "ByteChunks",
    "byte_datasets",
    "corpus_bytes",
    "corpus_path",
    "tiny_args",
    "tiny_gpt2",
]


def corpus_path() -> Path:
    """The path of the standard library's ``pydoc_data/topics.py``."""
    spec = importlib.util.find_spec("pydoc_data.topics")
    if spec is None or spec.origin is None:  # pragma: no cover - every CPython ships it
        raise FileNotFoundError("the standard library's pydoc_data/topics.py is missing")
    return Path(spec.origin)


@functools.lru_cache(maxsize=1)
def corpus_bytes() -> bytes:
    """The corpus as bytes (each byte is a token)."""
    return corpus_path().read_bytes()


class ByteChunks(torch.utils.data.Dataset):
    """Consecutive, non-overlapping ``seq_len``-byte chunks of ``data``; ``labels`` equal
    ``input_ids`` (the model shifts them). Items are ``{"input_ids", "labels"}`` int64 tensors."""

    def __init__(self, data: bytes | np.ndarray, seq_len: int) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        tokens = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
        n = len(tokens) // seq_len
        if n < 1:
            raise ValueError(f"{len(tokens)} bytes make no chunk of {seq_len}")
        self.seq_len = seq_len
        self.chunks = torch.from_numpy(
            np.ascontiguousarray(tokens[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
        )

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.chunks[i]
        return {"input_ids": ids, "labels": ids}


def byte_datasets(
    seq_len: int = 64, eval_chunks: int = 64, train_bytes: int | None = None
) -> tuple[ByteChunks, ByteChunks]:
    """``(train, eval)``: the last ``eval_chunks`` chunks of the corpus are held out for eval.

    Args:
        seq_len: bytes per chunk (the model's context must be at least this long).
        eval_chunks: size of the held-out set, in chunks.
        train_bytes: use only the first ``train_bytes`` bytes for training (to make epochs short).
    """
    data = np.frombuffer(corpus_bytes(), dtype=np.uint8)
    cut = len(data) - eval_chunks * seq_len
    if cut < seq_len:
        raise ValueError(f"eval_chunks={eval_chunks} of {seq_len} bytes leaves no training data")
    train = data[:cut] if train_bytes is None else data[: min(cut, train_bytes)]
    return ByteChunks(train, seq_len), ByteChunks(data[cut:], seq_len)


def tiny_gpt2(
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    seq_len: int = 64,
    seed: int = 0,
    **config: Any,
):
    """A randomly initialised ``GPT2LMHeadModel`` over bytes (vocabulary 256), no dropout."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
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
        **config,
    )
    return transformers.GPT2LMHeadModel(cfg)


def tiny_args(output_dir: str | os.PathLike[str], **overrides: Any):
    """``TrainingArguments`` for a quiet, deterministic CPU run; keyword arguments override.

    Defaults: ``use_cpu=True``, batch 16, LR 3e-3, ``max_steps=100``, ``logging_steps=10``,
    no checkpoints, no reporting, no progress bar, no dataloader workers.
    """
    import transformers

    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "learning_rate": 3e-3,
        "max_steps": 100,
        "logging_steps": 10,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
        "data_seed": 0,
    }
    values.update(overrides)
    return transformers.TrainingArguments(**values)
