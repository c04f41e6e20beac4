"""Choosing the peak LR with the schedule, on the bundled 124M SlimPajama grid (lr-scheduling).

The grid: peak LR 1e-4..3e-3 x horizons 15k..50k x 12 schedules (replicates at some cells). A
protocol fits a law on some runs and chooses a (peak LR, schedule) cell at 50k steps by the
predicted final loss; it is scored by its regret (the true final loss of the chosen cell minus
the best cell's), the rank the law gives the true best cell, and the mean absolute percentage
error (MAPE) of the predicted final loss of every 50k run.

A  horizon transfer: every run of <= 25k steps, at all peak LRs, and the 50k constant runs cut at
   25k (each is the 25k constant run); 69 curves.
B  cheap (<= 0.53 of a 50k run per peak LR): per peak LR the WSD-20% run of 25k (its constant
   phase to 20k + a 5k cooldown) and the WSD-10% run of 15k branched from the same constant run
   (+1.5k steps); 3e-3 has no cooldown below 45k: its constant run cut at 25k.
P  the searcher's default pilots for a space of several peak LRs (ScheduleSpace.pilots): WSD 20%
   at half the horizon at the lowest, middle and highest peak LR that has one (1e-4, 1e-3, 2e-3).
C  the predicted optimal peak LR of WSD 20% and cosine-to-10% against the horizon (fit A), next
   to the data's (the vertex of a parabola in log LR through the best tested LR and its
   neighbours).

Baselines: the short horizon's winner re-run at 50k; WSD 20% at the LR whose constant phase is
lowest; one fit per peak LR (momentum, multi-power: can rank only the peak LRs they saw anneal);
joint momentum / multi-power fits. Every fit: prior=None, calibration=None, min_step=3000 (the
initial transient no law describes). The 5e-3 cosine run diverged (final loss 7.55): excluded.

Run: python bench/bench_peak_lr.py [--quick]   (--quick: A and C only)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table

import hf_lrlaw
from hf_lrlaw import LossCurve, Schedule, datasets

MIN_STEP = 3000
HORIZON = 50000
DIVERGED = 5.0
PEAKS = (1e-4, 5e-4, 1e-3, 2e-3, 3e-3)
SHORT = {
    "wsd-linear-cooldown": "wsd",
    "wsd-1-sqrt-cooldown": "sqrt",
    "cosine-to-10%": "cos10",
    "cosine-to-0": "cos0",
    "constant": "const",
}


def short(name: str) -> str:
    for long, s in SHORT.items():
        name = name.replace(long, s)
    return name


def load_grid() -> list[LossCurve]:
    curves = datasets.load("lr-scheduling", model="124M", dataset="slimpajama")
    return [c for c in curves if c.losses[-1] < DIVERGED and np.all(np.isfinite(c.losses))]


def cut(c: LossCurve, until: int) -> LossCurve:
    """A constant run as the constant run of ``until`` steps (its schedule does not depend on
    the horizon), its last point where the runs of that horizon have theirs."""
    keep = c.steps < until - 200
    meta = dict(c.meta, total_steps=until, cut_from=c.meta["total_steps"])
    return LossCurve(
        c.lrs[:until].copy(), c.steps[keep], c.losses[keep], name=f"{c.name} cut{until}", meta=meta
    )


def cells(curves: list[LossCurve], horizon: int) -> dict:
    """(peak, schedule) -> truth (the replicates' mean final loss), runs, the schedule to the
    last observed step (a free-form Schedule, so predictions are at that step)."""
    grouped = defaultdict(list)
    for c in curves:
        if c.meta["total_steps"] == horizon and "cut_from" not in c.meta:
            grouped[(c.meta["peak_lr"], c.meta["schedule"])].append(c)
    out = {}
    for key, runs in grouped.items():
        end = int(runs[0].steps[-1])
        out[key] = {
            "truth": float(np.mean([r.losses[-1] for r in runs])),
            "runs": runs,
            "schedule": Schedule.free_form(runs[0].lrs[: end + 1], name=f"{key[0]:g} {key[1]}"),
        }
    return out


class Grid:
    def __init__(self) -> None:
        self.kept = load_grid()
        self.cells = cells(self.kept, HORIZON)
        self.keys = sorted(self.cells)
        self.truth = np.array([self.cells[k]["truth"] for k in self.keys])
        self.best_key = self.keys[int(np.argmin(self.truth))]
        self.best = float(self.truth.min())
        self.runs = [r for k in self.keys for r in self.cells[k]["runs"]]

    def name(self, key) -> str:
        return f"{key[0]:.0e} {short(key[1])}"

    def score(self, fit: hf_lrlaw.Fit, keys=None) -> dict:
        keys = self.keys if keys is None else keys
        ranking = hf_lrlaw.rank(fit, [self.cells[k]["schedule"] for k in keys], n_samples=200)
        by_text = {str(self.cells[k]["schedule"]): k for k in keys}
        order = [by_text[str(r.schedule)] for r in ranking]
        chosen = order[0]
        runs = [r for k in keys for r in self.cells[k]["runs"]]
        pred, _, _ = fit.predict_final(
            [Schedule.free_form(r.lrs[: int(r.steps[-1]) + 1]) for r in runs]
        )
        y = np.array([r.losses[-1] for r in runs])
        return {
            "chosen": chosen,
            "regret": self.cells[chosen]["truth"] - self.best,
            "rank": order.index(self.best_key) + 1 if self.best_key in order else None,
            "mape": float(np.mean(np.abs(pred - y) / y)),
            "bias": float(np.mean(pred - y)),
        }


def do_fit(curves, law):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = hf_lrlaw.fit(curves, law=law, prior=None, calibration=None, min_step=MIN_STEP)
    return f, time.perf_counter() - t0


# -- fit sets ------------------------------------------------------------------------------------
def set_a(g: Grid) -> list[LossCurve]:
    short_runs = [c for c in g.kept if c.meta["total_steps"] <= 25000]
    consts = [
        cut(c, 25000)
        for c in g.kept
        if c.meta["schedule"] == "constant" and c.meta["total_steps"] == HORIZON
    ]
    return short_runs + consts


def _wsd25(g: Grid, peak: float) -> list[LossCurve]:
    return [
        c
        for c in g.kept
        if c.meta["peak_lr"] == peak
        and c.meta["group"] == "main"
        and c.meta["schedule"] == "wsd-linear-cooldown0.2"
        and c.meta["total_steps"] == 25000
        and "ann124" in c.meta["run"]
    ][:1]


def set_b(g: Grid) -> tuple[list[LossCurve], dict[float, float]]:
    out, cost = [], {}
    for pk in PEAKS:
        w25 = _wsd25(g, pk)
        w15 = [
            c
            for c in g.kept
            if c.meta["peak_lr"] == pk
            and c.meta["group"] == "main"
            and c.meta["schedule"] == "wsd-linear-cooldown0.1"
            and c.meta["total_steps"] == 15000
        ][:1]
        if w25:
            out += w25 + w15
            cost[pk] = (25000 + (1500 if w15 else 0)) / HORIZON
        else:
            const = [
                c for c in g.kept if c.meta["peak_lr"] == pk and c.meta["schedule"] == "constant"
            ]
            out.append(cut(const[0], 25000))
            cost[pk] = 25000 / HORIZON
    return out, cost


def set_p(g: Grid) -> list[LossCurve]:
    with_wsd = [pk for pk in PEAKS if _wsd25(g, pk)]
    chosen = sorted({with_wsd[0], with_wsd[(len(with_wsd) - 1) // 2 + 1], with_wsd[-1]})
    return [c for pk in chosen for c in _wsd25(g, pk)]


# -- baselines -----------------------------------------------------------------------------------
def baseline_rows(g: Grid, fitset: list[LossCurve]) -> list[tuple]:
    rows = []
    full = [c for c in fitset if "cut_from" not in c.meta]
    hmax = max(c.meta["total_steps"] for c in full)
    at_hmax = cells(full, hmax)
    win = min(at_hmax, key=lambda k: at_hmax[k]["truth"])
    if win in g.cells:
        rows.append(
            (
                f"{hmax // 1000}k winner re-run at 50k",
                g.name(win),
                f"{g.cells[win]['truth'] - g.best:.4f}",
                "-",
                "-",
                "-",
            )
        )
    flat = {}  # per peak LR: the latest point of the constant phase, and its curve
    for c in fitset:
        pk = c.meta["peak_lr"]
        after = np.flatnonzero(c.lrs[300:] < pk * (1 - 1e-6))
        last_flat = 300 + (int(after[0]) if len(after) else len(c.lrs) - 300) - 1
        obs = c.steps[c.steps <= last_flat]
        if len(obs) and obs[-1] > flat.get(pk, (-1, None))[0]:
            flat[pk] = (int(obs[-1]), c)
    common = min(v[0] for v in flat.values())
    loss_at = {pk: float(np.interp(common, c.steps, c.losses)) for pk, (_, c) in flat.items()}
    best_pk = min(loss_at, key=loss_at.get)
    key = (best_pk, "wsd-linear-cooldown0.2")
    rows.append(
        (
            f"WSD 20% at the best constant-phase LR (step {common})",
            g.name(key),
            f"{g.cells[key]['truth'] - g.best:.4f}",
            "-",
            "-",
            "-",
        )
    )
    for law in ("momentum", "multipower"):
        chosen, skipped, mapes, t_all = [], [], [], 0.0
        for pk in PEAKS:
            sub = [c for c in fitset if c.meta["peak_lr"] == pk]
            if not any(c.lrs[c.steps[-1]] < 0.5 * c.lrs.max() for c in sub):
                skipped.append(f"{pk:.0e}")
                continue
            f, dt = do_fit(sub, law)
            t_all += dt
            s = g.score(f, [k for k in g.keys if k[0] == pk])
            chosen.append((g.cells[s["chosen"]]["truth"], s["chosen"]))
            mapes.append(s["mape"])
        truth, key = min(chosen)
        seen = [k for k in g.keys if f"{k[0]:.0e}" not in skipped]
        best_seen = min(g.cells[k]["truth"] for k in seen)
        note = f" (cannot rank {', '.join(skipped)})" if skipped else ""
        rows.append(
            (
                f"{law}, one fit per peak LR{note}",
                g.name(key),
                f"{truth - g.best:.4f}"
                if not skipped
                else f"n/a ({truth - best_seen:.4f} on its LRs)",
                "-",
                f"{np.mean(mapes):.2%} (its LRs)",
                f"{t_all:.1f}",
            )
        )
    return rows


def protocol(
    g: Grid, fitset: list[LossCurve], title: str, laws=("lrnoise", "momentum", "multipower")
):
    print(f"\n## {title}\n", flush=True)
    n_pts = sum(int(np.sum(c.steps >= MIN_STEP)) for c in fitset)
    print(
        f"fitted: {len(fitset)} curves, {n_pts} points at step >= {MIN_STEP}; ranked: {len(g.keys)} cells at 50k, "
        f"MAPE over the {len(g.runs)} runs; best cell {g.name(g.best_key)} = {g.best:.4f}\n"
    )
    rows, fits = [], {}
    for law in laws:
        f, dt = do_fit(fitset, law)
        fits[law] = f
        s = g.score(f)
        rows.append(
            (
                f"{law}, one joint fit",
                g.name(s["chosen"]),
                f"{s['regret']:.4f}",
                s["rank"],
                f"{s['mape']:.2%} (bias {s['bias']:+.3f})",
                f"{dt:.1f}",
            )
        )
        print(f"  {rows[-1]}", flush=True)
    rows += baseline_rows(g, fitset)
    print(
        table(
            rows,
            (
                "law / baseline",
                "chosen cell",
                "regret",
                "rank of true best",
                "MAPE at 50k",
                "fit s",
            ),
        )
    )
    return fits


def data_vertex(g: Grid, horizon: int, schedule: str) -> tuple[float, float] | None:
    at = cells(g.kept, horizon)
    pts = sorted((k[0], v["truth"]) for k, v in at.items() if k[1] == schedule)
    if len(pts) < 3:
        return None
    j = int(np.argmin([v for _, v in pts]))
    if not 0 < j < len(pts) - 1:
        return pts[j][0], pts[j][0]
    x = np.log([pts[j - 1][0], pts[j][0], pts[j + 1][0]])
    a, b, _ = np.polyfit(x, [pts[j - 1][1], pts[j][1], pts[j + 1][1]], 2)
    return pts[j][0], float(np.exp(-b / (2 * a))) if a > 0 else pts[j][0]


def protocol_c(g: Grid, f: hf_lrlaw.Fit, out_png: str | None) -> None:
    print("\n## C. Predicted optimal peak LR against the horizon (fit A, lrnoise)\n", flush=True)
    horizons = (15000, 25000, 35000, 50000, 100000)
    families = {
        "WSD 20% linear": ("wsd(decay_fraction=0.2)", "wsd-linear-cooldown0.2"),
        "cosine to 10%": ("cosine(final_ratio=0.1)", "cosine-to-10%"),
    }
    t0 = time.perf_counter()
    found = {
        label: hf_lrlaw.time_transfer(f, text, horizons) for label, (text, _) in families.items()
    }
    dt = time.perf_counter() - t0
    rows = []
    observed = {}
    for label, (_, data_name) in families.items():
        data = []
        for h in horizons:
            v = data_vertex(g, h, data_name)
            data.append("-" if v is None else f"{v[0]:.0e} / {v[1]:.3g}")
            if v is not None and label.startswith("WSD"):
                observed[h] = v[1]
        rows.append((f"data, {label} (best tested / vertex)", *data))
        rows.append(
            (
                f"lrnoise fit A, {label} (90% interval)",
                *(f"{r.peak_lr:.3g} [{r.low:.3g}, {r.high:.3g}]" for r in found[label]),
            )
        )
    print(table(rows, ("", *(f"{h // 1000}k" for h in horizons))))
    print(
        f"\n{sum(len(v) for v in found.values())} optima in {dt:.1f} s; intervals are the fit's parameter "
        "uncertainty only (no model error)"
    )
    if out_png:
        from hf_lrlaw.plots import plot_time_transfer

        plot_time_transfer(
            found, out_png, observed=observed, title="124M SlimPajama: fit on runs <= 25k steps"
        )
        print(f"wrote {out_png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="protocols A and C only")
    ap.add_argument("--plot", metavar="FIG.png", help="the Time Transfer figure of protocol C")
    args = ap.parse_args()
    print(f"# bench_peak_lr ({machine()})")
    t0 = time.perf_counter()
    g = Grid()
    fits_a = protocol(g, set_a(g), "A. Horizon transfer: fit on runs <= 25k steps (all peak LRs)")
    if not args.quick:
        fit_b, cost = set_b(g)
        print(
            "\ncost per peak LR (fraction of a 50k run): "
            + ", ".join(f"{k:.0e}: {v:.2f}" for k, v in cost.items())
        )
        protocol(g, fit_b, "B. Cheap: <= 0.53 of a 50k run per peak LR")
        protocol(
            g,
            set_p(g),
            "P. The searcher's default pilots: WSD 20% of 25k at the lowest, middle, highest LR",
        )
    protocol_c(g, fits_a["lrnoise"], args.plot)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
