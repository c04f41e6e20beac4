"""What the ``lrlaw`` commands read: curve arguments (files, folders, ``dataset:`` specs), schedule
text, saved fits, priors and the small option values, each checked with a one-line message."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_lrlaw.curves import LossCurve, load
from hf_lrlaw.files import read_json, read_text
from hf_lrlaw.fit_result import SCHEMA as FIT_SCHEMA
from hf_lrlaw.fit_result import Fit, FitError, fit_data

__all__ = ["UsageError", "load_curves", "parse_curve_spec", "parse_size"]


class UsageError(ValueError):
    """Bad command-line input; ``main`` prints its message as one ``lrlaw: error:`` line."""


def scalar(text: str) -> Any:
    """A command-line value: int, float, true/false/none, else the text itself."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    try:
        value = float(t)
    except ValueError:
        return t
    return value if math.isfinite(value) else t


def parse_curve_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``dataset:NAME[:k=v,...]`` -> ``(NAME, {key: value or [values]})``."""
    body = spec[len("dataset:") :]
    name, _, rest = body.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"{spec!r}: expected dataset:NAME[:key=value,...]")
    filters: dict[str, Any] = {}
    key = None
    for token in (t.strip() for t in rest.split(",")):
        if not token:
            continue
        if "=" in token:
            key, _, value = token.partition("=")
            key = key.strip()
            if not key:
                raise UsageError(f"{spec!r}: a filter '=value' without a key")
            if key in filters:
                raise UsageError(f"{spec!r}: the key {key!r} is given twice")
            filters[key] = scalar(value)
        elif key is None:
            raise UsageError(f"{spec!r}: {token!r} is not key=value")
        else:
            current = filters[key]
            filters[key] = [*(current if isinstance(current, list) else [current]), scalar(token)]
    return name, filters


def load_dataset(spec: str) -> list[LossCurve]:
    from hf_lrlaw import datasets

    name, filters = parse_curve_spec(spec)
    if name not in datasets.available():
        raise UsageError(
            f"{spec!r}: no bundled data set {name!r}; available: {', '.join(datasets.available())}"
        )
    kind = filters.pop("kind", None)
    split = filters.pop("split", None)
    where = None
    if split is not None:
        if name != "multipowerlaw" or split not in ("train", "test"):
            raise UsageError(
                f"{spec!r}: split is train or test, for multipowerlaw only "
                f"(got {split!r} for {name})"
            )
        train = {c.meta["schedule"] for c in datasets.multipowerlaw_split("25M")[0]}
        where = (
            (lambda m: m["schedule"] in train)
            if split == "train"
            else (lambda m: m["schedule"] not in train)
        )
    try:
        curves = datasets.load(name, kind=kind, where=where, **filters)
    except ValueError as exc:
        raise UsageError(f"{spec!r}: {exc}") from None
    if not curves:
        raise UsageError(f"{spec!r}: no curve of {name} matches these filters")
    return curves


def load_curves(specs: Sequence[str], metric: str | None = None) -> list[LossCurve]:
    """The curves of every CURVES argument, in order (files, folders, ``dataset:`` specs);
    ``metric`` chooses the loss of trainer states (``--metric``)."""
    out: list[LossCurve] = []
    for spec in specs:
        if spec.startswith("dataset:"):
            if metric not in (None, "loss"):
                raise UsageError(
                    f"{spec}: --metric chooses a loss of a trainer_state.json; for a bundled "
                    "data set use kind=val or kind=train"
                )
            out += load_dataset(spec)
            continue
        path = Path(spec)
        if not path.exists():
            raise UsageError(f"{spec}: no such file or folder")
        curves = load(path, metric)
        if not curves:
            raise UsageError(f"{spec}: holds no loss curve")
        out += curves
    return out


def read_lines(path: str) -> list[str]:
    """Non-blank lines of a text file, without ``#`` comments ('-' is stdin)."""
    if path == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"{path}: no such file")
        text = read_text(p, UsageError)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


NO_RUN_DEFAULTS = (
    "; give it in the text (a fit supplies peak_lr, total_steps and warmup_steps only when "
    "its curves share them)"
)


def load_fit(path: str) -> Fit:
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such file")
    return Fit.load(path)


