"""Files: atomic writes with one permission rule, JSON without NaN, and readers that name the file.

Every file the package writes goes through :func:`write_atomic`: the bytes go to a temporary
file in the same folder, which is renamed over the target (``os.replace``), so a reader never
sees a half-written file and a failure leaves the old one in place. A new file gets the mode the
umask gives (``0o666 & ~umask``, as ``open()`` would); a file that is replaced keeps its mode.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_ready", "json_text", "read_json", "read_text", "write_atomic", "write_json"]

_GZIP_MAGIC = b"\x1f\x8b"


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file renamed into place;
    missing parent folders are created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        keep_mode: int | None = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        keep_mode = None
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # The kernel applies the umask to 0o666 here: no os.umask() round trip, which would race
    # with other threads (the callback writes from its fit thread).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_mode is not None:
            os.chmod(tmp, keep_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made plain and non-finite floats made ``None``:
    what JSON can hold (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    return value


def json_text(data: Any, *, indent: int | None = 1) -> str:
    """``data`` as strict JSON text (see :func:`json_ready`)."""
    return json.dumps(json_ready(data), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1) -> Path:
    """:func:`write_atomic` of ``data`` as strict JSON (see :func:`json_ready`)."""
    return write_atomic(path, json_text(data, indent=indent) + "\n")


def read_text(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> str:
    """The text of a file, gzip-compressed or not, UTF-8 with or without a BOM. Problems raise
    ``error`` with a message that starts with the file's name."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise error(f"{path}: broken gzip data ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_json(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> Any:
    """The JSON value in a file (read as :func:`read_text` does); problems raise ``error``
    naming the file, and the line and column of a syntax error."""
    text = read_text(path, error)
    if not text.strip():
        raise error(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{path}: not a readable JSON file (not valid JSON at line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None
