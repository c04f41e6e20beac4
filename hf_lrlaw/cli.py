"""The ``lrlaw`` command: fit a law to loss curves, predict, rank schedules, plot.

::

    lrlaw fit runs/*/trainer_state.json --law auto -o fit.json
    lrlaw fit dataset:multipowerlaw:model=25M,split=train --law multipower -o fit.json
    lrlaw predict fit.json --schedule "cosine(peak_lr=3e-4, total_steps=24000, warmup_steps=2160)"
    lrlaw rank fit.json --space "wsd:peak_lr=3e-4;total_steps=24000;decay_fraction=0.1,0.2"
    lrlaw plot fit.json dataset:multipowerlaw:model=25M -o fit.png
    lrlaw evaluate fit.json dataset:multipowerlaw:model=25M,split=test
    lrlaw fit run.csv --until 0.25 --law momentum --prior default -o early.json
    lrlaw prior small.json mid.json --sizes 25M,100M --target 400M -o prior.json
    lrlaw backtest runs/ --at 0.25,0.5 --prior default
    lrlaw datasets

Every user error (a missing file, a malformed schedule, an unknown law, a fit that fails, an
output that cannot be written) ends with one line ``lrlaw: error: ...`` on stderr and exit code
2; no output file is written unless the whole command succeeded (files are written to a
temporary name and renamed). ``LRLAW_DEBUG=1`` shows the traceback of unexpected errors.

Other packages add subcommands through :func:`register_plugins` (``lrlaw search`` comes from
``tune_search.cli.add_parser``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import itertools
import json
import math
import os
import re
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_lrlaw import __version__
from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fitting import SCHEMA as FIT_SCHEMA
from hf_lrlaw.fitting import Fit, FitError
from hf_lrlaw.fitting import fit as fit_law
from hf_lrlaw.laws import available_laws
from hf_lrlaw.schedules import Schedule, ScheduleError

__all__ = [
    "UsageError",
    "build_parser",
    "load_curves",
    "main",
    "parse_curve_spec",
    "parse_space",
    "register_plugins",
]

#: subcommand plug-ins: command -> (module with ``add_parser(subparsers)``, help line)
PLUGINS: dict[str, tuple[str, str]] = {
    "search": ("tune_search.cli", "search schedules with Ray Tune, the law as surrogate"),
}
MAX_CANDIDATES = 100_000


class UsageError(ValueError):
    """Bad command-line input; ``main`` prints its message as one ``lrlaw: error:`` line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise instead of printing usage and exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# =================================================================================================
# inputs
# =================================================================================================

_DATASET_HELP = """\
A CURVES argument is a file or folder hf_lrlaw.curves.load reads (a tidy CSV
'curve_id,step,lr,loss', a transformers trainer_state.json, a Trainer output or checkpoint
folder, a JSON of curve records) or a bundled data set:
  dataset:NAME[:key=value,key=value,...]
NAME is multipowerlaw or lr-scheduling ('lrlaw datasets' lists them). A key filters on the
curves' meta (model, schedule, peak_lr, total_steps, dataset, ...); a comma-separated item
without '=' adds another accepted value to the key before it. Two keys are special:
kind=val|train (lr-scheduling: validation or training loss) and split=train|test
(multipowerlaw: the authors' split, fit on cosine_24000, constant_24000, wsdcon_9).
  dataset:multipowerlaw:model=25M,split=train
  dataset:multipowerlaw:model=100M,schedule=cosine_24000,constant_24000
  dataset:lr-scheduling:model=124M,peak_lr=1e-3,schedule=cosine-to-10%%"""


def _scalar(text: str) -> Any:
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
            filters[key] = _scalar(value)
        elif key is None:
            raise UsageError(f"{spec!r}: {token!r} is not key=value")
        else:
            current = filters[key]
            filters[key] = [*(current if isinstance(current, list) else [current]), _scalar(token)]
    return name, filters


def _load_dataset(spec: str) -> list[LossCurve]:
    from hf_lrlaw import datasets

    name, filters = parse_curve_spec(spec)
    if name not in datasets.available():
        raise UsageError(f"{spec!r}: no bundled data set {name!r}; available: "
                         f"{', '.join(datasets.available())}")  # fmt: skip
    kind = filters.pop("kind", None)
    split = filters.pop("split", None)
    where = None
    if split is not None:
        if name != "multipowerlaw" or split not in ("train", "test"):
            raise UsageError(f"{spec!r}: split is train or test, for multipowerlaw only "
                             f"(got {split!r} for {name})")  # fmt: skip
        train = {c.meta["schedule"] for c in datasets.multipowerlaw_split("25M")[0]}
        where = (lambda m: m["schedule"] in train) if split == "train" else (
            lambda m: m["schedule"] not in train
        )
    try:
        curves = datasets.load(name, kind=kind, where=where, **filters)
    except ValueError as exc:
        raise UsageError(f"{spec!r}: {exc}") from None
    if not curves:
        raise UsageError(f"{spec!r}: no curve of {name} matches these filters")
    return curves


