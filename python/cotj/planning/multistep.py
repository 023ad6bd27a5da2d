"""Plans for the solver that runs them (docs/method.md §11): solver costs in numpy, plans in the Rust core.

The plan graph's edge cost (:mod:`cotj.planning.objectives`) models one first-order step. A solver's step from level
``t_j`` to ``t_i`` is a linear combination of the state ``x_j`` and of clean estimates ``m = x0_hat`` at the
previous, current and next levels; its weights (:data:`Weights`) are here for "euler" (DDIM on any Gaussian path,
:func:`ddim_weights`), "dpmpp_2m" (:func:`dpmpp_2m_weights`), "unipc" (:func:`unipc_weights`) and "heun" (linear
flow only). Every first step and last step (to ``t = 0``) is first order. The formulas are in docs/method.md §11.

Because each step is linear in the vectors of a teacher trajectory, its mean local error is a quadratic form in the
mean Gram matrix of states and estimates (:attr:`cotj.planning.objectives.TeacherCost.gram`), which gives every
jump ``(k, j) -> i`` at once (:func:`solver_costs`; evaluations at the predicted state through
:func:`at_predicted_state`). A multistep solver's cost depends on the previous level, so :func:`plan_multistep` runs
the DP over (previous, current) pairs, O(K·N³), in the Rust core; the pair costs take 8·M³ bytes for M nodes, at
most ``cotj._core.MAX_PAIR_NODES`` (docs/method.md §11, "Planning").
"""


from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj._core import PlanError
from cotj._deprecation import moved_names, warn
from cotj.planning.solvers import MULTISTEP, get_solver

__all__ = [
    "SolverCost",
    "at_predicted_state",
    "ddim_weights",
    "dpmpp_2m_weights",
    "estimate_gain",
    "plan_multistep",
    "plan_multistep_batch",
    "shared_solver_costs",
    "solver_costs",
    "unipc_weights",
]


__getattr__ = moved_names(__name__, {"SOLVERS": "cotj.planning.solvers"})

Weights = dict[str, NDArray[np.float64]]
"""Coefficients of one step on named vectors: ``x_j`` (the state), ``m_k``, ``m_j``, ``m_i`` (clean estimates at
the previous, current and next level) and ``x_i`` (the teacher's next state, Heun's proxy)."""


