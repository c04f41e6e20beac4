"""A replay world: schedule search judged on real loss curves instead of a law's.

A :class:`ReplayWorld` holds the bundled runs of one cell of the public data (one model, one
horizon, one corpus): its candidates are those runs' schedules, and a trial "trains" by
reporting, at the data's own eval cadence, the real curve of the run whose schedule the searcher
suggested. Where the data hold replicates of a schedule (another data order or code branch),
the trial's seed picks one, so a repeated schedule sees the run-to-run noise a user would.

Shorter runs of the same model and corpus (other horizons) are there too, for pilots: any
schedule that some bundled run followed can be replayed, as far as that run went. A schedule no
run followed is refused with one clear error (the trial errors, as a real one would on bad
input). Compute is counted in optimizer steps, like :class:`~tune_search.simulate.SimulatedWorld`,
whose interface this class shares (``total_steps``, ``curve``, ``true_final``, ``trainable``), so
:func:`tune_search.testing.drive`, the benchmark and ``lrlaw search --replay`` use either.

>>> world = ReplayWorld.lr_scheduling("124M", 50000)
>>> len(world.candidates())
54
>>> world.best()[0]
'wsd(peak_lr=0.002, total_steps=50000, warmup_steps=300, decay_fraction=0.6, decay_shape=linear, final_ratio=0.0)'
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hf_lrlaw import datasets
from hf_lrlaw.curves import LossCurve
from hf_lrlaw.schedules import Schedule
from tune_search.branching import BRANCH_KEY, world_reports

__all__ = ["REPLICATE_FLOOR", "ReplayError", "ReplayWorld", "schedule_of_run"]

# The final losses of replicate 50k runs of the 124M grid differ by up to 0.0042 nats (median
# 0.0017): a search cannot tell schedules apart more finely than this.
REPLICATE_FLOOR = 0.002


class ReplayError(ValueError):
    """A schedule that no bundled run followed, or a cell the data do not hold."""


_LS_NAME = re.compile(r"^wsd-(linear|1-sqrt)-cooldown([0-9.]+)$")


def schedule_of_run(curve: LossCurve) -> Schedule | None:
    """The library :class:`Schedule` a bundled run followed, from its ``meta`` (None for the
    schedules the library does not name, e.g. lr-scheduling's two-stage horizon extensions).

    lr-scheduling warms up from peak/100 (ours from 0) and its cosine "to 0" ends at
    peak/1000; multipowerlaw's runs decay to 3e-5, a tenth of their peak. Past the warmup every
    mapped run's LRs agree with the Schedule's to 0.1% of the peak, but for the first steps of
    the 1-sqrt cooldowns, whose bundled LRs are interpolated between logged steps (2.5%;
    ``test_replay_schedules_follow_the_runs``)."""
    m = curve.meta
    peak, total, warm = float(m["peak_lr"]), int(m["total_steps"]), int(m["warmup_steps"])
    common: dict[str, Any] = {"warmup_steps": warm}
    if m.get("warmup_shape") == "cosine":
        common["warmup_shape"] = "cosine"
    name = str(m["schedule"])
    if m.get("collection") == "multipowerlaw":
        floor = 0.1
        if name.startswith("constant_"):
            return Schedule.constant(peak, total, **common)
        if name.startswith("cosine_"):
            return Schedule.cosine(peak, total, final_ratio=floor, **common)
        found = re.match(r"^(wsd|wsdld)_(\d+)_(\d+)$", name)
        if found:
            decay = (total - int(found.group(2))) / total
            shape = "exponential" if found.group(1) == "wsd" else "linear"
            return Schedule.wsd(
                peak,
                total,
                decay_fraction=round(decay, 12),
                decay_shape=shape,
                final_ratio=floor,
                **common,
            )
        return None
    if name == "constant":
        return Schedule.constant(peak, total, **common)
    if name == "cosine-to-0":
        return Schedule.cosine(peak, total, final_ratio=0.0, **common)
    if name == "cosine-to-10%":
        return Schedule.cosine(peak, total, final_ratio=0.1, **common)
    found = _LS_NAME.match(name)
    if found:
        return Schedule.wsd(
            peak,
            total,
            decay_fraction=float(found.group(2)),
            decay_shape=found.group(1),
            **common,
        )
    return None


@dataclass
class _Run:
    schedule: Schedule
    text: str
    replicates: list[LossCurve]

    @property
    def final(self) -> float:
        """The mean of the replicates' last observed losses."""
        return float(np.mean([c.losses[-1] for c in self.replicates]))


@dataclass
class ReplayWorld:
    """Bundled real runs of one cell: the candidates, the curves trials report, the truth.

    Build one with :meth:`lr_scheduling` or :meth:`multipowerlaw`, or from your own curves
    (each with ``meta`` holding what :func:`schedule_of_run` reads, or pass the schedules).

    Args:
        curves: the runs of the cell (the candidates: runs of ``horizon`` steps) and of the
            same model at other horizons (for pilots); replicates of a schedule are averaged
            for the truth and picked from by a trial's seed.
        horizon: the candidates' run length; default the longest run's.
        name: a label for tables.
        seed: offsets which replicate a trial gets.
        exclude_peak_lr: peak LRs whose runs are no candidates (still replayable).
    """

    curves: Sequence[LossCurve]
    horizon: int | None = None
    name: str = "replay"
    seed: int = 0
    exclude_peak_lr: Sequence[float] = ()
    _runs: dict[str, _Run] = field(init=False, repr=False)
    _cands: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        runs: dict[str, _Run] = {}
        for c in self.curves:
            s = schedule_of_run(c)
            if s is None:
                continue
            text = str(s)
            runs.setdefault(text, _Run(s, text, [])).replicates.append(c)
        if not runs:
            what = f"none of its {len(self.curves)} runs has" if self.curves else "no runs with"
            raise ReplayError(f"{self.name}: {what} a schedule the library names")
        if self.horizon is None:
            self.horizon = max(r.schedule.total_steps for r in runs.values())
        excluded = [float(p) for p in self.exclude_peak_lr]
        self._runs = runs
        self._cands = [
            t
            for t, r in runs.items()
            if r.schedule.total_steps == self.horizon
            and not any(abs(r.schedule.peak_lr - p) <= 1e-9 * p for p in excluded)
        ]
        if not self._cands:
            have = sorted({r.schedule.total_steps for r in runs.values()})
            raise ReplayError(
                f"{self.name}: no run of {self.horizon} steps; the runs have "
                f"{', '.join(map(str, have))} steps"
            )
        self._cands.sort(key=lambda t: (runs[t].schedule.peak_lr, t))

    # -- the bundled cells ----------------------------------------------------------------
    @classmethod
    def lr_scheduling(
        cls,
        model: str = "124M",
        horizon: int = 50000,
        *,
        corpus: str = "slimpajama",
        include_diverged: bool = False,
        seed: int = 0,
    ) -> ReplayWorld:
        """The lr-scheduling runs of ``model`` on ``corpus`` (Schaipp, Hägele et al. 2025;
        validation loss every 200 steps); candidates: its runs of ``horizon`` steps (124M at
        50k: 5 peak LRs x 12 schedules, 54 runs; the cosine run at 5e-3 that diverged is a
        candidate only with ``include_diverged``)."""
        curves = datasets.load("lr-scheduling", model=model, dataset=corpus)
        if not curves:
            models = sorted({c.meta["model"].split("(")[0] for c in datasets.load("lr-scheduling")})
            raise ReplayError(f"lr-scheduling holds no {model} runs on {corpus}; models: {models}")
        diverged = [] if include_diverged else [5e-3]
        return cls(
            curves,
            horizon,
            name=f"lr-scheduling {model} {horizon // 1000}k",
            seed=seed,
            exclude_peak_lr=diverged,
        )

    @classmethod
    def multipowerlaw(cls, model: str = "100M", horizon: int = 24000, *, seed: int = 0):
        """The multipowerlaw runs of ``model`` (Luo et al. 2025, peak LR 3e-4); candidates: its
        runs of ``horizon`` steps (24,000: constant, cosine, WSD with an exponential and a
        linear decay; 72,000: constant and cosine)."""
        curves = datasets.load("multipowerlaw", model=model)
        if not curves:
            raise ReplayError(f"multipowerlaw holds no {model} runs; models: 25M, 100M, 400M")
        return cls(curves, horizon, name=f"multipowerlaw {model} {horizon // 1000}k", seed=seed)

    @classmethod
    def from_text(cls, text: str, *, seed: int = 0) -> ReplayWorld:
        """A bundled cell from ``COLLECTION:MODEL[:STEPS]`` (``lrlaw search --replay``), e.g.
        ``lr-scheduling:124M:50000`` or ``multipowerlaw:100M``."""
        parts = [p.strip() for p in str(text).split(":")]
        makers = {
            "lr-scheduling": (cls.lr_scheduling, 50000),
            "multipowerlaw": (cls.multipowerlaw, 24000),
        }
        if len(parts) not in (2, 3) or parts[0] not in makers:
            raise ReplayError(
                f"replay cell {text!r}: expected COLLECTION:MODEL[:STEPS] with COLLECTION one of "
                f"{', '.join(makers)}, e.g. lr-scheduling:124M:50000"
            )
        make, default = makers[parts[0]]
        try:
            steps = int(float(parts[2])) if len(parts) == 3 else default
        except ValueError:
            raise ReplayError(f"replay cell {text!r}: STEPS must be a number of steps") from None
        try:
            return make(parts[1], steps, seed=seed)
        except ValueError as exc:
            raise ReplayError(f"replay cell {text!r}: {exc}") from None

    # -- the world's scale (as SimulatedWorld) ----------------------------------------------
    @property
    def total_steps(self) -> int:
        assert self.horizon is not None
        return int(self.horizon)

    @property
    def peak_lrs(self) -> list[float]:
        return sorted({self._runs[t].schedule.peak_lr for t in self._cands})

    @property
    def peak_lr(self) -> float:
        """The middle peak LR of the candidates (the lower of two middles)."""
        peaks = self.peak_lrs
        return peaks[(len(peaks) - 1) // 2]

    @property
    def warmup_steps(self) -> int:
        return self._runs[self._cands[0]].schedule.warmup_steps

    def fit_options(self, law: str) -> dict[str, Any]:
        """Law options for this world's step scale: the defaults (its runs are real length)."""
        return {}

    def candidates(self) -> list[Schedule]:
        """The schedules of the cell's runs, by peak LR then text."""
        return [self._runs[t].schedule for t in self._cands]

    def space(self) -> Any:
        """A :class:`~tune_search.ScheduleSpace` of exactly :meth:`candidates`."""
        from tune_search.space import ScheduleSpace

        return ScheduleSpace(self.peak_lr, self.total_steps, kinds={}, extra=self.candidates())

    def pilots(self) -> list[Schedule]:
        """The searcher's default pilots where the data hold them. For several peak LRs: WSD
        with a 20% linear cooldown at the lowest, middle and highest peak LR, at the horizon
        closest to half the candidates' among the shorter runs that exist (124M at 50k: 25k,
        up to 2e-3). For one peak LR: constant and cosine at the horizon (run to half)."""
        from tune_search.space import PILOT_DECAY

        peaks = self.peak_lrs
        if len(peaks) == 1:
            kinds = {self._runs[t].schedule.kind: self._runs[t].schedule for t in self._cands}
            return [kinds[k] for k in ("constant", "cosine") if k in kinds]
        short: dict[int, dict[float, Schedule]] = {}
        for r in self._runs.values():
            s = r.schedule
            if (
                s.kind == "wsd"
                and s.param("decay_shape") == "linear"
                and abs(s.param("decay_fraction") - PILOT_DECAY) < 1e-9
                and s.total_steps < self.total_steps
            ):
                short.setdefault(s.total_steps, {})[s.peak_lr] = s
        horizons = [h for h, by_lr in short.items() if len(by_lr) >= 2]
        if not horizons:
            raise ReplayError(
                f"{self.name}: no shorter WSD-20% runs at two or more peak LRs for the pilots; "
                "give the searcher pilots= of runs the world holds"
            )
        by_lr = short[min(horizons, key=lambda h: abs(h - self.total_steps / 2))]
        lrs = sorted(by_lr)
        middle = min(lrs, key=lambda p: abs(np.log(p / self.peak_lr)))
        return [by_lr[p] for p in sorted({lrs[0], middle, lrs[-1]})]

    @property
    def pilot_steps(self) -> float | None:
        """How far the searcher runs :meth:`pilots`: in full where they are shorter runs (several
        peak LRs), to half the horizon where they are full-length constant and cosine runs."""
        return None if len(self.peak_lrs) > 1 else 0.5

    # -- truth ------------------------------------------------------------------------------
    def true_final(self, schedules: Sequence[Schedule | str] | Schedule | str) -> np.ndarray:
        """The mean final loss of each schedule's replicate runs (a candidate of the cell)."""
        if isinstance(schedules, (Schedule, str)):
            schedules = [schedules]
        return np.array([self._run(s).final for s in schedules])

    def best(self) -> tuple[str, float]:
        """The candidate with the lowest true final loss, and that loss."""
        finals = self.true_final(self._cands)
        i = int(np.argmin(finals))
        return self._cands[i], float(finals[i])

    def regret(self, schedule: Schedule | str) -> float:
        """True final loss of ``schedule`` minus the best candidate's (nats)."""
        return float(self.true_final(schedule)[0]) - self.best()[1]

    def replayable(self, schedule: Schedule | str) -> bool:
        try:
            self._run(schedule)
        except ReplayError:
            return False
        return True

    def _run(self, schedule: Schedule | str) -> _Run:
        s = Schedule.parse(schedule) if isinstance(schedule, str) else schedule
        run = self._runs.get(str(s))
        if run is None:
            raise ReplayError(
                f"{self.name}: no bundled run followed the schedule {s}; the candidates are the "
                f"cell's {len(self._cands)} runs (ReplayWorld.candidates())"
            )
        return run

    # -- what a trial reports -----------------------------------------------------------------
    def curve(self, schedule: Schedule | str, trial_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, losses)`` of the run of ``schedule`` (LossCurve step convention); the
        replicate is chosen by the world's and the trial's seed."""
        run = self._run(schedule)
        c = run.replicates[(self.seed + int(trial_seed)) % len(run.replicates)]
        return np.asarray(c.steps, dtype=np.int64), np.asarray(c.losses, dtype=float)

    def trainable(
        self, metric: str = "loss", sleep: float = 0.0
    ) -> Callable[[dict[str, Any]], None]:
        """A function trainable for ``tune.Tuner``: reports ``{"step", metric}`` at every
        logged step of the real run of ``config["schedule"]``; honours
        ``config["lrlaw_stop_step"]``; ``config["trial_seed"]`` picks a replicate."""
        world = self

        def replayed_trial(config: dict[str, Any]) -> None:
            from ray import tune

            seed = int(config.get("trial_seed", 0))
            steps, losses = world.trial_curve(config, seed)
            names = world.checkpoint_namer(config, seed)
            for result in world_reports(steps, losses, metric, config, names):
                tune.report(result)
                if sleep:
                    time.sleep(sleep)

        return replayed_trial

    def trial_curve(
        self, config: Mapping[str, Any], trial_seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the trial of ``config`` reports: :meth:`curve`, or for a branch (the searcher
        gives one only where the child's LRs equal its parent's up to the resume step), the
        real run of the child's schedule from that step on. Where the data hold a replicate of
        the child that was itself branched from the parent's replicate (identical losses up to
        a checkpoint), that one is replayed; else the seed's: its steps before the resume point
        were a run at the same LRs, which differs from the parent's only by run-to-run noise."""
        run, index, start = self._trial_replicate(config, trial_seed)
        c = run.replicates[index]
        keep = np.asarray(c.steps) >= start
        return (
            np.asarray(c.steps, dtype=np.int64)[keep],
            np.asarray(c.losses, dtype=float)[keep],
        )

    def checkpoint_namer(self, config: Mapping[str, Any], trial_seed: int) -> Callable[[int], str]:
        """How the trial of ``config`` names its checkpoint after k updates: by the replicate
        it replays, so that a branch from it can follow the data's own branch."""
        run, index, _ = self._trial_replicate(config, trial_seed)
        return lambda k: f"replay:{k}:{index}:{run.text}"

    def _trial_replicate(self, config: Mapping[str, Any], trial_seed: int) -> tuple[_Run, int, int]:
        """(run, replicate index, first step reported) of the trial of ``config``."""
        run = self._run(config["schedule"])
        index = (self.seed + int(trial_seed)) % len(run.replicates)
        branch = config.get(BRANCH_KEY)
        if not branch:
            return run, index, 0
        k = int(branch["step"])
        parent = self._parent_curve(str(branch.get("checkpoint", "")))
        if parent is not None:
            for i, c in enumerate(run.replicates):
                both = np.intersect1d(c.steps[c.steps < k], parent.steps)
                if len(both) and np.allclose(
                    c.losses[np.searchsorted(c.steps, both)],
                    parent.losses[np.searchsorted(parent.steps, both)],
                    rtol=0,
                    atol=1e-6,
                ):
                    return run, i, k
        return run, index, k

    def _parent_curve(self, where: str) -> LossCurve | None:
        parts = where.split(":", 3)
        if len(parts) != 4 or parts[0] != "replay":
            return None
        run = self._runs.get(parts[3])
        if run is None or not parts[2].isdigit() or int(parts[2]) >= len(run.replicates):
            return None
        return run.replicates[int(parts[2])]
