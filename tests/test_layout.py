"""The package layout's one dependency rule, ``planning <- paths <- {predict, execute}``, no import cycles, and the
old import paths that still work for one release (each with a DeprecationWarning)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "cotj"
STAGES = ("planning", "paths", "predict", "execute", "analysis", "models", "cli", "integrations")
ALLOWED = {
    "planning": set(),
    "paths": {"planning"},
    "predict": {"planning", "paths"},
    "execute": {"planning", "paths"},
    "analysis": {"planning", "paths", "execute"},
    "models": {"planning", "paths", "predict", "execute"},
}
"""Which stages each stage may import (lazily or not); ``cli`` and ``integrations`` sit on top."""


def _modules() -> dict[str, Path]:
    out = {"cotj._core": PACKAGE / "_core.pyi"}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The cotj modules ``name`` imports anywhere in its body (function-level imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*head, base] if base else head)
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    resolved = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: (_imports(name, path, known) if path.suffix == ".py" else set()) for name, path in known.items()}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_stages_import_only_what_the_rule_allows() -> None:
    broken = []
    for module, targets in _graph().items():
        stage = _stage(module)
        if stage not in ALLOWED:
            continue
        for target in targets:
            other = _stage(target)
            if other is not None and other != stage and other not in ALLOWED[stage]:
                broken.append(f"{module} imports {target}")
            if stage == "planning" and target == "cotj":
                broken.append(f"{module} imports the top-level package")
    assert not broken, broken


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.split()


@pytest.mark.slow
@pytest.mark.diffusers
def test_execute_loads_no_predict_module() -> None:
    loaded = _loaded_after("import cotj.execute")
    assert "cotj.execute.pipeline" in loaded
    assert not [m for m in loaded if m == "cotj.predict" or m.startswith("cotj.predict.")]


def test_import_cotj_loads_numpy_only() -> None:
    loaded = _loaded_after("import cotj")
    assert "cotj.planning.planner" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "diffusers", "matplotlib")]
    assert not [m for m in loaded if _stage(m) not in (None, "planning")]


MOVED_MODULES = {
    "cotj.objectives": "cotj.planning.objectives",
    "cotj.multistep": "cotj.planning.multistep",
    "cotj.dna": "cotj.planning.dna",
    "cotj.schedules": "cotj.planning.schedules",
    "cotj.plots": "cotj.analysis.plots",
    "cotj.diagnose": "cotj.analysis.diagnose",
    "cotj.predict.prediction": "cotj.paths",
}


def _warns(statement: str, check: str) -> str:
    """Run ``statement`` in a fresh interpreter recording warnings; ``check`` must hold; returns the messages."""
    code = ("import warnings\nwarnings.simplefilter('always')\nwith warnings.catch_warnings(record=True) as w:\n"
            f"    {statement}\nassert {check}, 'check failed'\n"
            "print('\\n'.join(f'{x.category.__name__}: {x.message}' for x in w))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_old_module_paths_still_work_and_warn(old: str, new: str) -> None:
    if "plots" in old:
        pytest.importorskip("matplotlib")
    if "diagnose" in old or "prediction" in old:
        pytest.importorskip("torch")
    out = _warns(f"import {old} as old_module; import {new} as new_module", "old_module is new_module")
    assert f"DeprecationWarning: the module {old}: deprecated" in out and new in out


@pytest.mark.parametrize(("statement", "check", "new"), [
    ("from cotj.planning.multistep import SOLVERS", "list(SOLVERS)[-1] == 'unipc'", "cotj.planning.solvers.SOLVERS"),
    ("from cotj.predict.teacher import clean_estimate", "clean_estimate.__module__ == 'cotj.paths'",
     "cotj.paths.clean_estimate"),
    ("import cotj; f = cotj.plots.dna_curves", "f.__module__ == 'cotj.analysis.plots'", "cotj.analysis.plots"),
])
def test_old_names_still_work_and_warn(statement: str, check: str, new: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out = _warns(statement, check)
    assert "DeprecationWarning" in out and new in out, out
