"""The text form of a schedule, ``kind(name=value, ...)``: parsing it safely (an AST of literals,
never ``eval``) and writing it so that it parses back to an equal schedule."""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Mapping
from typing import Any

from hf_lrlaw.schedules.kinds import (
    COMMON,
    COMMON_NAMES,
    KIND_SPECS,
    ScheduleError,
    canonical_kind,
    format_value,
    is_number,
    short,
)

__all__ = ["format_schedule", "parse_schedule", "parse_value"]


def parse_schedule(
    text: str, defaults: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """``(kind, values)`` of schedule text, ``defaults`` filling the common parameters it leaves
    out (free_form takes its own from its array); see :meth:`Schedule.parse`."""
    if not isinstance(text, str):
        raise ScheduleError(f"schedule text must be a string, got {type(text).__name__}")
    match = re.fullmatch(r"\s*([A-Za-z_][\w\-]*)\s*\((.*)\)\s*", text, flags=re.DOTALL)
    if match is None:
        raise ScheduleError(
            f"cannot read schedule text {short(text)}: expected kind(name=value, ...) "
            "with matching parentheses"
        )
    kind = canonical_kind(match.group(1))
    source = f"_({match.group(2)})"
    call = _call(source, f"cannot read schedule text {short(text)}")
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
        raise ScheduleError(f"cannot read schedule text {short(text)}: extra text around kind(...)")
    if call.args or any(k.arg is None for k in call.keywords):
        raise ScheduleError(
            f"cannot read schedule text {short(text)}: every parameter must be name=value"
        )
    names = [k.arg for k in call.keywords]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ScheduleError(f"parameter {repeated[0]} is given more than once in {short(text)}")
    values = {k.arg: _literal(k.value, source, k.arg) for k in call.keywords}
    if defaults and kind != "free_form":
        unknown = sorted(set(defaults) - set(COMMON_NAMES))
        if unknown:
            raise ScheduleError(
                f"schedule defaults can only be {', '.join(COMMON_NAMES)}, got {unknown[0]!r}"
            )
        values = {**defaults, **values}
    return kind, values


def parse_value(text: str, name: str) -> Any:
    """One parameter value written as in schedule text (a number, a bare or quoted word such as
    ``1-sqrt``, a flat list), as :meth:`Schedule.parse` reads it."""
    source = f"_({name}={text})"
    call = _call(source, f"{name}: cannot read value {short(text)}")
    if not (isinstance(call, ast.Call) and len(call.keywords) == 1 and not call.args):
        raise ScheduleError(f"{name}: cannot read value {short(text)}")
    return _literal(call.keywords[0].value, source, name)


def format_schedule(kind: str, common: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The text of a schedule: ``peak_lr``, ``total_steps`` and ``warmup_steps`` always, the other
    common parameters where they differ from their defaults, then the kind's parameters."""
    parts = []
    if kind != "free_form":
        for p in COMMON:
            value = common[p.name]
            if p.name in ("peak_lr", "total_steps", "warmup_steps") or value != p.default:
                parts.append(f"{p.name}={format_value(p, value)}")
    for p in KIND_SPECS[kind].params:
        value = params[p.name]
        if value is not None:
            parts.append(f"{p.name}={format_value(p, value)}")
    return f"{kind}({', '.join(parts)})"


def _call(source: str, what: str) -> ast.expr:
    """The expression of ``source`` (a call ``_(name=value, ...)``), parsed, never evaluated."""
    try:
        with warnings.catch_warnings():  # Python's own warnings about the text (an invalid
            warnings.simplefilter("ignore")  # escape, 1if) are no message for a schedule's user
            return ast.parse(source, mode="eval").body
    except SyntaxError as err:
        raise ScheduleError(f"{what}: {err.msg}") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as err:
        raise ScheduleError(f"{what}: {err}") from None


def _literal(node: ast.expr, source: str, name: str) -> Any:
    """A parameter value from its syntax node: numbers, strings, None, bare words, flat lists."""
    if (
        isinstance(node, ast.Constant)
        and not isinstance(node.value, (bool, complex, bytes))
        and (node.value is not Ellipsis)
    ):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and is_number(node.operand.value)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(item, source, name) for item in node.elts]
        if any(isinstance(item, list) for item in items):
            raise ScheduleError(f"{name}: nested lists are not allowed")
        return items
    if isinstance(node, ast.Name):
        return node.id
    segment = ast.get_source_segment(source, node) or ""
    word = re.sub(r"\s+", "", segment)
    if isinstance(node, ast.BinOp) and re.fullmatch(r"[A-Za-z0-9_.\-]+", word):
        return word  # a bare word with a dash, e.g. 1-sqrt
    raise ScheduleError(f"{name}: cannot read value {short(segment)}")