def load_curves(specs: Sequence[str]) -> list[LossCurve]:
    """The curves of every CURVES argument, in order (files, folders, ``dataset:`` specs)."""
    from hf_lrlaw.curves import load

    out: list[LossCurve] = []
    for spec in specs:
        if spec.startswith("dataset:"):
            out += _load_dataset(spec)
            continue
        path = Path(spec)
        if not path.exists():
            raise UsageError(f"{spec}: no such file or folder")
        curves = load(path)
        if not curves:
            raise UsageError(f"{spec}: holds no loss curve")
        out += curves
    return out


def _read_lines(path: str) -> list[str]:
    """Non-blank lines of a text file, without ``#`` comments ('-' is stdin)."""
    if path == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"{path}: no such file")
        text = p.read_text()
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


def _parse_schedule(
    text: str, where: str = "--schedule", defaults: Mapping[str, Any] | None = None
) -> Schedule:
    try:
        return Schedule.parse(text, defaults=defaults)
    except ScheduleError as exc:
        hint = NO_RUN_DEFAULTS if defaults is None and "missing parameter" in str(exc) else ""
        raise UsageError(f"{where}: {exc}{hint}") from None


def _schedules_from(
    args: argparse.Namespace, defaults: Mapping[str, Any] | None = None
) -> list[Schedule]:
    """--schedule TEXT, --schedules FILE and --space SPEC, duplicates removed, in order; text
    that leaves out peak_lr, total_steps or warmup_steps takes them from ``defaults``."""
    out: list[Schedule] = []
    texts: list[str] = []
    for text in getattr(args, "schedule", None) or []:
        out.append(_parse_schedule(text, defaults=defaults))
        texts.append(text)
    for path in getattr(args, "schedules", None) or []:
        lines = _read_lines(path)
        if not lines:
            raise UsageError(f"{path}: no schedule in the file")
        for i, line in enumerate(lines, start=1):
            out.append(_parse_schedule(line, f"{path}: schedule {i}", defaults))
        texts += lines
    for spec in getattr(args, "space", None) or []:
        out += parse_space(spec, defaults)
        texts += _split_top(spec, "|")
    if defaults and any(not re.search(rf"\b{k}\s*=", t) for t in texts for k in defaults):
        print("note: schedules without " + " / ".join(defaults) + " take the fitted run's: "
              + ", ".join(f"{k}={v:g}" for k, v in defaults.items()), file=sys.stderr)  # fmt: skip
    return list(dict.fromkeys(out))


def _load_fit(path: str) -> Fit:
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such file")
    return Fit.load(path)


def _is_fit_file(path: str) -> bool:
    """Whether ``path`` is a saved Fit (JSON with the fit schema, or a record embedding one)."""
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() == ".json"):
        return False
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return data.get("schema") == FIT_SCHEMA or isinstance(data.get("fit"), dict)


