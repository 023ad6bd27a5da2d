"""cotj in k-diffusion's conventions: planned sigmas and samplers with k-diffusion's sampler signature.

k-diffusion (crowsonkb/k-diffusion) and the samplers ComfyUI builds on it share one interface: a denoiser
``model(x (B, ...), sigma (B,), **extra_args) -> denoised (B, ...)``; a sampler
``sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None)`` with ``sigmas`` (K + 1,) noisiest first
ending in 0, ``x`` the state at ``sigmas[0]``, ``callback`` called after each model call with the dict
``{"x", "i", "sigma", "sigma_hat", "denoised"}`` and a tqdm bar that ``disable`` turns off. This module follows it
without importing k-diffusion. cotj plans on the linear flow's levels t; ``space`` says what a sigma is: "ve"
(k-diffusion, ``x = x0 + σ·eps``, ``σ = t/(1 - t)``) or "flow" (ComfyUI's flow models, ``σ = t``). The maths, and
how a plan is restricted to ``[sigma_min, sigma_max]``: docs/method.md §13.

- :func:`get_sigmas_cotj`: n planned sigmas and a trailing 0, from a teacher cost or a mean DNA.
- :func:`sample_cotj`: the closed loop, k-diffusion's sampler signature; ``sigmas`` gives the range and the number
  of model calls, the levels are chosen as the sample runs (:class:`cotj.execute.Replanner`).
- :func:`sample_cotj_fixed`: Euler, DPM-Solver++(2M) or UniPC on the given sigmas exactly (open loop).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from tqdm.auto import trange

from cotj.execute.replan import Replanner
from cotj.execute.solvers import multistep_predict, unic_correct
from cotj.planning.dna import mean_dna
from cotj.planning.multistep import SolverCost
from cotj.planning.objectives import TeacherCost
from cotj.planning.planner import plan, plan_batch
from cotj.planning.schedules import default_grid
from cotj.planning.solvers import MULTISTEP, SOLVERS

__all__ = ["SAMPLER_SOLVERS", "SPACES", "get_sigmas_cotj", "levels_of", "restrict", "sample_cotj", "sample_cotj_fixed",
           "sigmas_of"]

log = logging.getLogger(__name__)

SPACES = ("ve", "flow")
"""What a sigma means (docs/method.md §13): ``"ve"`` ``x = x0 + σ·eps``, ``σ = t/(1 - t)``; ``"flow"`` ``σ = t``."""
SAMPLER_SOLVERS = tuple(name for name, s in SOLVERS.items() if s.replans)
"""The solvers of :func:`sample_cotj` and :func:`sample_cotj_fixed`: one model call per step."""
_TOL = 1e-6  # on t: float32 sigmas round-trip to grid levels within this; grid spacings are far larger

Teacher = TeacherCost | str | os.PathLike[str]
Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[dict[str, Any]], Any]


# ------------------------------------------------------------------------------------------ sigma <-> level


def _space(space: object) -> str:
    if not isinstance(space, str) or space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    return space


def sigmas_of(levels: ArrayLike, space: str = "ve") -> NDArray[np.float64]:
    """k-diffusion sigmas of flow levels t in [0, 1] (any shape, float64): ``t/(1 - t)`` in "ve" (inf at t = 1),
    t in "flow"."""
    t = np.asarray(levels, dtype=np.float64)
    if _space(space) == "flow":
        return t.copy()
    with np.errstate(divide="ignore"):
        return np.where(t < 1.0, t / np.maximum(1.0 - t, 0.0), np.inf)


def levels_of(sigmas: ArrayLike, space: str = "ve") -> NDArray[np.float64]:
    """Flow levels t of k-diffusion sigmas >= 0 (any shape, float64): ``σ/(1 + σ)`` in "ve", σ in "flow"."""
    s = np.asarray(sigmas, dtype=np.float64)
    if _space(space) == "flow":
        return s.copy()
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(s), 1.0, s / (1.0 + s))


def _range(sigma_min: object, sigma_max: object, space: str) -> tuple[float, float]:
    """``(t_lo, t_hi)`` of ``0 <= sigma_min < sigma_max`` (finite; at most 1 in "flow")."""
    for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer, torch.Tensor)):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    lo, hi = float(sigma_min), float(sigma_max)  # type: ignore[arg-type]
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
        raise ValueError(f"need finite 0 <= sigma_min < sigma_max, got sigma_min={lo}, sigma_max={hi}")
    if space == "flow" and hi > 1.0 + _TOL:
        raise ValueError(f"sigma_max must be <= 1 in the flow space (sigma = t), got {hi}")
    return float(levels_of(lo, space)), min(float(levels_of(hi, space)), 1.0)


# ------------------------------------------------------------------------------------------ teacher window


def _teacher(teacher: object) -> TeacherCost:
    if isinstance(teacher, TeacherCost):
        return teacher
    if isinstance(teacher, (str, os.PathLike)):
        return TeacherCost.load(Path(teacher))
    raise TypeError(f"teacher must be a TeacherCost or the path of its JSON file, got {type(teacher).__name__}")


def _window(grid: NDArray[np.float64], t_lo: float, t_hi: float, what: str) -> tuple[int, int]:
    """``(lo, top)``: grid indices of the lowest level >= ``t_lo`` and of the lowest level >= ``t_hi`` (the level
    the top of the window stands for)."""
    top = int(np.searchsorted(grid, t_hi - _TOL, side="left"))
    if top == grid.size:
        raise ValueError(f"sigma_max is above the top level of the {what} (t = {t_hi:.6g} > {grid[-1]:.6g}): it has "
                         "no costs there")
    lo = min(int(np.searchsorted(grid, t_lo - _TOL, side="left")), top)
    return lo, top


def restrict(teacher: TeacherCost, t_lo: float, t_hi: float, solver: str | None = None) -> TeacherCost:
    """The teacher cost on its levels in ``[t_lo, t_hi]`` with ``t_hi`` as its top level (docs/method.md §13): the
    nearest level at or above ``t_hi`` is relabelled ``t_hi`` and keeps its measured costs.

    Args:
        teacher: a teacher cost on flow levels.
        t_lo, t_hi: the window, ``0 <= t_lo < t_hi <= 1``.
        solver: a multistep solver whose costs (:meth:`TeacherCost.solver_cost`, computed once on ``teacher`` and
            cached there) are sliced to the window rather than recomputed; None for none.

    Returns:
        A :class:`TeacherCost` of M levels, ``grid[-1] == t_hi``, with the sliced row model and Gram matrix and
        the same settings.
    """
    g = teacher.grid
    lo, top = _window(g, t_lo, t_hi, "teacher grid")
    idx = np.arange(lo, top + 1)
    grid = g[idx].copy()
    grid[-1] = t_hi
    rows = teacher.rows
    if rows is not None:
        rows = type(rows)(rows.base[idx], rows.center[idx], rows.spread[idx], rows.beta[idx][:, :, idx],
                          rows.var[np.ix_(idx, idx)])
    nodes = np.append(0, idx + 1)  # node 0 is t = 0, node n + 1 the grid level n
    gram = None
    if teacher.gram is not None:
        both = np.append(nodes, nodes + g.size + 1)  # the states at the nodes, then the estimates
        gram = teacher.gram[np.ix_(both, both)]
    out = TeacherCost(grid, teacher.edges[np.ix_(idx, idx)], teacher.end[idx], teacher.n_samples, rows, gram,
                      settings=teacher.settings)
    if solver is not None and solver in MULTISTEP and teacher.gram is not None:
        full = teacher.solver_cost(solver)
        pairs = None if full.pairs is None else full.pairs[np.ix_(nodes, nodes, nodes)]
        out._solver_costs[solver] = SolverCost(solver, full.first[np.ix_(nodes, nodes)], pairs, full.end[nodes])
    return out


# ------------------------------------------------------------------------------------------ planned sigmas


def _dna_plan(dna: str | ArrayLike, grid: ArrayLike | None, n: int, t_lo: float, t_hi: float) -> NDArray[np.float64]:
    """The paper objective's n levels on the DNA's grid levels in ``[t_lo, t_hi)`` and ``t_hi`` (DNA interpolated
    there), starting at ``t_hi``."""
    d = mean_dna(dna) if isinstance(dna, str) else np.asarray(dna, dtype=np.float64)
    if d.ndim != 1 or d.size < 2 or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"dna must be a shipped mean DNA name or one finite non-negative row (N,), got shape {d.shape}")
    g = default_grid(d.size) if grid is None else np.asarray(grid, dtype=np.float64)
    if g.shape != d.shape:
        raise ValueError(f"grid must have one level per DNA entry, shape {d.shape}, got {g.shape}")
    lo, top = _window(g, t_lo, t_hi, "DNA's grid")
    sub_grid = np.append(g[lo:top], t_hi)
    sub_dna = np.append(d[lo:top], np.interp(t_hi, g, d))
    if n > sub_grid.size:
        raise ValueError(f"n = {n} steps, but the DNA's grid has only {sub_grid.size} levels in [sigma_min, sigma_max]")
    return plan(sub_dna, n, grid=sub_grid, first="top").levels


def _teacher_plan(teacher: TeacherCost, solver: str, n: int) -> NDArray[np.float64]:
    """The teacher cost's plan of n levels for ``solver`` from its top level."""
    if n > teacher.grid.size:
        raise ValueError(f"n = {n} steps, but the teacher grid has only {teacher.grid.size} levels in "
                         "[sigma_min, sigma_max]")
    if solver == "euler":
        return plan_batch(teacher.dense(), n, current=teacher.grid.size - 1).levels[0]
    return teacher.plan(solver, n).levels


