"""Old import paths and keywords that keep working, with a DeprecationWarning, for one release."""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_level() -> int:
    """The stack level of the first caller outside this package (and outside the import machinery), so that the
    warning names the user's line and Python's default filters show it."""
    frame, level = sys._getframe(2), 2
    while frame is not None:
        name = frame.f_code.co_filename
        internal = "importlib" in name and "_bootstrap" in name  # frames the warnings module skips, uncounted
        if not internal and not name.startswith(_PACKAGE):
            break
        frame, level = frame.f_back, level + (not internal)  # type: ignore[assignment]
    return level


def warn(old: str, new: str, stacklevel: int | None = None) -> None:
    """One DeprecationWarning: ``old`` is deprecated, use ``new``; attributed to the caller outside cotj."""
    warnings.warn(f"{old}: deprecated, goes in the next release; use {new}", DeprecationWarning,
                  stacklevel=stacklevel or _caller_level())


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


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """Decorate a function whose keywords were renamed: an old keyword still works, warning, for one release."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got {old}= and {new}=: give {new}= only")
                    warn(f"{fn.__name__}({old}=...)", f"{fn.__name__}({new}=...)")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
