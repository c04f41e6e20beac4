"""The callback's fits: :func:`run_fit` fits, predicts and writes the record and figure from a
:class:`~hf_lrlaw.callback.jobs.FitJob` alone (a snapshot taken in the training thread), and
:class:`FitWorker` runs jobs in a background thread and hands the results back.

The thread touches nothing but its job and the result slot it fills; the training thread takes
results in (:meth:`FitWorker.take`) and only then updates the callback's state.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any

import numpy as np

from hf_lrlaw.callback.jobs import FitJob, FitResult
from hf_lrlaw.callback.recording import finite
from hf_lrlaw.callback.writer import draw_figure, write_record
from hf_lrlaw.curves import CurveError, LossCurve
from hf_lrlaw.fit_result import FitError
from hf_lrlaw.fitting import fit
from hf_lrlaw.laws import LawError
from hf_lrlaw.ranking import rank
from hf_lrlaw.schedules import ScheduleError

__all__ = ["FitWorker", "check_sane", "run_fit"]

logger = logging.getLogger("hf_lrlaw.callback")


def run_fit(job: FitJob) -> FitResult:
    """Fit, predict, write the figure and the record; never raises (a failing fit never
    interrupts training: it is a result with ``error`` set)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    result = FitResult(step=job.step, final=job.final)
    curve = None
    try:
        curve, fit_curve = curves_for_fit(job)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs = {"max_points": job.max_fit_points, **job.fit_kwargs}
            result.fit = fit(fit_curve, law=job.law, **kwargs)
            _predict(job, result)
    except (FitError, CurveError, LawError, ScheduleError) as exc:
        result.fit, result.error = None, str(exc)
    except Exception as exc:  # a fit must never take training down
        result.fit, result.error = None, f"{type(exc).__name__}: {exc}"
        logger.debug("LRLawCallback: fit failed", exc_info=True)
    result.seconds = time.perf_counter() - t0
    try:
        _write(job, result, curve, c0)
    except Exception as exc:
        logger.warning("LRLawCallback: could not write %s: %s", job.folder, exc)
    return result


def curves_for_fit(job: FitJob) -> tuple[LossCurve, LossCurve]:
    """The recorded curve of the job's metric, and the curve the fit is made on (points before
    any training left out; the fit bins them down to ``max_fit_points``)."""
    steps, losses, windows = job.points.get(job.metric, (np.zeros(0, np.int64),) * 3)
    is_train = job.metric == "loss"
    if not is_train:
        windows = np.ones(len(steps), dtype=np.int64)
    meta = {"metric": job.metric, "source": "LRLawCallback"}
    curve = LossCurve(
        job.lrs, steps, losses, name=job.run_name, windows=windows if is_train else None, meta=meta
    )
    trained = curve.trained()  # the laws cannot describe points before any training
    f_steps, f_losses, f_windows = trained.steps, trained.losses, trained.point_windows
    if len(f_steps) < job.min_points:
        raise FitError(
            f"{len(f_steps)} usable {job.metric} point(s), fewer than min_points="
            f"{job.min_points} (points before any training at a non-zero LR are left out)"
        )
    fit_curve = LossCurve(
        job.lrs,
        f_steps,
        f_losses,
        name=job.run_name,
        windows=f_windows if is_train else None,
        meta=dict(curve.meta),
    )
    return curve, fit_curve


def _predict(job: FitJob, result: FitResult) -> None:
    f = result.fit
    assert f is not None
    last = len(job.lrs) - 1
    mean, low, high = f.predict_interval(job.lrs, [last], level=job.level)
    result.prediction = {
        "fit_step": job.step,
        "final_step": last,
        "final_loss": float(mean[0]),
        "low": float(low[0]),
        "high": float(high[0]),
        "level": job.level,
        "annealing_identified": bool(f.annealing_identified),
        "law": f.law,
        "notes": list(f.notes),
        "fit_seconds": float(f.fit_seconds),
    }
    if job.stop_confidence is not None:
        _, stop_low, _ = f.predict_interval(job.lrs, [last], level=2 * job.stop_confidence - 1)
        result.stop_low = float(stop_low[0])
    if job.candidates:
        ranking = rank(f, job.candidates, level=job.level)
        by_id = {id(r.schedule): r for r in ranking}
        result.candidates = [
            {"index": i, **by_id[id(s)].to_dict()} for i, s in enumerate(job.candidates)
        ]
    check_sane(job, result)


def check_sane(job: FitJob, result: FitResult) -> None:
    """A fit whose predictions are not losses (non-positive, or an interval that does not
    hold its mean) is ill-posed: nothing of it is reported."""
    p = result.prediction or {}
    rows = [(p.get("final_loss"), p.get("low"), p.get("high"), "this run")]
    rows += [
        (r["predicted"], r["low"], r["high"], f"candidate {r['index']}") for r in result.candidates
    ]
    for mean, low, high, what in rows:
        values = [finite(mean), finite(low), finite(high)]
        if None in values or not (values[0] > 0 and 0 <= values[1] <= values[0] <= values[2]):
            raise FitError(
                f"the fitted {result.fit.law if result.fit else ''} law predicts a final "
                f"{job.metric} of {mean:.4g} [{low:.4g}, {high:.4g}] for {what}, which is not "
                "a loss: the fit is ill-posed at this point of the run (e.g. an annealing "
                "gain extrapolated from little LR decay), so no prediction is reported; "
                "more points, or a prior (fit_kwargs={'prior': 'default'}), help"
            )


def _write(job: FitJob, result: FitResult, curve: LossCurve | None, c0: float) -> None:
    """fit.png, then record.json (which says how long the work took)."""
    if job.folder is None:
        return
    if job.plot and result.fit is not None and curve is not None:
        t0, c1 = time.perf_counter(), time.thread_time()
        try:
            draw_figure(job, result, curve)
        except Exception as exc:
            logger.warning("LRLawCallback: could not draw %s: %s", job.folder / "fit.png", exc)
        result.plot_seconds = time.perf_counter() - t0
        result.plot_cpu = time.thread_time() - c1
    result.cpu_seconds = time.thread_time() - c0
    if result.fit is not None:
        write_record(job, result, new=True)
    else:
        write_record(job, job.previous, new=False, failure=(job.step, result.failure))


class FitWorker:
    """Runs :func:`run_fit` on one job at a time, in a background thread (``background``) or in
    the caller's; :meth:`take` hands the finished result to the training thread once."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: FitResult | None = None

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: FitJob, *, wait: bool = False) -> None:
        """Run ``job``; in the background unless ``wait`` (or the worker is not background)."""
        if self.background and not wait:
            thread = threading.Thread(target=self._run, args=(job,), name="lrlaw-fit", daemon=True)
            self._thread = thread
            thread.start()
        else:
            self._run(job)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running job; False if it is still running after ``timeout`` seconds."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def take(self) -> FitResult | None:
        """The finished result not taken yet, or None."""
        if self._pending is None:
            return None
        with self._lock:
            result, self._pending = self._pending, None
        return result

    def _run(self, job: FitJob) -> None:
        result = run_fit(job)
        with self._lock:
            self._pending = result

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Trainer's callbacks: threads and locks stay behind.
        return {"background": self.background}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["background"])
