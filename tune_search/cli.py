"""``lrlaw search``: the schedule search from the command line.

``hf_lrlaw.cli`` registers it with :func:`add_parser`; ``python -m tune_search.cli search ...``
runs it alone. What to train comes from ``--setup module:function`` (a function returning
``{"model_init", "train_dataset", "eval_dataset", "training_args", "data_collator"}``),
``--trainable module:function`` (a Tune function trainable honouring the trial contract), or
``--simulate MODEL`` (the simulated world of :mod:`tune_search.simulate`, no training), or
``--replay CELL`` (the real curves of a cell of the bundled public data, :mod:`tune_search.replay`:
try the searcher on real runs in seconds).

Examples::

    lrlaw search --simulate 100M --top-k 2 --output-dir runs/sim
    lrlaw search --replay lr-scheduling:124M:50000 --output-dir runs/replay
    lrlaw search --setup mytrain:setup --peak-lr 3e-3 --total-steps 2000 --warmup-steps 100 \\
        --kinds wsd,cosine --metric eval_loss --output-dir runs/search
    lrlaw search --setup mytrain:setup --space space.json --address auto \\
        --storage-path /shared/ray_results --gpus-per-trial 1 --resume
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "main", "run"]

PROG = "lrlaw"


class CliError(Exception):
    """A problem with the command line's input; printed as one line, exit code 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``search`` subcommand on an ``argparse`` subparsers object; its handler
    (``func`` and ``handler`` defaults) takes the parsed namespace and returns an exit code."""
    p = subparsers.add_parser(
        "search",
        help="search LR schedules with pilots + the fitted law + a few full runs (Ray Tune)",
        description="Run pilot schedules, fit the law, rank every candidate schedule by "
        "predicted final loss, run the best few in full, and write the ranked "
        "table, the recommended schedule (recommended.json) and a report.",
    )
    what = p.add_argument_group("what to train (one of)")
    what.add_argument(
        "--setup",
        metavar="MODULE:FUNC",
        help="returns {'model_init', 'train_dataset', 'eval_dataset', "
        "'training_args', 'data_collator'} for the HF trainable",
    )
    what.add_argument(
        "--trainable",
        metavar="MODULE:FUNC",
        help="a Tune function trainable honouring the LRLawSearcher contract",
    )
    what.add_argument(
        "--simulate",
        metavar="MODEL",
        nargs="?",
        const="100M",
        help="the simulated world (25M, 100M, 400M): no training",
    )
    what.add_argument(
        "--replay",
        metavar="CELL",
        nargs="?",
        const="lr-scheduling:124M:50000",
        help="real curves of the bundled data: COLLECTION:MODEL:STEPS, e.g. "
        "lr-scheduling:124M:50000 (default), lr-scheduling:124M:25000, multipowerlaw:100M:24000; "
        "the candidates are the cell's runs, a trial replays the run it is given",
    )
    sp = p.add_argument_group("candidates")
    sp.add_argument("--space", metavar="JSON", help="a ScheduleSpace description (to_json form)")
    sp.add_argument("--peak-lr", type=_floats, metavar="LR[,LR...]")
    sp.add_argument("--total-steps", type=_ints, metavar="N[,N...]")
    sp.add_argument(
        "--warmup-steps",
        type=_numbers,
        default=[0],
        metavar="N[,N...]",
        help="steps, or fractions of total_steps below 1",
    )
    sp.add_argument(
        "--kinds",
        metavar="KIND[,KIND...]",
        help="schedule kinds from the default grids (default: all of them)",
    )
    se = p.add_argument_group("search")
    se.add_argument(
        "--metric", default=None, help="reported loss (default eval_loss; loss for --simulate)"
    )
    se.add_argument(
        "--law",
        default=None,
        help="momentum, multipower, power, lrnoise or auto (default: lrnoise when the space "
        "spans several peak LRs, else momentum)",
    )
    se.add_argument("--lam", type=float, default=None, help="momentum law decay factor")
    se.add_argument("--top-k", type=int, default=3)
    se.add_argument(
        "--pilot-steps",
        type=_fraction_or_steps,
        default=0.5,
        help="run pilots this far: a fraction of the longest horizon (default 0.5; 1.0 = "
        "in full) or a step count",
    )
    se.add_argument(
        "--prior",
        metavar="FIT_OR_RECORD_JSON",
        help="a saved Fit or the callback's record.json: rank before any pilot",
    )
    se.add_argument("--margin", type=float, default=0.0)
    se.add_argument(
        "--optimized",
        action="store_true",
        help="add the law's own optimal schedule (lrlaw optimize) to the candidates",
    )
    se.add_argument("--no-stopper", action="store_true", help="do not stop losing trials early")
    se.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="trials run exactly this many steps (others are refused)",
    )
    ra = p.add_argument_group("Ray")
    ra.add_argument(
        "--address", default=None, help="ray.init address ('auto' joins this machine's cluster)"
    )
    ra.add_argument(
        "--storage-path", default=None, help="Tune results (shared path or s3:// URI on a cluster)"
    )
    ra.add_argument("--name", default="lrlaw_search")
    ra.add_argument("--max-concurrent", type=int, default=None)
    ra.add_argument("--cpus-per-trial", type=float, default=1.0)
    ra.add_argument("--gpus-per-trial", type=float, default=0.0)
    ra.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.add_argument("--output-dir", default="lrlaw_search")
    p.add_argument("--top", type=int, default=10, help="rows of the ranking to print")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run, handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """The ``search`` handler: 0 on success, 2 with one ``lrlaw: error: ...`` line otherwise."""
    try:
        return _run(args)
    except (CliError, ValueError, ImportError, FileNotFoundError, RuntimeError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {text}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import logging

    from tune_search.api import search_schedules
    from tune_search.space import DEFAULT_KINDS, ScheduleSpace, SpaceError, default_law

    logging.getLogger("tune_search").setLevel(logging.INFO if args.verbose else logging.WARNING)
    chosen = [x for x in (args.setup, args.trainable, args.simulate, args.replay) if x]
    if len(chosen) != 1:
        raise CliError("give exactly one of --setup, --trainable, --simulate, --replay")
    if args.replay and args.optimized:
        raise CliError(
            "--optimized adds a schedule no replayed run has: it needs trials that train "
            "(--setup, --trainable or --simulate), not --replay"
        )
    kwargs: dict[str, Any] = {}
    metric = args.metric
    law_options = {"lam": args.lam} if args.lam is not None else None
    world = None
    if args.simulate:
        from tune_search.simulate import PRESETS, SimulatedWorld

        if args.simulate not in PRESETS:
            raise CliError(f"--simulate takes one of {sorted(PRESETS)}, not {args.simulate!r}")
        world = SimulatedWorld(model=args.simulate)
        metric = metric or "loss"
        kwargs["trainable"] = world.trainable(metric=metric)
    elif args.replay:
        from tune_search.replay import ReplayError, ReplayWorld

        try:
            world = ReplayWorld.from_text(args.replay)
        except ReplayError as exc:
            raise CliError(str(exc)) from None
        metric = metric or "loss"
        kwargs["trainable"] = world.trainable(metric=metric)
        if not args.space and not (args.peak_lr or args.total_steps or args.kinds):
            kwargs["space"] = world.space()
            kwargs["pilots"] = world.pilots()
            if args.pilot_steps == 0.5:  # the default: run the world's pilots as it says
                args.pilot_steps = world.pilot_steps
    elif args.trainable:
        kwargs["trainable"] = _load_object(args.trainable, "--trainable")
    else:
        setup = _load_object(args.setup, "--setup")()
        if not isinstance(setup, dict) or "model_init" not in setup or "train_dataset" not in setup:
            raise CliError(
                f"--setup {args.setup} must return a dict with model_init and "
                "train_dataset (and eval_dataset, training_args, data_collator)"
            )
        unknown = set(setup) - {
            "model_init",
            "train_dataset",
            "eval_dataset",
            "training_args",
            "data_collator",
        }
        if unknown:
            raise CliError(f"--setup {args.setup} returned unknown keys {sorted(unknown)}")
        kwargs.update(setup)
    metric = metric or "eval_loss"

    try:
        if "space" in kwargs:
            space = kwargs.pop("space")
        elif args.space:
            path = Path(args.space)
            if not path.is_file():
                raise CliError(f"--space {args.space}: no such file")
            space = ScheduleSpace.from_json(path.read_text())
        else:
            peak = args.peak_lr or ([world.peak_lr] if world else None)
            total = args.total_steps or ([world.total_steps] if world else None)
            warm = (
                args.warmup_steps if args.warmup_steps != [0] or not world else [world.warmup_steps]
            )
            if not peak or not total:
                raise CliError("give --space, or --peak-lr and --total-steps")
            kinds = None
            if args.kinds:
                names = [k.strip() for k in args.kinds.split(",") if k.strip()]
                missing = [k for k in names if k not in DEFAULT_KINDS]
                if missing:
                    raise CliError(
                        f"--kinds: no default grid for {missing}; known: "
                        f"{', '.join(DEFAULT_KINDS)} (use --space for others)"
                    )
                kinds = {k: DEFAULT_KINDS[k] for k in names}
            space = ScheduleSpace(peak, total, warm, kinds)
        if len(space) == 0:
            detail = f" (e.g. {space.skipped[0][1]})" if space.skipped else ""
            raise CliError(f"the schedule space holds no candidates{detail}")
    except SpaceError as exc:
        raise CliError(str(exc)) from None

    law = args.law or default_law(space.candidates())
    if world is not None and law_options is None:
        law_options = world.fit_options(law) or None
    resources = {"cpu": args.cpus_per_trial}
    if args.gpus_per_trial:
        resources["gpu"] = args.gpus_per_trial
    result = search_schedules(
        space=space,
        metric=metric,
        law=law,
        law_options=law_options,
        pilot_steps=args.pilot_steps,
        top_k=args.top_k,
        prior_fit=args.prior,
        margin=args.margin,
        optimized=args.optimized,
        stopper=not args.no_stopper,
        max_concurrent_trials=args.max_concurrent,
        resources_per_trial=resources,
        output_dir=args.output_dir,
        storage_path=args.storage_path,
        name=args.name,
        address=args.address,
        resume=args.resume,
        max_steps=args.max_steps,
        verbose=args.verbose,
        **kwargs,
    )
    rec = result.recommendation
    if result.ranking is not None:
        print(result.ranking.to_markdown(args.top))
        print()
    print(f"recommended ({rec['source']}): {rec['text']}")
    hf = result.recommended_hf
    if hf["exact"]:
        print(
            f"transformers: lr_scheduler_type={hf['lr_scheduler_type']!r} "
            f"lr_scheduler_kwargs={json.dumps(hf['lr_scheduler_kwargs'])}"
        )
    else:
        print(f"transformers: no built-in scheduler is exact; use {hf['use']}")
    for key in ("recommended", "report", "figure"):
        if key in result.files:
            print(f"{key}: {result.files[key]}")
    if args.replay:
        _print_replay_truth(world, result)
    for msg in result.messages:
        print(f"note: {msg}", file=sys.stderr)
    return 0


def _print_replay_truth(world: Any, result: Any) -> None:
    """What a replay can say and a real search cannot: how good the choice was."""
    best_text, best = world.best()
    chosen = str(result.recommended)
    runs = result.searcher.compute_steps / world.total_steps
    grid = len(world.candidates())
    if world.replayable(chosen) and chosen in {str(c) for c in world.candidates()}:
        regret = f"{world.regret(chosen):.4f} nats above"
    else:
        regret = "not a candidate of the cell; compare with"
    print(
        f"replay {world.name}: the recommendation is {regret} the cell's best run "
        f"({best_text}, final {best:.4f}); compute {runs:.2f} full runs, the grid {grid}"
    )


def _load_object(spec: str, flag: str) -> Any:
    if ":" not in spec:
        raise CliError(f"{flag} takes MODULE:FUNCTION, got {spec!r}")
    module_name, attr = spec.split(":", 1)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"{flag} {spec}: cannot import {module_name!r}: {exc}") from None
    obj = getattr(module, attr, None)
    if obj is None or not callable(obj):
        raise CliError(f"{flag} {spec}: {module_name} has no callable {attr!r}")
    return obj


def _split(text: str) -> list[str]:
    return [t for t in (x.strip() for x in text.split(",")) if t]


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _split(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _split(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, got {text!r}"
        ) from None


def _numbers(text: str) -> list[float | int]:
    out: list[float | int] = []
    for t in _split(text):
        try:
            out.append(int(t))
        except ValueError:
            try:
                out.append(float(t))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected numbers, got {t!r}") from None
    return out


def _fraction_or_steps(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a fraction or a step count, got {text!r}"
            ) from None


def main(argv: list[str] | None = None) -> int:
    """``python -m tune_search.cli search ...`` (the same as ``lrlaw search ...``)."""
    parser = argparse.ArgumentParser(prog=PROG)
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
