"""ScheduleSpace: a deterministic candidate list from kinds x parameter grids."""

from __future__ import annotations

import json

import pytest

from hf_lrlaw import Schedule
from tune_search.space import DEFAULT_KINDS, ScheduleSpace, SpaceError, family, span


def test_span_rounds_and_validates():
    assert span(0.1, 0.4, 4) == (0.1, 0.2, 0.3, 0.4)
    assert span(1e-4, 1e-2, 3, log=True) == (1e-4, 1e-3, 1e-2)
    with pytest.raises(SpaceError, match="n >= 1"):
        span(0, 1, 0)
    with pytest.raises(SpaceError, match="positive"):
        span(0, 1, 3, log=True)


def test_grid_is_the_product_in_a_fixed_order():
    space = ScheduleSpace(
        3e-3,
        1000,
        100,
        kinds={
            "constant": {},
            "cosine": {"final_ratio": [0.0, 0.1]},
            "wsd": {
                "decay_fraction": span(0.1, 0.3, 3),
                "decay_shape": ["linear", "1-sqrt"],
                "final_ratio": [0.0, 0.1],
            },
        },
    )
    cands = space.candidates()
    assert len(space) == len(cands) == 1 + 2 + 12
    assert str(cands[0]) == "constant(peak_lr=0.003, total_steps=1000, warmup_steps=100)"
    assert cands[1] == Schedule.cosine(3e-3, 1000, warmup_steps=100, final_ratio=0.0)
    # the last parameter varies fastest
    assert [c.param("final_ratio") for c in cands[3:5]] == [0.0, 0.1]
    assert [str(c) for c in ScheduleSpace.from_dict(space.to_dict()).candidates()] == [
        str(c) for c in cands
    ]
    assert space.fingerprint() == ScheduleSpace.from_json(space.to_json()).fingerprint()


def test_default_space_is_large_valid_and_deterministic():
    a = ScheduleSpace(3e-3, 2400, 216)
    b = ScheduleSpace(3e-3, 2400, 216, kinds=DEFAULT_KINDS)
    assert len(a) >= 500
    assert [str(c) for c in a.candidates()] == [str(c) for c in b.candidates()]
    assert len({str(c) for c in a.candidates()}) == len(a)  # no duplicates
    # exponential decay to 0 is not a schedule: skipped and counted, not fatal
    assert any("exponential" in reason for _, reason in a.skipped)
    assert "candidate schedules" in a.describe()


def test_listed_settings_and_warmup_fractions():
    space = ScheduleSpace([1e-3, 3e-3], [500, 1000], 0.1, kinds={"cosine": {}})
    assert len(space) == 4
    assert {c.warmup_steps for c in space.candidates()} == {50, 100}
    assert space.reference() == (1e-3, 1000, 100)
    # two peak LRs: a decayed pilot at each, over half the longest horizon, identifies the
    # LR dependence (bench_peak_lr.py, protocol P)
    pilots = space.pilots()
    assert [p.kind for p in pilots] == ["wsd", "wsd"]
    assert [p.peak_lr for p in pilots] == [1e-3, 3e-3]
    assert {p.total_steps for p in pilots} == {500}
    assert {p.param("decay_fraction") for p in pilots} == {0.2}


def test_multistep_milestone_grids():
    one = ScheduleSpace(1e-3, 1000, kinds={"multistep": {"milestones": [0.8, 0.9]}})
    assert [c.param("milestones") for c in one.candidates()] == [(0.8, 0.9)]
    grid = ScheduleSpace(1e-3, 1000, kinds={"multistep": {"milestones": [[0.5], [0.8, 0.9]]}})
    assert [c.param("milestones") for c in grid.candidates()] == [(0.5,), (0.8, 0.9)]


def test_invalid_combinations_are_skipped_with_reasons():
    space = ScheduleSpace(1e-3, 100, 90, kinds={"wsd": {"decay_fraction": [0.05, 0.5]}})
    assert len(space) == 1
    assert space.skipped and "decay" in space.skipped[0][1]


def test_empty_and_bad_spaces_say_why():
    assert len(ScheduleSpace(1e-3, 100, kinds={})) == 0
    with pytest.raises(SpaceError, match="unknown schedule kind"):
        ScheduleSpace(1e-3, 100, kinds={"triangle": {}})
    with pytest.raises(SpaceError, match="empty list"):
        ScheduleSpace(1e-3, 100, kinds={"cosine": {"final_ratio": []}})
    with pytest.raises(SpaceError, match="number"):
        ScheduleSpace("fast", 100)
    with pytest.raises(SpaceError, match="needs 'total_steps'"):
        ScheduleSpace.from_dict({"peak_lr": 1e-3})
    with pytest.raises(SpaceError, match="JSON"):
        ScheduleSpace.from_json("{not json")
    data = {
        "peak_lr": 1e-3,
        "total_steps": 100,
        "kinds": {"wsd": {"decay_fraction": {"span": [0.1, 0.3, 3]}}},
    }
    assert len(ScheduleSpace.from_json(json.dumps(data))) == 3


def test_family_groups_fine_variants():
    a = Schedule.wsd(1e-3, 1000, decay_fraction=0.1, decay_shape="linear")
    b = Schedule.wsd(1e-3, 1000, decay_fraction=0.3, decay_shape="linear", final_ratio=0.1)
    c = Schedule.wsd(1e-3, 1000, decay_fraction=0.1, decay_shape="cosine")
    assert family(a) == family(b) != family(c)
    assert family(Schedule.multistep(1e-3, 1000, milestones=[0.5])) != family(
        Schedule.multistep(1e-3, 1000, milestones=[0.5, 0.8])
    )


def test_the_space_and_lrlaw_rank_space_build_the_same_grid():
    from hf_lrlaw.cli import parse_space

    space = ScheduleSpace(
        1e-3, 1000, 10, kinds={"wsd": {"decay_fraction": span(0.05, 0.6, 34), "final_ratio": 0.1}}
    )
    text = "wsd:peak_lr=1e-3;total_steps=1000;warmup_steps=10;decay_fraction=lin(0.05,0.6,34);"
    assert space.candidates() == parse_space(text + "final_ratio=0.1")
    assert all("0.433333" not in str(s) for s in space.candidates())
