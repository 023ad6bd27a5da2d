"""Old import paths and keywords that keep working, with a DeprecationWarning, for one release."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from typing import Any


def warn(old: str, new: str, stacklevel: int = 3) -> None:
    """One DeprecationWarning: ``old`` is deprecated, use ``new``."""
    warnings.warn(f"{old} is deprecated and goes in the next release: use {new}", DeprecationWarning,
                  stacklevel=stacklevel)


def alias_module(old: str, new: str) -> None:
    """Make the module ``old`` (being imported) an alias of ``new``, warning once at import."""
    warn(f"the module {old}", new)
    sys.modules[old] = importlib.import_module(new)


def moved_names(module: str, moved: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves names moved elsewhere (``name -> new module``), warning on each use."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warn(f"{module}.{name}", f"{moved[name]}.{name}")
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__
