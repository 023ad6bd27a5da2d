"""The nodes: ``CotjScheduler`` (SIGMAS) and ``CotjSampler`` (SAMPLER), in ComfyUI's classic node interface
(``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``, ``CATEGORY``), written like ComfyUI's own ``BasicScheduler``,
``AlignYourStepsScheduler`` and ``KSamplerSelect``.

Sigmas (:mod:`cotj.integrations.k_diffusion` says how they map to cotj's levels): ComfyUI's flow models (Flux,
SD3, Qwen-Image, Z-Image: model sampling ``CONST``) take σ = t, the "flow" space, with sigma_max = 1; other models
take k-diffusion's σ of ``x = x0 + σ·eps``, the "ve" space, with their own sigma_max (14.6 for SD 1.5). The shipped
mean DNAs and teacher costs from ``cotj.predict.calibrate`` are measured on flow models.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from cotj.execute.replan import Replanner
from cotj.integrations.k_diffusion import SAMPLER_SOLVERS, get_sigmas_cotj, sample_cotj
from cotj.planning.dna import mean_dna_names
from cotj.planning.objectives import TeacherCost

log = logging.getLogger(__name__)

TEACHER_FILE = "teacher file"
"""The scheduler's ``source`` that plans on the teacher cost in ``teacher_file`` (the others are mean DNAs)."""


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> TeacherCost:
    """A teacher cost file, read once per version of the file (its multistep solver costs are cached on it)."""
    del mtime_ns, size  # the cache key: a rewritten file is read again
    return TeacherCost.load(path)


def load_teacher(path: str) -> TeacherCost:
    """The :class:`~cotj.planning.objectives.TeacherCost` in ``path``; ValueError naming the input when it is empty or missing."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("teacher_file is empty: give the path of a teacher cost JSON (cotj.predict.calibrate)")
    full = os.path.abspath(os.path.expanduser(path.strip()))
    try:
        st = os.stat(full)
    except OSError as exc:
        raise ValueError(f"teacher_file {path!r} cannot be read: {exc.strerror}") from None
    return _load(full, st.st_mtime_ns, st.st_size)


def trim(steps: int, denoise: float, plan: Any) -> Any:
    """ComfyUI's ``denoise``, as ``BasicScheduler`` does it: ``plan(total)`` sigmas for ``total = int(steps /
    denoise)`` steps, of which the last ``steps + 1`` are kept (``steps`` model calls from a lower start level);
    ``denoise <= 0`` gives no sigmas. (``AlignYourStepsScheduler`` and ``GITSScheduler`` instead keep the last
    ``round(steps·denoise) + 1`` of a ``steps`` plan; cotj keeps ``steps``, its budget of model calls.)"""
    import torch

    if denoise <= 0.0:
        return torch.FloatTensor([])
    total = steps if denoise >= 1.0 else int(steps / denoise)
    return plan(total)[-(steps + 1):]


class CotjScheduler:
    """Planned sigmas from a shipped mean DNA or a model's teacher cost file."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 (ComfyUI's name)
        return {
            "required": {
                "source": ([*mean_dna_names(), TEACHER_FILE], {"tooltip": "a shipped mean DNA (a flow model's) or the "
                           "teacher cost in teacher_file"}),
                "teacher_file": ("STRING", {"default": "", "tooltip": "path of a teacher cost JSON "
                                 "(cotj.predict.calibrate), used when source is 'teacher file'"}),
                "solver": (list(SAMPLER_SOLVERS), {"tooltip": "the solver the teacher-file plan is made for (pair it with the "
                           "sampler); a mean DNA plans for euler"}),
                "steps": ("INT", {"default": 8, "min": 1, "max": 1000}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            },
            "optional": {
                "sigma_space": (["flow", "ve"], {"tooltip": "flow: sigma = t (Flux, SD3, Qwen-Image...); ve: "
                                "k-diffusion's x0 + sigma*eps"}),
                "sigma_max": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10000.0, "step": 0.001, "round": False,
                                        "tooltip": "the first sigma (1 for flow models)"}),
                "sigma_min": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10000.0, "step": 0.001, "round": False,
                                        "tooltip": "the lowest sigma before 0 (0: the grid's lowest level)"}),
            },
        }

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    def get_sigmas(self, source: str, teacher_file: str, solver: str, steps: int, denoise: float,
                   sigma_space: str = "flow", sigma_max: float = 1.0, sigma_min: float = 0.0) -> tuple[Any]:
        """``(sigmas,)``: (steps + 1,) float32, decreasing, ending in 0 (:func:`trim` for ``denoise`` < 1)."""
        if source == TEACHER_FILE:
            teacher = load_teacher(teacher_file)

            def planned(n: int) -> Any:
                return get_sigmas_cotj(n, sigma_min, sigma_max, teacher=teacher, solver=solver, space=sigma_space)
        else:
            def planned(n: int) -> Any:
                return get_sigmas_cotj(n, sigma_min, sigma_max, dna=source, space=sigma_space)
        return (trim(steps, denoise, planned),)


