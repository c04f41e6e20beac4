"""Does the LR-noise law transfer the best cooldown length across horizons if the progress of a
step at a decayed LR scales with its own exponent? A probe of RESULTS' "Why lrlaw missed" (25k).

lrnoise counts a step's progress as ``(eta/1e-3)**p``: one exponent both for the peak LR across
runs and for the decayed LRs within a run. Fitted on the 25k cell's 15k pilots, p ~ 0.2: a
decay step at a tenth of the peak counts 63% of a peak step, so long cooldowns look nearly free
and the law under-predicts them at 25k. The variant here (``q``) splits the two:

    w_i = (m_i/1e-3)**p * (eta_i/m_i)**q,     m_i = the largest LR up to step i

(q = p is lrnoise). For lrnoise and the variant, each fitted on the pilot sets of
bench/replay_probes.py (the 25k cell from its 15k runs, the 50k cell from its 25k runs), it
prints the predicted-minus-true final loss of WSD by decay fraction at each peak LR and where the
cells within 0.002 nats of the best rank.

    python bench/progress_exponent.py      # about 2 minutes on 2 cores
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from replay_probes import FRACTIONS, band_ranks, pilot_sets, wsd  # noqa: E402

import hf_lrlaw  # noqa: E402
from hf_lrlaw import LossCurve, Schedule  # noqa: E402
from hf_lrlaw.laws.base import Param  # noqa: E402
from hf_lrlaw.laws.lrnoise import BAND_WIDTH, LN_REF, LRNoiseLaw  # noqa: E402
from tune_search.replay import ReplayWorld  # noqa: E402


class _Weights(NamedTuple):
    log_max: np.ndarray  # ln(m_i / 1e-3) per update (prepare) or per band (prepare_final)
    log_down: np.ndarray  # ln(eta_i / m_i) <= 0, the same


def noise_penalty(beta: float, prep) -> tuple[np.ndarray, np.ndarray]:
    """lrnoise's noise term N * m**(beta-1) and its penalty (m/1e-3)**2, as LRNoiseLaw._terms."""
    raw = np.bincount(prep.pair_step, -prep.pair_drop * prep.pair_k, minlength=prep.n_steps)
    noise = (raw + prep.init) * np.exp((beta - 1.0) * prep.log_max)
    return noise, np.exp(2.0 * (prep.log_max - LN_REF))


