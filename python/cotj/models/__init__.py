"""Models cotj ships, so that Predict -> Plan -> Execute runs end to end offline (needs the ``shapes`` extra).

- :mod:`cotj.models.analytic`: Gaussian-mixture data with a closed-form ideal denoiser, as a flow (velocity) model
  and a VP (epsilon) model, and the exact probability-flow ODE endpoint: a model whose true DNA and exact
  samples are known.
- :mod:`cotj.models.shapes`: procedural 24x24 shape scenes and their prompt grammar.
- :mod:`cotj.models.text`: MiniLM prompt embeddings (offline, cached).
- :mod:`cotj.models.generator`: the pixel-space text-to-image UNet, its Diffusers ``ShapesPipeline`` and the
  shipped weights, DNA predictor and teacher cost (``cotj sample`` runs them).
- :func:`seeded_noise`: the noise of a prompt, a function of the prompt and a seed only.

The benchmark harness that measures these models (quality tiers, attribute classifier, trainer) is not part of
the package: it is the ``cotj-testbed`` distribution in the repository's ``testbed/`` folder.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads when a model does: the grammar of cotj.models.shapes needs numpy only
    import torch

__all__ = ["seeded_noise"]


def seeded_noise(items: Sequence[str | int], shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """(B, *shape) float64 standard normal noise, row b from ``default_rng([seed, id(items[b])])`` with id
    the condition id itself or the CRC-32 of a prompt: an item's noise depends on nothing else (not on the
    batch it is drawn in, nor on how work is split over processes)."""
    import torch

    ids = [zlib.crc32(i.encode()) if isinstance(i, str) else int(i) for i in items]
    return torch.from_numpy(np.stack([np.random.default_rng([seed, i]).standard_normal(shape) for i in ids]))
