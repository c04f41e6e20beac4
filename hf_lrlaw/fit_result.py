"""Fit: a fitted law with its uncertainty, predictions with intervals, and its save/load.

Intervals combine the Laplace covariance of the parameters (propagated with the delta method),
the scatter of the fitted data around the law, and, past the fitted range, the law's measured
extrapolation error (the calibration; see :func:`hf_lrlaw.fit`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import norm

from hf_lrlaw.curves import LossCurve
from hf_lrlaw.files import read_json, write_json
from hf_lrlaw.laws import Law, LawError, get_law
from hf_lrlaw.limits import rows_per_block

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
    "spans_peak_lrs",
]

SCHEMA = "hf_lrlaw.fit/1"
PEAK_LR_TOLERANCE = 1.05  # a peak LR within 5% of the fitted runs' range counts as seen


def spans_peak_lrs(peaks: Sequence[float]) -> bool:
    """Whether peak LRs differ by more than :data:`PEAK_LR_TOLERANCE` (runs of several LRs)."""
    return bool(peaks) and max(peaks) > min(peaks) * PEAK_LR_TOLERANCE


ANNEAL_SEEN = 0.02  # an LR drop below 2% of the peak does not tell the annealing coefficient
# The largest loss drop a full LR decay can bring, relative to L0, when the data cannot tell it:
# at most 0.10 on the 234 public runs whose fit determines it (peak LR <= 3e-3, the gain grows
# slowly with the peak), with a margin for higher LRs. Bounds the no-prior interval from below.
MAX_ANNEAL_GAIN = 0.15


class FitError(ValueError):
    """The curves cannot be fitted as asked; the message says why."""

    __module__ = "hf_lrlaw"  # raised from submodules, public at the top level


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
    # The law object it was fitted with: a Law passed to fit() need not be one get_law builds.
    # An init field (keyword only) so that dataclasses.replace keeps it.
    _law: Law | None = field(default=None, repr=False, compare=False, kw_only=True)

    # -- parameters ------------------------------------------------------------------------
    @property
    def law_object(self) -> Law:
        if self._law is not None:
            return self._law
        return get_law(self.law, **self.law_options)

    def _check_nameable(self) -> None:
        """FitError if a saved copy would load as another law than the one fitted: a Fit is
        saved by law name and options, and rebuilt from them."""
        if self._law is None:
            return
        try:
            same = type(get_law(self.law, **self.law_options)) is type(self._law)
        except LawError:
            same = False
        if not same:
            raise FitError(
                f"cannot save a Fit of a {type(self._law).__qualname__} law object (name "
                f"{self.law!r}): a saved Fit is rebuilt by law name, and that name does not "
                "build this law; fit with one of the named laws to save the result"
            )

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

    def shared_run_values(self) -> dict[str, Any]:
        """Those of the peak LR, planned length and warmup that every fitted run shares (the
        warmup within a step or 5%, its most common value), for schedule text that leaves them
        out where the runs differ in the others (a fit over several peak LRs)."""
        out: dict[str, Any] = {}
        records = [c for c in self.curves if isinstance(c, Mapping)]
        peaks = [float(c["peak_lr"]) for c in records if c.get("peak_lr")]
        if peaks and len(peaks) == len(records) and max(peaks) <= min(peaks) * (1 + 1e-6):
            out["peak_lr"] = peaks[0]
        planned = {int(c["planned_steps"]) for c in records if c.get("planned_steps")}
        if len(planned) == 1 and all(c.get("planned_steps") for c in records):
            out["total_steps"] = planned.pop()
        warmups = [int(c["warmup_steps"]) for c in records if c.get("warmup_steps") is not None]
        shared = warmups and max(warmups) - min(warmups) <= max(1, 0.05 * max(warmups))
        if shared and len(warmups) == len(records):
            out["warmup_steps"] = max(set(warmups), key=warmups.count)
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
        """Predicted loss at ``steps`` (default: the last step) of a run with these per-step LRs.

        FitError where the law gives no loss: before any training at a non-zero LR, or where
        it extrapolates below zero (a schedule far outside what the fit has seen)."""
        law, (lr_arr, st) = self.law_object, _lrs_and_steps(lrs, steps)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            pred = law.predict(self.theta, law.prepare(lr_arr, st)) * self.bias_factor(st)
        _check_losses(self.law, pred, st, lr_arr)
        return pred

    def predict_interval(
        self, lrs: np.ndarray | Schedule | LossCurve, steps: Any = None, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, low, high)`` at ``steps``; see the class docstring for what the band holds
        and :meth:`predict` for where there is no prediction."""
        _check_level(level)
        law, (lr_arr, st) = self.law_object, _lrs_and_steps(lrs, steps)
        mean, low, high = self._interval(law, law.prepare(lr_arr, st), level, st)
        _check_losses(self.law, mean, st, lr_arr)
        return mean, low, high

    def predict_final(
        self, schedules: Sequence[np.ndarray | Schedule] | np.ndarray, level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, low, high)`` of the final loss of many schedules, vectorised per horizon.

        A schedule the law gives no loss for (see :meth:`predict`) has NaN in all three, for
        the caller to flag (:func:`hf_lrlaw.rank` ranks it last, with the reason); use
        :meth:`no_prediction` for the reason."""
        _check_level(level)
        law = self.law_object
        n = len(schedules)
        mean, low, high = np.empty(n), np.empty(n), np.empty(n)
        for idx, prep, steps, untrained in final_preps(law, schedules):
            m, lo, hi = self.final_interval(prep, (len(idx), steps), level)
            mean[idx], low[idx], high[idx] = (np.where(untrained, np.nan, a) for a in (m, lo, hi))
        return mean, low, high

    def final_interval(
        self, prep: Any, shape: tuple[int, int], level: float = 0.9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, low, high)`` of the final loss from the law's ``prepare_final`` of a block
        of ``shape = (schedules, steps)`` LRs (NaN where the law gives no loss)."""
        final = np.full(shape[0], shape[1] - 1)
        return self._interval(self.law_object, prep, level, final)

    def no_prediction(
        self, lrs: np.ndarray | Schedule | LossCurve, steps: Any = None
    ) -> str | None:
        """Why the law gives no loss for this schedule at ``steps`` (default: its last step),
        or None where it does."""
        law, (lr_arr, st) = self.law_object, _lrs_and_steps(lrs, steps)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            pred = law.predict(self.theta, law.prepare(lr_arr, st)) * self.bias_factor(st)
        try:
            _check_losses(self.law, pred, st, lr_arr)
        except FitError as exc:
            return str(exc)
        return None

    def extrapolation_note(self, schedule: Schedule) -> str | None:
        """A note when ``schedule``'s peak LR lies outside the fitted runs' (by more than 5%):
        the single-peak laws extrapolate in schedule shape and length, not in peak LR; a law
        that carries the peak LR (lrnoise) needs runs of two or more peak LRs to know how."""
        peaks = [float(c["peak_lr"]) for c in self.curves if c.get("peak_lr")]
        if not peaks:
            return None
        lo, hi = min(peaks), max(peaks)
        if lo / PEAK_LR_TOLERANCE <= schedule.peak_lr <= hi * PEAK_LR_TOLERANCE:
            return None
        seen = f"{lo:.3g}" if hi <= lo * PEAK_LR_TOLERANCE else f"{lo:.3g}..{hi:.3g}"
        if getattr(self.law_object, "carries_peak_lr", False):
            if spans_peak_lrs(peaks):
                return None
            return (
                f"peak LR {schedule.peak_lr:.3g}, but the fit saw one peak LR ({seen}): the "
                f"{self.law} law's dependence on the LR is not identified by it"
            )
        return (
            f"peak LR {schedule.peak_lr:.3g} outside the fitted runs' {seen}: an extrapolation "
            f"in peak LR, which the {self.law} law does not model"
        )

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
        self._check_nameable()
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
        """A Fit from :meth:`to_dict` output; FitError naming the field that is missing or not
        what a fit writes (a corrupt or hand-edited file is refused, not half-used)."""
        if not isinstance(data, Mapping):
            raise FitError(f"a saved Fit is a JSON object, not {type(data).__name__}")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise FitError(f"not a saved Fit of schema {SCHEMA!r} (found {schema!r})")
        field_name = "law"
        try:
            law = get_law(str(data["law"]), **dict(data["law_options"]))
        except KeyError as exc:
            raise FitError(f"saved Fit has no {exc.args[0]!r}") from None
        except (LawError, TypeError, ValueError) as exc:
            raise FitError(f"saved Fit names a law this version cannot build: {exc}") from None
        names = [p.name for p in law.params]
        try:
            field_name = "params"
            params = {n: _finite_number(data["params"][n], f"params.{n}") for n in names}
            field_name = "goodness"
            g = data["goodness"]
            goodness = GoodnessOfFit(
                _number(g["r2"]),
                _number(g["mean_rel_error"]),
                _number(g["worst_rel_error"]),
                int(g["n_points"]),
                {k: tuple(v) for k, v in g.get("per_curve", {}).items()},
            )
            field_name = "cov"
            cov = np.asarray(data["cov"], dtype=float)
            field_name = "log_params"
            log_params = tuple(bool(b) for b in data["log_params"])
            field_name = "bounds"
            bounds = tuple((float(a), float(b)) for a, b in data["bounds"])
            field_name = "scatter"
            out = cls(
                law=law.name,
                params=params,
                law_options=dict(data["law_options"]),
                cov=cov,
                log_params=log_params,
                bounds=bounds,
                goodness=goodness,
                scatter=_finite_number(data["scatter"], "scatter"),
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
        except KeyError as exc:
            raise FitError(f"saved Fit has no {exc.args[0]!r} (in {field_name!r})") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise FitError(f"saved Fit: {field_name!r} is malformed ({exc})") from None
        p = len(names)
        if cov.shape != (p, p):
            raise FitError(f"saved Fit: 'cov' must be a {p}x{p} matrix, got shape {cov.shape}")
        if not np.all(np.isfinite(cov)):
            raise FitError("saved Fit: 'cov' holds NaN or infinite values")
        if len(log_params) != p or len(bounds) != p:
            raise FitError(
                f"saved Fit: 'log_params' and 'bounds' need one entry per parameter ({p})"
            )
        for k, (name, (lo, hi)) in enumerate(zip(names, bounds)):
            value = params[name]
            slack = 1e-9 * max(abs(lo), abs(hi), 1.0)  # exp(log(x)) rounding at a bound
            if not lo - slack <= value <= hi + slack or (log_params[k] and value <= 0):
                raise FitError(
                    f"saved Fit: parameter {name}={value!r} is outside its bounds [{lo}, {hi}]"
                )
        if out.scatter < 0:
            raise FitError(f"saved Fit: 'scatter' must be >= 0, got {out.scatter}")
        _check_records(out)
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


def _check_records(f: Fit) -> None:
    """The saved Fit's records (curves, prior, calibration, ...) have the shape a fit writes."""
    if not all(isinstance(c, Mapping) for c in f.curves):
        raise FitError("saved Fit: 'curves' must be a list of objects")
    for c in f.curves:
        for key in ("peak_lr", "last_step", "total_steps", "planned_steps", "warmup_steps"):
            value = c.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise FitError(f"saved Fit: curves[].{key} must be a number, got {value!r}")
    if not all(isinstance(n, str) for n in f.notes):
        raise FitError("saved Fit: 'notes' must be a list of texts")
    for name in ("prior", "selection", "discrepancy"):
        value = getattr(f, name)
        if value is not None and not isinstance(value, Mapping):
            raise FitError(f"saved Fit: {name!r} must be an object or null, got {value!r}")
    d = f.discrepancy
    if d is not None:
        cal = d.get("calibration")
        last = d.get("last_step")
        if not isinstance(cal, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in cal.values()
        ):
            raise FitError("saved Fit: discrepancy.calibration must map terms to finite numbers")
        if isinstance(last, bool) or not isinstance(last, int):
            raise FitError(f"saved Fit: discrepancy.last_step must be a step, got {last!r}")


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _number(value: Any) -> float:
    """A saved float; null (what JSON keeps of NaN) is NaN again."""
    return float("nan") if value is None else float(value)


def lr_blocks(
    schedules: Sequence[np.ndarray | Schedule] | np.ndarray,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(indices, LRs)`` blocks of schedules of one length, each at most
    :data:`~hf_lrlaw.limits.BLOCK_FLOATS` LRs: what many-schedule scoring works on, in bounded
    memory whatever the number and length of the schedules (each LR array is made when its
    block is)."""
    if isinstance(schedules, np.ndarray) and schedules.ndim == 2:
        lengths = [schedules.shape[1]] * len(schedules)
    else:
        lengths = [_length(s) for s in schedules]
    by_len: dict[int, list[int]] = {}
    for i, t in enumerate(lengths):
        by_len.setdefault(t, []).append(i)
    for t, idx in by_len.items():
        step = rows_per_block(t)
        for start in range(0, len(idx), step):
            chunk = np.asarray(idx[start : start + step])
            block = np.stack([_lrs_and_steps(schedules[i], None)[0] for i in chunk])
            yield chunk, block


def final_preps(
    law: Law, schedules: Sequence[np.ndarray | Schedule] | np.ndarray
) -> Iterator[tuple[np.ndarray, Any, int, np.ndarray]]:
    """``(indices, the law's prepare_final of them, their length, which have no LR at all)``
    in blocks of one length. Schedules whose kind has pieces are prepared from them where the
    law can (:func:`~hf_lrlaw.laws.finals.piece_preps`), the rest from :func:`lr_blocks`; both
    give the same numbers to rounding."""
    from hf_lrlaw.laws.finals import piece_preps

    blocks, rest = piece_preps(law, schedules)
    for idx, prep, steps in blocks:
        yield idx, prep, steps, np.zeros(len(idx), dtype=bool)
    if rest:
        others = [schedules[i] for i in rest]
        for idx, block in lr_blocks(others):
            yield np.asarray(rest)[idx], law.prepare_final(block), block.shape[1], block.sum(1) <= 0


def _length(schedule: Any) -> int:
    if isinstance(schedule, LossCurve):
        return len(schedule.lrs)
    if hasattr(schedule, "total_steps") and hasattr(schedule, "lrs"):
        return int(schedule.total_steps)
    return len(np.asarray(schedule))


def _check_level(level: Any) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise FitError(f"level must be a probability in (0, 1), e.g. 0.9; got {level!r}")


def _check_losses(law: str, pred: np.ndarray, steps: np.ndarray, lrs: np.ndarray) -> None:
    """FitError naming the steps where the law's prediction is not a loss, and why."""
    untrained = np.cumsum(lrs)[steps] <= 0
    bad = ~(np.isfinite(pred) & (pred > 0)) | untrained
    if not np.any(bad):
        return
    at = ", ".join(str(int(s)) for s in steps[bad][:5]) + (", ..." if bad.sum() > 5 else "")
    if np.any(untrained):
        why = "no training at a non-zero LR has happened yet there (the laws need some LR area)"
    else:
        why = (
            "the law extrapolates below zero there: the schedule is far outside what the fit "
            "has seen (e.g. a peak LR or an LR decay much larger than in the fitted runs)"
        )
    raise FitError(f"the {law} law gives no loss at step {at}: {why}")


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
        raw = np.atleast_1d(np.asarray(steps))
        if raw.ndim != 1 or not (
            np.issubdtype(raw.dtype, np.integer)
            or (
                np.issubdtype(raw.dtype, np.floating)
                and np.all(np.isfinite(raw))
                and np.all(raw == np.round(raw))
            )
        ):
            raise FitError("predict(): steps must be whole numbers")
        st = raw.astype(np.int64)
        if np.any(st < 0) or np.any(st >= len(arr)):
            raise FitError(f"predict(): steps must lie in 0..{len(arr) - 1}, the LR array's range")
    return arr, st
