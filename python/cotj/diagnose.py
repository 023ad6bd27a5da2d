"""Deprecated alias of :mod:`cotj.analysis.diagnose`."""

from cotj._deprecation import alias_module

alias_module(__name__, "cotj.analysis.diagnose")
