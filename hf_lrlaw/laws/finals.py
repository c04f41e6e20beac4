"""What the laws need at the last step of many schedules, from their pieces, not their per-step LRs.

The final loss of both laws is a sum over the LR curve: S1 (its area), the momentum law's S2
(``G(T) * lr_0 - sum_j lam**(T-1-j) * lr_j``, see :func:`final_sums`) and the multi-power
law's loss drops (one term per step where the LR changes). Over a flat piece these are closed
forms; over a shaped piece they are sums of a template shared by every candidate that has it,
computed once per scoring call. Only pieces whose multipliers are explicit (a piecewise-linear
optimum, an exponential decay) and the multi-power law's changes cost work per step, and only
over the steps that change. The results equal the per-step computation (``prepare_final`` of
``Schedule.lrs()``) to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from hf_lrlaw.laws.areas import TOP_RTOL, DropBins, bin_final_changes
from hf_lrlaw.limits import BLOCK_FLOATS
from hf_lrlaw.schedules.pieces import Piece, SchedulePieces, Templates, schedule_pieces
from hf_lrlaw.schedules.schedule import Schedule

__all__ = [
    "FinalSums",
    "changes_work",
    "final_changes",
    "final_sums",
    "piece_preps",
    "sums_work",
    "warmup_end",
]


class FinalSums(NamedTuple):
    """Per schedule: S1 as the law counts the warmup, S2 (momentum; None without ``lam``),
    the plain area ``sum(lrs)``, and the annealing signals: ``(top - last) / top`` and the
    largest drop below the running maximum relative to the top."""

    s1: np.ndarray
    s2: np.ndarray | None
    total: np.ndarray
    anneal_last: np.ndarray
    anneal_max: np.ndarray


def warmup_end(sp: SchedulePieces, tpl: Templates) -> int:
    """:func:`~hf_lrlaw.laws.areas.warmup_end` of the schedule: its first step within
    ``TOP_RTOL`` of the peak (the warmup's length unless the ramp gets that close before)."""
    ramp = sp.ramp
    if ramp is None:
        return 0
    end = tpl.cached(
        ramp.key, ("end", ramp.scale), lambda f: _first_top(f * ramp.scale + ramp.offset)
    )
    return int(end)


def _first_top(rel: np.ndarray) -> int:
    reached = np.flatnonzero(rel >= 1.0 - TOP_RTOL)
    return int(reached[0]) if len(reached) else len(rel)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a @ b`` without BLAS: its threads cost milliseconds per call on long vectors here."""
    return float(np.multiply(a, b).sum())


def _geometric(lam: float, n: int) -> float:
    """``sum_{i<n} lam**i``."""
    return n if lam == 1.0 else (1.0 - lam**n) / (1.0 - lam)


def _stats(p: Piece, tpl: Templates, lam: float | None) -> tuple[float, float, float, float, float]:
    """Multipliers of one piece: their sum, ``sum_i lam**(L-1-i) * rel_i`` (0 without ``lam``),
    the last, the smallest and the largest; once per distinct piece of a call."""
    if p.values is not None:
        return _piece_stats(p, tpl, lam)
    if p.key is None:  # flat: cheaper to compute than to look up
        n, r = p.stop - p.start, p.rel
        return r * n, r * _geometric(lam, n) if lam is not None else 0.0, r, r, r
    # a tuple of plain values hashes several times faster than the frozen dataclass
    key = (p.key, p.scale, p.offset, p.stop - p.start, p.geometric, lam)
    return tpl.memo(key, lambda: _piece_stats(p, tpl, lam))


def sums_work(sp: SchedulePieces) -> int:
    """Steps of per-schedule work in :func:`final_sums`: pieces with explicit multipliers and
    exponential decays without a closed form (shaped pieces share their template's sums)."""
    return sum(
        p.stop - p.start
        for p in sp.pieces
        if p.values is not None or (p.geometric and not 0.0 < p.offset < 1.0)
    )


def changes_work(sp: SchedulePieces) -> int:
    """Steps of per-schedule work in :func:`final_changes`: every step that is not flat."""
    return sp.warmup + sum(p.stop - p.start for p in sp.pieces if p.rel is None)


def _piece_stats(p: Piece, tpl: Templates, lam: float | None) -> tuple[float, ...]:
    n = p.length
    if p.values is None and p.key is None:
        return (
            p.rel * n,
            p.rel * _geometric(lam, n) if lam is not None else 0.0,
            p.rel,
            p.rel,
            p.rel,
        )
    if p.values is None and not p.geometric:  # template * scale + offset: the template's sums
        lam_sum = 0.0
        if lam is not None:
            lam_f = tpl.cached(p.key, ("lam", lam), lambda a: _dot(a, tpl.powers(lam, len(a))))
            lam_sum = p.scale * lam_f + p.offset * _geometric(lam, n)
        first, last = tpl.rel_at(p, 0), tpl.rel_at(p, n - 1)  # every template is monotone
        total = p.scale * tpl.cached(p.key, "sum", np.sum) + p.offset * n
        return total, lam_sum, last, min(first, last), max(first, last)
    if p.geometric and p.key == ("progress", n) and 0.0 < p.offset < 1.0:
        closed = _geometric_stats(p.offset, n, lam)
        if closed is not None:
            return closed
    rel = tpl.rel(p)
    lam_sum = _dot(rel, tpl.powers(lam, n)) if lam is not None else 0.0
    return float(rel.sum()), lam_sum, float(rel[-1]), float(rel.min()), float(rel.max())


def _geometric_stats(r: float, n: int, lam: float | None) -> tuple[float, ...] | None:
    """The stats of an exponential decay ``r**(i/n)``, ``i < n``, in closed form: a geometric
    series in ``q = r**(1/n)`` (None where ``q`` is too close to ``lam`` for it)."""
    q = r ** (1.0 / n)
    q_n = r  # q**n
    total = (1.0 - q_n) / (1.0 - q)
    lam_sum = 0.0
    if lam is not None:
        if abs(lam - q) < 1e-6:
            return None
        lam_sum = (lam**n - q_n) / (lam - q)  # sum_i lam**(n-1-i) * q**i
    last = q ** (n - 1)
    return total, lam_sum, last, last, 1.0


def final_sums(
    block: Sequence[SchedulePieces], tpl: Templates, lam: float | None, warmup: str
) -> FinalSums:
    """S1 (and S2 with ``lam``) at the last step of schedules of one length, as
    :func:`~hf_lrlaw.laws._common.final_areas` computes them from per-step LRs.

    ``warmup``: "peak" counts the warmup steps at the LR the warmup reaches in S1 and S2;
    "actual" counts their real LRs in S1 and the peak in S2; "include" the real LRs in both.
    ``S2 = lrs' @ v`` with the momentum weights ``v`` is ``G(T) * lr'_0 - sum_j lam**(T-1-j) *
    lr'_j`` (``G(n) = sum_{i<n} lam**i``): a sum over pieces, each weighted by
    ``lam**(T - stop)``."""
    n = len(block)
    s1, s2, total = np.empty(n), np.empty(n), np.empty(n)
    last, low, top = np.empty(n), np.empty(n), np.empty(n)
    for i, sp in enumerate(block):
        t = sp.total
        area = lam_area = 0.0  # the pieces after the warmup, in multipliers of the peak
        lo, hi = np.inf, 0.0
        for p in sp.pieces:
            a, b, last[i], p_lo, p_hi = _stats(p, tpl, lam)
            area += a
            lam_area += lam ** (t - p.stop) * b if lam is not None else 0.0
            lo, hi = min(lo, p_lo), max(hi, p_hi)
        w_end = warmup_end(sp, tpl)
        ramp = sp.ramp
        real = (0.0, 0.0) if ramp is None else _stats(ramp, tpl, lam)[:2]
        if ramp is not None:
            hi = max(hi, _stats(ramp, tpl, None)[4])
        at_end = _rel_at(sp, tpl, w_end)  # the LR the warmup reaches
        tail = _ramp_tail(sp, tpl, w_end, lam)  # ramp steps from w_end on (usually none)
        total[i] = sp.peak * (real[0] + area)
        s1[i] = sp.peak * (at_end * w_end + tail[0] + area) if warmup == "peak" else total[i]
        if lam is not None:
            if warmup == "include" or w_end == 0:
                lr0 = _rel_at(sp, tpl, 0)
                weighted = lam ** (t - sp.warmup) * real[1] if ramp is not None else 0.0
            else:
                lr0 = at_end
                weighted = at_end * lam ** (t - w_end) * _geometric(lam, w_end) + tail[1]
            s2[i] = sp.peak * (_geometric(lam, t) * lr0 - weighted - lam_area)
        low[i], top[i] = lo, hi
    top = np.maximum(top, 1e-300)
    return FinalSums(
        s1, s2 if lam is not None else None, total, (top - last) / top, _anneal_max(top, low)
    )


def _anneal_max(top: Any, low: Any) -> Any:
    """The largest drop below the top, relative to it (multipliers of the peak; the ramp's
    rise does not count)."""
    top = np.maximum(top, 1e-300)
    return (top - low) / top


def _rel_at(sp: SchedulePieces, tpl: Templates, step: int) -> float:
    """The multiplier of the peak at ``step``."""
    for p in (sp.ramp, *sp.pieces) if sp.ramp is not None else sp.pieces:
        if p.start <= step < p.stop:
            return tpl.rel_at(p, step - p.start)
    raise IndexError(f"step {step} is not in a schedule of {sp.total} steps")


def _ramp_tail(
    sp: SchedulePieces, tpl: Templates, w_end: int, lam: float | None
) -> tuple[float, float]:
    """Sum and ``lam**(T-1-j)``-weighted sum of the ramp's multipliers from ``w_end`` on (the
    ramp steps already within TOP_RTOL of the peak: none unless the warmup is very long)."""
    if sp.ramp is None or w_end >= sp.warmup:
        return 0.0, 0.0
    rel = tpl.rel(sp.ramp)[w_end:]
    weighted = 0.0
    if lam is not None:
        weighted = lam ** (sp.total - sp.warmup) * _dot(rel, tpl.powers(lam, len(rel)))
    return float(rel.sum()), weighted


def final_changes(
    block: Sequence[SchedulePieces],
    tpl: Templates,
    exclude_warmup: bool,
    max_len: int = 256,
    exact: bool = False,
) -> tuple[np.ndarray, DropBins, np.ndarray, np.ndarray]:
    """The multi-power law's binned LR changes at the last step of schedules of one length, as
    :func:`~hf_lrlaw.laws.areas.bin_final_drops` makes them from per-step LRs, each schedule's
    area ``sum(lrs)`` and its ``anneal_max`` (as :func:`final_sums`). Work per step only where
    the LR changes."""
    rows, ks, ds, areas, lrs_at = [], [], [], [], []
    n = len(block)
    total, top, anneal = np.empty(n), np.empty(n), np.empty(n)
    for i, sp in enumerate(block):
        start_at = max(warmup_end(sp, tpl) + 1 if exclude_warmup else 0, 1)
        prev, area = None, 0.0
        parts = [sp.ramp, *sp.pieces] if sp.ramp is not None else list(sp.pieces)
        stats = [_stats(p, tpl, None) for p in parts]
        hi = max(st[4] for st in stats)
        top[i] = max(sp.peak * hi, 1e-300)
        anneal[i] = _anneal_max(hi, min(st[3] for st in stats[sp.ramp is not None :]))
        for p in parts:
            if p.values is None and p.key is None:
                lr = sp.peak * p.rel
                if prev is not None and prev != lr and p.start >= start_at:
                    rows.append(np.array([i]))
                    ks.append(np.array([p.start]))
                    ds.append(np.array([prev - lr]))
                    areas.append(np.array([area]))
                    lrs_at.append(np.array([lr]))
                area += lr * p.length
                prev = lr
                continue
            lr = sp.peak * tpl.rel(p)
            d = np.empty(p.length)
            d[1:] = lr[:-1] - lr[1:]
            d[0] = prev - lr[0] if prev is not None else 0.0
            cs = np.cumsum(lr)
            before = np.empty(p.length)
            before[0] = area
            before[1:] = area + cs[:-1]
            k = np.arange(p.start, p.stop)
            keep = (d != 0) & (k >= start_at)
            if keep.all():  # a strictly monotone piece past the warmup: every step changes
                ks.append(k)
                ds.append(d)
                areas.append(before)
                lrs_at.append(lr)
            else:
                ks.append(k[keep])
                ds.append(d[keep])
                areas.append(before[keep])
                lrs_at.append(lr[keep])
            rows.append(np.full(len(ks[-1]), i))
            area += cs[-1]
            prev = lr[-1]
        total[i] = area
    if not ks:
        empty = np.zeros(0)
        rows_b, bins = bin_final_changes(np.zeros(0, np.int64), np.zeros(0, np.int64), empty,
                                         empty, empty, block[0].total, max_len)  # fmt: skip
        return rows_b, bins, total, anneal
    row = np.concatenate(rows).astype(np.int64, copy=False)
    log_eta = np.log(np.maximum(np.concatenate(lrs_at), 1e-12 * top[row]))  # as lr_floor per row
    rows_b, bins = bin_final_changes(
        row,
        np.concatenate(ks).astype(np.int64, copy=False),
        np.concatenate(ds),
        np.concatenate(areas),
        log_eta,
        block[0].total,
        max_len,
        exact,
        np.log(top),
    )
    return rows_b, bins, total, anneal


def piece_preps(
    law: Any, schedules: Sequence[Any]
) -> tuple[Iterator[tuple[np.ndarray, Any, int]], list[int]]:
    """The law's ``prepare_final`` of the schedules that have pieces, as ``(indices, prep,
    length)`` blocks made when iterated, and the indices of the rest (no pieces, or a law
    without ``prepare_final_pieces``). A shape is prepared once, at a unit peak LR, where the
    law can rescale it (``scale_final_prep``): a grid of peak LRs x shapes costs its shapes."""
    fast = getattr(law, "prepare_final_pieces", None)
    rescale = getattr(law, "scale_final_prep", None)
    shapes: dict[Any, int] = {}  # a shape's key -> its index in ``unique`` (-1: no pieces)
    unique: list[SchedulePieces] = []
    members: list[list[tuple[int, float]]] = []  # per shape: (schedule index, peak LR)
    rest: list[int] = []
    for i, s in enumerate(schedules):
        if fast is None or not isinstance(s, Schedule):
            rest.append(i)
            continue
        key = _shape_key(s) if rescale is not None else i
        u = shapes.get(key)
        if u is None:
            sp = schedule_pieces(s, None if rescale is None else 1.0)
            u = shapes[key] = -1 if sp is None else len(unique)
            if sp is not None:
                unique.append(sp)
                members.append([])
        if u < 0:
            rest.append(i)
        else:
            members[u].append((i, s.peak_lr))

    def blocks() -> Iterator[tuple[np.ndarray, Any, int]]:
        by_len: dict[int, list[tuple[int, SchedulePieces]]] = {}
        for u, sp in enumerate(unique):
            by_len.setdefault(sp.total, []).append((u, sp))
        tpl = Templates()
        for steps, items in by_len.items():
            for chunk in _chunks(items, law.final_pieces_work):
                prep = fast([sp for _, sp in chunk], tpl)
                pairs = [(k, i, p) for k, (u, _) in enumerate(chunk) for i, p in members[u]]
                idx = np.array([i for _, i, _ in pairs])
                if rescale is not None:
                    rows = np.array([k for k, _, _ in pairs])
                    prep = rescale(prep, rows, np.array([p for _, _, p in pairs]))
                yield idx, prep, steps

    return blocks(), rest


def _shape_key(s: Schedule) -> Any:
    """What a schedule's multipliers of its peak LR depend on: all but the peak."""
    key = (s.kind, s.total_steps, s.warmup_steps, s.warmup_shape, s.warmup_start_ratio)
    key += (s.param_items,)
    try:
        hash(key)
    except TypeError:  # a parameter that does not hash: the schedule is its own shape
        return ("schedule", id(s))
    return key


def _chunks(
    items: list[tuple[int, SchedulePieces]],
    work: Callable[[SchedulePieces], int],
    cap: int = 4096,
) -> Iterator[list[tuple[int, SchedulePieces]]]:
    """Blocks of at most ``cap`` shapes and BLOCK_FLOATS / 4 steps of per-shape work
    (``work``: the law's count for one schedule's pieces)."""
    budget = max(1, BLOCK_FLOATS // 4)
    chunk: list[tuple[int, SchedulePieces]] = []
    used = 0
    for item in items:
        cost = work(item[1])
        if chunk and (len(chunk) >= cap or used + cost > budget):
            yield chunk
            chunk, used = [], 0
        chunk.append(item)
        used += cost
    if chunk:
        yield chunk
