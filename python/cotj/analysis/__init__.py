"""Analysis: what a DNA says (:mod:`cotj.analysis.diagnose`) and the figures (:mod:`cotj.analysis.plots`, needs
matplotlib)."""
