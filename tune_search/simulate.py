"""A simulated world for testing and benchmarking schedule search without training anything.

A :class:`SimulatedWorld` holds a hidden law with realistic parameters (the multi-power law fitted
on the bundled public curves of Luo et al. 2025, or the momentum law) and generates the loss
curve any schedule would give, with measurement noise. :meth:`SimulatedWorld.trainable` is a Ray
Tune function trainable that reports such a curve with ``tune.report`` at its logging steps;
:func:`tune_search.testing.drive` runs a searcher and a scheduler against the world in this
process, the way Tune would, which is what the tests and the benchmark use to run many seeds
quickly.

Time scaling: the presets are the fits on 24,000-step runs at peak LR 3e-4. A world with
``time_scale=k`` runs ``24000 / k`` steps at ``k`` times the LR; the multi-power law's parameters
are transformed (``B / k``, ``C * k**gamma``) so that a run of the short world is exactly the same
law as the long one at every k-th step. The momentum law's decay factor becomes ``lam**k``.

Compute is counted in optimizer steps: a trial that is stopped counts the steps it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hf_lrlaw.laws import get_law
from hf_lrlaw.schedules import Schedule
from tune_search.branching import BRANCH_KEY, world_reports

__all__ = ["LRNOISE_PRESET", "PRESETS", "PRESET_OPTIONS", "SimulatedWorld"]

# Fits on the public curves of Luo et al. 2025 (hf_lrlaw.datasets.multipowerlaw_split(size)[0],
# fit(..., "multipower") and fit(..., "momentum")): 24,000 steps, peak LR 3e-4, warmup 2,160.
PRESETS: dict[str, dict[str, dict[str, float]]] = {
    "25M": {
        "multipower": {
            "L0": 3.15470,
            "A": 0.517788,
            "alpha": 0.507792,
            "B": 4878.59,
            "C": 1.47561,
            "beta": 0.0105036,
            "gamma": 0.901050,
        },
        "momentum": {"L0": 3.24667, "A": 0.542676, "alpha": 0.825560, "C": 0.391676},
    },
    "100M": {
        "multipower": {
            "L0": 2.78263,
            "A": 0.599602,
            "alpha": 0.448637,
            "B": 638.908,
            "C": 0.00209659,
            "beta": 0.242483,
            "gamma": 1.35375,
        },
        "momentum": {"L0": 2.91219, "A": 0.588591, "alpha": 0.771724, "C": 0.467781},
    },
    "400M": {
        "multipower": {
            "L0": 2.51973,
            "A": 0.659136,
            "alpha": 0.415823,
            "B": 770.286,
            "C": 0.525989,
            "beta": 0.273064,
            "gamma": 0.650480,
        },
        "momentum": {"L0": 2.67008, "A": 0.630081, "alpha": 0.727616, "C": 0.556025},
    },
}
# The lrnoise law fitted on the bundled 124M SlimPajama grid of lr-scheduling (every run of <= 25k
# steps at peak LR 1e-4..3e-3, min_step=3000; bench/bench_peak_lr.py, fit A): a world whose best
# peak LR is interior and falls with the horizon. Its parameters are in absolute steps and LRs
# (time_scale does not transform them).
LRNOISE_PRESET: dict[str, float] = {
    "L0": 2.51987,
    "A": 1.10587,
    "alpha": 0.342728,
    "p": 0.596378,
    "B": 0.362301,
    "beta": 0.409445,
    "D": 0.0117659,
}
# The law options those fits used (pinned: a change of the core's defaults must not move the
# simulated worlds).
PRESET_OPTIONS: dict[str, dict[str, Any]] = {
    "multipower": {"warmup": "exclude", "exact": True},
    "momentum": {"lam": 0.999, "warmup": "peak"},
}
_PRESET_STEPS = 24000
_PRESET_LR = 3e-4
_PRESET_WARMUP = 2160


@dataclass
class SimulatedWorld:
    """A hidden law that gives every schedule its loss curve, with noise.

    Args:
        law: the hidden law, "multipower" (default) or "momentum", with the options the
            presets were fitted with (:data:`PRESET_OPTIONS`) unless ``law_options`` says else;
            or "lrnoise" (:data:`LRNOISE_PRESET`, a 124M model whose loss depends on the peak
            LR with an interior optimum: the world for searches over peak LRs).
        params: its parameters (natural units of the 24,000-step preset world; see the module
            docstring for ``time_scale``); default the preset ``model``.
        model: which preset ("25M", "100M", "400M") when ``params`` is None.
        time_scale: k: runs are ``24000 / k`` steps at ``3e-4 * k`` peak LR.
        noise: relative measurement noise of each logged loss (Gaussian, iid).
        run_noise: relative run-to-run offset (one draw per trial; e.g. the data order).
        log_every: a loss is logged every this many steps (and at the last step).
        seed: seeds the noise; a trial's noise also depends on its schedule and ``trial_seed``.
        diverge_lr: a run at this peak LR or above diverges, as the 124M grid's 5e-3 run did:
            from 10% of its steps on, its loss is 1.5 times what it was there.
    """

    law: str = "multipower"
    params: Mapping[str, float] | None = None
    model: str = "100M"
    time_scale: float = 10.0
    noise: float = 0.003
    run_noise: float = 0.0
    log_every: int = 40
    seed: int = 0
    law_options: dict[str, Any] = field(default_factory=dict)
    diverge_lr: float | None = None

    def __post_init__(self) -> None:
        if self.params is not None:
            base = dict(self.params)
        elif self.law == "lrnoise":
            base = dict(LRNOISE_PRESET)
        else:
            base = dict(PRESETS[self.model][self.law])
        self.law_options = {**PRESET_OPTIONS.get(self.law, {}), **self.law_options}
        k = float(self.time_scale)
        if self.law == "multipower":
            base["B"] = base["B"] / k
            base["C"] = base["C"] * k ** base["gamma"]
        elif self.law == "momentum":
            opts = dict(self.law_options)
            opts["lam"] = opts.get("lam", 0.999) ** k
            self.law_options = opts
        self._theta_params = base
        self._law = get_law(self.law, **self.law_options)
        names = [p.name for p in self._law.params]
        self._theta = np.array([base[n] for n in names], dtype=float)

    # -- the world's scale ---------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        """The horizon of the preset run in this world."""
        return int(round(_PRESET_STEPS / self.time_scale))

    @property
    def peak_lr(self) -> float:
        return float(f"{_PRESET_LR * self.time_scale:.12g}")

    @property
    def warmup_steps(self) -> int:
        return int(round(_PRESET_WARMUP / self.time_scale))

    @property
    def hidden_params(self) -> dict[str, float]:
        return dict(self._theta_params)

    def fit_options(self, law: str) -> dict[str, Any]:
        """Law options that suit this world's step scale when fitting ``law`` to it."""
        if law == "momentum":
            return {"lam": round(0.999**self.time_scale, 6)}
        return {}

    # -- truth ---------------------------------------------------------------------------------
    def true_final(self, schedules: Sequence[Schedule | str] | Schedule | str) -> np.ndarray:
        """Noise-free final loss of each schedule (vectorised per horizon)."""
        if isinstance(schedules, (Schedule, str)):
            schedules = [schedules]
        scheds = [Schedule.parse(s) if isinstance(s, str) else s for s in schedules]
        out = np.empty(len(scheds))
        groups: dict[int, list[int]] = {}
        for i, s in enumerate(scheds):
            groups.setdefault(s.total_steps, []).append(i)
        for idx in groups.values():
            for chunk in np.array_split(np.asarray(idx), max(1, len(idx) // 256)):
                lrs = np.stack([scheds[i].lrs() for i in chunk])
                out[chunk] = self._law.predict(self._theta, self._law.prepare_final(lrs))
        for i, s in enumerate(scheds):
            if self._diverges(s):
                out[i] = self.true_curve(s)[1][-1]
        return out

    def _diverges(self, schedule: Schedule) -> bool:
        return self.diverge_lr is not None and schedule.peak_lr >= self.diverge_lr

    def logging_steps(self, schedule: Schedule) -> np.ndarray:
        """Steps (LossCurve convention) at which a loss is logged: every ``log_every`` steps
        and the last step."""
        t = schedule.total_steps
        steps = np.arange(self.log_every - 1, t, self.log_every)
        if len(steps) == 0 or steps[-1] != t - 1:
            steps = np.append(steps, t - 1)
        return steps.astype(np.int64)

    def true_curve(self, schedule: Schedule | str) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free ``(steps, losses)`` at the logging steps."""
        s = Schedule.parse(schedule) if isinstance(schedule, str) else schedule
        steps = self.logging_steps(s)
        losses = self._law.predict(self._theta, self._law.prepare(s.lrs(), steps))
        if self._diverges(s):
            late = steps >= 0.1 * s.total_steps
            losses = np.where(late, 1.5 * losses[int(np.argmax(late))], losses)
        return steps, losses

    def curve(self, schedule: Schedule | str, trial_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, losses)`` with noise, as a trial would log them (deterministic per seed,
        schedule and ``trial_seed``)."""
        s = Schedule.parse(schedule) if isinstance(schedule, str) else schedule
        steps, clean = self.true_curve(s)
        rng = np.random.default_rng([self.seed, _stable_hash(str(s)), trial_seed])
        offset = rng.normal(0.0, self.run_noise) if self.run_noise else 0.0
        noisy = clean * np.exp(offset + rng.normal(0.0, self.noise, size=len(clean)))
        return steps, noisy

    # -- a Ray Tune trainable ------------------------------------------------------------------
    def trainable(
        self,
        metric: str = "loss",
        sleep: float = 0.0,
        fail_schedules: Sequence[str] = (),
        nan_schedules: Sequence[str] = (),
        max_steps: int | None = None,
        start_log: str | None = None,
    ) -> Callable[[dict[str, Any]], None]:
        """A function trainable for ``tune.Tuner``: reports ``{"step", metric}`` at every
        logging step of ``config["schedule"]``; honours ``config["lrlaw_stop_step"]``.

        ``fail_schedules`` / ``nan_schedules``: schedule texts (or kinds) whose trial raises an
        error / reports NaN half-way, to test bad input. ``max_steps``: the trial refuses a
        schedule of another length (as a real trainable with a fixed budget would).
        ``start_log``: a file to which each trial appends ``trial_id<TAB>schedule`` when it
        starts (tests check that a resumed search repeats no finished trial).
        """
        world = self

        def simulated_trial(config: dict[str, Any]) -> None:
            from ray import tune

            text = config["schedule"]
            if start_log:
                with open(start_log, "a") as fh:
                    fh.write(f"{tune.get_context().get_trial_id()}\t{text}\n")
            schedule = Schedule.parse(text)
            if max_steps is not None and schedule.total_steps != max_steps:
                raise ValueError(
                    f"this trainable runs exactly {max_steps} steps but the schedule has "
                    f"total_steps={schedule.total_steps}: {text}"
                )
            if text in fail_schedules or schedule.kind in fail_schedules:
                raise RuntimeError(f"simulated failure of the trial for {text}")
            trial_seed = int(config.get("trial_seed", 0))
            steps, losses = world.trial_curve(config, trial_seed)
            if text in nan_schedules or schedule.kind in nan_schedules:
                losses = losses.copy()
                losses[len(losses) // 2 :] = np.nan
            names = world.checkpoint_namer(config, trial_seed)
            for result in world_reports(steps, losses, metric, config, names):
                tune.report(result)
                if sleep:
                    time.sleep(sleep)

        return simulated_trial

    def trial_curve(
        self, config: Mapping[str, Any], trial_seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the trial of ``config`` reports: :meth:`curve`, from a branch's resume step on
        when the config branches (the world's curves are a law's, so any branch point is one)."""
        steps, losses = self.curve(config["schedule"], trial_seed)
        branch = config.get(BRANCH_KEY)
        if branch:
            keep = steps >= int(branch["step"])
            steps, losses = steps[keep], losses[keep]
        return steps, losses

    def checkpoint_namer(self, config: Mapping[str, Any], trial_seed: int) -> Callable[[int], str]:
        """How the trial of ``config`` names its checkpoint after k updates."""
        return lambda k: f"simulated:{k}"


def _stable_hash(text: str) -> int:
    h = 1469598103934665603
    for ch in text.encode():
        h = ((h ^ ch) * 1099511628211) % (1 << 63)
    return h
