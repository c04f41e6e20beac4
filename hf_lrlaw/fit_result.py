"""Fit: a fitted law with its uncertainty, predictions with intervals, and its save/load.

Intervals combine the Laplace covariance of the parameters (propagated with the delta method),
the scatter of the fitted data around the law, and, past the fitted range, the law's measured
extrapolation error (the calibration; see :func:`hf_lrlaw.fit`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import norm

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.files import read_json, write_json
from hf_lrlaw.laws import Law, LawError, get_law

if TYPE_CHECKING:
    from hf_lrlaw.schedules import Schedule

__all__ = [
    "ANNEAL_SEEN",
    "MAX_ANNEAL_GAIN",
    "SCHEMA",
    "Fit",
    "FitError",
    "GoodnessOfFit",
    "fit_data",
]

SCHEMA = "hf_lrlaw.fit/1"
ANNEAL_SEEN = 0.02  # an LR drop below 2% of the peak does not tell the annealing coefficient
# The largest loss drop a full LR decay can bring, relative to L0, when the data cannot tell it:
# at most 0.10 on the 234 public runs whose fit determines it (peak LR <= 3e-3, the gain grows
# slowly with the peak), with a margin for higher LRs. Bounds the no-prior interval from below.
MAX_ANNEAL_GAIN = 0.15


class FitError(ValueError):
    """The curves cannot be fitted as asked; the message says why."""


@dataclass(frozen=True)
class GoodnessOfFit:
    """How well the fitted law matches the curves it was fitted on.

    ``mean_rel_error`` / ``worst_rel_error``: mean and max of ``|pred - loss| / loss`` over
    all points; ``per_curve`` maps a curve name to its own (mean, worst) pair.
    """

    r2: float
    mean_rel_error: float
    worst_rel_error: float
    n_points: int
    per_curve: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Fit:
    """A fitted law: parameters with uncertainty, goodness of fit, and predictions.

    Predictions take the per-step LRs of a run (an array, a :class:`~hf_lrlaw.Schedule`, or a
    :class:`~hf_lrlaw.LossCurve`) and the steps to predict at (default: the last step).
    Intervals (``level`` = 0.9 by default) combine the Laplace parameter uncertainty with the
    scatter of the fitted data around the law (``scatter``, relative).
    """

    law: str
    params: dict[str, float]
    law_options: dict[str, Any]
    cov: np.ndarray  # covariance of the search-space parameters (log for positive ones)
    log_params: tuple[bool, ...]
    bounds: tuple[tuple[float, float], ...]  # natural-space bounds used in the fit
    goodness: GoodnessOfFit
    scatter: float
    autocorrelation: float
    determined: dict[str, bool]
    annealing_identified: bool
    notes: list[str] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] | None = None
    objective: float = float("nan")
    fit_seconds: float = float("nan")
    prior: dict[str, Any] | None = None
    discrepancy: dict[str, Any] | None = None

    # -- parameters ------------------------------------------------------------------------
    @property
    def law_object(self) -> Law:
        return get_law(self.law, **self.law_options)

    @property
    def theta(self) -> np.ndarray:
        names = [p.name for p in self.law_object.params]
        return np.array([self.params[n] for n in names])

    def _space_x(self) -> np.ndarray:
        t = self.theta
        return np.where(self.log_params, np.log(np.maximum(t, 1e-300)), t)

    def param_intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Each parameter's interval at ``level`` (log-normal for positive scale parameters)."""
        z = norm.ppf(0.5 + level / 2)
        x, std = self._space_x(), np.sqrt(np.maximum(np.diag(self.cov), 0.0))
        lo, hi = x - z * std, x + z * std
        out = {}
        for k, name in enumerate(self.params):
            if self.log_params[k]:
                a, b = math.exp(max(lo[k], -700)), math.exp(min(hi[k], 700))
            else:
                a, b = lo[k], hi[k]
            blo, bhi = self.bounds[k]
            out[name] = (max(a, blo), min(b, bhi))
        return out

    def run_defaults(self) -> dict[str, Any] | None:
        """The peak LR, planned length and warmup of the run this fit describes, for schedule
        text that leaves them out (``Schedule.parse(text, defaults=...)``); None when the fitted
        curves differ in one of them, a curve was still warming up, or the fit was saved
        before they were recorded."""
        runs = []
        for c in self.curves:
            try:
                lr_steps, warmup = int(c["total_steps"]), int(c["warmup_steps"])
                run = {
                    "peak_lr": float(c["peak_lr"]),
                    "total_steps": int(c["planned_steps"]),
                    "warmup_steps": warmup,
                }
            except (KeyError, TypeError, ValueError):
                return None
            if warmup >= lr_steps - 1:
                return None
            runs.append(run)
        if not runs:
            return None
        first = runs[0]
        for run in runs[1:]:
            if (run["total_steps"], run["warmup_steps"]) != (
                first["total_steps"],
                first["warmup_steps"],
            ) or not math.isclose(run["peak_lr"], first["peak_lr"], rel_tol=1e-6):
                return None
        return first

    def fitted_last_step(self, curve: LossCurve) -> int:
        """The last step of ``curve`` this fit was fitted on, from its record of its curves:
        matched by name; -1 for a curve it does not know (all of it is prediction); a curve with
        an ambiguous name (or no record) counts as fitted up to its last point."""
        records = [c for c in self.curves if isinstance(c, Mapping)]
        same = [c for c in records if c.get("name") == curve.name]
        if len(same) == 1:
            return min(int(same[0].get("last_step", curve.last_step)), curve.last_step)
        if not same and curve.name and records:
            return -1
        return curve.last_step

    # -- prediction ------------------------------------------------------------------------
    def predict(self, lrs: np.ndarray | Schedule | LossCurve, steps: Any = None) -> np.ndarray:
        """Predicted loss at ``steps`` (default: the last step) of a run with these per-step LRs."""
        law, (lr_arr, st) = self.law_object, _lrs_and_steps(lrs, steps)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            pred = law.predict(self.theta, law.prepare(lr_arr, st)) * self.bias_factor(st)
        return np.where(np.isfinite(pred), pred, np.nan)  # nan: before any training

    def predict_interval(
        self, lrs: np.ndarray | Schedule | LossCurve, steps: Any = None, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, low, high)`` at ``steps``; see the class docstring for what the band holds."""
        law, (lr_arr, st) = self.law_object, _lrs_and_steps(lrs, steps)
        return self._interval(law, law.prepare(lr_arr, st), level, st)

    def predict_final(
        self, schedules: Sequence[np.ndarray | Schedule] | np.ndarray, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, low, high)`` of the final loss of many schedules, vectorised per horizon."""
        law = self.law_object
        if isinstance(schedules, np.ndarray) and schedules.ndim == 2:
            blocks = [(np.arange(len(schedules)), np.asarray(schedules, dtype=np.float64))]
            n = len(schedules)
        else:
            rows = [_lrs_and_steps(s, None)[0] for s in schedules]
            n = len(rows)
            by_len: dict[int, list[int]] = {}
            for i, r in enumerate(rows):
                by_len.setdefault(len(r), []).append(i)
            blocks = [
                (np.asarray(idx), np.stack([rows[i] for i in idx])) for idx in by_len.values()
            ]
        mean, low, high = (np.empty(n) for _ in range(3))
        for idx, block in blocks:
            if np.any(~np.isfinite(block)) or np.any(block < 0):
                raise FitError("predict_final(): learning rates must be finite and >= 0")
            for chunk in np.array_split(np.arange(len(idx)), max(1, len(idx) // 512)):
                final = np.full(len(chunk), block.shape[1] - 1)
                m, lo, hi = self._interval(law, law.prepare_final(block[chunk]), level, final)
                mean[idx[chunk]], low[idx[chunk]], high[idx[chunk]] = m, lo, hi
        return mean, low, high

    def _interval(self, law: Law, prep: Any, level: float, steps: np.ndarray):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mean, low, high = self._interval_raw(law, prep, level, steps)
        bad = ~(np.isfinite(mean) & np.isfinite(low) & np.isfinite(high))
        return tuple(np.where(bad, np.nan, a) for a in (mean, low, high))

    def _reach(self, steps: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """log((step + 1) / (last fitted step + 1)), zero within the fitted range; calibration."""
        d = self.discrepancy or {}
        last = int(d.get("last_step", -1))
        steps = np.asarray(steps, dtype=np.float64)
        if last < 0:
            return np.zeros(steps.shape), {}
        return np.log(np.maximum((steps + 1.0) / (last + 1.0), 1.0)), d.get("calibration") or {}

    def model_error(self, steps: np.ndarray) -> np.ndarray:
        """Relative (log) sd the law itself adds when predicting at ``steps``: zero within the
        observed range, growing with the log of how far past the last fitted step it goes."""
        reach, cal = self._reach(steps)
        return max(float(cal.get("extrapolation", 0.0)), 0.0) * reach

    def bias_factor(self, steps: Any) -> np.ndarray:
        """The law's measured mean miss when extrapolating, undone: ``exp(-bias * reach)``, one
        within the fitted range. ``bias`` comes with the calibration (see :func:`fit`)."""
        reach, cal = self._reach(steps)
        return np.exp(-float(cal.get("bias", 0.0)) * reach)

    def _interval_raw(self, law: Law, prep: Any, level: float, steps: np.ndarray):
        theta = self.theta
        pred, jac = law.jacobian(theta, prep)
        shift = self.bias_factor(steps)
        pred, jac = pred * shift, jac * shift[:, None]
        jac_x = jac * np.where(self.log_params, theta, 1.0)[None, :]
        var = np.einsum("ij,jk,ik->i", jac_x, self.cov, jac_x)
        z = norm.ppf(0.5 + level / 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.sqrt(np.maximum(var, 0.0)) / np.abs(pred)
        sd_log = np.sqrt(rel**2 + self.scatter**2 + self.model_error(steps) ** 2)
        pred = np.where(pred > 0, pred, np.nan)  # a law extrapolated below zero says nothing
        low, high = pred * np.exp(-z * sd_log), pred * np.exp(z * sd_log)
        name = getattr(law, "annealing_param", None)
        if name and not self.annealing_identified and self.prior is None:
            # The data cannot tell how much annealing helps: anything from no gain at all
            # (annealing term off) to the largest gain seen on public runs is possible; the
            # gain takes the loss below L0, by up to MAX_ANNEAL_GAIN for a full decay.
            k = [p.name for p in law.params].index(name)
            off = theta.copy()
            off[k] = 0.0
            no_gain = law.predict(off, prep) * shift
            depth = np.asarray(law.anneal_signal(prep), dtype=float)
            anneals = depth >= ANNEAL_SEEN
            l0_low = self.param_intervals(level)["L0"][0] * (1.0 - MAX_ANNEAL_GAIN * depth)
            high = np.where(anneals, np.maximum(high, no_gain * np.exp(z * self.scatter)), high)
            low = np.where(anneals, np.minimum(low, l0_low), low)
        return pred, low, high

    # -- reporting -------------------------------------------------------------------------
    def summary(self) -> str:
        """A few lines a person can read: law, parameters with intervals, fit quality, flags."""
        g = self.goodness
        lines = [
            f"{self.law} law fitted on {len(self.curves)} curve(s), {g.n_points} points "
            f"({self.fit_seconds:.2f} s)",
            f"  R^2 {g.r2:.5f}, mean rel. error {g.mean_rel_error:.5f}, "
            f"worst {g.worst_rel_error:.5f}, scatter {self.scatter:.5f}",
        ]
        for name, (lo, hi) in self.param_intervals().items():
            flag = "" if self.determined.get(name, True) else "  (not determined by the data)"
            lines.append(f"  {name:>6} = {self.params[name]:.6g}  [{lo:.4g}, {hi:.4g}]{flag}")
        if self.selection:
            lines.append(f"  chosen by: {self.selection.get('reason', '')}")
        if self.prior:
            moved = ", ".join(
                f"{name} {v['shift_in_prior_sd']:+.1f}"
                for name, v in self.prior.get("features", {}).items()
            )
            lines.append(
                f"  prior: {self.prior.get('source', '')}; the data moved it by (prior sds) {moved}"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        g = self.goodness
        return {
            "schema": SCHEMA,
            "law": self.law,
            "law_options": self.law_options,
            "params": self.params,
            "cov": self.cov.tolist(),
            "log_params": list(self.log_params),
            "bounds": [list(b) for b in self.bounds],
            "goodness": {
                "r2": g.r2,
                "mean_rel_error": g.mean_rel_error,
                "worst_rel_error": g.worst_rel_error,
                "n_points": g.n_points,
                "per_curve": {k: list(v) for k, v in g.per_curve.items()},
            },
            "scatter": self.scatter,
            "autocorrelation": self.autocorrelation,
            "determined": self.determined,
            "annealing_identified": self.annealing_identified,
            "notes": self.notes,
            "curves": self.curves,
            "selection": self.selection,
            "objective": self.objective,
            "fit_seconds": self.fit_seconds,
            "prior": self.prior,
            "discrepancy": self.discrepancy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fit:
        schema = data.get("schema")
        if schema != SCHEMA:
            raise FitError(f"not a saved Fit of schema {SCHEMA!r} (found {schema!r})")
        try:
            g = data["goodness"]
            goodness = GoodnessOfFit(
                _number(g["r2"]),
                _number(g["mean_rel_error"]),
                _number(g["worst_rel_error"]),
                int(g["n_points"]),
                {k: tuple(v) for k, v in g.get("per_curve", {}).items()},
            )
            out = cls(
                law=data["law"],
                params={k: float(v) for k, v in data["params"].items()},
                law_options=dict(data["law_options"]),
                cov=np.asarray(data["cov"], dtype=float),
                log_params=tuple(bool(b) for b in data["log_params"]),
                bounds=tuple((float(a), float(b)) for a, b in data["bounds"]),
                goodness=goodness,
                scatter=float(data["scatter"]),
                autocorrelation=float(data["autocorrelation"]),
                determined={k: bool(v) for k, v in data["determined"].items()},
                annealing_identified=bool(data["annealing_identified"]),
                notes=list(data.get("notes", [])),
                curves=list(data.get("curves", [])),
                selection=data.get("selection"),
                objective=_number(data.get("objective")),
                fit_seconds=_number(data.get("fit_seconds")),
                prior=data.get("prior"),
                discrepancy=data.get("discrepancy"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FitError(f"saved Fit is incomplete or malformed: {exc!r}") from None
        try:
            out.law_object  # noqa: B018 - validates law name and options
        except LawError as exc:
            raise FitError(f"saved Fit names a law this version cannot build: {exc}") from None
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the Fit as versioned JSON, atomically (no half-written file on failure)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fit:
        """Read a Fit written by :meth:`save`, or the fit a record embeds (the callback's
        ``record.json``)."""
        data = fit_data(read_json(path, FitError), path)
        try:
            return cls.from_dict(data)
        except FitError as exc:
            raise FitError(f"{path}: {exc}") from None


def fit_data(data: Any, where: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved-Fit dict in JSON ``data``: a Fit itself, or a record (such as the callback's
    ``record.json``) that embeds one under ``"fit"``; ``where`` names the source in errors."""
    if isinstance(data, Mapping) and data.get("schema") != SCHEMA and "fit" in data:
        if data["fit"] is None:
            raise FitError(f"{where}: the record holds no fit yet")
        data = data["fit"]
    if not isinstance(data, Mapping):
        raise FitError(f"{where}: expected a JSON object (a saved Fit or a record with one)")
    return dict(data)


def _number(value: Any) -> float:
    """A saved float; null (what JSON keeps of NaN) is NaN again."""
    return float("nan") if value is None else float(value)


def _lrs_and_steps(lrs: Any, steps: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(lrs, LossCurve):
        arr = lrs.lrs
    elif hasattr(lrs, "lrs") and callable(lrs.lrs):
        arr = lrs.lrs()
    else:
        arr = np.asarray(lrs, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise FitError("predict() needs a one-dimensional, non-empty per-step LR array")
    if np.any(~np.isfinite(arr)) or np.any(arr < 0):
        raise FitError("predict(): learning rates must be finite and >= 0")
    if steps is None:
        st = np.array([len(arr) - 1])
    else:
        st = np.atleast_1d(np.asarray(steps, dtype=np.int64))
        if np.any(st < 0) or np.any(st >= len(arr)):
            raise FitError(f"predict(): steps must lie in 0..{len(arr) - 1}, the LR array's range")
    return arr, st
