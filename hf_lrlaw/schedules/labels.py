"""Short one-line labels of schedules for tables, legends and reports, e.g.
``wsd lr=0.0003 T=24000 W=2160 decay=0.2 linear final=0.1``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_lrlaw.schedules.schedule import Schedule

__all__ = ["family_label", "labels_without_common", "schedule_label", "truncate"]

_ABBREV = {
    "peak_lr": "lr",
    "total_steps": "T",
    "warmup_steps": "W",
    "warmup_shape": "warmup",
    "warmup_start_ratio": "w0",
    "decay_fraction": "decay",
    "decay_shape": "",
    "final_ratio": "final",
    "milestones": "at",
    "factor": "x",
    "switch_fraction": "switch",
    "second_ratio": "then",
    "timescale": "tau",
    "cycles": "cycles",
    "min_ratio": "min",
    "rewarmup_steps": "rewarm",
    "name": "",
    "knots": "knots",
}
_COMMON_DEFAULTS = {"warmup_shape": "linear", "warmup_start_ratio": 0.0}


def _num(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_num(v) for v in value) + "]"
    return str(value)


def _fields(s: Schedule) -> list[tuple[str, str]]:
    """``(key, text)`` pairs that describe a schedule compactly, in canonical order."""
    if s.kind == "free_form":
        name = s.param("name")
        return [("name", str(name) if name else f"{s.total_steps} steps")]
    out = [
        ("peak_lr", _num(s.peak_lr)),
        ("total_steps", _num(s.total_steps)),
        ("warmup_steps", _num(s.warmup_steps)),
    ]
    for key, default in _COMMON_DEFAULTS.items():
        value = getattr(s, key)
        if value != default:
            out.append((key, _num(value)))
    if s.kind == "piecewise":  # dozens of knots: their number and the last ratio say enough
        ratios = s.param("ratios")
        return [*out, ("knots", str(len(ratios))), ("final_ratio", _num(ratios[-1]))]
    for key, value in s.param_items:
        if value is not None:
            out.append((key, _num(value)))
    return out


def _join(kind: str, fields: Sequence[tuple[str, str]], width: int) -> str:
    parts = [
        text if not _ABBREV.get(key, key) else f"{_ABBREV.get(key, key)}={text}"
        for key, text in fields
    ]
    return truncate(" ".join([kind, *parts]), width)


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= width else text[: max(1, width - 1)] + "\u2026"


def schedule_label(item: Schedule | str, width: int = 60) -> str:
    """A short one-line label of a schedule (or of its text), e.g.
    ``wsd lr=0.0003 T=24000 W=2160 decay=0.2 linear final=0.1``, cut at ``width`` characters."""
    if isinstance(item, str):
        try:
            item = Schedule.parse(item)
        except ValueError:
            return truncate(" ".join(item.split()), width)
    if not isinstance(item, Schedule):
        return truncate(str(item), width)
    return _join(item.kind, _fields(item), width)


def labels_without_common(schedules: Sequence[Schedule], width: int) -> tuple[list[str], str]:
    """Labels with the fields every schedule shares left out, and those shared fields as text."""
    fields = [_fields(s) for s in schedules]
    if len(schedules) < 2:
        return [_join(s.kind, f, width) for s, f in zip(schedules, fields)], ""
    shared = set(fields[0]).intersection(*map(set, fields[1:]))
    shared_keys = {k for k, _ in shared if k in ("peak_lr", "total_steps", "warmup_steps")}
    shared_keys |= {k for k, _ in shared if k in _COMMON_DEFAULTS}
    labels = [
        _join(s.kind, [(k, t) for k, t in f if k not in shared_keys], width)
        for s, f in zip(schedules, fields)
    ]
    common = [(k, t) for k, t in fields[0] if k in shared_keys]
    return labels, " ".join(f"{_ABBREV.get(k, k)}={t}" for k, t in common)


def family_label(item: Schedule, width: int = 60) -> str:
    """The label of a schedule's family: its shape without the peak LR and horizon, e.g.
    ``wsd W=300 decay=0.2 linear`` (for the optimal-peak-LR figures)."""
    fields = [(k, t) for k, t in _fields(item) if k not in ("peak_lr", "total_steps")]
    return _join(item.kind, fields, width)
