"""The harness's command lines (``cotj_testbed``, not in the cotj wheel): the tables in one call and the README
gallery."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from cli_helpers import png_size


def bench(*args: object) -> subprocess.CompletedProcess:
    """``python -m cotj_testbed.bench ARGS``, output captured."""
    return subprocess.run([sys.executable, "-m", "cotj_testbed.bench", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TQDM_DISABLE": "1"})


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line of a failed run (status 2, no traceback)."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("python -m cotj_testbed.bench: error: "), lines[0]
    return lines[0]


def test_bench_calls_the_speed_benchmark_and_reports_missing_quality(tmp_path):
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "speed.py").write_text(textwrap.dedent("""
        def run(threads, quick):
            return {"threads": threads, "quick": quick}

        def table(both, one):
            return f"| both {both['threads']} {both['quick']} | one {one['threads']} |"
    """))
    done = bench("--benches", benches, "--quick")
    assert done.returncode == 0, done.stderr
    assert "| both None True | one 1 |" in done.stdout  # both cores, then RAYON_NUM_THREADS=1
    missing = bench("--benches", benches, "--quality")
    assert "quality.py" in error_line(missing)
    (benches / "quality.py").write_text("import sys\nprint('| quality | ' + ' '.join(sys.argv[1:]) + ' |')\n")
    written = bench("--benches", benches, "--quality", "--quick", "--out", tmp_path / "tables.md")
    assert written.returncode == 0, written.stderr
    text = (tmp_path / "tables.md").read_text()
    assert "## Speed" in text and "## Quality" in text and "| quality | --tier 1 --quick |" in text
    only = bench("--benches", benches, "--quality", "--no-speed", "--tier", "2", "--weights", "w.safetensors")
    assert only.returncode == 0, only.stderr
    assert "## Speed" not in only.stdout and "| quality | --tier 2 --weights w.safetensors |" in only.stdout
    nowhere = bench("--benches", tmp_path / "nope")
    assert "speed.py" in error_line(nowhere)


def test_gallery_without_models_writes_small_real_figures(tmp_path):
    from cotj_testbed.gallery import make

    written = make(tmp_path, models=False)
    names = {"dna_real.png", "cost_heatmap.png", "ratio_knee.png", "gains.png", "schedules.png"}
    assert {p.name for p in written} == {p.name for p in tmp_path.iterdir()} == names
    for name in names:
        png_size(tmp_path / name)
        assert (tmp_path / name).stat().st_size < 150_000
