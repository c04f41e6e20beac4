"""Public loss curves bundled with hf-lrlaw: real language-model pre-training runs under many
learning-rate schedules, as :class:`~hf_lrlaw.curves.LossCurve` objects with per-step LRs.

>>> from hf_lrlaw import datasets
>>> datasets.available()
['lr-scheduling', 'multipowerlaw']
>>> len(datasets.load("multipowerlaw", model="25M"))
9
>>> train, test = datasets.multipowerlaw_split("25M")
>>> runs = datasets.load("lr-scheduling", model="124M", schedule="cosine-to-10%", peak_lr=1e-3)

Both sets are MIT-licensed (their LICENSE files sit beside the data); ``README.md`` in this
folder gives the sources and how the per-step learning rates are rebuilt. The files are read
with :mod:`importlib.resources`, so this works from an installed wheel, and parsed once per
process.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

import numpy as np

from hf_lrlaw.curves import CurveError, LossCurve

__all__ = ["DatasetInfo", "available", "info", "load", "multipowerlaw_split"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a bundled data set is and where it comes from."""

    name: str
    title: str
    curves: int
    description: str
    citation: str
    url: str
    license: str

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.title} ({self.curves} curves)\n{self.description}\n"
            f"Source: {self.citation}\n{self.url}\nLicence: {self.license}"
        )


_INFO = {
    "multipowerlaw": DatasetInfo(
        name="multipowerlaw",
        title="27 loss curves of 25M/100M/400M Llama-style models under 9 LR schedules",
        curves=27,
        description=(
            "Per model size: constant and cosine over 24000 and 72000 steps, WSD with an "
            "exponential or a linear decay over the last 4000 of 24000 steps, and three two-stage "
            "runs (3e-4, then 3e-5/9e-5/1.8e-4 from step 8000 to 16000). Peak LR 3e-4 after a "
            "2160-step linear warmup; one loss every 128 steps from the end of the warmup."
        ),
        citation=(
            "K. Luo, H. Wen, S. Hu, Z. Sun, Z. Liu, M. Sun, K. Lyu, W. Chen: A Multi-Power Law "
            "for Loss Curve Prediction Across Learning Rate Schedules. ICLR 2025, arXiv:2503.12811"
        ),
        url="https://github.com/thu-yao-01-luo/MultiPowerLaw",
        license="MIT, Copyright (c) 2025 Kairong Luo (multipowerlaw/LICENSE)",
    ),
    "lr-scheduling": DatasetInfo(
        name="lr-scheduling",
        title="235 runs of 33M-360M Llama-style models on SlimPajama/OpenWebText2",
        curves=235,
        description=(
            "Constant, cosine (to 10% and to ~0), WSD with linear cooldowns over 10-99.4% of the "
            "run and 1-sqrt cooldowns, two-stage horizon extensions; peak LRs 1e-4..5e-3, "
            "3000..200000 steps, 300 warmup steps. Validation loss every 200 steps (default) or "
            "the training loss every 50 (or 10) steps (kind='train')."
        ),
        citation=(
            "F. Schaipp, A. Hägele, A. Taylor, U. Simsekli, F. Bach: The Surprising Agreement "
            "Between Convex Optimization Theory and Learning-Rate Scheduling for Large Model "
            "Training. ICML 2025, arXiv:2501.18965; runs from A. Hägele, E. Bakouch, A. Kosson, "
            "L. Ben Allal, L. Von Werra, M. Jaggi: Scaling Laws and Compute-Optimal Training "
            "Beyond Fixed Training Durations. NeurIPS 2024, arXiv:2405.18392"
        ),
        url="https://github.com/fabian-sp/lr-scheduling",
        license="MIT, Copyright (c) 2025 Fabian Schaipp, Alexander Hägele (lr-scheduling/LICENSE)",
    ),
}


def available() -> list[str]:
    """The names of the bundled data sets."""
    return sorted(_INFO)


def info(name: str) -> DatasetInfo:
    """Description, citation, source and licence of a bundled data set."""
    return _INFO[_check_name(name)]