def _lam(a: NDArray[np.float64], s: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore"):
        return np.log(a) - np.log(s)


def ddim_weights(a_j: ArrayLike, s_j: ArrayLike, a_i: ArrayLike, s_i: ArrayLike) -> Weights:
    """The first-order step j -> i (broadcasting arrays): ``x_j`` and ``m_j`` weights."""
    a_j, s_j, a_i, s_i = (np.asarray(v, dtype=np.float64) for v in (a_j, s_j, a_i, s_i))
    return {"x_j": s_i / s_j, "m_j": a_i - a_j * s_i / s_j}


def dpmpp_2m_weights(a_k: ArrayLike, s_k: ArrayLike, a_j: ArrayLike, s_j: ArrayLike, a_i: ArrayLike,
                     s_i: ArrayLike) -> Weights:
    """DPM-Solver++(2M) from j to i with the previous level k (midpoint form, as Diffusers' default)."""
    a_k, s_k, a_j, s_j, a_i, s_i = (np.asarray(v, dtype=np.float64) for v in (a_k, s_k, a_j, s_j, a_i, s_i))
    lam_k, lam_j, lam_i = _lam(a_k, s_k), _lam(a_j, s_j), _lam(a_i, s_i)
    h = lam_i - lam_j
    r = (lam_j - lam_k) / h
    phi = np.expm1(-h)
    return {"x_j": s_i / s_j, "m_j": -a_i * phi * (1.0 + 0.5 / r), "m_k": a_i * phi * 0.5 / r}


def unipc_weights(a_k: ArrayLike | None, s_k: ArrayLike | None, a_j: ArrayLike, s_j: ArrayLike, a_i: ArrayLike,
                  s_i: ArrayLike) -> Weights:
    """UniPC (bh2, data prediction) from j to i: the predictor and the UniC corrector that uses the estimate
    ``m_i`` at the new state. Without a previous level (``a_k = s_k = None``) both are of order 1, else of order 2
    (the corrector's ``rho`` solves the order conditions ``R·rho = b`` of UniPC, as Diffusers does)."""
    a_j, s_j, a_i, s_i = (np.asarray(v, dtype=np.float64) for v in (a_j, s_j, a_i, s_i))
    lam_j, lam_i = _lam(a_j, s_j), _lam(a_i, s_i)
    h = lam_i - lam_j
    b_h = np.expm1(-h)  # B(h) of bh2, also phi_1
    base = {"x_j": s_i / s_j, "m_j": -a_i * b_h}
    if a_k is None or s_k is None:  # order 1: rho_c = 1/2 on D1_t = m_i - m_j
        return {"x_j": base["x_j"], "m_j": base["m_j"] + 0.5 * a_i * b_h, "m_i": -0.5 * a_i * b_h}
    rk = (_lam(np.asarray(a_k, dtype=np.float64), np.asarray(s_k, dtype=np.float64)) - lam_j) / h  # < 0
    hh = -h
    phi_k = b_h / hh - 1.0
    b0 = phi_k / b_h
    b1 = (phi_k / hh - 0.5) * 2.0 / b_h
    # R = [[1, 1], [rk, 1]]; rho = R^-1 b. A previous level at t = 1 (a = 0) has rk = -inf: the limit is
    # rho0 = 0, rho1 = b0 (the previous estimate drops out), where Diffusers' own solve would give NaN.
    far = np.isinf(rk)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho0 = np.where(far, 0.0, (b0 - b1) / (1.0 - rk))
        rho1 = np.where(far, b0, (b1 - rk * b0) / (1.0 - rk))
        over_rk = np.where(far, 0.0, rho0 / rk)
    # corrector: x_i = x_i_ - a_i·B(h)·(rho0·(m_k - m_j)/rk + rho1·(m_i - m_j))
    return {"x_j": base["x_j"], "m_k": -a_i * b_h * over_rk,
            "m_j": base["m_j"] + a_i * b_h * (over_rk + rho1), "m_i": -a_i * b_h * rho1}


def at_predicted_state(w: Weights, predicted: Weights, gain: ArrayLike) -> Weights:
    """Weights of a step whose estimate ``m_i`` is taken at the predicted state ``x_hat = Σ predicted·v`` rather
    than at the teacher's state ``x_i``: to first order ``m(x_hat) = m_i + gain·(x_hat - x_i)``, ``gain`` the
    estimate's sensitivity to its state at level i (:func:`estimate_gain`). UniPC's corrector and Heun's second
    slope evaluate there; with the teacher's state instead, a large jump would look almost free."""
    g = np.asarray(w.get("m_i", 0.0)) * np.asarray(gain, dtype=np.float64)
    out = dict(w)
    for name, p in predicted.items():
        out[name] = out.get(name, 0.0) + g * p
    out["x_i"] = out.get("x_i", 0.0) - g
    return out


def estimate_gain(a: ArrayLike, s: ArrayLike, second_moment: float) -> NDArray[np.float64]:
    """``a·σ²/(a²·σ² + s²)`` (M,): how much the clean estimate moves per unit move of the state at each level, for
    data of per-dimension second moment σ² (exact for Gaussian data: the slope of the posterior mean)."""
    a, s = np.asarray(a, dtype=np.float64), np.asarray(s, dtype=np.float64)
    return a * second_moment / (a * a * second_moment + s * s)


def _heun_weights(t_j: NDArray[np.float64], t_i: NDArray[np.float64], gain: NDArray[np.float64]) -> Weights:
    """Heun on the linear flow: ``x_i = x_j + (t_i - t_j)/2·(v_j + v(x_hat))`` with ``v = (x - m)/t`` and the
    Euler-predicted ``x_hat``, its estimate from :func:`at_predicted_state`."""
    half = 0.5 * (t_i - t_j)
    euler = ddim_weights(1.0 - t_j, t_j, 1.0 - t_i, t_i)
    second = at_predicted_state({**euler, "m_i": -np.ones_like(t_i)}, euler, gain)  # x_hat - m(x_hat)
    w: Weights = {"x_j": 1.0 + half / t_j, "m_j": -half / t_j}
    for name, v in second.items():
        w[name] = w.get(name, 0.0) + half / t_i * v
    return w


def _first_weights(solver: str, t: NDArray[np.float64], a: NDArray[np.float64], s: NDArray[np.float64],
                   gain: NDArray[np.float64], j: NDArray[np.int64], i: NDArray[np.int64]) -> Weights:
    """The weights of a solver's step j -> i (i >= 1) taken without a previous evaluation."""
    euler = ddim_weights(a[j], s[j], a[i], s[i])
    if solver == "unipc":
        return at_predicted_state(unipc_weights(None, None, a[j], s[j], a[i], s[i]), euler, gain[i])
    if solver == "heun":
        return _heun_weights(t[j], t[i], gain[i])
    return euler


@dataclass(frozen=True)
class SolverCost:
    """A solver's mean local errors on teacher trajectories, on nodes ``0..M-1`` (node 0 is t = 0, node n is the
    grid level n - 1).

    Attributes:
        solver: a :data:`SOLVERS` name.
        first: (M, M) ``[j, i]`` the step j -> i taken without a previous level (a solver's first step; for the
            single-step solvers every step); ``inf`` unless i < j, column 0 the first-order step to t = 0.
        pairs: (M, M, M) ``[k, j, i]`` the step j -> i after an evaluation at k (multistep solvers; ``inf`` unless
            k > j > i >= 1); None for single-step solvers.
        end: (M,) ``[j]`` the last step, from j to t = 0 (first order: the state becomes ``m_j``).
    """

    solver: str
    first: NDArray[np.float64]
    pairs: NDArray[np.float64] | None
    end: NDArray[np.float64]


def _quadratic(gram: NDArray[np.float64], slots: dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]]) -> NDArray[np.float64]:
    """``sum_pq w_p·w_q·G[idx_p, idx_q]`` over the named slots (index array, weight array), elementwise."""
    items = list(slots.values())
    out = np.zeros(np.broadcast(*[w for _, w in items]).shape)
    for ip, wp in items:
        for iq, wq in items:
            out = out + wp * wq * gram[ip, iq]
    return out


