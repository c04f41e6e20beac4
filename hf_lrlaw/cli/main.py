"""``lrlaw``: run a subcommand; user errors become one ``lrlaw: error:`` line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hf_lrlaw.cli.parser import build_parser
from hf_lrlaw.fit_result import FitError

__all__ = ["main"]


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show Python warnings as one ``lrlaw: warning:`` line each (once per message)."""
    seen: set[str] = set()

    def show(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"lrlaw: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = show
        yield


def _error(message: str) -> None:
    print(f"lrlaw: error: {' '.join(str(message).split())}", file=sys.stderr)


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lrlaw`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status: 0 on
    success, 2 on a user error (one ``lrlaw: error:`` line on stderr), 1 on an internal error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with _warnings_as_lines():
            command = next((a for a in argv if not a.startswith("-")), None)
            parser = build_parser(command)
            args = parser.parse_args(argv)
            func: Callable[[argparse.Namespace], int] = args.func
            return int(func(args) or 0)
    except SystemExit as exc:  # --help, --version
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `lrlaw ... | head`: stop quietly
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:
        _error(_os_message(exc))
        return 2
    except (ValueError, FitError) as exc:  # UsageError, CurveError, FitError, ScheduleError, ...
        _error(str(exc) or type(exc).__name__)
        return 2
    except Exception as exc:
        if os.environ.get("LRLAW_DEBUG"):
            raise
        _error(
            f"internal error: {type(exc).__name__}: {exc} (set LRLAW_DEBUG=1 for the "
            "traceback; please report it)"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
