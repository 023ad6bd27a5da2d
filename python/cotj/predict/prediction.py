"""Deprecated alias of :mod:`cotj.paths`."""

from cotj._deprecation import alias_module

alias_module(__name__, "cotj.paths")
