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

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hf_lrlaw.files import read_json, write_json
from hf_lrlaw.fit_result import Fit, FitError, fit_data
from hf_lrlaw.laws import Law, get_law

__all__ = [
    "SCHEMA",
    "Prior",
    "PriorChoice",
    "PriorError",
    "RunContext",
    "feature_jacobian",
    "learn_prior",
    "resolve_prior",
    "shipped_priors",
    "size_prior",
]

SCHEMA = "hf_lrlaw.prior/1"
FIT_TRANSFER_WIDTH = 0.15  # extra spread (log units) when an earlier run's Fit serves as prior


class PriorError(ValueError):
    """A prior that cannot be used as asked."""

    __module__ = "hf_lrlaw"  # raised from submodules, public at the top level


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
        jac = feature_jacobian(law, theta, ctx) * dtheta_dx[None, :]  # (features, params)
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
        """Write the prior as versioned JSON, atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Prior:
        """Read a prior written by :meth:`save`."""
        data = read_json(path, PriorError)
        if not isinstance(data, dict):
            raise PriorError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(data)
        except PriorError as exc:
            raise PriorError(f"{path}: {exc}") from None

    def describe_posterior(
        self, law: Law, theta: np.ndarray, cov: np.ndarray, dtheta_dx: np.ndarray, ctx: RunContext
    ) -> dict[str, Any]:
        """What a fit records of its prior: where it came from, and how far the data moved each
        feature from it (in prior sds) and how much they narrowed it (``cov``: the posterior
        covariance in search space, ``dtheta_dx`` its chain rule to natural parameters)."""
        phi = law.transfer_features(theta, ctx.peak_lr, ctx.horizon)
        jac = feature_jacobian(law, theta, ctx) * dtheta_dx[None, :]
        post_std = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, cov, jac), 0.0))
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        return {
            "source": self.source,
            "prior": self.to_dict(),
            "context": {"peak_lr": ctx.peak_lr, "horizon": ctx.horizon},
            "features": {
                name: {
                    "prior_mean": float(m),
                    "prior_std": float(sd),
                    "posterior": float(v),
                    "posterior_std": float(ps),
                    "shift_in_prior_sd": float((v - m) / sd),
                    "std_ratio": float(ps / sd),
                }
                for name, m, sd, v, ps in zip(self.names, mean, std, phi, post_std)
            },
        }

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
        jac = feature_jacobian(law, theta, ctx) * np.where(fit.log_params, theta, 1.0)[None, :]
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
    if any(
        p.law != priors[0].law or dict(p.law_options) != dict(priors[0].law_options) for p in priors
    ):
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


def feature_jacobian(law: Law, theta: np.ndarray, ctx: RunContext) -> np.ndarray:
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


@dataclass
class PriorChoice:
    """A ``prior=`` argument resolved once, where :func:`hf_lrlaw.fit` is entered: files are
    read and a Fit is turned into a Prior here, and the shipped prior of each law is loaded at
    most once. It then answers, for the law being fitted, which Prior to use
    (:meth:`for_law`) and which calibration goes with it (:meth:`calibration`).

    ``prior``: None (none), ``"default"`` (the prior shipped for the law, learned on both
    bundled data sets), ``"default:<dataset>"`` (learned on that data set only), a path to a
    prior, Fit or record JSON, a :class:`Prior`, or a :class:`~hf_lrlaw.Fit` of an earlier run.
    """

    given: Prior | None = None
    shipped: str | None = None  # "default" or "default:<dataset>": looked up per law
    fit: Fit | None = None  # the earlier run's Fit, when one was given (it also names a law)
    _loaded: dict[str, Prior] = field(default_factory=dict, repr=False)

    @classmethod
    def resolve(
        cls, prior: str | os.PathLike[str] | Prior | Fit | PriorChoice | None
    ) -> PriorChoice:
        if isinstance(prior, PriorChoice):
            return prior
        if prior is None:
            return cls()
        if isinstance(prior, Prior):
            return cls(given=prior)
        if isinstance(prior, Fit):
            return cls(given=Prior.from_fit(prior), fit=prior)
        if isinstance(prior, str) and (prior == "default" or prior.startswith("default:")):
            return cls(shipped=prior)
        if not isinstance(prior, (str, os.PathLike)):
            raise PriorError(
                "prior must be None, 'default', 'default:<dataset>', a path, a Prior or a Fit, "
                f"got {type(prior).__name__}"
            )
        path = Path(prior)
        data = read_json(path, PriorError)
        if isinstance(data, dict) and data.get("schema") == SCHEMA:
            try:
                return cls(given=Prior.from_dict(data))
            except PriorError as exc:
                raise PriorError(f"{path}: {exc}") from None
        try:
            earlier = Fit.from_dict(fit_data(data, path))
        except FitError as exc:
            raise PriorError(f"{path}: neither a prior nor a usable Fit ({exc})") from None
        return cls(given=Prior.from_fit(earlier), fit=earlier)

    def for_law(self, law: Law) -> Prior | None:
        """The Prior for a fit of ``law`` (None: no prior); PriorError if it was learned for
        another law or other law options."""
        if self.shipped is not None:
            out = self._shipped(law.name)
        elif self.given is not None:
            out = self.given
        else:
            return None
        out.check_law(law)
        if dict(out.law_options) != dict(law.options()):
            raise PriorError(
                f"the prior was learned with law options {dict(out.law_options)}, the fit uses "
                f"{law.options()}; the features do not transfer between them"
            )
        return out

    def calibration(self, law: Law, used: Prior | None) -> Mapping[str, float] | None:
        """The model-discrepancy terms for a fit of ``law`` that used the prior ``used``: the
        prior's own, else those shipped with the law's default prior (None where neither)."""
        if used is not None and used.calibration is not None:
            return used.calibration
        try:
            shipped = self._shipped(law.name, "default")
        except PriorError:
            return None
        if dict(shipped.law_options) != dict(law.options()):
            return None  # measured for other law options: it does not carry over
        return shipped.calibration

    def _shipped(self, law_name: str, spec: str | None = None) -> Prior:
        spec = spec or self.shipped or "default"
        stem = law_name if spec == "default" else f"{law_name}.{spec.split(':', 1)[1]}"
        if stem not in self._loaded:
            files = shipped_priors()
            if stem not in files:
                raise PriorError(
                    f"no shipped prior {stem!r}; available: {sorted(files)} (rebuild them with "
                    "bench/build_priors.py)"
                )
            self._loaded[stem] = Prior.load(files[stem])
        return self._loaded[stem]


def resolve_prior(prior: str | os.PathLike[str] | Prior | Fit | None, law: Law) -> Prior | None:
    """The Prior that ``prior=`` gives a fit of ``law`` (see :class:`PriorChoice`)."""
    return PriorChoice.resolve(prior).for_law(law)


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
