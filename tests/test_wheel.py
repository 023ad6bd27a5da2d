"""The wheel users install: the library without the harness, and its commands run from it outside the checkout.

Builds the wheel once (``pip wheel --no-deps .``, the maturin backend: a few minutes of Rust), unpacks it into a
folder put first on ``PYTHONPATH`` and runs ``cotj`` from a temporary directory, so neither the checkout's sources
nor the editable harness can stand in for what the wheel lacks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "CARGO_TARGET_DIR": str(tmp_path_factory.mktemp("target"))}  # not the checkout's target/
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("cotj-*.whl")
    return path


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(folder)
    return folder


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_the_wheel_holds_the_library_and_not_the_harness(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "cotj_testbed" in n or "classifier" in n or "quality" in n or "/testbed/" in n]
    for needed in ("cotj/models/weights/shapes_unet.safetensors", "cotj/models/weights/shapes_teacher_cost.json",
                   "cotj/models/weights/shapes_dna_predictor/dna_predictor.safetensors",
                   "cotj/data/mean_dna/qwen-image.json", "cotj/py.typed", "cotj/_core.pyi"):
        assert needed in names, needed
    assert any(n.startswith("cotj/_core.") and n.endswith(".so") for n in names)


def test_plan_and_sample_run_from_the_wheel(site: Path, tmp_path: Path):
    where = run_installed(site, tmp_path, "-c", "import cotj, cotj.models; print(cotj.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the wheel's cotj, not the checkout's
    plan = run_installed(site, tmp_path, "-m", "cotj", "plan", "qwen-image", "--budget", "8", "--format", "json")
    assert plan.returncode == 0, plan.stderr
    assert '"budget": 8' in plan.stdout
    sample = run_installed(site, tmp_path, "-m", "cotj", "sample", "two red circles on the left", "--budget", "4",
                           "--out", "red.png")
    assert sample.returncode == 0, sample.stderr
    assert (tmp_path / "red.png").stat().st_size > 100
    assert "replanned after each step" in sample.stdout
    harness = run_installed(site, tmp_path, "-c", "import cotj.testbed")
    assert harness.returncode != 0 and "No module named 'cotj.testbed'" in harness.stderr


def links(markdown: str) -> list[str]:
    """Every link and image target of a markdown text: inline ``[t](x)`` / ``![a](x)``, reference definitions
    ``[t]: x`` and HTML ``src=`` / ``href=`` attributes."""
    inline = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)", markdown)
    defined = re.findall(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", markdown, flags=re.M)
    html = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", markdown)
    return inline + defined + html


def test_links_finds_every_kind_of_link():
    text = '[a](docs/x.md) ![i](img.png) [c](https://e.org/z) [d](#anchor)\n[b]: ../y.md\n<img src="p.png">'
    assert links(text) == ["docs/x.md", "img.png", "https://e.org/z", "#anchor", "../y.md", "p.png"]


def test_the_long_description_has_no_relative_links(wheel: Path):
    """The wheel's METADATA carries the long description a package index shows: links relative to the checkout
    (docs/..., images) would not resolve there, so every link must be absolute."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(zf.read(name).decode())
    assert metadata["Description-Content-Type"].startswith("text/markdown")
    description = metadata.get_payload() or metadata.get("Description", "")
    assert "Predict" in description and "pip install cotj" in description  # the short description, not empty
    relative = [target for target in links(description) if not re.match(r"https?://", target)]
    assert not relative, relative
