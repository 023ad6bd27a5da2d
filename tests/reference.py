"""Independent implementations of the plan graph (SPEC 3-5), for tests and benchmark baselines.

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


def cost(d: np.ndarray, steps, lev: np.ndarray) -> float:
    """C of a plan given as grid indices, noisiest first."""
    steps = list(steps)
    inner = sum(d[j] * lev[j, i] for j, i in zip(steps, steps[1:]))
    return -d[steps[0]] + inner + d[steps[-1]]


def brute_force(d, k, lev, first=None, last=None):
    """All feasible k-plans; returns (best cost, list of optimal plans within 1e-12)."""
    n = len(d)
    first = n if first is None else first
    last = n if last is None else last
    plans = []
    for combo in itertools.combinations(range(n), k):
        steps = combo[::-1]
        if steps[0] >= n - first and steps[-1] < last:
            plans.append((cost(d, steps, lev), list(steps)))
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
    """The paper's graph: levels plus START and END, edges as in SPEC 3."""
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


def adaptive_choice(curve: np.ndarray, tau: float) -> int:
    """Smallest K with R(K) >= tau (free ends: C*_1 = 0)."""
    total = curve[0] - curve[-1]
    for k in range(1, len(curve) + 1):
        if (curve[0] - curve[k - 1]) / total >= tau:
            return k
    return len(curve)
