"""LossCurve: the per-step learning rates of a run and its observed (step, loss) points.

Step convention (as in the multi-power-law data): ``lrs[i]`` is the learning rate of the
optimizer update with index ``i`` (0-based), and the loss observed at step ``s`` depends on
``lrs[:s + 1]``, i.e. it is the loss after updates ``0..s``. The laws therefore use
``cumsum(lrs)[s]`` as the area under the LR curve at step ``s``.

A loss may be a window mean rather than a point value (the transformers Trainer logs the mean
train loss since the previous log): ``windows[j]`` is the number of consecutive steps ending at
``steps[j]`` that ``losses[j]`` averages (1 for a point value such as an eval loss).

Loaders: :func:`read_csv` / :func:`write_csv` (tidy ``curve_id,step,lr,loss``),
:func:`read_trainer_state` (a transformers ``trainer_state.json``) and :func:`load` (any of
these, or a JSON of :meth:`LossCurve.to_dict` records). Bundled public curves:
:mod:`hf_lrlaw.datasets`.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LossCurve", "CurveError", "read_csv", "write_csv", "read_trainer_state", "load"]


class CurveError(ValueError):
    """A loss curve or its file cannot be used; the message names the problem."""


@dataclass(frozen=True, eq=False)
class LossCurve:
    """Per-step learning rates from step 0 and the observed losses at some steps.

    Args:
        lrs: learning rate of every optimizer update from index 0; at least ``steps[-1] + 1`` long
            (longer is fine: the rest is the planned schedule, not yet observed).
        steps: strictly increasing step indices at which a loss was observed.
        losses: the observed losses; non-finite or non-positive values are dropped with a warning.
        name: a label for tables and plots.
        windows: optional number of steps each loss averages (ending at its step); 1 = point value.
        meta: free-form facts about the run (model size, data set, schedule text, ...).
    """

    lrs: np.ndarray
    steps: np.ndarray
    losses: np.ndarray
    name: str = ""
    windows: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        label = f"curve {self.name!r}" if self.name else "curve"
        lrs = _float_array(self.lrs, f"{label}: lrs")
        steps_raw = np.asarray(self.steps)
        losses = _float_array(self.losses, f"{label}: losses", allow_nonfinite=True)
        if steps_raw.ndim != 1 or losses.ndim != 1 or lrs.ndim != 1:
            raise CurveError(f"{label}: lrs, steps and losses must be one-dimensional")
        if len(steps_raw) != len(losses):
            raise CurveError(
                f"{label}: {len(steps_raw)} steps but {len(losses)} losses; they must pair up"
            )
        if len(steps_raw) and not np.all(np.isfinite(steps_raw.astype(float))):
            raise CurveError(f"{label}: steps must be finite integers")
        steps = steps_raw.astype(np.int64)
        if len(steps) and np.any(steps != steps_raw):
            raise CurveError(f"{label}: steps must be whole numbers")
        windows = None
        if self.windows is not None:
            windows = np.asarray(self.windows, dtype=np.int64)
            if windows.shape != steps.shape:
                raise CurveError(f"{label}: windows must have one entry per step")
            if np.any(windows < 1):
                raise CurveError(f"{label}: windows must be >= 1 (the steps a loss averages)")
            if len(steps) and np.any(steps - windows + 1 < 0):
                raise CurveError(f"{label}: a window reaches before step 0")

        if len(steps) and np.any(steps < 0):
            raise CurveError(f"{label}: steps must be >= 0 (step 0 is the first update)")
        if len(steps) > 1 and np.any(np.diff(steps) <= 0):
            bad = int(np.argmax(np.diff(steps) <= 0))
            kind = "duplicate" if steps[bad + 1] == steps[bad] else "unsorted"
            raise CurveError(
                f"{label}: {kind} steps at positions {bad}/{bad + 1} "
                f"({steps[bad]}, {steps[bad + 1]}); steps must be strictly increasing"
            )
        if np.any(~np.isfinite(lrs)):
            raise CurveError(f"{label}: the learning rates contain NaN or inf")
        if np.any(lrs < 0):
            raise CurveError(f"{label}: negative learning rate at step {int(np.argmax(lrs < 0))}")
        if len(steps) and steps[-1] >= len(lrs):
            raise CurveError(
                f"{label}: a loss is observed at step {int(steps[-1])} but the LR is known only "
                f"for steps 0..{len(lrs) - 1}; give the per-step LR up to the last observed step"
            )
        if len(lrs) and not np.any(lrs > 0):
            raise CurveError(f"{label}: every learning rate is zero; the laws need some training")

        bad = ~np.isfinite(losses) | (losses <= 0)
        if np.any(bad):
            warnings.warn(
                f"{label}: dropped {int(bad.sum())} non-finite or non-positive loss(es) "
                f"at step(s) {steps[bad][:5].tolist()}{'...' if bad.sum() > 5 else ''}",
                stacklevel=3,
            )
            steps, losses = steps[~bad], losses[~bad]
            windows = None if windows is None else windows[~bad]

        lrs.setflags(write=False)
        steps.setflags(write=False)
        losses.setflags(write=False)
        if windows is not None:
            windows.setflags(write=False)
        object.__setattr__(self, "lrs", lrs)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "windows", windows)
        object.__setattr__(self, "meta", dict(self.meta))

    # -- views ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        span = f"steps {self.steps[0]}..{self.steps[-1]}" if len(self) else "no points"
        return f"LossCurve(name={self.name!r}, {len(self)} points, {span}, {len(self.lrs)} LRs)"

    @property
    def last_step(self) -> int:
        """The last observed step (-1 when nothing is observed yet)."""
        return int(self.steps[-1]) if len(self) else -1

    @property
    def final_loss(self) -> float:
        """The loss at the last observed step."""
        if not len(self):
            raise CurveError(f"curve {self.name!r} has no observed loss")
        return float(self.losses[-1])

    @property
    def point_windows(self) -> np.ndarray:
        """Window lengths, 1 where the losses are point values."""
        return self.windows if self.windows is not None else np.ones(len(self), dtype=np.int64)

    def observed_lrs(self) -> np.ndarray:
        """The LRs of the steps up to the last observed one (what the data can tell about)."""
        return self.lrs[: self.last_step + 1]

    def head(self, until: int | float) -> LossCurve:
        """The curve as it was at step ``until`` (int) or at that fraction of its LR array (float).

        The LR array is kept whole: it is the schedule the run will follow, which the callback
        knows in advance; only the observed points are cut.
        """
        if isinstance(until, float):
            if not 0 < until <= 1:
                raise CurveError("a fraction for head() must be in (0, 1]")
            until = int(round(until * len(self.lrs))) - 1
        return self._points(self.steps <= until)

    def tail(self, since: int) -> LossCurve:
        """The curve without its points before step ``since``; the LR array is kept whole.

        For leaving out the initial transient (e.g. a small model's plateau before it learns
        more than unigram statistics), which no annealing law describes.
        """
        keep = self.steps >= int(since)
        if not np.any(keep):
            raise CurveError(
                f"curve {self.name!r} has no points at step {int(since)} or later "
                f"(its last is at step {self.last_step})"
            )
        return self._points(keep)

    def _points(self, keep: np.ndarray) -> LossCurve:
        """The curve with only the observed points where ``keep`` is true."""
        return self.replace(
            steps=self.steps[keep],
            losses=self.losses[keep],
            windows=None if self.windows is None else self.windows[keep],
        )

    def replace(self, **changes: Any) -> LossCurve:
        """A copy with some fields changed (validated again)."""
        values = {
            "lrs": self.lrs,
            "steps": self.steps,
            "losses": self.losses,
            "name": self.name,
            "windows": self.windows,
            "meta": self.meta,
        }
        values.update(changes)
        return LossCurve(**values)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (LRs stored at every step)."""
        out: dict[str, Any] = {
            "name": self.name,
            "lrs": self.lrs.tolist(),
            "steps": self.steps.tolist(),
            "losses": self.losses.tolist(),
            "meta": dict(self.meta),
        }
        if self.windows is not None:
            out["windows"] = self.windows.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossCurve:
        """Inverse of :meth:`to_dict`."""
        missing = {"lrs", "steps", "losses"} - set(data)
        if missing:
            raise CurveError(f"a loss curve needs the keys lrs, steps, losses; missing {sorted(missing)}")
        return cls(
            lrs=np.asarray(data["lrs"], dtype=np.float64),
            steps=np.asarray(data["steps"]),
            losses=np.asarray(data["losses"], dtype=np.float64),
            name=str(data.get("name", "")),
            windows=None if data.get("windows") is None else np.asarray(data["windows"]),
            meta=dict(data.get("meta") or {}),
        )


