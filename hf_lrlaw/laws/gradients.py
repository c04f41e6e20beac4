"""The final loss of one run and its gradient with respect to every step's LR, in O(steps).

Both laws are sums over the LR sequence, so the derivative of the last step's loss by each LR
has a closed form; :func:`hf_lrlaw.optimize` follows it to the law's optimal schedule. The loss
is the exact sum (no binning of LR changes), the quantity the gradient belongs to.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hf_lrlaw.laws.areas import lr_floor, warmup_end

__all__ = ["final_loss_gradient", "has_gradient"]


def momentum_final(law, theta: np.ndarray, lrs: np.ndarray) -> tuple[float, np.ndarray]:
    """Tissue et al.'s ``L0 + A*S1^-alpha - C*S2`` at the last step and d/d(lrs).

    S1 and S2 are linear in the LRs: ``dS2/d eta_j = v_j``, ``v_j = w_{j+1} - w_j`` with the
    momentum weights ``w_i = (1 - lam**(T-i)) / (1 - lam)`` (see ``final_areas``). The warmup's
    own LRs count as the law's warmup option says; their gradient is returned as for any step.
    """
    l0, a, alpha, c = theta
    lrs = np.asarray(lrs, dtype=np.float64)
    t = len(lrs)
    w_end = warmup_end(lrs)
    weights = (1.0 - law.lam ** (t - np.arange(t))) / (1.0 - law.lam)
    v = np.zeros(t)
    v[:-1] += weights[1:]
    v[1:] -= weights[1:]
    s1_lrs = lrs.copy()
    s2_lrs = lrs.copy()
    ds1 = np.ones(t)
    ds2 = v.copy()
    if w_end:
        if law.warmup == "peak":  # the warmup counts as if at the LR it reaches
            s1_lrs[:w_end] = lrs[w_end]
            ds1[:w_end] = 0.0
            ds1[w_end] += w_end
        if law.warmup != "include":  # the warmup's rise is no annealing
            s2_lrs[:w_end] = lrs[w_end]
            ds2[:w_end] = 0.0
            ds2[w_end] += v[:w_end].sum()
    s1, s2 = s1_lrs.sum(), s2_lrs @ v
    loss = l0 + a * s1 ** (-alpha) - c * s2
    return float(loss), -alpha * a * s1 ** (-alpha - 1.0) * ds1 - c * ds2


def multipower_final(law, theta: np.ndarray, lrs: np.ndarray) -> tuple[float, np.ndarray]:
    """Luo et al.'s multi-power loss at the last step, summed over every LR change, and d/d(lrs).

    ``LD = B * sum_k d_k G(x_k)`` with ``d_k = eta_{k-1} - eta_k``, ``x_k = eta_k**-gamma * S_k``
    and ``S_k = sum_{tau >= k} eta_tau``; eta_j enters d_j, d_{j+1}, x_j and every S_k, k <= j,
    so the gradient is two shifted terms plus a cumulative sum.
    """
    l0, a, alpha, b, c, beta, gamma = theta
    lrs = np.asarray(lrs, dtype=np.float64)
    t = len(lrs)
    start = max(warmup_end(lrs) + 1 if law.warmup == "exclude" else 0, 1)
    total = lrs.sum()
    tail = np.cumsum(lrs[::-1])[::-1]  # S_k, summed from the end: no cancellation near it
    counted = np.arange(t) >= start
    d = np.zeros(t)
    d[1:] = lrs[:-1] - lrs[1:]
    d[~counted] = 0.0
    floor = lr_floor(lrs)
    eff = np.maximum(lrs, floor)  # the law's stand-in for an LR of zero in eta**-gamma
    scale = eff ** (-gamma)
    x = scale * tail
    u = 1.0 + c * x
    g = 1.0 - u ** (-beta)
    g_prime = beta * c * u ** (-beta - 1.0)  # dG/dx
    loss = l0 + a * total ** (-alpha) - b * np.sum(d * g)
    g_counted = np.where(counted, g, 0.0)
    d_ld = np.zeros(t)
    d_ld[:-1] += g_counted[1:]  # eta_j is the LR before the change d_{j+1}
    d_ld -= g_counted  # ... and the LR after d_j
    own = d * g_prime * tail * (-gamma) * eff ** (-gamma - 1.0)
    d_ld += np.where(lrs > floor, own, 0.0)  # x_j through eta_j**-gamma
    d_ld += np.cumsum(d * g_prime * scale)  # x_k, k <= j, through S_k
    return float(loss), -alpha * a * total ** (-alpha - 1.0) - b * d_ld


_GRADIENTS: dict[str, Callable[..., tuple[float, np.ndarray]]] = {
    "momentum": momentum_final,
    "multipower": multipower_final,
}


def has_gradient(law) -> bool:
    """Whether ``law`` has an analytic final-loss gradient here (else: finite differences)."""
    return law.name in _GRADIENTS


def final_loss_gradient(law, theta: np.ndarray, lrs: np.ndarray) -> tuple[float, np.ndarray]:
    """The law's loss at the last step of the run with per-step ``lrs``, and its gradient."""
    return _GRADIENTS[law.name](law, np.asarray(theta, dtype=np.float64), lrs)
