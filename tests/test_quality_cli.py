"""``benches/quality.py``'s command line: reports go to a run folder unless ``--update`` asks for the committed files,
and every input a long run needs is checked before it starts (one line, exit status 2, within seconds)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from cotj_testbed import outputs

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benches" / "quality.py"
SHIPPED = ROOT / "python" / "cotj" / "models" / "weights"


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quality_bench_cli", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quality(*args: object, timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    """``python benches/quality.py ARGS`` from the checkout's root, as a user runs it; (result, seconds)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(BENCH), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "WORLD_SIZE": "1"})  # fmt: skip
    return done, time.monotonic() - start


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line of a refused run (status 2, no usage block, no traceback)."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith("quality.py: error: "), lines[0]
    return lines[0]


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under ``folders``: what a run must leave alone."""
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for folder in folders for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip


def test_missing_dna_folder_fails_within_seconds_naming_it(tmp_path):
    missing = tmp_path / "no_such_dna"
    done, seconds = quality("--tier", "2", "--dna", missing, "--save-predictor")
    line = error_line(done)
    assert str(missing) in line and "--dna" in line and "no such folder" in line
    assert seconds < 10, seconds


@pytest.mark.parametrize(
    ("option", "kind"),
    [("--predictor", "folder"), ("--teacher", "file"), ("--weights", "file"), ("--from-json", "file")],
)
def test_every_missing_input_is_named_before_the_run(tmp_path, option, kind):
    missing = tmp_path / "absent"
    done, seconds = quality("--tier", "2", option, missing)
    line = error_line(done)
    assert f"{option} {missing}: no such {kind}" in line
    assert seconds < 10, seconds


def test_an_incomplete_dna_folder_names_what_it_lacks(tmp_path):
    (tmp_path / "items.json").write_text("{}")
    line = error_line(quality("--tier", "1", "--dna", tmp_path)[0])
    assert str(tmp_path) in line and "dna.npy" in line and "grid.npy" in line and "items.json" not in line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--tier", "1", "--out", "benches/results"), "--out benches/results"),
        (("--tier", "1", "--update", "--out", "benches/results", "--from-json", "no_such.json"), "--from-json no_such.json"),
        (("--tier", "2", "--calibrate", "python/cotj/models/weights/shapes_teacher_cost.json"), "--calibrate python/"),
        (("--tier", "2", "--save-predictor", "python/cotj/models/weights/shapes_dna_predictor"), "--save-predictor python/"),
        (("--tier", "1", "--extract", "benches/tier1_dna"), "--extract benches/tier1_dna"),
        (("--tier", "1", "--quick", "--out", "/tmp", "--save-samples", "samples.npz"), "--save-samples samples.npz"),
    ],
)
def test_committed_paths_and_bad_inputs_are_refused_up_front(args, named):
    before = snapshot(ROOT / "benches" / "results", SHIPPED)
    done, seconds = quality(*args)
    line = error_line(done)
    assert named in line and seconds < 10
    if "--update" not in args:
        assert "--update" in line  # says how to replace the committed files
    assert snapshot(ROOT / "benches" / "results", SHIPPED) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--tier", "1", "--schedules", "uniform,nope"), "--schedules: unknown nope"),
        (("--tier", "1", "--solvers", "euler,nope"), "--solvers: unknown nope"),
        (("--tier", "1", "--ks", "4,0"), "--ks"),
        (("--tier", "1", "--threads", "0"), "--threads"),
        (("--tier", "1", "--validation"), "are for Tier 2"),
        (("--tier", "2", "--predictor", "x", "--save-predictor"), "--save-predictor"),
    ],
)
def test_bad_arguments_are_one_line(args, expected):
    assert expected in error_line(quality(*args)[0])


def test_default_outputs_are_run_folders_and_update_names_the_committed_files():
    bench = bench_module()
    parse = bench.parser().parse_args
    paths = bench.check(parse(["--tier", "2", "--calibrate"]))
    assert paths["out"] == outputs.RUNS / "quality" and paths["calibrate"] == outputs.RUNS / "quality" / "shapes_teacher_cost.json"
    assert not any(outputs.committed(p) for p in paths.values())
    paths = bench.check(parse(["--tier", "2", "--save-predictor", "--update"]))
    assert paths["out"] == ROOT / "benches" / "results" and paths["save_predictor"] == SHIPPED / "shapes_dna_predictor"
    assert all(outputs.committed(p) for p in paths.values())
    paths = bench.check(parse(["--tier", "2", "--calibrate", "--update"]))
    assert paths["calibrate"] == SHIPPED / "shapes_teacher_cost.json"


def test_a_default_run_writes_its_run_folder_and_nothing_in_the_checkout(tmp_path):
    """The quick Tier 1 run with no --out, from the checkout's root (the run folder moved to tmp_path)."""
    run = tmp_path / "runs" / "quality"
    code = ("import importlib.util, pathlib, sys\n"
            f"spec = importlib.util.spec_from_file_location('q', {str(BENCH)!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "m.RUN = pathlib.Path(sys.argv[1])\n"
            "sys.exit(m.main(sys.argv[2:]))\n")  # fmt: skip
    watched = (ROOT / "benches" / "results", SHIPPED, ROOT / "docs" / "gallery")
    before, top = snapshot(*watched), sorted(p.name for p in ROOT.iterdir())
    done = subprocess.run([sys.executable, "-c", code, str(run), "--tier", "1", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name for p in run.iterdir()} == {f"quality_tier1_quick{s}" for s in (".json", ".md", "_psnr.png", "_costs.png")}
    assert snapshot(*watched) == before and sorted(p.name for p in ROOT.iterdir()) == top
    assert "%|" not in done.stderr and "\r" not in done.stderr  # no progress bars when stderr is not a terminal