def _float_array(values: Any, what: str, allow_nonfinite: bool = False) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CurveError(f"{what} must be numbers ({exc})") from None
    if not allow_nonfinite and arr.size and not np.all(np.isfinite(arr)):
        raise CurveError(f"{what} contain NaN or inf")
    return arr


# =========================================================================================
# Loaders: tidy CSV, transformers trainer_state.json, JSON records of curves
# =========================================================================================

#: A ``schedule=`` whose LRs differ from the logged ones by more than this (relative) warns.
_LR_CHECK_RTOL = 1e-3
_GZIP_MAGIC = b"\x1f\x8b"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def read_csv(
    path: str | os.PathLike[str],
    schedule: Any = None,
    lr_interpolation: str = "linear",
) -> list[LossCurve]:
    """Read loss curves from a tidy CSV file (plain or gzip-compressed).

    The header is ``curve_id,step,lr,loss`` (one curve per ``curve_id``; the rows of a curve in
    increasing step order) or ``step,lr,loss`` (one curve, named after the file). An optional
    ``window`` column gives the number of steps each loss averages (see :class:`LossCurve`);
    other columns are ignored. ``step`` follows :class:`LossCurve`'s convention: the 0-based
    index of the last optimizer update the loss has seen.

    The ``loss`` cell may be empty on rows that only carry an LR and the ``lr`` cell may be empty
    on rows that only carry a loss, so a file can give the LR at every step and the loss at some.
    A curve's per-step LR array is:

    * with ``schedule``, the schedule's per-step LRs, its whole length (a warning is issued where
      the file's LRs differ from them by more than 0.1 %);
    * else the ``lr`` column itself, when it is given at every step from 0 on;
    * else the logged LRs interpolated to every step, ``"linear"`` (straight lines between logged
      steps) or ``"previous"`` (a logged LR holds until the next logged step). Before the first
      logged step the first logged LR is held constant (the file does not know a warmup that
      happened before it: pass ``schedule=`` when that matters); after the last logged step, up
      to the last observed loss, the last logged LR is held.

    Args:
        path: the file; ``.gz`` (or any gzip content) is decompressed.
        schedule: a ``hf_lrlaw.schedules.Schedule``, its text (``Schedule.parse``), an array of
            per-step LRs, or a mapping from curve id to any of these.
        lr_interpolation: ``"linear"`` or ``"previous"``; used when the LR is not at every step
            and no schedule is given.

    Returns:
        The curves in the order their ids first appear; ``meta["source"]`` is the file.

    Raises:
        CurveError: the file is empty or malformed; the message names the file and the row and
            column (or the curve and step) at fault.
    """
    if lr_interpolation not in ("linear", "previous"):
        raise ValueError(
            f"lr_interpolation must be 'linear' or 'previous', not {lr_interpolation!r}"
        )
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise CurveError(f"{path}: empty file; expected a header line 'curve_id,step,lr,loss'")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    names = [cell.strip().lower() for cell in header]
    missing = [c for c in ("step", "lr", "loss") if c not in names]
    if missing:
        raise CurveError(
            f"{path}: the header {','.join(header)!r} lacks the column(s) {', '.join(missing)}; "
            "expected 'curve_id,step,lr,loss' (curve_id optional)"
        )
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise CurveError(f"{path}: the header repeats the column(s) {', '.join(repeated)}")
    col = {name: i for i, name in enumerate(names)}
    i_id, i_win = col.get("curve_id"), col.get("window")
    default_id = _file_stem(path)

    found: dict[str, _CsvCurve] = {}
    for row_no, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}: row {row_no}"
        if len(row) != len(names):
            raise CurveError(f"{where}: {len(row)} fields, but the header has {len(names)}")
        cid = row[i_id].strip() if i_id is not None else default_id
        if not cid:
            raise CurveError(f"{where}, column curve_id: the curve id is empty")
        step = _cell_int(row[col["step"]], where, "step")
        if step is None:
            raise CurveError(f"{where}, column step: the step is empty")
        if step < 0:
            raise CurveError(f"{where}, column step: step {step} < 0 (step 0 is the first update)")
        lr = _cell_float(row[col["lr"]], where, "lr")
        loss = _cell_float(row[col["loss"]], where, "loss")
        window = _cell_int(row[i_win], where, "window") if i_win is not None else None
        if lr is None and loss is None:
            raise CurveError(f"{where}: neither lr nor loss is given")
        if lr is not None and not (np.isfinite(lr) and lr >= 0):
            raise CurveError(f"{where}, column lr: the learning rate {lr} must be finite and >= 0")
        if window is not None and window < 1:
            raise CurveError(f"{where}, column window: a window is >= 1 step, not {window}")
        curve = found.setdefault(cid, _CsvCurve())
        if curve.last_step is not None and step <= curve.last_step:
            what = "repeats" if step == curve.last_step else f"comes after step {curve.last_step}"
            raise CurveError(
                f"{where}: curve {cid!r}: step {step} {what}; "
                "the steps of a curve must be strictly increasing"
            )
        curve.last_step = step
        if lr is not None:
            curve.lr_steps.append(step)
            curve.lr_values.append(lr)
        if loss is not None:
            curve.loss_steps.append(step)
            curve.losses.append(loss)
            curve.windows.append(window)
    if not found:
        raise CurveError(f"{path}: no data rows after the header")
    return [
        _build_csv_curve(path, cid, curve, schedule, lr_interpolation)
        for cid, curve in found.items()
    ]


