"""Deterministic solvers that run given noise levels exactly, batched: Euler, Heun, DPM-Solver++(2M), UniPC (bh2).

A plan fixes the levels where the model is evaluated; the solver decides what is done with the evaluations. Every
solver here visits exactly the given levels, noisiest first, then steps to t = 0, on any Gaussian path
``x_t = a(t)·x0 + s(t)·eps`` (:func:`cotj.paths.path_of`), so flow and VP models alike. The steps, their weights and
the Diffusers schedulers each one matches are in docs/method.md §11; the weights are those of
:mod:`cotj.planning.multistep`, applied to tensors by :func:`combine`:

- ``euler``: DDIM (:func:`cotj.paths.first_order_step`), order 1, NFE = K;
- ``heun``: Heun in the path's linear-flow variables (:func:`heun_combine`), order 2, NFE = 2K - 1;
- ``dpmpp_2m``: DPM-Solver++(2M), data prediction, midpoint form (:func:`multistep_predict`), NFE = K;
- ``unipc``: UniPC bh2, order 2 with the UniC corrector reusing each evaluation (:func:`unic_correct`), NFE = K.

:func:`solve` runs them; the same steps serve :class:`~cotj.execute.flow_schedulers.FlowMatchUniPCScheduler` and
:func:`cotj.execute.replan_sample`. The registry and NFE rules are :mod:`cotj.planning.solvers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from cotj.execute.checks import check_inputs
from cotj.paths import clean_estimate, ddim_step, first_order_step, path_of
from cotj.planning.multistep import ddim_weights, dpmpp_2m_weights, unipc_weights
from cotj.planning.solvers import get_solver

__all__ = ["Evaluation", "combine", "heun_combine", "level_rows", "multistep_predict", "solve", "unic_correct"]


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
    possibly ending early with NaN padding (adaptive plans); TypeError unless real numbers, ValueError naming
    ``levels`` otherwise."""
    raw = np.asarray(levels)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"levels must be real numbers, got {f'dtype {raw.dtype}' if raw.dtype.kind != 'O' else type(levels).__name__}")
    lv = raw.astype(np.float64)
    lv = np.tile(lv, (batch, 1)) if lv.ndim == 1 else lv
    if lv.ndim != 2 or lv.shape[0] != batch or lv.shape[1] == 0:
        raise ValueError(f"levels must be (K,) or ({batch}, K) with K >= 1, got shape {np.shape(levels)}")
    filled = np.isfinite(lv)
    if not filled[:, 0].all() or np.any(filled[:, 1:] & ~filled[:, :-1]) or np.any(np.isinf(lv)):
        raise ValueError("levels: each row must be finite levels followed only by NaN padding")
    if np.any(np.diff(lv, axis=1)[filled[:, 1:]] >= 0) or np.any(lv[filled] <= 0) or np.any(lv[filled] > 1):
        raise ValueError("levels must be strictly decreasing (noisiest first) within (0, 1]")
    return lv


# ------------------------------------------------------------------------------------------ steps


