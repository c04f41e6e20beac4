"""Issue 16: laws whose parameters are shared across peak LRs. Prints the tables of protocols A-E.

    python bench/peak_lr_forms/measure.py [--quick]   (from the repository root; 784 s, --quick 200 s)

A  horizon transfer on the 124M SlimPajama grid: fit every run of <= 25k steps (+ the 50k constant
   runs cut at 25k, which are 25k-step constant runs), rank every (peak LR, schedule) cell at 50k.
B  cheap: per peak LR the WSD-20% run of 25k steps (its constant prefix to 20k + a 5k cooldown)
   and the WSD-10% run of 15k branched from the same constant run (+1.5k steps), 0.53 of a 50k
   run; 1e-4: WSD-20% 25k only (0.5); 3e-3: the constant run cut at 25k (0.5). Scored as A.
C  optimal peak LR per horizon (WSD 20% linear, cosine to 10%), 1-D search over log peak LR.
D  size sweep (bench/common.sweep_split): fit constant + longest cosine, final-loss error of the rest.
E  in-sample mean relative error over all points of the 124M grid.

Every fit: hf_lrlaw.fit(curves, law=Law(), prior=None, calibration=None), Huber on log residuals,
multi-start L-BFGS-B; points before MIN_STEP are not fitted (the initial transient, which no law
here describes; the LRs before it still count). Final losses are predicted at the last observed
step of each run (200 steps before its end). ``--quick`` runs A and C only.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import hf_lrlaw
from hf_lrlaw.laws import MomentumLaw, MultiPowerLaw

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from sched import cosine, wsd  # noqa: E402

from common import SWEEP_SIZES, sweep_split  # noqa: E402  (the library's own size-sweep split)
from grid import PEAKS, cells, cut, load_grid, predict_final_law, short, thin  # noqa: E402
from laws_candidates import CANDIDATES, register  # noqa: E402

register()  # lets Fit objects of the new laws predict/rank (in-process registry entry only)

MIN_STEP = 3000
LAWS = {  # label -> (factory, point thinning for the big fits)
    "momentum": (MomentumLaw, 1),
    "multipower": (MultiPowerLaw, 2),
    "lrnoise (rec.)": (CANDIDATES["lrnoise"], 1),
    "lrnoise -penalty": (CANDIDATES["lrnoise-nopenalty"], 1),
    "lrnoise p=1 (S1)": (CANDIDATES["lrnoise-s1"], 1),
    "lrnoise exp-kernel": (CANDIDATES["lrnoise-expkernel"], 1),
    "lrnoise c free": (CANDIDATES["lrnoise-cfree"], 1),
    "lrnoise eta^beta noise": (CANDIDATES["lrnoise-powernoise"], 1),
    "momentum-lrq": (CANDIDATES["momentum-lrq"], 1),
    "momentum-noise": (CANDIDATES["momentum-noise"], 1),
    "momentum-maxlr": (CANDIDATES["momentum-maxlr"], 1),
    "convex (Schaipp)": (CANDIDATES["convex"], 1),
    "convex-power": (CANDIDATES["convex-power"], 1),
}
NPAR = {k: len(f().params) for k, (f, _) in LAWS.items()}


def fit(curves, law, k=1, min_step=MIN_STEP, n_starts=4):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = hf_lrlaw.fit(
            [thin(c, k) for c in curves],
            law=law,
            prior=None,
            calibration=None,
            min_step=min_step,
            n_starts=n_starts,
        )
    return f, time.perf_counter() - t0


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


# -- data ------------------------------------------------------------------------------------------
KEPT, EXCLUDED = load_grid()
CELLS50 = cells(KEPT, 50000)
KEYS = sorted(CELLS50)
TRUTH = np.array([CELLS50[k]["truth"] for k in KEYS])
BEST = float(TRUTH.min())
BEST_KEY = KEYS[int(np.argmin(TRUTH))]
RUNS50 = [r for k in KEYS for r in CELLS50[k]["runs"]]


def cname(key):
    return f"{key[0]:.0e} {short(key[1])}"


def score(pred_cells, pred_runs=None, keys=None):
    """regret, rank of the true best, chosen cell, MAPE over all 50k runs (or the cells given)."""
    keys = KEYS if keys is None else keys
    truth = np.array([CELLS50[k]["truth"] for k in keys])
    order = np.argsort(pred_cells)
    chosen = keys[order[0]]
    regret = CELLS50[chosen]["truth"] - BEST
    rank_best = (
        int(np.where(np.array([keys[i] == BEST_KEY for i in order]))[0][0]) + 1
        if BEST_KEY in keys
        else None
    )
    if pred_runs is None:
        mape = float(np.mean(np.abs(pred_cells - truth) / truth))
    else:
        runs = [r for k in keys for r in CELLS50[k]["runs"]]
        y = np.array([r.losses[-1] for r in runs])
        mape = float(np.mean(np.abs(pred_runs - y) / y))
    return regret, rank_best, chosen, mape


def predict_cells(law, theta, keys=None):
    keys = KEYS if keys is None else keys
    return predict_final_law(
        law, theta, [CELLS50[k]["lrs"] for k in keys], [CELLS50[k]["end"] for k in keys]
    )


def predict_runs(law, theta, keys=None):
    keys = KEYS if keys is None else keys
    runs = [r for k in keys for r in CELLS50[k]["runs"]]
    return predict_final_law(law, theta, [r.lrs for r in runs], [int(r.steps[-1]) for r in runs])


def inventory():
    print("## Data: 124M SlimPajama grid (validation loss)\n")
    print(
        f"{len(KEPT)} runs kept; excluded (diverged, final loss > 5): "
        + ", ".join(f"{c.name} (final {c.losses[-1]:.2f})" for c in EXCLUDED)
        + "\n"
    )
    rows = []
    for pk in PEAKS:
        for T in sorted({c.meta["total_steps"] for c in KEPT}):
            cs = [c for c in KEPT if c.meta["peak_lr"] == pk and c.meta["total_steps"] == T]
            if cs:
                rows.append(
                    (
                        f"{pk:.0e}",
                        T,
                        len(cs),
                        " ".join(sorted({short(c.meta["schedule"]) for c in cs})),
                    )
                )
    print(table(rows, ["peak LR", "horizon", "runs", "schedules"]))
    reps = [
        (cname(k), len(v["runs"]), " / ".join(f"{r.losses[-1]:.4f}" for r in v["runs"]))
        for k, v in CELLS50.items()
        if len(v["runs"]) > 1
    ]
    print(
        f"\n50k cells: {len(KEYS)} (runs: {len(RUNS50)}); best cell {cname(BEST_KEY)} = {BEST:.4f}. "
        "Replicated 50k cells (truth = their mean; the spread is the run-to-run noise):\n"
    )
    print(table(reps, ["cell", "runs", "final losses"]))
    print()


# -- A and B -----------------------------------------------------------------------------------------
def set_a():
    fs = [c for c in KEPT if c.meta["total_steps"] <= 25000]
    consts = [
        cut(c, 25000)
        for c in KEPT
        if c.meta["schedule"] == "constant" and c.meta["total_steps"] == 50000
    ]
    return fs + consts


def set_b():
    out, cost = [], {}
    for pk in PEAKS:
        runs = [c for c in KEPT if c.meta["peak_lr"] == pk and c.meta["group"] == "main"]
        w25 = [
            c
            for c in runs
            if c.meta["schedule"] == "wsd-linear-cooldown0.2"
            and c.meta["total_steps"] == 25000
            and "ann124" in c.meta["run"]
        ]
        w15 = [
            c
            for c in runs
            if c.meta["schedule"] == "wsd-linear-cooldown0.1" and c.meta["total_steps"] == 15000
        ]
        if w25:
            out += w25[:1] + w15[:1]
            cost[pk] = 25000 + (1500 if w15 else 0)
        else:  # 3e-3: only the constant run exists (grad_norm sweep); cut at 25k
            c = [c for c in KEPT if c.meta["peak_lr"] == pk and c.meta["schedule"] == "constant"][0]
            out.append(cut(c, 25000))
            cost[pk] = 25000
    return out, cost


def baselines(fitset, label):
    """Rows for the non-law baselines and per-peak fits of momentum and multi-power."""
    rows = []
    # the short horizon's winner re-run at 50k
    short_runs = [c for c in fitset if "cut_from" not in c.meta]
    if short_runs:
        hmax = max(c.meta["total_steps"] for c in short_runs)
        cl = cells(short_runs, hmax)
        win = min(cl, key=lambda k: cl[k]["truth"])
        if win in CELLS50:
            rows.append(
                (
                    f"{hmax // 1000}k winner ({cname(win)}) re-run at 50k",
                    "-",
                    cname(win),
                    f"{CELLS50[win]['truth'] - BEST:.4f}",
                    "-",
                    "-",
                    "-",
                    "-",
                )
            )
    # WSD 20% at the best constant-run LR: the stable-phase losses compared at the latest step that
    # every peak LR of the fit set has at its peak LR (before any cooldown)
    flat = {}
    for c in fitset:
        pk = c.meta["peak_lr"]
        dec = np.flatnonzero(c.lrs[300:] < pk * (1 - 1e-6))
        last_flat = 300 + (int(dec[0]) if len(dec) else len(c.lrs) - 300) - 1
        obs = c.steps[c.steps <= last_flat]
        if len(obs):
            flat[pk] = max(flat.get(pk, (-1, None)), (int(obs[-1]), c), key=lambda x: x[0])
    if flat:
        common = min(v[0] for v in flat.values())
        loss_at = {pk: float(np.interp(common, c.steps, c.losses)) for pk, (_, c) in flat.items()}
        bpk = min(loss_at, key=loss_at.get)
        key = (bpk, "wsd-linear-cooldown0.2")
        rows.append(
            (
                f"WSD20% at the best constant-phase LR ({bpk:.0e}; losses at step {common})",
                "-",
                cname(key),
                f"{CELLS50[key]['truth'] - BEST:.4f}",
                "-",
                "-",
                "-",
                "-",
            )
        )
    for name, (factory, k) in (("momentum", LAWS["momentum"]), ("multipower", LAWS["multipower"])):
        preds, keys_used, t_all, skipped = [], [], 0.0, []
        for pk in PEAKS:
            sub = [c for c in fitset if c.meta["peak_lr"] == pk]
            anneals = [c for c in sub if c.lrs[c.steps[-1]] < 0.5 * c.lrs.max()]
            if not anneals:
                skipped.append(f"{pk:.0e}")
                continue
            law = factory()
            f, dt = fit(sub, law, k)
            t_all += dt
            ks = [q for q in KEYS if q[0] == pk]
            preds.append(predict_cells(law, f.theta, ks))
            keys_used += ks
        pc = np.concatenate(preds)
        reg, rb, ch, _ = score(pc, keys=keys_used)
        truth = np.array([CELLS50[q]["truth"] for q in keys_used])
        mape = float(np.mean(np.abs(pc - truth) / truth))
        note = f" (no annealed run at {', '.join(skipped)}: not ranked)" if skipped else ""
        rows.append(
            (
                f"{name} per peak LR{note}",
                "per-LR",
                cname(ch),
                "-",
                f"{reg:.4f}",
                rb if rb else "n/a",
                f"{mape:.2%} (ranked cells)",
                f"{t_all:.1f}",
            )
        )
    return rows


def protocol(fitset, title, laws=LAWS):
    print(f"## {title}\n")
    n_pts = sum(int(np.sum(c.steps >= MIN_STEP)) for c in fitset)
    print(
        f"fitted: {len(fitset)} curves, {n_pts} points at step >= {MIN_STEP}; ranked: {len(KEYS)} cells at 50k "
        f"(MAPE over the {len(RUNS50)} runs). Best cell {cname(BEST_KEY)} {BEST:.4f}.\n"
    )
    rows, fits = [], {}
    for label, (factory, k) in laws.items():
        law = factory()
        f, dt = fit(fitset, law, k)
        fits[label] = (law, f)
        pc = predict_cells(law, f.theta)
        reg, rb, ch, mape = score(pc, predict_runs(law, f.theta))
        lo = [i for i, q in enumerate(KEYS) if q[0] <= 2e-3]
        reg_lo = score(pc[lo], keys=[KEYS[i] for i in lo])[0]
        bias = float(np.mean(pc - TRUTH))
        rows.append(
            (
                f"{label} ({NPAR[label]}p, joint)",
                f"{f.goodness.mean_rel_error:.3%}",
                cname(ch),
                f"{reg:.4f}",
                f"{reg_lo:.4f}",
                rb,
                f"{mape:.2%} (bias {bias:+.3f})",
                f"{dt:.1f}",
            )
        )
    rows += baselines(fitset, title)
    print(
        table(
            rows,
            [
                "law / baseline",
                "in-sample MRE",
                "chosen cell",
                "regret (all 54 cells)",
                "regret (cells <= 2e-3)",
                "rank of true best",
                "MAPE 50k (mean bias)",
                "fit s",
            ],
        )
    )
    print()
    return fits


def per_lr_detail(law, f, title):
    print(
        f"{title}: per peak LR, predicted best schedule at 50k vs the true best (pred/true final loss)\n"
    )
    pc = predict_cells(law, f.theta)
    rows = []
    for pk in PEAKS:
        sel = [i for i, q in enumerate(KEYS) if q[0] == pk]
        j = min(sel, key=lambda i: pc[i])
        jt = min(sel, key=lambda i: TRUTH[i])
        rows.append(
            (
                f"{pk:.0e}",
                f"{short(KEYS[j][1])} {pc[j]:.4f}/{TRUTH[j]:.4f}",
                f"{short(KEYS[jt][1])} {pc[jt]:.4f}/{TRUTH[jt]:.4f}",
                f"{TRUTH[j] - TRUTH[jt]:.4f}",
            )
        )
    print(
        table(
            rows,
            ["peak LR", "predicted best (pred/true)", "true best (pred/true)", "within-LR regret"],
        )
    )
    print()


# -- C ------------------------------------------------------------------------------------------
GRID_LR = np.geomspace(1e-4, 1e-2, 121)


def optimum(law, theta, horizon, kind):
    base = wsd(1.0, horizon, 0.2) if kind == "WSD20%" else cosine(1.0, horizon)
    arr = np.stack([base * lr for lr in GRID_LR])
    end = horizon - 201  # the last observed point of a run of that horizon
    pred = law.predict(theta, law.prepare_final(arr[:, : end + 1]))
    i = int(np.argmin(pred))
    # refine with a parabola in log LR through the three grid points around the minimum
    if 0 < i < len(GRID_LR) - 1:
        x = np.log(GRID_LR[i - 1 : i + 2])
        a, b, _ = np.polyfit(x, pred[i - 1 : i + 2], 2)
        best = float(np.exp(-b / (2 * a))) if a > 0 else GRID_LR[i]
    else:
        best = GRID_LR[i]
    return best, float(pred.min()), i in (0, len(GRID_LR) - 1)


def data_optimum(horizon, sched):
    pts = sorted(
        (c["runs"][0].meta["peak_lr"], c["truth"])
        for k, c in cells(KEPT, horizon).items()
        if k[1] == sched
    )
    if len(pts) < 2:
        return "-"
    j = int(np.argmin([v for _, v in pts]))
    s = f"{pts[j][0]:.0e} ({pts[j][1]:.4f})"
    if 0 < j < len(pts) - 1:
        x = np.log([pts[j - 1][0], pts[j][0], pts[j + 1][0]])
        a, b, _ = np.polyfit(x, [pts[j - 1][1], pts[j][1], pts[j + 1][1]], 2)
        if a > 0:
            s += f", parabola {np.exp(-b / (2 * a)):.2e}"
    return s


def protocol_c(fits_by_setting):
    print(
        "## C. Predicted optimal peak LR per horizon (1-D search over log peak LR in [1e-4, 1e-2])\n"
    )
    print(
        "Tested range 1e-4..3e-3; 'edge' = the search ended at a bound (no interior optimum). "
        "Data: best tested peak LR at that horizon (and the vertex of a parabola in log LR through it and "
        "its neighbours).\n"
    )
    horizons = (15000, 25000, 35000, 50000, 100000)
    rows = []
    for kind, sched in (("WSD20%", "wsd-linear-cooldown0.2"), ("cosine10%", "cosine-to-10%")):
        rows.append((f"data {kind}", *[data_optimum(T, sched) for T in horizons]))
        for setting, fits in fits_by_setting.items():
            for label in (
                "lrnoise (rec.)",
                "momentum",
                "multipower",
                "momentum-lrq",
                "momentum-maxlr",
                "convex (Schaipp)",
                "convex-power",
                "lrnoise -penalty",
            ):
                if label not in fits:
                    continue
                law, f = fits[label]
                cellsrow = []
                for T in horizons:
                    lr, loss, edge = optimum(law, f.theta, T, kind)
                    cellsrow.append(f"{lr:.2e}{' edge' if edge else ''} ({loss:.3f})")
                rows.append((f"{label} [{setting}] {kind}", *cellsrow))
    print(table(rows, ["law [fit set] schedule", *[f"{T // 1000}k" for T in horizons]]))
    print()


# -- D ------------------------------------------------------------------------------------------
def protocol_d(min_steps=(0, 1000)):
    print(
        "## D. Size sweep: fit the constant + longest cosine run of each size (peak 1e-3 / 2e-3), "
        "final-loss error of its other runs (bench/common.sweep_split)\n"
    )
    labels = [
        "momentum",
        "multipower",
        "lrnoise (rec.)",
        "lrnoise -penalty",
        "momentum-lrq",
        "momentum-noise",
        "momentum-maxlr",
        "convex-power",
    ]
    for ms in min_steps:
        rows = []
        means = {lab: [] for lab in labels}
        for size in SWEEP_SIZES:
            train, test = sweep_split(size)
            row = [size, len(test)]
            for lab in labels:
                factory, _ = LAWS[lab]
                law = factory()
                try:
                    f, _ = fit(train, law, 1, min_step=ms)
                    p = predict_final_law(
                        law, f.theta, [c.lrs for c in test], [int(c.steps[-1]) for c in test]
                    )
                    e = np.abs(p - np.array([c.losses[-1] for c in test])) / np.array(
                        [c.losses[-1] for c in test]
                    )
                    means[lab].append(float(e.mean()))
                    row.append(f"{e.mean():.2%}")
                except Exception as exc:  # noqa: BLE001
                    row.append(f"fail ({type(exc).__name__})")
            rows.append(row)
        rows.append(
            ["mean", "", *[f"{np.mean(means[lab]):.2%}" if means[lab] else "-" for lab in labels]]
        )
        print(f"min_step = {ms}:\n")
        print(table(rows, ["size", "held-out", *labels]))
        print()


# -- E ------------------------------------------------------------------------------------------
def protocol_e():
    print(
        f"## E. In-sample fit on the whole 124M grid ({len(KEPT)} runs; fitted on every 2nd point "
        f"(multi-power every 3rd), steps >= {MIN_STEP}; error over every point at steps >= {MIN_STEP})\n"
    )
    rows, fits = [], {}
    for label, (factory, _) in LAWS.items():
        law = factory()
        f, dt = fit(KEPT, law, 3 if label == "multipower" else 2)
        fits[label] = (law, f)
        errs, ends = [], []
        for c in KEPT:
            keep = c.steps >= MIN_STEP
            p = law.predict(f.theta, law.prepare(c.lrs, c.steps[keep]))
            errs.append(np.abs(p - c.losses[keep]) / c.losses[keep])
            ends.append(abs(p[-1] - c.losses[-1]) / c.losses[-1])
        e = np.concatenate(errs)
        pc = predict_cells(law, f.theta)
        reg, rb, ch, mape = score(pc, predict_runs(law, f.theta))
        rows.append(
            (
                f"{label} ({NPAR[label]}p)",
                f"{e.mean():.3%}",
                f"{e.max():.2%}",
                f"{np.mean(ends):.3%}",
                f"{cname(ch)} ({reg:.4f})",
                f"{dt:.1f}",
            )
        )
    print(
        table(
            rows,
            [
                "law",
                "MRE all points",
                "worst point",
                "MRE final points",
                "in-sample 50k choice (regret)",
                "fit s",
            ],
        )
    )
    print()
    return fits


def convergence_check(fitset):
    print(
        "Convergence of the recommended law's fit on set A (objective, parameters) for 4 / 12 starts:\n"
    )
    rows = []
    for n in (4, 12):
        law = CANDIDATES["lrnoise"]()
        f, dt = fit(fitset, law, 1, n_starts=n)
        rows.append(
            (
                n,
                f"{f.objective:.3f}",
                ", ".join(f"{k}={v:.4g}" for k, v in f.params.items()),
                f"{dt:.1f}",
                "; ".join(f.notes) or "-",
            )
        )
    print(table(rows, ["starts", "objective", "parameters", "s", "fit notes"]))
    print()


def rank_demo(fit_a):
    """hf_lrlaw.rank on the new law's Fit (Schedule objects of the data's shapes at 50k)."""
    from hf_lrlaw import Schedule

    law, f = fit_a
    scheds = []
    for pk in (5e-4, 1e-3, 2e-3, 3e-3):
        for frac in (0.2, 0.6, 0.9):
            scheds.append(Schedule.free_form(wsd(pk, 50000, frac), name=f"wsd{frac}@{pk:.0e}"))
    r = hf_lrlaw.rank(f, scheds)
    print(
        "hf_lrlaw.rank() with the recommended law (fit A), WSD 20/60/90% x 4 peak LRs at 50k, top 5:\n"
    )
    rows = [
        (
            x.rank,
            x.schedule.param("name"),
            f"{x.predicted:.4f}",
            f"[{x.low:.4f}, {x.high:.4f}]",
            f"{x.prob_best:.2f}",
        )
        for x in r.top(5)
    ]
    print(table(rows, ["rank", "schedule", "predicted", "90% interval", "P(best)"]))
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    inventory()
    fa = set_a()
    fits_a = protocol(fa, "A. Horizon transfer: fit <= 25k steps (all peak LRs), rank at 50k")
    per_lr_detail(*fits_a["lrnoise (rec.)"], "A, lrnoise")
    per_lr_detail(*fits_a["momentum"], "A, momentum (joint)")
    convergence_check(fa)
    rank_demo(fits_a["lrnoise (rec.)"])
    fits_by = {"A": fits_a}
    if not args.quick:
        fb, cost = set_b()
        print(
            "Protocol B fit set: "
            + "; ".join(
                f"{pk:.0e}: {', '.join(c.name for c in fb if c.meta['peak_lr'] == pk)} "
                f"(cost {cost[pk]} steps = {cost[pk] / 50000:.2f} run)"
                for pk in PEAKS
            )
            + "\n"
        )
        fits_b = protocol(fb, "B. Cheap protocol: <= ~0.53 of a 50k run per peak LR, rank at 50k")
        per_lr_detail(*fits_b["lrnoise (rec.)"], "B, lrnoise")
        fits_by["B"] = fits_b
        fits_e = protocol_e()
        fits_by["all"] = fits_e
    protocol_c(fits_by)
    if not args.quick:
        protocol_d()
    print(f"measure.py total run time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
