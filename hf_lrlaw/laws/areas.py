"""Areas under a learning-rate curve, the features every law is built from.

All functions take the per-step LR array (index = optimizer update, from 0) and work in O(T)
with cumulative sums and a first-order linear filter; none loops over steps in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter

TOP_RTOL = 1e-6  # relative distance from the top LR that still counts as the top

__all__ = [
    "warmup_end",
    "with_warmup_at_peak",
    "lr_area",
    "momentum_area",
    "lr_drops",
    "DropBins",
    "bin_drops",
    "bin_final_drops",
    "bin_final_changes",
    "lr_floor",
]


def warmup_end(lrs: np.ndarray) -> int:
    """Number of leading warmup steps: the rise before the LR first reaches its top.

    The warmup is the prefix over which the LR is non-decreasing and below the LR it first
    plateaus or peaks at; for a run with no warmup it is 0. LRs within ``TOP_RTOL`` of the top
    count as at the top: interpolated or logged LRs wobble in the last bits along a plateau.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    if len(lrs) < 2:
        return 0
    falls = np.flatnonzero(np.diff(lrs) < 0)
    rise_end = int(falls[0]) + 1 if len(falls) else len(lrs)  # first index after the rise
    top = lrs[:rise_end].max()
    reached = np.flatnonzero(lrs[:rise_end] >= top * (1.0 - TOP_RTOL))
    return int(reached[0])


def with_warmup_at_peak(lrs: np.ndarray) -> np.ndarray:
    """The LRs with the warmup steps set to the LR the warmup reaches (Tissue et al.'s choice)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    w = warmup_end(lrs)
    if w == 0:
        return lrs
    out = lrs.copy()
    out[:w] = lrs[w]
    return out


def lr_area(lrs: np.ndarray) -> np.ndarray:
    """S1 at every step: ``cumsum(lrs)``, the area under the LR curve up to and including it."""
    return np.cumsum(np.asarray(lrs, dtype=np.float64), axis=-1)


def momentum_area(lrs: np.ndarray, lam: float = 0.999) -> np.ndarray:
    """S2 of Tissue et al. at every step, the annealing area with momentum.

    ``m_i = lam * m_{i-1} + (lrs[i-1] - lrs[i])`` (``m_0 = 0``) and ``S2 = cumsum(m)``. Works on
    the last axis, so a 2-D array of many schedules is filtered in one call.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    drops = np.zeros_like(lrs)
    drops[..., 1:] = lrs[..., :-1] - lrs[..., 1:]
    m = lfilter([1.0], [1.0, -lam], drops, axis=-1)
    return np.cumsum(m, axis=-1)


def momentum_area_final(lrs: np.ndarray, lam: float = 0.999) -> np.ndarray:
    """S2 at the last step only, as one matrix-vector product (for ranking many schedules).

    ``S2(T-1) = sum_i d_i (1 - lam**(T-i)) / (1 - lam)`` with ``d_i = lrs[i-1] - lrs[i]``.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    n = lrs.shape[-1]
    drops = np.zeros_like(lrs)
    drops[..., 1:] = lrs[..., :-1] - lrs[..., 1:]
    weights = (1.0 - lam ** (n - np.arange(n))) / (1.0 - lam)
    return drops @ weights


def lr_drops(lrs: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``k >= max(start, 1)`` where the LR changes, and the drop ``lrs[k-1] - lrs[k]`` there."""
    lrs = np.asarray(lrs, dtype=np.float64)
    d = np.zeros_like(lrs)
    d[1:] = lrs[:-1] - lrs[1:]
    d[: max(start, 1)] = 0.0
    ks = np.flatnonzero(d)
    return ks, d[ks]


class DropBins:
    """LR changes grouped into bins, each summarised by its total drop and drop-weighted means.

    Attributes (one entry per bin): ``drop`` (sum of drops), ``area_before`` (drop-weighted mean
    of ``cumsum(lrs)[k-1]``), ``log_lr`` (drop-weighted mean of ``log lrs[k]``), ``last`` (the last
    step in the bin; the bin contributes to the loss at steps >= ``last``).
    """

    __slots__ = ("drop", "area_before", "log_lr", "last", "exact")

    def __init__(self, drop, area_before, log_lr, last, exact):
        self.drop = drop
        self.area_before = area_before
        self.log_lr = log_lr
        self.last = last
        self.exact = exact

    def __len__(self) -> int:
        return len(self.drop)


