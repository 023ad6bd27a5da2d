"""Deprecated alias of :mod:`cotj.analysis.plots`."""

from cotj._deprecation import alias_module

alias_module(__name__, "cotj.analysis.plots")
