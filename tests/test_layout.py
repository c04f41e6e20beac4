"""The package's shape holds: layers import only downward, no module imports another in a cycle,
only tune_search imports Ray, and the law core and the CLI work without the optional extras."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hf_lrlaw", "tune_search")

# Lowest first: a module may import modules of its own layer or of lower ones, never higher.
LAYERS: list[tuple[str, ...]] = [
    (
        "hf_lrlaw._version",
        "hf_lrlaw._extras",
        "hf_lrlaw.files",
        "hf_lrlaw.limits",
        "hf_lrlaw.threads",
    ),
    ("hf_lrlaw.schedules", "hf_lrlaw.laws"),  # the pure numpy core
    ("hf_lrlaw.curves",),
    ("hf_lrlaw.datasets",),
    ("hf_lrlaw.fit_result",),  # fitting: the Fit value, priors made of Fits, the objective, fit()
    ("hf_lrlaw.priors",),
    ("hf_lrlaw._objective",),
    ("hf_lrlaw.fitting",),
    ("hf_lrlaw.ranking",),
    (
        "hf_lrlaw.backtest",
        "hf_lrlaw.evaluation",
        "hf_lrlaw.optimum",
        "hf_lrlaw.peak_lr",
        "hf_lrlaw.plots",
    ),
    ("hf_lrlaw.callback", "hf_lrlaw.cli", "hf_lrlaw.testing"),  # adapters
    ("hf_lrlaw",),  # the public API: the package's __init__
    ("tune_search",),
]
OPTIONAL = {"torch", "transformers", "accelerate", "ray"}
# Modules of the core that may import an optional dependency, inside the function that needs it.
LAZY_OPTIONAL = {"hf_lrlaw.schedules.lambda_lr": {"torch"}}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    best, found = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found >= 0, f"{module} is in no layer of tests/test_layout.py"
    return found


def _imports(module: str) -> list[tuple[str, bool, bool]]:
    """(imported module, at module level, under TYPE_CHECKING) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, bool, bool]] = []

    def visit(node: ast.AST, top: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, top, True)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, top, typing_only) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - child.level + 1]
                        + ([base] if base else [])
                    )
                for a in child.names:
                    name = f"{base}.{a.name}"
                    out.append((name if name in MODULES else base, top, typing_only))
            inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not inner, typing_only)

    visit(tree, True, False)
    return out


def test_every_module_is_in_a_layer_and_imports_only_downward():
    wrong = []
    for module in MODULES:
        mine = _layer(module)
        for target, _, typing_only in _imports(module):
            if typing_only or target.split(".")[0] not in PACKAGES:
                continue
            theirs = _layer(target)
            if theirs > mine:
                wrong.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {
        m: {t for t, top, typing in _imports(m) if top and not typing and t in MODULES}
        for m in MODULES
    }
    # a package's __init__ is imported before any of its modules: a module that imports names
    # from its own package's __init__ closes a cycle through it
    for m in MODULES:
        package = m.rpartition(".")[0]
        if MODULES[m].name != "__init__.py" and package in graph.get(m, set()):
            pytest.fail(f"{m} imports from its own package's __init__ ({package})")
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        seen[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in seen:
                walk(nxt)
        path.pop()
        seen[node] = 2

    for m in sorted(graph):
        if m not in seen:
            walk(m)


def test_only_tune_search_imports_ray_and_the_core_no_optional_dependency():
    wrong = []
    for module in MODULES:
        for target, top, typing_only in _imports(module):
            root = target.split(".")[0]
            if typing_only or root not in OPTIONAL:
                continue
            if root == "ray" and not module.startswith("tune_search"):
                wrong.append(f"{module} imports {target}")
            core = _layer(module) <= _layer("hf_lrlaw.plots")
            allowed = LAZY_OPTIONAL.get(module, set())
            if core and not (root in allowed and not top):
                wrong.append(f"{module} (the core) imports {target}")
    assert not wrong, "\n".join(wrong)


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class Missing(importlib.abc.MetaPathFinder):
        # the optional extras, as on a machine where only the core is installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "accelerate", "ray"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
""")


def _without_extras(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "no_extras.py"
    script.write_text(BLOCKER + textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=240
    )


def test_the_core_and_the_cli_work_without_the_extras(tmp_path):
    run = _without_extras(
        """
        import hf_lrlaw
        from hf_lrlaw.cli import main
        train, _ = hf_lrlaw.datasets.multipowerlaw_split("25M")
        hf_lrlaw.write_csv(train, "train.csv")
        code = main(["fit", "train.csv", "--law", "momentum", "-o", "fit.json"])
        assert code == 0, code
        code = main(["rank", "fit.json", "--space", "wsd:peak_lr=3e-4;total_steps=24000;"
                     "warmup_steps=2160;decay_fraction=0.1,0.2", "--plot", "rank.png"])
        assert code == 0, code
        assert not {"torch", "transformers", "ray"} & set(sys.modules)
        print("core ok")
    """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "core ok" in run.stdout


def test_a_missing_extra_says_which_to_install(tmp_path):
    run = _without_extras(
        """
        import hf_lrlaw
        for what in ("hf_lrlaw.LRLawCallback", "tune_search"):
            try:
                hf_lrlaw.LRLawCallback if what.startswith("hf_lrlaw") else __import__(what)
            except ImportError as exc:
                print(what, "->", exc)
        from hf_lrlaw.cli import main
        print("search exit", main(["search", "--simulate", "100M"]))
    """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any("LRLawCallback ->" in x and "pip install 'hf-lrlaw[hf]'" in x for x in lines)
    assert any(x.startswith("tune_search ->") and "'hf-lrlaw[tune]'" in x for x in lines)
    assert "search exit 2" in lines
    errors = [x for x in run.stderr.splitlines() if x.startswith("lrlaw: error:")]
    assert len(errors) == 1 and "hf-lrlaw[tune]" in errors[0]