def _law_options(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--option {item!r}: expected name=value, e.g. lam=0.999")
        out[key.strip()] = _scalar(value)
    return out


def _until(text: str | None) -> int | float | None:
    """--until: a step (integer) or a fraction of each curve's LR array (a number in (0, 1])."""
    if text is None:
        return None
    value = _scalar(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"--until {text!r}: expected a step (e.g. 12000) or a fraction (0.5)")
    if isinstance(value, float) and not 0 < value <= 1:
        raise UsageError(f"--until {text!r}: a fraction must be in (0, 1]")
    if isinstance(value, int) and value < 0:
        raise UsageError(f"--until {text!r}: a step must be >= 0")
    return value


def _steps(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        steps = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageError(f"--steps {text!r}: expected integers separated by commas") from None
    if not steps:
        raise UsageError("--steps: no step given")
    return steps


def _level(value: str) -> float:
    try:
        level = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < level < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be in (0, 1), e.g. 0.9")
    return level


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 1")
    return n


# -- the --space grammar ---------------------------------------------------------------------------

SPACE_HELP = """\
SPEC, a grid of schedules (the cartesian product of the values):
  KIND:NAME=VALUES;NAME=VALUES;...  [ | KIND:NAME=VALUES;... ]
KIND is a Schedule kind (constant, cosine, linear, wsd, multistep, two_stage, inverse_sqrt,
cyclic); NAME a parameter of Schedule.parse (peak_lr, total_steps, warmup_steps, decay_fraction,
decay_shape, final_ratio, ...); VALUES one or more values separated by commas: numbers, words
(linear, 1-sqrt), lists ([0.8, 0.9]), or ranges lin(LO,HI,N) and log(LO,HI,N) (N values, ends
included; integers for step counts, else rounded to 4 significant digits). ' | ' separates
kinds. Combinations that are not valid schedules are skipped with a warning. At most 100000
candidates. With a fit of one run, peak_lr, total_steps and warmup_steps default to that run's
("wsd:decay_fraction=0.1,0.2,0.3" is enough). Example:
  "wsd:peak_lr=3e-4;total_steps=24000;warmup_steps=2160;decay_fraction=0.1,0.2,0.3;
   decay_shape=linear,1-sqrt;final_ratio=0,0.1 | cosine:peak_lr=log(1e-4,1e-3,5);
   total_steps=24000;warmup_steps=2160;final_ratio=0.1\""""


def _split_top(text: str, sep: str) -> list[str]:
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


def _number_text(value: float, as_int: bool) -> str:
    """A grid value as text: an integer, or a float rounded to 4 significant digits."""
    return str(int(round(value))) if as_int else repr(float(f"{value:.4g}"))


_INT_PARAMS = frozenset({"total_steps", "warmup_steps", "timescale", "cycles", "rewarmup_steps"})


def _expand_value(token: str, name: str, where: str) -> list[str]:
    """One VALUES item -> texts for Schedule.parse (a range gives several)."""
    match = re.fullmatch(r"(lin|log)\s*\((.*)\)", token)
    if match is None:
        return [token]
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
    as_int = name in _INT_PARAMS
    values = np.geomspace(lo, hi, n) if fn == "log" else np.linspace(lo, hi, n)
    return list(dict.fromkeys(_number_text(v, as_int) for v in values))


def parse_space(spec: str, defaults: Mapping[str, Any] | None = None) -> list[Schedule]:
    """The schedules of a ``--space`` SPEC (see ``SPACE_HELP``), invalid combinations skipped;
    ``defaults`` as in :meth:`Schedule.parse`."""
    out: list[Schedule] = []
    for part in _split_top(spec, "|"):
        part = part.strip()
        if not part:
            raise UsageError(f"--space: an empty kind in {spec!r}")
        kind, colon, body = part.partition(":")
        kind = kind.strip()
        if not re.fullmatch(r"[A-Za-z_][\w\-]*", kind):
            raise UsageError(f"--space: {part!r} does not start with KIND: (e.g. 'wsd:')")
        where = f"--space {kind}"
        names: list[str] = []
        choices: list[list[str]] = []
        for item in _split_top(body, ";") if colon else []:
            item = item.strip()
            if not item:
                continue
            name, eq, values = item.partition("=")
            name = name.strip()
            if not eq or not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise UsageError(f"{where}: {item!r} is not NAME=VALUES")
            if name in names:
                raise UsageError(f"{where}: the parameter {name} is given twice")
            texts: list[str] = []
            for token in _split_top(values, ","):
                token = token.strip()
                if not token:
                    raise UsageError(f"{where}: an empty value for {name}")
                texts += _expand_value(token, name, f"{where} {name}")
            names.append(name)
            choices.append(list(dict.fromkeys(texts)))
        total = math.prod(len(c) for c in choices)
        if total > MAX_CANDIDATES:
            raise UsageError(f"{where}: {total} combinations; at most {MAX_CANDIDATES}")
        made, errors = 0, []
        for combo in itertools.product(*choices):
            text = f"{kind}({', '.join(f'{n}={v}' for n, v in zip(names, combo))})"
            try:
                out.append(Schedule.parse(text, defaults=defaults))
                made += 1
            except ScheduleError as exc:
                errors.append(str(exc))
        if not made:
            hint = NO_RUN_DEFAULTS if defaults is None and "missing parameter" in errors[0] else ""
            raise UsageError(f"{where}: no valid schedule in the grid ({errors[0]}{hint})")
        if errors:
            warnings.warn(
                f"--space {kind}: skipped {len(errors)} of {total} combinations that are not "
                f"valid schedules (first: {errors[0]})",
                stacklevel=2,
            )
    return out


# =================================================================================================
# outputs
# =================================================================================================


def _check_out(path: str | None, suffixes: Sequence[str], what: str) -> Path | None:
    """Validate an output path early (before any work): its suffix and its folder."""
    if path is None:
        return None
    p = Path(path)
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


def file_mode(path: Path) -> int:
    """The permissions for (re)writing ``path``: an existing file's, else 0o666 minus umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file in the same folder, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    return value


# =================================================================================================
# subcommands
# =================================================================================================


def _prior_spec(text: str | None) -> str | None:
    """--prior: none, default, default:DATASET, or a prior / Fit / record JSON file."""
    if text is None or text.lower() == "none":
        return None
    if text == "default" or text.startswith("default:"):
        return text
    if not Path(text).is_file():
        raise UsageError(f"--prior {text}: no such file (give none, default, default:DATASET, "
                         "or a prior, fit or record JSON)")  # fmt: skip
    return text


def _fit_from_args(args: argparse.Namespace, curves: list[LossCurve]) -> Fit:
    until = _until(args.until)
    prior = _prior_spec(args.prior)
    if until is not None:
        curves = [c.head(until) for c in curves]
    options = _law_options(args.option)
    if args.law == "auto" and options:
        raise UsageError("--option needs a named law (--law momentum|multipower|power)")
    return fit_law(curves, law=args.law, law_options=options or None, prior=prior,
                   n_starts=args.n_starts, weights=args.weights)  # fmt: skip


def cmd_fit(args: argparse.Namespace) -> int:
    out = _check_out(args.output, (".json",), "-o")
    curves = load_curves(args.curves)
    result = _fit_from_args(args, curves)
    print(result.summary())
    if out is not None:
        result.save(out)
        print(f"wrote {out}")
    return 0


_SIZE_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_size(text: str, where: str = "--sizes") -> float:
    """A parameter count: ``360e6``, ``360M``, ``1.3B``, ``125k``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*", text, re.IGNORECASE)
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()] if m else 0.0
    if value <= 0:
        raise UsageError(f"{where} {text!r}: expected a positive parameter count, e.g. 125M, "
                         "1.3B or 360e6")  # fmt: skip
    return value


def cmd_prior(args: argparse.Namespace) -> int:
    from hf_lrlaw.priors import Prior, size_prior

    out = _check_out(args.output, (".json",), "-o")
    if (args.sizes is None) != (args.target is None):
        raise UsageError("--sizes and --target go together (a size sweep's prior)")
    fits = [_load_fit(p) for p in args.fits]
    if args.sizes is None:
        prior = Prior.from_fits(fits)
    else:
        sizes = [parse_size(t) for t in args.sizes.split(",") if t.strip()]
        if len(sizes) != len(fits):
            raise UsageError(f"--sizes: {len(sizes)} size(s) for {len(fits)} fit(s); give one "
                             "per fit, in order")  # fmt: skip
        prior = size_prior(fits, sizes, parse_size(args.target, "--target"))
    rows = [(n, f"{m:.4f}", f"{sd:.4f}") for n, m, sd in zip(prior.names, prior.mean, prior.std)]
    print(f"{prior.law} prior from {prior.source}")
    print(_table(rows, ("feature", "mean", "std")))
    if out is not None:
        prior.save(out)
        print(f"wrote {out}")
    return 0


def _fractions(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        values = []
    if not values or any(not 0 < v < 1 for v in values):
        raise UsageError(f"--at {text!r}: expected fractions in (0, 1) separated by commas, "
                         "e.g. 0.25,0.5")  # fmt: skip
    return values


def cmd_backtest(args: argparse.Namespace) -> int:
    from hf_lrlaw.backtest import backtest, summarize

    out = _check_out(args.output, (".json", ".csv", ".md"), "-o")
    fractions = _fractions(args.at)
    prior = _prior_spec(args.prior)
    curves = load_curves(args.curves)
    options = _law_options(args.option)
    rows = backtest(curves, fractions, args.law, level=args.level, law_options=options or None,
                    prior=prior, calibration="default" if prior else None)  # fmt: skip
    if not rows:
        raise UsageError("no curve with points to backtest")
    pct = f"{args.level:.0%}"
    header = ("curve", "seen", "predicted", f"{pct} interval", "actual", "error", "inside")
    table = []
    for r in rows:
        if r.failure is not None:
            table.append((r.curve, f"{r.seen:.3g}", "-", "-", f"{r.actual:.4f}", "-",
                          f"fit failed: {r.failure}"))  # fmt: skip
        else:
            table.append((r.curve, f"{r.seen:.3g}", f"{r.predicted:.4f}",
                          f"[{r.low:.4f}, {r.high:.4f}]", f"{r.actual:.4f}", f"{r.error:+.2%}",
                          "yes" if r.inside else "no"))  # fmt: skip
    summary = summarize(rows)
    lines = [f"{args.law} law, prior {prior or 'none'}: final loss predicted from each run's first "
             f"{', '.join(f'{f:.3g}' for f in fractions)} of its steps"]  # fmt: skip
    for s in summary:
        done = s.runs - s.failed
        lines.append(
            f"  from {s.seen:.3g}: {done}/{s.runs} runs predicted"
            + ("" if not done else f", mean |error| {s.mean_abs_error:.2%}, worst "
               f"{s.worst_abs_error:.2%}, {pct} interval covers {s.coverage:.0%}")
        )  # fmt: skip
    print(_table(table, header))
    print("\n".join(lines))
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".json":
            data = {"law": args.law, "prior": prior, "level": args.level,
                    "summary": [vars(s) for s in summary],
                    "runs": [{**vars(r), "error": r.error, "inside": r.inside} for r in rows]}
            text = json.dumps(_json_ready(data), indent=1)
        elif suffix == ".csv":
            text = _csv([{**vars(r), "error": r.error, "inside": r.inside} for r in rows])
        else:
            md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            md += ["| " + " | ".join(row) + " |" for row in table]
            text = "\n".join(md + [""] + lines) + "\n"
        _write_text(out, text)
        print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    out = _check_out(args.output, (".json", ".csv"), "-o")
    fit = _load_fit(args.fit)
    schedules = _schedules_from(args, fit.run_defaults())
    if not schedules:
        raise UsageError("give at least one --schedule TEXT or --schedules FILE")
    steps = _steps(args.steps)
    rows: list[dict[str, Any]] = []
    if steps is None:
        mean, low, high = fit.predict_final(schedules, level=args.level)
        for s, m, lo, hi in zip(schedules, mean, low, high):
            rows.append({"schedule": str(s), "step": s.total_steps - 1, "predicted": float(m),
                         "low": float(lo), "high": float(hi)})  # fmt: skip
    else:
        for s in schedules:
            bad = [t for t in steps if not 0 <= t < s.total_steps]
            if bad:
                raise UsageError(f"--steps {bad[0]} is outside 0..{s.total_steps - 1}, the steps "
                                 f"of {s}")  # fmt: skip
            mean, low, high = fit.predict_interval(s, steps, level=args.level)
            for t, m, lo, hi in zip(steps, mean, low, high):
                rows.append({"schedule": str(s), "step": t, "predicted": float(m),
                             "low": float(lo), "high": float(hi)})  # fmt: skip
    for r in rows:
        r["level"] = args.level
    if args.json:
        text = json.dumps(_json_ready({"law": fit.law, "level": args.level, "notes": fit.notes,
                                       "predictions": rows}), indent=1)  # fmt: skip
        print(text)
    else:
        pct = f"{args.level:.0%} interval"
        table = [(r["schedule"], r["step"], f"{r['predicted']:.4f}",
                  f"[{r['low']:.4f}, {r['high']:.4f}]") for r in rows]  # fmt: skip
        print(_table(table, ("schedule", "step", "predicted loss", pct)))
        for note in fit.notes:
            print(f"note: {note}")
    if out is not None:
        if out.suffix.lower() == ".csv":
            _write_text(out, _csv(rows))
        else:
            _write_text(out, json.dumps(_json_ready(rows), indent=1))
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def cmd_rank(args: argparse.Namespace) -> int:
    from hf_lrlaw.ranking import rank

    out = _check_out(args.output, (".csv", ".md", ".json"), "-o")
    plot_out = _check_out(args.plot, (".png", ".pdf", ".svg"), "--plot")
    fit = _load_fit(args.fit)
    schedules = _schedules_from(args, fit.run_defaults())
    if not schedules:
        raise UsageError("give candidates with --schedules FILE, --space SPEC or --schedule TEXT")
    ranking = rank(fit, schedules, level=args.level)
    print(f"{len(ranking)} candidate(s), {fit.law} law, best first:")
    print(ranking.to_markdown(k=args.top))
    for note in ranking.notes:
        print(f"note: {note}")
    fig = None
    if plot_out is not None:
        from hf_lrlaw.plots import plot_ranking

        fig = plot_ranking(ranking, k=min(args.top, 40))
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".csv":
            text = ranking.to_csv()
        elif suffix == ".md":
            text = ranking.to_markdown(k=len(ranking)) + "\n"
        else:
            text = json.dumps(_json_ready({"law": ranking.law, "level": ranking.level,
                                           "notes": ranking.notes,
                                           "rows": ranking.to_dicts()}), indent=1)  # fmt: skip
        _write_text(out, text)
        print(f"wrote {out}")
    if fig is not None and plot_out is not None:
        from hf_lrlaw.plots import save_figure

        save_figure(fig, plot_out)
        print(f"wrote {plot_out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from hf_lrlaw.plots import plot_fit, save_figure

    out = _check_out(args.output, (".png", ".pdf", ".svg"), "-o")
    inputs = list(args.inputs)
    fit_path = args.fit
    if fit_path is None and inputs and _is_fit_file(inputs[0]):
        fit_path = inputs.pop(0)
    curves = load_curves(inputs)
    if fit_path is not None:
        if args.law != "auto" or args.option or args.until is not None or args.prior:
            raise UsageError("--law, --option, --until and --prior fit on the fly; not with a "
                             "saved fit")  # fmt: skip
        fit = _load_fit(fit_path)
    else:
        if not curves:
            raise UsageError("give a saved fit (fit.json) or curves to fit on the fly")
        fit = _fit_from_args(args, curves)
        print(fit.summary())
    schedules = _schedules_from(args, fit.run_defaults())
    if args.label and len(args.label) != len(schedules):
        raise UsageError(f"--label: {len(args.label)} given for {len(schedules)} schedule(s)")
    if not curves and not schedules:
        raise UsageError("nothing to plot: give curves or --schedule")
    fig = plot_fit(fit, curves, predict=schedules, labels=args.label or None, level=args.level,
                   title=args.title, max_points=args.max_points)  # fmt: skip
    save_figure(fig, out)
    print(f"wrote {out}")
    return 0


def evaluate(fit: Fit, curves: Sequence[LossCurve], level: float = 0.9) -> dict[str, Any]:
    """Accuracy of ``fit`` on ``curves``: per curve, the mean ``|pred - loss| / loss`` over the
    points the fit did not see (all points of a curve it does not know, by name), and the error
    and interval of the last point. ``mean_rel_error`` averages the per-curve means over the
    curves with held-out points."""
    from hf_lrlaw.plots import _fitted_last_step

    rows = []
    for c in curves:
        if not len(c):
            continue
        seen_last = _fitted_last_step(fit, c)
        held = c.steps > seen_last
        in_sample = not held.any()
        mask = np.ones(len(c), dtype=bool) if in_sample else held
        steps, losses = c.steps[mask], c.losses[mask]
        pred = fit.predict(c.lrs, steps)
        m, lo, hi = fit.predict_interval(c.lrs, [c.last_step], level=level)
        final = float(c.losses[-1])
        rows.append({
            "curve": c.name,
            "points": int(mask.sum()),
            "in_sample": bool(in_sample),
            "mean_rel_error": float(np.mean(np.abs(pred - losses) / losses)),
            "last_step": c.last_step,
            "loss": final,
            "predicted": float(m[0]),
            "low": float(lo[0]),
            "high": float(hi[0]),
            "final_rel_error": float((m[0] - final) / final),
            "covered": bool(lo[0] <= final <= hi[0]),
        })  # fmt: skip
    held_rows = [r for r in rows if not r["in_sample"]]
    use = held_rows or rows
    return {
        "law": fit.law,
        "level": level,
        "curves": rows,
        "held_out_curves": len(held_rows),
        "mean_rel_error": float(np.mean([r["mean_rel_error"] for r in use])) if use else None,
        "mean_final_abs_rel_error": (
            float(np.mean([abs(r["final_rel_error"]) for r in use])) if use else None
        ),
        "coverage": float(np.mean([r["covered"] for r in use])) if use else None,
    }


def cmd_evaluate(args: argparse.Namespace) -> int:
    out = _check_out(args.output, (".json", ".md"), "-o")
    plot_out = _check_out(args.plot, (".png", ".pdf", ".svg"), "--plot")
    fit = _load_fit(args.fit)
    curves = [c for c in load_curves(args.curves) if len(c)]
    if not curves:
        raise UsageError("the curves hold no loss point")
    report = evaluate(fit, curves, args.level)
    table = [(r["curve"], r["points"], "fitted" if r["in_sample"] else "held out",
              f"{r['mean_rel_error']:.3%}", f"{r['loss']:.4f}", f"{r['predicted']:.4f}",
              f"[{r['low']:.4f}, {r['high']:.4f}]", f"{r['final_rel_error']:+.3%}")
             for r in report["curves"]]  # fmt: skip
    header = ("curve", "points", "part", "mean |rel err|", "last loss", "predicted",
              f"{args.level:.0%} interval", "last rel err")  # fmt: skip
    text = _table(table, header)
    summary = (
        f"{fit.law} law on {len(report['curves'])} curve(s) ({report['held_out_curves']} with "
        f"held-out points): mean |rel err| {report['mean_rel_error']:.3%}, last point "
        f"{report['mean_final_abs_rel_error']:.3%}, {report['coverage']:.0%} of last points in "
        "their interval"
    )
    if args.json:
        print(json.dumps(_json_ready(report), indent=1))
    else:
        print(text)
        print(summary)
    fig = None
    if plot_out is not None:
        from hf_lrlaw.plots import plot_predictions_vs_actual

        fig = plot_predictions_vs_actual({fit.law: fit}, curves, level=args.level)
    if out is not None:
        if out.suffix.lower() == ".md":
            md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            md += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
            _write_text(out, "\n".join(md) + f"\n\n{summary}\n")
        else:
            _write_text(out, json.dumps(_json_ready(report), indent=1))
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    if fig is not None and plot_out is not None:
        from hf_lrlaw.plots import save_figure

        save_figure(fig, plot_out)
        print(f"wrote {plot_out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from hf_lrlaw import datasets

    if args.name is None:
        rows = [(n, datasets.info(n).curves, datasets.info(n).title) for n in datasets.available()]
        print(_table(rows, ("name", "curves", "")))
        print("use as CURVES: dataset:NAME[:key=value,...]; 'lrlaw datasets NAME' lists curves")
        return 0
    if args.name not in datasets.available():
        raise UsageError(f"no bundled data set {args.name!r}; available: "
                         f"{', '.join(datasets.available())}")  # fmt: skip
    print(datasets.info(args.name))
    curves = datasets.load(args.name)
    print()
    rows = [(c.name, c.meta.get("model", ""), c.meta.get("schedule", ""),
             c.meta.get("peak_lr", ""), len(c.lrs), len(c)) for c in curves]  # fmt: skip
    print(_table(rows, ("curve", "model", "schedule", "peak_lr", "steps", "points")))
    return 0


# =================================================================================================
# the parser
# =================================================================================================


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--law", default="auto", choices=["auto", *available_laws()],
                   help="the law to fit (default: auto, the best leave-one-curve-out error with "
                   "two or more curves, else momentum)")  # fmt: skip
    p.add_argument("--option", action="append", metavar="NAME=VALUE",
                   help="a law option, repeatable (momentum: lam=0.999, warmup=peak; multipower: "
                   "warmup=exclude|include, exact=false)")  # fmt: skip
    p.add_argument("--until", metavar="STEP|FRACTION",
                   help="fit on each curve up to this step (an integer) or this fraction of its "
                   "LR array (a number in (0, 1], e.g. 0.5)")  # fmt: skip
    p.add_argument("--n-starts", type=_positive_int, default=4, help="L-BFGS-B starts (default 4)")
    p.add_argument("--weights", choices=["points", "curves"], default="points",
                   help="every point counts once (default) or every curve counts the same")  # fmt: skip
    p.add_argument("--prior", metavar="SPEC",
                   help="none (default); default (learned on the bundled public curves: use it "
                   "for the first part of a run); default:DATASET; or a prior JSON (lrlaw "
                   "prior), a saved fit or a callback record of an earlier run")  # fmt: skip


def _add_schedule_inputs(p: argparse.ArgumentParser, *, space: bool) -> None:
    p.add_argument("--schedule", action="append", metavar="TEXT",
                   help="a schedule, repeatable, e.g. 'cosine(peak_lr=3e-4, total_steps=24000, "
                   "warmup_steps=2160, final_ratio=0.1)'; with a fit of one run, peak_lr, "
                   "total_steps and warmup_steps default to that run's: 'cosine(final_ratio=0.1)'")  # fmt: skip
    p.add_argument("--schedules", action="append", metavar="FILE",
                   help="a file with one schedule text a line (blank lines and # comments are "
                   "ignored; '-' reads stdin); repeatable")  # fmt: skip
    if space:
        p.add_argument("--space", action="append", metavar="SPEC",
                       help="a grid of schedules (see below); repeatable")  # fmt: skip


def _wrap(text: str) -> str:
    return textwrap.fill(text, 88)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``lrlaw`` argument parser, with the plug-in subcommands registered (the plug-in of
    ``command`` imported, the others as placeholders; see :func:`register_plugins`)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="lrlaw",
        description="Fit a loss-curve law (Tissue et al. 2024, Luo et al. 2025) to training\n"
        "runs, predict the loss under any learning-rate schedule, rank candidate schedules.\n"
        "'lrlaw COMMAND --help' describes each command.",
        epilog=_DATASET_HELP,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"lrlaw (hf-lrlaw) {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("fit", help="fit a law to loss curves and save it",
                       description=_wrap("Fit a law jointly to CURVES; print its summary; save it "
                       "with -o."), epilog=_DATASET_HELP, formatter_class=fmt)  # fmt: skip
    p.add_argument("curves", nargs="+", metavar="CURVES", help="files, folders or dataset: specs")
    _add_fit_options(p)
    p.add_argument("-o", "--output", metavar="FIT.json", help="where to save the fit")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("prior", help="a prior from earlier fits (a previous run, a size sweep)",
                       description=_wrap("Make a prior for 'lrlaw fit --prior' from saved fits "
                       "(each of runs at one peak LR): from earlier runs of the same recipe "
                       "(several are pooled), or, with --sizes and --target, from full fits of "
                       "smaller models (one fit per model size and peak LR; each transfer "
                       "feature is regressed on log size and read off at the target size)."),
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("fits", nargs="+", metavar="FIT.json", help="saved fits or callback records")
    p.add_argument("--sizes", metavar="N,N,...", help="each fit's model size, in order (125M, 1.3B)")
    p.add_argument("--target", metavar="N", help="the model size the prior is for")
    p.add_argument("-o", "--output", metavar="PRIOR.json", help="where to save the prior")
    p.set_defaults(func=cmd_prior)

    p = sub.add_parser("backtest", help="how well early fits predict your finished runs",
                       description=_wrap("Cut every finished run in CURVES to its first --at "
                       "fractions of steps (its LR schedule stays known, as in a live run), fit "
                       "each alone and predict its last logged loss: per run the prediction, "
                       "its interval and its error; per fraction the mean and worst error and "
                       "how often the interval held the truth. Check your recipe with it before "
                       "trusting live predictions."), epilog=_DATASET_HELP,
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("curves", nargs="+", metavar="CURVES", help="files, folders or dataset: specs")
    p.add_argument("--law", default="momentum", choices=available_laws(),
                   help="the law to fit (default: momentum, the callback's)")
    p.add_argument("--option", action="append", metavar="NAME=VALUE", help="a law option, repeatable")
    p.add_argument("--prior", default="default", metavar="SPEC",
                   help="as for 'lrlaw fit' (default here: default, as the callback uses)")
    p.add_argument("--at", default="0.25,0.5", metavar="F,F,...",
                   help="fractions of each run to fit on (default 0.25,0.5)")
    p.add_argument("--level", type=_level, default=0.9, help="interval probability (0.9)")
    p.add_argument("-o", "--output", metavar="REPORT.json|.csv|.md", help="also write the report")
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("predict", help="predict the loss of schedules from a saved fit",
                       description=_wrap("The predicted final loss (or the loss at --steps) of each "
                       "schedule, with its interval."), formatter_class=fmt)  # fmt: skip
    p.add_argument("fit", metavar="FIT.json")
    _add_schedule_inputs(p, space=False)
    p.add_argument("--steps", metavar="S1,S2,...", help="steps to predict at (default: the last)")
    p.add_argument("--level", type=_level, default=0.9, help="interval probability (0.9)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-o", "--output", metavar="FILE.json|.csv", help="also write the predictions")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("rank", help="rank candidate schedules by predicted final loss",
                       description=_wrap("Rank candidate schedules (from --schedules, --space and "
                       "--schedule) by the final loss the fit predicts."), epilog=SPACE_HELP,
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("fit", metavar="FIT.json")
    _add_schedule_inputs(p, space=True)
    p.add_argument("--top", type=_positive_int, default=10, help="rows to print (10)")
    p.add_argument("--level", type=_level, default=0.9, help="interval probability (0.9)")
    p.add_argument("-o", "--output", metavar="TABLE.csv|.md|.json",
                   help="write the whole ranking")  # fmt: skip
    p.add_argument("--plot", metavar="FIG.png", help="also plot the top candidates")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("plot", help="plot a fit against curves, with predicted schedules",
                       description=_wrap("Plot a saved fit (or one fitted on the fly on CURVES) with "
                       "the curves and the predicted curves of --schedule; the first argument is "
                       "taken as the saved fit when it is one."), epilog=_DATASET_HELP,
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("inputs", nargs="*", metavar="[FIT.json] CURVES")
    p.add_argument("--fit", metavar="FIT.json", help="the saved fit (else the first argument, or "
                   "a fit on the fly)")  # fmt: skip
    _add_schedule_inputs(p, space=True)
    p.add_argument("--label", action="append", help="a legend label per --schedule, in order")
    _add_fit_options(p)
    p.add_argument("--level", type=_level, default=0.9, help="band probability (0.9)")
    p.add_argument("--title", help="the figure's headline")
    p.add_argument("--max-points", type=_positive_int, default=400,
                   help="steps evaluated per curve (400)")  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="FIG.png|.pdf|.svg")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("evaluate", help="accuracy of a saved fit on curves",
                       description=_wrap("Per curve, the mean relative error of the fit on the points "
                       "it did not see, and the error and interval of the last point."),
                       epilog=_DATASET_HELP, formatter_class=fmt)  # fmt: skip
    p.add_argument("fit", metavar="FIT.json")
    p.add_argument("curves", nargs="+", metavar="CURVES")
    p.add_argument("--level", type=_level, default=0.9, help="interval probability (0.9)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-o", "--output", metavar="REPORT.json|.md", help="also write the report")
    p.add_argument("--plot", metavar="FIG.png", help="predicted vs observed last losses")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("datasets", help="list the bundled public loss curves")
    p.add_argument("name", nargs="?", help="list the curves of this data set")
    p.set_defaults(func=cmd_datasets)

    register_plugins(sub, command)
    return parser


def _module_exists(name: str) -> bool:
    """Whether module ``name`` can be found, without importing it or its packages (importing
    ``tune_search`` imports Ray, which ``lrlaw fit`` and friends must not pay for)."""
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if len(parts) == 1:
        return True
    for location in spec.submodule_search_locations or []:
        folder = Path(location, *parts[1:-1])
        if (folder / f"{parts[-1]}.py").is_file() or (folder / parts[-1] / "__init__.py").is_file():
            return True
    return False


def register_plugins(subparsers: Any, command: str | None = None) -> list[str]:
    """Add the subcommands of other packages (:data:`PLUGINS`: command -> (module, help)).

    Only the module of the ``command`` being run is imported; its ``add_parser(subparsers)``
    adds the real parser (``subparsers.add_parser("search", ...)`` with
    ``set_defaults(func=handler)``, ``handler(args) -> int`` the exit status; a user error is a
    ``ValueError`` or ``OSError``, which ``main`` prints as one ``lrlaw: error:`` line, exit 2).
    For any other command (and for ``lrlaw --help``) a plug-in whose module exists only gets a
    placeholder entry with its help line, found without importing anything. Returns the
    commands registered.
    """
    done = []
    for name, (module_name, help_text) in PLUGINS.items():
        if name == command:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise UsageError(f"'lrlaw {name}' needs {module_name}, which cannot be imported: "
                                 f"{exc}") from None  # fmt: skip
            add = getattr(module, "add_parser", None)
            if not callable(add):
                raise UsageError(f"'lrlaw {name}': {module_name} has no add_parser(subparsers)")
            add(subparsers)
            done.append(name)
        elif _module_exists(module_name):
            subparsers.add_parser(name, help=help_text, add_help=False)
            done.append(name)
    return done


# =================================================================================================
# main
# =================================================================================================


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show Python warnings as one ``lrlaw: warning:`` line each (once per message)."""
    seen: set[str] = set()

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:  # fmt: skip
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
        _error(f"internal error: {type(exc).__name__}: {exc} (set LRLAW_DEBUG=1 for the "
               "traceback; please report it)")  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