def write_csv(curves: LossCurve | Iterable[LossCurve], path: str | os.PathLike[str]) -> None:
    """Write curves to a tidy CSV file, gzip-compressed when the name ends with ``.gz``.

    One row per entry of each curve's LR array: ``curve_id,step,lr,loss``, the loss empty where
    none was observed, plus a ``window`` column when any curve has windows. Numbers keep full
    precision, so :func:`read_csv` gives back equal LRs, steps, losses, windows and names
    (``meta`` is not stored: use :meth:`LossCurve.to_dict` and JSON for that; an unnamed curve
    is written as ``curve<i>``). The text goes to a temporary file in the same folder that is
    then renamed over ``path`` (``os.replace``), so a failure never leaves a half-written file.
    """
    path = Path(path)
    items = [curves] if isinstance(curves, LossCurve) else list(curves)
    if not items:
        raise CurveError(f"{path}: no curves to write")
    for i, curve in enumerate(items):
        if not isinstance(curve, LossCurve):
            raise TypeError(f"write_csv: item {i} is a {type(curve).__name__}, not a LossCurve")
    names = [curve.name or f"curve{i}" for i, curve in enumerate(items)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CurveError(f"{path}: two curves are named {name!r}; ids must be unique in a file")
        seen.add(name)
    with_windows = any(curve.windows is not None for curve in items)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["curve_id", "step", "lr", "loss"] + (["window"] if with_windows else []))
    for name, curve in zip(names, items):
        n = len(curve.lrs)
        lrs = [repr(x) for x in curve.lrs.tolist()]
        losses = [""] * n
        for step, loss in zip(curve.steps.tolist(), curve.losses.tolist()):
            losses[step] = repr(loss)
        columns: list[Iterable[Any]] = [[name] * n, range(n), lrs, losses]
        if with_windows:
            windows = [""] * n
            if curve.windows is not None:
                for step, window in zip(curve.steps.tolist(), curve.windows.tolist()):
                    windows[step] = str(window)
            columns.append(windows)
        writer.writerows(zip(*columns))
    data = buffer.getvalue().encode("utf-8")
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    _atomic_write(path, data)


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
    return _curve_from_trainer_state(_read_json(path), path, metric, schedule)


