"""What the callback records of a run, and its checkpoint codec.

The LR of every optimizer update, the losses logged or evaluated (in the
:class:`~hf_lrlaw.LossCurve` step convention), divergence and other events, the scheduler's plan
for the steps to come, and the history of the fits' predictions. Step conventions
(transformers 5.x; ``g`` = the Trainer's ``global_step``, updates done):

* the LR the optimizer holds at ``on_optimizer_step`` of update ``g`` is ``lrs[g]``;
* an evaluation at ``g`` measured the model after ``g`` updates: step ``g - 1``, a point value;
* the train ``loss`` logged at ``g`` is the mean over the updates since the previous train log
  ``p``: step ``g - 2`` with window ``g - p`` (the loss of update ``k`` is computed before it).
  The first log of a run also averages the untrained model's loss: it is left out.
"""

from __future__ import annotations

import base64
import logging
import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["STATE_VERSION", "Recorder", "finite"]

logger = logging.getLogger("hf_lrlaw.callback")

STATE_VERSION = 1


def finite(x: Any) -> float | None:
    """``x`` as a float if it is a finite number, else None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class Recorder:
    """The record of one training run (see the module docstring for the step conventions).

    Args:
        max_steps: the run's planned number of updates.
        planned: the scheduler's planned LR at each of them (NaN where unknown).
        plan_source: how the plan was found (for the record).
        metric: the loss the fits use (``"loss"`` or an eval loss key).
        scheduler: the Trainer's scheduler (its ``last_epoch`` tells skipped scheduler steps).
        start_step: the global step training starts from (a resumed run).
    """

    def __init__(
        self,
        max_steps: int,
        planned: np.ndarray,
        plan_source: str,
        metric: str,
        scheduler: Any = None,
        start_step: int = 0,
    ) -> None:
        self.max_steps = int(max_steps)
        self.lrs = np.full(self.max_steps, np.nan)
        self.planned = planned
        self.plan_source = plan_source
        self.metric = metric
        self.scheduler = scheduler
        self.points: dict[str, dict[int, tuple[float, int]]] = {}
        self.prev_train_log = int(start_step)
        self.done = int(start_step)  # updates done (the Trainer's global_step)
        self.version = 0  # bumped at each new point of the fitted metric
        self.events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.diverged_at: int | None = None
        self.stopped_at: int | None = None
        self._said: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Trainer's callbacks: the scheduler (a training object) stays behind.
        return {**self.__dict__, "scheduler": None}

    # -- messages ----------------------------------------------------------------------------

    def event(
        self, g: int, kind: str, message: str, *, warn: bool = False, once: bool = False
    ) -> None:
        """Add an event to the record (and log it as a warning with ``warn``)."""
        if once and any(e["kind"] == kind for e in self.events):
            return
        self.events.append({"step": int(g), "kind": kind, "message": message})
        if warn:
            logger.warning("LRLawCallback: %s", message)

    def say(self, key: str, message: str, *, warn: bool = False) -> None:
        """Log ``message`` once per ``key`` (not an event of the record)."""
        if key in self._said:
            return
        self._said.add(key)
        (logger.warning if warn else logger.info)(message)

    # -- recording ---------------------------------------------------------------------------

    def record_lr(self, g: int, lr: Any) -> None:
        """The LR the optimizer used for update ``g``."""
        if g >= len(self.lrs):
            grow = max(g + 1, 2 * len(self.lrs)) - len(self.lrs)
            self.lrs = np.concatenate([self.lrs, np.full(grow, np.nan)])
        self.lrs[g] = lr if isinstance(lr, float) else float(lr)

    def record_train_loss(self, g: int, logs: Mapping[str, Any]) -> bool:
        """The train loss the Trainer logged at ``g``; True when it shows the run diverged now."""
        window, self.prev_train_log = g - self.prev_train_log, g
        value = logs["loss"]
        grad_norm = logs.get("grad_norm")
        bad_grad = grad_norm is not None and finite(grad_norm) is None
        diverged = False
        if finite(value) is None or bad_grad:
            what = f"loss {value}" if finite(value) is None else f"grad_norm {grad_norm}"
            if self.diverged_at is None:
                self.diverged_at = g
                diverged = True
                self.event(
                    g,
                    "divergence",
                    f"the Trainer logged {what} at step {g}: the run diverged; "
                    "predictions use the finite points before it",
                    warn=True,
                )
            if finite(value) is None:
                return diverged
        if window >= 1 and g - window - 1 >= 0:  # the first log averages the untrained model
            self.record_point("loss", g - 2, value, window, g)
        return diverged

    def record_eval(self, g: int, metrics: Mapping[str, Any]) -> None:
        """Every ``eval_*loss`` of an evaluation at global step ``g``."""
        for key, value in metrics.items():
            if key.startswith("eval_") and key.endswith("loss"):
                self.record_point(key, g - 1, value, 1, g)

    def record_point(self, metric: str, step: int, value: Any, window: int, g: int) -> None:
        v = finite(value)
        if v is None:
            if metric != "loss" and self.diverged_at is None:
                self.diverged_at = g
                self.event(g, "divergence", f"{metric} is {value} at step {g}", warn=True)
            return
        self.points.setdefault(metric, {})[int(step)] = (v, int(window))
        if metric == self.metric:
            self.version += 1

    def check_logged_lr(self, g: int, logged: Any) -> None:
        """Compare the LR the Trainer logged at ``g`` with the one recorded (or fill a gap)."""
        mine = self.lrs[g - 1] if g - 1 < len(self.lrs) else np.nan
        value = finite(logged)
        if value is None:
            return
        if np.isnan(mine):
            self.lrs[g - 1] = value
            self.say(
                "lr_gap",
                "LRLawCallback: the optimizer's LR was not captured at some steps; using the "
                "logged one",
                warn=True,
            )
        elif abs(mine - value) > 1e-12 * max(abs(value), 1e-30):
            self.event(
                g,
                "lr_mismatch",
                f"logged LR {value!r} at step {g} but the optimizer used {mine!r}; the recorded "
                "one is kept",
                warn=True,
                once=True,
            )

    # -- views ---------------------------------------------------------------------------------

    def n_points(self, metric: str | None = None, since: int = 0) -> int:
        points = self.points.get(metric or self.metric, {})
        return len(points) if since <= 0 else sum(1 for s in points if s >= since)

    def arrays(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps, losses and windows of ``metric``, in step order."""
        items = sorted(self.points.get(metric, {}).items())
        steps = np.array([s for s, _ in items], dtype=np.int64)
        losses = np.array([v for _, (v, _) in items], dtype=np.float64)
        windows = np.array([w for _, (_, w) in items], dtype=np.int64)
        return steps, losses, windows

    # -- the schedule --------------------------------------------------------------------------

    def fill_plan_gaps(self) -> None:
        """Steps the plan does not know (a resumed run with a scheduler stepped on a copy): the
        recorded LRs."""
        n = min(len(self.planned), len(self.lrs))
        gaps = np.isnan(self.planned[:n]) & ~np.isnan(self.lrs[:n])
        self.planned[:n][gaps] = self.lrs[:n][gaps]

    def lrs_for_fit(self) -> np.ndarray:
        """Per-step LRs for updates ``0..max_steps-1``: recorded for the updates done, then the
        scheduler's plan (shifted by any updates whose scheduler step was skipped)."""
        n = min(self.done, self.max_steps)
        out = np.empty(self.max_steps)
        out[:n] = self.lrs[:n]
        lag = self.current_lag(n)
        idx = np.clip(np.arange(n, self.max_steps) - lag, 0, len(self.planned) - 1)
        out[n:] = self.planned[idx] if len(self.planned) else np.nan
        holes = np.isnan(out)
        if np.any(holes):  # steps not captured: take the plan (warned about in check_logged_lr)
            plan = self.planned[np.clip(np.arange(self.max_steps), 0, len(self.planned) - 1)]
            out[holes] = plan[holes]
            out = np.nan_to_num(out, nan=0.0)
        return out

    def check_plan(self, g: int) -> None:
        """Warn once where the LRs the optimizer used differ from the scheduler's plan (skipped
        fp16 steps, an LR set by other code): the recorded ones are the truth."""
        if any(e["kind"] == "lr_plan_mismatch" for e in self.events):
            return
        n = min(g, len(self.lrs), len(self.planned))
        used, plan = self.lrs[:n], self.planned[:n]
        known = ~np.isnan(used) & ~np.isnan(plan)
        scale = np.maximum(np.abs(used), np.abs(plan))
        off = known & (np.abs(used - plan) > 1e-9 * np.where(scale > 0, scale, 1.0))
        if np.any(off):
            k = int(np.argmax(off))
            self.event(
                g,
                "lr_plan_mismatch",
                f"the optimizer used a learning rate other than the scheduler's plan at "
                f"{int(off.sum())} of {n} steps (first at step {k}: {used[k]!r} instead of "
                f"{plan[k]!r}); the recorded LRs are used for the steps done and the plan, "
                f"shifted by {self.current_lag(g)} skipped scheduler step(s), for the rest",
                warn=True,
            )

    def current_lag(self, g: int) -> int:
        """Updates whose scheduler step was skipped (fp16 overflow steps), which shift the rest
        of the plan: updates done minus scheduler steps done."""
        last_epoch = getattr(self.scheduler, "last_epoch", None)
        if not isinstance(last_epoch, int) or isinstance(last_epoch, bool):
            return 0
        return max(0, int(g) - last_epoch)

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """The record as checkpointed state (JSON-ready; the LRs compressed)."""
        n = min(self.done, len(self.lrs))
        return {
            "version": STATE_VERSION,
            "global_step": n,
            "lrs": _encode_floats(self.lrs[:n]),
            "points": {
                m: [[s, v, w] for s, (v, w) in sorted(p.items())] for m, p in self.points.items()
            },
            "events": self.events,
            "history": self.history,
            "stopped_at": self.stopped_at,
            "diverged_at": self.diverged_at,
        }

    def restore(self, saved: Mapping[str, Any] | None, state: Any) -> None:
        """The record up to a resumed run's global step: from the checkpointed state when it is
        there and readable, else rebuilt from the Trainer's ``log_history`` and the plan."""
        g = int(state.global_step)
        if saved is not None and int(saved.get("version", 0)) == STATE_VERSION:
            try:
                lrs = _decode_floats(saved["lrs"])
                n = min(len(lrs), g, len(self.lrs))
                self.lrs[:n] = lrs[:n]
                for metric, rows in saved.get("points", {}).items():
                    self.points[metric] = {
                        int(s): (float(v), int(w)) for s, v, w in rows if int(s) < g
                    }
                self.events = [e for e in saved.get("events", []) if e.get("step", 0) <= g]
                self.history = [h for h in saved.get("history", []) if h.get("step", 0) <= g]
                self.diverged_at = saved.get("diverged_at")
                self.say(
                    "restored",
                    f"LRLawCallback: restored {n} LRs and "
                    f"{sum(len(p) for p in self.points.values())} points from the checkpoint",
                )
                if n == g:
                    return
            except (KeyError, TypeError, ValueError, zlib.error) as exc:
                logger.warning(
                    "LRLawCallback: the checkpointed state is unreadable (%s); rebuilding the "
                    "curve from log_history",
                    exc,
                )
        else:
            self.say(
                "rebuild",
                "LRLawCallback: resuming without the callback's checkpointed state (set "
                "TrainingArguments(restore_callback_states_from_checkpoint=True) to restore "
                "it); the curve before the checkpoint is rebuilt from log_history and the "
                "scheduler's plan",
            )
        self.rebuild_from_log_history(state)

    def rebuild_from_log_history(self, state: Any) -> None:
        """Points and LRs before ``state.global_step`` from the Trainer's ``log_history``; the
        plan fills the LRs no log gives."""
        g_now = int(state.global_step)
        prev = 0
        for entry in state.log_history or []:
            g = entry.get("step")
            if not isinstance(g, int) or g < 1 or g > g_now:
                continue
            if "learning_rate" in entry and np.isnan(self.lrs[g - 1]):
                value = finite(entry["learning_rate"])
                if value is not None:
                    self.lrs[g - 1] = value
            if "loss" in entry:
                window, prev = g - prev, g
                seen = self.points.get("loss", {})
                if window >= 1 and g - window - 1 >= 0 and (g - 2) not in seen:
                    self.record_point("loss", g - 2, entry["loss"], window, g)
            for key, value in entry.items():
                if (
                    key.startswith("eval_")
                    and key.endswith("loss")
                    and (g - 1) not in self.points.get(key, {})
                ):
                    self.record_point(key, g - 1, value, 1, g)
        n = min(g_now, len(self.lrs), len(self.planned))
        gaps = np.isnan(self.lrs[:n])
        self.lrs[:n][gaps] = self.planned[:n][gaps]


def _encode_floats(values: np.ndarray) -> dict[str, Any]:
    raw = np.ascontiguousarray(values, dtype="<f8").tobytes()
    return {
        "encoding": "float64-le/zlib/base64",
        "n": len(values),
        "data": base64.b64encode(zlib.compress(raw, 6)).decode("ascii"),
    }


def _decode_floats(blob: Mapping[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(blob["data"]))
    out = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    if len(out) != int(blob["n"]):
        raise ValueError("corrupt float array in the callback state")
    return out
