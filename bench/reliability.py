"""Bad input and edge cases against the CLI and the API: what each gives, one case a line.

Each case runs in a fresh process, in a scratch folder holding a saved fit and a few input files,
with its address space capped at 4 GB and a 120 s limit (so a case that tried to allocate
terabytes shows as a MemoryError instead of taking the machine down). Printed per case: the
exit status and the last line of its output. Run it on another checkout to compare, e.g. the
code before a change:

    python bench/reliability.py                          # this checkout
    PYTHONPATH=/path/to/old/checkout python bench/reliability.py

The table of docs/reliability.md comes from these two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SETUP = """
import gzip, json, numpy as np, hf_lrlaw
train, _ = hf_lrlaw.datasets.multipowerlaw_split("25M")
hf_lrlaw.fit(train, "momentum").save("fit.json")
hf_lrlaw.fit(train[:2], "momentum").save("one.json")
hist = []
for g in range(1, 201):
    lr = 1e-3 * min(1.0, (g - 1) / 20)
    hist.append({"step": g, "loss": 5 * (g + 10) ** -0.3 + 1.0, "learning_rate": lr, "epoch": 0})
    if g % 5 == 0:
        hist.append({"step": g, "eval_loss": 5 * (g + 10) ** -0.3 + 1.05, "epoch": 0})
json.dump({"log_history": hist, "max_steps": 200, "global_step": 200}, open("trainer_state.json", "w"))
rows = "".join(f"{s},1e-3,{3 - s * 1e-4}\\n" for s in range(1, 500))
open("stray.csv", "w").write("step,lr,loss\\n" + rows + "999999999999,1e-3,2.0\\n")
d = json.load(open("fit.json"))
def bad(name, change):
    x = json.loads(json.dumps(d)); change(x); json.dump(x, open(name, "w"))
