"""Tidy CSV files of loss curves: ``curve_id,step,lr,loss`` (plain or gzip-compressed)."""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hf_lrlaw.curves.curve import CurveError, LossCurve
from hf_lrlaw.curves.lr_arrays import check_lrs, interpolate, schedule_lrs
from hf_lrlaw.files import read_text, write_atomic
from hf_lrlaw.limits import check_run_steps

__all__ = ["read_csv", "write_csv"]


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
    text = read_text(path, CurveError)
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
        check_run_steps(step + 1, f"{where}, column step: step {step}", CurveError)
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
    write_atomic(path, data)


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
        lrs = schedule_lrs(schedule, cid, label)
        check_lrs(lrs, lr_steps, lr_values, label)
    elif len(lr_steps) == needed:  # strictly increasing and ending at needed - 1: every step
        lrs = lr_values
    elif not len(lr_steps):
        raise CurveError(
            f"{label}: no learning rate is given; fill the lr column or pass schedule="
        )
    else:
        lrs = interpolate(lr_steps, lr_values, needed, method)
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


def _file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name