def load(path: str | os.PathLike[str]) -> list[LossCurve]:
    """Load every curve in a file or folder, whatever its format.

    * ``.csv`` / ``.csv.gz``: :func:`read_csv`;
    * a folder, or a ``.json`` with a ``log_history`` (``trainer_state.json``):
      :func:`read_trainer_state` (train loss);
    * another ``.json`` (or ``.json.gz``): ``{"curves": [...]}`` (e.g. the callback's
      ``record.json``, any ``schema``), a list of curves, or one curve, each in the
      :meth:`LossCurve.to_dict` format.
    """
    path = Path(path)
    if path.is_dir():
        return [read_trainer_state(path)]
    lower = path.name.lower()
    if lower.endswith((".csv", ".csv.gz")):
        return read_csv(path)
    if lower.endswith((".json", ".json.gz")):
        data = _read_json(path)
        if isinstance(data, Mapping) and "log_history" in data:
            return [_curve_from_trainer_state(data, path, "loss", None)]
        return _curves_from_json(data, path)
    raise CurveError(
        f"{path}: unknown kind of file; expected .csv, .csv.gz, .json (curves or a "
        "trainer_state.json) or a Trainer output/checkpoint folder"
    )


# -- helpers ---------------------------------------------------------------------------------
@dataclass
class _CsvCurve:
    last_step: int | None = None
    lr_steps: list[int] = field(default_factory=list)
    lr_values: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    windows: list[int | None] = field(default_factory=list)


