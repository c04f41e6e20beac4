"""The schedules a command is given: ``--schedule TEXT``, ``--schedules FILE`` and the
``--space`` grammar (a grid of schedules per kind, expanded by the core's grid builder,
:func:`hf_lrlaw.schedules.schedule_grid`)."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from hf_lrlaw.cli.inputs import NO_RUN_DEFAULTS, UsageError, read_lines
from hf_lrlaw.schedules import Schedule, ScheduleError, schedule_grid, span
from hf_lrlaw.schedules.grid import INT_PARAMS
from hf_lrlaw.schedules.text import parse_value

__all__ = ["MAX_CANDIDATES", "SPACE_HELP", "parse_schedule_arg", "parse_space", "schedules_from"]

MAX_CANDIDATES = 100_000

SPACE_HELP = """\
SPEC, a grid of schedules (the cartesian product of the values):
  KIND:NAME=VALUES;NAME=VALUES;...  [ | KIND:NAME=VALUES;... ]
(commas may separate the assignments too: "wsd:peak_lr=log(1e-4,3e-3,8),decay_fraction=0.1,0.2")
KIND is a Schedule kind (constant, cosine, linear, wsd, multistep, two_stage, inverse_sqrt,
cyclic); NAME a parameter of Schedule.parse (peak_lr, total_steps, warmup_steps, decay_fraction,
decay_shape, final_ratio, ...); VALUES one or more values separated by commas: numbers, words
(linear, 1-sqrt), lists ([0.8, 0.9]), or ranges lin(LO,HI,N) and log(LO,HI,N) (N values, ends
included; integers for step counts, else rounded to 4 significant digits). ' | ' separates
kinds. Combinations that are not valid schedules are skipped with a warning. At most 100000
candidates. With a fit of one run, peak_lr, total_steps and warmup_steps default to that run's
("wsd:decay_fraction=0.1,0.2,0.3" is enough); over runs of several peak LRs, those the runs share.
--horizon H,H,... puts every candidate at each horizon (steps). Example:
  "wsd:peak_lr=3e-4;total_steps=24000;warmup_steps=2160;decay_fraction=0.1,0.2,0.3;
   decay_shape=linear,1-sqrt;final_ratio=0,0.1 | cosine:peak_lr=log(1e-4,1e-3,5);
   total_steps=24000;warmup_steps=2160;final_ratio=0.1\""""


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets and parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _values(token: str, name: str, where: str) -> list[Any]:
    """One VALUES item -> parameter values (a range gives several)."""
    match = re.fullmatch(r"(lin|log)\s*\((.*)\)", token)
    if match is None:
        try:
            return [parse_value(token, name)]
        except ScheduleError as exc:
            raise UsageError(f"{where}: {exc}") from None
    fn, inner = match.groups()
    args = [a.strip() for a in inner.split(",")]
    if len(args) != 3:
        raise UsageError(f"{where}: {token!r}: a range is {fn}(LO,HI,N)")
    try:
        lo, hi, n = float(args[0]), float(args[1]), int(args[2])
    except ValueError:
        raise UsageError(f"{where}: {token!r}: LO and HI must be numbers, N an integer") from None
    if n < 1 or n > 10_000:
        raise UsageError(f"{where}: {token!r}: N must be in 1..10000")
    if fn == "log" and (lo <= 0 or hi <= 0):
        raise UsageError(f"{where}: {token!r}: log ranges need LO and HI > 0")
    try:
        return list(span(lo, hi, n, log=fn == "log", integer=name in INT_PARAMS))
    except ScheduleError as exc:
        raise UsageError(f"{where}: {token!r}: {exc}") from None


def parse_space(spec: str, defaults: Mapping[str, Any] | None = None) -> list[Schedule]:
    """The schedules of a ``--space`` SPEC (see ``SPACE_HELP``), invalid combinations skipped;
    ``defaults`` as in :meth:`Schedule.parse`."""
    out: list[Schedule] = []
    for part in split_top(spec, "|"):
        part = part.strip()
        if not part:
            raise UsageError(f"--space: an empty kind in {spec!r}")
        kind, colon, body = part.partition(":")
        kind = kind.strip()
        if not re.fullmatch(r"[A-Za-z_][\w\-]*", kind):
            raise UsageError(f"--space: {part!r} does not start with KIND: (e.g. 'wsd:')")
        where = f"--space {kind}"
        grid: dict[str, list[Any]] = {}
        for name, tokens in _assignments(body if colon else "", where):
            if name in grid:
                raise UsageError(f"{where}: the parameter {name} is given twice")
            found: list[Any] = []
            for token in tokens:
                found += _values(token, name, f"{where} {name}")
            grid[name] = list(dict.fromkeys(_hashable(v) for v in found))
        try:
            result = schedule_grid(kind, grid, defaults, max_size=MAX_CANDIDATES)
        except ScheduleError as exc:
            raise UsageError(f"{where}: {exc}") from None
        errors = [reason for _, reason in result.skipped]
        total = len(result.schedules) + len(errors)
        if not result.schedules:
            hint = _hint(errors[0], defaults)
            raise UsageError(f"{where}: no valid schedule in the grid ({errors[0]}{hint})")
        if errors:
            warnings.warn(
                f"--space {kind}: skipped {len(errors)} of {total} combinations that are not "
                f"valid schedules (first: {errors[0]})",
                stacklevel=2,
            )
        out += result.schedules
    return out


def _assignments(body: str, where: str) -> list[tuple[str, list[str]]]:
    """``NAME=V,V;NAME=V`` (or with commas between the assignments too, as in
    ``peak_lr=log(1e-4,3e-3,8),decay_fraction=0.1,0.2``) -> ``[(NAME, [V, ...]), ...]``: a
    token with ``=`` starts the next assignment (values never hold one)."""
    out: list[tuple[str, list[str]]] = []
    for item in split_top(body, ";"):
        if not item.strip():
            continue
        for i, token in enumerate(split_top(item, ",")):
            token = token.strip()
            name, eq, value = token.partition("=")
            if eq:
                if not re.fullmatch(r"[A-Za-z_]\w*", name.strip()):
                    raise UsageError(f"{where}: {token!r} is not NAME=VALUES")
                out.append((name.strip(), []))
                token = value.strip()
            elif i == 0:
                raise UsageError(f"{where}: {item.strip()!r} is not NAME=VALUES")
            if not token:
                raise UsageError(f"{where}: an empty value for {out[-1][0]}")
            out[-1][1].append(token)
    return out


def _hint(error: str, defaults: Mapping[str, Any] | None) -> str:
    """Why a common parameter the text left out was not filled in from the fit."""
    missing = re.search(r"missing parameter (\w+)", error)
    if missing and missing.group(1) not in (defaults or {}):
        return NO_RUN_DEFAULTS
    return ""


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def parse_schedule_arg(
    text: str, where: str = "--schedule", defaults: Mapping[str, Any] | None = None
) -> Schedule:
    try:
        return Schedule.parse(text, defaults=defaults)
    except ScheduleError as exc:
        hint = _hint(str(exc), defaults)
        raise UsageError(f"{where}: {exc}{hint}") from None


def schedules_from(
    args: argparse.Namespace, defaults: Mapping[str, Any] | None = None
) -> list[Schedule]:
    """--schedule TEXT, --schedules FILE and --space SPEC, duplicates removed, in order; text
    that leaves out peak_lr, total_steps or warmup_steps takes them from ``defaults``."""
    out: list[Schedule] = []
    texts: list[str] = []
    for text in getattr(args, "schedule", None) or []:
        out.append(parse_schedule_arg(text, defaults=defaults))
        texts.append(text)
    for path in getattr(args, "schedules", None) or []:
        lines = read_lines(path)
        if not lines:
            raise UsageError(f"{path}: no schedule in the file")
        for i, line in enumerate(lines, start=1):
            out.append(parse_schedule_arg(line, f"{path}: schedule {i}", defaults))
        texts += lines
    for spec in getattr(args, "space", None) or []:
        out += parse_space(spec, defaults)
        texts += split_top(spec, "|")
    if defaults and any(not re.search(rf"\b{k}\s*=", t) for t in texts for k in defaults):
        print(
            "note: schedules without "
            + " / ".join(defaults)
            + " take the fitted run's: "
            + ", ".join(f"{k}={v:g}" for k, v in defaults.items()),
            file=sys.stderr,
        )
    return list(dict.fromkeys(out))
