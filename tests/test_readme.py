"""The README's Python examples run as written, from a directory outside the checkout (as after ``pip install``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    assert ROOT not in tmp_path.resolve().parents
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
