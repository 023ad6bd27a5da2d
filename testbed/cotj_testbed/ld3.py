"""An LD3-style data-set schedule: K levels learnt by gradient descent through the solver itself.

LD3 (Tong et al., "Learning to Discretize Denoising Diffusion ODEs", arXiv 2405.15506) learns the time steps of a
given solver and budget by back-propagating the distance between the K-step sample and the teacher's many-step
sample of the same noise, on a small calibration set. Here: the K levels of one schedule shared by every sample,
the first pinned at 1.0 (the grid's top, where every plan of the benchmark starts), the other K - 1 free and
strictly descending in (0, 1) by construction (:func:`levels_of`: a softmax of K logits gives the K positive
decrements from 1 down to 0); the loss is the mean squared error between the K-step sample and the reference
(the teacher's 100-step endpoint) over the calibration samples, minimised with Adam by autograd through the
model and the solver's steps. What differs from the paper is written in docs/method.md §12.

The steps are torch transliterations of cotj's own solvers (:func:`cotj.execute.solvers.solve` with the weights of
:mod:`cotj.planning.multistep`), differentiable in the levels (:func:`solve_torch`): Euler (DDIM on the path),
DPM-Solver++(2M) and UniPC-bh2; a test checks them against :func:`cotj.execute.solvers.solve`. Heun is not
supported (it is not in the study's data-set pairings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from cotj.paths import clean_estimate, ddim_step, path_of
from cotj.planning.schedules import uniform

if TYPE_CHECKING:
    from cotj_testbed.quality import Problem

__all__ = ["BATCH", "CACHE_ENV", "LD3_SOLVERS", "LR", "MIN_STEPS", "STEPS", "LD3Fit", "ld3_fit", "ld3_levels", "ld3_schedule", "levels_of",
           "logits_of", "solve_torch", "steps_for"]

log = logging.getLogger(__name__)

LD3_SOLVERS = ("euler", "dpmpp_2m", "unipc")
"""The solvers :func:`solve_torch` runs (names of :mod:`cotj.execute.solvers`)."""
STEPS = 24
"""Adam steps of :func:`ld3_fit`, and of the study's schedule at K = 4 (:func:`steps_for`)."""
MIN_STEPS = 6
"""The fewest Adam steps of the study's schedule at any K (:func:`steps_for`)."""
LR = 0.05
"""Adam's learning rate on the logits of :func:`levels_of`."""
BATCH = 4
"""Calibration samples per Adam step of the study's schedule (:func:`ld3_schedule`)."""
CACHE_ENV = "COTJ_LD3_LEVELS"
"""Environment variable naming the JSON file where :func:`ld3_schedule` keeps its learnt levels (unset: memory
only)."""

Weights = dict[str, torch.Tensor]


# ------------------------------------------------------------------------------------------ weights (torch)