def load(
    name: str,
    *,
    kind: str | None = None,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
    **filters: Any,
) -> list[LossCurve]:
    """The curves of a bundled data set, optionally filtered on their ``meta``.

    Args:
        name: ``"multipowerlaw"`` or ``"lr-scheduling"`` (see :func:`available`).
        kind: lr-scheduling only: ``"val"`` (validation loss every 200 steps, the default) or
            ``"train"`` (training loss every 50 or 10 steps, one batch each, noisy).
        where: a predicate on a curve's ``meta``; only curves for which it is true are kept.
        **filters: ``key=value`` keeps the curves whose ``meta[key]`` equals ``value``, or one of
            its items when ``value`` is a list, tuple or set. Floats compare with a relative
            tolerance of 1e-9; ``model`` accepts ``"124M"`` or ``"124M(L12H12E768)"`` in any
            case; ``schedules`` is an alias of ``schedule``. Usual keys: ``model``, ``schedule``,
            ``peak_lr``, ``total_steps``, and for lr-scheduling ``dataset`` (the corpus).

    Every curve's ``meta`` holds ``collection`` (the data set's name), ``dataset`` (the
    training corpus; None where the source does not say), ``model``, ``params``, ``schedule``,
    ``peak_lr``, ``total_steps``, ``warmup_steps`` and ``source`` (the file), plus the
    columns of lr-scheduling's manifest (``curve_id``, ``warmup``, ``batch``, ...).

    Raises:
        ValueError: unknown data set, kind or filter key.
    """
    name = _check_name(name)
    if name == "multipowerlaw":
        if kind is not None:
            raise ValueError("multipowerlaw has one loss per curve; leave kind= out")
        entries = [(meta, functools.partial(_mpl_curve, meta)) for meta in _mpl_metas()]
    else:
        kind = "val" if kind is None else kind
        if kind not in ("val", "train"):
            raise ValueError(f"kind must be 'val' or 'train', not {kind!r}")
        entries = [(meta, functools.partial(_ls_curve, meta, kind)) for meta in _ls_metas(kind)]
    selected = _select(name, entries, filters, where)
    return [build() for _, build in selected]


def multipowerlaw_split(model: str) -> tuple[list[LossCurve], list[LossCurve]]:
    """The multi-power-law paper's split for one model size: ``(train, test)``.

    Train: ``cosine_24000``, ``constant_24000``, ``wsdcon_9``; test: the other six schedules
    (``constant_72000``, ``cosine_72000``, ``wsd_20000_24000``, ``wsdld_20000_24000``,
    ``wsdcon_3``, ``wsdcon_18``). ``model`` is ``"25M"``, ``"100M"`` or ``"400M"``.
    """
    if str(model).upper() not in _MPL_MODELS:
        raise ValueError(f"model must be one of {list(_MPL_MODELS)}, not {model!r}")
    curves = load("multipowerlaw", model=model)
    train = {c.meta["schedule"]: c for c in curves if c.meta["schedule"] in _MPL_TRAIN}
    test = [c for c in curves if c.meta["schedule"] not in _MPL_TRAIN]
    return [train[s] for s in _MPL_TRAIN], test


# -- selection --------------------------------------------------------------------------------
def _check_name(name: str) -> str:
    if name not in _INFO:
        raise ValueError(f"no bundled data set {name!r}; available: {available()}")
    return name


def _select(
    name: str,
    entries: list[tuple[dict[str, Any], Callable[[], LossCurve]]],
    filters: Mapping[str, Any],
    where: Callable[[Mapping[str, Any]], bool] | None,
) -> list[tuple[dict[str, Any], Callable[[], LossCurve]]]:
    known = set().union(*(meta for meta, _ in entries))
    for key in filters:
        if key != "schedules" and key not in known:
            raise ValueError(
                f"{name}: no curve has meta[{key!r}]; filter on one of {sorted(known)} "
                "(or pass where=)"
            )
    kept = []
    for meta, build in entries:
        if all(
            _matches(meta, "schedule" if k == "schedules" else k, v) for k, v in filters.items()
        ) and (where is None or where(dict(meta))):
            kept.append((meta, build))
    return kept


def _matches(meta: Mapping[str, Any], key: str, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, (list, tuple, set, frozenset)) else (wanted,)
    return any(_same(meta, key, option) for option in options)


