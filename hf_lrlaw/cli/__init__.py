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

Modules: :mod:`~hf_lrlaw.cli.inputs` (what the commands read), :mod:`~hf_lrlaw.cli.schedule_args` (the
``--space`` grammar), :mod:`~hf_lrlaw.cli.commands` (the subcommands),
:mod:`~hf_lrlaw.cli.parser` (the parser; other packages add subcommands through
:func:`register_plugins`: ``lrlaw search`` comes from ``tune_search.cli.add_parser``) and
:mod:`~hf_lrlaw.cli.main`.
"""

from hf_lrlaw.cli.inputs import UsageError, load_curves, parse_curve_spec
from hf_lrlaw.cli.main import main
from hf_lrlaw.cli.parser import build_parser, register_plugins
from hf_lrlaw.cli.schedule_args import parse_space

__all__ = [
    "UsageError",
    "build_parser",
    "load_curves",
    "main",
    "parse_curve_spec",
    "parse_space",
    "register_plugins",
]
