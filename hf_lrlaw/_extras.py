"""Optional dependencies: one clear line saying which extra to install when one is missing."""

from __future__ import annotations

import importlib.util

__all__ = ["require"]


def require(what: str, extra: str, *modules: str) -> None:
    """ImportError naming ``extra`` when one of ``modules`` is not installed (found without
    importing it)."""
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise ImportError(
            f"{what} needs {', '.join(missing)}: pip install 'hf-lrlaw[{extra}]' (or "
            "'hf-lrlaw[all]')"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False
