"""Candidate loss-curve laws whose parameters are shared across runs of different peak LRs.

Issue 16: one joint fit of momentum or multi-power over several peak LRs always prefers the
highest LR. Every class below follows hf_lrlaw.laws.base.Law (params with bounds, prepare,
predict, jacobian with analytic derivatives, initial_guesses, prepare_final vectorised over the
rows of a 2-D LR array, transfer_features, anneal_signal, options, name, annealing_param), so
``hf_lrlaw.fit(curves, law=Cls(), prior=None, calibration=None)`` works without editing the
library.

Candidates (formula; parameter count):

* ``NoiseForgetLaw`` ("noiseforget", the recommendation; 7 or 6):
  ``L(t) = L0 + A*S1(t)^-alpha + B*N(t)`` with the LR-noise term
  ``N(t) = sum_k [f(eta_k) - f(eta_{k-1})] * K(S1(t) - S1(k-1))``, ``f(eta) = eta^beta``,
  ``K(x) = 1 - (1 + x/c)^-gamma`` ("power") or ``1 - exp(-x/c)`` ("exp").
  N is the noise level ``eta^beta`` of the current LR, *followed with a lag*: every change of the
  LR changes the noise level, and the change is realised as training covers LR area x after it
  (``K`` goes from 0 to 1). At a constant LR, ``N -> eta^beta`` (the loss floor of SGD noise,
  which rises with the LR); a decay removes noise, but only as fast as the area after it allows,
  so the LR steps at the end of a cooldown (small LR, little area after them) are not yet
  realised. This is the functional-scaling-law picture (noise forgotten in intrinsic time S1),
  written, like the multi-power law, as a sum over LR changes (the warmup's rise included).
* ``MomentumLRQLaw`` ("momentum-lrq", 7): momentum law with a log-quadratic L0 and a power-law C
  in the peak LR: ``L0 + q1*u + q2*u^2 + A*S1^-alpha - C*exp(-kappa*u)*S2``, u = ln(peak/1e-3).
* ``MomentumNoiseLaw`` ("momentum-noise", 6): momentum law plus an LR-noise term of the
  momentum-smoothed LR: ``L0 + A*S1^-alpha + B*ema(eta)^beta - C*S2``.
* ``MomentumMaxLRLaw`` ("momentum-maxlr", 6): momentum law plus a max-LR penalty
  ``D*(eta_max/1e-3)^delta`` (our reading of the forward-momentum law's max-LR term).
* ``ConvexBoundLaw`` ("convex", 3) and ``ConvexPowerLaw`` ("convex-power", 4): the last-iterate
  SGD bound of Schaipp et al. 2025 (Defazio et al. 2023, Thm. 10 with constant G) with a scale and
  offset: ``L = c0 + a/S1 + b*Q``, ``Q = sum eta^2/S1 + sum_{k<t} eta_k/(S1_t-S1_k) *
  (Q2_t-Q2_{k-1})/(S1_t-S1_{k-1})`` (Q2 = cumulative eta^2); "convex-power" replaces a/S1 by
  a*S1^-alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.signal import lfilter

from hf_lrlaw.laws._common import (
    anneal_signal,
    anneal_signal_rows,
    final_areas,
    projected_starts,
    s1_areas,
)
from hf_lrlaw.laws.areas import (
    bin_final_drops,
    drop_pairs,
    lr_area,
    lr_floor,
    momentum_area,
    with_warmup_at_peak,
)
from hf_lrlaw.laws.base import LawError, Param
from hf_lrlaw.laws.lrnoise import LRNoiseLaw  # the chosen law, as shipped

__all__ = [
    "NoiseForgetLaw",
    "MomentumLRQLaw",
    "MomentumNoiseLaw",
    "MomentumMaxLRLaw",
    "ConvexBoundLaw",
    "ConvexPowerLaw",
    "CANDIDATES",
    "check_jacobian",
]

ETA_REF = 1e-3  # reference LR for the peak-LR-dependent terms (u = ln(peak / ETA_REF))


def _log_features(law, theta: np.ndarray) -> np.ndarray:
    """Transfer features of the new laws: the log of every positive parameter, the rest as is."""
    return np.array(
        [np.log(max(v, 1e-300)) if p.log else float(v) for p, v in zip(law.params, theta)]
    )


# ================================================================================================
# 1. The noise-forgetting law (recommended)
# ================================================================================================


class _NFPrep(NamedTuple):
    s1: np.ndarray  # S1 at each evaluated step
    n_steps: int
    pair_step: np.ndarray  # (step, bin) pairs of the LR changes, as for the multi-power law
    pair_area: np.ndarray  # LR area from the change to the step
    pair_drop: np.ndarray  # eta_{k-1} - eta_k summed over the bin (negative in the warmup)
    pair_log_lr: np.ndarray  # the bin's (drop-weighted) log LR
    init_log_lr: np.ndarray  # per step: log of the first LR (its noise enters from step 0)
    anneal: float | np.ndarray
    log_rel: np.ndarray | None = None  # ln(eta/ETA_REF) per update (2-D for prepare_final)
    idx: np.ndarray | None = None  # evaluated steps (prepare) or None (prepare_final: last column)
    log_max: np.ndarray | None = None  # per step: log of the largest LR so far


class NoiseForgetLaw:
    """``L0 + A*S^-alpha + B*N``, N the LR noise level ``eta^beta`` followed with a lag.

    ``N(t) = f(eta_0) K(x_0) + sum_k w_k [f(eta_k) - f(eta_{k-1})] K(x_k)``, ``f = eta^beta``;
    ``x_k = (S1_t - S1_{k-1}) * (eta_k/1e-3)^-rho`` is the clock of the realisation after the
    change at step k: LR area (rho = 0, ``clock="area"``), about the number of steps at the LR
    of the change (rho = 1, ``clock="steps"``), or fitted (``clock="free"``). ``w_k = 1``, or
    ``phi`` for decreases (``persist=True``: a decay removes only the fraction phi of the noise).
    ``K(x) = 1 - exp(-x/c)`` (``kernel="exp"``) or ``1 - (1 + x/c)^-gamma`` ("power"). The
    progress S is S1 (``progress="s1"``) or ``S_p = 1e-3 * sum (eta/1e-3)^p`` ("sp").
    The changes are grouped in the multi-power law's bins (``drop_pairs``), inside which
    ``f(eta_k) - f(eta_{k-1}) = -beta * eta^(beta-1) * drop`` (the LR varies by < 5-25% in a bin).
    """

    annealing_param = "B"

    def __init__(
        self,
        kernel: str = "exp",
        exact: bool = False,
        progress: str = "sp",
        clock: str = "steps",
        persist: bool = False,
        noise: str = "relative",
        penalty: str = "none",
        c_fixed: float | None = None,
    ) -> None:
        self.c_fixed = None if c_fixed is None else float(c_fixed)
        if penalty not in ("none", "quad", "free"):
            raise LawError(f"penalty must be 'none', 'quad' or 'free', got {penalty!r}")
        self.penalty = penalty
        if noise not in ("relative", "power", "shape"):
            raise LawError(f"noise must be 'relative', 'power' or 'shape', got {noise!r}")
        self.noise = noise
        if kernel not in ("power", "exp", "log"):
            raise LawError(f"kernel must be 'power', 'exp' or 'log', got {kernel!r}")
        if progress not in ("s1", "sp"):
            raise LawError(f"progress must be 's1' or 'sp', got {progress!r}")
        if clock not in ("area", "steps", "free"):
            raise LawError(f"clock must be 'area', 'steps' or 'free', got {clock!r}")
        self.kernel, self.exact, self.progress = kernel, bool(exact), progress
        self.clock, self.persist = clock, bool(persist)
        self.name = "noiseforget"  # the options tell the variants apart (see options())
        ps = [
            Param(
                "L0",
                0.0,
                None,
                log=False,
                doc="loss at infinite progress and zero LR noise",
                above_min_loss=True,
            ),
            Param("A", 1e-8, 1e8, doc="scale of the power law in the progress S"),
            Param("alpha", 1e-3, 5.0, doc="exponent of the power law in S"),
        ]
        if progress == "sp":
            ps.append(
                Param("p", 0.05, 1.5, doc="LR exponent of the progress S = 1e-3 sum (eta/1e-3)^p")
            )
        ps += [
            Param("B", 1e-8, 1e8, doc="loss per unit of LR noise level eta^beta"),
            Param("beta", 0.05, 3.0, doc="exponent of the LR in the noise level"),
        ]
        if self.c_fixed is None:
            ps.append(
                Param(
                    "c",
                    1e-6,
                    1e6,
                    doc="clock span over which a change of the noise level is realised",
                )
            )
        if noise == "shape":
            ps.append(Param("nu", 0.05, 1.5, doc="noise level = eta_max^(beta-nu) * eta^nu"))
        if kernel == "power":
            ps.append(Param("gamma", 0.05, 20.0, doc="tail exponent of the realisation K"))
        if clock == "free":
            ps.append(Param("rho", -1.0, 2.0, log=False, doc="clock = LR area x (eta/1e-3)^-rho"))
        if self.persist:
            ps.append(
                Param(
                    "phi", 0.0, 1.0, log=False, doc="fraction of the noise an LR decrease removes"
                )
            )
        if penalty != "none":
            ps.append(Param("D", 1e-8, 10.0, doc="loss penalty of the largest LR so far, at 1e-3"))
        if penalty == "free":
            ps.append(Param("delta", 0.1, 6.0, doc="exponent of the largest LR in the penalty"))
        self.params = tuple(ps)
        self._i = {p.name: i for i, p in enumerate(self.params)}
        self.transfer_names = tuple(f"log_{p.name}" if p.log else p.name for p in self.params)

    def options(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "exact": self.exact,
            "progress": self.progress,
            "clock": self.clock,
            "persist": self.persist,
            "noise": self.noise,
            "penalty": self.penalty,
            "c_fixed": self.c_fixed,
        }

    def _rho(self, theta) -> float:
        return (
            {"area": 0.0, "steps": 1.0}.get(self.clock)
            if self.clock != "free"
            else theta[self._i["rho"]]
        )

    # -- features ---------------------------------------------------------------------------
    def prepare(self, lrs: np.ndarray, steps: np.ndarray) -> _NFPrep:
        lrs = np.asarray(lrs, dtype=np.float64)
        steps = np.asarray(steps, dtype=np.int64)
        cs = lr_area(lrs)
        ps, pa, pd, pl = drop_pairs(lrs, steps, start=0, exact=self.exact)
        floor = lr_floor(lrs)
        sp = self.progress == "sp"
        return _NFPrep(
            s1=cs[steps],
            n_steps=len(steps),
            pair_step=ps,
            pair_area=pa,
            pair_drop=pd,
            pair_log_lr=pl,
            init_log_lr=np.full(len(steps), np.log(max(lrs[0], floor))),
            anneal=anneal_signal(lrs, steps),
            log_rel=np.log(np.maximum(lrs[: steps.max() + 1], floor) / ETA_REF) if sp else None,
            idx=steps if sp else None,
            log_max=np.log(np.maximum(np.maximum.accumulate(lrs)[steps], floor)),
        )

    def prepare_final(self, lrs: np.ndarray) -> _NFPrep:
        lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
        n = len(lrs)
        rows, bins = bin_final_drops(lrs, np.zeros(n, dtype=np.int64))
        total = lrs.sum(axis=1)
        floor = 1e-12 * np.maximum(lrs.max(axis=1), 1e-300)
        return _NFPrep(
            s1=total,
            n_steps=n,
            pair_step=rows,
            pair_area=total[rows] - bins.area_before,
            pair_drop=bins.drop,
            pair_log_lr=bins.log_lr,
            init_log_lr=np.log(np.maximum(lrs[:, 0], floor)),
            anneal=anneal_signal_rows(lrs),
            log_rel=(
                np.log(np.maximum(lrs, floor[:, None]) / ETA_REF) if self.progress == "sp" else None
            ),
            log_max=np.log(np.maximum(lrs.max(axis=1), floor)),
        )

    # -- terms --------------------------------------------------------------------------------
    def _progress(self, theta: np.ndarray, prep: _NFPrep, derivs: bool):
        """S1, or S_p = ETA_REF * sum (eta/ETA_REF)^p and dS_p/dp."""
        if self.progress == "s1":
            return prep.s1, None
        p = theta[self._i["p"]]
        w = np.exp(p * prep.log_rel)
        if prep.idx is None:  # prepare_final: the sum over each row
            sp = ETA_REF * w.sum(axis=1)
            dsp = ETA_REF * (w * prep.log_rel).sum(axis=1) if derivs else None
        else:
            sp = ETA_REF * np.cumsum(w)[prep.idx]
            dsp = ETA_REF * np.cumsum(w * prep.log_rel)[prep.idx] if derivs else None
        return sp, dsp

    def _k(self, x: np.ndarray, c: float, gamma: float | None):
        """K(x), dK/dx, dK/dc, dK/dgamma (None for the exponential kernel)."""
        if self.kernel == "log":  # K = ln(1 + x/c): realised without bound, ever more slowly
            return np.log1p(x / c), 1.0 / (c + x), -x / (c * (c + x)), None
        if self.kernel == "power":
            log_u = np.log1p(x / c)
            tail = np.exp(-gamma * log_u)  # (1 + x/c)^-gamma
            dk_dx = gamma * tail / (c + x)
            return 1.0 - tail, dk_dx, -dk_dx * x / c, tail * log_u
        e = np.exp(-x / c)
        return 1.0 - e, e / c, -(x / c**2) * e, None

    def _noise(self, theta: np.ndarray, prep: _NFPrep, derivs: bool):
        i = self._i
        beta = theta[i["beta"]]
        c = self.c_fixed if self.c_fixed is not None else theta[i["c"]]
        gamma = theta[i["gamma"]] if self.kernel == "power" else None
        rho = self._rho(theta)
        n = prep.n_steps
        lg = prep.pair_log_lr
        if self.noise == "power":
            g = np.exp((beta - 1.0) * lg)  # eta^(beta-1)
            df = -prep.pair_drop * beta * g  # change of the noise level f = eta^beta
            ddf_db = -prep.pair_drop * g * (1.0 + beta * lg)
        elif self.noise == "shape":  # f = eta_max^(beta-nu) * eta^nu (the eta_max factor below)
            nu = theta[i["nu"]]
            g = np.exp((nu - 1.0) * lg)
            df = -prep.pair_drop * nu * g
            ddf_db = -prep.pair_drop * g * (1.0 + nu * lg)  # d/dnu of df
        else:  # f = eta_max^(beta-1) * eta: linear in the LR, scale eta_max^beta (applied below)
            df = -prep.pair_drop
            ddf_db = np.zeros_like(df)
        if self.persist:
            dec = prep.pair_drop > 0
            wphi = np.where(dec, theta[i["phi"]], 1.0)
            df_full = df
            df, ddf_db = df * wphi, ddf_db * wphi
        rel = lg - np.log(ETA_REF)
        x = prep.pair_area * np.exp(-rho * rel)
        k, dk_dx, dk_dc, dk_dg = self._k(x, c, gamma)
        e0 = (
            {"power": beta, "relative": 1.0}.get(self.noise)
            if self.noise != "shape"
            else theta[i["nu"]]
        )
        f0 = np.exp(e0 * prep.init_log_lr)
        rel0 = prep.init_log_lr - np.log(ETA_REF)
        x0 = prep.s1 * np.exp(-rho * rel0)
        k0, dk0_dx, dk0_dc, dk0_dg = self._k(x0, c, gamma)
        noise = np.bincount(prep.pair_step, df * k, minlength=n) + f0 * k0
        scale = 1.0 if self.noise == "power" else np.exp((beta - e0) * prep.log_max)
        if not derivs:
            return noise * scale, None
        if self.noise == "power":
            d_beta = (
                np.bincount(prep.pair_step, ddf_db * k, minlength=n) + prep.init_log_lr * f0 * k0
            )
        else:
            d_beta = noise * scale * prep.log_max
        out = {"beta": d_beta}
        if self.noise == "shape":
            out["nu"] = (
                np.bincount(prep.pair_step, ddf_db * k, minlength=n) + prep.init_log_lr * f0 * k0
            ) * scale - prep.log_max * noise * scale
        if self.c_fixed is None:
            out["c"] = np.bincount(prep.pair_step, df * dk_dc, minlength=n) + f0 * dk0_dc
        if gamma is not None:
            out["gamma"] = np.bincount(prep.pair_step, df * dk_dg, minlength=n) + f0 * dk0_dg
        if self.clock == "free":
            out["rho"] = np.bincount(
                prep.pair_step, df * dk_dx * (-rel * x), minlength=n
            ) + f0 * dk0_dx * (-rel0 * x0)
        if self.persist:
            out["phi"] = np.bincount(prep.pair_step, np.where(dec, df_full, 0.0) * k, minlength=n)
        for key in out:
            if key not in ("beta", "nu"):
                out[key] = out[key] * scale
        return noise * scale, out

    def _penalty(self, theta: np.ndarray, prep: _NFPrep):
        """D * (eta_max/1e-3)^delta (delta = 2 for "quad") and its derivatives."""
        if self.penalty == "none":
            return 0.0, {}
        u = prep.log_max - np.log(ETA_REF)
        delta = 2.0 if self.penalty == "quad" else theta[self._i["delta"]]
        d = theta[self._i["D"]]
        e = np.exp(delta * u)
        der = {"D": e}
        if self.penalty == "free":
            der["delta"] = d * u * e
        return d * e, der

    def predict(self, theta: np.ndarray, prep: _NFPrep) -> np.ndarray:
        l0, a, alpha = theta[:3]
        noise, _ = self._noise(theta, prep, False)
        sp, _ = self._progress(theta, prep, False)
        pen, _ = self._penalty(theta, prep)
        return l0 + a * sp ** (-alpha) + theta[self._i["B"]] * noise + pen

    def jacobian(self, theta: np.ndarray, prep: _NFPrep) -> tuple[np.ndarray, np.ndarray]:
        l0, a, alpha = theta[:3]
        b = theta[self._i["B"]]
        noise, d = self._noise(theta, prep, True)
        sp, dsp = self._progress(theta, prep, True)
        power = sp ** (-alpha)
        jac = np.empty((prep.n_steps, len(self.params)))
        jac[:, 0] = 1.0
        jac[:, 1] = power
        jac[:, 2] = -a * np.log(sp) * power
        if dsp is not None:
            jac[:, self._i["p"]] = -a * alpha * power / sp * dsp
        jac[:, self._i["B"]] = noise
        for name, dj in d.items():
            jac[:, self._i[name]] = b * dj
        pen, dpen = self._penalty(theta, prep)
        for name, dj in dpen.items():
            jac[:, self._i[name]] = dj
        return l0 + a * power + b * noise + pen, jac

    def initial_guesses(
        self, preps: Sequence[_NFPrep], losses: Sequence[np.ndarray], n: int
    ) -> np.ndarray:
        """Variable projection over (L0, A, B) on a grid of the other parameters."""
        ceiling = max(float(y.max()) for y in losses)
        grid = {
            "p": (0.5, 0.8) if self.progress == "sp" else (None,),
            "beta": (0.3, 0.6, 1.0),
            "c": (None,)
            if self.c_fixed is not None
            else (0.03, 0.3, 3.0)
            if self.kernel != "log"
            else (1e-4, 1e-2, 1.0),
            "gamma": (0.7, 2.0) if self.kernel == "power" else (None,),
            "rho": (0.5,) if self.clock == "free" else (None,),
            "phi": (0.6, 0.9) if self.persist else (None,),
            "nu": (0.5, 1.0) if self.noise == "shape" else (None,),
            "delta": (1.0, 3.0) if self.penalty == "free" else (None,),
        }
        found = []
        names = [p.name for p in self.params]
        import itertools

        for combo in itertools.product(*grid.values()):
            vals = dict(zip(grid, combo))
            theta = np.array(
                [
                    {"L0": 0.0, "A": 1.0, "alpha": 1.0, "B": 1.0, "D": 1.0}.get(nm, vals.get(nm))
                    for nm in names
                ],
                dtype=float,
            )
            sps = [self._progress(theta, p, False)[0] for p in preps]
            noises = [self._noise(theta, p, False)[0] for p in preps]
            pens = [self._penalty(theta, p)[0] * np.ones(p.n_steps) for p in preps]
            use_pen = self.penalty != "none"
            lo = np.zeros(4 if use_pen else 3)
            hi = np.array([ceiling, np.inf, np.inf] + ([10.0] if use_pen else []))
            for alpha in (0.15, 0.3, 0.5, 0.8):
                bases = [
                    np.column_stack(
                        [np.ones_like(sp), sp ** (-alpha), nz] + ([pe] if use_pen else [])
                    )
                    for sp, nz, pe in zip(sps, noises, pens)
                ]
                lin, rss = projected_starts(bases, losses, lo, hi)
                if np.isfinite(rss):
                    th = theta.copy()
                    th[0], th[1], th[2], th[self._i["B"]] = (
                        lin[0],
                        max(lin[1], 1e-6),
                        alpha,
                        max(lin[2], 1e-6),
                    )
                    if use_pen:
                        th[self._i["D"]] = min(max(lin[3], 1e-6), 9.0)
                    found.append((rss, th))
        found.sort(key=lambda item: item[0])
        return np.array([theta for _, theta in found[:n]])

    def transfer_features(self, theta: np.ndarray, peak_lr: float, horizon: int) -> np.ndarray:
        return _log_features(self, theta)

    def anneal_signal(self, prep: _NFPrep) -> float | np.ndarray:
        return prep.anneal


# ================================================================================================
# 2-4. Momentum-law variants
# ================================================================================================


class _MPrep(NamedTuple):
    s1: np.ndarray
    s2: np.ndarray
    u: np.ndarray  # ln(peak LR / ETA_REF), per step (or per row)
    ema: np.ndarray  # momentum-smoothed LR (MomentumNoiseLaw only; zeros otherwise)
    anneal: float | np.ndarray


class _MomentumBase:
    """Shared prepare/prepare_final: S1 and S2 exactly as hf_lrlaw's MomentumLaw (warmup="peak")."""

    annealing_param = "C"
    needs_ema = False

    def __init__(self, lam: float = 0.999, warmup: str = "peak") -> None:
        if not 0.0 <= lam < 1.0 or warmup != "peak":
            raise LawError("these momentum variants take lam in [0, 1) and warmup='peak'")
        self.lam = float(lam)
        self.warmup = warmup

    def options(self) -> dict[str, Any]:
        return {"lam": self.lam, "warmup": self.warmup}

    def prepare(self, lrs: np.ndarray, steps: np.ndarray) -> _MPrep:
        lrs = np.asarray(lrs, dtype=np.float64)
        steps = np.asarray(steps, dtype=np.int64)
        s1 = s1_areas(lrs, self.warmup)[steps]
        s2 = momentum_area(with_warmup_at_peak(lrs), self.lam)[steps]
        u = np.full(len(steps), np.log(lrs.max() / ETA_REF))
        if self.needs_ema:
            zi = np.array([self.lam * lrs[0]])
            ema = lfilter([1.0 - self.lam], [1.0, -self.lam], lrs, zi=zi)[0][steps]
        else:
            ema = np.zeros(len(steps))
        return _MPrep(s1, s2, u, ema, anneal_signal(lrs, steps))

    def prepare_final(self, lrs: np.ndarray) -> _MPrep:
        lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
        s1, s2, anneal = final_areas(lrs, self.lam, self.warmup)
        u = np.log(lrs.max(axis=1) / ETA_REF)
        if self.needs_ema:
            t = lrs.shape[1]
            w = (1.0 - self.lam) * self.lam ** (t - 1 - np.arange(t))
            ema = lrs @ w + self.lam**t * lrs[:, 0]
        else:
            ema = np.zeros(len(lrs))
        return _MPrep(s1, s2, u, ema, anneal)

    def transfer_features(self, theta: np.ndarray, peak_lr: float, horizon: int) -> np.ndarray:
        return _log_features(self, theta)

    def anneal_signal(self, prep: _MPrep) -> float | np.ndarray:
        return prep.anneal

    def _starts(self, preps, losses, n, build_extra, grid):
        """Variable projection over the linear parameters for every point of ``grid``."""
        found = []
        for nonlin in grid:
            for alpha in np.geomspace(0.05, 2.0, 10):
                bases, lower, upper, assemble = build_extra(preps, losses, alpha, nonlin)
                lin, rss = projected_starts(bases, losses, lower, upper)
                if np.isfinite(rss):
                    found.append((rss, assemble(lin, alpha, nonlin)))
        found.sort(key=lambda item: item[0])
        return np.array([theta for _, theta in found[:n]])


