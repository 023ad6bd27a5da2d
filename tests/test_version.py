"""``cotj.__version__`` and ``cotj --version`` match the installed package metadata (the Cargo workspace version)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import cotj


def test_module_version_is_the_metadata_version():
    assert cotj.__version__ == version("cotj")


def test_command_line_version_is_the_metadata_version(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cotj", "--version"], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == f"cotj {version('cotj')}"
