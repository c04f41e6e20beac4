"""Load every curve in a file or folder, whatever its format."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_lrlaw.curves.csv_files import read_csv
from hf_lrlaw.curves.curve import CurveError, LossCurve
from hf_lrlaw.curves.trainer_state import curve_from_trainer_state, read_trainer_state
from hf_lrlaw.files import read_json

__all__ = ["load"]


def load(path: str | os.PathLike[str], metric: str | None = None) -> list[LossCurve]:
    """Load every curve in a file or folder, whatever its format.

    * ``.csv`` / ``.csv.gz``: :func:`read_csv`;
    * a folder, or a ``.json`` with a ``log_history`` (``trainer_state.json``):
      :func:`read_trainer_state` of ``metric`` (default: the train ``loss``; e.g.
      ``"eval_loss"``);
    * another ``.json`` (or ``.json.gz``): ``{"curves": [...]}`` (e.g. the callback's
      ``record.json``, any ``schema``), a list of curves, or one curve, each in the
      :meth:`LossCurve.to_dict` format.

    ``metric`` chooses among the losses of a trainer state; the other formats hold one loss
    per point, and a ``metric`` other than ``"loss"`` for them is refused.
    """
    path = Path(path)
    if path.is_dir():
        return [read_trainer_state(path, metric or "loss")]
    lower = path.name.lower()
    if lower.endswith((".csv", ".csv.gz")):
        _one_loss(path, metric, "a CSV file")
        return read_csv(path)
    if lower.endswith((".json", ".json.gz")):
        data = read_json(path, CurveError)
        if isinstance(data, Mapping) and "log_history" in data:
            return [curve_from_trainer_state(data, path, metric or "loss", None)]
        _one_loss(path, metric, "a JSON of curve records")
        return _curves_from_json(data, path)
    raise CurveError(
        f"{path}: unknown kind of file; expected .csv, .csv.gz, .json (curves or a "
        "trainer_state.json) or a Trainer output/checkpoint folder"
    )


def _one_loss(path: Path, metric: str | None, kind: str) -> None:
    if metric not in (None, "loss"):
        raise CurveError(
            f"{path}: metric={metric!r} chooses a loss of a trainer_state.json; {kind} holds "
            "one loss per point"
        )


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