def solver_costs(solver: str, gram: ArrayLike, levels: ArrayLike, a: ArrayLike | None = None,
                 s: ArrayLike | None = None) -> SolverCost:
    """The :class:`SolverCost` of ``solver`` from the mean Gram matrix of teacher trajectories.

    Args:
        solver: a :data:`SOLVERS` name.
        gram: (2M, 2M) mean over calibration samples of ``V·Vᵀ/D``, ``V`` the (2M, D) stack of the states at the M
            nodes then the clean estimates at them (:meth:`cotj.predict.teacher.Trajectories.gram`).
        levels: (M,) ascending node levels, ``levels[0] = 0``.
        a, s: (M,) the Gaussian path at the nodes; default the linear flow ``a = 1 - t``, ``s = t``.
    """
    get_solver(solver)
    t = np.asarray(levels, dtype=np.float64)
    g = np.asarray(gram, dtype=np.float64)
    m = t.size
    if t.ndim != 1 or m < 2 or t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ValueError("levels must be 1-D, ascending, start at 0 and hold at least 2 levels")
    if g.shape != (2 * m, 2 * m):
        raise ValueError(f"gram must have shape ({2 * m}, {2 * m}) for {m} levels, got {g.shape}")
    flow = a is None and s is None
    if solver == "heun" and not flow:
        raise ValueError("the heun cost is defined on the linear flow only (give no a and s)")
    av = 1.0 - t if a is None else np.asarray(a, dtype=np.float64)
    sv = t if s is None else np.asarray(s, dtype=np.float64)
    gain = estimate_gain(av, sv, float(g[0, 0]))  # σ²: the endpoints' mean square
    nodes = np.arange(m)

    def slots(w: Weights, k: NDArray[np.int64], j: NDArray[np.int64], i: NDArray[np.int64]) -> dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]]:
        where = {"x_j": j, "m_k": m + k, "m_j": m + j, "m_i": m + i, "x_i": i}
        out = {name: (where[name], weight) for name, weight in w.items()}
        ix, wx = out.get("x_i", (i, np.zeros(())))
        out["x_i"] = (ix, wx - 1.0)  # the error against the teacher's next state
        return out

    j2, i2 = nodes[:, None], nodes[None, :]
    below = (i2 < j2) & (j2 >= 1)
    jj, ii = np.where(below, j2, 1), np.where(below, i2, 0)
    inner = ii >= 1  # a step that lands on a level above t = 0: the solver's own first step there
    w1 = _first_weights(solver, t, av, sv, gain, jj, np.maximum(ii, 1))
    w1 = {name: np.where(inner, w, 0.0) for name, w in w1.items()}
    for name, w in ddim_weights(av[jj], sv[jj], av[ii], sv[ii]).items():  # the last step, to t = 0: first order
        w1[name] = np.where(inner, w1[name], w)
    first = np.where(below, _quadratic(g, slots(w1, jj, jj, ii)), np.inf)
    end = np.full(m, np.inf)
    end[1:] = first[1:, 0]
    pairs = None
    if solver in MULTISTEP:
        from cotj._core import MAX_PAIR_NODES

        if m > MAX_PAIR_NODES:
            raise ValueError(f"levels has {m} nodes: {solver}'s pair costs (M, M, M) would take "
                             f"{8 * m**3 / 2**30:.1f} GiB; at most MAX_PAIR_NODES = {MAX_PAIR_NODES} nodes "
                             f"({8 * MAX_PAIR_NODES**3 / 2**30:.0f} GiB) are planned: use a coarser grid")
        pairs = np.full((m, m, m), np.inf)
        j3, i3 = nodes[None, :, None], nodes[None, None, :]
        slab = max(1, _SLAB // (m * m))
        for lo in range(3, m, slab):  # previous nodes k >= 3: the first with a valid triple (3, 2, 1)
            k3 = nodes[lo:lo + slab, None, None]
            valid = (k3 > j3) & (j3 > i3) & (i3 >= 1)
            # evaluate the weights at a valid stand-in, (3, 2, 1), where the triple is not one
            kk, jj3, ii3 = np.where(valid, k3, 3), np.where(valid, j3, 2), np.where(valid, i3, 1)
            args = (av[kk], sv[kk], av[jj3], sv[jj3], av[ii3], sv[ii3])
            w3 = dpmpp_2m_weights(*args)
            if solver == "unipc":  # the corrector's estimate is taken at the 2M-predicted state
                w3 = at_predicted_state(unipc_weights(*args), w3, gain[ii3])
            pairs[lo:lo + slab] = np.where(valid, _quadratic(g, slots(w3, kk, jj3, ii3)), np.inf)
    return SolverCost(solver, first, pairs, end)


_SLAB = 1 << 18
"""Entries of the pair costs :func:`solver_costs` computes at once (a slab of previous nodes): its temporaries, a
few dozen arrays of this size, stay near 60 MB whatever the grid."""


_CACHE: OrderedDict[bytes, SolverCost] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_ENTRIES = 4
"""Most solver costs :func:`shared_solver_costs` keeps."""
_CACHE_BYTES = 256 << 20
"""Most bytes of solver costs :func:`shared_solver_costs` keeps (a larger one is computed, returned, not kept)."""


def shared_solver_costs(solver: str, gram: ArrayLike, levels: ArrayLike) -> SolverCost:
    """:func:`solver_costs` on the linear flow, remembered by content: the same solver, Gram matrix and levels (a
    teacher cost loaded again from its file, say) get the same :class:`SolverCost` back, whose arrays are read-only.
    Keeps the last :data:`_CACHE_ENTRIES` within :data:`_CACHE_BYTES` (the pair costs at N = 100 take 8.2 MB)."""
    g = np.ascontiguousarray(gram, dtype=np.float64)
    t = np.ascontiguousarray(levels, dtype=np.float64)
    h = hashlib.blake2b(solver.encode(), digest_size=32)
    for v in (g, t):
        h.update(repr(v.shape).encode())
        h.update(v.tobytes())
    key = h.digest()
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    cost = solver_costs(solver, g, t)
    arrays = [a for a in (cost.first, cost.pairs, cost.end) if a is not None]
    for a in arrays:
        a.setflags(write=False)
    size = sum(a.nbytes for a in arrays)
    with _CACHE_LOCK:
        if size <= _CACHE_BYTES:
            _CACHE[key] = cost
            while len(_CACHE) > _CACHE_ENTRIES or sum(
                    sum(v.nbytes for v in (c.first, c.pairs, c.end) if v is not None) for c in _CACHE.values()
            ) > _CACHE_BYTES:
                _CACHE.popitem(last=False)
    return cost


_Arrays = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]


