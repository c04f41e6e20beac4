"""The search's bookkeeping: every trial's record and reported curve, and the law fitted jointly
on them (:class:`CurveBook`, shared by the searcher's policy, the stopper and the report).

A trial reports ``{"step": s, <metric>: loss}`` (optionally ``"window": w``) at its logging
steps; ``s`` follows the :class:`~hf_lrlaw.LossCurve` convention (the loss after updates
``0..s``), and the trial's per-step LRs come from its schedule text. Bad reports are refused one
by one with a message, never by failing the search.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.fit_result import Fit
from hf_lrlaw.fitting import ANNEAL_INFORMATIVE, fit
from hf_lrlaw.schedules import Schedule, ScheduleError
from hf_lrlaw.threads import numpy_blas_single_thread
from tune_search.branching import CHECKPOINTS_KEY, decode_checkpoints

__all__ = [
    "CANDIDATE_ROLES",
    "DIVERGED",
    "DIVERGENCE_RATIO",
    "DIVERGENCE_REPORTS",
    "ERROR",
    "FINISHED",
    "RUNNING",
    "STOPPED",
    "CurveBook",
    "TrialRecord",
    "parse_schedules",
    "schedule_of",
]

logger = logging.getLogger("tune_search")


# statuses of a trial record
RUNNING, FINISHED, STOPPED, ERROR, DIVERGED = "running", "finished", "stopped", "error", "diverged"
CANDIDATE_ROLES = ("candidate", "fallback")  # the roles of full runs the law chose
# A run has diverged when its loss stays this far above its lowest so far for this many reports
# in a row (the 124M grid's 5e-3 run: 4.87 at 1.2k steps, then 7.4-7.8 to the end); a single
# spike that recovers is not a divergence.
DIVERGENCE_RATIO = 1.2
DIVERGENCE_REPORTS = 3


@dataclass
class TrialRecord:
    """One trial: its schedule, role and reported curve."""

    trial_id: str
    schedule: str
    role: str = "candidate"  # pilot | candidate | fallback | prior | external
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    status: str = RUNNING
    note: str = ""
    steps_run: int = 0
    restarts: int = 0
    completed: bool = False
    # The law's final-loss prediction when the trial was suggested (before it ran): mean, low, high.
    predicted: tuple[float, float, float] | None = None
    # That interval widened by the law's error measured on the search's earlier runs: low, high.
    calibrated: tuple[float, float] | None = None
    # Resumed from another trial's checkpoint after this many updates: (parent trial id, k).
    branch: tuple[str, int] | None = None
    # The checkpoints the trial reported: update count k -> where (tune_search.branching).
    checkpoints: dict[int, str] = field(default_factory=dict)
    # The update counts it was asked to save a checkpoint at.
    planned: list[int] = field(default_factory=list)
    # (points scanned, their lowest usable loss, restarts then): diverging() stays O(1) per report
    _low: tuple[int, float, int] = field(
        default=(0, math.inf, 0), init=False, repr=False, compare=False
    )

    @property
    def running(self) -> bool:
        return not self.completed

    @property
    def total_steps(self) -> int:
        return schedule_of(self.schedule).total_steps

    @property
    def compute(self) -> int:
        """The updates this trial ran itself (a branch does not pay for its parent's)."""
        return max(0, self.steps_run - (self.branch[1] if self.branch else 0))

    @property
    def final_loss(self) -> float | None:
        """The loss at the schedule's end, if the trial got there with a finite loss: reported
        at its last step, or at its last logging step when no further one fits before the end
        (the bundled 50,000-step runs: evals every 200 steps, the last at update 49,800)."""
        if not self.steps or not math.isfinite(self.losses[-1]):
            return None
        last, end = self.steps[-1], self.total_steps - 1
        if last == end:
            return self.losses[-1]
        if len(self.steps) >= 2 and last < end <= last + (last - self.steps[-2]):
            return self.losses[-1]
        return None

    def add_point(self, step: int, loss: float, window: int) -> bool:
        """Record a reported point; False when it is one seen already. A step at or before the
        last one means the trial restarted (a retry, a resumed experiment): its later points go."""
        self.steps_run = max(self.steps_run, step + 1)
        if self.steps and step == self.steps[-1]:
            if self.losses[-1] == loss or (math.isnan(loss) and math.isnan(self.losses[-1])):
                return False  # the same result seen twice (scheduler then searcher)
            self.losses[-1], self.windows[-1] = loss, window
            return True
        if self.steps and step < self.steps[-1]:
            keep = [i for i, s in enumerate(self.steps) if s < step]
            self.steps = [self.steps[i] for i in keep]
            self.losses = [self.losses[i] for i in keep]
            self.windows = [self.windows[i] for i in keep]
            self.restarts += 1
            if self.status == DIVERGED:  # the restart runs again from before the divergence
                self.status = RUNNING
                self.note = "" if self.note.startswith("diverged") else self.note
        self.steps.append(step)
        self.losses.append(loss)
        self.windows.append(window)
        return True

    def diverging(self) -> str | None:
        """Why the trial's curve says it diverged: a NaN/inf/non-positive loss, or its last
        ``DIVERGENCE_REPORTS`` losses all above ``DIVERGENCE_RATIO`` times its lowest before
        them; None while it trains."""
        if not self.losses:
            return None
        last = self.losses[-1]
        if not (math.isfinite(last) and last > 0):
            return f"reported a loss of {last!r} at step {self.steps[-1]}"
        n = DIVERGENCE_REPORTS
        if len(self.losses) <= n:
            return None
        low = self._lowest_before(len(self.losses) - n)
        if not math.isfinite(low):
            return None
        recent = self.losses[-n:]
        if all(math.isfinite(v) and v > DIVERGENCE_RATIO * low for v in recent):
            at = self.steps[self.losses.index(low)]
            return (
                f"its loss rose from {low:.4g} (step {at}) to {recent[-1]:.4g} (step "
                f"{self.steps[-1]}) and stayed above {DIVERGENCE_RATIO:g}x for {n} reports"
            )
        return None

    def _lowest_before(self, end: int) -> float:
        """The lowest finite positive loss of the first ``end`` points (inf if none), scanning
        only the points added since the last call (a restart rescans)."""
        scanned, low, restarts = self._low
        if restarts != self.restarts or scanned > end:
            scanned, low = 0, math.inf
        for v in self.losses[scanned:end]:
            if math.isfinite(v) and 0 < v < low:
                low = v
        self._low = (end, low, self.restarts)
        return low

    def summary(self) -> dict[str, Any]:
        """What a report shows of the trial: id, schedule, role, status, steps, final loss."""
        return {
            "trial_id": self.trial_id,
            "schedule": self.schedule,
            "role": self.role,
            "status": self.status,
            "steps_run": self.steps_run,
            "total_steps": self.total_steps,
            "final_loss": self.final_loss,
            "note": self.note,
            "predicted": None if self.predicted is None else list(self.predicted),
            "calibrated": None if self.calibrated is None else list(self.calibrated),
            "branch": None if self.branch is None else list(self.branch),
            "compute": self.compute,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "schedule": self.schedule,
            "role": self.role,
            "steps": list(self.steps),
            "losses": list(self.losses),
            "windows": list(self.windows),
            "status": self.status,
            "note": self.note,
            "steps_run": self.steps_run,
            "restarts": self.restarts,
            "completed": self.completed,
            "predicted": None if self.predicted is None else list(self.predicted),
            "calibrated": None if self.calibrated is None else list(self.calibrated),
            "branch": None if self.branch is None else list(self.branch),
            "checkpoints": [[k, w] for k, w in sorted(self.checkpoints.items())],
            "planned": list(self.planned),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialRecord:
        rec = cls(
            **{
                k: d[k]
                for k in (
                    "trial_id",
                    "schedule",
                    "role",
                    "steps",
                    "losses",
                    "windows",
                    "status",
                    "note",
                    "steps_run",
                    "restarts",
                    "completed",
                )
                if k in d
            }
        )
        if d.get("predicted") is not None:
            rec.predicted = tuple(float(v) for v in d["predicted"])
        if d.get("calibrated") is not None:
            rec.calibrated = tuple(float(v) for v in d["calibrated"])
        if d.get("branch") is not None:
            rec.branch = (str(d["branch"][0]), int(d["branch"][1]))
        rec.checkpoints = {int(k): str(w) for k, w in d.get("checkpoints", [])}
        rec.planned = [int(k) for k in d.get("planned", [])]
        return rec


_SCHEDULES: dict[str, Schedule] = {}


def schedule_of(text: str) -> Schedule:
    """The Schedule of a trial's schedule text (parsed once, cached)."""
    s = _SCHEDULES.get(text)
    if s is None:
        s = Schedule.parse(text)
        if len(_SCHEDULES) > 20000:
            _SCHEDULES.clear()
        _SCHEDULES[text] = s
    return s


class CurveBook:
    """The search's bookkeeping: every trial's :class:`TrialRecord` (by trial id, in start
    order), the curves they reported as :class:`~hf_lrlaw.LossCurve`, and a cached joint fit of
    the law on all of them, refitted when enough is new. Bad reports are refused one by one with
    a message (:attr:`messages`). The searcher's policy keeps it (``LRLawSearcher.book``);
    :class:`~tune_search.LRLawStopper` and the report read it.

    Args:
        metric: the result key holding the loss.
        law, law_options: what to fit (see :func:`hf_lrlaw.fit`).
        refit_fraction: refit when this fraction of new points arrived since the last fit (or
            a trial completed); a fit is cheap for the momentum law, not for the multi-power law.
        fit_kwargs: more keyword arguments for :func:`hf_lrlaw.fit` (``prior``, ``calibration``,
            ``n_starts``, ...).
        default_prior_until_annealed: with ``prior="default"``, fit with it only until a trial
            whose LR decays to half its peak or less has finished; from then on the data alone
            decide (a learned prior stands in for what young runs cannot show, and biases a
            fit on curves of another recipe once the runs show it; see the demo's records).
    """

    def __init__(
        self,
        metric: str | None,
        law: str = "momentum",
        law_options: Mapping[str, Any] | None = None,
        refit_fraction: float = 0.1,
        fit_kwargs: Mapping[str, Any] | None = None,
        default_prior_until_annealed: bool = False,
    ) -> None:
        self.default_prior_until_annealed = default_prior_until_annealed
        self.metric = metric
        self.law = law
        self.law_options = dict(law_options or {})
        self.refit_fraction = refit_fraction
        self.fit_kwargs = dict(fit_kwargs or {})
        self.records: dict[str, TrialRecord] = {}
        self.prior_curves: list[LossCurve] = []
        self.messages: list[str] = []
        self.version = 0
        self._fit: Fit | None = None
        self._fit_version = -1
        self._fit_points = 0
        self._fit_completions = -1
        self._completions = 0
        self.fit_error: str | None = None
        self._warned: set[tuple[str, str]] = set()
        self._smooth_cache: dict[tuple[int, str, int], float] = {}

    # -- messages -----------------------------------------------------------------------------
    def warn(self, trial_id: str | None, text: str, key: str | None = None) -> None:
        """Log a message once per (trial, key) and keep it for the report."""
        k = (trial_id or "", key or text)
        if k in self._warned:
            return
        self._warned.add(k)
        msg = f"trial {trial_id}: {text}" if trial_id else text
        self.messages.append(msg)
        logger.warning("LRLaw search: %s", msg)

    # -- records ------------------------------------------------------------------------------
    def add_trial(self, trial_id: str, schedule: str, role: str = "candidate") -> TrialRecord:
        rec = self.records.get(trial_id)
        if rec is None:
            rec = TrialRecord(trial_id, schedule, role)
            self.records[trial_id] = rec
            self.version += 1
        return rec

    def ingest(self, trial_id: str, result: Mapping[str, Any], schedule: str | None = None) -> bool:
        """Add one reported result; returns True when it added or changed a point."""
        rec = self.records.get(trial_id)
        if rec is None:
            if schedule is None:
                return False
            rec = self.add_trial(trial_id, schedule, "external")
        if CHECKPOINTS_KEY in result:
            rec.checkpoints.update(decode_checkpoints(result[CHECKPOINTS_KEY]))
        if self.metric is None:
            return False
        if self.metric not in result:
            shown = sorted(k for k in result if not k.startswith(("time_", "config")))[:12]
            self.warn(
                trial_id,
                f"a report has no {self.metric!r} (it has {shown}); it is ignored. "
                f"Report tune.report({{'step': s, {self.metric!r}: loss}})",
                "no-metric",
            )
            return False
        if "step" not in result:
            self.warn(
                trial_id,
                "a report has no 'step' (the 0-based optimizer step whose loss "
                "it is; for an eval loss at Trainer global_step g, step = g - 1); it is "
                "ignored",
                "no-step",
            )
            return False
        step, value = result["step"], result[self.metric]
        if (
            isinstance(step, bool)
            or not isinstance(step, (int, float, np.integer, np.floating))
            or not math.isfinite(float(step))
            or float(step) != int(step)
        ):
            self.warn(
                trial_id, f"'step' must be a whole number, got {step!r}; report ignored", "bad-step"
            )
            return False
        step = int(step)
        total = rec.total_steps
        if step < 0 or step >= total:
            self.warn(
                trial_id,
                f"step {step} is outside the schedule's steps 0..{total - 1} "
                f"(total_steps={total} in {rec.schedule}); does the trial run the suggested "
                "schedule? report ignored",
                "step-range",
            )
            return False
        try:
            loss = float(value)
        except (TypeError, ValueError):
            self.warn(
                trial_id,
                f"{self.metric!r} must be a number, got {value!r}; report ignored",
                "bad-metric",
            )
            return False
        window = result.get("window", 1)
        if (
            not isinstance(window, (int, np.integer))
            or isinstance(window, bool)
            or window < 1
            or step - int(window) + 1 < 0
        ):
            self.warn(
                trial_id,
                f"'window' must be a whole number of steps >= 1 ending at the "
                f"step, got {window!r}; using 1",
                "bad-window",
            )
            window = 1
        if rec.branch is not None and step < rec.branch[1]:
            self.warn(
                trial_id,
                f"it was to resume from trial {rec.branch[0]}'s checkpoint after update "
                f"{rec.branch[1]} but reported step {step}: it ran from the start (the trainable "
                "could not resume there); its whole run is counted",
                "branch-ignored",
            )
            rec.branch = None
        if not rec.add_point(step, loss, int(window)):
            return False
        why = rec.diverging() if rec.status == RUNNING else None
        if why is not None:
            rec.status = DIVERGED
            rec.note = f"diverged: {why}"
            self.warn(
                trial_id,
                f"{rec.schedule}: the run diverged ({why}); it is left out of the fit, never "
                "recommended, and no candidate at its peak LR or above is suggested",
                "diverged",
            )
        self.version += 1
        return True

    def complete(
        self, trial_id: str, result: Mapping[str, Any] | None, error: bool
    ) -> TrialRecord | None:
        rec = self.records.get(trial_id)
        if rec is None:
            return None
        if rec.completed:
            return rec
        if result and not error:
            self.ingest(trial_id, result)
        rec.completed = True
        if error:
            rec.status = ERROR
            rec.note = (
                rec.note or "the trial raised an error (see its error file in the Tune results)"
            )
            self.warn(
                trial_id,
                f"{rec.schedule}: the trial errored after {rec.steps_run} steps; "
                "its reported points stay in the fit, the search goes on",
                "error",
            )
        elif rec.status == DIVERGED:
            pass
        elif rec.final_loss is not None:
            rec.status = FINISHED
        else:
            rec.status = STOPPED
            last = rec.steps[-1] if rec.steps else None
            if rec.role != "pilot" or not rec.note:
                rec.note = (
                    f"ended at step {last} of the schedule's {rec.total_steps} steps "
                    "(stopped early, or the trial cannot run the whole schedule)"
                )
        self._completions += 1
        self.version += 1
        return rec

    def running(self, roles: tuple[str, ...] | None = None) -> int:
        """Trials still running (of the given roles)."""
        return sum(r.running and (roles is None or r.role in roles) for r in self.records.values())

    def finished(self, roles: tuple[str, ...]) -> int:
        """Trials of the given roles that reached their schedule's last step."""
        return sum(r.role in roles and r.status == FINISHED for r in self.records.values())

    def tried(self) -> set[str]:
        """The schedule texts of every trial started."""
        return {r.schedule for r in self.records.values()}

    @property
    def compute_steps(self) -> int:
        """Optimizer steps the trials ran in total (as far as they reported; a branched trial
        counts only the updates after its parent's checkpoint)."""
        return sum(r.compute for r in self.records.values())

    # -- curves and the fit -------------------------------------------------------------------
    def curve(self, rec: TrialRecord) -> LossCurve | None:
        """The trial's reported curve (its usable points), None when it has none or diverged
        (the laws describe stable training: a diverged run would bend the fit)."""
        if rec.status == DIVERGED:
            return None
        s = schedule_of(rec.schedule)
        lrs = s.lrs()
        steps = np.asarray(rec.steps, dtype=np.int64)
        losses = np.asarray(rec.losses, dtype=np.float64)
        windows = np.asarray(rec.windows, dtype=np.int64)
        if not len(steps):
            return None
        area = np.cumsum(lrs)
        ok = np.isfinite(losses) & (losses > 0) & (area[steps - windows + 1] > 0)
        if not ok.any():
            return None
        return LossCurve(
            lrs=lrs,
            steps=steps[ok],
            losses=losses[ok],
            name=f"{rec.role}:{rec.trial_id}",
            windows=windows[ok] if np.any(windows[ok] > 1) else None,
            meta={"schedule": rec.schedule, "trial_id": rec.trial_id, "status": rec.status},
        )

    def curves(self) -> list[LossCurve]:
        out = list(self.prior_curves)
        for rec in self.records.values():
            c = self.curve(rec)
            if c is not None:
                out.append(c)
        return out

    @property
    def last_fit(self) -> Fit | None:
        """The latest fit, without refitting."""
        return self._fit

    @property
    def n_points(self) -> int:
        """Usable points the fit sees (a diverged trial's are left out)."""
        return sum(len(c) for c in self.prior_curves) + sum(
            sum(1 for v in r.losses if math.isfinite(v) and v > 0)
            for r in self.records.values()
            if r.status != DIVERGED
        )

    def annealed_run_finished(self) -> bool:
        """Whether a trial whose LR decays to half its peak or less has reported its final loss."""
        for rec in self.records.values():
            if rec.final_loss is not None:
                sched = schedule_of(rec.schedule)
                if sched.lrs()[-1] <= (1 - ANNEAL_INFORMATIVE) * sched.peak_lr:
                    return True
        return False

    def fit(self, force: bool = False) -> Fit | None:
        """The law fitted jointly on every curve; refitted when enough is new. None if no fit
        is possible yet (``fit_error`` says why)."""
        if self._fit_version == self.version:
            return self._fit
        n = self.n_points
        fresh = n - self._fit_points
        due = (
            force
            or self._fit is None
            or self._completions != self._fit_completions
            or fresh >= max(3, self.refit_fraction * self._fit_points)
        )
        if not due:
            return self._fit
        curves = self.curves()
        self._fit_version, self._fit_points, self._fit_completions = (
            self.version,
            n,
            self._completions,
        )
        if not curves:
            self.fit_error = "no trial has reported a loss yet"
            return self._fit
        try:
            kwargs = dict(self.fit_kwargs)
            if (
                self.default_prior_until_annealed
                and kwargs.get("prior") == "default"
                and self.annealed_run_finished()
            ):
                kwargs["prior"] = None
            if not isinstance(kwargs.get("prior"), Fit):  # a Fit prior brings law and options
                kwargs.update(law=self.law, law_options=self.law_options or None)
            with numpy_blas_single_thread():
                self._fit = fit(curves, **kwargs)
            self.fit_error = None
        except Exception as exc:  # a fit must never crash the search
            self.fit_error = f"the {self.law} law could not be fitted on {n} points: {exc}"
            logger.info("LRLaw search: %s", self.fit_error)
        return self._fit

    def smoothed_final(self, rec: TrialRecord, fit: Fit | None = None) -> float | None:
        """The final loss of a finished trial with measurement noise averaged out: the law's
        value at the last step, shifted by the trial's mean log-residual over its points in the
        last 10% of the run (2 to 8 of them). Only the law's local shape enters, not its level.
        Without a fit, with fewer points, or where the tail does not follow the law, the last
        reported loss."""
        final = rec.final_loss
        if final is None:
            return None
        fit = fit if fit is not None else self._fit
        if fit is None:
            return final
        key = (id(fit), rec.trial_id, len(rec.steps))
        cached = self._smooth_cache.get(key)
        if cached is not None:
            return cached
        steps = np.asarray(rec.steps, dtype=np.int64)
        losses = np.asarray(rec.losses, dtype=np.float64)
        lrs = schedule_of(rec.schedule).lrs()
        total = len(lrs)
        # the points of the last 10% of the run (at most 8): the law only bridges short gaps
        ok = (
            np.isfinite(losses)
            & (losses > 0)
            & (steps >= 0.9 * total)
            & (np.cumsum(lrs)[steps] > 0)
        )
        steps, losses = steps[ok][-8:], losses[ok][-8:]
        value = final
        if len(steps) >= 2:
            try:
                pred = fit.predict(lrs, np.append(steps, total - 1))
                resid = np.log(losses) - np.log(pred[:-1])
                value = float(pred[-1] * math.exp(float(np.mean(resid))))
                # a law that does not follow this tail (residuals drifting well beyond the
                # noise) would bias the value: keep the reported loss then
                if abs(math.log(value / final)) > 3 * max(float(np.std(resid)), 1e-4) + 1e-12:
                    value = final
            except Exception:  # never let smoothing break a decision
                value = final
        if not math.isfinite(value):
            value = final
        if len(self._smooth_cache) > 10000:
            self._smooth_cache.clear()
        self._smooth_cache[key] = value
        return value

    def best_finished(
        self, allowed: set[str] | None = None, smooth: bool = True
    ) -> tuple[TrialRecord, float] | None:
        """The finished full-length trial with the lowest final loss (smoothed with the current
        fit when ``smooth``), among ``allowed`` schedules if given: ``(record, loss)``."""
        best = None
        for rec in self.records.values():
            if rec.status != FINISHED or rec.final_loss is None:
                continue
            if allowed is not None and rec.schedule not in allowed:
                continue
            value = self.smoothed_final(rec) if smooth else rec.final_loss
            if best is None or value < best[1]:
                best = (rec, value)
        return best

    # -- persistence --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "records": [r.to_dict() for r in self.records.values()],
            "prior_curves": [c.to_dict() for c in self.prior_curves],
            "messages": list(self.messages),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.records = {}
        for d in state.get("records", []):
            rec = TrialRecord.from_dict(d)
            self.records[rec.trial_id] = rec
        self.prior_curves = [LossCurve.from_dict(d) for d in state.get("prior_curves", [])]
        self.messages = list(state.get("messages", []))
        self._warned = set()
        self.version += 1
        self._fit, self._fit_version, self._fit_points, self._fit_completions = None, -1, 0, -1


def parse_schedules(items: Sequence[Schedule | str], what: str) -> list[Schedule]:
    out = []
    for i, s in enumerate(items):
        if isinstance(s, Schedule):
            out.append(s)
            continue
        try:
            out.append(Schedule.parse(s))
        except (ScheduleError, TypeError) as exc:
            raise ValueError(f"{what}[{i}] is not a schedule: {exc}") from None
    return out
