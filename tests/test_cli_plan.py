"""``cotj plan`` and the command line's shape: JSON that matches the Python API, stdin, one-line
errors, --help everywhere, numpy-only start-up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cotj
from cli_helpers import QWEN, ROOT, TURBO, one_line_error
from cli_helpers import cotj as run_cotj
from cotj.cli import build_parser, main


def _rows() -> np.ndarray:
    return np.stack([cotj.load_dna(QWEN), cotj.load_dna(TURBO)])


def _assert_same(records: list[dict], batch: cotj.PlanBatch) -> None:
    assert len(records) == len(batch)
    for rec, p in zip(records, batch):
        assert rec["steps"] == p.steps.tolist()
        np.testing.assert_array_equal(rec["levels"], p.levels)
        assert rec["cost"] == p.cost and rec["budget"] == p.budget
        if p.ratio is None:
            assert "ratio" not in rec and "curve" not in rec
        else:
            want_r = [None if not np.isfinite(v) else v for v in p.ratio.tolist()]
            want_c = [None if not np.isfinite(v) else v for v in p.curve.tolist()]
            assert rec["ratio"] == want_r and rec["curve"] == want_c


def test_json_matches_plan_batch_with_per_row_budgets(tmp_path):
    dna = _rows()
    np.save(tmp_path / "dna.npy", dna)
    done = run_cotj("plan", tmp_path / "dna.npy", "--budget", "4,10", "--format", "json")
    assert done.returncode == 0, done.stderr
    _assert_same(json.loads(done.stdout), cotj.plan_batch(dna, np.array([4, 10])))


def test_adaptive_json_from_stdin_with_windows_matches_plan_batch():
    dna = _rows()
    text = "\n".join(json.dumps(r.tolist()) for r in dna)  # one JSON array per line
    done = run_cotj("plan", "-", "--tau", "0.95", "--max-steps", "12", "--first", "3", "--last", "bottom",
                    "--format", "json", stdin=text)
    assert done.returncode == 0, done.stderr
    want = cotj.plan_batch(dna, tau=0.95, max_steps=12, first=3, last="bottom")
    records = json.loads(done.stdout)
    _assert_same(records, want)
    assert all(r["levels"][-1] == 0.01 for r in records)  # pinned to the bottom level


def test_csv_on_stdin_and_a_grid_file(tmp_path):
    grid = np.linspace(0.05, 1.0, 20) ** 1.5
    dna = np.linspace(0.001, 0.5, 20) ** 2
    np.savetxt(tmp_path / "grid.csv", grid[None], delimiter=",")
    csv = ",".join(map(repr, dna.tolist()))
    done = run_cotj("plan", "-", "--budget", "5", "--grid", tmp_path / "grid.csv", "--format", "json", stdin=csv)
    assert done.returncode == 0, done.stderr
    _assert_same(json.loads(done.stdout), cotj.plan_batch(dna[None], 5, grid=grid))


def test_table_shows_k_cost_ratio_and_levels():
    done = run_cotj("plan", QWEN, "--tau", "0.99", "--max-steps", "50")
    assert done.returncode == 0, done.stderr
    p = cotj.plan(cotj.load_dna(QWEN), tau=0.99, max_steps=50)
    header, row = done.stdout.splitlines()[:2]
    assert header.split()[:4] == ["row", "K", "cost", "R(K)"]
    cells = row.split()
    assert int(cells[1]) == p.budget and float(cells[2]) == pytest.approx(p.cost, rel=1e-5)
    assert float(cells[3]) == pytest.approx(p.ratio[p.budget - 1], abs=1e-4)
    np.testing.assert_allclose([float(v) for v in cells[4:]], p.levels, atol=5e-3)


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["plan", "missing.npy"], None, "missing.npy"),
        (["plan", "{nan}"], None, "finite"),
        (["plan", str(QWEN), "--format", "xml"], None, "--format"),
        (["plan", str(QWEN), "--first", "top2"], None, "--first"),
        (["plan", str(QWEN), "--budget", "500"], None, "budget"),
        (["plan", str(QWEN), "--budget", "4", "--tau", "0.9"], None, "--tau"),
        (["plan", "-"], "1,2,x", "stdin"),
        (["plan", "{nokey}"], None, "'dna'"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(args, stdin, needle, tmp_path):
    (tmp_path / "nan.csv").write_text("0.1,0.2,nan,0.4\n")
    (tmp_path / "nokey.json").write_text('{"rows": [1, 2, 3]}')
    args = [a.format(nan=tmp_path / "nan.csv", nokey=tmp_path / "nokey.json") for a in args]
    done = run_cotj(*args, stdin=stdin)
    assert needle in one_line_error(done, "plan")
    assert done.stdout == ""


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "nan.csv").write_text("0.1,nan\n")
    done = run_cotj("plan", tmp_path / "nan.csv", "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "finite" in done.stderr


def _every_command(parser):
    """Argument lists reaching every (sub)command of the parser."""
    for action in parser._actions:  # argparse keeps subparsers here
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for name, sub in action.choices.items():
                yield [name]
                yield from ([name, *rest] for rest in _every_command(sub))


def test_every_command_has_help(capsys):
    commands = list(_every_command(build_parser()))
    names = {c[0] for c in commands}
    assert {"plan", "dna", "train-predictor", "predict", "sample", "calibrate", "plot", "diagnose"} == names  # the harness's are not here
    assert ["plot", "cost"] in commands
    for cmd in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*cmd, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: cotj {' '.join(cmd)}"), cmd


def test_plan_stays_numpy_only():
    code = textwrap.dedent(f"""
        import sys, contextlib, io
        from cotj.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["plan", {str(QWEN)!r}, "--format", "json"]) == 0
        print(sorted(m for m in ("torch", "matplotlib", "diffusers") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_console_script_and_python_m_agree():
    script = Path(sys.executable).parent / "cotj"
    if not script.exists():
        pytest.skip("the cotj console script is not installed next to this interpreter")
    by_script = subprocess.run([str(script), "plan", str(TURBO), "--budget", "3", "--format", "json"],
                               capture_output=True, text=True, timeout=60)
    by_module = run_cotj("plan", TURBO, "--budget", "3", "--format", "json")
    assert by_script.returncode == 0 and by_script.stdout == by_module.stdout
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"cotj {cotj.__version__}"


def test_shipped_mean_dna_by_name_from_any_directory(tmp_path):
    done = run_cotj("plan", "z-image-turbo", "--budget", "6", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (rec,) = json.loads(done.stdout)
    want = cotj.plan(cotj.mean_dna("z-image-turbo"), 6)
    assert rec["steps"] == want.steps.tolist() and rec["cost"] == pytest.approx(want.cost)
    missing = run_cotj("plan", "qwen-imag", "--budget", "6", cwd=tmp_path)
    line = one_line_error(missing, "plan")
    assert "qwen-imag" in line and "qwen-image" in line and "z-image-turbo" in line
