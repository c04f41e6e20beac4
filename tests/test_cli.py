"""The ``lrlaw`` command, run in-process through ``main`` (and once as a real process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from hf_lrlaw import Fit, Schedule, __version__, datasets, write_csv
from hf_lrlaw.cli import UsageError, main, parse_curve_spec, parse_space

PNG = b"\x89PNG\r\n\x1a\n"
TRAIN = "dataset:multipowerlaw:model=25M,split=train"
COSINE = "cosine(peak_lr=3e-4, total_steps=24000, warmup_steps=2160, final_ratio=0.1)"
WSD = "wsd(peak_lr=3e-4, total_steps=24000, warmup_steps=2160, decay_fraction=0.2)"
SPACE = (
    "wsd:peak_lr=3e-4;total_steps=24000;warmup_steps=2160;decay_fraction=0.1,0.2,0.3;"
    "decay_shape=linear,1-sqrt;final_ratio=0,0.1 | cosine:peak_lr=3e-4;total_steps=24000;"
    "warmup_steps=2160;final_ratio=0,0.1"
)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fit_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    assert main(["fit", TRAIN, "--law", "momentum", "--until", "0.5", "-o", str(path)]) == 0
    return path


# -- prior: early fits with a learned or size-sweep prior -------------------------------------


def test_size_sweep_prior_predicts_the_large_model_from_its_first_quarter(capsys, tmp_path):
    """Full fits of 25M and 100M -> a prior for 400M -> the 400M cosine run's final loss from
    its first 25%, closer than the same fit without a prior."""
    fits = []
    for size in ("25M", "100M"):
        fits.append(tmp_path / f"{size}.json")
        spec = f"dataset:multipowerlaw:model={size},split=train"
        assert run(capsys, "fit", spec, "--law", "momentum", "-o", fits[-1])[0] == 0
    prior = tmp_path / "prior.json"
    code, out, err = run(
        capsys, "prior", *fits, "--sizes", "25M,100M", "--target", "400M", "-o", prior
    )
    assert code == 0, err
    assert "size sweep 25M, 100M -> 400M parameters" in out and "log_anneal_gain" in out
    big = datasets.load("multipowerlaw", model="400M", schedule="cosine_24000")[0]
    spec = "dataset:multipowerlaw:model=400M,schedule=cosine_24000"
    errors = {}
    for name, extra in (("prior", ["--prior", prior]), ("none", [])):
        out_fit = tmp_path / f"early_{name}.json"
        code, out, err = run(
            capsys, "fit", spec, "--until", "0.25", "--law", "momentum", *extra, "-o", out_fit
        )
        assert code == 0, err
        assert ("prior: size sweep" in out) == (name == "prior")
        pred = Fit.load(out_fit).predict(big.lrs, big.steps[-1:])[0]
        errors[name] = abs(pred - big.losses[-1]) / big.losses[-1]
    assert errors["prior"] < 0.01 and errors["prior"] < errors["none"] / 2


def test_prior_from_earlier_runs_pools_them(capsys, tmp_path, fit_json):
    from hf_lrlaw.priors import Prior

    out = tmp_path / "pooled.json"
    code, stdout, err = run(capsys, "prior", fit_json, fit_json, "-o", out)
    assert code == 0, err
    assert "2 earlier fits pooled" in stdout and Prior.load(out).law == "momentum"


def test_prior_errors_write_nothing(capsys, tmp_path, fit_json):
    out = tmp_path / "p.json"
    cases = [
        (["prior", fit_json, fit_json, "--sizes", "25M", "--target", "1B"], "1 size(s) for 2"),
        (["prior", fit_json, "--sizes", "25Q", "--target", "1B"], "positive parameter count"),
        (["prior", fit_json, "--sizes", "25M"], "--sizes and --target go together"),
        (["prior", tmp_path / "missing.json"], "no such file"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, "-o", out)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
        assert not out.exists()
    code, _, err = run(capsys, "fit", TRAIN, "--prior", tmp_path / "nope.json")
    assert code == 2 and "--prior" in err and "no such file" in err


def test_fit_with_the_default_prior_records_it(capsys, tmp_path):
    out = tmp_path / "early.json"
    spec = "dataset:multipowerlaw:model=100M,schedule=cosine_24000"
    code, stdout, err = run(
        capsys,
        "fit",
        spec,
        "--until",
        "0.25",
        "--law",
        "momentum",
        "--prior",
        "default:lr-scheduling",
        "-o",
        out,
    )
    assert code == 0, err
    recorded = Fit.load(out).prior
    assert recorded is not None and "lr-scheduling" in recorded["source"]
    assert f"prior: {recorded['source']}" in stdout


# -- fit ---------------------------------------------------------------------------------------


def test_fit_on_a_bundled_dataset(capsys, tmp_path):
    out = tmp_path / "fit.json"
    code, stdout, err = run(capsys, "fit", TRAIN, "--law", "momentum", "-o", out)
    assert code == 0, err
    assert "momentum law fitted on 3 curve(s)" in stdout and f"wrote {out}" in stdout
    f = Fit.load(out)
    assert f.law == "momentum"
    assert sorted(c["name"] for c in f.curves) == [
        "25M/constant_24000",
        "25M/cosine_24000",
        "25M/wsdcon_9",
    ]


def test_fit_on_a_csv_with_until_and_options(capsys, tmp_path):
    train, _ = datasets.multipowerlaw_split("25M")
    csv = tmp_path / "runs.csv"
    write_csv([c.replace(steps=c.steps[::4], losses=c.losses[::4]) for c in train], csv)
    out = tmp_path / "fit.json"
    code, stdout, err = run(
        capsys,
        "fit",
        csv,
        "--law",
        "momentum",
        "--option",
        "lam=0.99",
        "--until",
        "12000",
        "-o",
        out,
    )
    assert code == 0, err
    f = Fit.load(out)
    assert f.law_options["lam"] == 0.99
    assert max(c["last_step"] for c in f.curves) <= 12000


def test_fit_auto_on_several_sources(capsys, tmp_path):
    out = tmp_path / "auto.json"
    spec = "dataset:multipowerlaw:model=25M,schedule=cosine_24000,constant_24000"
    code, stdout, err = run(capsys, "fit", spec, "--until", "0.4", "--law", "power", "-o", out)
    assert code == 0, err
    assert Fit.load(out).law == "power"


def test_parse_curve_spec():
    assert parse_curve_spec("dataset:multipowerlaw:model=25M,schedule=a,b,total_steps=24000") == (
        "multipowerlaw",
        {"model": "25M", "schedule": ["a", "b"], "total_steps": 24000},
    )
    assert parse_curve_spec("dataset:lr-scheduling") == ("lr-scheduling", {})
    with pytest.raises(UsageError):
        parse_curve_spec("dataset:multipowerlaw:25M")


# -- predict -----------------------------------------------------------------------------------


def test_predict_final_and_at_steps(capsys, fit_json, tmp_path):
    code, stdout, err = run(capsys, "predict", fit_json, "--schedule", COSINE, "--schedule", WSD)
    assert code == 0, err
    assert "cosine(peak_lr=0.0003" in stdout and "23999" in stdout and "90% interval" in stdout

    out = tmp_path / "pred.csv"
    code, stdout, err = run(
        capsys,
        "predict",
        fit_json,
        "--schedule",
        COSINE,
        "--steps",
        "5000,10000,23999",
        "--level",
        "0.8",
        "--json",
        "-o",
        out,
    )
    assert code == 0, err
    data = json.loads(stdout)
    rows = data["predictions"]
    assert [r["step"] for r in rows] == [5000, 10000, 23999]
    assert all(r["low"] < r["predicted"] < r["high"] for r in rows)
    assert rows[0]["predicted"] > rows[-1]["predicted"]
    assert out.read_text().splitlines()[0] == "schedule,step,predicted,low,high,level"


# -- rank --------------------------------------------------------------------------------------


def test_rank_from_a_file(capsys, fit_json, tmp_path):
    file = tmp_path / "candidates.txt"
    file.write_text(f"# candidates\n{COSINE}\n\n{WSD}\n   # another comment\n{COSINE}\n")
    out = tmp_path / "table.csv"
    code, stdout, err = run(capsys, "rank", fit_json, "--schedules", file, "-o", out)
    assert code == 0, err
    assert "| rank | schedule |" in stdout and "2 candidate(s)" in stdout
    lines = out.read_text().splitlines()
    assert lines[0].startswith("rank,schedule,predicted") and len(lines) == 3


def test_rank_a_space(capsys, fit_json, tmp_path):
    out = tmp_path / "table.json"
    fig = tmp_path / "rank.png"
    code, stdout, err = run(
        capsys, "rank", fit_json, "--space", SPACE, "--top", "3", "-o", out, "--plot", fig
    )
    assert code == 0, err
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 14 and data["law"] == "momentum"
    assert stdout.count("| `") == 3
    assert fig.read_bytes()[:8] == PNG
    md = tmp_path / "table.md"
    assert main(["rank", str(fit_json), "--space", SPACE, "-o", str(md)]) == 0
    assert md.read_text().count("| `") == 14


def test_rank_and_predict_take_the_fitted_run_for_left_out_parameters(capsys, tmp_path):
    """Fitted on one run, a space or schedule text needs only the shape; fitted on runs of
    different lengths, leaving them out is a usage error that says why."""
    one = tmp_path / "one.json"
    spec = "dataset:multipowerlaw:model=25M,schedule=cosine_24000"
    assert run(capsys, "fit", spec, "--until", "0.5", "--law", "momentum", "-o", one)[0] == 0
    out = tmp_path / "rank.json"
    code, stdout, err = run(
        capsys,
        "rank",
        one,
        "--space",
        "wsd:decay_fraction=0.1,0.2 | cosine:final_ratio=0",
        "-o",
        out,
    )
    assert code == 0, err
    assert "take the fitted run's: peak_lr=0.0003, total_steps=24000" in err
    scheds = [Schedule.parse(r["schedule"]) for r in json.loads(out.read_text())["rows"]]
    assert len(scheds) == 3
    assert {(s.peak_lr, s.total_steps, s.warmup_steps) for s in scheds} == {(3e-4, 24000, 2159)}
    code, stdout, err = run(
        capsys, "predict", one, "--schedule", "wsd(decay_fraction=0.2)", "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["predictions"][0]["step"] == 23999  # stdout stays pure JSON

    two = tmp_path / "two.json"
    assert run(capsys, "fit", TRAIN, "--law", "momentum", "-o", two)[0] == 0
    code, _, err = run(capsys, "rank", two, "--space", "wsd:decay_fraction=0.1,0.2")
    assert code == 2
    assert "missing parameter total_steps" in err and "only when its curves share them" in err


def test_parse_space():
    scheds = parse_space(SPACE)
    assert len(scheds) == 14
    assert all(isinstance(s, Schedule) for s in scheds)
    assert {s.kind for s in scheds} == {"wsd", "cosine"}
    ranged = parse_space("cosine:peak_lr=log(1e-4,1e-2,3);total_steps=lin(1000,3000,3)")
    assert sorted({s.peak_lr for s in ranged}) == [1e-4, 1e-3, 1e-2]
    assert sorted({s.total_steps for s in ranged}) == [1000, 2000, 3000]
    steps = parse_space("multistep:peak_lr=1e-3;total_steps=1000;milestones=[0.8, 0.9],[0.5]")
    assert [s.param("milestones") for s in steps] == [(0.8, 0.9), (0.5,)]


def test_parse_space_skips_invalid_combinations():
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        scheds = parse_space(
            "wsd:peak_lr=1e-3;total_steps=100;warmup_steps=50;decay_fraction=0.2,0.9"
        )
    assert len(scheds) == 1


@pytest.mark.parametrize(
    "spec",
    [
        "wsd",  # no parameters: total_steps missing
        "wsd:peak_lr",
        "wsd:peak_lr=1e-3;peak_lr=2e-3;total_steps=10",
        "nokind:peak_lr=1e-3;total_steps=100",
        "cosine:peak_lr=log(0,1,3);total_steps=100",
        "cosine:peak_lr=lin(1,2);total_steps=100",
        "cosine:peak_lr=1e-3;total_steps=100 | ",
        "cosine:peak_lr=1e-3;total_steps=lin(1,1000000,1000);final_ratio=lin(0,1,1000)",
    ],
)
def test_parse_space_errors(spec):
    with pytest.raises(UsageError):
        parse_space(spec)


# -- plot, evaluate, datasets ------------------------------------------------------------------


def test_plot_a_saved_fit(capsys, fit_json, tmp_path):
    out = tmp_path / "fig.png"
    code, stdout, err = run(
        capsys,
        "plot",
        fit_json,
        "dataset:multipowerlaw:model=25M",
        "--schedule",
        WSD,
        "--label",
        "my wsd",
        "-o",
        out,
    )
    assert code == 0, err
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000


def test_plot_fitting_on_the_fly(capsys, tmp_path):
    out = tmp_path / "fig.png"
    code, stdout, err = run(
        capsys,
        "plot",
        TRAIN,
        "--law",
        "momentum",
        "--until",
        "0.5",
        "--max-points",
        "100",
        "-o",
        out,
    )
    assert code == 0, err
    assert "momentum law fitted" in stdout
    assert out.read_bytes()[:8] == PNG


def test_evaluate(capsys, fit_json, tmp_path):
    out = tmp_path / "acc.json"
    code, stdout, err = run(
        capsys, "evaluate", fit_json, "dataset:multipowerlaw:model=25M", "-o", out
    )
    assert code == 0, err
    report = json.loads(out.read_text())
    assert len(report["curves"]) == 9 and report["held_out_curves"] == 9  # fitted on halves
    assert 0 < report["mean_rel_error"] < 0.05
    assert "held out" in stdout


def test_datasets(capsys):
    code, stdout, _ = run(capsys, "datasets")
    assert code == 0 and "multipowerlaw" in stdout and "27" in stdout
    code, stdout, _ = run(capsys, "datasets", "multipowerlaw")
    assert code == 0 and "25M/cosine_24000" in stdout


def test_version_and_help(capsys):
    code, stdout, _ = run(capsys, "--version")
    assert code == 0 and __version__ in stdout
    code, stdout, _ = run(capsys, "rank", "--help")
    assert code == 0 and "lin(LO,HI,N)" in stdout


# -- errors ------------------------------------------------------------------------------------


@pytest.fixture
def bad_cases(fit_json, tmp_path):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("step,lr,loss\n0,1e-3,abc\n")
    fit = str(fit_json)
    return {
        "missing curves": ["fit", tmp_path / "missing.csv", "-o", "{out}.json"],
        "malformed csv": ["fit", bad_csv, "-o", "{out}.json"],
        "unknown law": ["fit", TRAIN, "--law", "nope", "-o", "{out}.json"],
        "bad law option": [
            "fit",
            TRAIN,
            "--law",
            "momentum",
            "--option",
            "lam=3",
            "-o",
            "{out}.json",
        ],
        "option with auto": ["fit", TRAIN, "--option", "lam=0.9", "-o", "{out}.json"],
        "unknown dataset": ["fit", "dataset:nope", "-o", "{out}.json"],
        "no matching curve": ["fit", "dataset:multipowerlaw:model=7M", "-o", "{out}.json"],
        "fit error": ["fit", TRAIN, "--until", "2200", "--law", "momentum", "-o", "{out}.json"],
        "unwritable output": ["fit", TRAIN, "--law", "momentum", "-o", not_a_folder / "fit.json"],
        "malformed schedule": [
            "predict",
            fit,
            "--schedule",
            "wsd(peak_lr=3e-4",
            "-o",
            "{out}.json",
        ],
        "bad schedule value": [
            "predict",
            fit,
            "--schedule",
            "cosine(peak_lr=-1, total_steps=10)",
            "-o",
            "{out}.json",
        ],
        "step outside": [
            "predict",
            fit,
            "--schedule",
            COSINE,
            "--steps",
            "30000",
            "-o",
            "{out}.csv",
        ],
        "missing fit": ["predict", tmp_path / "nofit.json", "--schedule", COSINE],
        "not a fit": ["predict", garbage, "--schedule", COSINE, "-o", "{out}.json"],
        "rank no candidates": ["rank", fit, "-o", "{out}.csv"],
        "rank bad suffix": ["rank", fit, "--space", SPACE, "-o", "{out}.txt"],
        "rank bad space": ["rank", fit, "--space", "wsd:peak_lr=1;bogus=2", "-o", "{out}.csv"],
        "rank missing file": ["rank", fit, "--schedules", tmp_path / "none.txt", "-o", "{out}.csv"],
        "plot nothing": ["plot", fit, "-o", "{out}.png"],
        "plot saved fit and law": ["plot", fit, TRAIN, "--law", "power", "-o", "{out}.png"],
        "plot label count": [
            "plot",
            fit,
            "--schedule",
            COSINE,
            "--label",
            "a",
            "--label",
            "b",
            "-o",
            "{out}.png",
        ],
        "bad level": ["predict", fit, "--schedule", COSINE, "--level", "1.5"],
        "no command": [],
        "unknown command": ["frobnicate"],
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing curves",
        "malformed csv",
        "unknown law",
        "bad law option",
        "option with auto",
        "unknown dataset",
        "no matching curve",
        "fit error",
        "unwritable output",
        "malformed schedule",
        "bad schedule value",
        "step outside",
        "missing fit",
        "not a fit",
        "rank no candidates",
        "rank bad suffix",
        "rank bad space",
        "rank missing file",
        "plot nothing",
        "plot saved fit and law",
        "plot label count",
        "bad level",
        "no command",
        "unknown command",
    ],
)
def test_user_errors(case, bad_cases, capsys, tmp_path):
    out = tmp_path / "out" / "result"
    argv = [str(a).replace("{out}", str(out)) for a in bad_cases[case]]
    code, stdout, err = run(capsys, *argv)
    assert code == 2, (case, stdout, err)
    lines = [ln for ln in err.splitlines() if not ln.startswith("lrlaw: warning:")]
    assert len(lines) == 1 and lines[0].startswith("lrlaw: error: "), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_command_as_a_process(fit_json, tmp_path):
    out = tmp_path / "fig.png"
    ok = subprocess.run(
        [sys.executable, "-m", "hf_lrlaw.cli", "predict", str(fit_json), "--schedule", WSD],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "wsd(peak_lr=0.0003" in ok.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_lrlaw.cli",
            "plot",
            str(fit_json),
            "--schedule",
            "wsd(",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("lrlaw: error: ") and len(bad.stderr.splitlines()) == 1
    assert not out.exists()


# -- the plug-in hook (lrlaw search) -----------------------------------------------------------


def test_plugin_subcommands(capsys, tmp_path, monkeypatch):
    (tmp_path / "fake_lrlaw_plugin.py").write_text(
        textwrap.dedent("""
        def add_parser(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.add_argument("--fail", action="store_true")
            p.set_defaults(func=run)
            return p

        def run(args):
            if args.fail:
                raise ValueError("the plug-in refuses")
            print("hello from the plug-in")
            return 0
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        "hf_lrlaw.cli.parser.PLUGINS",
        {
            "hello": ("fake_lrlaw_plugin", "say hello"),
            "absent": ("no_such_package_xyz.cli", "not installed"),
        },
    )
    code, stdout, err = run(capsys, "hello")
    assert code == 0 and "hello from the plug-in" in stdout and not err
    code, stdout, err = run(capsys, "hello", "--fail")
    assert code == 2 and err == "lrlaw: error: the plug-in refuses\n"
    code, stdout, _ = run(capsys, "--help")
    assert "say hello" in stdout and "absent" not in stdout
    code, _, err = run(capsys, "absent")
    assert code == 2 and err.startswith("lrlaw: error: 'lrlaw absent' needs no_such_package_xyz")


def test_lrlaw_does_not_import_ray():
    code = (
        "import sys\n"
        "from hf_lrlaw.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['datasets']) == 0\n"
        "assert 'ray' not in sys.modules, 'lrlaw imported ray'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
