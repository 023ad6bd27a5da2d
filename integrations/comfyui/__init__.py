"""ComfyUI custom nodes for cotj: planned sigmas (``CotjScheduler``) and the closed-loop sampler (``CotjSampler``).

Install: copy or symlink this folder into ComfyUI's ``custom_nodes/`` (e.g. ``ln -s "$PWD/integrations/comfyui"
ComfyUI/custom_nodes/cotj``) and ``pip install 'cotj[k-diffusion]'`` (or ``cotj[torch]``) into ComfyUI's Python.
The nodes fit ComfyUI's custom-sampling graph::

    Load Checkpoint -> CotjScheduler (SIGMAS) + CotjSampler (SAMPLER) -> SamplerCustom -> VAE Decode

They are tested against their node contract and a k-diffusion model wrapper, not inside ComfyUI.
"""

from .nodes import (
           NODE_CLASS_MAPPINGS,
           NODE_DISPLAY_NAME_MAPPINGS,
           CotjSampler,
           CotjScheduler,
           SamplerSpec,
           make_sampler,
)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "CotjSampler", "CotjScheduler", "SamplerSpec",
           "make_sampler"]
