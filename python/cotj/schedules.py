"""Deprecated alias of :mod:`cotj.planning.schedules`."""

from cotj._deprecation import alias_module

alias_module(__name__, "cotj.planning.schedules")
