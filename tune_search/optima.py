"""The law's own optimal schedules as extra candidates of a search (``optimized=True``).

After each refit the searcher asks :func:`hf_lrlaw.optimize` for the free-form schedule the law
predicts best at each horizon of the space (its warmup, its peak LR or, for a law that carries
the peak LR, the space's range of them, and no lower a final LR than the space's lowest; the
space's schedules at that peak are its comparison, :func:`hf_lrlaw.optimize`'s check that the
law is not exploited), and ranks it with the grid: when it leads, it runs for real like any
candidate. An optimum that idles at its floor LR (``Optimum.idle`` >= ``IDLE_SHARE``: the momentum
law's cliff-and-idle shape, which lost by 0.064 nats to the best grid schedule when trained on
the demo's model, bench/RESULTS.md) is not offered: a full run would be spent on an artefact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from hf_lrlaw.fit_result import Fit, FitError
from hf_lrlaw.laws import carries_peak_lr
from hf_lrlaw.optimum import IDLE_SHARE, MIN_RATIO, optimize, shape_text
from hf_lrlaw.schedules import Schedule
from hf_lrlaw.schedules.labels import schedule_label

__all__ = ["MAX_OPTIMA", "LawOptima", "law_optima"]

MAX_OPTIMA = 4  # horizons (warmup settings) of a space that get an optimum, the most common first


def law_optima(fit: Fit, candidates: Sequence[Schedule]) -> tuple[list[Schedule], list[str]]:
    """The law's optimal schedule for each (horizon, warmup) group of ``candidates`` (the
    :data:`MAX_OPTIMA` largest), and a note per group it could not optimise."""
    groups: dict[tuple, list[Schedule]] = defaultdict(list)
    for c in candidates:
        if c.kind == "free_form" or c.total_steps - c.warmup_steps < 3:
            continue
        groups[(c.total_steps, c.warmup_steps, c.warmup_shape, c.warmup_start_ratio)].append(c)
    found, notes = [], []
    for (total, warmup, shape, start), members in sorted(
        groups.items(), key=lambda kv: -len(kv[1])
    )[:MAX_OPTIMA]:
        peaks = [m.peak_lr for m in members]
        high = max(peaks)
        peak = (min(peaks), high) if carries_peak_lr(fit.law) and min(peaks) < high else high
        top = [m for m in members if m.peak_lr == high]
        lowest = min(float(m.lrs()[-1]) for m in top)
        try:
            best = optimize(
                fit,
                total_steps=total,
                peak_lr=peak,
                warmup_steps=warmup,
                warmup_shape=shape,
                warmup_start_ratio=start,
                final_lr=lowest if lowest > MIN_RATIO * high else None,
                candidates=top,
            )
        except (FitError, ValueError, FloatingPointError) as exc:
            notes.append(f"no law optimum for {total} steps (warmup {warmup}): {exc}")
            continue
        if best.idle >= IDLE_SHARE:
            notes.append(
                f"the {fit.law} law's optimum for {total} steps is not offered: it spends "
                f"{best.idle:.0%} of the run after warmup at its floor LR, training the law "
                "credits and real runs do not show (fit law='multipower' for optima)"
            )
            continue
        found.append(best.schedule)
    return found, notes


class LawOptima:
    """The optima a search ranks: recomputed with every fit until one of them has been tried,
    then that one (the next fit's optimum would be a near-duplicate of a run already made)."""

    def __init__(self, texts: Sequence[str] = ()) -> None:
        self.texts: list[str] = list(texts)

    def current(
        self, fit: Fit, candidates: Sequence[Schedule], tried: set[str], note
    ) -> list[Schedule]:
        ran = [t for t in self.texts if t in tried]
        if ran:
            self.texts = ran
            return [Schedule.parse(t) for t in ran]
        found, notes = law_optima(fit, candidates)
        for n in notes:
            note(n)
        texts = [str(s) for s in found]
        if texts != self.texts:
            for s in found:
                note(f"the {fit.law} law's optimum joins the candidates: {schedule_label(s)}: "
                     f"{shape_text(s)}")  # fmt: skip
        self.texts = texts
        return found