def _build_csv_curve(
    path: Path, cid: str, found: _CsvCurve, schedule: Any, method: str
) -> LossCurve:
    label = f"{path}: curve {cid!r}"
    lr_steps = np.asarray(found.lr_steps, dtype=np.int64)
    lr_values = np.asarray(found.lr_values, dtype=np.float64)
    loss_steps = np.asarray(found.loss_steps, dtype=np.int64)
    needed = int(found.last_step) + 1  # the last row's step: the largest of the curve
    if schedule is not None:
        lrs = _schedule_lrs(schedule, cid, label)
        _check_lrs(lrs, lr_steps, lr_values, label)
    elif len(lr_steps) == needed:  # strictly increasing and ending at needed - 1: every step
        lrs = lr_values
    elif not len(lr_steps):
        raise CurveError(
            f"{label}: no learning rate is given; fill the lr column or pass schedule="
        )
    else:
        lrs = _interpolate(lr_steps, lr_values, needed, method)
    windows = None
    if any(w is not None for w in found.windows):
        windows = np.array([1 if w is None else w for w in found.windows], dtype=np.int64)
    try:
        return LossCurve(
            lrs=lrs,
            steps=loss_steps,
            losses=np.asarray(found.losses, dtype=np.float64),
            name=cid,
            windows=windows,
            meta={"source": str(path)},
        )
    except CurveError as exc:
        raise CurveError(f"{path}: {exc}") from None


def _curve_from_trainer_state(state: Any, path: Path, metric: str, schedule: Any) -> LossCurve:
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
        lrs = _schedule_lrs(schedule, name, label)
        _check_lrs(lrs, lr_steps, lr_values, label)
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
        lrs = _interpolate(lr_steps, lr_values, needed, "linear")

    meta: dict[str, Any] = {"source": str(path), "metric": metric}
    for key in ("global_step", "max_steps", "logging_steps", "eval_steps", "train_batch_size"):
        if key in state:
            meta[key] = state[key]
    try:
        return LossCurve(lrs=lrs, steps=steps, losses=losses, name=name, windows=windows, meta=meta)
    except CurveError as exc:
        raise CurveError(f"{path}: {exc}") from None


