"""Deterministic solvers that run given noise levels exactly, batched: Euler, Heun, DPM-Solver++(2M), UniPC (bh2).

A plan fixes the levels where the model is evaluated (docs/method.md §1); the solver decides what is done with
the evaluations. Every solver here visits exactly the given levels, noisiest first, and ends with a step to t = 0,
on any Gaussian path ``x_t = a(t)·x0 + s(t)·eps`` (:func:`cotj.predict.teacher.path_of`: the linear flow unless
the denoiser has a ``path(t)`` method), so flow (velocity) and VP (epsilon) models alike.

All of them are built on the one first-order step of the package, DDIM (:func:`cotj.predict.teacher.ddim_step`,
Euler on the linear flow): from a state ``x`` at level t, with a clean estimate ``D``,

    x' = a(t')·D + s(t')·(x - a(t)·D)/s(t)

The multistep solvers are exactly this step with ``D`` a combination of the model's last clean estimates, in the
log signal-to-noise ratio ``λ(t) = log(a/s)`` (``λ = -inf`` at a = 0, the flow's t = 1, handled in the limit):

- ``euler``: ``D = x0_hat`` (:func:`cotj.predict.teacher.first_order_step`). Order 1, NFE = K.
- ``heun``: Heun's method on the probability-flow ODE in the linear-flow variables of the path,
  ``τ = s/(a + s)``, ``x̄ = x/(a + s)`` (every Gaussian path is the linear flow after this rescaling; on the
  linear flow ``τ = t`` and this is Diffusers' ``FlowMatchHeunDiscreteScheduler``). The Euler predictor is the
  DDIM step; a second evaluation at the next level averages the two slopes. The final step to 0 is Euler, as in
  k-diffusion and Diffusers. Order 2, NFE = 2K - 1.
- ``dpmpp_2m``: DPM-Solver++(2M) (Lu et al. 2022), data prediction,
  ``D = m_i + (m_i - m_{i-1})·h_i/(2·h_{i-1})`` with ``h_i = λ(t_{i+1}) - λ(t_i)``; the first step and the final
  step to 0 are first order (``D = m_i``), as Diffusers' ``DPMSolverMultistepScheduler`` with
  ``final_sigmas_type="zero"``. Order 2, NFE = K.
- ``unipc``: UniPC (Zhao et al. 2023), ``solver_type="bh2"``, data prediction, order 2: the UniP predictor (at
  order 2 and bh2 it is the DPM-Solver++(2M) update above) and the UniC corrector, which re-takes the previous
  step with the evaluation just made at its end (no extra model call; its corrected state is what the next
  predictor starts from, the model having seen the uncorrected one); no corrector after the last step, first-
  and last-step predictors first order. As Diffusers' ``UniPCMultistepScheduler`` (``predict_x0=True``,
  ``lower_order_final=True``, ``solver_order=2``). Nominal order 2; the corrector lifts the interior steps by
  one (measured 2.7-2.8 on the analytic model). NFE = K.

:func:`solve` runs any of them; :data:`SOLVERS` holds their NFE rules (:func:`nfe`, :func:`budget_for`) so that a
benchmark can compare them at equal cost, and :func:`evaluation_levels` the levels each one evaluates the model
at. :func:`solver_scheduler` gives the Diffusers scheduler that runs the same solver exactly inside a pipeline
(:mod:`cotj.execute.flow_schedulers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from cotj.predict.teacher import clean_estimate, ddim_step, first_order_step, path_of

__all__ = [
    "SOLVERS",
    "Evaluation",
    "Solver",
    "budget_for",
    "corrector_weights",
    "evaluation_levels",
    "level_rows",
    "log_snr",
    "multistep_predict",
    "multistep_weight",
    "nfe",
    "solve",
    "solver_scheduler",
    "unic_correct",
]


@dataclass(frozen=True)
class Evaluation:
    """One model evaluation of :func:`solve`, as its ``callback`` receives it.

    Attributes:
        step: index of the step (of the level in each row's plan) the evaluation belongs to.
        rows: (n,) int64 the batch rows evaluated (rows whose plan has ended, and Heun's final steps, are absent).
        t: (n,) float64 the level each row was evaluated at.
        x: (n, ...) the states the model saw.
        x0: (n, ...) the model's clean estimates there.
        intermediate: True for Heun's second evaluation (at the next level, on the Euler predictor).
    """

    step: int
    rows: torch.Tensor
    t: torch.Tensor
    x: torch.Tensor
    x0: torch.Tensor
    intermediate: bool = False


Callback = Callable[[Evaluation], None]


def level_rows(levels: ArrayLike, batch: int) -> NDArray[np.float64]:
    """``levels`` (K,) shared or (B, K) per row as (B, K) float64, each row strictly decreasing in (0, 1] and
    possibly ending early with NaN padding (adaptive plans); ValueError naming ``levels`` otherwise."""
    lv = np.asarray(levels, dtype=np.float64)
    lv = np.tile(lv, (batch, 1)) if lv.ndim == 1 else lv
    if lv.ndim != 2 or lv.shape[0] != batch or lv.shape[1] == 0:
        raise ValueError(f"levels must be (K,) or ({batch}, K) with K >= 1, got shape {np.shape(levels)}")
    filled = np.isfinite(lv)
    if not filled[:, 0].all() or np.any(filled[:, 1:] & ~filled[:, :-1]) or np.any(np.isinf(lv)):
        raise ValueError("levels: each row must be finite levels followed only by NaN padding")
    if np.any(np.diff(lv, axis=1)[filled[:, 1:]] >= 0) or np.any(lv[filled] <= 0) or np.any(lv[filled] > 1):
        raise ValueError("levels must be strictly decreasing (noisiest first) within (0, 1]")
    return lv


# ------------------------------------------------------------------------------------------ coefficients


def log_snr(denoiser: Any, t: torch.Tensor, prediction: str) -> torch.Tensor:
    """``λ = log(a/s)`` (n,) float64 at levels ``t`` (n,) in (0, 1]: ``-inf`` where a = 0 (the flow's t = 1)."""
    a, s = path_of(denoiser, t.to(torch.float64), prediction)
    return torch.log(a.to(torch.float64)) - torch.log(s.to(torch.float64))


def multistep_weight(lam_prev: torch.Tensor, lam: torch.Tensor, lam_next: torch.Tensor) -> torch.Tensor:
    """The weight ``c = h/(2·h_prev)`` (n,) of the second-order multistep estimate ``D = m + c·(m - m_prev)``,
    ``h = λ_next - λ``, ``h_prev = λ - λ_prev`` (DPM-Solver++(2M) and UniPC's bh2 predictor; 0 where
    ``λ_prev = -inf``: an estimate from t = 1 on the flow carries no slope)."""
    return (lam_next - lam) / (2.0 * (lam - lam_prev))


def corrector_weights(lam_prev2: torch.Tensor, lam_prev: torch.Tensor, lam: torch.Tensor,
                      order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """UniC-bh2 weights ``(w_new, w_old)`` (n,) of the corrected estimate
    ``D = m_prev + w_new·(m - m_prev) + w_old·(m_prev2 - m_prev)`` of the step from ``λ_prev`` to ``λ``.

    ``order`` is the order of the predictor that made the step. Order 1: ``w_new = 1/2``, ``w_old = 0``. Order 2:
    with ``h = λ - λ_prev``, ``φ = expm1(-h)``, ``b1 = (φ/(-h) - 1)/φ``, ``b2 = 2·((φ/(-h) - 1)/(-h) - 1/2)/φ``
    and ``q = h/(λ_prev2 - λ_prev)`` (``1/r_k`` of UniPC, 0 where ``λ_prev2 = -inf``), the solution of UniC's
    2×2 system ``[[1, 1], [r_k, 1]]·ρ = [b1, b2]``: ``ρ1 = (b1 - b2)·q/(q - 1)``, ``w_new = b1 - ρ1``,
    ``w_old = ρ1·q``.
    """
    if order == 1:
        half = torch.full_like(lam, 0.5)
        return half, torch.zeros_like(lam)
    h = lam - lam_prev
    hh = -h
    phi = torch.expm1(hh)
    k0 = phi / hh - 1.0
    b1 = k0 / phi
    b2 = 2.0 * (k0 / hh - 0.5) / phi
    q = h / (lam_prev2 - lam_prev)
    rho1 = (b1 - b2) * q / (q - 1.0)
    return b1 - rho1, rho1 * q


def _column(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(n,) coefficients as (n, 1, ...) in ``like``'s dtype, to broadcast against ``like`` (n, ...)."""
    return v.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def heun_combine(denoiser: Any, x: torch.Tensor, x0: torch.Tensor, x_pred: torch.Tensor, x0_pred: torch.Tensor,
                 t: torch.Tensor, t_next: torch.Tensor, prediction: str) -> torch.Tensor:
    """Heun's corrected state at ``t_next`` (n,) > 0 from the state ``x`` at ``t`` with estimate ``x0`` and the
    Euler predictor ``x_pred`` with estimate ``x0_pred``: in ``τ = s/(a + s)``, ``x̄ = x/(a + s)``, with slopes
    ``d = (x - (a + s)·x0)/s`` (``eps_hat - x0_hat``; the velocity on the linear flow),
    ``x̄' = x̄ + (τ' - τ)·(d + d_pred)/2`` and ``x' = (a' + s')·x̄'``."""
    a, s = (_column(v, x) for v in path_of(denoiser, t, prediction))
    a_n, s_n = (_column(v, x) for v in path_of(denoiser, t_next, prediction))
    d = (x - (a + s) * x0) / s
    d_pred = (x_pred - (a_n + s_n) * x0_pred) / s_n
    tau, tau_n = s / (a + s), s_n / (a_n + s_n)
    return (a_n + s_n) * (x / (a + s) + (tau_n - tau) * 0.5 * (d + d_pred))


def multistep_predict(denoiser: Any, x: torch.Tensor, m: torch.Tensor, m_prev: torch.Tensor,
                      t_prev: torch.Tensor | None, t: torch.Tensor, t_next: torch.Tensor, prediction: str) -> torch.Tensor:
    """The DPM-Solver++(2M) step (= UniP-bh2 at order 2) of rows ``x`` (n, ...) from ``t`` to ``t_next`` (n,): the
    DDIM step with ``D = m + c·(m - m_prev)`` (:func:`multistep_weight`), ``m`` the clean estimate at ``t`` and
    ``m_prev`` the one at ``t_prev``. First order (``c = 0``) without a previous level (``t_prev`` None) and on
    the final step to 0 (``lower_order_final``)."""
    d = m
    if t_prev is not None:
        c = multistep_weight(log_snr(denoiser, t_prev, prediction), log_snr(denoiser, t, prediction),
                             log_snr(denoiser, t_next, prediction))
        c = torch.where(t_next > 0, c, torch.zeros_like(c))
        d = m + _column(c, m) * (m - m_prev)
    return ddim_step(denoiser, x, d, t, t_next, prediction)


def unic_correct(denoiser: Any, x_last: torch.Tensor, m_prev2: torch.Tensor, m_prev: torch.Tensor, m: torch.Tensor,
                 t_prev2: torch.Tensor | None, t_prev: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
    """UniC-bh2: the state at ``t`` (n,) re-taken from ``x_last`` (n, ...), the corrected state at ``t_prev``, as the
    DDIM step with ``D = m_prev + w_new·(m - m_prev) + w_old·(m_prev2 - m_prev)`` (:func:`corrector_weights`;
    ``m`` the new estimate at ``t``). The predictor that made the step was first order when there is no level
    before ``t_prev`` (``t_prev2`` None), else second order."""
    lam_prev = log_snr(denoiser, t_prev, prediction)
    lam_prev2 = lam_prev if t_prev2 is None else log_snr(denoiser, t_prev2, prediction)
    w_new, w_old = corrector_weights(lam_prev2, lam_prev, log_snr(denoiser, t, prediction),
                                     order=1 if t_prev2 is None else 2)
    d = m_prev + _column(w_new, m) * (m - m_prev) + _column(w_old, m) * (m_prev2 - m_prev)
    return ddim_step(denoiser, x_last, d, t_prev, t, prediction)


# ------------------------------------------------------------------------------------------ solvers


@dataclass
class _Rows:
    """One block of rows being solved: its levels with a NaN column appended (the end), its conditions, and the
    global row indices (for callbacks)."""

    levels: NDArray[np.float64]
    cond: Any
    offset: int
    callback: Callback | None
    device: torch.device

    def step(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(active rows (n,) int64, their levels t (n,), their next levels (n,), 0 for the final step)."""
        active = torch.from_numpy(np.flatnonzero(np.isfinite(self.levels[:, k])))
        t = torch.from_numpy(self.levels[active.numpy(), k]).to(self.device)
        t_next = torch.from_numpy(np.nan_to_num(self.levels[active.numpy(), k + 1], nan=0.0)).to(self.device)
        return active, t, t_next

    def level(self, rows: torch.Tensor, k: int) -> torch.Tensor:
        """Levels (n,) of ``rows`` at step ``k`` (k >= 0; all finite for rows active at a later step)."""
        return torch.from_numpy(self.levels[rows.numpy(), k]).to(self.device)

    def cond_of(self, rows: torch.Tensor) -> Any:
        return None if self.cond is None else self.cond[rows]

    def evaluate(self, denoiser: Any, x: torch.Tensor, rows: torch.Tensor, t: torch.Tensor, k: int, prediction: str,
                 intermediate: bool = False) -> torch.Tensor:
        """The model's clean estimates (n, ...) at states ``x`` (n, ...) of ``rows`` and levels ``t``."""
        x0 = clean_estimate(denoiser, x, t, self.cond_of(rows), prediction)
        self.emit(k, rows, t, x, x0, intermediate)
        return x0

    def emit(self, k: int, rows: torch.Tensor, t: torch.Tensor, x: torch.Tensor, x0: torch.Tensor,
             intermediate: bool = False) -> None:
        if self.callback is not None:
            self.callback(Evaluation(k, rows + self.offset, t, x, x0, intermediate))


def _euler(denoiser: Any, x: torch.Tensor, rows: _Rows, prediction: str) -> torch.Tensor:
    """First-order steps (:func:`cotj.predict.teacher.first_order_step`) through each row's levels, then to 0."""
    for k in range(rows.levels.shape[1] - 1):
        idx, t, t_next = rows.step(k)
        x_next, x0 = first_order_step(denoiser, x[idx], t, t_next, rows.cond_of(idx), prediction)
        rows.emit(k, idx, t, x[idx], x0)
        x[idx] = x_next
    return x


def _heun(denoiser: Any, x: torch.Tensor, rows: _Rows, prediction: str) -> torch.Tensor:
    """Heun steps (:func:`heun_combine`, two evaluations each) through each row's levels; the step to 0 Euler."""
    for k in range(rows.levels.shape[1] - 1):
        idx, t, t_next = rows.step(k)
        x0 = rows.evaluate(denoiser, x[idx], idx, t, k, prediction)
        x_pred = ddim_step(denoiser, x[idx], x0, t, t_next, prediction)
        inner = t_next > 0
        if bool(inner.any()):
            j = idx[inner]
            x0_pred = rows.evaluate(denoiser, x_pred[inner], j, t_next[inner], k, prediction, intermediate=True)
            x_pred[inner] = heun_combine(denoiser, x[j], x0[inner], x_pred[inner], x0_pred, t[inner], t_next[inner],
                                         prediction)
        x[idx] = x_pred
    return x


def _dpmpp_2m(denoiser: Any, x: torch.Tensor, rows: _Rows, prediction: str) -> torch.Tensor:
    """DPM-Solver++(2M) through each row's levels (:func:`multistep_predict`)."""
    m_prev = torch.zeros_like(x)
    for k in range(rows.levels.shape[1] - 1):
        idx, t, t_next = rows.step(k)
        m = rows.evaluate(denoiser, x[idx], idx, t, k, prediction)
        t_prev = rows.level(idx, k - 1) if k > 0 else None
        x[idx] = multistep_predict(denoiser, x[idx], m, m_prev[idx], t_prev, t, t_next, prediction)
        m_prev[idx] = m
    return x


def _unipc(denoiser: Any, x: torch.Tensor, rows: _Rows, prediction: str) -> torch.Tensor:
    """UniPC-bh2 through each row's levels: at each level, correct the previous step with the new evaluation
    (:func:`unic_correct`), then predict the next state (:func:`multistep_predict`)."""
    m_prev, m_prev2, x_last = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
    for k in range(rows.levels.shape[1] - 1):
        idx, t, t_next = rows.step(k)
        m = rows.evaluate(denoiser, x[idx], idx, t, k, prediction)  # the model sees the uncorrected state
        xi, t_prev = x[idx], None
        if k > 0:
            t_prev = rows.level(idx, k - 1)
            t_prev2 = rows.level(idx, k - 2) if k > 1 else None
            xi = unic_correct(denoiser, x_last[idx], m_prev2[idx], m_prev[idx], m, t_prev2, t_prev, t, prediction)
        x_last[idx] = xi
        x[idx] = multistep_predict(denoiser, xi, m, m_prev[idx], t_prev, t, t_next, prediction)
        m_prev2[idx], m_prev[idx] = m_prev[idx], m
    return x


# ------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Solver:
    """A solver of :data:`SOLVERS`.

    Attributes:
        name: its key.
        order: its nominal order (global error ``O(K^-order)`` for K levels on a smooth problem; Diffusers'
            ``solver_order``): 1 for euler, 2 for the others (UniPC's corrector adds one in practice).
        evaluations: model evaluations per level, not counting the final step to 0.
        final: model evaluations of the final step (from the last level to t = 0).
        scheduler: the Diffusers scheduler that runs it inside a pipeline (:func:`solver_scheduler`).
        run: ``run(denoiser, x (B, ...), rows, prediction) -> x`` on one block of rows (internal).
    """

    name: str
    order: int
    evaluations: int
    final: int
    scheduler: str
    run: Callable[[Any, torch.Tensor, _Rows, str], torch.Tensor]

    def nfe(self, k: int) -> int:
        """Model evaluations of a K-level run: ``evaluations·(K - 1) + final`` (K >= 1)."""
        return self.evaluations * (int(k) - 1) + self.final

    def evaluation_levels(self, levels: ArrayLike) -> NDArray[np.float64]:
        """(NFE,) the levels the model is evaluated at, in order, for one row's levels (K,) (Heun:
        ``t0, t1, t1, t2, t2, ..., t_{K-1}, t_{K-1}``)."""
        lv = np.asarray(levels, dtype=np.float64)
        return lv if self.evaluations == 1 else np.repeat(lv, self.evaluations)[self.evaluations - self.final:]


SOLVERS: dict[str, Solver] = {
    "euler": Solver("euler", 1, 1, 1, "FlowMatchEulerDiscreteScheduler", _euler),
    "heun": Solver("heun", 2, 2, 1, "FlowMatchHeunDiscreteScheduler (sigmas=: FlowMatchHeunExactScheduler)", _heun),
    "dpmpp_2m": Solver("dpmpp_2m", 2, 1, 1, "DPMSolverMultistepScheduler (sigmas=: DPMSolverExactScheduler)", _dpmpp_2m),
    "unipc": Solver("unipc", 2, 1, 1, "FlowMatchUniPCScheduler (cotj's own; Diffusers' rounds timesteps)", _unipc),
}
"""The solvers by name: order, NFE rule and Diffusers scheduler (module docstring for the updates)."""


def _solver(name: str) -> Solver:
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {', '.join(SOLVERS)}")
    return SOLVERS[name]


def nfe(solver: str, k: int | ArrayLike) -> Any:
    """Model evaluations of ``solver`` on K levels (an int, or an array of per-row lengths -> int array):
    K for euler, dpmpp_2m and unipc, 2K - 1 for heun."""
    s = _solver(solver)
    if np.ndim(k) == 0:
        return s.nfe(int(np.asarray(k)))
    return s.evaluations * (np.asarray(k, dtype=np.int64) - 1) + s.final


def budget_for(solver: str, evaluations: int) -> int:
    """The most levels K whose run costs at most ``evaluations`` model evaluations (>= 1): equal-NFE budgets
    (heun: ``(NFE + 1) // 2``)."""
    s = _solver(solver)
    if isinstance(evaluations, bool) or not isinstance(evaluations, (int, np.integer)) or evaluations < s.final:
        raise ValueError(f"evaluations must be an int >= {s.final}, got {evaluations!r}")
    return (int(evaluations) - s.final) // s.evaluations + 1


def evaluation_levels(solver: str, levels: ArrayLike) -> NDArray[np.float64]:
    """(NFE,) the levels ``solver`` evaluates the model at on one row's levels (K,), in order."""
    return _solver(solver).evaluation_levels(levels)


def solve(denoiser: Any, noise: torch.Tensor, cond: Any, levels: ArrayLike, solver: str = "euler", *,
          prediction: str | None = None, batch_size: int | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Sample every row from its noise through its own levels with ``solver``, then to t = 0.

    Args:
        denoiser: ``model(x_t (n, ...), t (n,), cond (n, ...)) -> prediction``; a ``path(t)`` method gives its
            Gaussian path (:func:`cotj.predict.teacher.path_of`), else the linear flow.
        noise: (B, ...) the state at each row's first level (the noise itself, Diffusers' convention).
        cond: (B, ...) per-row conditions (a tensor, indexed by rows), or None.
        levels: (K,) for every row, or (B, K) per row, strictly decreasing in (0, 1]; rows may end early with NaN
            padding (adaptive plans). Row b costs ``nfe(solver, K_b)`` evaluations.
        solver: a key of :data:`SOLVERS`: "euler", "heun", "dpmpp_2m" or "unipc".
        prediction: what the denoiser predicts (:mod:`cotj.predict.prediction`); default its ``prediction``
            attribute.
        batch_size: rows per block solved together (each model call holds at most this many); default all.
        callback: called with an :class:`Evaluation` after every model evaluation.

    Returns:
        (B, ...) the clean samples, in ``noise``'s dtype.

    Raises:
        ValueError: an unknown solver (the message lists the known ones), bad ``levels``, no prediction, a bad
            ``batch_size``.
    """
    run = _solver(solver).run
    prediction = prediction or getattr(denoiser, "prediction", None)
    if prediction is None:
        raise ValueError("prediction is required for a denoiser without a 'prediction' attribute")
    b = noise.shape[0]
    lv = level_rows(levels, b)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    size = batch_size or max(b, 1)
    out = torch.empty_like(noise)
    with torch.inference_mode():
        for start in range(0, b, size):
            stop = min(start + size, b)
            block = np.append(lv[start:stop], np.full((stop - start, 1), np.nan), axis=1)
            rows = _Rows(block, None if cond is None else cond[start:stop], start, callback, noise.device)
            out[start:stop] = run(denoiser, noise[start:stop].clone(), rows, prediction)
    return out


def solver_scheduler(solver: str, num_train_timesteps: int = 1000) -> Any:
    """A fresh Diffusers scheduler for the linear flow (no shift) that runs ``solver`` on given sigmas exactly
    (``set_timesteps(sigmas=levels)``; :mod:`cotj.execute.flow_schedulers`). Needs ``diffusers``."""
    from cotj.execute import flow_schedulers

    return flow_schedulers.make(_solver(solver).name, num_train_timesteps)