bad("cov_shape.json", lambda x: x.update(cov=[[1.0, 2.0], [3.0, 4.0]]))
bad("cov_nan.json", lambda x: x["cov"][0].__setitem__(0, None))
bad("short_log_params.json", lambda x: x.update(log_params=x["log_params"][:2]))
bad("negative_l0.json", lambda x: x["params"].update(L0=-1.0))
bad("missing_param.json", lambda x: x["params"].pop("alpha"))
bad("no_schema.json", lambda x: x.pop("schema"))
open("fit.json.gz", "wb").write(gzip.compress(b"not json at all"))
open("bom.txt", "wb").write("\\ufeffwsd(peak_lr=3e-4, total_steps=24000, warmup_steps=2160)\\n".encode())
"""

W = "total_steps=24000, warmup_steps=2160"
CASES: list[tuple[str, str, str]] = [
    # (issue item, what, command: "lrlaw ..." or python code)
    (
        "1",
        "trainer_state, logging_steps=1, warmup from LR 0",
        "lrlaw fit trainer_state.json --law momentum",
    ),
    (
        "1",
        "--metric eval_loss --min-step 20",
        "lrlaw fit trainer_state.json --law momentum --metric eval_loss --min-step 20",
    ),
    (
        "3",
        "a schedule of total_steps=1e9",
        'lrlaw predict fit.json --schedule "cosine(peak_lr=3e-4, total_steps=1000000000)"',
    ),
    ("3", "a CSV with one stray step 999999999999", "lrlaw fit stray.csv --law momentum"),
    (
        "3",
        "rank 20 candidates of 1e7 steps",
        'lrlaw rank fit.json --space "wsd:peak_lr=3e-4;total_steps=10000000;warmup_steps=2160;decay_fraction=lin(0.05,0.9,20)"',
    ),
    (
        "4",
        "rank with a candidate at 100x the fitted peak LR",
        f'lrlaw rank fit.json --schedule "wsd(peak_lr=3e-2, {W}, decay_fraction=0.5)" --schedule "wsd(peak_lr=3e-4, {W}, decay_fraction=0.2)"',
    ),
    (
        "4",
        "predict a schedule out of the law's domain",
        f'lrlaw predict fit.json --schedule "wsd(peak_lr=3e-2, {W}, decay_fraction=0.5)"',
    ),
    (
        "4",
        "predict_interval(level=1)",
        "f = hf_lrlaw.Fit.load('fit.json'); print(f.predict_interval(np.full(100, 3e-4), level=1))",
    ),
    (
        "4",
        "predict(np.zeros(100))",
        "f = hf_lrlaw.Fit.load('fit.json'); print(f.predict(np.zeros(100)))",
    ),
    (
        "4",
        "a fit of losses near 1e300 saved as JSON",
        "c = hf_lrlaw.LossCurve(np.full(1000, 1e-3), np.arange(50, 1000, 50), 1e300 * (2 + np.arange(50, 1000, 50) ** -0.3)); hf_lrlaw.fit(c, 'power').save('huge.json'); json.loads(open('huge.json').read(), parse_constant=lambda c: 1 / 0); print('valid JSON')",
    ),
    (
        "5",
        "rank ... -o naming its input fit",
        'lrlaw rank one.json --schedule "wsd(decay_fraction=0.2)" -o one.json',
    ),
    (
        "5",
        "fit -o over a 600 file keeps 600",
        "import os, stat; from hf_lrlaw.cli import main; os.chmod('one.json', 0o600); main(['fit', 'dataset:multipowerlaw:model=25M,split=train', '--law', 'momentum', '-o', 'one.json']); print(oct(stat.S_IMODE(os.stat('one.json').st_mode)))",
    ),
    (
        "6",
        "a fit whose covariance has the wrong shape",
        f'lrlaw predict cov_shape.json --schedule "cosine(peak_lr=3e-4, {W})"',
    ),
    (
        "6",
        "a fit whose covariance holds a NaN",
        f'lrlaw predict cov_nan.json --schedule "cosine(peak_lr=3e-4, {W})"',
    ),
    (
        "6",
        "a fit with short log_params",
        f'lrlaw predict short_log_params.json --schedule "cosine(peak_lr=3e-4, {W})"',
    ),
    (
        "6",
        "a fit with a negative L0",
        f'lrlaw predict negative_l0.json --schedule "cosine(peak_lr=3e-4, {W})"',
    ),
    (
        "6",
        "a fit missing a parameter",
        f'lrlaw predict missing_param.json --schedule "cosine(peak_lr=3e-4, {W})"',
    ),
    (
        "6",
        "a fit without its schema",
        f'lrlaw predict no_schema.json --schedule "cosine(peak_lr=3e-4, {W})"',
    ),
    (
        "6",
        "a gzip file passed as a fit",
        f'lrlaw predict fit.json.gz --schedule "cosine(peak_lr=3e-4, {W})"',
    ),
    ("6", "a --schedules file with a BOM", "lrlaw predict fit.json --schedules bom.txt"),
    (
        "7",
        "fit(delta=-1)",
        "print(hf_lrlaw.fit(hf_lrlaw.datasets.multipowerlaw_split('25M')[0], 'momentum', delta=-1).goodness.r2)",
    ),
    (
        "7",
        "fit(delta=0)",
        "print(hf_lrlaw.fit(hf_lrlaw.datasets.multipowerlaw_split('25M')[0], 'momentum', delta=0).goodness.r2)",
    ),
    (
        "7",
        "fit(n_starts=2.5)",
        "print(hf_lrlaw.fit(hf_lrlaw.datasets.multipowerlaw_split('25M')[0], 'momentum', n_starts=2.5))",
    ),
    (
        "7",
        "fit(n_starts=0)",
        "print(hf_lrlaw.fit(hf_lrlaw.datasets.multipowerlaw_split('25M')[0], 'momentum', n_starts=0).law)",
    ),
    (
        "7",
        "fit(law=None)",
        "print(hf_lrlaw.fit(hf_lrlaw.datasets.multipowerlaw_split('25M')[0], law=None).law)",
    ),
    (
        "7",
        "LRLawSearcher(law='nope')",
        "from tune_search import LRLawSearcher; s = LRLawSearcher(['constant(peak_lr=1e-3, total_steps=100)'], law='nope'); print('accepted')",
    ),
    (
        "7",
        "LRLawCallback(prior='/nonexistent.json')",
        "from hf_lrlaw import LRLawCallback; LRLawCallback(prior='/nonexistent.json'); print('accepted')",
    ),
    (
        "7",
        "LRLawCallback(candidates='wsd(...)') (a string)",
        "from hf_lrlaw import LRLawCallback; LRLawCallback(candidates='wsd(decay_fraction=0.2)'); print('accepted')",
    ),
    (
        "8",
        "a search whose trials never report the metric",
        "from tune_search import LRLawSearcher, ScheduleSpace; from tune_search.simulate import SimulatedWorld; from tune_search.testing import drive; w = SimulatedWorld(law='momentum'); s = LRLawSearcher(ScheduleSpace(w.peak_lr, w.total_steps, w.warmup_steps), metric='eval_loss', law_options=w.fit_options('momentum')); r = drive(w, s, metric='loss'); print(f'{r.full_runs:.1f} full runs; finished: {s.finished_reason}')",
    ),
]


def run(code_or_command: str, cwd: Path, env: dict[str, str]) -> tuple[int | str, str]:
    if code_or_command.startswith("lrlaw "):
        code = f"import sys, shlex; from hf_lrlaw.cli import main; sys.exit(main(shlex.split({code_or_command[6:]!r})))"
    else:
        code = "import json, numpy as np, hf_lrlaw\n" + code_or_command
    limit = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    """)
    try:
        done = subprocess.run(
            [sys.executable, "-c", limit + code], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "timeout", "(ran past 120 s)"
    lines = [x for x in (done.stderr + done.stdout).splitlines() if x.strip()]
    useful = [x for x in lines if not x.startswith(("  ", "Traceback"))] or lines
    return done.returncode, (useful[-1] if useful else "")[:200]


def compare(before: str, after: str) -> str:
    """The markdown table of two runs: each case, its command, and what each run gave."""
    old = {r["case"]: r for r in json.loads(Path(before).read_text())}
    lines = [
        "| item | case | before | after |",
        "|---|---|---|---|",
    ]
    for r in json.loads(Path(after).read_text()):
        b = old.get(r["case"])

        def cell(x: dict | None) -> str:
            if x is None:
                return "-"
            return f"exit {x['exit']}: {x['output']}".replace("|", "/")

        lines.append(f"| {r['item']} | {r['case']} (`{r['command']}`) | {cell(b)} | {cell(r)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument(
        "--compare",
        nargs=2,
        metavar=("BEFORE.json", "AFTER.json"),
        help="print the markdown table of two runs' --json files instead of running",
    )
    args = ap.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    import hf_lrlaw

    print(f"# reliability cases against {Path(hf_lrlaw.__file__).parent.parent}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", SETUP], cwd=tmp, env=env, check=True)
        for item, what, command in CASES:
            code, last = run(command, Path(tmp), env)
            results.append(
                {"item": item, "case": what, "command": command, "exit": code, "output": last}
            )
            print(f"| {item} | {what} | {code} | {last.replace('|', '/')} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