def _curves_from_json(data: Any, path: Path) -> list[LossCurve]:
    if isinstance(data, Mapping) and "curves" in data:
        items = data["curves"]
        if not isinstance(items, list):
            raise CurveError(f"{path}: 'curves' must be a list of curves")
    elif isinstance(data, Mapping) and "lrs" in data:
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise CurveError(
            f"{path}: expected {{'curves': [...]}}, a list of curves or one curve "
            "(keys lrs, steps, losses)"
        )
    curves = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise CurveError(f"{path}: curves[{i}] is not an object")
        try:
            curves.append(LossCurve.from_dict(item))
        except CurveError as exc:
            raise CurveError(f"{path}: curves[{i}]: {exc}") from None
    return curves


def _schedule_lrs(schedule: Any, cid: str, label: str) -> np.ndarray:
    """Per-step LRs from a Schedule, its text, an array, or a mapping curve id -> those."""
    if isinstance(schedule, Mapping):
        if cid not in schedule:
            raise CurveError(f"{label}: schedule= has no entry for this curve")
        schedule = schedule[cid]
    if isinstance(schedule, str):
        try:
            from hf_lrlaw.schedules import Schedule  # lazy: schedules is optional here
        except ImportError as exc:
            raise CurveError(
                f"{label}: a schedule given as text needs hf_lrlaw.schedules ({exc})"
            ) from None
        try:
            schedule = Schedule.parse(schedule)
        except ValueError as exc:
            raise CurveError(f"{label}: cannot read the schedule {schedule!r}: {exc}") from None
    method = getattr(schedule, "lrs", None)
    values = method() if callable(method) else schedule
    try:
        lrs = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CurveError(
            f"{label}: schedule= must be a Schedule, its text or per-step LRs, "
            f"not {type(schedule).__name__}"
        ) from None
    if lrs.ndim != 1 or not len(lrs):
        raise CurveError(f"{label}: the schedule gives no per-step learning rates")
    return lrs


def _check_lrs(lrs: np.ndarray, steps: np.ndarray, values: np.ndarray, label: str) -> None:
    """Warn where a schedule's per-step LRs disagree with logged ones."""
    inside = steps < len(lrs)
    if not np.all(inside):
        warnings.warn(
            f"{label}: LRs are logged up to step {int(steps[-1])}, past the schedule's "
            f"{len(lrs)} steps",
            stacklevel=4,
        )
    steps, values = steps[inside], values[inside]
    if not len(steps):
        return
    mine = lrs[steps]
    scale = np.maximum(np.abs(mine), np.abs(values))
    deviation = np.divide(np.abs(mine - values), scale, out=np.zeros_like(scale), where=scale > 0)
    worst = int(np.argmax(deviation))
    if deviation[worst] > _LR_CHECK_RTOL:
        warnings.warn(
            f"{label}: the schedule's LR at step {int(steps[worst])} is {mine[worst]:.6g}, the "
            f"logged one {values[worst]:.6g} ({deviation[worst]:.1%} apart); is it the run's "
            "schedule, and are its steps aligned?",
            stacklevel=4,
        )


def _interpolate(steps: np.ndarray, values: np.ndarray, length: int, method: str) -> np.ndarray:
    """LR at every step 0..length-1 from logged (step, LR); held constant outside the logs."""
    grid = np.arange(length)
    if method == "linear":
        return np.interp(grid, steps, values)
    index = np.searchsorted(steps, grid, side="right") - 1
    return values[np.clip(index, 0, None)]


def _cell_float(text: str, where: str, column: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise CurveError(f"{where}, column {column}: {text!r} is not a number") from None


def _cell_int(text: str, where: str, column: str) -> int | None:
    value = _cell_float(text, where, column)
    if value is None:
        return None
    if not np.isfinite(value) or value != int(value):
        raise CurveError(f"{where}, column {column}: {text.strip()!r} is not a whole number")
    return int(value)


def _json_number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CurveError(f"{where}: {key!r} must be a number, not {value!r}")
    return float(value)


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise CurveError(f"{path}: is a folder, not a file")
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise CurveError(f"{path}: broken gzip data ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CurveError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    if not text.strip():
        raise CurveError(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CurveError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


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


def _file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    folder = path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _file_mode(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
