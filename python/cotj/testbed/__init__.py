"""The project's own testbed: models whose DNA, samples and prompt-following can be measured offline.

- :mod:`cotj.testbed.analytic` (Tier 1): Gaussian-mixture data with a closed-form ideal denoiser, as a flow
  (velocity) model and a VP (epsilon) model, and the exact probability-flow ODE endpoint.
- :mod:`cotj.testbed.shapes`: procedural 24x24 shape scenes and their prompt grammar.
- :mod:`cotj.testbed.text`: MiniLM prompt embeddings (offline, cached).
- :mod:`cotj.testbed.model` (Tier 2): the pixel-space text-to-image UNet and its Diffusers ``ShapesPipeline``.
- :mod:`cotj.testbed.train`: its rectified-flow training (``python -m cotj.testbed.train``).
- :mod:`cotj.testbed.classifier`: the attribute classifier behind the prompt-following score.
"""