def _same(meta: Mapping[str, Any], key: str, option: Any) -> bool:
    value = meta.get(key)
    if key == "model":
        names = {str(value).lower()}
        if meta.get("model_config"):
            names.add(f"{value}({meta['model_config']})".lower())
        return str(option).lower() in names
    if isinstance(value, bool) or isinstance(option, bool):
        return value == option
    if isinstance(value, float) or isinstance(option, float):
        try:
            return math.isclose(float(value), float(option), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return value == option


# -- package files ------------------------------------------------------------------------------
def _resource_bytes(*parts: str) -> bytes:
    return resources.files(__name__).joinpath(*parts).read_bytes()


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


# -- multipowerlaw --------------------------------------------------------------------------------
# Rules of the source's README: index = optimizer step from 0; the loss logged at step s is
# predicted with cumsum(lrs)[s] (the convention of LossCurve), so steps are taken as they are.
_MPL_MODELS = {
    "25M": ("csv_25", 25_000_000),
    "100M": ("csv_100", 100_000_000),
    "400M": ("csv_400", 400_000_000),
}
_MPL_PEAK, _MPL_FLOOR, _MPL_WARMUP = 3e-4, 3e-5, 2160
# file stem -> (shape, total steps, keyword arguments of _mpl_lrs)
_MPL_SCHEDULES: dict[str, tuple[str, int, dict[str, Any]]] = {
    "constant_24000": ("constant", 24000, {}),
    "constant_72000": ("constant", 72000, {}),
    "cosine_24000": ("cosine", 24000, {}),
    "cosine_72000": ("cosine", 72000, {}),
    "wsd_20000_24000": ("wsd-exponential", 24000, {"decay_start": 20000}),
    "wsdld_20000_24000": ("wsd-linear", 24000, {"decay_start": 20000}),
    "wsdcon_3": ("two-stage", 16000, {"drop_step": 8000, "second_lr": 3e-5}),
    "wsdcon_9": ("two-stage", 16000, {"drop_step": 8000, "second_lr": 9e-5}),
    "wsdcon_18": ("two-stage", 16000, {"drop_step": 8000, "second_lr": 1.8e-4}),
}
_MPL_TRAIN = ("cosine_24000", "constant_24000", "wsdcon_9")


def _mpl_lrs(
    shape: str, total: int, decay_start: int = 0, drop_step: int = 0, second_lr: float = 0.0
) -> np.ndarray:
    """The per-step LR of a multipowerlaw run, exactly as the source's README defines it."""
    peak, floor, warmup = _MPL_PEAK, _MPL_FLOOR, _MPL_WARMUP
    step = np.arange(total, dtype=np.float64)
    lrs = np.full(total, peak)
    if shape == "cosine":
        lrs = floor + 0.5 * (peak - floor) * (
            1 + np.cos(np.pi * (step - warmup) / (total - warmup))
        )
    elif shape in ("wsd-exponential", "wsd-linear"):
        span = total - decay_start
        t = step[decay_start:] - decay_start
        if shape == "wsd-exponential":  # geometric from peak to floor
            lrs[decay_start:] = peak ** ((span - t) / span) * floor ** (t / span)
        else:
            lrs[decay_start:] = peak + (floor - peak) * t / span
    elif shape == "two-stage":
        lrs[drop_step:] = second_lr
    lrs[:warmup] = np.linspace(0.0, peak, warmup)
    return lrs


def _mpl_metas() -> list[dict[str, Any]]:
    metas = []
    for model, (folder, params) in _MPL_MODELS.items():
        for stem, (shape, total, _) in _MPL_SCHEDULES.items():
            metas.append(
                {
                    "collection": "multipowerlaw",
                    "dataset": None,
                    "model": model,
                    "params": params,
                    "schedule": stem,
                    "shape": shape,
                    "peak_lr": _MPL_PEAK,
                    "total_steps": total,
                    "warmup_steps": _MPL_WARMUP,
                    "source": f"multipowerlaw/{folder}/{stem}.csv",
                }
            )
    return metas


@functools.cache
def _mpl_table(folder: str, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    text = _resource_bytes("multipowerlaw", folder, f"{stem}.csv").decode("utf-8")
    header, _, body = text.partition("\n")
    if header.strip() != "step,lr,loss":
        raise CurveError(f"multipowerlaw/{folder}/{stem}.csv: unexpected header {header!r}")
    table = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
    steps = table[:, 0].astype(np.int64)
    return _read_only(steps), _read_only(table[:, 1].copy()), _read_only(table[:, 2].copy())


def _mpl_curve(meta: dict[str, Any]) -> LossCurve:
    stem = meta["schedule"]
    shape, total, kwargs = _MPL_SCHEDULES[stem]
    steps, _, losses = _mpl_table(_MPL_MODELS[meta["model"]][0], stem)
    keep = steps < total  # a curve of T steps is used below step T only
    lrs = _mpl_lrs(shape, total, **kwargs)
    meta = dict(meta, final_lr=float(lrs[-1]))
    return LossCurve(lrs, steps[keep], losses[keep], name=f"{meta['model']}/{stem}", meta=meta)


# -- lr-scheduling ------------------------------------------------------------------------------
_LS_INIT_DIV = 100.0  # both schedule codes of the source start the warmup at peak / 100
_LS_INT = (
    "params",
    "total_steps",
    "warmup",
    "n_val",
    "val_first",
    "val_last",
    "val_spacing",
    "n_train_log",
    "train_log_spacing",
)
_LS_FLOAT = ("peak_lr", "lr_min", "lr_max", "val_loss_last")
# file step -> LossCurve step: a validation loss at iteration c was measured after c updates
# (step c - 1); the training loss logged at iteration c is the loss of the batch of update c,
# computed before it on the model after c - 1 updates (step c - 2).
_LS_OFFSET = {"val": -1, "train": -2}


@functools.cache
def _ls_manifest() -> tuple[Mapping[str, Any], ...]:
    text = _resource_bytes("lr-scheduling", "manifest.csv").decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    labels = [
        f"{row['model'].partition('(')[0]} {row['dataset']} {row['schedule']} "
        f"lr{row['peak_lr']} T{row['total_steps']}"
        for row in rows
    ]
    metas = []
    for row, label in zip(rows, labels):
        meta: dict[str, Any] = dict(row)
        for key in _LS_INT:
            meta[key] = int(row[key])
        for key in _LS_FLOAT:
            meta[key] = float(row[key])
        meta["complete"] = row["complete"] == "True"
        model, _, config = row["model"].partition("(")
        _, group, run, *_ = row["curve_id"].split("|")
        if labels.count(label) > 1:  # repeated runs: tell them apart by sweep and run name
            label = f"{label} [{group}/{run}]"
        meta.update(
            collection="lr-scheduling",
            model=model,
            model_config=config.rstrip(")"),
            warmup_steps=meta["warmup"],
            group=group,
            run=run,
            name=label,
        )
        metas.append(MappingProxyType(meta))
    return tuple(metas)


def _ls_metas(kind: str) -> list[dict[str, Any]]:
    source = (
        "lr-scheduling/val_curves.csv.gz" if kind == "val" else "lr-scheduling/train_log.csv.gz"
    )
    return [
        dict(meta, kind=kind, source=source, file_step_offset=_LS_OFFSET[kind])
        for meta in _ls_manifest()
    ]


@functools.cache
def _ls_table(filename: str) -> Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``curve_id -> (steps, lrs, losses)`` of one of the two tidy files, parsed once."""
    text = gzip.decompress(_resource_bytes("lr-scheduling", filename)).decode("utf-8")
    header, _, body = text.partition("\n")
    if header.strip() != "curve_id,step,lr,loss":
        raise CurveError(f"lr-scheduling/{filename}: unexpected header {header!r}")
    tokens = body.replace("\n", ",").split(",")  # curve ids hold no comma: 4 tokens a row
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) % 4 or len(tokens) // 4 != body.count("\n") + (not body.endswith("\n")):
        raise CurveError(f"lr-scheduling/{filename}: a row does not have 4 fields")
    ids = tokens[0::4]
    steps = np.array(tokens[1::4], dtype=np.int64)
    lrs = np.array(tokens[2::4], dtype=np.float64)
    losses = np.array([t or "nan" for t in tokens[3::4]], dtype=np.float64)
    blocks: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[start]:
            blocks.setdefault(ids[start], []).append((start, i))
            start = i
    table = {}
    for cid, spans in blocks.items():
        index = np.concatenate([np.arange(a, b) for a, b in spans])
        table[cid] = (
            _read_only(steps[index]),
            _read_only(lrs[index]),
            _read_only(losses[index]),
        )
    return MappingProxyType(table)


def _ls_warmup(
    steps: np.ndarray, lrs: np.ndarray, peak: float, warmup: int
) -> tuple[str | None, np.ndarray | None]:
    """The warmup (steps ``0..warmup-1``) of the source's two schedule codes the logs follow."""
    grid = np.arange(warmup, dtype=np.float64)
    init = peak / _LS_INIT_DIV
    candidates = {
        # LambdaLR(wsd_schedule): s/w + (1 - s/w)/100, a straight line from peak/100 at step 0
        "linear": init + (peak - init) * grid / warmup,
        # OneCycleLR(div_factor=100, pct_start=w/T, anneal_strategy="cos"): a half cosine from
        # peak/100 at step 0 to the peak at step w - 1 (cosine schedules)
        "cosine": peak + (init - peak) * (1 + np.cos(np.pi * grid / (warmup - 1))) / 2,
    }
    inside = steps < warmup
    if inside.sum() < 2:
        return None, None
    for shape, head in candidates.items():
        if np.allclose(head[steps[inside]], lrs[inside], rtol=1e-9, atol=0.0):
            return shape, head
    return None, None


def _ls_lrs(
    steps: np.ndarray, lrs: np.ndarray, peak: float, warmup: int, total: int
) -> tuple[np.ndarray, str | None]:
    """Per-step LR for updates ``0..total-1`` from the LRs logged in the training log.

    The LR logged at iteration ``c`` is the one of update ``c`` (0-based: it is read after
    ``scheduler.step()``), so ``lrs[c]`` is the logged value. The warmup follows one of the two
    exact shapes of :func:`_ls_warmup` (every bundled run matches one; otherwise the first logged
    LR would be held before the first log); then linear interpolation between logged steps; after
    the last logged step below ``total`` (the LR logged at ``total`` belongs to no update: the
    schedule codes give 0 there even for a constant schedule), a quadratic extrapolation of the
    last three logged LRs, not below 0.
    """
    keep = steps < total
    steps, lrs = steps[keep], lrs[keep]
    shape, head = _ls_warmup(steps, lrs, peak, warmup)
    if head is not None and steps[0] > 0:
        steps, lrs = np.r_[0, steps], np.r_[head[0], lrs]
    out = np.interp(np.arange(total), steps, lrs)
    last = int(steps[-1])
    if last < total - 1 and len(steps) >= 3:
        # quadratic through the last three logged LRs: exact for constant and linear decays,
        # within 1e-4 of the peak for the end of a cosine; never below 0
        tail = np.arange(last + 1, total, dtype=np.float64)
        x, y = steps[-3:].astype(np.float64), lrs[-3:]
        value = sum(
            y[i] * np.prod([(tail - x[j]) / (x[i] - x[j]) for j in range(3) if j != i], axis=0)
            for i in range(3)
        )
        out[last + 1 :] = np.maximum(value, 0.0)
    if head is not None:
        out[:warmup] = head
    return out, shape


def _ls_curve(meta: dict[str, Any], kind: str) -> LossCurve:
    cid = meta["curve_id"]
    log_steps, log_lrs, log_losses = _ls_table("train_log.csv.gz")[cid]
    lrs, shape = _ls_lrs(log_steps, log_lrs, meta["peak_lr"], meta["warmup"], meta["total_steps"])
    if kind == "val":
        file_steps, _, losses = _ls_table("val_curves.csv.gz")[cid]
    else:
        file_steps, losses = log_steps, log_losses
    steps = file_steps + _LS_OFFSET[kind]
    keep = (steps >= 0) & (steps < len(lrs))  # drops the untrained model's loss (file step 0)
    meta = dict(meta, warmup_shape=shape)
    return LossCurve(lrs, steps[keep], losses[keep], name=meta["name"], meta=meta)
