"""LRLawCallback, a ``transformers.TrainerCallback`` that predicts the final loss of a run while it
trains, and the pieces it is built from:

* :mod:`~hf_lrlaw.callback.callback` - the callback: the Trainer's events, ``state()``, views;
* :mod:`~hf_lrlaw.callback.recording` - what it records (LRs, points, windows, divergence, step
  conventions, the log-history rebuild) and the checkpoint codec;
* :mod:`~hf_lrlaw.callback.plan` - the planned LRs of the Trainer's scheduler;
* :mod:`~hf_lrlaw.callback.jobs`, :mod:`~hf_lrlaw.callback.worker` - a fit's snapshot and the
  background worker that fits from it alone;
* :mod:`~hf_lrlaw.callback.writer` - ``record.json`` and ``fit.png``;
* :mod:`~hf_lrlaw.callback.broadcast` - the DDP decision broadcast;
* :mod:`~hf_lrlaw.callback.options` - its options and the Trainer settings it needs;
* :mod:`~hf_lrlaw.callback.ordering` - its place before the reporting integrations.
"""

from hf_lrlaw._extras import require

require("hf_lrlaw.callback (LRLawCallback)", "hf", "torch", "transformers")

from hf_lrlaw.callback.callback import LRLawCallback  # noqa: E402
from hf_lrlaw.callback.plan import planned_lrs  # noqa: E402
from hf_lrlaw.callback.writer import RECORD_SCHEMA  # noqa: E402

__all__ = ["RECORD_SCHEMA", "LRLawCallback", "planned_lrs"]
