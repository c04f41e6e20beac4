"""Sizes the package refuses to allocate, and the block size of vectorised work.

A per-step LR array is 8 bytes a step: a run of more than :data:`MAX_RUN_STEPS` steps (a
schedule of ``total_steps=1e9``, a stray step number in a CSV) is refused with a message naming
the input, before anything is allocated. Many schedules are scored in blocks of at most
:data:`BLOCK_FLOATS` LR values, so memory stays bounded whatever the number of candidates.
"""

from __future__ import annotations

__all__ = ["BLOCK_FLOATS", "MAX_RUN_STEPS", "check_run_steps", "rows_per_block"]

MAX_RUN_STEPS = 100_000_000  # 800 MB of float64 per array; the longest public runs are 2e5
BLOCK_FLOATS = 4_000_000  # 32 MB of LRs per block of schedules


def check_run_steps(n: int, what: str, error: type[Exception] = ValueError) -> None:
    """``error`` naming ``what`` when a run of ``n`` steps is longer than the limit."""
    if n > MAX_RUN_STEPS:
        raise error(
            f"{what}: {n:,} steps is more than the {MAX_RUN_STEPS:,} a run may have here (its "
            f"per-step LRs alone would take {8 * n / 1e9:,.1f} GB)"
        )


def rows_per_block(steps: int, cap: int = 512) -> int:
    """How many schedules of ``steps`` steps to score at once."""
    return max(1, min(cap, BLOCK_FLOATS // max(1, steps)))