class MomentumLRQLaw(_MomentumBase):
    """``L0 + q1*u + q2*u^2 + A*S1^-alpha - C*exp(-kappa*u)*S2``, u = ln(peak/1e-3)."""

    name = "momentum-lrq"
    params = (
        Param(
            "L0", 0.0, None, log=False, doc="irreducible loss at peak LR 1e-3", above_min_loss=True
        ),
        Param("q1", -1.0, 1.0, log=False, doc="slope of L0 in ln(peak LR)"),
        Param("q2", 0.0, 1.0, log=False, doc="curvature of L0 in ln(peak LR)"),
        Param("A", 1e-8, 1e8, doc="scale of the power-law term"),
        Param("alpha", 1e-3, 5.0, doc="power-law exponent in S1"),
        Param("C", 1e-12, 1e12, doc="annealing coefficient at peak LR 1e-3"),
        Param("kappa", -3.0, 3.0, log=False, doc="C scales like peak_lr^-kappa"),
    )
    transfer_names = ("L0", "q1", "q2", "log_A", "log_alpha", "log_C", "kappa")

    def predict(self, theta, prep):
        l0, q1, q2, a, alpha, c, kappa = theta
        u = prep.u
        return l0 + q1 * u + q2 * u * u + a * prep.s1 ** (-alpha) - c * np.exp(-kappa * u) * prep.s2

    def jacobian(self, theta, prep):
        l0, q1, q2, a, alpha, c, kappa = theta
        u = prep.u
        power = prep.s1 ** (-alpha)
        sc = np.exp(-kappa * u) * prep.s2
        pred = l0 + q1 * u + q2 * u * u + a * power - c * sc
        jac = np.column_stack(
            [
                np.ones_like(u),
                u,
                u * u,
                power,
                -a * np.log(prep.s1) * power,
                -sc,
                c * u * sc,
            ]
        )
        return pred, jac

    def initial_guesses(self, preps, losses, n):
        ceiling = max(float(y.max()) for y in losses)

        def build(preps, losses, alpha, kappa):
            bases = [
                np.column_stack(
                    [
                        np.ones_like(p.s1),
                        p.u,
                        p.u**2,
                        p.s1 ** (-alpha),
                        -np.exp(-kappa * p.u) * p.s2,
                    ]
                )
                for p in preps
            ]
            lower = np.array([0.0, -1.0, 0.0, 0.0, 0.0])
            upper = np.array([ceiling, 1.0, 1.0, np.inf, np.inf])

            def assemble(lin, alpha, kappa):
                l0, q1, q2, a, c = lin
                return [l0, q1, q2, max(a, 1e-6), alpha, max(c, 1e-6), kappa]

            return bases, lower, upper, assemble

        return self._starts(preps, losses, n, build, (0.0, 0.75, 1.5))


