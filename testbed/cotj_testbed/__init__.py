"""cotj's benchmark harness: measures what cotj's plans are worth on the models it ships (:mod:`cotj.models`).

A separate distribution (``cotj-testbed``, this folder), installed from the checkout by the README's set-up
command; the ``cotj`` wheel does not contain it.

- :mod:`cotj_testbed.quality` (with :mod:`~cotj_testbed.quality_tier1`, :mod:`~cotj_testbed.quality_tier2`,
  :mod:`~cotj_testbed.quality_report`): the quality benchmark, front door ``benches/quality.py``.
- :mod:`cotj_testbed.baselines`: the GITS-style and OSS-style schedules from teacher trajectories.
- :mod:`cotj_testbed.classifier`: the attribute classifier behind the prompt-following score.
- :mod:`cotj_testbed.train`: the rectified-flow training of the shapes generator (``python -m cotj_testbed.train``).
- :mod:`cotj_testbed.gallery`: the README's figures (``python -m cotj_testbed.gallery --update`` rewrites docs/gallery/).
- :mod:`cotj_testbed.bench`: the speed and quality tables in one call (``python -m cotj_testbed.bench``).
- :mod:`cotj_testbed.outputs`: where the commands write (runs/, or the committed files with ``--update``), the
  checks of their inputs before a long run, and their progress bars (only on a terminal).
"""
