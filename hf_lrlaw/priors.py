"""Priors on a law's parameters, learned from real curves, for fits early in a run.

Early in a run the data cannot separate the irreducible loss from the power-law term, nor tell
the annealing coefficient. A prior fills in what the data cannot say. It is a Gaussian on
*transfer features*: functions of the parameters and of the run's peak LR and horizon that
stay nearly constant across runs of different sizes, LRs and lengths (each law defines them in
``transfer_features``; bench/build_priors.py measures how well they transfer). The prior is
learned as the spread of those features over many runs fitted on their full curves, or taken
from one earlier Fit (a smaller model, a previous run of the same recipe).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_lrlaw.laws import Law, get_law

if TYPE_CHECKING:
    from hf_lrlaw.fitting import Fit

__all__ = ["Prior", "PriorError", "RunContext", "learn_prior", "resolve_prior", "shipped_priors", "size_prior", "SCHEMA"]

SCHEMA = "hf_lrlaw.prior/1"
FIT_TRANSFER_WIDTH = 0.15  # extra spread (log units) when an earlier run's Fit serves as prior


class PriorError(ValueError):
    """A prior that cannot be used as asked."""


@dataclass(frozen=True)
class RunContext:
    """What the transfer features are relative to: the run's peak LR and its planned length."""

    peak_lr: float
    horizon: int

    @classmethod
    def of_curves(cls, curves: Sequence[Any]) -> RunContext:
        return cls(
            peak_lr=max(float(np.max(c.lrs)) for c in curves),
            horizon=max(len(c.lrs) for c in curves),
        )


