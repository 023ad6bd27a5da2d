"""Deprecated alias of :mod:`cotj.planning.multistep`."""

from cotj._deprecation import alias_module

alias_module(__name__, "cotj.planning.multistep")
