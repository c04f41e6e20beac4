"""Loss-curve laws behind one protocol, looked up by name.

``get_law("momentum")`` (Tissue et al. 2024), ``get_law("multipower")`` (Luo et al. 2025),
``get_law("power")`` (the no-annealing baseline), ``get_law("lrnoise")`` (a law whose parameters
hold across peak LRs, for choosing the peak LR with the schedule). Adding a law is adding a module and one
entry in ``_LAWS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hf_lrlaw.laws.base import Law, LawError, Param
from hf_lrlaw.laws.lrnoise import LRNoiseLaw
from hf_lrlaw.laws.momentum import MomentumLaw
from hf_lrlaw.laws.multipower import MultiPowerLaw
from hf_lrlaw.laws.power import PowerLaw

__all__ = [
    "LRNoiseLaw",
    "Law",
    "LawError",
    "MomentumLaw",
    "MultiPowerLaw",
    "Param",
    "PowerLaw",
    "available_laws",
    "carries_peak_lr",
    "get_law",
]

_LAWS: dict[str, Callable[..., Law]] = {
    "momentum": MomentumLaw,
    "multipower": MultiPowerLaw,
    "power": PowerLaw,
    "lrnoise": LRNoiseLaw,
}


def available_laws() -> list[str]:
    """Names accepted by :func:`get_law` (and by ``fit(law=...)``, plus ``"auto"``)."""
    return sorted(_LAWS)


def get_law(name: str | Law, **options: Any) -> Law:
    """The law called ``name`` with its options (e.g. ``lam=0.999``, ``warmup="peak"``)."""
    if not isinstance(name, str):
        return name
    try:
        factory = _LAWS[name]
    except KeyError:
        raise LawError(
            f"unknown law {name!r}; choose one of {available_laws()} or 'auto'"
        ) from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise LawError(f"bad option for law {name!r}: {exc}") from None


def carries_peak_lr(law: str | Law) -> bool:
    """Whether the law's parameters hold across runs of different peak LRs (so that it can be
    fitted on such runs jointly and predict an LR it was not run at)."""
    return bool(getattr(get_law(law), "carries_peak_lr", False))