def _plan_args(cost: SolverCost, scale: ArrayLike | None) -> _Arrays:
    """The arrays :func:`cotj._core.plan_pairs` takes: ``first``, ``pairs``, ``end`` and the scale (or None)."""
    if cost.pairs is None:
        raise ValueError(f"{cost.solver} is a single-step solver: plan it with cotj.plan_batch(cotj.DenseCost(...))")

    def f64(v: ArrayLike) -> NDArray[np.float64]:
        return np.ascontiguousarray(v, dtype=np.float64)

    return f64(cost.first), f64(cost.pairs), f64(cost.end), None if scale is None else f64(scale)


def plan_multistep(cost: SolverCost, budget: int, *, current: int, previous: int | None = None,
                   scale: ArrayLike | None = None) -> tuple[NDArray[np.int64], float]:
    """The cheapest ``budget``-evaluation plan of a multistep solver from grid level ``current`` (evaluated next),
    over (previous, current) pairs: ``(steps (budget,) grid indices descending from current, its cost)``.

    The cost of a plan ``current = j_1 > ... > j_K`` is its first step (from ``cost.first``, or from
    ``cost.pairs`` after an evaluation at grid level ``previous``), then ``pairs[j_(n-1), j_n, j_(n+1)]``, then
    ``end[j_K]``; ``scale`` (N,) finite and > 0 multiplies every step by a factor of its source level (closed-loop
    row scales). Runs in the Rust core (GIL released, Ctrl-C stops it), O(K·N³/6) time, O(K·N²) memory; ties break
    as numpy's ``argmin`` would (docs/method.md §11). ``+inf`` is a missing step; NaN and ``-inf`` are refused.
    Raises :class:`cotj.PlanError` for a bad argument (named) or no plan of finite cost.
    """
    steps, costs = plan_multistep_batch(cost, budget, current=current, previous=previous, scale=scale)
    return steps[0], float(costs[0])