@dataclass(frozen=True)
class Prior:
    """Independent Gaussians on a law's transfer features.

    ``mean`` and ``std`` are per feature (``names``); ``source`` says where the prior comes from.
    """

    law: str
    law_options: Mapping[str, Any]
    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    n_runs: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    calibration: Mapping[str, float] | None = None  # model-discrepancy terms, see fit()

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.mean) == len(self.std)):
            raise PriorError("a prior needs one mean and one std per feature")
        if any(not np.isfinite(s) or s <= 0 for s in self.std):
            raise PriorError(f"prior stds must be positive and finite, got {self.std}")

    # -- the penalty the fitter adds -------------------------------------------------------
    def check_law(self, law: Law) -> None:
        names = getattr(law, "transfer_names", ())
        if law.name != self.law or tuple(names) != tuple(self.names):
            raise PriorError(
                f"prior for the {self.law} law (features {list(self.names)}) cannot be used "
                f"with the {law.name} law"
            )

    def z_scores(self, law: Law, theta: np.ndarray, ctx: RunContext) -> np.ndarray:
        phi = law.transfer_features(theta, ctx.peak_lr, ctx.horizon)
        return (phi - np.asarray(self.mean)) / np.asarray(self.std)

    def penalty(
        self, law: Law, theta: np.ndarray, dtheta_dx: np.ndarray, ctx: RunContext
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """``0.5 * sum(z**2)``, its gradient in search space, and the prior's precision there."""
        z = self.z_scores(law, theta, ctx)
        jac = _feature_jacobian(law, theta, ctx) * dtheta_dx[None, :]  # (features, params)
        jac_z = jac / np.asarray(self.std)[:, None]
        return 0.5 * float(z @ z), jac_z.T @ z, jac_z.T @ jac_z

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "law": self.law,
            "law_options": dict(self.law_options),
            "names": list(self.names),
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source,
            "n_runs": list(self.n_runs),
            "notes": list(self.notes),
            "calibration": None if self.calibration is None else dict(self.calibration),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prior:
        if data.get("schema") != SCHEMA:
            raise PriorError(f"not a prior of schema {SCHEMA!r} (found {data.get('schema')!r})")
        try:
            return cls(
                law=str(data["law"]),
                law_options=dict(data.get("law_options", {})),
                names=tuple(data["names"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                source=str(data.get("source", "")),
                n_runs=tuple(int(v) for v in data.get("n_runs", ())),
                notes=tuple(data.get("notes", ())),
                calibration=data.get("calibration"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PriorError(f"malformed prior: {exc!r}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh, indent=1)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Prior:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise PriorError(f"{path}: no such prior file") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise PriorError(f"{path}: not a readable JSON file ({exc})") from None
        if not isinstance(data, dict):
            raise PriorError(f"{path}: expected a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_fit(cls, fit: Fit, widen: float = FIT_TRANSFER_WIDTH) -> Prior:
        """An earlier run's Fit as a prior: its transfer features, with their uncertainty plus
        ``widen`` (log units) for what does not transfer exactly between runs."""
        law = fit.law_object
        names = getattr(law, "transfer_names", ())
        if not names:
            raise PriorError(f"the {law.name} law defines no transfer features")
        ctx = RunContext(
            peak_lr=max((c.get("peak_lr", 0.0) for c in fit.curves), default=0.0),
            horizon=max((int(c.get("total_steps", 0)) for c in fit.curves), default=0),
        )
        if ctx.peak_lr <= 0 or ctx.horizon <= 0:
            raise PriorError("the Fit does not record the peak LR and horizon of its curves")
        peaks = sorted({float(c.get("peak_lr", 0.0)) for c in fit.curves})
        if peaks[-1] > peaks[0] * (1 + 1e-6):
            raise PriorError(
                f"a Fit of runs at peak LRs {sorted({float(f'{v:.4g}') for v in peaks})} has "
                "no single value of the transfer features (they are relative to the peak LR): "
                "as a prior, use a Fit of the runs at one peak LR (fit each peak LR separately)"
            )
        theta = fit.theta
        phi = law.transfer_features(theta, ctx.peak_lr, ctx.horizon)
        jac = _feature_jacobian(law, theta, ctx) * np.where(fit.log_params, theta, 1.0)[None, :]
        var = np.einsum("ij,jk,ik->i", jac, fit.cov, jac)
        std = np.sqrt(np.maximum(var, 0.0) + widen**2)
        names_list = [c.get("name", "") for c in fit.curves]
        return cls(
            law=law.name,
            law_options=dict(fit.law_options),
            names=tuple(names),
            mean=tuple(float(v) for v in phi),
            std=tuple(float(v) for v in std),
            source=f"earlier fit on {', '.join(n for n in names_list if n) or 'its curves'}",
            n_runs=(len(fit.curves),) * len(names),
            calibration=_without_bias((fit.discrepancy or {}).get("calibration")),
        )

    @classmethod
    def from_fits(cls, fits: Sequence[Fit], widen: float = FIT_TRANSFER_WIDTH) -> Prior:
        """Several earlier runs of one recipe pooled (each Fit of runs at one peak LR): per
        feature the precision-weighted mean; the std adds the fits' spread around it."""
        if not fits:
            raise PriorError("from_fits needs at least one Fit")
        if len(fits) == 1:
            return cls.from_fit(fits[0], widen)
        pooled = size_prior(fits, [1.0] * len(fits), 1.0, widen=widen)
        return replace(pooled, source=f"{len(fits)} earlier fits pooled")


def _without_bias(cal: Mapping[str, float] | None) -> dict[str, float] | None:
    """A Fit's calibration minus its bias: the bias was measured for the shipped priors, which
    pool runs of every horizon; a run of the same recipe as prior does not share it (with it, the
    size-transfer error of bench/bench_early.py rose from 0.39% to 0.87%)."""
    return None if cal is None else {k: v for k, v in cal.items() if k != "bias"}


def size_prior(
    fits: Sequence[Fit], sizes: Sequence[float], target_size: float, *, widen: float = 0.1
) -> Prior:
    """A prior for a model of ``target_size`` parameters from full fits of smaller models.

    Give one Fit per (size, peak LR): the features are relative to a fit's peak LR, so a fit of
    runs at several peak LRs has no single value of them (refused). Several fits per size are
    welcome; their spread enters the std. Each transfer feature is regressed on ``log(size)``,
    weighting each fit by its precision on it (a line through two or more sizes; the mean for
    one), and read off at the target size. Its std combines the fits' own uncertainty, the
    precision-weighted scatter around the line, the line's extrapolation error and ``widen``.
    """
    if len(fits) != len(sizes) or not fits:
        raise PriorError("size_prior needs one size per fit, and at least one fit")
    priors = [Prior.from_fit(f, widen=0.0) for f in fits]
    law = fits[0].law_object
    if any(p.law != priors[0].law or dict(p.law_options) != dict(priors[0].law_options) for p in priors):
        raise PriorError("size_prior needs fits of one law with the same options")
    x = np.log(np.asarray(sizes, dtype=float))
    x0 = np.log(float(target_size))
    phi = np.array([p.mean for p in priors])  # (fits, features)
    own = np.array([p.std for p in priors])
    mean, std = [], []
    for j in range(phi.shape[1]):
        w = 1.0 / np.maximum(own[:, j], 1e-3) ** 2
        if np.ptp(x) == 0:  # one size: the precision-weighted mean
            m = float(w @ phi[:, j] / w.sum())
            spread2 = float(w @ (phi[:, j] - m) ** 2 / w.sum())
            mean.append(m)
            std.append(float(np.sqrt(float(len(w) / w.sum()) + spread2 + widen**2)))
            continue
        design = np.column_stack([np.ones_like(x), x - x.mean()])
        cov = np.linalg.inv(design.T @ (design * w[:, None]))
        coef = cov @ design.T @ (w * phi[:, j])
        resid = phi[:, j] - design @ coef
        dof = max(len(x) - 2, 1)
        # Weighted like the line: a fit that cannot tell a feature (a constant run's annealing
        # gain, a diverged run) must not swamp the scatter of those that can.
        scatter2 = float(w @ resid**2) / float(w.sum()) * len(x) / dof if len(x) > 2 else 0.0
        at = np.array([1.0, x0 - x.mean()])
        line_var = float(at @ cov @ at) * max(1.0, scatter2 * float(w.mean()))
        mean.append(float(at @ coef))
        std.append(float(np.sqrt(line_var + scatter2 + widen**2)))
    return Prior(
        law=law.name,
        law_options=dict(fits[0].law_options),
        names=priors[0].names,
        mean=tuple(mean),
        std=tuple(std),
        source=f"size sweep {', '.join(_size_text(s) for s in sorted(set(sizes)))} -> "
        f"{_size_text(target_size)} parameters",
        n_runs=(len(fits),) * len(mean),
        calibration=priors[0].calibration,
    )


def _size_text(n: float) -> str:
    """A parameter count as people write it: 25M, 1.3B."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _feature_jacobian(law: Law, theta: np.ndarray, ctx: RunContext) -> np.ndarray:
    """d features / d theta by central differences (the features are cheap closed forms)."""
    base = law.transfer_features(theta, ctx.peak_lr, ctx.horizon)
    jac = np.empty((len(base), len(theta)))
    for k in range(len(theta)):
        h = 1e-6 * max(abs(theta[k]), 1e-8)
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        jac[:, k] = (
            law.transfer_features(up, ctx.peak_lr, ctx.horizon)
            - law.transfer_features(down, ctx.peak_lr, ctx.horizon)
        ) / (2 * h)
    return jac


def shipped_priors() -> dict[str, Path]:
    """The priors that ship with the package, by file stem (e.g. ``momentum``,
    ``momentum.lr-scheduling``)."""
    folder = resources.files("hf_lrlaw") / "priors"
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            out[entry.name[: -len(".json")]] = Path(str(entry))
    return out


def resolve_prior(
    prior: str | os.PathLike[str] | Prior | Fit | None, law: Law
) -> Prior | None:
    """Turn what a user passed as ``prior=`` into a Prior for ``law`` (or None).

    ``"default"``: the prior shipped for this law, learned on both bundled data sets;
    ``"default:<dataset>"``: the one learned on that data set only; a path to a prior or Fit
    JSON; a Prior; a Fit of an earlier run.
    """
    from hf_lrlaw.fitting import Fit

    if prior is None:
        return None
    if isinstance(prior, Prior):
        out = prior
    elif isinstance(prior, Fit):
        out = Prior.from_fit(prior)
    elif isinstance(prior, str) and (prior == "default" or prior.startswith("default:")):
        stem = law.name if prior == "default" else f"{law.name}.{prior.split(':', 1)[1]}"
        shipped = shipped_priors()
        if stem not in shipped:
            raise PriorError(
                f"no shipped prior {stem!r}; available: {sorted(shipped)} (rebuild them with "
                "bench/build_priors.py)"
            )
        out = Prior.load(shipped[stem])
    else:
        path = Path(prior)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PriorError(f"{path}: no such prior file") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise PriorError(f"{path}: not a readable JSON file ({exc})") from None
        if isinstance(data, dict) and data.get("schema") == SCHEMA:
            out = Prior.from_dict(data)
        else:
            out = Prior.from_fit(Fit.load(path))
    out.check_law(law)
    if dict(out.law_options) != dict(law.options()):
        raise PriorError(
            f"the prior was learned with law options {dict(out.law_options)}, the fit uses "
            f"{law.options()}; the features do not transfer between them"
        )
    return out


def learn_prior(
    law_name: str,
    samples: Sequence[tuple[np.ndarray, RunContext, Mapping[str, bool]]],
    *,
    source: str,
    law_options: Mapping[str, Any] | None = None,
    min_std: float = 0.05,
    inflate: float = 1.25,
) -> Prior:
    """A prior from per-run fits: ``samples`` are (theta, context, determined flags) triples.

    Each feature's mean and std are the median and 1.4826 * MAD over the runs where every
    parameter it depends on was determined, the std inflated by ``inflate`` (runs of a new
    recipe differ more than runs of one study) and floored at ``min_std``.
    """
    law = get_law(law_name, **(law_options or {}))
    names = law.transfer_names
    deps = law.transfer_depends
    values: list[list[float]] = [[] for _ in names]
    for theta, ctx, determined in samples:
        phi = law.transfer_features(np.asarray(theta, dtype=float), ctx.peak_lr, ctx.horizon)
        for i, name in enumerate(names):
            if all(determined.get(p, True) for p in deps[name]) and np.isfinite(phi[i]):
                values[i].append(float(phi[i]))
    mean, std, n = [], [], []
    for name, v in zip(names, values):
        if len(v) < 3:
            raise PriorError(f"too few runs determine feature {name!r} ({len(v)}); need 3")
        arr = np.asarray(v)
        med = float(np.median(arr))
        mad = 1.4826 * float(np.median(np.abs(arr - med)))
        mean.append(med)
        std.append(max(mad * inflate, min_std))
        n.append(len(v))
    return Prior(
        law=law.name,
        law_options=law.options(),
        names=tuple(names),
        mean=tuple(mean),
        std=tuple(std),
        source=source,
        n_runs=tuple(n),
    )