class MomentumNoiseLaw(_MomentumBase):
    """``L0 + A*S1^-alpha + B*ema(eta)^beta - C*S2`` (ema with the momentum factor lam)."""

    name = "momentum-noise"
    needs_ema = True
    params = (
        Param("L0", 0.0, None, log=False, doc="irreducible loss", above_min_loss=True),
        Param("A", 1e-8, 1e8, doc="scale of the power-law term"),
        Param("alpha", 1e-3, 5.0, doc="power-law exponent in S1"),
        Param("B", 1e-8, 1e8, doc="loss per unit of smoothed LR^beta (SGD noise)"),
        Param("beta", 0.05, 3.0, doc="exponent of the smoothed LR"),
        Param("C", 1e-12, 1e12, doc="loss drop per unit of annealing area S2"),
    )
    transfer_names = ("L0", "log_A", "log_alpha", "log_B", "log_beta", "log_C")

    def predict(self, theta, prep):
        l0, a, alpha, b, beta, c = theta
        return l0 + a * prep.s1 ** (-alpha) + b * np.maximum(prep.ema, 1e-300) ** beta - c * prep.s2

    def jacobian(self, theta, prep):
        l0, a, alpha, b, beta, c = theta
        power = prep.s1 ** (-alpha)
        le = np.log(np.maximum(prep.ema, 1e-300))
        g = np.exp(beta * le)
        pred = l0 + a * power + b * g - c * prep.s2
        jac = np.column_stack(
            [np.ones_like(power), power, -a * np.log(prep.s1) * power, g, b * le * g, -prep.s2]
        )
        return pred, jac

    def initial_guesses(self, preps, losses, n):
        ceiling = max(float(y.max()) for y in losses)

        def build(preps, losses, alpha, beta):
            bases = [
                np.column_stack(
                    [np.ones_like(p.s1), p.s1 ** (-alpha), np.maximum(p.ema, 1e-300) ** beta, -p.s2]
                )
                for p in preps
            ]
            lower, upper = np.zeros(4), np.array([ceiling, np.inf, np.inf, np.inf])

            def assemble(lin, alpha, beta):
                l0, a, b, c = lin
                return [l0, max(a, 1e-6), alpha, max(b, 1e-6), beta, max(c, 1e-6)]

            return bases, lower, upper, assemble

        return self._starts(preps, losses, n, build, (0.3, 0.6, 1.0, 1.5))