def _path(denoiser: Any, t: torch.Tensor, prediction: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``a(t), s(t)`` (n,) as float64 numpy arrays (:func:`cotj.paths.path_of`): the arguments of the
    weight functions of :mod:`cotj.planning.multistep`."""
    a, s = path_of(denoiser, t.to(torch.float64), prediction)
    return a.to(torch.float64).cpu().numpy(), s.to(torch.float64).cpu().numpy()


def combine(weights: Mapping[str, ArrayLike], vectors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``Σ_p w_p·v_p``: a step of :mod:`cotj.planning.multistep` (its weights (n,) per row, or scalars, on named vectors
    ``x_j``, ``m_k``, ``m_j``, ``m_i``) applied to the tensors (n, ...) of those names, in their dtype and device
    (the weights are computed in float64 and cast once). Names of ``vectors`` without a weight are unused."""
    out: torch.Tensor | None = None
    for name, w in weights.items():
        v = vectors[name]
        col = torch.from_numpy(np.asarray(w, dtype=np.float64)).to(device=v.device, dtype=v.dtype)
        term = col.reshape(-1, *([1] * (v.ndim - 1))) * v if col.ndim else col * v
        out = term if out is None else out + term
    if out is None:
        raise ValueError("no weights to combine")
    return out


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
    """The DPM-Solver++(2M) step (= UniP-bh2 at order 2) of rows ``x`` (n, ...) from ``t`` to ``t_next`` (n,) (or
    (1,) for every row), ``m`` the clean estimate at ``t`` and ``m_prev`` the one at ``t_prev``: the weights of
    :func:`cotj.planning.multistep.dpmpp_2m_weights` (:func:`combine`). First order (:func:`cotj.planning.multistep.ddim_weights`)
    without a previous level (``t_prev`` None) and on rows whose step goes to 0 (``lower_order_final``)."""
    a_j, s_j = _path(denoiser, t, prediction)
    a_i, s_i = _path(denoiser, t_next, prediction)
    first = ddim_weights(a_j, s_j, a_i, s_i)
    if t_prev is None:
        return combine(first, {"x_j": x, "m_j": m})
    inner = t_next.to(torch.float64).cpu().numpy() > 0
    with np.errstate(all="ignore"):  # the weights of rows stepping to 0 are not finite: those rows are first order
        second = dpmpp_2m_weights(*_path(denoiser, t_prev, prediction), a_j, s_j, a_i, s_i)
    w = {name: np.where(inner, second[name], first.get(name, 0.0)) for name in second}
    return combine(w, {"x_j": x, "m_j": m, "m_k": m_prev})


def unic_correct(denoiser: Any, x_last: torch.Tensor, m_prev2: torch.Tensor | None, m_prev: torch.Tensor,
                 m: torch.Tensor, t_prev2: torch.Tensor | None, t_prev: torch.Tensor, t: torch.Tensor,
                 prediction: str) -> torch.Tensor:
    """UniC-bh2: the state at ``t`` (n,) re-taken from ``x_last`` (n, ...), the corrected state at ``t_prev``,
    with the new estimate ``m`` at ``t`` as well as ``m_prev`` (at ``t_prev``) and ``m_prev2`` (at ``t_prev2``):
    the weights of :func:`cotj.planning.multistep.unipc_weights` (:func:`combine`). The predictor that made the step was
    first order when there is no level before ``t_prev`` (``t_prev2`` None; ``m_prev2`` unused), else second
    order."""
    a_k, s_k = (None, None) if t_prev2 is None else _path(denoiser, t_prev2, prediction)
    w = unipc_weights(a_k, s_k, *_path(denoiser, t_prev, prediction), *_path(denoiser, t, prediction))
    vectors = {"x_j": x_last, "m_j": m_prev, "m_i": m}
    if m_prev2 is not None:
        vectors["m_k"] = m_prev2
    return combine(w, vectors)


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
    """First-order steps (:func:`cotj.paths.first_order_step`) through each row's levels, then to 0."""
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


_RUN: dict[str, Callable[[Any, torch.Tensor, _Rows, str], torch.Tensor]] = {
    "euler": _euler, "heun": _heun, "dpmpp_2m": _dpmpp_2m, "unipc": _unipc,
}
"""Each solver of :data:`cotj.planning.solvers.SOLVERS`: ``run(denoiser, x (B, ...), rows, prediction) -> x``."""


def solve(denoiser: Any, noise: torch.Tensor, cond: Any, levels: ArrayLike, solver: str = "euler", *,
          prediction: str | None = None, batch_size: int | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Sample every row from its noise through its own levels with ``solver``, then to t = 0.

    Args:
        denoiser: ``model(x_t (n, ...), t (n,), cond (n, ...)) -> prediction``; a ``path(t)`` method gives its
            Gaussian path (:func:`cotj.paths.path_of`), else the linear flow.
        noise: (B, ...) the state at each row's first level (the noise itself, Diffusers' convention).
        cond: (B, ...) per-row conditions (a tensor, indexed by rows), or None.
        levels: (K,) for every row, or (B, K) per row, strictly decreasing in (0, 1]; rows may end early with NaN
            padding (adaptive plans). Row b costs ``nfe(solver, K_b)`` evaluations.
        solver: "euler", "heun", "dpmpp_2m" or "unipc" (:data:`cotj.planning.solvers.SOLVERS`).
        prediction: what the denoiser predicts (:mod:`cotj.paths`); default its ``prediction`` attribute.
        batch_size: rows per block solved together (each model call holds at most this many); default all.
        callback: called with an :class:`Evaluation` after every model evaluation.

    Returns (B, ...) the clean samples, in ``noise``'s dtype. Raises TypeError (a denoiser that is not callable,
    ``noise`` not a real floating tensor, ``levels`` not real numbers) or ValueError (an unknown solver, bad
    ``levels``, ``noise`` with no rows or not finite, ``cond`` without one row per noise row, no prediction, a bad
    ``batch_size``, a sample that is not finite at the end: the model's output overflowed).
    """
    run = _RUN[get_solver(solver).name]
    prediction = check_inputs(denoiser, noise, cond, prediction)
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
    bad = ~torch.isfinite(out.reshape(b, -1)).all(1)
    if bool(bad.any()):
        raise ValueError(f"the sample of row {int(bad.nonzero()[0, 0])} holds NaN or inf after {solver}'s last step: "
                         "the model's output overflowed")
    return out