def _solver(solver: object) -> str:
    if not isinstance(solver, str) or solver not in SAMPLER_SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SAMPLER_SOLVERS)}, got {solver!r}")
    return solver


def get_sigmas_cotj(n: int, sigma_min: float, sigma_max: float, *, teacher: Teacher | None = None,
                    dna: str | ArrayLike | None = None, grid: ArrayLike | None = None, solver: str = "euler",
                    space: str = "ve", device: str | torch.device = "cpu") -> torch.Tensor:
    """n planned sigmas and a trailing 0, like :func:`k_diffusion.sampling.get_sigmas_karras`.

    Args:
        n: model calls (steps), >= 1.
        sigma_min, sigma_max: the range, ``0 <= sigma_min < sigma_max`` in ``space``'s sigmas; the first sigma is
            ``sigma_max`` and the others lie at or above ``sigma_min`` (0: down to the grid's lowest level).
        teacher: a :class:`~cotj.planning.objectives.TeacherCost` of a flow model (or its JSON file): plan on its
            measured jump costs for ``solver`` (the "teacher" objective; "dpmpp_2m" and "unipc" need its Gram matrix).
        dna: instead of ``teacher``: a shipped mean DNA's name (:func:`cotj.mean_dna_names`) or one DNA row (N,),
            planned with the paper's objective (solver "euler" only).
        grid: the (N,) levels of an array ``dna``; default ``t_i = (i + 1)/N``.
        solver: "euler", "dpmpp_2m" or "unipc": the solver the plan is made for (pair it with the sampler).
        space: "ve" (k-diffusion, ``σ = t/(1 - t)``) or "flow" (ComfyUI's flow models, ``σ = t``).
        device: where the result goes.

    Returns (n + 1,) float32, strictly decreasing, ``[sigma_max, ..., 0]``. Raises ValueError (both or neither of
    ``teacher`` and ``dna``, a range outside the grid, more steps than levels in the range, an unknown solver or
    space: the message names the argument) or TypeError (``n`` not an int, a teacher neither a TeacherCost nor a path).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    space, solver = _space(space), _solver(solver)
    t_lo, t_hi = _range(sigma_min, sigma_max, space)
    if (teacher is None) == (dna is None):
        raise ValueError("give exactly one of teacher (a TeacherCost or its file) and dna (a mean DNA name or row)")
    if dna is not None:
        if solver != "euler":
            raise ValueError(f"solver {solver!r} needs a teacher cost (solver-aware plans); a DNA plans for euler")
        levels = _dna_plan(dna, grid, int(n), t_lo, t_hi)
    else:
        levels = _teacher_plan(restrict(_teacher(teacher), t_lo, t_hi, solver), solver, int(n))
    sigmas = np.append(sigmas_of(levels, space), 0.0)
    sigmas[0] = float(sigma_max)
    return torch.tensor(sigmas, dtype=torch.float32, device=device)


# ------------------------------------------------------------------------------------------ sampling


class _Path:
    """The Gaussian path of ``space`` as a function of the flow level t, for the solvers' weights
    (:func:`cotj.paths.path_of`); the model's output is the clean estimate (prediction "sample")."""

    prediction = "sample"

    def __init__(self, space: str) -> None:
        self.space = space

    def path(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a(t), s(t)`` (n,) float64."""
        t = t.to(torch.float64)
        if self.space == "flow":
            return 1.0 - t, t
        return torch.ones_like(t), t / (1.0 - t)

    def to_flow(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """The flow state of ``x`` at level t: ``x/(a + s)`` (``x·(1 - t)`` in "ve")."""
        return x if self.space == "flow" else x * (1.0 - t)


class _Steps:
    """One sample's steps with a solver: UniPC's corrector (:func:`cotj.execute.solvers.unic_correct`) and the
    predictor (:func:`cotj.execute.solvers.multistep_predict`, first order for euler, for the first step and for
    the step to 0), remembering the previous levels and estimates."""

    def __init__(self, solver: str, path: _Path) -> None:
        self.solver, self.path = solver, path
        self.x_last: torch.Tensor | None = None
        self.m_prev: torch.Tensor | None = None
        self.m_prev2: torch.Tensor | None = None
        self.t_prev: torch.Tensor | None = None
        self.t_prev2: torch.Tensor | None = None

    def correct(self, x: torch.Tensor, m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """UniPC: the state at t re-taken with the estimate ``m`` made there; other solvers: ``x``."""
        if self.solver != "unipc" or self.x_last is None or self.m_prev is None or self.t_prev is None:
            return x
        return unic_correct(self.path, self.x_last, self.m_prev2, self.m_prev, m, self.t_prev2, self.t_prev, t,
                            "sample")

    def predict(self, x: torch.Tensor, m: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """The state at ``t_next`` from ``x`` at ``t`` (after :meth:`correct`) with the estimate ``m``."""
        t_prev = None if self.solver == "euler" else self.t_prev
        m_prev = m if self.m_prev is None else self.m_prev
        out = multistep_predict(self.path, x, m, m_prev, t_prev, t, t_next, "sample")
        self.x_last, self.m_prev2, self.m_prev = x, self.m_prev, m
        self.t_prev2, self.t_prev = self.t_prev, t
        return out


def _level(t: float) -> torch.Tensor:
    return torch.tensor([t], dtype=torch.float64)


def _sigma_rows(sigmas: object, space: str, closed: bool) -> NDArray[np.float64]:
    """``sigmas`` as float64 (K + 1,), checked: finite, >= 0, strictly decreasing, K >= 1; ending in 0 for the
    closed loop; at most 1 in "flow"."""
    if isinstance(sigmas, torch.Tensor):
        s = sigmas.detach().to("cpu", torch.float64).numpy()
    else:
        s = np.asarray(sigmas)
        if s.dtype.kind not in "iuf":
            raise TypeError(f"sigmas must be a real tensor (K + 1,), got {type(sigmas).__name__}")
        s = s.astype(np.float64)
    if s.ndim != 1 or s.size < 2:
        raise ValueError(f"sigmas must be (K + 1,) with K >= 1 steps, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(np.diff(s) >= 0):
        raise ValueError("sigmas must be finite, >= 0 and strictly decreasing (noisiest first)")
    if closed and s[-1] != 0:
        raise ValueError(f"sigmas must end in 0 for the closed loop (it samples to the clean end), got {s[-1]:.6g}")
    if space == "flow" and s[0] > 1.0 + _TOL:
        raise ValueError(f"sigmas must be <= 1 in the flow space (sigma = t), got {s[0]:.6g}")
    return s


def _check_x(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating torch tensor (B, ...), got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be (B, ...) with B >= 1, got shape {tuple(x.shape)}")
    return x


def _denoise(model: Denoiser, x: torch.Tensor, sigma: torch.Tensor, extra_args: dict[str, Any], i: int) -> torch.Tensor:
    """``model(x, sigma·ones(B), **extra_args)``, checked to be finite and of ``x``'s shape."""
    out = model(x, sigma * x.new_ones([x.shape[0]]), **extra_args)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(f"the model must return the denoised state of x's shape {tuple(x.shape)}, got "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"the model's denoised output at step {i} (sigma = {float(sigma):.6g}) is not finite")
    return out


def _emit(callback: Callback | None, x: torch.Tensor, i: int, sigma: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def sample_cotj_fixed(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None = None,
                      callback: Callback | None = None, disable: bool | None = None, *, solver: str = "euler",
                      space: str = "ve") -> torch.Tensor:
    """Sample on the given sigmas exactly with ``solver``, k-diffusion's sampler signature (open loop).

    With ``space="ve"`` the "euler" run is :func:`k_diffusion.sampling.sample_euler` (no churn) and the
    "dpmpp_2m" run is ``sample_dpmpp_2m``; "unipc" is UniPC-bh2 (:mod:`cotj.execute.solvers`), which k-diffusion
    does not have.

    Args:
        model: ``model(x, sigma (B,), **extra_args) -> denoised`` (module docstring).
        x: (B, ...) the state at ``sigmas[0]``.
        sigmas: (K + 1,) strictly decreasing, >= 0; a last sigma above 0 stops there (as k-diffusion's samplers).
        extra_args: keyword arguments of every model call. callback: called after every model call with
            ``{"x", "i", "sigma", "sigma_hat", "denoised"}``. disable: turns the progress bar off.
        solver: "euler", "dpmpp_2m" or "unipc". space: "ve" or "flow" (what the sigmas mean).

    Returns:
        (B, ...) the state at ``sigmas[-1]``, in ``x``'s dtype. K model calls.
    """
    space, solver = _space(space), _solver(solver)
    x = _check_x(x)
    s = _sigma_rows(sigmas, space, closed=False)
    sig = sigmas if isinstance(sigmas, torch.Tensor) else torch.from_numpy(s)
    t = levels_of(s, space)
    steps = _Steps(solver, _Path(space))
    extra = {} if extra_args is None else extra_args
    with torch.no_grad():
        for i in trange(s.size - 1, disable=disable):
            sigma = sig[i].to(x.device)
            denoised = _denoise(model, x, sigma, extra, i)
            _emit(callback, x, i, sigma, denoised)
            here = _level(t[i])
            x = steps.predict(steps.correct(x, denoised, here), denoised, here, _level(t[i + 1]))
    return x


def sample_cotj(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict[str, Any] | None = None,
                callback: Callback | None = None, disable: bool | None = None, *, teacher: Teacher,
                solver: str = "unipc", space: str = "ve") -> torch.Tensor:
    """The closed loop with k-diffusion's sampler signature: K model calls, the levels chosen as the sample runs.

    The run starts at ``sigmas[0]`` (where ``x`` is), makes ``K = len(sigmas) - 1`` model calls on the teacher
    cost's levels in ``[sigmas[-2], sigmas[0]]`` (docs/method.md §13) and ends at 0. After each call the
    :class:`cotj.execute.Replanner` re-costs the rest from the state and the denoised estimate and picks the next
    level, where ``solver`` steps. One plan serves the whole batch: sample one row per call for per-sample loops.

    Args:
        model, x: ``model(x, sigma (B,), **extra_args) -> denoised``; (B, ...) the state at ``sigmas[0]``.
        sigmas: (K + 1,) strictly decreasing, ending in 0: only ``sigmas[0]``, ``sigmas[-2]`` and K are used
            (e.g. :func:`get_sigmas_cotj`, or any scheduler's sigmas, trimmed for denoise < 1 as usual).
        extra_args, callback, disable: as k-diffusion's samplers (``callback``'s ``x`` is the state the model saw).
        teacher: the model's :class:`~cotj.TeacherCost` on flow levels, or its file (its row model closes the loop).
        solver: "unipc" (default), "dpmpp_2m" (these two need the teacher cost's Gram matrix) or "euler".
        space: "ve" (k-diffusion) or "flow" (ComfyUI's flow models).

    Returns (B, ...) the clean sample, in ``x``'s dtype. Raises ValueError (bad sigmas, a range outside the teacher
    grid or with fewer levels than steps, an unknown solver or space, a multistep solver without a Gram matrix, a
    model output of the wrong shape or not finite) or TypeError (a bad teacher, ``x`` not a floating tensor).
    """
    space, solver = _space(space), _solver(solver)
    x = _check_x(x)
    s = _sigma_rows(sigmas, space, closed=True)
    k = s.size - 1
    t_lo, t_hi = (float(v) for v in levels_of(s[[-2, 0]], space))
    window = restrict(_teacher(teacher), t_lo, t_hi, solver)
    if k > window.grid.size:
        raise ValueError(f"sigmas ask for {k} steps, but the teacher grid has only {window.grid.size} levels in "
                         f"[{s[-2]:.6g}, {s[0]:.6g}]")
    replanner = Replanner(window, k, solver=solver)
    path = _Path(space)
    steps = _Steps(solver, path)
    extra = {} if extra_args is None else extra_args
    sig = sigmas if isinstance(sigmas, torch.Tensor) else torch.from_numpy(s)
    level, previous = replanner.top, -1
    b = x.shape[0]
    with torch.no_grad():
        for i in trange(k, disable=disable):
            sigma = sig[0] if i == 0 else sig.new_tensor(float(sigmas_of(window.grid[level], space)))
            sigma = sigma.to(x.device)
            t = float(levels_of(float(sigma), space))  # the level of the sigma the model sees, in sigmas' dtype
            denoised = _denoise(model, x, sigma, extra, i)
            _emit(callback, x, i, sigma, denoised)
            here = _level(t)
            x = steps.correct(x, denoised, here)
            flat = path.to_flow(x, t).reshape(b, -1).to("cpu", torch.float64).numpy()
            scale = window.row_scale(np.full(b, level), flat, denoised.reshape(b, -1).to("cpu", torch.float64).numpy())
            nxt = int(replanner.next_scaled(np.array([level]), i + 1, scale.mean(0, keepdims=True),
                                            None if solver == "euler" else np.array([previous]))[0])
            t_next = 0.0 if nxt < 0 else float(window.grid[nxt])
            log.debug("cotj step %d: t = %.4f -> %.4f", i, t, t_next)
            x = steps.predict(x, denoised, here, _level(t_next))
            previous, level = level, nxt
    return x