class MomentumMaxLRLaw(_MomentumBase):
    """``L0 + A*S1^-alpha - C*S2 + D*(eta_max/1e-3)^delta``: a loss penalty of the peak LR that
    annealing does not remove (the "max-LR" term; see RESULTS.md for what we assumed)."""

    name = "momentum-maxlr"
    params = (
        Param("L0", 0.0, None, log=False, doc="irreducible loss", above_min_loss=True),
        Param("A", 1e-8, 1e8, doc="scale of the power-law term"),
        Param("alpha", 1e-3, 5.0, doc="power-law exponent in S1"),
        Param("C", 1e-12, 1e12, doc="loss drop per unit of annealing area S2"),
        Param("D", 1e-8, 10.0, doc="loss penalty at peak LR 1e-3"),
        Param("delta", 0.05, 6.0, doc="exponent of the peak LR in the penalty"),
    )
    transfer_names = ("L0", "log_A", "log_alpha", "log_C", "log_D", "log_delta")

    def predict(self, theta, prep):
        l0, a, alpha, c, d, delta = theta
        return l0 + a * prep.s1 ** (-alpha) - c * prep.s2 + d * np.exp(delta * prep.u)

    def jacobian(self, theta, prep):
        l0, a, alpha, c, d, delta = theta
        power = prep.s1 ** (-alpha)
        pen = np.exp(delta * prep.u)
        pred = l0 + a * power - c * prep.s2 + d * pen
        jac = np.column_stack(
            [
                np.ones_like(power),
                power,
                -a * np.log(prep.s1) * power,
                -prep.s2,
                pen,
                d * prep.u * pen,
            ]
        )
        return pred, jac

    def initial_guesses(self, preps, losses, n):
        ceiling = max(float(y.max()) for y in losses)

        def build(preps, losses, alpha, delta):
            bases = [
                np.column_stack([np.ones_like(p.s1), p.s1 ** (-alpha), -p.s2, np.exp(delta * p.u)])
                for p in preps
            ]
            lower, upper = np.zeros(4), np.array([ceiling, np.inf, np.inf, 10.0])

            def assemble(lin, alpha, delta):
                l0, a, c, d = lin
                return [l0, max(a, 1e-6), alpha, max(c, 1e-6), min(max(d, 1e-6), 9.0), delta]

            return bases, lower, upper, assemble

        return self._starts(preps, losses, n, build, (0.5, 1.0, 2.0, 3.0))


