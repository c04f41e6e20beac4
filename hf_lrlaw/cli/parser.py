"""The ``lrlaw`` argument parser, and the subcommands other packages plug in (``lrlaw search``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import textwrap
from pathlib import Path
from typing import Any

from hf_lrlaw._version import __version__
from hf_lrlaw.cli import commands
from hf_lrlaw.cli.inputs import UsageError, level, min_step, positive_int
from hf_lrlaw.cli.schedule_args import SPACE_HELP
from hf_lrlaw.laws import available_laws

__all__ = ["PLUGINS", "build_parser", "register_plugins"]

#: subcommand plug-ins: command -> (module with ``add_parser(subparsers)``, help line)
PLUGINS: dict[str, tuple[str, str]] = {
    "search": ("tune_search.cli", "search schedules with Ray Tune, the law as surrogate"),
}


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


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--law",
        default="auto",
        choices=["auto", *available_laws()],
        help="the law to fit (default: auto, the best leave-one-curve-out error with "
        "two or more curves, else momentum)",
    )
    p.add_argument(
        "--option",
        action="append",
        metavar="NAME=VALUE",
        help="a law option, repeatable (momentum: lam=0.999, warmup=peak; multipower: "
        "warmup=exclude|include, exact=false)",
    )
    p.add_argument(
        "--until",
        metavar="STEP|FRACTION",
        help="fit on each curve up to this step (an integer) or this fraction of its "
        "LR array (a number in (0, 1], e.g. 0.5)",
    )
    p.add_argument(
        "--min-step",
        type=min_step,
        default=0,
        metavar="STEP",
        help="leave out the points before this step (a first phase no law describes, e.g. a "
        "small model's plateau); points measured before any training at a non-zero LR (step 0 "
        "of a warmup from LR 0) are always left out, with a note",
    )
    p.add_argument(
        "--metric",
        metavar="NAME",
        help="which loss of a trainer_state.json to fit: loss (the train loss, default) or an "
        "evaluation loss such as eval_loss",
    )
    p.add_argument("--n-starts", type=positive_int, default=4, help="L-BFGS-B starts (default 4)")
    p.add_argument(
        "--weights",
        choices=["points", "curves"],
        default="points",
        help="every point counts once (default) or every curve counts the same",
    )
    p.add_argument(
        "--prior",
        metavar="SPEC",
        help="none (default); default (learned on the bundled public curves: use it "
        "for the first part of a run); default:DATASET; or a prior JSON (lrlaw "
        "prior), a saved fit or a callback record of an earlier run",
    )


def _add_schedule_inputs(p: argparse.ArgumentParser, *, space: bool) -> None:
    p.add_argument(
        "--schedule",
        action="append",
        metavar="TEXT",
        help="a schedule, repeatable, e.g. 'cosine(peak_lr=3e-4, total_steps=24000, "
        "warmup_steps=2160, final_ratio=0.1)'; with a fit of one run, peak_lr, "
        "total_steps and warmup_steps default to that run's: 'cosine(final_ratio=0.1)'",
    )
    p.add_argument(
        "--schedules",
        action="append",
        metavar="FILE",
        help="a file with one schedule text a line (blank lines and # comments are "
        "ignored; '-' reads stdin); repeatable",
    )
    if space:
        p.add_argument(
            "--space",
            action="append",
            metavar="SPEC",
            help="a grid of schedules (see below); repeatable",
        )


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

    p = sub.add_parser(
        "fit",
        help="fit a law to loss curves and save it",
        description=_wrap("Fit a law jointly to CURVES; print its summary; save it with -o."),
        epilog=_DATASET_HELP,
        formatter_class=fmt,
    )
    p.add_argument("curves", nargs="+", metavar="CURVES", help="files, folders or dataset: specs")
    _add_fit_options(p)
    p.add_argument("-o", "--output", metavar="FIT.json", help="where to save the fit")
    p.set_defaults(func=commands.cmd_fit)

    p = sub.add_parser(
        "prior",
        help="a prior from earlier fits (a previous run, a size sweep)",
        description=_wrap(
            "Make a prior for 'lrlaw fit --prior' from saved fits "
            "(each of runs at one peak LR): from earlier runs of the same recipe "
            "(several are pooled), or, with --sizes and --target, from full fits of "
            "smaller models (one fit per model size and peak LR; each transfer "
            "feature is regressed on log size and read off at the target size)."
        ),
        formatter_class=fmt,
    )
    p.add_argument("fits", nargs="+", metavar="FIT.json", help="saved fits or callback records")
    p.add_argument(
        "--sizes", metavar="N,N,...", help="each fit's model size, in order (125M, 1.3B)"
    )
    p.add_argument("--target", metavar="N", help="the model size the prior is for")
    p.add_argument("-o", "--output", metavar="PRIOR.json", help="where to save the prior")
    p.set_defaults(func=commands.cmd_prior)

    p = sub.add_parser(
        "backtest",
        help="how well early fits predict your finished runs",
        description=_wrap(
            "Cut every finished run in CURVES to its first --at "
            "fractions of steps (its LR schedule stays known, as in a live run), fit "
            "each alone and predict its last logged loss: per run the prediction, "
            "its interval and its error; per fraction the mean and worst error and "
            "how often the interval held the truth. Check your recipe with it before "
            "trusting live predictions."
        ),
        epilog=_DATASET_HELP,
        formatter_class=fmt,
    )
    p.add_argument("curves", nargs="+", metavar="CURVES", help="files, folders or dataset: specs")
    p.add_argument(
        "--law",
        default="momentum",
        choices=available_laws(),
        help="the law to fit (default: momentum, the callback's)",
    )
    p.add_argument(
        "--option", action="append", metavar="NAME=VALUE", help="a law option, repeatable"
    )
    p.add_argument(
        "--prior",
        default="default",
        metavar="SPEC",
        help="as for 'lrlaw fit' (default here: default, as the callback uses)",
    )
    p.add_argument(
        "--at",
        default="0.25,0.5",
        metavar="F,F,...",
        help="fractions of each run to fit on (default 0.25,0.5)",
    )
    p.add_argument("--level", type=level, default=0.9, help="interval probability (0.9)")
    p.add_argument("-o", "--output", metavar="REPORT.json|.csv|.md", help="also write the report")
    p.set_defaults(func=commands.cmd_backtest)

    p = sub.add_parser(
        "predict",
        help="predict the loss of schedules from a saved fit",
        description=_wrap(
            "The predicted final loss (or the loss at --steps) of each schedule, with its interval."
        ),
        formatter_class=fmt,
    )
    p.add_argument("fit", metavar="FIT.json")
    _add_schedule_inputs(p, space=False)
    p.add_argument("--steps", metavar="S1,S2,...", help="steps to predict at (default: the last)")
    p.add_argument("--level", type=level, default=0.9, help="interval probability (0.9)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-o", "--output", metavar="FILE.json|.csv", help="also write the predictions")
    p.set_defaults(func=commands.cmd_predict)

    p = sub.add_parser(
        "rank",
        help="rank candidate schedules by predicted final loss",
        description=_wrap(
            "Rank candidate schedules (from --schedules, --space and "
            "--schedule) by the final loss the fit predicts."
        ),
        epilog=SPACE_HELP,
        formatter_class=fmt,
    )
    p.add_argument("fit", metavar="FIT.json")
    _add_schedule_inputs(p, space=True)
    p.add_argument(
        "--horizon",
        metavar="H,H,...",
        help="put every candidate at each of these horizons (steps), e.g. 25000,50000",
    )
    p.add_argument("--top", type=positive_int, default=10, help="rows to print (10)")
    p.add_argument("--level", type=level, default=0.9, help="interval probability (0.9)")
    p.add_argument("-o", "--output", metavar="TABLE.csv|.md|.json", help="write the whole ranking")
    p.add_argument("--plot", metavar="FIG.png", help="also plot the top candidates")
    p.set_defaults(func=commands.cmd_rank)

    p = sub.add_parser(
        "plot",
        help="plot a fit against curves, with predicted schedules",
        description=_wrap(
            "Plot a saved fit (or one fitted on the fly on CURVES) with "
            "the curves and the predicted curves of --schedule; the first argument is "
            "taken as the saved fit when it is one."
        ),
        epilog=_DATASET_HELP,
        formatter_class=fmt,
    )
    p.add_argument("inputs", nargs="*", metavar="[FIT.json] CURVES")
    p.add_argument(
        "--fit",
        metavar="FIT.json",
        help="the saved fit (else the first argument, or a fit on the fly)",
    )
    _add_schedule_inputs(p, space=True)
    p.add_argument("--label", action="append", help="a legend label per --schedule, in order")
    _add_fit_options(p)
    p.add_argument("--level", type=level, default=0.9, help="band probability (0.9)")
    p.add_argument("--title", help="the figure's headline")
    p.add_argument(
        "--max-points", type=positive_int, default=400, help="steps evaluated per curve (400)"
    )
    p.add_argument("-o", "--output", required=True, metavar="FIG.png|.pdf|.svg")
    p.set_defaults(func=commands.cmd_plot)

    p = sub.add_parser(
        "evaluate",
        help="accuracy of a saved fit on curves",
        description=_wrap(
            "Per curve, the mean relative error of the fit on the points "
            "it did not see, and the error and interval of the last point."
        ),
        epilog=_DATASET_HELP,
        formatter_class=fmt,
    )
    p.add_argument("fit", metavar="FIT.json")
    p.add_argument("curves", nargs="+", metavar="CURVES")
    p.add_argument("--level", type=level, default=0.9, help="interval probability (0.9)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-o", "--output", metavar="REPORT.json|.md", help="also write the report")
    p.add_argument("--plot", metavar="FIG.png", help="predicted vs observed last losses")
    p.set_defaults(func=commands.cmd_evaluate)

    p = sub.add_parser(
        "peak-lr",
        help="the optimal peak LR of schedule families, per horizon",
        description=_wrap(
            "The peak LR that minimises the predicted final loss of each --schedule family "
            "(its shape; the peak LR is searched) at each --horizon, with an interval; with "
            "several families, the best (peak LR, schedule) pair per horizon. Needs a fit of a "
            "law that carries the peak LR across runs: lrlaw fit RUNS --law lrnoise, on runs "
            "of two or more peak LRs. Horizons are optimizer steps at the fitted runs' batch "
            "size (batch size is not modelled)."
        ),
        formatter_class=fmt,
    )
    p.add_argument("fit", metavar="FIT.json")
    p.add_argument(
        "--schedule",
        action="append",
        required=True,
        metavar="FAMILY",
        help="a schedule family, repeatable: 'wsd(decay_fraction=0.2)', 'cosine', ... (the "
        "horizon and warmup default to the fitted runs' where they share them)",
    )
    p.add_argument(
        "--horizon", metavar="H,H,...", help="horizons in steps (default: the fitted runs')"
    )
    p.add_argument("--level", type=level, default=0.9, help="interval probability (0.9)")
    p.add_argument("-o", "--output", metavar="FILE.json|.csv|.md", help="also write the table")
    p.add_argument(
        "--plot", metavar="FIG.png", help="the optimal LR against the horizon (Time Transfer)"
    )
    p.set_defaults(func=commands.cmd_peak_lr)

    p = sub.add_parser(
        "optimize",
        help="the law's own optimal schedule (free-form, saved as knots)",
        description=_wrap(
            "The LR curve after warmup that minimises the fit's predicted final loss (Luo et "
            "al. 2025), kept non-increasing and above --final-lr, compared with the best of a "
            "grid of WSD, cosine and linear schedules. Writes a JSON whose 'schedule' is the "
            "schedule's text (a piecewise-linear schedule of a few dozen knots), as "
            "recommended.json: examples/finetune_with_recommended.py --recommended FILE trains "
            "with it. Length, peak LR and warmup default to the fitted runs'."
        ),
        formatter_class=fmt,
    )
    p.add_argument("fit", metavar="FIT.json")
    p.add_argument("--total-steps", type=positive_int, help="length of the run")
    p.add_argument(
        "--peak-lr",
        metavar="LR|LOW,HIGH",
        help="the peak LR, or a range searched with it (only a law fitted across peak LRs, "
        "--law lrnoise, can choose it)",
    )
    p.add_argument("--warmup-steps", type=int, metavar="STEPS", help="warmup steps (kept)")
    p.add_argument(
        "--final-lr", type=float, metavar="LR", help="the lowest LR (default: 0.1%% of the peak)"
    )
    p.add_argument("--no-monotone", action="store_true", help="let the LR rise again after warmup")
    p.add_argument("--knots", type=positive_int, default=48, help="knots of the curve (48)")
    p.add_argument("--level", type=level, default=0.9, help="interval probability (0.9)")
    p.add_argument("-o", "--output", metavar="SCHEDULE.json", help="write the optimum")
    p.add_argument("--plot", metavar="FIG.png", help="the optimum against the grid's best")
    p.set_defaults(func=commands.cmd_optimize)

    p = sub.add_parser("datasets", help="list the bundled public loss curves")
    p.add_argument("name", nargs="?", help="list the curves of this data set")
    p.set_defaults(func=commands.cmd_datasets)

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
                raise UsageError(
                    f"'lrlaw {name}' needs {module_name}, which cannot be imported: {exc}"
                ) from None
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
