"""Per-step LR arrays of the data's schedule families (checked against the bundled curves)."""

import numpy as np


def wsd(
    peak: float, total: int, frac: float, shape: str = "linear", warmup: int = 300
) -> np.ndarray:
    s = np.arange(total, dtype=np.float64)
    lr = np.full(total, peak)
    lr[:warmup] = peak * (0.01 + 0.99 * s[:warmup] / warmup)
    d = int(frac * total)
    if d > 0:
        j = np.arange(d, dtype=np.float64)
        prog = j / d
        lr[total - d :] = peak * ((1.0 - prog) if shape == "linear" else (1.0 - np.sqrt(prog)))
    return lr


def cosine(peak: float, total: int, final_ratio: float = 0.1, warmup: int = 300) -> np.ndarray:
    s = np.arange(total, dtype=np.float64)
    lr = np.empty(total)
    init = peak / 100
    lr[:warmup] = peak + (init - peak) * (1 + np.cos(np.pi * s[:warmup] / (warmup - 1))) / 2
    t = (s[warmup:] - (warmup - 1)) / (total - 1 - (warmup - 1))
    lo = peak * final_ratio
    lr[warmup:] = lo + (peak - lo) * (1 + np.cos(np.pi * t)) / 2
    return lr
