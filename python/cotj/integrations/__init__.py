"""cotj inside other sampling stacks.

- :mod:`cotj.integrations.k_diffusion`: planned sigmas (:func:`~cotj.integrations.k_diffusion.get_sigmas_cotj`)
  and samplers with k-diffusion's sampler signature (:func:`~cotj.integrations.k_diffusion.sample_cotj`, closed
  loop; :func:`~cotj.integrations.k_diffusion.sample_cotj_fixed`, on given sigmas), for k-diffusion and for the
  ComfyUI nodes in the repository's ``integrations/comfyui/``. Needs torch (the ``k-diffusion`` extra installs it
  with k-diffusion, which the module follows the conventions of but does not import).

Nothing here is imported by ``import cotj``.
"""