@dataclass(frozen=True)
class SamplerSpec:
    """What :func:`make_sampler` returns without ComfyUI: the sampler function and its options, called as
    ComfyUI's ``KSAMPLER`` calls them."""

    sampler_function: Any
    extra_options: dict[str, Any] = field(default_factory=dict)

    def sample(self, model: Any, x: Any, sigmas: Any, extra_args: dict[str, Any] | None = None, callback: Any = None,
               disable: bool | None = None) -> Any:
        return self.sampler_function(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                                     **self.extra_options)


def make_sampler(function: Any, extra_options: dict[str, Any]) -> Any:
    """ComfyUI's ``comfy.samplers.KSAMPLER(function, extra_options=...)`` (a k-diffusion-signature function with
    its keyword options) when ComfyUI is importable, else a :class:`SamplerSpec` of the same two."""
    try:
        from comfy.samplers import KSAMPLER  # type: ignore[import-not-found]
    except ImportError:
        return SamplerSpec(function, dict(extra_options))
    return KSAMPLER(function, extra_options=dict(extra_options))


def space_of(model: Any) -> str:
    """"flow" for a ComfyUI model with ``CONST`` model sampling (as ComfyUI's own samplers test it), else "ve"."""
    try:
        import comfy.model_sampling  # type: ignore[import-not-found]

        sampling = model.inner_model.inner_model.model_sampling
    except (ImportError, AttributeError):
        raise ValueError("sigma_space 'auto' needs ComfyUI's model wrapper to tell flow from ve: choose one") from None
    return "flow" if isinstance(sampling, comfy.model_sampling.CONST) else "ve"


def sample(model: Any, x: Any, sigmas: Any, extra_args: dict[str, Any] | None = None, callback: Any = None,
           disable: bool | None = None, *, teacher: TeacherCost, solver: str, space: str) -> Any:
    """:func:`cotj.integrations.k_diffusion.sample_cotj`, with ``space`` "auto" read from the model."""
    space = space_of(model) if space == "auto" else space
    return sample_cotj(model, x, sigmas, extra_args, callback, disable, teacher=teacher, solver=solver, space=space)


class CotjSampler:
    """The closed-loop sampler: the levels chosen as the sample runs, ``len(sigmas) - 1`` model calls between
    ``sigmas[0]`` and ``sigmas[-2]`` (any scheduler's sigmas give the range and the number of calls)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 (ComfyUI's name)
        return {
            "required": {
                "teacher_file": ("STRING", {"default": "", "tooltip": "path of the model's teacher cost JSON "
                                 "(cotj.predict.calibrate)"}),
                "solver": (["unipc", "dpmpp_2m", "euler"], {"tooltip": "unipc and dpmpp_2m need the teacher cost's "
                           "Gram matrix"}),
            },
            "optional": {
                "sigma_space": (["auto", "flow", "ve"], {"tooltip": "auto: flow for CONST (flow) models, else ve"}),
            },
        }

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "sampling/custom_sampling/samplers"

    def get_sampler(self, teacher_file: str, solver: str, sigma_space: str = "auto") -> tuple[Any]:
        """``(sampler,)``: ComfyUI's ``KSAMPLER`` around :func:`sample` (a :class:`SamplerSpec` without ComfyUI)."""
        if sigma_space not in ("auto", "flow", "ve"):
            raise ValueError(f"sigma_space must be auto, flow or ve, got {sigma_space!r}")
        teacher = load_teacher(teacher_file)
        Replanner(teacher, 1, solver=solver)  # the solver, and the Gram matrix a multistep one needs: fail here
        return (make_sampler(sample, {"teacher": teacher, "solver": solver, "space": sigma_space}),)


NODE_CLASS_MAPPINGS = {"CotjScheduler": CotjScheduler, "CotjSampler": CotjSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"CotjScheduler": "cotj Scheduler (planned sigmas)",
                              "CotjSampler": "cotj Sampler (closed loop)"}