def is_fit_file(path: str) -> bool:
    """Whether ``path`` is a saved Fit (JSON with the fit schema, or a record embedding one)."""
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() == ".json"):
        return False
    try:
        return fit_data(read_json(p), p).get("schema") == FIT_SCHEMA
    except (FitError, ValueError):
        return False


def min_step(value: str) -> int:
    """--min-step: a whole number of steps >= 0."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of steps") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 0")
    return n


def law_options_from(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--option {item!r}: expected name=value, e.g. lam=0.999")
        out[key.strip()] = scalar(value)
    return out


def until_from(text: str | None) -> int | float | None:
    """--until: a step (integer) or a fraction of each curve's LR array (a number in (0, 1])."""
    if text is None:
        return None
    value = scalar(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"--until {text!r}: expected a step (e.g. 12000) or a fraction (0.5)")
    if isinstance(value, float) and not 0 < value <= 1:
        raise UsageError(f"--until {text!r}: a fraction must be in (0, 1]")
    if isinstance(value, int) and value < 0:
        raise UsageError(f"--until {text!r}: a step must be >= 0")
    return value


def steps_from(text: str | None, what: str = "--steps", minimum: int = 0) -> list[int] | None:
    """Comma-separated step counts (``5e4`` allowed where it is a whole number), each >=
    ``minimum``; None when the option was not given."""
    if text is None:
        return None
    steps = []
    for token in (t for t in text.replace(" ", "").split(",") if t):
        try:
            value = float(token)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value != int(value):
            raise UsageError(f"{what} {text!r}: expected whole numbers separated by commas")
        if value < minimum:
            raise UsageError(f"{what} {text!r}: {token} is below {minimum}")
        steps.append(int(value))
    if not steps:
        raise UsageError(f"{what}: no step given")
    return steps


def level(value: str) -> float:
    try:
        level = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < level < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be in (0, 1), e.g. 0.9")
    return level


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 1")
    return n


# -- the --space grammar ---------------------------------------------------------------------------


def check_out(
    path: str | None, suffixes: Sequence[str], what: str, inputs: Sequence[str] = ()
) -> Path | None:
    """Validate an output path early (before any work): its suffix, its folder, and that it is
    none of the command's ``inputs`` (an output never overwrites what the command reads)."""
    if path is None:
        return None
    p = Path(path)
    for spec in inputs:
        if (
            spec
            and not str(spec).startswith("dataset:")
            and spec != "-"
            and _is_input(p, Path(spec))
        ):
            raise UsageError(
                f"{what} {path}: is one of the command's inputs ({spec}); write the output "
                "to another file"
            )
    if suffixes and p.suffix.lower() not in suffixes:
        raise UsageError(f"{what} {path}: the file name must end with {' or '.join(suffixes)}")
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a folder; give a file name")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{what} {path}: cannot write in {parent}")
    return p


def _is_input(out: Path, source: Path) -> bool:
    """Whether writing ``out`` would overwrite ``source`` or the file a folder input is read
    from (its trainer_state.json, or one of its checkpoints')."""
    if not source.exists() or not out.exists():
        return False
    if source.is_dir():
        return out.name == "trainer_state.json" and source.resolve() in out.resolve().parents
    return os.path.samefile(out, source)


def prior_spec(text: str | None) -> str | None:
    """--prior: none, default, default:DATASET, or a prior / Fit / record JSON file."""
    if text is None or text.lower() == "none":
        return None
    if text == "default" or text.startswith("default:"):
        return text
    if not Path(text).is_file():
        raise UsageError(
            f"--prior {text}: no such file (give none, default, default:DATASET, "
            "or a prior, fit or record JSON)"
        )
    return text


_SIZE_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_size(text: str, where: str = "--sizes") -> float:
    """A parameter count: ``360e6``, ``360M``, ``1.3B``, ``125k``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*", text, re.IGNORECASE)
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()] if m else 0.0
    if value <= 0:
        raise UsageError(
            f"{where} {text!r}: expected a positive parameter count, e.g. 125M, 1.3B or 360e6"
        )
    return value


def fractions_from(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        values = []
    if not values or any(not 0 < v < 1 for v in values):
        raise UsageError(
            f"--at {text!r}: expected fractions in (0, 1) separated by commas, e.g. 0.25,0.5"
        )
    return values
