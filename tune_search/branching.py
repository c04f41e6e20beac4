"""Cooldowns branched from a checkpoint: a schedule whose LRs equal an earlier trial's for its
first k updates resumes from that trial's checkpoint after update k and pays only for the rest,
as the WSD literature trains its cooldowns (and as the bundled lr-scheduling runs were made).

The protocol between the searcher and a trainable, in the trial's config and reports:

* ``config[SAVE_KEY]``: the update counts k (a Trainer's ``global_step``) after which the trial
  saves a resumable checkpoint;
* each report then carries ``result[CHECKPOINTS_KEY]``: JSON ``[[k, "where"], ...]`` of the
  checkpoints saved so far (every report carries all of them, so that none is lost between
  reports);
* ``config[BRANCH_KEY]``: ``{"trial_id": parent, "step": k, "checkpoint": where}``: resume from
  that checkpoint and report the steps from k on. A trainable that cannot (the checkpoint is
  on another node) runs from step 0; the searcher sees it and counts the whole run.

Compute is counted honestly: a branched trial costs the updates it ran, ``total_steps - k``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from hf_lrlaw.schedules import Schedule

__all__ = [
    "BRANCH_KEY",
    "CHECKPOINTS_KEY",
    "MIN_BRANCH_FRACTION",
    "SAVE_KEY",
    "branch_pending",
    "branch_source",
    "decode_checkpoints",
    "encode_checkpoints",
    "remove_branch_checkpoints",
    "save_steps",
    "shared_steps",
    "world_reports",
]

SAVE_KEY = "lrlaw_save_steps"
BRANCH_KEY = "lrlaw_branch"
CHECKPOINTS_KEY = "lrlaw_checkpoints"
# A branch must save at least this fraction of the child's run to be worth a checkpoint.
MIN_BRANCH_FRACTION = 0.1


@functools.lru_cache(maxsize=1 << 16)
def shared_steps(a: Schedule, b: Schedule) -> int:
    """How many leading updates ``a`` and ``b`` run at the same LR (relative 1e-9): a trial of
    ``b`` may resume from a checkpoint of ``a`` saved after at most this many updates (cached:
    a search asks it for the same pairs at every suggestion)."""
    if a.peak_lr != b.peak_lr or a.warmup_steps != b.warmup_steps:
        return 0
    x, y = a.lrs(), b.lrs()
    n = min(len(x), len(y))
    same = np.isclose(x[:n], y[:n], rtol=1e-9, atol=0.0)
    return n if same.all() else int(np.argmin(same))


def save_steps(
    parent: Schedule,
    candidates: Iterable[Schedule],
    runs_to: int | None = None,
    limit: int = 16,
    min_fraction: float = MIN_BRANCH_FRACTION,
) -> list[int]:
    """Where a trial of ``parent`` should save checkpoints so that ``candidates`` can branch from
    it: the distinct points where each one's LRs leave the parent's (at most ``runs_to``, the
    updates the trial runs), where that saves at least ``min_fraction`` of the candidate's run;
    thinned to ``limit`` evenly ranked points, the latest always kept (a candidate resumes from
    the latest checkpoint at or before its own point)."""
    end = parent.total_steps if runs_to is None else min(int(runs_to), parent.total_steps)
    points = set()
    for c in candidates:
        k = min(shared_steps(parent, c), end)
        if k >= min_fraction * c.total_steps and k > parent.warmup_steps:
            points.add(k)
    found = sorted(points)
    if len(found) > limit:
        keep = np.unique(np.round(np.linspace(0, len(found) - 1, limit)).astype(int))
        found = [found[i] for i in keep]
    return found


def branch_source(records: Iterable[Any], schedule: Schedule) -> tuple[str, int, str] | None:
    """The latest checkpoint among ``records`` (the search's TrialRecords) of a trial that ran
    ``schedule``'s LRs up to it: (trial id, updates, where); None when none saves at least
    MIN_BRANCH_FRACTION of the run. Errored and diverged trials are no parents."""
    best: tuple[str, int, str] | None = None
    for rec in records:
        if not rec.checkpoints or rec.status in ("error", "diverged"):
            continue
        limit = shared_steps(Schedule.parse(rec.schedule), schedule)
        for k, where in rec.checkpoints.items():
            if (
                k <= limit
                and MIN_BRANCH_FRACTION * schedule.total_steps <= k < schedule.total_steps
                and (best is None or k > best[1])
            ):
                best = (rec.trial_id, k, where)
    return best


def branch_pending(records: Iterable[Any], schedule: Schedule) -> bool:
    """Whether a running trial among ``records`` plans a checkpoint (``rec.planned``) that
    ``schedule`` could branch from, later than any it can branch from now: wait for it."""
    records = list(records)
    planned = 0
    for rec in records:
        if rec.completed or rec.status in ("error", "diverged") or not rec.planned:
            continue
        limit = min(shared_steps(Schedule.parse(rec.schedule), schedule), schedule.total_steps - 1)
        useful = [
            k for k in rec.planned if MIN_BRANCH_FRACTION * schedule.total_steps <= k <= limit
        ]
        planned = max([planned, *useful])
    now = branch_source(records, schedule)
    return planned > (now[1] if now else 0)


def remove_branch_checkpoints(records: Iterable[Any], mirrors: Sequence[str] = ()) -> list[str]:
    """Delete the checkpoints the search asked its trials to save for branches (``rec.planned``
    of each TrialRecord), once no candidate will resume from them; returns the folders removed.
    ``mirrors``: folders that hold copies of the trial folders (Tune syncs a trial's working
    folder to its experiment folder in ``storage_path``): the copy of each such checkpoint goes
    too. Only a folder named ``checkpoint-<k>`` for a planned k goes: any other checkpoint a
    trial reported (a save the user's TrainingArguments asked for) stays, and so does a folder
    this machine cannot see (another node's disk)."""
    removed = []
    for rec in records:
        planned = set(rec.planned)
        for k, where in sorted(rec.checkpoints.items()):
            if k not in planned or os.path.basename(os.path.normpath(where)) != f"checkpoint-{k}":
                continue
            for path in [where, *_mirrored(where, rec.trial_id, mirrors)]:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                    removed.append(path)
    return removed


def _mirrored(where: str, trial_id: str, mirrors: Sequence[str]) -> list[str]:
    """``where``'s copies under ``mirrors``: its path from the trial's folder (the first folder
    whose name holds the trial id) on, below each mirror."""
    parts = os.path.normpath(where).split(os.sep)
    at = next((i for i, p in enumerate(parts[:-1]) if trial_id and trial_id in p), None)
    if at is None:
        return []
    found = [os.path.join(m, *parts[at:]) for m in mirrors]
    return [f for f in found if os.path.normpath(f) != os.path.normpath(where)]


def encode_checkpoints(saved: Sequence[tuple[int, str]]) -> str:
    """The report value of ``[(k, where), ...]``."""
    return json.dumps([[int(k), str(w)] for k, w in saved])


def decode_checkpoints(value: Any) -> list[tuple[int, str]]:
    """``[(k, where), ...]`` from a report value; [] for anything else (a bad value is no
    checkpoint, never an error in the search)."""
    try:
        items = json.loads(value) if isinstance(value, str) else value
        return [(int(k), str(w)) for k, w in items if int(k) >= 1 and str(w)]
    except (TypeError, ValueError):
        return []


def world_reports(
    steps: np.ndarray,
    losses: np.ndarray,
    metric: str,
    config: dict[str, Any],
    checkpoint_name: Any,
) -> Iterator[dict[str, Any]]:
    """What a trial of a simulated or replay world reports for ``(steps, losses)``: one result
    per logged step up to ``config["lrlaw_stop_step"]``, each listing the checkpoints saved so
    far at ``config[SAVE_KEY]`` (named by ``checkpoint_name(k)``)."""
    stop = config.get("lrlaw_stop_step")
    saves = sorted(int(k) for k in config.get(SAVE_KEY, ()))
    for s, loss in zip(steps.tolist(), losses.tolist()):
        result: dict[str, Any] = {"step": int(s), metric: float(loss)}
        saved = [(k, checkpoint_name(k)) for k in saves if k <= s + 1]
        if saved:
            result[CHECKPOINTS_KEY] = encode_checkpoints(saved)
        yield result
        if stop is not None and s >= stop:
            break