def _bin_starts(
    ks: np.ndarray,
    dist: np.ndarray,
    sign: np.ndarray,
    group: np.ndarray,
    log_band: np.ndarray,
    max_len: int,
) -> np.ndarray:
    """Indices where a new bin starts among changes sorted by (group, k).

    ``dist`` is the distance from each change to the evaluated step it serves; bins grow
    geometrically with it (1, 1, 2, 2, 4, 4, ... steps) up to ``max_len``, and the LR varies by
    at most 5% within a bin (bands of 5% in ``log_band``, the log LR or its log ratio to a top).
    """
    level, chunk = _distance_fields(dist, max_len)
    lr_band = np.floor(log_band / np.log(1.05)).astype(np.int64)
    return _key_starts(group, (np.minimum(level, 62), chunk, sign, ks // max_len, lr_band))


def _key_starts(group: np.ndarray, keys: Sequence[np.ndarray]) -> np.ndarray:
    """Indices where ``group`` or any of ``keys`` differs from the previous element's (0 first)."""
    new = np.ones(len(group), dtype=bool)
    if len(group) > 1:
        change = group[1:] != group[:-1]
        for key in keys:
            change |= key[1:] != key[:-1]
        new[1:] = change
    return np.flatnonzero(new)


def _distance_fields(dist: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The bin fields that depend on a change's distance to the step it serves: its dyadic
    level and its chunk within the level (chunks of ``max_len`` beyond it)."""
    level = np.floor(np.log2(dist + 1.0)).astype(np.int64)
    chunk = np.where(level <= np.log2(max_len), dist >> level, (dist // max_len) << 8)
    return level, chunk


def _final_bin_starts(
    ks: np.ndarray, t: int, sign: np.ndarray, group: np.ndarray, log_band: np.ndarray, max_len: int
) -> np.ndarray:
    """:func:`_bin_starts` for changes that all serve the last step ``t - 1``: the fields that
    depend on the step alone (level, chunk, ``k // max_len``) each cut the steps into runs, so
    one number per run of equal fields, made once over ``0..t-1``, stands for all three."""
    steps = np.arange(t, dtype=np.int64)
    level, chunk = _distance_fields(t - 1 - steps, max_len)
    cut = np.zeros(t, dtype=bool)
    for key in (np.minimum(level, 62), chunk, steps // max_len):
        cut[1:] |= key[1:] != key[:-1]
    run = np.cumsum(cut)[ks]
    lr_band = np.floor(log_band / np.log(1.05))  # compared, never used as an index
    return _key_starts(group, (run, sign, lr_band))


def _summarise(d, area, log_eta, ks, starts) -> tuple[np.ndarray, ...]:
    drop = np.add.reduceat(d, starts)
    ok = drop != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        area_b = np.where(ok, np.add.reduceat(d * area, starts) / drop, 0.0)
        log_b = np.where(ok, np.add.reduceat(d * log_eta, starts) / drop, 0.0)
    last = ks[np.r_[starts[1:] - 1, len(ks) - 1]]
    return drop[ok], area_b[ok], log_b[ok], last[ok].astype(np.int64), ok


def bin_drops(
    lrs: np.ndarray,
    eval_steps: np.ndarray,
    start: int = 0,
    exact: bool = False,
    max_len: int = 256,
) -> DropBins:
    """Group the LR changes of one run for the multi-power loss-drop sum at ``eval_steps``.

    Bins never straddle an evaluation step and shrink geometrically towards the next one (sizes
    ..., 4, 2, 1 steps), where the summand varies fastest; no bin is longer than ``max_len``
    steps, and changes of opposite sign never share one. With ``exact=True`` every change is
    its own bin.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    ks, d = lr_drops(lrs, start)
    cs = np.cumsum(lrs)
    log_eta = np.log(np.maximum(lrs[ks], lr_floor(lrs)))
    area = cs[ks - 1]
    if exact or len(ks) == 0:
        return DropBins(d, area, log_eta, ks.astype(np.int64), True)
    eval_steps = np.unique(np.asarray(eval_steps, dtype=np.int64))
    gap = np.searchsorted(eval_steps, ks, side="left")
    has_next = gap < len(eval_steps)
    dist = np.where(has_next, eval_steps[np.minimum(gap, len(eval_steps) - 1)] - ks, 1 << 40)
    starts = _bin_starts(ks, dist, (d > 0).astype(np.int64), gap, log_eta, max_len)
    drop, area_b, log_b, last, _ = _summarise(d, area, log_eta, ks, starts)
    return DropBins(drop, area_b, log_b, last, False)


def bin_final_drops(
    lrs: np.ndarray, starts_at: np.ndarray, max_len: int = 256, exact: bool = False
) -> tuple[np.ndarray, DropBins]:
    """:func:`bin_drops` for the last step of every row of a 2-D LR array, in one pass.

    ``starts_at[i]`` is the first step whose change counts for row ``i``. Returns the row of
    every bin and the bins (``area_before`` is relative to the row's own cumulative sum). Each
    row is binned on its own: the 5% LR bands and the floor of a zero LR are relative to its
    top LR, so a row's bins do not depend on the other rows, and scaling a row's LRs scales its
    bins (drop and area) and shifts their log LR.
    """
    lrs = np.atleast_2d(np.asarray(lrs, dtype=np.float64))
    t = lrs.shape[1]
    d = np.zeros_like(lrs)
    d[:, 1:] = lrs[:, :-1] - lrs[:, 1:]
    d[np.arange(t)[None, :] < np.maximum(starts_at, 1)[:, None]] = 0.0
    rows, ks = np.nonzero(d)
    if len(ks) == 0:
        return bin_final_changes(rows, ks, np.zeros(0), np.zeros(0), np.zeros(0), t, max_len)
    cs = np.cumsum(lrs, axis=1)
    dk = d[rows, ks]
    top = np.maximum(lrs.max(axis=1), 1e-300)
    log_eta = np.log(np.maximum(lrs[rows, ks], 1e-12 * top[rows]))
    return bin_final_changes(
        rows, ks, dk, cs[rows, ks - 1], log_eta, t, max_len, exact, np.log(top)
    )


def bin_final_changes(
    rows: np.ndarray,
    ks: np.ndarray,
    d: np.ndarray,
    area: np.ndarray,
    log_eta: np.ndarray,
    t: int,
    max_len: int = 256,
    exact: bool = False,
    log_top: np.ndarray | None = None,
) -> tuple[np.ndarray, DropBins]:
    """The bins of :func:`bin_final_drops` from the LR changes themselves, sorted by (row, step):
    their row, step ``k``, drop ``lrs[k-1] - lrs[k]``, ``cumsum(lrs)[k-1]`` and log LR, for
    callers that know where a schedule changes without its per-step array. ``log_top``: each
    row's log top LR, which the 5% LR bands are relative to (absolute without it). ``exact``:
    one bin per change."""
    if len(ks) == 0:
        empty = np.zeros(0)
        return rows, DropBins(empty, empty, empty, ks, False)
    if exact:
        return rows, DropBins(d, area, log_eta, ks.astype(np.int64), True)
    band = log_eta if log_top is None else log_eta - log_top[rows]
    starts = _final_bin_starts(ks, t, d > 0, rows, band, max_len)
    drop, area_b, log_b, last, ok = _summarise(d, area, log_eta, ks, starts)
    return rows[starts][ok], DropBins(drop, area_b, log_b, last, False)


def lr_floor(lrs: np.ndarray) -> float:
    """A tiny positive LR standing in for an LR of zero where a law takes its logarithm."""
    return 1e-12 * max(float(np.max(lrs)), 1e-300)


def drop_pairs(
    lrs: np.ndarray,
    steps: np.ndarray,
    start: int = 0,
    exact: bool = False,
    ratio: float = 2.0,
    band: float = 1.25,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The (step, bin) pairs of the multi-power loss-drop sum at ``steps``, multi-level.

    The fine bins of :func:`bin_drops` are the leaves of a dyadic hierarchy over the steps: a
    cell of level l holds the leaves whose last step falls in one aligned block of 2**l steps,
    one cell per sign and 25% LR band (``band``) there, summarised by its total drop and its
    drop-weighted area and log LR. Each step covers the steps before it with aligned blocks
    that grow with the distance, none nearer than ``ratio`` times its own size, so a step
    meets O(ratio * log T) cells: distant changes need no fine resolution. The cost is
    O(steps * log T), not O(steps**2). Returns, per pair, the index of its step in ``steps``,
    the LR area from the cell to the step, the cell's drop and log LR.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    cs = np.cumsum(lrs)
    fine = bin_drops(lrs, steps, start=start, exact=exact)
    if exact or len(fine) == 0:
        return _pairs_with(fine, np.arange(len(fine)), steps, cs, fine.last)
    levels = max(1, int(np.ceil(np.log2(max(len(lrs), 2)))) + 1)
    keys, drop, area, log_lr = _cells(fine, band, levels)
    eval_idx, block_key = _blocks(steps, ratio, levels)
    lo = np.searchsorted(keys, block_key, side="left")
    count = np.searchsorted(keys, block_key, side="right") - lo
    pair_step = np.repeat(eval_idx, count)
    cell = np.repeat(lo, count) + (
        np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    )
    # rounding of the cumulative sums can leave an area of a change at the step itself < 0
    return pair_step, np.maximum(cs[steps][pair_step] - area[cell], 0.0), drop[cell], log_lr[cell]


def _cells(
    fine: DropBins, band: float, levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The leaves summarised at every level: ``(key, drop, area_before, log_lr)`` per cell,
    sorted by ``key = level << 40 | block``, one cell per (block, sign, LR band)."""
    sign = (fine.drop > 0).astype(np.int64)
    lr_band = np.floor(fine.log_lr / np.log(band)).astype(np.int64)
    weighted_area = fine.drop * fine.area_before
    weighted_log = fine.drop * fine.log_lr
    out: list[list[np.ndarray]] = [[], [], [], []]
    for level in range(levels):
        block = fine.last >> level
        order = np.lexsort((lr_band, sign, block))
        b, sg, bd = block[order], sign[order], lr_band[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (b[1:] != b[:-1]) | (sg[1:] != sg[:-1]) | (bd[1:] != bd[:-1])
        first = np.flatnonzero(new)
        d = np.add.reduceat(fine.drop[order], first)
        keep = d != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.add.reduceat(weighted_area[order], first) / d
            g = np.add.reduceat(weighted_log[order], first) / d
        out[0].append((np.int64(level) << 40) | b[first][keep])
        out[1].append(d[keep])
        out[2].append(a[keep])
        out[3].append(g[keep])
    return tuple(np.concatenate(parts) for parts in out)  # type: ignore[return-value]


def _blocks(steps: np.ndarray, ratio: float, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """For every step t: the aligned dyadic blocks that tile steps 0..t from the right, each
    block of size 2**l at least ``ratio * 2**l`` steps before t (blocks of one step excepted),
    as ``(index of t, level << 40 | block)`` pairs."""
    t = steps.astype(np.int64)
    p = t + 1  # the exclusive right end of what is left to cover
    idx = np.arange(len(t))
    out_idx, out_key = [], []
    while len(p):
        distance = t - p + 1
        far = np.floor(np.log2(np.maximum(distance / ratio, 1.0))).astype(np.int64)
        align = _trailing_zeros(p)
        level = np.minimum(np.minimum(far, align), levels - 1)
        size = np.int64(1) << level
        out_idx.append(idx)
        out_key.append((level << 40) | ((p - size) >> level))
        p = p - size
        left = p > 0
        t, p, idx = t[left], p[left], idx[left]
    if not out_idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_idx), np.concatenate(out_key)


def _trailing_zeros(n: np.ndarray) -> np.ndarray:
    """The number of trailing zero bits of each positive integer."""
    low = n & -n
    return np.round(np.log2(low)).astype(np.int64)


def _pairs_with(bins: DropBins, idx, steps, cs, last):
    n_before = np.searchsorted(last, steps, side="right")
    pair_step = np.repeat(np.arange(len(steps)), n_before)
    pair_bin = np.arange(len(pair_step)) - np.repeat(np.cumsum(n_before) - n_before, n_before)
    return (
        pair_step,
        np.maximum(cs[steps][pair_step] - bins.area_before[pair_bin], 0.0),  # no rounding < 0
        bins.drop[pair_bin],
        bins.log_lr[pair_bin],
    )
