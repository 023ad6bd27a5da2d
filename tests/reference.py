"""Independent implementations of the plan graph (docs/method.md §3–5), for tests and benchmark baselines.

None of this shares code with the Rust core: an exhaustive search, a vectorised numpy layered DP,
and the paper's formulation as a shortest path with an exact number of nodes on a networkx graph.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np


def lever(grid: np.ndarray, a: np.ndarray | None = None, s: np.ndarray | None = None) -> np.ndarray:
    """(N, N) with [j, i] = L(j, i) for i < j, 0 elsewhere."""
    grid = np.asarray(grid, dtype=np.float64)
    if a is None:
        a, s = 1.0 - grid, grid
    lev = (a[None, :] - s[None, :] * (a / s)[:, None]) ** 2
    return np.tril(lev, k=-1)


def dense_cost(m: np.ndarray, start: np.ndarray, end: np.ndarray, w: np.ndarray, steps) -> float:
    """``start[j_1] + sum w[j_m]·m[j_m, j_{m+1}] + end[j_K]`` of a plan given as grid indices,
    noisiest first; a +inf entry of ``m`` is a missing edge whatever its weight."""
    steps = list(steps)
    inner = sum(np.inf if m[j, i] == np.inf else w[j] * m[j, i] for j, i in zip(steps, steps[1:]))
    return start[steps[0]] + inner + end[steps[-1]]


def cost(d: np.ndarray, steps, lev: np.ndarray) -> float:
    """C of a plan given as grid indices, noisiest first: the DNA form of ``dense_cost``."""
    return dense_cost(lev, -d, d, d, steps)


def brute_force(d, k, lev, first=None, last=None, current=None):
    """All feasible k-plans of the DNA form; returns (best cost, list of optimal plans within 1e-12)."""
    return exhaustive(len(d), k, lambda steps: cost(d, steps, lev), first, last, current)


def exhaustive(n, k, plan_cost, first=None, last=None, current=None):
    """All k-plans on n levels allowed by the windows (and starting at ``current`` if given),
    scored by ``plan_cost(steps)``; returns (best cost, list of optimal plans within 1e-12),
    or (inf, []) when no plan has a finite cost."""
    first = n if first is None else first
    last = n if last is None else last
    plans = []
    for combo in itertools.combinations(range(n), k):
        steps = combo[::-1]
        if steps[0] >= n - first and steps[-1] < last and current in (None, steps[0]):
            c = plan_cost(steps)
            if c < np.inf:
                plans.append((c, list(steps)))
    if not plans:
        return np.inf, []
    best = min(c for c, _ in plans)
    return best, [p for c, p in plans if c <= best + 1e-12 * (1 + abs(best))]


def numpy_plan(d: np.ndarray, k: int, lev: np.ndarray) -> tuple[float, list[int]]:
    """Vectorised layered DP with back-pointers, free ends: one row."""
    costs, steps = numpy_plan_batch(d[None, :], k, lev)
    return float(costs[0]), [int(s) for s in steps[0]]


def numpy_plan_batch(dna: np.ndarray, k: int, lev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised layered DP over a (B, N) batch: (B,) costs and (B, k) steps, noisiest first."""
    b, n = dna.shape
    mask = np.tril(np.ones((n, n), dtype=bool), k=-1)
    w = np.where(mask[None], dna[:, :, None] * lev[None], np.inf)  # (B, N, N) [b, j, i]
    layer = -dna.copy()
    back = np.zeros((k, b, n), dtype=np.int64)
    rows = np.arange(b)[:, None]
    for m in range(1, k):
        cand = layer[:, :, None] + w
        back[m] = np.argmin(cand, axis=1)
        layer = cand[rows, back[m], np.arange(n)[None, :]]
    total = layer + dna
    i = np.argmin(total, axis=1)
    costs = total[np.arange(b), i]
    steps = [i]
    for m in range(k - 1, 0, -1):
        i = back[m, np.arange(b), i]
        steps.append(i)
    return costs, np.stack(steps[::-1], axis=1)


def paper_graph(d: np.ndarray, grid: np.ndarray) -> nx.DiGraph:
    """The paper's graph: levels plus START and END, edges as in docs/method.md §3."""
    n = len(d)
    g = nx.DiGraph()
    for j in range(n):
        g.add_edge("START", j, weight=-float(d[j]))
        g.add_edge(j, "END", weight=float(d[j]))
        for i in range(j):
            g.add_edge(j, i, weight=float(d[j] * ((grid[j] - grid[i]) / grid[j]) ** 2))
    return g


