"""Test and benchmark drivers: a searcher and a scheduler run against a
:class:`~tune_search.simulate.SimulatedWorld` or a :class:`~tune_search.replay.ReplayWorld` in
this process, the way Tune's event loop would
drive them (suggest, results, stop decisions, completion), without starting Ray.

Real searches go through ``ray.tune.Tuner`` (the tests do both); :func:`drive` is what lets the
benchmark run hundreds of searches in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tune_search.branching import BRANCH_KEY, CHECKPOINTS_KEY, SAVE_KEY, encode_checkpoints

__all__ = ["DriveResult", "TrialStub", "World", "drive"]


class World(Protocol):
    """What :func:`drive` needs of a world: its horizon, the curve a trial of a schedule
    reports, and the true final loss of a schedule. A world that also has ``trial_curve(config,
    trial_seed)`` and ``checkpoint_namer(config, trial_seed)`` (the simulated and replay
    worlds) runs branched trials too."""

    @property
    def total_steps(self) -> int: ...

    def curve(self, schedule: Any, trial_seed: int = 0) -> tuple[np.ndarray, np.ndarray]: ...

    def true_final(self, schedules: Any) -> np.ndarray: ...


@dataclass
class TrialStub:
    """What Tune's schedulers read from a trial: its id, config and status."""

    trial_id: str
    config: dict[str, Any]
    status: str = "RUNNING"
    steps_run: int = 0
    last_result: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.trial_id)


@dataclass
class DriveResult:
    """What happened in one :func:`drive`: every trial in start order, the compute used, and the
    trajectory of the recommendation (the full-length trial with the lowest final loss)."""

    trials: list[dict[str, Any]]
    compute: int  # optimizer steps run in total
    full_run_steps: int
    trajectory: list[tuple[int, str, float]]  # (compute so far, recommended schedule, its loss)
    finished_by: str  # "searcher" (FINISHED), "budget", "max_trials" or "stalled" (a bug)

    @property
    def full_runs(self) -> float:
        return self.compute / self.full_run_steps

    def compute_to_within(self, world: World, best_true: float, tol: float) -> float | None:
        """Compute (in full runs) at which the recommendation first was a schedule whose true
        final loss is within ``tol`` (relative) of ``best_true``; None if never."""
        for compute, text, _ in self.trajectory:
            if world.true_final(text)[0] <= best_true * (1 + tol):
                return compute / self.full_run_steps
        return None


def drive(
    world: World,
    searcher: Any,
    scheduler: Any = None,
    *,
    metric: str = "loss",
    concurrency: int = 1,
    budget_steps: int | None = None,
    max_trials: int = 10_000,
    full_run_steps: int | None = None,
) -> DriveResult:
    """Run ``searcher`` (a ``ray.tune.search.Searcher``) and ``scheduler`` (a ``TrialScheduler``
    or None) against ``world`` in this process, as Tune would with ``concurrency`` trials at a
    time, one logging step per running trial per round (a branched trial starts at its resume
    step and pays from there; checkpoints it saves are listed in its results). Stops when the searcher is FINISHED,
    after ``max_trials`` trials, or when ``budget_steps`` steps have been run. A schedule the
    world cannot give a curve for (a replay world's unknown run) is a trial that errors at once."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    running: dict[str, tuple[TrialStub, np.ndarray, np.ndarray, int]] = {}
    trials: list[dict[str, Any]] = []
    trajectory: list[tuple[int, str, float]] = []
    compute, counter, finished = 0, 0, False
    names: dict[str, Any] = {}
    starts: dict[str, int] = {}  # a branch starts at its resume step and pays from there
    best: tuple[float, str] | None = None
    finished_by = "searcher"
    full = full_run_steps or world.total_steps

    def complete(tid: str, result: dict[str, Any] | None, error: bool, stopped: bool) -> None:
        nonlocal best
        trial, steps, _, pos = running.pop(tid)
        searcher.on_trial_complete(tid, result=result, error=error)
        if scheduler is not None:
            if error:
                scheduler.on_trial_error(None, trial)
            else:
                scheduler.on_trial_complete(None, trial, result or {})
        text = trial.config["schedule"]
        done = not error and result is not None and result.get("step") == int(steps[-1])
        trials.append(
            {
                "trial_id": tid,
                "schedule": text,
                "steps_run": trial.steps_run,
                "compute": trial.steps_run - starts.get(tid, 0),
                "full": done,
                "stopped": stopped,
                "error": error,
                "final": result.get(metric) if result else None,
            }
        )
        if done and math.isfinite(result[metric]) and (best is None or result[metric] < best[0]):
            best = (float(result[metric]), text)
        if best is not None and (not trajectory or trajectory[-1][1] != best[1]):
            trajectory.append((compute, best[1], best[0]))

    while True:
        while not finished and len(running) < concurrency and counter < max_trials:
            tid = f"t{counter:05d}"
            suggestion = searcher.suggest(tid)
            if suggestion == Searcher.FINISHED:
                finished = True
                break
            if suggestion is None:
                break
            counter += 1
            trial = TrialStub(tid, dict(suggestion))
            if scheduler is not None:
                scheduler.on_trial_add(None, trial)
            try:
                if hasattr(world, "trial_curve"):
                    steps, losses = world.trial_curve(trial.config, trial_seed=counter)
                    names[tid] = world.checkpoint_namer(trial.config, counter)
                else:  # a world of whole runs only: every trial runs from step 0, saves nothing
                    steps, losses = world.curve(trial.config["schedule"], trial_seed=counter)
                    trial.config.pop(BRANCH_KEY, None)
                    trial.config.pop(SAVE_KEY, None)
            except ValueError:
                running[tid] = (trial, np.zeros(1, np.int64), np.zeros(1), 0)
                complete(tid, None, True, False)
                continue
            branch = trial.config.get(BRANCH_KEY)
            starts[tid] = trial.steps_run = int(branch["step"]) if branch else 0
            running[tid] = (trial, steps, losses, 0)
        if not running:
            if counter >= max_trials:
                finished_by = "max_trials"
            elif not finished:
                finished_by = "stalled"  # the searcher waits for trials that do not exist
            break
        if budget_steps is not None and compute >= budget_steps:
            finished_by = "budget"
            break
        for tid in list(running):
            trial, steps, losses, pos = running[tid]
            step, loss = int(steps[pos]), float(losses[pos])
            compute += step + 1 - trial.steps_run
            trial.steps_run = step + 1
            result = {
                "step": step,
                metric: loss,
                "training_iteration": pos + 1,
                "trial_id": tid,
                "done": False,
            }
            saved = [(k, names[tid](k)) for k in trial.config.get(SAVE_KEY, ()) if k <= step + 1]
            if saved:
                result[CHECKPOINTS_KEY] = encode_checkpoints(saved)
            trial.last_result = result
            searcher.on_trial_result(tid, result)
            action = TrialScheduler.CONTINUE
            if scheduler is not None:
                action = scheduler.on_trial_result(None, trial, result)
            stop_step = trial.config.get("lrlaw_stop_step")
            last = pos + 1 >= len(steps) or (stop_step is not None and step >= stop_step)
            if action == TrialScheduler.STOP or last:
                complete(tid, result, False, action == TrialScheduler.STOP and not last)
            else:
                running[tid] = (trial, steps, losses, pos + 1)
    return DriveResult(trials, compute, full, trajectory, finished_by)
