"""The loss curve in a transformers ``trainer_state.json`` (the Trainer's ``log_history``)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hf_lrlaw.curves.curve import CurveError, LossCurve
from hf_lrlaw.curves.lr_arrays import check_lrs, interpolate, schedule_lrs
from hf_lrlaw.files import read_json
from hf_lrlaw.limits import check_run_steps

__all__ = ["curve_from_trainer_state", "read_trainer_state"]

_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def read_trainer_state(
    path_or_dir: str | os.PathLike[str],
    metric: str = "loss",
    schedule: Any = None,
) -> LossCurve:
    """The loss curve in a transformers ``trainer_state.json``.

    ``path_or_dir`` is the file, a checkpoint folder holding it, or a Trainer ``output_dir``
    (its own ``trainer_state.json``, else the one of its newest ``checkpoint-N`` folder).

    Step mapping (transformers 5.x; ``g`` = the logged ``step`` = updates done so far):

    * the logged ``learning_rate`` at ``g`` is the LR of update ``g`` (read before
      ``lr_scheduler.step()``), i.e. ``lrs[g - 1]``;
    * an eval metric (``metric="eval_loss"``, or any key other than ``"loss"``) logged at ``g``
      was measured after ``g`` updates: step ``g - 1``, a point value (window 1). A value logged
      at ``g = 0`` (``eval_on_start``) belongs to the untrained model and is dropped;
    * the train ``loss`` logged at ``g`` is the mean of the losses of updates ``p + 1 .. g``
      (``p`` = the previous train log, 0 at the start), and the loss of update ``k`` is computed
      *before* that update, on the model after ``k - 1`` updates (step ``k - 2``). So the point
      goes to step ``g - 2`` with window ``w = g - p``: steps ``g - w - 1 .. g - 2``. The first
      train log averages the untrained model's loss too (its window would start at step -1): it
      is dropped.

    Per-step LRs: without ``schedule``, the logged LRs at ``lrs[g - 1]`` linearly interpolated,
    the first logged LR held constant before it (a warmup before the first log is unknown:
    pass ``schedule=``) and the array ending at the last logged or observed step. With
    ``schedule`` (a ``Schedule``, its text, or per-step LRs), its whole array (normally
    ``max_steps`` long); a warning is issued where it disagrees with the logged LRs.

    Raises:
        CurveError: the file is not a trainer state, or has no ``metric`` or no LR.
    """
    path = _find_trainer_state(Path(path_or_dir))
    return curve_from_trainer_state(read_json(path, CurveError), path, metric, schedule)


def curve_from_trainer_state(state: Any, path: Path, metric: str, schedule: Any) -> LossCurve:
    history = state.get("log_history") if isinstance(state, Mapping) else None
    if not isinstance(history, list):
        raise CurveError(f"{path}: not a transformers trainer state (no 'log_history' list)")
    lr_at: dict[int, float] = {}
    points: dict[int, tuple[float, int]] = {}  # step -> (value, window)
    seen_metric = False
    keys: set[str] = set()
    previous_log = 0  # the step of the previous train-loss log
    last_g = -1
    for i, entry in enumerate(history):
        where = f"{path}: log_history[{i}]"
        if not isinstance(entry, Mapping):
            raise CurveError(f"{where} is not an object")
        g = entry.get("step")
        if isinstance(g, bool) or not isinstance(g, int) or g < 0:
            raise CurveError(f"{where}: 'step' must be a whole number >= 0, not {g!r}")
        check_run_steps(g, f"{where}: step {g}", CurveError)
        if g < last_g:
            raise CurveError(
                f"{where}: step {g} comes after step {last_g}; the log must be in order"
            )
        last_g = g
        keys.update(entry)
        if "learning_rate" in entry and g >= 1:
            lr_at[g - 1] = _json_number(entry["learning_rate"], where, "learning_rate")
        if metric not in entry:
            continue
        seen_metric = True
        value = _json_number(entry[metric], where, metric)
        if metric == "loss":
            window, previous_log = g - previous_log, g
            if window >= 1 and g - window - 1 >= 0:  # the first log includes the untrained model
                points[g - 2] = (value, window)
        elif g >= 1:
            points[g - 1] = (value, 1)  # a repeated evaluation at one step: the last one wins
    if not seen_metric:
        shown = sorted(k for k in keys if k not in ("step", "epoch"))
        raise CurveError(f"{path}: no {metric!r} in log_history; it logs {shown}")

    name = _run_name(path)
    label = f"{path}: curve {name!r}"
    steps = np.array(sorted(points), dtype=np.int64)
    losses = np.array([points[s][0] for s in steps.tolist()], dtype=np.float64)
    windows = (
        np.array([points[s][1] for s in steps.tolist()], dtype=np.int64)
        if metric == "loss"
        else None
    )
    lr_steps = np.array(sorted(lr_at), dtype=np.int64)
    lr_values = np.array([lr_at[s] for s in lr_steps.tolist()], dtype=np.float64)
    if schedule is not None:
        lrs = schedule_lrs(schedule, name, label)
        check_lrs(lrs, lr_steps, lr_values, label)
        max_steps = state.get("max_steps")
        if isinstance(max_steps, int) and max_steps > 0 and len(lrs) != max_steps:
            warnings.warn(
                f"{label}: the schedule has {len(lrs)} steps but the run's max_steps is {max_steps}",
                stacklevel=3,
            )
    elif not len(lr_steps):
        raise CurveError(f"{path}: log_history has no 'learning_rate'; pass schedule=")
    else:
        needed = max(int(lr_steps[-1]), int(steps[-1]) if len(steps) else -1) + 1
        lrs = interpolate(lr_steps, lr_values, needed, "linear")

    meta: dict[str, Any] = {"source": str(path), "metric": metric}
    for key in ("global_step", "max_steps", "logging_steps", "eval_steps", "train_batch_size"):
        if key in state:
            meta[key] = state[key]
    try:
        return LossCurve(lrs=lrs, steps=steps, losses=losses, name=name, windows=windows, meta=meta)
    except CurveError as exc:
        raise CurveError(f"{path}: {exc}") from None


def _json_number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CurveError(f"{where}: {key!r} must be a number, not {value!r}")
    return float(value)


def _find_trainer_state(path: Path) -> Path:
    if not path.is_dir():
        return path
    direct = path / "trainer_state.json"
    if direct.is_file():
        return direct
    checkpoints = [
        (int(match.group(1)), child)
        for child in path.iterdir()
        if (match := _CHECKPOINT.match(child.name)) and (child / "trainer_state.json").is_file()
    ]
    if not checkpoints:
        raise CurveError(f"{path}: no trainer_state.json here or in a checkpoint-N folder")
    return max(checkpoints)[1] / "trainer_state.json"


def _run_name(state_file: Path) -> str:
    folder = state_file.resolve().parent
    if _CHECKPOINT.match(folder.name):
        return f"{folder.parent.name}/{folder.name}"
    return folder.name