def _lam(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.log(a) - torch.log(s)


def _ddim_weights(a_j: torch.Tensor, s_j: torch.Tensor, a_i: torch.Tensor, s_i: torch.Tensor) -> Weights:
    """:func:`cotj.planning.multistep.ddim_weights` on 0-d tensors."""
    return {"x_j": s_i / s_j, "m_j": a_i - a_j * s_i / s_j}


def _dpmpp_2m_weights(a_k: torch.Tensor, s_k: torch.Tensor, a_j: torch.Tensor, s_j: torch.Tensor, a_i: torch.Tensor,
                      s_i: torch.Tensor) -> Weights:
    """:func:`cotj.planning.multistep.dpmpp_2m_weights` on 0-d tensors; a previous level at ``a_k = 0`` (t = 1 on the
    flow, ``r = inf``) in the limit, where the previous estimate drops out (as the numpy weights give it)."""
    h = _lam(a_i, s_i) - _lam(a_j, s_j)
    phi = torch.expm1(-h)
    if float(a_k.detach()) == 0.0:
        return {"x_j": s_i / s_j, "m_j": -a_i * phi, "m_k": torch.zeros_like(phi)}
    r = (_lam(a_j, s_j) - _lam(a_k, s_k)) / h
    return {"x_j": s_i / s_j, "m_j": -a_i * phi * (1.0 + 0.5 / r), "m_k": a_i * phi * 0.5 / r}


def _unipc_weights(a_k: torch.Tensor | None, s_k: torch.Tensor | None, a_j: torch.Tensor, s_j: torch.Tensor,
                   a_i: torch.Tensor, s_i: torch.Tensor) -> Weights:
    """:func:`cotj.planning.multistep.unipc_weights` on 0-d tensors (the same formulas, line for line); ``a_j = 0`` gives
    ``B(h) = -1`` and ``a_k = 0`` the ``rk = -inf`` limit, without infinities in the graph."""
    b_h = -torch.ones_like(a_i) if float(a_j.detach()) == 0.0 else torch.expm1(-(_lam(a_i, s_i) - _lam(a_j, s_j)))
    base = {"x_j": s_i / s_j, "m_j": -a_i * b_h}
    if a_k is None or s_k is None:
        return {"x_j": base["x_j"], "m_j": base["m_j"] + 0.5 * a_i * b_h, "m_i": -0.5 * a_i * b_h}
    h = _lam(a_i, s_i) - _lam(a_j, s_j)
    hh = -h
    phi_k = b_h / hh - 1.0
    b0 = phi_k / b_h
    b1 = (phi_k / hh - 0.5) * 2.0 / b_h
    if float(a_k.detach()) == 0.0:
        rho1, over_rk = b0, torch.zeros_like(b0)
    else:
        rk = (_lam(a_k, s_k) - _lam(a_j, s_j)) / h
        rho0 = (b0 - b1) / (1.0 - rk)
        rho1 = (b1 - rk * b0) / (1.0 - rk)
        over_rk = rho0 / rk
    return {"x_j": base["x_j"], "m_k": -a_i * b_h * over_rk,
            "m_j": base["m_j"] + a_i * b_h * (over_rk + rho1), "m_i": -a_i * b_h * rho1}


def _combine(w: Weights, vectors: dict[str, torch.Tensor]) -> torch.Tensor:
    """``Σ_p w_p·v_p`` (:func:`cotj.execute.solvers.combine`): weights cast to the vectors' dtype."""
    terms = [wt.to(vectors[name].dtype) * vectors[name] for name, wt in w.items()]
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out


# ------------------------------------------------------------------------------------------ the solvers


@dataclass
class _Run:
    denoiser: Any
    cond: Any
    prediction: str
    batch: int

    def ab(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = path_of(self.denoiser, t.reshape(1), self.prediction)
        return a.reshape(()).to(torch.float64), s.reshape(()).to(torch.float64)

    def estimate(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return clean_estimate(self.denoiser, x, t.expand(self.batch), self.cond, self.prediction)

    def predict(self, x: torch.Tensor, m: torch.Tensor, m_prev: torch.Tensor | None, t_prev: torch.Tensor | None,
                t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """:func:`cotj.execute.solvers.multistep_predict`: 2M, first order without a previous level or to 0."""
        a_j, s_j = self.ab(t)
        a_i, s_i = self.ab(t_next)
        if t_prev is None or m_prev is None or float(t_next.detach()) <= 0.0:
            return _combine(_ddim_weights(a_j, s_j, a_i, s_i), {"x_j": x, "m_j": m})
        return _combine(_dpmpp_2m_weights(*self.ab(t_prev), a_j, s_j, a_i, s_i), {"x_j": x, "m_j": m, "m_k": m_prev})

    def correct(self, x_last: torch.Tensor, m_prev2: torch.Tensor | None, m_prev: torch.Tensor, m: torch.Tensor,
                t_prev2: torch.Tensor | None, t_prev: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:func:`cotj.execute.solvers.unic_correct`."""
        a_k, s_k = (None, None) if t_prev2 is None else self.ab(t_prev2)
        w = _unipc_weights(a_k, s_k, *self.ab(t_prev), *self.ab(t))
        vectors = {"x_j": x_last, "m_j": m_prev, "m_i": m}
        if m_prev2 is not None:
            vectors["m_k"] = m_prev2
        return _combine(w, vectors)


def solve_torch(denoiser: Any, noise: torch.Tensor, cond: Any, levels: torch.Tensor, solver: str, *,
                prediction: str = "flow") -> torch.Tensor:
    """:func:`cotj.execute.solvers.solve` of every row through the same ``levels``, then to t = 0, differentiable
    in ``levels`` (and in the model's inputs): the same steps, written on tensors.

    Args:
        denoiser: ``model(x_t (n, ...), t (n,), cond) -> prediction``, run as it is (wrap it in
            ``torch.enable_grad`` and give it frozen weights to back-propagate into the levels only).
        noise: (B, ...) the state at ``levels[0]``.
        cond: (B, ...) conditions or None.
        levels: (K,) float64 strictly decreasing in (0, 1] (not checked: a graph's tensor).
        solver: "euler", "dpmpp_2m" or "unipc".
        prediction: what the denoiser predicts (:mod:`cotj.paths`).

    Returns:
        (B, ...) the samples at t = 0, in ``noise``'s dtype.
    """
    if solver not in LD3_SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(LD3_SOLVERS)}, got {solver!r}")
    run = _Run(denoiser, cond, prediction, noise.shape[0])
    k_levels = levels.shape[0]
    zero = torch.zeros((), dtype=torch.float64, device=levels.device)
    x = noise
    m_prev: torch.Tensor | None = None
    m_prev2: torch.Tensor | None = None
    x_last: torch.Tensor | None = None
    for k in range(k_levels):
        t = levels[k]
        t_next = levels[k + 1] if k + 1 < k_levels else zero
        if solver == "euler":
            m = run.estimate(x, t)
            x = ddim_step(denoiser, x, m, t.expand(run.batch), t_next.expand(run.batch), prediction)
            continue
        m = run.estimate(x, t)
        t_prev = levels[k - 1] if k > 0 else None
        xi = x
        if solver == "unipc" and k > 0 and t_prev is not None and m_prev is not None and x_last is not None:
            xi = run.correct(x_last, m_prev2 if k > 1 else None, m_prev, m, levels[k - 2] if k > 1 else None, t_prev, t)
        x_last = xi
        x = run.predict(xi, m, m_prev, t_prev, t, t_next).to(noise.dtype)
        m_prev2, m_prev = m_prev, m
    return x.to(noise.dtype)


# ------------------------------------------------------------------------------------------ the parameters


def levels_of(logits: torch.Tensor) -> torch.Tensor:
    """(K,) levels from K logits: ``d = softmax(logits)`` are the K positive decrements from 1 to 0, so the
    levels ``1, 1 - d_0, 1 - d_0 - d_1, ..., d_(K-1)`` are strictly decreasing in (0, 1], the first exactly 1."""
    d = torch.softmax(logits, dim=0)
    one = torch.ones(1, dtype=logits.dtype, device=logits.device)
    return torch.cat([one, 1.0 - torch.cumsum(d, dim=0)[:-1]])


def logits_of(levels: ArrayLike) -> torch.Tensor:
    """The logits (K,) float64 whose :func:`levels_of` are ``levels`` (K,) (first 1, strictly decreasing in (0, 1])."""
    lv = np.asarray(levels, dtype=np.float64)
    d = -np.diff(np.append(lv, 0.0))
    return torch.from_numpy(np.log(d))


def _check_levels(init: ArrayLike, k: int) -> NDArray[np.float64]:
    raw = np.asarray(init)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"init must be real numbers, got dtype {raw.dtype}")
    lv = raw.astype(np.float64)
    if lv.shape != (k,):
        raise ValueError(f"init must have shape ({k},) for k = {k}, got {lv.shape}")
    if not np.all(np.isfinite(lv)) or lv[0] != 1.0 or np.any(np.diff(lv) >= 0) or lv[-1] <= 0:
        raise ValueError("init must start at 1.0 and be strictly decreasing within (0, 1]")
    return lv


# ------------------------------------------------------------------------------------------ the fit


@dataclass(frozen=True)
class LD3Fit:
    """The result of :func:`ld3_fit`.

    Attributes:
        levels: (K,) the learnt levels (the iterate of lowest calibration error), descending, first 1.0.
        init: (K,) the initial levels.
        initial_error: calibration error (mean squared error per dimension, over samples) of ``init``.
        error: calibration error of ``levels`` (<= ``initial_error``).
        history: (steps + 1,) calibration error of each iterate, the last one included.
        seconds: wall time of the fit.
    """

    levels: NDArray[np.float64]
    init: NDArray[np.float64]
    initial_error: float
    error: float
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _frozen(denoiser: Any) -> None:
    if isinstance(denoiser, torch.nn.Module):
        denoiser.requires_grad_(False)


def ld3_fit(denoiser: Any, noise: torch.Tensor, cond: Any, reference: torch.Tensor, k: int, solver: str, *,
            steps: int = STEPS, lr: float = LR, batch_size: int | None = None, init: ArrayLike | None = None,
            prediction: str = "flow", seed: int = 0) -> LD3Fit:
    """Learn ``solver``'s K levels on calibration samples: Adam on the logits of :func:`levels_of`, the loss the
    mean over a batch of samples of the per-dimension squared error between the K-step sample
    (:func:`solve_torch`) and ``reference``, back-propagated through the model and the steps.

    With ``batch_size`` below the number of samples B, each Adam step takes the next ``batch_size`` samples of a
    shuffled pass over them (seeded by ``seed``), and the error over all B samples is measured (without
    gradients) at the start of each pass and at the end; with all samples, at every step (the step's own
    loss). The result is the measured iterate of lowest error.

    Args:
        denoiser: ``model(x_t, t, cond) -> prediction``, differentiable in ``x_t`` and ``t`` (no ``no_grad``
            inside); a ``torch.nn.Module``'s weights are frozen here (``requires_grad_(False)``), any other model's
            must be frozen by the caller.
        noise: (B, ...) each calibration sample's starting noise (its state at t = 1).
        cond: (B, ...) their conditions (a tensor indexed by rows), or None.
        reference: (B, ...) their teacher endpoints.
        k: levels (and model evaluations), >= 1; K = 1 has nothing to learn.
        solver: a :data:`LD3_SOLVERS` name.
        steps: Adam steps (each one forward and backward pass through the K steps), >= 0.
        lr: Adam's learning rate on the logits, > 0.
        batch_size: samples per step, 1..B; default B.
        init: (K,) initial levels, first 1.0, strictly decreasing in (0, 1]; default uniform.
        prediction: what the denoiser predicts.
        seed: the shuffling of the passes.

    Raises:
        TypeError: ``noise`` or ``reference`` not floating tensors, ``init`` not real numbers.
        ValueError: a bad ``k``, ``solver``, ``steps``, ``lr``, ``batch_size`` or ``init``, mismatched shapes
            (named), or an error or gradient that is not finite.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if solver not in LD3_SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(LD3_SOLVERS)}, got {solver!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    for name, v in (("noise", noise), ("reference", reference)):
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise TypeError(f"{name} must be a floating torch tensor, got {type(v).__name__}")
    if noise.shape != reference.shape or noise.shape[0] == 0:
        raise ValueError(f"noise and reference must have the same non-empty shape, got {tuple(noise.shape)} and "
                         f"{tuple(reference.shape)}")
    n = noise.shape[0]
    batch = n if batch_size is None else batch_size
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or not 1 <= batch <= n:
        raise ValueError(f"batch_size must be an int in 1..{n} (the samples), got {batch_size!r}")
    k, batch = int(k), int(batch)
    start = _check_levels(uniform(k) if init is None else init, k)
    clock = time.perf_counter()
    _frozen(denoiser)
    target = reference.detach().to(noise.dtype)

    def error(lv: torch.Tensor, rows: NDArray[np.int64] | None = None) -> torch.Tensor:
        """Mean over ``rows`` (default all) of the per-dimension squared error of the K-step samples."""
        if rows is None:
            x, ref = solve_torch(denoiser, noise, cond, lv, solver, prediction=prediction), target
        else:
            idx = torch.from_numpy(rows)
            x = solve_torch(denoiser, noise[idx], None if cond is None else cond[idx], lv, solver, prediction=prediction)
            ref = target[idx]
        return (x.double() - ref.double()).pow(2).flatten(1).mean(1).mean()

    logits = logits_of(start).requires_grad_(k > 1)
    history: list[float] = []
    best, best_levels = math.inf, start

    def record(value: float, lv: torch.Tensor) -> None:
        nonlocal best, best_levels
        history.append(value)
        if value < best:
            best, best_levels = value, lv.detach().numpy().copy()

    passes = -(-n // batch)
    rng = np.random.default_rng(seed)
    order = np.arange(n)
    if k > 1:
        opt = torch.optim.Adam([logits], lr=lr)
        for step in range(int(steps)):
            where = step % passes
            if where == 0:
                order = rng.permutation(n) if passes > 1 else order
            rows = order[where * batch:(where + 1) * batch]
            opt.zero_grad()
            with torch.enable_grad():
                lv = levels_of(logits)
                loss = error(lv, None if passes == 1 else rows)
                loss.backward()
            value = float(loss.detach())
            if passes == 1:
                record(value, lv)
            elif where == 0:
                with torch.no_grad():
                    record(float(error(lv)), lv)
            log.debug("ld3 %s K=%d step %d: batch error %.6g, levels %s", solver, k, step, value, lv.detach().numpy())
            if not math.isfinite(value) or logits.grad is None or not bool(torch.isfinite(logits.grad).all()):
                raise ValueError(f"ld3 {solver} K={k}: the calibration error or its gradient is not finite at step {step}")
            opt.step()
    with torch.no_grad():
        lv = levels_of(logits.detach())
        record(float(error(lv)), lv)
    best_levels[0] = 1.0
    fit = LD3Fit(np.asarray(best_levels, dtype=np.float64), start, history[0], best, history,
                 time.perf_counter() - clock)
    log.info("ld3 %s K=%d: calibration error %.6g -> %.6g in %d steps of %d samples (%.1f s)", solver, k,
             fit.initial_error, fit.error, steps, batch, fit.seconds)
    return fit


def ld3_levels(denoiser: Any, noise: torch.Tensor, cond: Any, reference: torch.Tensor, k: int, solver: str, *,
               steps: int = STEPS, lr: float = LR, batch_size: int | None = None, init: ArrayLike | None = None,
               prediction: str = "flow") -> NDArray[np.float64]:
    """(K,) the levels of :func:`ld3_fit` (its arguments): descending in (0, 1], the first 1.0."""
    return ld3_fit(denoiser, noise, cond, reference, k, solver, steps=steps, lr=lr, batch_size=batch_size, init=init,
                   prediction=prediction).levels


# ------------------------------------------------------------------------------------------ the study's schedule


_LEARNT: dict[str, NDArray[np.float64]] = {}


def steps_for(k: int) -> int:
    """Adam steps of the study's schedule at K levels: :data:`STEPS` at K = 4, fewer as K grows (a step costs K
    model evaluations per sample), so that every budget costs about the same, but at least :data:`MIN_STEPS`."""
    return max(MIN_STEPS, round(STEPS * 4 / max(int(k), 1)))


def _fingerprint(problem: Problem) -> str:
    """A digest of the calibration samples' noise and teacher endpoints (the model, its guidance and the prompts
    show in the endpoints): the cache key of their learnt levels."""
    h = hashlib.blake2b(digest_size=8)
    for v in (problem.calibration.states[:, -1], problem.calibration.states[:, 0]):
        h.update(np.ascontiguousarray(v, dtype=np.float64).tobytes())
    return h.hexdigest()


def ld3_schedule(problem: Problem, solver: str, k: int) -> NDArray[np.float64] | None:
    """(B, K) the LD3-style levels of ``solver`` at K levels for every held-out row of the benchmark ``problem``
    (:mod:`cotj_testbed.quality`), learnt by :func:`ld3_fit` (:func:`steps_for`, :data:`LR`, :data:`BATCH`) on its
    calibration samples
    (``calibration.states[:, -1]`` their noise, ``calibration.states[:, 0]`` their teacher endpoints,
    ``calibration_cond`` their conditions) through ``grad_denoiser`` (else ``denoiser``); None for a solver
    :func:`solve_torch` does not run (Heun). The initial levels are uniform or the GITS-style schedule, whichever
    has the lower calibration error. Learnt levels are kept in memory and, if the environment variable
    :data:`CACHE_ENV` names a JSON file, there too (keyed by solver, K and the calibration data), so a rerun reuses
    them."""
    from cotj_testbed.baselines import gits

    if solver not in LD3_SOLVERS:
        return None
    if problem.calibration_cond is None:
        raise ValueError("the ld3 schedule needs the problem's calibration_cond (the calibration samples' conditions)")
    b = problem.noise.shape[0]
    key = f"{solver}/K={k}/{_fingerprint(problem)}"
    path = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None
    stored: dict[str, Any] = json.loads(path.read_text()) if path is not None and path.exists() else {}
    if key not in _LEARNT and key in stored:
        _LEARNT[key] = np.asarray(stored[key]["levels"], dtype=np.float64)
    if key not in _LEARNT:
        calib = problem.calibration
        shape = (calib.states.shape[0], *problem.noise.shape[1:])
        noise = torch.from_numpy(calib.states[:, -1].copy()).reshape(shape).to(problem.noise.dtype)
        reference = torch.from_numpy(calib.states[:, 0].copy()).reshape(shape).to(problem.noise.dtype)
        model = problem.grad_denoiser if problem.grad_denoiser is not None else problem.denoiser
        starts = {"uniform": uniform(k), "gits": gits(calib, k)}
        with torch.no_grad():
            errors = {name: float((solve_torch(model, noise, problem.calibration_cond, torch.from_numpy(lv), solver,
                                               prediction=problem.prediction).double() - reference.double())
                                  .pow(2).flatten(1).mean(1).mean()) for name, lv in starts.items()}  # fmt: skip
        init = min(errors, key=lambda name: errors[name])
        fit = ld3_fit(model, noise, problem.calibration_cond, reference, k, solver, steps=steps_for(k), lr=LR,
                      batch_size=min(BATCH, noise.shape[0]), init=starts[init], prediction=problem.prediction)
        _LEARNT[key] = fit.levels
        if path is not None:
            stored = json.loads(path.read_text()) if path.exists() else {}  # another run may have written meanwhile
            stored[key] = {"levels": fit.levels.tolist(), "init": init, "initial_error": fit.initial_error,
                           "error": fit.error, "steps": steps_for(k), "lr": LR, "batch_size": min(BATCH, noise.shape[0]), "seconds": round(fit.seconds, 1),
                           "calibration_samples": int(noise.shape[0])}  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=1, sort_keys=True))
    return np.tile(_LEARNT[key], (b, 1))