# ================================================================================================
# 5. The convex-theory bound (Schaipp et al. 2025)
# ================================================================================================


class _CPrep(NamedTuple):
    s1: np.ndarray
    q: np.ndarray
    anneal: float | np.ndarray


def _bound_q(lrs: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Q(t) for t in ``ends``: sum_{i<=t} eta_i^2 / S_t + sum_{k<t} eta_k / (S_t - S_k) *
    (sum_{i=k..t} eta_i^2) / (S_t - S_{k-1}) (S inclusive cumulative sums; constant G)."""
    lrs = np.maximum(np.asarray(lrs, dtype=np.float64), 1e-8 * float(np.max(lrs)))
    cs = np.cumsum(lrs)
    c2 = np.cumsum(lrs**2)
    out = np.empty(len(ends))
    for j, t in enumerate(np.asarray(ends, dtype=np.int64)):
        st, qt = cs[t], c2[t]
        term2 = qt / st
        if t == 0:
            out[j] = term2
            continue
        k = np.arange(t)
        alpha = st - cs[k]  # sum_{k+1..t}
        beta_ = alpha + lrs[k]  # sum_{k..t}
        gam = qt - c2[k] + lrs[k] ** 2  # sum_{k..t} eta^2
        out[j] = term2 + float(np.sum(lrs[k] / alpha * gam / beta_))
    return out


class ConvexBoundLaw:
    """``c0 + a/S1 + b*Q``: the last-iterate bound D^2/(2 S1) + G^2 Q / 2 with scale and offset."""

    name = "convex"
    annealing_param = "b"
    params = (
        Param("c0", 0.0, None, log=False, doc="offset (loss at the optimum)", above_min_loss=True),
        Param("a", 1e-10, 1e6, doc="scale x D^2/2"),
        Param("b", 1e-10, 1e6, doc="scale x G^2/2"),
    )
    transfer_names = ("c0", "log_a", "log_b")

    def __init__(self) -> None:
        pass

    def options(self) -> dict[str, Any]:
        return {}

    def prepare(self, lrs, steps):
        lrs = np.asarray(lrs, dtype=np.float64)
        steps = np.asarray(steps, dtype=np.int64)
        return _CPrep(np.cumsum(lrs)[steps], _bound_q(lrs, steps), anneal_signal(lrs, steps))

    def prepare_final(self, lrs):
        lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
        t = lrs.shape[1] - 1
        q = np.array([_bound_q(row, np.array([t]))[0] for row in lrs])
        return _CPrep(lrs.sum(axis=1), q, anneal_signal_rows(lrs))

    def predict(self, theta, prep):
        c0, a, b = theta
        return c0 + a / prep.s1 + b * prep.q

    def jacobian(self, theta, prep):
        c0, a, b = theta
        jac = np.column_stack([np.ones_like(prep.s1), 1.0 / prep.s1, prep.q])
        return c0 + a / prep.s1 + b * prep.q, jac

    def initial_guesses(self, preps, losses, n):
        ceiling = max(float(y.max()) for y in losses)
        bases = [np.column_stack([np.ones_like(p.s1), 1.0 / p.s1, p.q]) for p in preps]
        (c0, a, b), rss = projected_starts(
            bases, losses, np.zeros(3), np.array([ceiling, np.inf, np.inf])
        )
        base = np.array([c0, max(a, 1e-6), max(b, 1e-6)])
        return np.array([base, base * np.array([1.0, 2.0, 0.5]), base * np.array([1.0, 0.5, 2.0])])[
            :n
        ]

    def transfer_features(self, theta, peak_lr, horizon):
        return _log_features(self, theta)

    def anneal_signal(self, prep):
        return prep.anneal


class ConvexPowerLaw(ConvexBoundLaw):
    """``c0 + a*S1^-alpha + b*Q``: the bound with its 1/S1 term freed to a power law."""

    name = "convex-power"
    params = (
        Param("c0", 0.0, None, log=False, doc="offset", above_min_loss=True),
        Param("a", 1e-10, 1e6, doc="scale of the power law"),
        Param("alpha", 1e-3, 5.0, doc="power-law exponent in S1"),
        Param("b", 1e-10, 1e6, doc="scale of the bound's noise term Q"),
    )
    transfer_names = ("c0", "log_a", "log_alpha", "log_b")

    def predict(self, theta, prep):
        c0, a, alpha, b = theta
        return c0 + a * prep.s1 ** (-alpha) + b * prep.q

    def jacobian(self, theta, prep):
        c0, a, alpha, b = theta
        power = prep.s1 ** (-alpha)
        jac = np.column_stack([np.ones_like(power), power, -a * np.log(prep.s1) * power, prep.q])
        return c0 + a * power + b * prep.q, jac

    def initial_guesses(self, preps, losses, n):
        ceiling = max(float(y.max()) for y in losses)
        found = []
        for alpha in np.geomspace(0.05, 2.0, 12):
            bases = [np.column_stack([np.ones_like(p.s1), p.s1 ** (-alpha), p.q]) for p in preps]
            (c0, a, b), rss = projected_starts(
                bases, losses, np.zeros(3), np.array([ceiling, np.inf, np.inf])
            )
            if np.isfinite(rss):
                found.append((rss, [c0, max(a, 1e-6), alpha, max(b, 1e-6)]))
        found.sort(key=lambda item: item[0])
        return np.array([th for _, th in found[:n]])


CANDIDATES = {
    # the recommendation (7 parameters) and its ablations, each changing one thing
    "lrnoise": LRNoiseLaw,
    "lrnoise-nopenalty": lambda: NoiseForgetLaw(kernel="log", c_fixed=1e-3),  # 6: no D term
    "lrnoise-s1": lambda: NoiseForgetLaw(
        kernel="log", c_fixed=1e-3, penalty="quad", progress="s1"
    ),  # 6: p = 1
    "lrnoise-expkernel": lambda: NoiseForgetLaw(kernel="exp", penalty="quad"),  # 8: K = 1-exp(-n/c)
    "lrnoise-cfree": lambda: NoiseForgetLaw(
        kernel="log", penalty="quad"
    ),  # 8: K = ln(1+n/c), c fitted
    "lrnoise-powernoise": lambda: NoiseForgetLaw(
        kernel="log", c_fixed=1e-3, penalty="quad", noise="power"
    ),  # 7
    # the other candidate families of the brief
    "momentum-lrq": MomentumLRQLaw,
    "momentum-noise": MomentumNoiseLaw,
    "momentum-maxlr": MomentumMaxLRLaw,
    "convex": ConvexBoundLaw,
    "convex-power": ConvexPowerLaw,
}


def make_law(name: str):
    """A candidate by name; ``nf:key=value,...`` builds a NoiseForgetLaw with those options."""
    if name.startswith("nf:"):
        opts = {}
        for kv in name[3:].split(","):
            k, v = kv.split("=")
            opts[k] = (v == "1") if k in ("persist", "exact") else float(v) if k == "c_fixed" else v
        return NoiseForgetLaw(**opts)
    if name in CANDIDATES:
        return CANDIDATES[name]()
    from hf_lrlaw.laws import get_law

    return get_law(name)


def register() -> None:
    """Make the candidates known to hf_lrlaw.get_law in this process (no file is changed), so that
    a Fit of one of them can predict and rank (Fit.law_object looks the law up by name)."""
    from hf_lrlaw.laws import _LAWS

    _LAWS.setdefault("noiseforget", NoiseForgetLaw)
    _LAWS.setdefault("lrnoise", LRNoiseLaw)
    for cls in (MomentumLRQLaw, MomentumNoiseLaw, MomentumMaxLRLaw, ConvexBoundLaw, ConvexPowerLaw):
        _LAWS.setdefault(cls.name, cls)


# ================================================================================================
# Checks
# ================================================================================================


def check_jacobian(law, theta: np.ndarray, prep, rel_step: float = 1e-6) -> float:
    """Largest |analytic - central finite difference| / (|finite difference| + 1e-8 * scale) over
    all steps and parameters."""
    theta = np.asarray(theta, dtype=float)
    pred, jac = law.jacobian(theta, prep)
    assert np.allclose(pred, law.predict(theta, prep), rtol=1e-12, atol=1e-12)
    worst = 0.0
    for j in range(len(theta)):
        h = rel_step * max(abs(theta[j]), 1e-3)
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        fd = (law.predict(tp, prep) - law.predict(tm, prep)) / (2 * h)
        scale = np.max(np.abs(fd)) + 1e-12
        worst = max(worst, float(np.max(np.abs(jac[:, j] - fd)) / scale))
    return worst


if __name__ == "__main__":  # the Jacobian and prepare_final checks on a few real curves
    from hf_lrlaw import datasets

    curves = datasets.load(
        "lr-scheduling",
        model="124M",
        dataset="slimpajama",
        peak_lr=2e-3,
        schedule=["wsd-linear-cooldown0.2", "cosine-to-10%"],
        total_steps=15000,
    )
    rng = np.random.default_rng(0)
    base = {
        "L0": 2.5,
        "A": 0.5,
        "alpha": 0.3,
        "p": 0.6,
        "B": 3.0,
        "beta": 0.5,
        "c": 0.5,
        "gamma": 1.2,
        "rho": 0.7,
        "phi": 0.6,
        "q1": -0.02,
        "q2": 0.03,
        "C": 0.001,
        "kappa": 0.7,
        "D": 0.01,
        "delta": 2.0,
        "c0": 2.8,
        "a": 0.5,
        "b": 20.0,
        "nu": 0.7,
    }
    base_lrnoise = {"B": 0.35, "D": 0.012}
    # the clean LRNoiseLaw must equal the general class with the same options
    ref = NoiseForgetLaw(kernel="log", c_fixed=1e-3, penalty="quad")
    th = np.array([2.6, 1.0, 0.36, 0.6, 0.35, 0.4, 0.012])
    for c in curves:
        a_ = LRNoiseLaw().predict(th, LRNoiseLaw().prepare(c.lrs, c.steps))
        b_ = ref.predict(th, ref.prepare(c.lrs, c.steps))
        print(
            f"LRNoiseLaw vs NoiseForgetLaw(log, c=1e-3, quad) on {c.meta['schedule']}: max |diff| {np.max(np.abs(a_ - b_)):.1e}"
        )
    for name, make in CANDIDATES.items():
        law = make()
        bb = dict(base, **(base_lrnoise if name == "lrnoise" else {}))
        thetas = {name: [bb[p.name] * (1 + 0.1 * rng.standard_normal()) for p in law.params]}
        for c in curves:
            prep = law.prepare(c.lrs, c.steps[::7])
            err = check_jacobian(law, np.array(thetas[name]), prep)
            # prepare_final at the last step must agree with prepare at that step
            end = int(c.steps[-1])
            fin = law.predict(np.array(thetas[name]), law.prepare_final(c.lrs[None, : end + 1]))[0]
            one = law.predict(np.array(thetas[name]), law.prepare(c.lrs, np.array([end])))[0]
            print(
                f"{name:16s} {c.meta['schedule']:24s} jac max rel err {err:.2e}  "
                f"final {fin:.6f} vs prepare {one:.6f} (diff {fin - one:+.1e})"
            )
