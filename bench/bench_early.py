"""Early-run prediction on the public curves: priors learned on one data set, tested on the other.

For every run of the test set, fit the law on its first 25% and 50% (the rest of its schedule
is known) and predict its final loss. Figures: mean and worst relative error, and the coverage
of the nominal 90% interval (fraction of runs whose final loss falls inside). "prior" uses the
shipped prior learned on the *other* data set only (hf_lrlaw/priors/<law>.<set>.json, rebuilt
by bench/build_priors.py) with its calibration; "none" is the plain maximum-likelihood fit.

Size transfer: fit the smaller models of a size sweep on their full curves (one fit per size and
peak LR), build a size-aware prior (hf_lrlaw.priors.size_prior) and predict the largest model's
final loss from its first 25%.

Run: python bench/bench_early.py [--laws momentum multipower] [--subsample N] [--prior-from same]
(``--prior-from same`` uses the prior learned on the tested set itself: an unfair advantage, which
bounds what a better prior could give.)

Other law options (experiments): priors are learned at the law's options, so build matching
ones first, e.g. for the momentum law at lambda 0.998:
  python bench/build_priors.py --laws momentum --option lam=0.998 --out /tmp/p998 --cache /tmp/c998
  python bench/bench_early.py --laws momentum --option lam=0.998 --priors /tmp/p998
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import law_options, machine, table  # noqa: E402

import hf_lrlaw  # noqa: E402
from hf_lrlaw import datasets  # noqa: E402
from hf_lrlaw.backtest import backtest  # noqa: E402
from hf_lrlaw.priors import Prior, size_prior  # noqa: E402

OTHER = {"multipowerlaw": "lr-scheduling", "lr-scheduling": "multipowerlaw"}


def prior_for(law: str, source: str, priors: Path | None):
    """The shipped prior learned on ``source`` ("both" = the law's default), or the one in
    ``priors`` (a build_priors.py --out folder)."""
    if priors is None:
        return "default" if source == "both" else f"default:{source}"
    return Prior.load(priors / (f"{law}.json" if source == "both" else f"{law}.{source}.json"))


def early(
    law: str,
    test_set: str,
    frac: float,
    use_prior: bool,
    subsample: int,
    source: str,
    opts: dict,
    priors: Path | None,
):
    curves = datasets.load(test_set)[::subsample]
    if use_prior:
        kwargs = {"prior": prior_for(law, source, priors)}
    else:
        kwargs = {"prior": None, "calibration": None}
    rows = [
        r
        for r in backtest(curves, [frac], law, level=0.9, law_options=opts, **kwargs)
        if r.failure is None
    ]
    errs = np.array([abs(r.error) for r in rows])
    inside = np.array([r.inside for r in rows])
    return errs, inside, len(curves) - len(rows), len(curves)


SWEEPS = {
    "multipowerlaw": ("25M", "100M", "400M"),
    "lr-scheduling": ("33M", "53M", "60M", "93M", "124M", "152M", "209M", "360M"),
}
SIZE_PARAMS = {"25M": 25e6, "100M": 100e6, "400M": 400e6}


def sweep_curves(ds: str, size: str):
    if ds == "multipowerlaw":
        cs = datasets.load(ds, model=size)
        return [
            c for c in cs if c.meta["schedule"] in ("cosine_24000", "constant_24000", "wsdcon_9")
        ]
    return datasets.load(ds, model=size, dataset="slimpajama")


def size_transfer(law: str, ds: str, opts: dict, priors: Path | None):
    sizes = SWEEPS[ds]
    small, big = sizes[:-1], sizes[-1]
    calibration = (
        "default" if priors is None else dict(prior_for(law, "both", priors).calibration or {})
    )
    fits, params = [], []
    for s in small:
        cs = sweep_curves(ds, s)
        for peak in sorted({c.meta["peak_lr"] for c in cs}):  # one fit per (size, peak LR)
            runs = [c for c in cs if c.meta["peak_lr"] == peak]
            fits.append(hf_lrlaw.fit(runs, law, law_options=opts, calibration=calibration))
            params.append(float(cs[0].meta.get("params") or SIZE_PARAMS[s]))
    target = sweep_curves(ds, big)
    n_big = float(target[0].meta.get("params") or SIZE_PARAMS[big])
    prior = size_prior(fits, params, n_big)
    rows = []
    for c in target:
        head = c.head(0.25)
        if len(head) < 4:
            continue
        y = c.losses[-1]
        out = [c.name]
        for p in (prior, None):
            f = hf_lrlaw.fit(
                head,
                law,
                law_options=opts,
                prior=p,
                calibration="default" if p is not None else None,
            )
            m, lo, hi = f.predict_interval(c.lrs, [c.steps[-1]])
            out.append((abs(m[0] - y) / y, bool(lo[0] <= y <= hi[0])))
        rows.append(out)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--laws", nargs="+", default=["momentum", "multipower"])
    ap.add_argument("--subsample", type=int, default=1, help="use every n-th lr-scheduling run")
    ap.add_argument(
        "--prior-from",
        choices=("other", "same"),
        default="other",
        help="learn the prior on the other data set (default) or on the tested one",
    )
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="K=V",
        help="law option for every fit, e.g. lam=0.998 (needs --priors made with it)",
    )
    ap.add_argument(
        "--priors",
        type=Path,
        default=None,
        help="folder of priors from build_priors.py --out (default: the shipped ones)",
    )
    args = ap.parse_args()
    opts = law_options(args.option)
    warnings.simplefilter("ignore")
    print(f"# bench_early — {machine()}")
    rows = []
    for law in args.laws:
        for test_set in ("multipowerlaw", "lr-scheduling"):
            sub = args.subsample if test_set == "lr-scheduling" else 1
            for frac in (0.25, 0.5):
                for use_prior in (True, False):
                    t0 = time.perf_counter()
                    source = OTHER[test_set] if args.prior_from == "other" else test_set
                    e, inside, failed, n = early(
                        law, test_set, frac, use_prior, sub, source, opts, args.priors
                    )
                    row = (
                        law,
                        f"{source} -> {test_set}" if use_prior else f"none -> {test_set}",
                        f"{frac:.0%}",
                        f"{len(e)}/{n}",
                        f"{e.mean():.2%}",
                        f"{e.max():.2%}",
                        f"{inside.mean():.0%}",
                    )
                    rows.append(row)
                    print(
                        "  " + " | ".join(row) + f"  ({time.perf_counter() - t0:.0f} s)", flush=True
                    )
    print()
    print(
        table(
            rows,
            [
                "law",
                "prior learned on -> tested on",
                "seen",
                "runs",
                "mean error",
                "worst error",
                "90% coverage",
            ],
        )
    )
    print(
        "\nSize transfer: smaller sizes' full curves -> size-aware prior -> largest size from 25%"
    )
    srows = []
    for law in args.laws:
        for ds in ("multipowerlaw", "lr-scheduling"):
            res = size_transfer(law, ds, opts, args.priors)
            with_p = np.array([r[1][0] for r in res])
            without = np.array([r[2][0] for r in res])
            cov = np.mean([r[1][1] for r in res])
            srows.append(
                (
                    law,
                    ds,
                    f"{SWEEPS[ds][-1]}",
                    len(res),
                    f"{with_p.mean():.2%}",
                    f"{with_p.max():.2%}",
                    f"{cov:.0%}",
                    f"{without.mean():.2%}",
                )
            )
            print("  " + " | ".join(str(x) for x in srows[-1]), flush=True)
    print()
    print(
        table(
            srows,
            [
                "law",
                "sweep",
                "predicted size",
                "runs",
                "mean error (size prior)",
                "worst",
                "90% coverage",
                "mean error (no prior)",
            ],
        )
    )


if __name__ == "__main__":
    main()
