"""What a schedule search is given, checked and put in shape before it starts: the candidates
of a space, the pilots (each with its own trial config), a prior fit of an earlier run, and the
policy's arguments."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_lrlaw.curves import CurveError, LossCurve, load
from hf_lrlaw.files import read_json
from hf_lrlaw.fit_result import SCHEMA as FIT_SCHEMA
from hf_lrlaw.fit_result import Fit, FitError, fit_data
from hf_lrlaw.fitting import fit
from hf_lrlaw.laws import available_laws
from hf_lrlaw.schedules import Schedule, ScheduleError
from hf_lrlaw.threads import numpy_blas_single_thread
from tune_search.records import parse_schedules
from tune_search.space import ScheduleSpace, pilots_for

__all__ = ["candidates_of", "check_arguments", "load_prior_fit", "pilot_items"]

logger = logging.getLogger("tune_search")


def check_arguments(
    law: Any,
    top_k: int,
    level: float,
    pilot_steps: float | int | None,
    fit_kwargs: Mapping[str, Any],
) -> None:
    if law != "auto" and law not in available_laws():
        raise ValueError(f"unknown law {law!r}; use 'auto' or one of {available_laws()}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if pilot_steps is not None and (
        (isinstance(pilot_steps, float) and not 0 < pilot_steps <= 1)
        or (isinstance(pilot_steps, int) and pilot_steps < 1)
    ):
        raise ValueError(
            f"pilot_steps must be a fraction in (0, 1] or a step count >= 1, got {pilot_steps!r}"
        )
    if "law" in fit_kwargs or "law_options" in fit_kwargs:
        raise ValueError("give law= and law_options= to LRLawSearcher, not in fit_kwargs")


def candidates_of(
    space: ScheduleSpace | Sequence[Schedule | str], max_steps: int | None
) -> tuple[list[Schedule], str, Callable[[], list[Schedule]]]:
    """The candidates of a space (each once; longer than ``max_steps`` dropped with a warning),
    a one-line description of it, and its default pilots."""
    if isinstance(space, ScheduleSpace):
        description = space.describe()
        candidates = space.candidates()
        default_pilots = space.pilots
    else:
        candidates = parse_schedules(list(space), "space")
        description = f"{len(candidates)} candidate schedules"
        default_pilots = lambda: _default_pilots(candidates)  # noqa: E731
    if max_steps is not None:
        longer = [c for c in candidates if c.total_steps > max_steps]
        if longer:
            candidates = [c for c in candidates if c.total_steps <= max_steps]
            logger.warning(
                "LRLaw search: dropped %d candidate(s) with total_steps > max_steps=%d (the "
                "most a trial can run), e.g. %s",
                len(longer),
                max_steps,
                longer[0],
            )
        default_pilots = lambda: _default_pilots(candidates)  # noqa: E731
    candidates = list(dict.fromkeys(candidates))
    if not candidates:
        detail = ""
        if isinstance(space, ScheduleSpace) and space.skipped:
            detail = (
                f"; all {len(space.skipped)} combinations were invalid, e.g. "
                f"{space.skipped[0][0]}: {space.skipped[0][1]}"
            )
        if max_steps is not None:
            detail += f" with total_steps <= max_steps={max_steps}"
        raise ValueError(f"the schedule space holds no candidates{detail}")
    return candidates, description, default_pilots


def load_prior_fit(
    prior: Fit | str | os.PathLike[str], law: str, law_options: Mapping[str, Any]
) -> tuple[Fit, str, list[LossCurve]]:
    """An earlier run as the search's prior: ``(fit, where it came from, its curves)``. A path
    may name a saved Fit or the callback's ``record.json`` (its fit; a record written before its
    first fit is fitted on its curves)."""
    if isinstance(prior, Fit):
        try:
            prior.to_dict()  # the searcher's saved state holds it as a saved Fit
        except FitError as exc:
            raise ValueError(f"prior_fit: {exc}") from None
        return prior, "given Fit", []
    path = Path(prior)
    data = read_json(path, ValueError)
    try:
        curves = [c for c in load(path) if len(c)]
    except (CurveError, ValueError, KeyError, TypeError, OSError):
        curves = []
    try:
        if isinstance(data, dict) and (
            data.get("schema") == FIT_SCHEMA or isinstance(data.get("fit"), dict)
        ):
            found = Fit.from_dict(fit_data(data, path))
        elif curves:
            with numpy_blas_single_thread():
                found = fit(curves, law=law, law_options=dict(law_options) or None)
        else:
            raise FitError("neither a saved Fit nor a record with a fit or curves")
    except FitError as exc:
        raise ValueError(f"prior_fit: {path}: {exc}") from None
    return found, str(path), curves


def pilot_items(
    pilots: Sequence[Schedule | str | tuple[Schedule | str, Mapping[str, Any]]],
) -> tuple[list[Schedule], list[dict[str, Any]]]:
    """Pilot schedules and each one's extra trial config (``(schedule, {"seed": 1})`` runs a
    pilot again with another seed: the search then measures its run-to-run noise)."""
    schedules, extras = [], []
    for i, item in enumerate(pilots):
        extra: Mapping[str, Any] = {}
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[1], Mapping):
                raise ValueError(
                    f"pilots[{i}] must be a schedule or (schedule, config dict), got {item!r}"
                )
            item, extra = item
        if not isinstance(item, Schedule):
            try:
                item = Schedule.parse(item)
            except (ScheduleError, TypeError) as exc:
                raise ValueError(f"pilots[{i}] is not a schedule: {exc}") from None
        schedules.append(item)
        extras.append(dict(extra))
    return schedules, extras


def _default_pilots(candidates: Sequence[Schedule]) -> list[Schedule]:
    """The pilots of a plain candidate list: those of :meth:`ScheduleSpace.pilots` at its most
    common (peak LR, warmup) setting, its longest horizon and the peak LRs it holds."""
    counts: dict[tuple[float, int], int] = {}
    for s in candidates:
        counts[(s.peak_lr, s.warmup_steps)] = counts.get((s.peak_lr, s.warmup_steps), 0) + 1
    peak, warm = max(counts, key=lambda k: counts[k])
    total = max(s.total_steps for s in candidates)
    return pilots_for(sorted({s.peak_lr for s in candidates}), peak, total, min(warm, total - 1))
