"""`lrlaw search` argument handling: bad input is one `lrlaw: error:` line and exit code 2
(these cases fail before any Ray instance starts)."""

from __future__ import annotations

import argparse
import json

import pytest

from tune_search.cli import add_parser, main


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["search", "--peak-lr", "1e-3", "--total-steps", "100"],
            "give exactly one of --setup, --trainable, --simulate",
        ),
        (["search", "--simulate", "7B"], "--simulate takes one of"),
        (
            [
                "search",
                "--setup",
                "no_such_module:setup",
                "--peak-lr",
                "1e-3",
                "--total-steps",
                "100",
            ],
            "cannot import 'no_such_module'",
        ),
        (
            ["search", "--trainable", "json", "--peak-lr", "1e-3", "--total-steps", "100"],
            "takes MODULE:FUNCTION",
        ),
        (
            ["search", "--trainable", "json:nope", "--peak-lr", "1e-3", "--total-steps", "100"],
            "json has no callable 'nope'",
        ),
        (["search", "--simulate", "100M", "--kinds", "triangle"], "no default grid for"),
        (["search", "--simulate", "100M", "--space", "/no/such/space.json"], "no such file"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lrlaw: error: ") and message in err[0]


def test_empty_space_file(tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"peak_lr": 1e-3, "total_steps": 100, "kinds": {}}))
    assert main(["search", "--simulate", "--space", str(space)]) == 2
    assert "holds no candidates" in capsys.readouterr().err
    space.write_text(json.dumps({"peak_lr": 1e-3, "total_steps": 100, "kinds": {"x": {}}}))
    assert main(["search", "--simulate", "--space", str(space)]) == 2
    assert "unknown schedule kind 'x'" in capsys.readouterr().err


def test_add_parser_registers_search_with_a_handler():
    parser = argparse.ArgumentParser(prog="lrlaw")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["search", "--simulate", "--top-k", "2", "--pilot-steps", "1.0"])
    assert args.func is args.handler and callable(args.func)
    assert (args.simulate, args.top_k, args.pilot_steps) == ("100M", 2, 1.0)


def test_the_lrlaw_command_runs_search(capsys):
    from hf_lrlaw.cli import main as lrlaw_main

    assert lrlaw_main(["search", "--simulate", "100M", "--kinds", "triangle"]) == 2
    assert capsys.readouterr().err.startswith("lrlaw: error: --kinds")
    assert lrlaw_main(["search", "--help"]) == 0
    assert "--pilot-steps" in capsys.readouterr().out
