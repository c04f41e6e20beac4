"""LossCurve: the per-step learning rates of a run and its observed (step, loss) points, and
the loaders that read curves from files.

* :mod:`~hf_lrlaw.curves.curve` - :class:`LossCurve` and its step convention;
* :mod:`~hf_lrlaw.curves.csv_files` - tidy CSV (``curve_id,step,lr,loss``): :func:`read_csv`,
  :func:`write_csv`;
* :mod:`~hf_lrlaw.curves.trainer_state` - a transformers ``trainer_state.json``:
  :func:`read_trainer_state`;
* :mod:`~hf_lrlaw.curves.loading` - :func:`load`: any of these, or JSON curve records;
* :mod:`~hf_lrlaw.curves.lr_arrays` - per-step LRs from a schedule or from logged LRs.

Bundled public curves: :mod:`hf_lrlaw.datasets`.
"""

from hf_lrlaw.curves.csv_files import read_csv, write_csv
from hf_lrlaw.curves.curve import CurveError, LossCurve
from hf_lrlaw.curves.loading import load
from hf_lrlaw.curves.trainer_state import read_trainer_state

__all__ = ["CurveError", "LossCurve", "load", "read_csv", "read_trainer_state", "write_csv"]
