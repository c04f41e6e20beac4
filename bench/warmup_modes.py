"""Early prediction with both momentum warmup treatments, per run: the rules that combine them.

For every run of one public data set, fit its first 25% and 50% twice, with ``warmup="peak"``
(the shipped prior learned on the other set) and ``warmup="actual"`` (a prior learned on the
other set by build_priors.py at that option), and score: each mode alone; per run, the mode
whose prefix fit has the smaller residual scatter; ``"actual"`` with its interval widened by the
two modes' disagreement (``hypot`` of each half-width and |log(peak / actual)|); and the per-run
oracle (the better of the two, a bound, not a rule).

Run (about 2 minutes on 2 cores after the priors):
  python bench/build_priors.py --laws momentum --option warmup=actual --out /tmp/pact --cache /tmp/cact
  python bench/warmup_modes.py --actual-priors /tmp/pact
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402

import hf_lrlaw  # noqa: E402
from hf_lrlaw import datasets  # noqa: E402
from hf_lrlaw.priors import Prior  # noqa: E402

OTHER = {"multipowerlaw": "lr-scheduling", "lr-scheduling": "multipowerlaw"}


def predictions(test_set: str, frac: float, actual_priors: Path) -> list[dict]:
    """Per run: (mean, low, high) and residual scatter of its prefix fit under each mode."""
    source = OTHER[test_set]
    modes = {
        "peak": ({}, f"default:{source}"),
        "actual": ({"warmup": "actual"}, Prior.load(actual_priors / f"momentum.{source}.json")),
    }
    rows = []
    for c in datasets.load(test_set):
        head, final = c.head(frac), int(c.last_step)
        row = {"y": float(c.losses[-1])}
        try:
            for mode, (opts, prior) in modes.items():
                f = hf_lrlaw.fit(head, "momentum", law_options=opts, prior=prior)
                m, lo, hi = f.predict_interval(c.lrs, [final], level=0.9)
                row[mode] = (float(m[0]), float(lo[0]), float(hi[0]), f.scatter)
        except hf_lrlaw.FitError:
            continue
        rows.append(row)
    return rows


def score(rows: list[dict]) -> list[tuple[str, float, float]]:
    """(rule, mean |error|, coverage) for every rule."""
    y = np.array([r["y"] for r in rows])
    p, a = (np.array([r[m] for r in rows]) for m in ("peak", "actual"))  # columns m, lo, hi, s
    out = []
    for name, pick in (
        ("peak", p),
        ("actual", a),
        ("smaller scatter", np.where((p[:, 3] < a[:, 3])[:, None], p, a)),
    ):
        err = np.abs(pick[:, 0] - y) / y
        out.append((name, err.mean(), np.mean((pick[:, 1] <= y) & (y <= pick[:, 2]))))
    spread = np.abs(np.log(p[:, 0] / a[:, 0]))
    low = a[:, 0] * np.exp(-np.hypot(np.log(a[:, 0] / a[:, 1]), spread))
    high = a[:, 0] * np.exp(np.hypot(np.log(a[:, 2] / a[:, 0]), spread))
    out.append(
        (
            "actual, widened by the disagreement",
            np.mean(np.abs(a[:, 0] - y) / y),
            np.mean((low <= y) & (y <= high)),
        )
    )
    best = np.minimum(np.abs(p[:, 0] - y), np.abs(a[:, 0] - y)) / y
    out.append(("oracle (bound)", best.mean(), float("nan")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--actual-priors",
        type=Path,
        required=True,
        help="a build_priors.py --option warmup=actual --out folder",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"# warmup_modes — {machine()}")
    lines = []
    for test_set in ("multipowerlaw", "lr-scheduling"):
        for frac in (0.25, 0.5):
            rows = predictions(test_set, frac, args.actual_priors)
            for rule, err, cov in score(rows):
                cov_text = "-" if np.isnan(cov) else f"{cov:.0%}"
                lines.append(
                    [
                        f"{OTHER[test_set]} -> {test_set}",
                        f"{frac:.0%}",
                        len(rows),
                        rule,
                        f"{err:.2%}",
                        cov_text,
                    ]
                )
                print("  " + " | ".join(str(x) for x in lines[-1]), flush=True)
    print(
        table(
            lines,
            ["prior learned on -> tested on", "seen", "runs", "rule", "mean error", "90% coverage"],
        )
    )


if __name__ == "__main__":
    main()
