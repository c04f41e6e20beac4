"""Learning-rate schedules as data: :class:`Schedule` (per-step LRs, text and JSON forms, the
transformers and torch adapters), the shape of each kind, and grids of schedules.

* :mod:`~hf_lrlaw.schedules.shapes` - pure per-kind shape functions;
* :mod:`~hf_lrlaw.schedules.kinds` - the registry of kinds, their parameters and checks;
* :mod:`~hf_lrlaw.schedules.text` - the ``kind(name=value, ...)`` text form;
* :mod:`~hf_lrlaw.schedules.schedule` - the :class:`Schedule` value;
* :mod:`~hf_lrlaw.schedules.hf` - Schedule <-> transformers ``TrainingArguments``, both ways;
* :mod:`~hf_lrlaw.schedules.lambda_lr` - a Schedule as a torch ``LambdaLR``;
* :mod:`~hf_lrlaw.schedules.grid` - grids of schedules (``lrlaw rank --space``, ``ScheduleSpace``).
"""

from hf_lrlaw.schedules.grid import Grid, human_round, schedule_grid, span
from hf_lrlaw.schedules.kinds import KINDS, ScheduleError
from hf_lrlaw.schedules.lambda_lr import ScheduleLambda
from hf_lrlaw.schedules.schedule import Schedule, Warmup
from hf_lrlaw.schedules.shapes import (
    DECAY_SHAPES,
    WARMUP_SHAPES,
    constant_curve,
    cosine_curve,
    cyclic_curve,
    inverse_sqrt_curve,
    linear_curve,
    multistep_curve,
    piecewise_curve,
    two_stage_curve,
    warmup_ramp,
    wsd_curve,
)

__all__ = [
    "DECAY_SHAPES",
    "KINDS",
    "WARMUP_SHAPES",
    "Grid",
    "Schedule",
    "ScheduleError",
    "ScheduleLambda",
    "Warmup",
    "constant_curve",
    "cosine_curve",
    "cyclic_curve",
    "human_round",
    "inverse_sqrt_curve",
    "linear_curve",
    "multistep_curve",
    "piecewise_curve",
    "schedule_grid",
    "span",
    "two_stage_curve",
    "warmup_ramp",
    "wsd_curve",
]
