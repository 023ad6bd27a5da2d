"""cotj: Chain-of-Trajectories planning of diffusion sampling, per prompt.

Predict the Diffusion DNA of a condition (:mod:`cotj.predict`, needs torch), Plan the cheapest
schedule over a graph of noise levels (:mod:`cotj.planning`, numpy only), Execute it with an ordinary
solver (:mod:`cotj.execute`, needs diffusers). The torch-based subpackages load on first access,
so ``import cotj`` never imports torch.

>>> import numpy as np, cotj
>>> dna = np.linspace(0.001, 0.2, 100) ** 1.5          # one row: N = 100 levels, t = 0.01 .. 1
>>> p = cotj.plan(dna, budget=8)
>>> p.budget, bool(np.all(np.diff(p.levels) < 0))
(8, True)
"""

import importlib
from typing import Any

from cotj import _deprecation
from cotj._core import MAX_LEVELS, __version__
from cotj.planning import *  # noqa: F403  (the Plan API: cotj.planning.__all__)
from cotj.planning import __all__ as _plan_api

__all__ = ["MAX_LEVELS", "__version__", *_plan_api]

_LAZY = {"predict", "execute", "analysis", "paths", "models", "cli", "integrations"}
_MOVED = {"plots": "cotj.analysis.plots", "diagnose": "cotj.analysis.diagnose"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"cotj.{name}")
    if name in _MOVED:
        _deprecation.warn(f"cotj.{name}", _MOVED[name])
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'cotj' has no attribute {name!r}")
