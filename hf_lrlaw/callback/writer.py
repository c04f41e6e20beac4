"""The callback's outputs: ``record.json`` (schema ``hf_lrlaw.record/1``: every recorded point,
the schedule, the latest fit and predictions, the history of predictions and events; its
``curves`` load with :func:`hf_lrlaw.load`, its ``fit`` with :meth:`hf_lrlaw.Fit.load`) and
``fit.png``. Both are written atomically with the package's one file rule
(:mod:`hf_lrlaw.files`)."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from hf_lrlaw._version import __version__
from hf_lrlaw.callback.jobs import FitJob, FitResult
from hf_lrlaw.curves import LossCurve
from hf_lrlaw.files import write_json
from hf_lrlaw.schedules.labels import schedule_label

__all__ = ["RECORD_SCHEMA", "draw_figure", "history_entry", "record", "write_record"]

RECORD_SCHEMA = "hf_lrlaw.record/1"


def record(job: FitJob, result: FitResult | None, *, new: bool) -> dict[str, Any]:
    """The record.json content; ``new``: ``result`` is not in the history yet."""
    curves, others = [], []
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    points = {job.metric: empty, **job.points}
    for metric, (steps, losses, windows) in sorted(points.items()):
        # LossCurve.to_dict's format, written even where LossCurve would refuse the data
        # (e.g. an LR of zero at every step): the record keeps what happened
        c = {
            "name": job.run_name,
            "lrs": job.lrs.tolist(),
            "steps": steps.tolist(),
            "losses": losses.tolist(),
            "meta": {"metric": metric, "source": "LRLawCallback"},
        }
        if metric == "loss":
            c["windows"] = windows.tolist()
        (curves if metric == job.metric else others).append(c)
    history = list(job.history)
    if new and result is not None and result.prediction is not None:
        history.append(history_entry(result))
    return {
        "schema": RECORD_SCHEMA,
        "producer": f"hf_lrlaw {__version__} LRLawCallback",
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **job.record,
        "curves": curves,
        "other_curves": others,
        "fit": None if result is None or result.fit is None else result.fit.to_dict(),
        "prediction": None if result is None else result.prediction,
        "candidates": [] if result is None else result.candidates,
        "history": history,
        "events": list(job.events),
    }


def write_record(
    job: FitJob,
    result: FitResult | None,
    *,
    new: bool,
    failure: tuple[int, str] | None = None,
) -> None:
    """Write ``<folder>/record.json``; ``failure`` adds a failed fit's event."""
    if job.folder is None:
        return
    data = record(job, result, new=new)
    if failure is not None:
        data["events"].append({"step": failure[0], "kind": "fit_failed", "message": failure[1]})
    write_json(job.folder / "record.json", data)


def draw_figure(job: FitJob, result: FitResult, curve: LossCurve) -> None:
    """``<folder>/fit.png``: the observed curve, the fitted law, the predicted remainder with its
    band, and the candidates."""
    from hf_lrlaw.plots import plot_fit  # matplotlib: only when drawing

    p = result.prediction or {}
    title = (
        f"{job.run_name}: predicted final {job.metric} {p.get('final_loss', float('nan')):.4f} "
        f"[{p.get('low', float('nan')):.4f}, {p.get('high', float('nan')):.4f}] "
        f"at step {len(job.lrs)} (fit at step {job.step})"
    )
    labels = [f"#{i} {schedule_label(s, 40)}" for i, s in enumerate(job.candidates)]
    plot_fit(
        result.fit,
        [curve],
        predict=list(job.candidates),
        labels=labels or None,
        level=job.level,
        title=title,
        path=job.folder / "fit.png",
    )


def history_entry(result: FitResult) -> dict[str, Any]:
    """One fit in the record's history: its step, prediction, timings and best candidate."""
    p = result.prediction or {}
    entry = {
        "step": result.step,
        "final": result.final,
        "final_loss": p.get("final_loss"),
        "low": p.get("low"),
        "high": p.get("high"),
        "annealing_identified": p.get("annealing_identified"),
        "law": p.get("law"),
        "seconds": round(result.seconds, 4),
    }
    if result.plot_seconds:
        entry["plot_seconds"] = round(result.plot_seconds, 4)
    entry["cpu_seconds"] = round(result.cpu_seconds, 4)
    if result.stop_low is not None:
        entry["stop_low"] = result.stop_low
    if result.candidates:
        best = min(result.candidates, key=lambda r: r["predicted"])
        entry["best_candidate"] = best["index"]
        entry["best_candidate_final_loss"] = best["predicted"]
    return entry
