"""One home for writing files: atomic, one permission rule, strict JSON; readers that name the
file. Every writer of the package (fits, priors, CSVs, figures, records, reports) goes through it."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import hf_lrlaw
from hf_lrlaw.files import json_ready, read_json, read_text, write_atomic, write_json
from hf_lrlaw.plots import plot_fit


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_mode(tmp_path, umask_022):
    path = tmp_path / "deep" / "x.json"
    write_atomic(path, "first")
    assert path.read_text() == "first" and _mode(path) == 0o644
    os.chmod(path, 0o600)
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second" and _mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary file left


def test_every_writer_of_the_package_follows_the_rule(tmp_path, umask_022):
    train, _ = hf_lrlaw.datasets.multipowerlaw_split("25M")
    fit = hf_lrlaw.fit(train[:1], "momentum", n_starts=1)
    outputs = {
        "fit.json": lambda p: fit.save(p),
        "curves.csv": lambda p: hf_lrlaw.write_csv(train[:1], p),
        "prior.json": lambda p: hf_lrlaw.Prior.from_fit(fit).save(p),
        "fit.png": lambda p: plot_fit(fit, train[:1], path=p),
    }
    for name, write in outputs.items():
        path = tmp_path / name
        write(path)
        assert _mode(path) == 0o644, name
        os.chmod(path, 0o600)
        write(path)
        assert _mode(path) == 0o600, name  # fit.save used to reset 600 to 644


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "keep.json"
    write_json(path, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json(path, {"a": Boom()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_json_is_strict_nan_becomes_null():
    data = {"x": float("nan"), "y": [np.float64(1.5), np.inf], "z": np.arange(2), "t": (1, 2)}
    assert json_ready(data) == {"x": None, "y": [1.5, None], "z": [0, 1], "t": [1, 2]}


def test_readers_name_the_file(tmp_path):
    gz = tmp_path / "fit.json.gz"
    gz.write_bytes(b"\x1f\x8b" + b"not gzip")
    with pytest.raises(ValueError, match=str(gz)):
        read_text(gz)
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"a": "\xe9"}'.encode("latin-1"))
    with pytest.raises(ValueError, match=f"{latin}: not UTF-8"):
        read_json(latin)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"a": 1}')
    assert read_json(bom) == {"a": 1}
    with pytest.raises(KeyError, match="no such file"):
        read_json(tmp_path / "missing.json", KeyError)