def plan_multistep_batch(cost: SolverCost, budget: int | ArrayLike, *, current: int | ArrayLike,
                         previous: int | ArrayLike | None = None,
                         scale: ArrayLike | None = None) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """:func:`plan_multistep` for B rows at once, in parallel: ``budget``, ``current`` and ``previous`` (grid
    indices; negative: none) ints or (B,) ints, ``scale`` (N,) or (B, N). Returns ``(steps (B, max budget) grid
    indices padded with -1, costs (B,))``."""
    n = cost.end.shape[0] - 1
    w = None
    if scale is not None:
        s = np.asarray(scale, dtype=np.float64)
        if s.ndim not in (1, 2) or s.shape[-1] != n:
            raise PlanError(f"scale must be ({n},) or (B, {n}), one factor per grid level, got shape {s.shape}")
        if not (s.min() > 0 and s.max() < np.inf):  # NaN fails both
            where = np.argwhere(~(np.isfinite(s) & (s > 0)))[0]
            raise PlanError(f"scale[{', '.join(str(int(i)) for i in where)}] = {s[tuple(where)]} must be finite and > 0")
        w = np.empty((*s.shape[:-1], n + 1))
        w[..., 0], w[..., 1:] = 1.0, s
    nodes, costs = _pairs_core(cost, budget, _shift(current, "current", n),
                               None if previous is None else _shift(previous, "previous", n), w)
    return np.where(nodes >= 1, nodes - 1, -1), costs