def networkx_curve(d: np.ndarray, grid: np.ndarray, k_max: int) -> tuple[np.ndarray, dict[int, list[int]]]:
    """C*_K and the optimal plan for K = 1..k_max: shortest START->END paths with exactly K level
    nodes, found on the layered expansion of the paper's graph with networkx's Bellman-Ford."""
    g = paper_graph(d, grid)
    layered = nx.DiGraph()
    for hop in range(k_max + 1):
        for u, v, w in g.edges(data="weight"):
            if (u == "START") == (hop == 0):
                layered.add_edge((hop, u), (hop + 1, v), weight=w)
    dist, paths = nx.single_source_bellman_ford(layered, (0, "START"))
    curve = np.full(k_max, np.inf)
    plans = {}
    for k in range(1, k_max + 1):
        node = (k + 1, "END")
        if node in dist:
            curve[k - 1] = dist[node]
            plans[k] = [v for _, v in paths[node][1:-1]]
    return curve, plans


def networkx_plan(d: np.ndarray, grid: np.ndarray, k: int) -> tuple[float, list[int]]:
    """One fixed-K plan on the paper's graph with networkx (the benchmark baseline)."""
    curve, plans = networkx_curve(d, grid, k)
    return float(curve[k - 1]), plans[k]


def ratio(curve: np.ndarray) -> np.ndarray:
    """R(K) from C*_K for K = 1..len(curve) (docs/method.md §5), anchored at the shortest and longest
    lengths with a finite C* (free ends: K = 1 with C*_1 = 0, and K_max); NaN where C*_K is
    infinite, 1 everywhere when longer plans gain nothing."""
    finite = np.isfinite(curve)
    base, top = curve[finite][0], curve[finite][-1]
    total = base - top
    r = (base - curve) / total if total > 0 else np.ones(len(curve))
    return np.where(finite, r, np.nan)


def adaptive_choice(curve: np.ndarray, tau: float) -> int:
    """Smallest K with R(K) >= tau, else the longest finite K."""
    reached = np.flatnonzero(ratio(curve) >= tau)
    return int(reached[0]) + 1 if len(reached) else int(np.flatnonzero(np.isfinite(curve))[-1]) + 1


def pair_plan(first: np.ndarray, pairs: np.ndarray, end: np.ndarray, budget: int, current: int,
              previous: int | None = None, scale: np.ndarray | None = None) -> np.ndarray:
    """The multistep pair DP as ``cotj.planning.multistep.plan_multistep`` ran it in numpy before the Rust core (the test
    reference, kept verbatim): nodes (budget,) descending from ``current``, over (previous, current) pairs of the
    costs ``first`` (M, M), ``pairs`` (M, M, M), ``end`` (M,) of a ``SolverCost``; ``scale`` (M,) per source node.
    Dense ``argmin`` back-pointers: the lowest previous node wins ties, and the first final pair in row-major
    order. O(K·M³) time, O(K·M²) memory. ValueError when no plan has a finite cost."""
    m = end.size
    w = np.ones(m) if scale is None else np.asarray(scale, dtype=np.float64)
    if budget == 1:
        return np.array([current])
    sub = current + 1  # every later node lies at or below the current one
    pairs_w = pairs[:sub, :sub, :sub] * w[None, :sub, None]
    end_w = end[:sub] * w[:sub]
    # value[k, j]: the cheapest way to have evaluated at k then j (j the latest), after the steps so far
    value = np.full((sub, sub), np.inf)
    if previous is None:
        value[current, :] = first[current, :sub] * w[current]
    else:
        value[current, :] = pairs[previous, current, :sub] * w[current]
    value[current, 0] = np.inf  # a step to t = 0 ends the run: only the end term goes there
    back = []
    for _ in range(budget - 2):
        total = value[:, :, None] + pairs_w  # [k, j, i]
        arg = np.argmin(total, axis=0)  # (sub, sub): best k for (j, i)
        back.append(arg)
        value = np.take_along_axis(total, arg[None], axis=0)[0]
    final = value + end_w[None, :]
    k, j = np.unravel_index(int(np.argmin(final)), final.shape)
    if not np.isfinite(final[k, j]):
        raise ValueError(f"no plan of {budget} evaluations from node {current}")
    path = [int(j), int(k)]
    for arg in reversed(back):
        path.append(int(arg[path[-1], path[-2]]))
    return np.array(path[::-1])