class SplitProgressLaw(LRNoiseLaw):
    """lrnoise whose progress weights a step by ``(m/1e-3)**p * (eta/m)**q`` (q = p: lrnoise)."""

    name = "lrnoise-q"
    params = (
        *LRNoiseLaw.params[:4],
        Param("q", 0.05, 3.0, doc="LR exponent of a step's progress below the largest LR so far"),
        *LRNoiseLaw.params[4:],
    )
    transfer_names = (*LRNoiseLaw.transfer_names[:4], "log_q", *LRNoiseLaw.transfer_names[4:])
    transfer_depends = {n: (p.name,) for n, p in zip(transfer_names, params)}

    def prepare(self, lrs, steps):
        prep = super().prepare(lrs, steps)
        log_max = np.maximum.accumulate(prep.log_rel)
        return prep, _Weights(log_max, prep.log_rel - log_max)

    def prepare_final(self, lrs):
        lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
        prep = super().prepare_final(lrs)
        n = len(lrs)
        floor = 1e-12 * np.maximum(lrs.max(axis=1), 1e-300)
        log_rel = np.log(np.maximum(lrs, floor[:, None])) - LN_REF
        log_max = np.maximum.accumulate(log_rel, axis=1)
        down = log_rel - log_max
        # bands of (row, ln LR, ln LR below the max): the warmup and the decay share LRs
        k1 = np.floor(log_rel / BAND_WIDTH).astype(np.int64)
        k2 = np.floor(down / BAND_WIDTH).astype(np.int64)
        k1, k2 = k1 - k1.min(), k2 - k2.min()
        key = (np.arange(n)[:, None] << 40) + (k1 << 20) + k2
        unique, inverse, count = np.unique(key, return_inverse=True, return_counts=True)
        mean_max = np.bincount(inverse.ravel(), log_max.ravel()) / count
        mean_down = np.bincount(inverse.ravel(), down.ravel()) / count
        prep = prep._replace(band_row=(unique >> 40).astype(np.int64), band_count=count)
        return prep, _Weights(mean_max, mean_down)

    def _split(self, theta, both, derivs):
        prep, wts = both
        p, q = theta[3], theta[4]
        w = np.exp(p * wts.log_max + q * wts.log_down)
        out = []
        for factor in (None, wts.log_max, wts.log_down) if derivs else (None,):
            v = w if factor is None else w * factor
            if prep.idx is None:
                v = v * prep.band_count
                out.append(1e-3 * np.bincount(prep.band_row, v, minlength=prep.n_steps))
            else:
                out.append(1e-3 * np.cumsum(v)[prep.idx])
        return out

    def predict(self, theta, both):
        prep = both[0]
        l0, a, alpha, _, _, b, _, d = theta
        (sp,) = self._split(theta, both, False)
        noise, pen = noise_penalty(theta[6], prep)
        return l0 + a * sp ** (-alpha) + b * noise + d * pen

    def jacobian(self, theta, both):
        prep = both[0]
        l0, a, alpha, _, _, b, _, d = theta
        sp, dp, dq = self._split(theta, both, True)
        noise, pen = noise_penalty(theta[6], prep)
        power = sp ** (-alpha)
        jac = np.empty((prep.n_steps, 8))
        jac[:, 0] = 1.0
        jac[:, 1] = power
        jac[:, 2] = -a * np.log(sp) * power
        jac[:, 3] = -a * alpha * power / sp * dp
        jac[:, 4] = -a * alpha * power / sp * dq
        jac[:, 5] = noise
        jac[:, 6] = b * noise * prep.log_max
        jac[:, 7] = pen
        return l0 + a * power + b * noise + d * pen, jac

    def initial_guesses(self, preps, losses, n):
        """lrnoise's starts with q = p, and with q at 2 and 4 times p."""
        base = super().initial_guesses([pr for pr, _ in preps], losses, n)
        return np.array([np.insert(t, 4, t[3] * k) for t in base for k in (1.0, 2.0, 4.0)])[:n]

    def transfer_features(self, theta, peak_lr, horizon):
        return np.array([theta[0], *np.log(np.maximum(theta[1:], 1e-300))])

    def anneal_signal(self, both):
        return both[0].anneal


def compare(world: ReplayWorld, sets: dict[str, list[Schedule]], cut: int) -> None:
    peaks = sorted({c.peak_lr for c in world.candidates()})
    print(f"{world.name}: fits from step {cut}; predicted minus true final of WSD by fraction")
    for pilots_name, pilots in sets.items():
        curves = [LossCurve(p.lrs(), *world.curve(p), name=str(p)) for p in pilots]
        print(f"  pilots: {pilots_name}")
        for law in ("lrnoise", SplitProgressLaw()):
            fit = hf_lrlaw.fit(curves, law=law, min_step=cut, prior=None)
            name = law if isinstance(law, str) else law.name
            print(f"    {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in fit.params.items()))
            for peak in peaks:
                scheds = [wsd(peak, world.total_steps, f) for f in FRACTIONS]
                gap = fit.predict_final(scheds)[0] - world.true_final(scheds)
                cells = ", ".join(f"{f}: {g:+.4f}" for f, g in zip(FRACTIONS, gap))
                print(f"      {peak:g}: {cells}")
            print(f"      {band_ranks(world, fit)}")


def main() -> int:
    logging.getLogger("tune_search").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    short = ReplayWorld.lr_scheduling("124M", 25000)
    compare(short, pilot_sets(short), 1800)
    world = ReplayWorld.lr_scheduling("124M", 50000)
    compare(world, pilot_sets(world), 3000)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