def _shift(index: int | ArrayLike, name: str, n: int) -> int | NDArray[np.int64]:
    """Grid indices (< n; ``previous`` negative for none) as nodes of the pair costs (node 0 is t = 0)."""
    if isinstance(index, (bool, np.bool_)):
        raise TypeError(f"{name} must be a grid index (int), got {type(index).__name__}")
    arr = np.asarray(index)
    if arr.dtype == np.int64 and arr.ndim == 1 and arr.size and arr.max() < n:  # the common case
        low = arr.min()
        if low >= 0:
            return arr + 1
        if low == -1 and name == "previous":
            return np.where(arr >= 0, arr + 1, -1)
    if arr.dtype.kind not in "iu" or arr.ndim > 1:
        raise TypeError(f"{name} must be a grid index (int) or (B,) ints, got {arr.dtype} of shape {arr.shape}")
    low = -1 if name == "previous" else 0
    if arr.size and (arr.min() < low or arr.max() >= n):
        bad = arr.reshape(-1)[np.argmax((arr.reshape(-1) < low) | (arr.reshape(-1) >= n))]
        raise PlanError(f"{name} must be a grid index in {max(low, 0)}..{n - 1}"
                        f"{' (or -1 for none)' if low < 0 else ''}, got {bad}")
    shifted = np.where(arr >= 0, arr.astype(np.int64) + 1, -1)
    return int(shifted) if arr.ndim == 0 else shifted


def _pairs_core(cost: SolverCost, budget: int | ArrayLike, current: int | ArrayLike, previous: int | ArrayLike | None,
                scale: ArrayLike | None) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """``cotj._core.plan_pairs`` on nodes: ``(nodes (B, W) padded with -1, costs (B,))``."""
    from cotj._core import plan_pairs as core

    def ints(v: Any) -> Any:
        """np.integer as int and int arrays as int64; anything else as given, for the core to refuse by name."""
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, (list, tuple, np.ndarray)) and np.asarray(v).dtype.kind in "iu":
            return np.ascontiguousarray(v, dtype=np.int64)
        return v

    first, pairs, end, w = _plan_args(cost, scale)
    nodes, _, costs = core(first, pairs, end, ints(budget), ints(current), previous=None if previous is None else ints(previous),
                           scale=w)
    return nodes, costs


def plan_pairs(cost: SolverCost, budget: int, *, current: int, previous: int | None = None,
               scale: ArrayLike | None = None) -> NDArray[np.int64]:
    """Deprecated: :func:`plan_multistep` on nodes (node 0 is t = 0, node n the grid level n - 1)."""
    warn("plan_pairs (nodes, node 0 = t = 0)", "plan_multistep (grid indices, as every planning call)")
    return _pairs_core(cost, budget, current, previous, scale)[0][0]


def plan_pairs_batch(cost: SolverCost, budget: int | ArrayLike, *, current: int | ArrayLike,
                     previous: int | ArrayLike | None = None, scale: ArrayLike | None = None) -> NDArray[np.int64]:
    """Deprecated: :func:`plan_multistep_batch` on nodes (node 0 is t = 0, node n the grid level n - 1)."""
    warn("plan_pairs_batch (nodes, node 0 = t = 0)", "plan_multistep_batch (grid indices, as every planning call)")
    return _pairs_core(cost, budget, current, previous, scale)[0]
