"""The ComfyUI node package in integrations/comfyui, without ComfyUI (it is not on PyPI): the node
contract ComfyUI reads, what the functions return, denoise < 1 as ComfyUI's BasicScheduler trims, and the sampler
run on a real k-diffusion model wrapper (k_diffusion.external.DiscreteEpsDDPMDenoiser around an epsilon model)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = [needs_extra("diffusers"), needs_extra("k_diffusion"), pytest.mark.usefixtures("one_torch_thread")]

import k_diffusion.external as external  # noqa: E402
import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.integrations.k_diffusion import get_sigmas_cotj, levels_of, sample_cotj  # noqa: E402
from cotj.models.analytic import FlowMixtureModel, MixtureFamily, exact_endpoint  # noqa: E402
from cotj.planning.objectives import TeacherCost  # noqa: E402
from cotj.predict.teacher import calibrate  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "integrations" / "comfyui"
FAMILY = MixtureFamily(dim=6, seed=0)
TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "MODEL", "SIGMAS", "SAMPLER"}


@pytest.fixture(scope="module")
def nodes() -> Any:
    """The package loaded as ComfyUI loads a custom_nodes folder: its __init__.py as a package."""
    spec = importlib.util.spec_from_file_location("cotj_comfyui_nodes", PACKAGE / "__init__.py",
                                                  submodule_search_locations=[str(PACKAGE)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    for name in [n for n in sys.modules if n.startswith(spec.name)]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    noise = torch.randn(24, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tc = calibrate(FlowMixtureModel(FAMILY), noise, torch.arange(24) % 5, cotj.default_grid(20), batch_size=12,
                   progress=False)
    path = tmp_path_factory.mktemp("teacher") / "teacher.json"
    tc.save(path)
    return path


# ------------------------------------------------------------------------------------------ contract


def test_node_mappings(nodes):
    assert set(nodes.NODE_CLASS_MAPPINGS) == {"CotjScheduler", "CotjSampler"}
    assert set(nodes.NODE_DISPLAY_NAME_MAPPINGS) == set(nodes.NODE_CLASS_MAPPINGS)
    assert all(isinstance(v, str) and v for v in nodes.NODE_DISPLAY_NAME_MAPPINGS.values())


@pytest.mark.parametrize(("name", "returns", "category"), [("CotjScheduler", ("SIGMAS",), "schedulers"),
                                                           ("CotjSampler", ("SAMPLER",), "samplers")])
def test_node_contract(nodes, name, returns, category):
    """What ComfyUI reads from a node class: INPUT_TYPES (each input a type name or a combo list, with options
    whose defaults are valid), RETURN_TYPES, FUNCTION (a method taking exactly the inputs, optional ones with
    defaults) and CATEGORY."""
    cls = nodes.NODE_CLASS_MAPPINGS[name]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional"} and spec["required"]
    assert cls.RETURN_TYPES == returns and cls.CATEGORY == f"sampling/custom_sampling/{category}"
    params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
    assert list(params)[0] == "self"
    inputs = {**spec["required"], **spec.get("optional", {})}
    assert set(params) - {"self"} == set(inputs)
    for key, (kind, *options) in inputs.items():
        opts = options[0] if options else {}
        assert isinstance(opts, dict)
        if isinstance(kind, list):
            assert kind and all(isinstance(v, str) for v in kind)
            default = params[key].default
            assert default is inspect.Parameter.empty or default in kind
        else:
            assert kind in TYPES
            if "default" in opts and "min" in opts:
                assert opts["min"] <= opts["default"] <= opts["max"]
        assert (params[key].default is inspect.Parameter.empty) == (key in spec["required"])


# ------------------------------------------------------------------------------------------ scheduler


@pytest.mark.parametrize("name", cotj.mean_dna_names())
def test_scheduler_sigmas_of_a_mean_dna(nodes, name):
    (sigmas,) = nodes.CotjScheduler().get_sigmas(name, "", "euler", 8, 1.0)
    assert isinstance(sigmas, torch.Tensor) and sigmas.dtype == torch.float32 and sigmas.shape == (9,)
    assert float(sigmas[0]) == 1.0 and float(sigmas[-1]) == 0.0 and bool((sigmas.diff() < 0).all())
    np.testing.assert_array_equal(sigmas[:-1].numpy(), cotj.plan(cotj.mean_dna(name), 8, first="top").levels.astype(np.float32))


@pytest.mark.parametrize(("steps", "denoise"), [(4, 0.5), (4, 0.3), (6, 0.75), (1, 0.2), (8, 0.99)])
def test_scheduler_trims_as_basic_scheduler(nodes, steps, denoise):
    """denoise < 1: the plan of int(steps/denoise) steps, of which the last steps + 1 sigmas (ComfyUI's
    BasicScheduler): steps model calls from a lower start."""
    (sigmas,) = nodes.CotjScheduler().get_sigmas("qwen-image", "", "euler", steps, denoise)
    full = get_sigmas_cotj(int(steps / denoise), 0.0, 1.0, dna="qwen-image", space="flow")
    assert sigmas.shape == (steps + 1,) and float(sigmas[-1]) == 0.0
    assert (float(sigmas[0]) < 1.0) == (int(steps / denoise) > steps)  # int(8/0.99) = 8: nothing trimmed
    np.testing.assert_array_equal(sigmas.numpy(), full[-(steps + 1):].numpy())


def test_scheduler_denoise_zero_gives_no_sigmas(nodes):
    (sigmas,) = nodes.CotjScheduler().get_sigmas("qwen-image", "", "euler", 8, 0.0)
    assert isinstance(sigmas, torch.Tensor) and sigmas.numel() == 0


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "unipc"])
def test_scheduler_from_a_teacher_file(nodes, teacher_file, solver):
    (sigmas,) = nodes.CotjScheduler().get_sigmas("teacher file", str(teacher_file), solver, 6, 1.0)
    want = get_sigmas_cotj(6, 0.0, 1.0, teacher=TeacherCost.load(teacher_file), solver=solver, space="flow")
    np.testing.assert_array_equal(sigmas.numpy(), want.numpy())
    (ve,) = nodes.CotjScheduler().get_sigmas("teacher file", str(teacher_file), solver, 6, 1.0, "ve", 14.6146, 0.0292)
    assert float(ve[0]) == pytest.approx(14.6146) and float(ve[-2]) >= 0.0292 and float(ve[-1]) == 0.0


def test_scheduler_bad_input(nodes, tmp_path):
    node = nodes.CotjScheduler()
    with pytest.raises(ValueError, match="teacher_file is empty"):
        node.get_sigmas("teacher file", " ", "euler", 4, 1.0)
    with pytest.raises(ValueError, match="cannot be read"):
        node.get_sigmas("teacher file", str(tmp_path / "missing.json"), "euler", 4, 1.0)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a valid teacher cost"):
        node.get_sigmas("teacher file", str(tmp_path / "bad.json"), "euler", 4, 1.0)
    with pytest.raises(ValueError, match="only 100 levels"):
        node.get_sigmas("qwen-image", "", "euler", 60, 0.5)  # 120 planned steps on a 100-level grid


# ------------------------------------------------------------------------------------------ sampler


class EpsModel(torch.nn.Module):
    """An epsilon model of the analytic mixtures on SD's discrete VP schedule, for
    k_diffusion.external.DiscreteEpsDDPMDenoiser (which gives it ``x/sqrt(σ² + 1)`` and the timestep)."""

    def __init__(self) -> None:
        super().__init__()
        self.wrapper: Any = None
        self.calls = 0

    def forward(self, x: Any, t: Any, cond: Any = None) -> Any:
        self.calls += 1
        sigma = self.wrapper.t_to_sigma(t).double()
        a = 1.0 / torch.sqrt(1.0 + sigma**2)
        return (sigma * a)[:, None] * FAMILY.posterior(x, a, sigma * a, cond)[1].to(x.dtype)


def _sd_wrapper() -> tuple[Any, EpsModel]:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    inner = EpsModel()
    wrapper = external.DiscreteEpsDDPMDenoiser(inner, torch.cumprod(1.0 - betas, 0).float(), quantize=False)
    inner.wrapper = wrapper
    return wrapper, inner


def test_sampler_runs_on_a_k_diffusion_model_wrapper(nodes, teacher_file):
    """CotjScheduler's sigmas in the wrapper's range and CotjSampler's SAMPLER, called as ComfyUI's KSAMPLER calls
    its function: K model calls, k-diffusion's callback keys, sample_cotj's result, near the exact ODE endpoint."""
    wrapper, inner = _sd_wrapper()
    lo, hi = float(wrapper.sigma_min), float(wrapper.sigma_max)
    (sigmas,) = nodes.CotjScheduler().get_sigmas("teacher file", str(teacher_file), "unipc", 8, 1.0, "ve", hi, lo)
    (sampler,) = nodes.CotjSampler().get_sampler(str(teacher_file), "unipc", "ve")
    assert isinstance(sampler, nodes.SamplerSpec) and set(sampler.extra_options) == {"teacher", "solver", "space"}
    cond = torch.arange(8) % 5
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * float(sigmas[0])
    seen: list[dict[str, Any]] = []
    out = sampler.sample(wrapper, x.clone(), sigmas.double(), extra_args={"cond": cond}, callback=seen.append, disable=True)
    assert inner.calls == 8 and [set(d) for d in seen] == [{"x", "i", "sigma", "sigma_hat", "denoised"}] * 8
    direct = sample_cotj(wrapper, x.clone(), sigmas.double(), extra_args={"cond": cond}, disable=True,
                         teacher=TeacherCost.load(teacher_file), solver="unipc", space="ve")
    np.testing.assert_array_equal(out.numpy(), direct.numpy())
    t0 = float(levels_of(float(sigmas[0])))
    exact = exact_endpoint(FlowMixtureModel(FAMILY), x * (1.0 - t0), cond, t_start=t0, steps=400)
    assert float(((out - exact) ** 2).mean()) < 1e-3  # a wrongly scaled state or sigma is off by 1e-2 and more


def test_sampler_bad_input(nodes, teacher_file, tmp_path):
    tc = TeacherCost.load(teacher_file)
    TeacherCost(tc.grid, tc.edges, tc.end, tc.n_samples, tc.rows, None).save(tmp_path / "no_gram.json")
    with pytest.raises(ValueError, match="Gram"):
        nodes.CotjSampler().get_sampler(str(tmp_path / "no_gram.json"), "unipc")
    with pytest.raises(ValueError, match="sigma_space"):
        nodes.CotjSampler().get_sampler(str(teacher_file), "euler", "vp")
    (sampler,) = nodes.CotjSampler().get_sampler(str(teacher_file), "euler")  # auto: needs ComfyUI's model
    wrapper, _ = _sd_wrapper()
    with pytest.raises(ValueError, match="sigma_space 'auto'"):
        sampler.sample(wrapper, torch.zeros(1, 6), torch.tensor([1.0, 0.0]))


def test_with_comfyui_modules(nodes, teacher_file, monkeypatch):
    """Where ComfyUI is importable: the SAMPLER is its KSAMPLER(function, extra_options=...), and "auto" reads
    flow from a model whose model sampling is CONST, as ComfyUI's own samplers do (stand-in modules here)."""
    made: list[tuple[Any, dict[str, Any]]] = []

    class KSAMPLER:
        def __init__(self, function: Any, extra_options: Any = None, inpaint_options: Any = None) -> None:
            made.append((function, extra_options))

    class CONST:
        pass

    comfy = types.ModuleType("comfy")
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.samplers", types.SimpleNamespace(KSAMPLER=KSAMPLER))
    monkeypatch.setitem(sys.modules, "comfy.model_sampling", types.SimpleNamespace(CONST=CONST))
    comfy.samplers, comfy.model_sampling = sys.modules["comfy.samplers"], sys.modules["comfy.model_sampling"]
    (sampler,) = nodes.CotjSampler().get_sampler(str(teacher_file), "dpmpp_2m")
    assert isinstance(sampler, KSAMPLER) and made[0][0] is nodes.nodes.sample
    assert made[0][1]["solver"] == "dpmpp_2m" and made[0][1]["space"] == "auto"
    flow_model = types.SimpleNamespace(inner_model=types.SimpleNamespace(inner_model=types.SimpleNamespace(model_sampling=CONST())))
    assert nodes.nodes.space_of(flow_model) == "flow"
    eps_model = types.SimpleNamespace(inner_model=types.SimpleNamespace(inner_model=types.SimpleNamespace(model_sampling=object())))
    assert nodes.nodes.space_of(eps_model) == "ve"
