"""Size transfer by one joint fit with size-dependent terms, against the size prior of bench_early.py.

Fit the momentum law jointly on the smaller models' full curves of a size sweep plus the largest
model's first 25%, with model-size terms, and predict the largest model's final loss:

- ``additive``: Tissue et al.'s extension, L = L0 + B*N^-beta + A*S1^-alpha - C*S2;
- ``loglinear``: that, with log A, alpha and log C also linear in log N.

Least squares on log losses with a Huber loss (scale 1e-3), as the fitter's objective. The
lr-scheduling sweep takes 10-15 minutes (124M has 153 runs).

Run: python bench/size_joint.py [--variants additive loglinear] [--sweeps multipowerlaw lr-scheduling]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_early import SIZE_PARAMS, SWEEPS, sweep_curves  # noqa: E402
from common import machine  # noqa: E402

from hf_lrlaw.laws import get_law  # noqa: E402

LAW = get_law("momentum")


def predict(theta: np.ndarray, s1: np.ndarray, s2: np.ndarray, n: np.ndarray, variant: str):
    x = np.log(n / 1e8)
    l0, log_b, beta, log_a, alpha, log_c = theta[:6]
    ka, kal, kc = theta[6:] if variant == "loglinear" else (0.0, 0.0, 0.0)
    power = np.exp(log_a + ka * x) * s1 ** (-(alpha + kal * x))
    return l0 + np.exp(log_b) * np.exp(-beta * x) + power - np.exp(log_c + kc * x) * s2


def residuals(theta, s1, s2, n, y, variant):
    return np.log(np.maximum(predict(theta, s1, s2, n, variant), 1e-3)) - np.log(y)


def areas(curve, steps=None):
    prep = LAW.prepare(curve.lrs, curve.steps if steps is None else steps)
    return prep.s1, prep.s2


def transfer(sweep: str, variant: str) -> list[tuple[str, float]]:
    sizes = SWEEPS[sweep]
    small = []
    for size in sizes[:-1]:
        for c in sweep_curves(sweep, size):
            n = float(c.meta.get("params") or SIZE_PARAMS[size])
            small.append((*areas(c), np.full(len(c.steps), n), c.losses))
    out = []
    for c in sweep_curves(sweep, sizes[-1]):
        n_big = float(c.meta.get("params") or SIZE_PARAMS[sizes[-1]])
        head = c.head(0.25)
        data = small + [(*areas(head), np.full(len(head.steps), n_big), head.losses)]
        s1, s2, n, y = (np.concatenate([d[k] for d in data]) for k in range(4))
        x0 = [2.0, np.log(0.5), 0.3, np.log(0.5), 0.5, np.log(0.3)]
        x0 += [0.0] * 3 if variant == "loglinear" else []
        fit = least_squares(
            residuals, x0, args=(s1, s2, n, y, variant), loss="huber", f_scale=1e-3, max_nfev=4000
        )
        f1, f2 = areas(c, c.steps[-1:])
        pred = predict(fit.x, f1, f2, np.array([n_big]), variant)[0]
        out.append((c.name, (pred - c.losses[-1]) / c.losses[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--variants", nargs="+", default=["additive", "loglinear"])
    ap.add_argument("--sweeps", nargs="+", default=list(SWEEPS))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"# size_joint — {machine()}")
    for sweep in args.sweeps:
        for variant in args.variants:
            rows = transfer(sweep, variant)
            for name, err in rows:
                print(f"  {name}: {err:+.2%}")
            errs = np.abs([e for _, e in rows])
            print(
                f"{sweep} {variant}: mean {errs.mean():.2%} worst {errs.max():.2%} "
                f"({len(rows)} runs)",
                flush=True,
            )


if __name__ == "__main__":
    main()
