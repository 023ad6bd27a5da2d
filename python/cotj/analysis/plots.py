"""Figures of the planner's reasoning (matplotlib, the ``plot`` extra).

One function per figure; each takes numpy arrays and returns a :class:`matplotlib.figure.Figure`
built without pyplot (no global state, no GUI backend), to save with ``fig.savefig(path)``:

- :func:`dna_curves`: DNA of several conditions against the noise level, log scale;
- :func:`cost_heatmap`: the dense edge costs ``d_j·L(j, i)`` with a plan's path drawn on them;
- :func:`ratio_curve`: the explained-gain ratio R(K) with tau, the chosen K and the knee;
- :func:`gain_bars`: per-level gains, negative gains (steps that undo work) highlighted;
- :func:`schedule_comparison`: the levels of several schedules of the same length;
- :func:`image_row`: images side by side (e.g. uniform against planned steps);
- :func:`signature_vs_dna`: a run's acceleration signature against the DNA.

Noise levels t run from 1 (pure noise) on the left to 0 on the right: sampling order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from cotj.planning.schedules import dna_grid

__all__ = [
    "cost_heatmap",
    "dna_curves",
    "gain_bars",
    "image_row",
    "ratio_curve",
    "schedule_comparison",
    "signature_vs_dna",
]

_T_LABEL = "noise level t  (1 = pure noise)"
_NEGATIVE, _POSITIVE, _ACCENT = "#d62728", "#4c72b0", "#2ca02c"


def _array(name: str, value: ArrayLike, ndim: tuple[int, ...]) -> NDArray[np.float64]:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {arr.shape}")
    return arr.astype(np.float64)


def _figure(figsize: tuple[float, float]) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def dna_curves(
    dna: ArrayLike,
    labels: Sequence[str] | None = None,
    grid: ArrayLike | None = None,
    *,
    title: str = "Diffusion DNA",
    figsize: tuple[float, float] = (6.4, 4.0),
) -> Figure:
    """DNA rows against the noise level, log y.

    Args:
        dna: (N,) or (B, N) one-step errors ``d`` on ``grid``.
        labels: B legend entries (default "row b").
        grid: (N,) ascending levels; default ``t_i = (i + 1)/N``.
    """
    d = np.atleast_2d(_array("dna", dna, (1, 2)))
    t = dna_grid(grid, d.shape[1])
    names = [f"row {b}" for b in range(d.shape[0])] if labels is None else list(labels)
    if len(names) != d.shape[0]:
        raise ValueError(f"labels must name each of the {d.shape[0]} rows, got {len(names)}")
    fig = _figure(figsize)
    ax = fig.add_subplot()
    for row, name in zip(d, names):
        ax.plot(t, np.where(row > 0, row, np.nan), label=name, lw=1.8)
    ax.set_yscale("log")
    ax.set_xlim(1.0, 0.0)
    ax.set_xlabel(_T_LABEL)
    ax.set_ylabel("one-step error d(t)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    return fig


def _edges(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cell edges (N + 1,) around ascending centres t."""
    mid = 0.5 * (t[1:] + t[:-1])
    return np.concatenate([[max(0.0, t[0] - (mid[0] - t[0]))], mid, [t[-1] + (t[-1] - mid[-1])]])


def cost_heatmap(
    costs: ArrayLike,
    steps: ArrayLike | None = None,
    grid: ArrayLike | None = None,
    *,
    title: str = r"Edge costs $d_j\,L(j, i)$ and the planned path",
    figsize: tuple[float, float] = (5.8, 5.0),
) -> Figure:
    """The dense cost matrix as a heatmap (log colour), with a plan drawn as a staircase.

    Args:
        costs: (N, N) ``[j, i]`` = cost of the jump from level j down to level i
            (:func:`cotj.cost_matrix`); entries that are not finite and positive are left blank.
        steps: (K,) the plan's grid indices, noisiest first: each jump ``j_m -> j_{m+1}`` is marked
            at its cell (x = from, y = to), joined along the diagonal, and the last level's final
            jump to t = 0 is drawn down to the axis.
        grid: (N,) ascending levels; default ``t_i = (i + 1)/N``.
    """
    c = _array("costs", costs, (2,))
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"costs must be square (N, N), got shape {c.shape}")
    t = dna_grid(grid, c.shape[0])
    shown = np.where(np.isfinite(c) & (c > 0), c, np.nan)
    if np.all(np.isnan(shown)):
        raise ValueError("costs has no finite positive entry to show")
    e = _edges(t)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(e, e, shown.T, norm=LogNorm(np.nanmin(shown), np.nanmax(shown)), cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="cost of the jump (log)")
    if steps is not None:
        s = np.asarray(steps)
        if s.ndim != 1 or s.size == 0 or s.dtype.kind not in "iu" or np.any((s < 0) | (s >= len(t))):
            raise ValueError(f"steps must be a non-empty 1-D array of grid indices in 0..{len(t) - 1}")
        lv = t[s]
        xs = np.repeat(lv, 2)
        ys = np.concatenate([[lv[0]], np.repeat(lv[1:], 2), [e[0]]])
        ax.plot(xs, ys, color="white", lw=2.4)
        ax.plot(xs, ys, color=_NEGATIVE, lw=1.2, label=f"plan, K = {len(s)}")
        ax.scatter(lv[:-1], lv[1:], s=28, color=_NEGATIVE, edgecolor="white", zorder=3, label="its jumps")
        ax.legend(loc="upper right")
    ax.set_xlim(e[-1], e[0])
    ax.set_ylim(e[0], e[-1])
    ax.set_xlabel("from level t_j")
    ax.set_ylabel("to level t_i")
    ax.set_title(title)
    ax.set_aspect("equal")
    return fig


def ratio_curve(
    ratio: ArrayLike,
    *,
    tau: float | None = None,
    chosen: int | None = None,
    knee: int | None = None,
    title: str = "Explained gain R(K)",
    figsize: tuple[float, float] = (6.4, 4.8),
) -> Figure:
    """R(K) against K (top) and the unexplained part 1 - R(K) on a log scale (bottom).

    Args:
        ratio: (K_max,) ``R(K)`` for K = 1..K_max (``Plan.ratio`` of an adaptive plan).
        tau: the target, drawn as a dashed line.
        chosen: the K the planner chose (smallest K with ``R(K) >= tau``), marked.
        knee: the knee of the curve (:func:`cotj.analysis.diagnose.knee`), marked.
    """
    r = _array("ratio", ratio, (1,))
    k = np.arange(1, len(r) + 1)
    for name, value in (("chosen", chosen), ("knee", knee)):
        if value is not None and not 1 <= value <= len(r):
            raise ValueError(f"{name} must be a K in 1..{len(r)}, got {value}")
    fig = _figure(figsize)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    top.plot(k, r, marker="o", ms=3, lw=1.5, color=_POSITIVE, label="R(K)")
    rest = 1.0 - r
    bottom.semilogy(k, np.where(rest > 0, rest, np.nan), marker="o", ms=3, lw=1.5, color=_POSITIVE)
    if tau is not None:
        top.axhline(tau, ls="--", color="0.4", lw=1, label=f"τ = {tau:g}")
        bottom.axhline(1.0 - tau, ls="--", color="0.4", lw=1)
    for value, colour, text in ((chosen, _NEGATIVE, "smallest K with R ≥ τ"), (knee, _ACCENT, "knee")):
        if value is not None:
            y = r[value - 1]
            top.scatter([value], [y], s=70, color=colour, zorder=3, label=f"{text}: K = {value} (R = {y:.3f})")
            if y < 1:
                bottom.scatter([value], [1 - y], s=50, color=colour, zorder=3)
            for ax in (top, bottom):
                ax.axvline(value, color=colour, lw=0.8, alpha=0.6)
    top.set_ylabel("R(K)")
    top.set_title(title)
    top.grid(True, alpha=0.3)
    top.legend(loc="lower right")
    bottom.set_ylabel("1 − R(K)")
    bottom.set_xlabel("steps K")
    bottom.grid(True, which="major", alpha=0.3)
    return fig


def gain_bars(
    gains: ArrayLike,
    grid: ArrayLike | None = None,
    *,
    title: str = "Per-level gains",
    figsize: tuple[float, float] = (6.4, 4.0),
) -> Figure:
    """Per-level gains as bars at the upper level of each step (symmetric-log y), negative gains
    in red and labelled.

    Args:
        gains: (N - 1,) ``g[i] = d[i + 1] - d[i]`` (:func:`cotj.gains`): the drop of the error
            when stepping down from ``t_{i+1}`` to ``t_i``.
        grid: (N,) the DNA's ascending levels; default ``t_i = (i + 1)/N``.
    """
    g = _array("gains", gains, (1,))
    t = dna_grid(grid, len(g) + 1)
    upper = t[1:]
    width = np.diff(t)
    neg = g < 0
    fig = _figure(figsize)
    ax = fig.add_subplot()
    ax.bar(upper[~neg], g[~neg], width=width[~neg], color=_POSITIVE, label="gain ≥ 0")
    if np.any(neg):
        ax.bar(upper[neg], g[neg], width=width[neg], color=_NEGATIVE, label="negative: the step undoes work")
        for x, y in zip(upper[neg], g[neg]):
            ax.annotate(f"t = {x:.2f}: {y:.3g}", (x - width.max(), y), xytext=(4, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=8, color=_NEGATIVE)
    top = float(np.abs(g).max()) or 1.0
    ax.set_yscale("symlog", linthresh=1e-3 * top)
    ax.set_ylim(min(0.0, 1.5 * g.min()), 1.5 * max(g.max(), 0.0) or top)
    ax.set_yticks([v for v in ax.get_yticks() if v == 0 or abs(v) >= 9.9e-3 * top])
    ax.axhline(0, color="0.2", lw=0.8)
    ax.set_xlim(1.0 + width.max(), 0.0)
    ax.set_xlabel("level t of the step  (the step goes from t to the next lower level)")
    ax.set_ylabel("gain d(t) − d(t − Δt)  (symlog)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def schedule_comparison(
    schedules: Mapping[str, ArrayLike],
    *,
    title: str = "Schedules of the same length",
    figsize: tuple[float, float] = (6.4, 3.2),
) -> Figure:
    """The levels of several schedules, one row each, t from 1 to 0.

    Args:
        schedules: name -> (K,) levels, noisiest first (e.g. ``Plan.levels``, a uniform
            ``linspace(1, 1/K, K)``...). Names are printed as given (put costs in them).
    """
    if not schedules:
        raise ValueError("schedules must name at least one schedule")
    rows = {name: _array(f"schedules[{name!r}]", lv, (1,)) for name, lv in schedules.items()}
    fig = _figure(figsize)
    ax = fig.add_subplot()
    colours = [_NEGATIVE, _POSITIVE, _ACCENT, "#9467bd", "#8c564b", "#e377c2"]
    for y, lv in enumerate(rows.values()):
        c = colours[y % len(colours)]
        ax.plot([lv.max(initial=0.0), 0.0], [y, y], color=c, lw=0.8, alpha=0.5)
        ax.scatter(lv, np.full(lv.shape, y), s=36, color=c, zorder=3)
    ax.set_yticks(range(len(rows)), list(rows))
    for label, y in zip(ax.get_yticklabels(), range(len(rows))):
        label.set_color(colours[y % len(colours)])
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlim(1.03, -0.02)
    ax.set_xlabel(_T_LABEL)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def image_row(
    images: Sequence[ArrayLike],
    titles: Sequence[str] | None = None,
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Images side by side, pixels shown as blocks (no smoothing).

    Args:
        images: (H, W, 3) or (H, W) arrays, floats in [0, 1] or uint8.
        titles: one caption per image.
        figsize: default 2.6 inches per image.
    """
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    names = [""] * len(images) if titles is None else list(titles)
    if len(names) != len(images):
        raise ValueError(f"titles must caption each of the {len(images)} images, got {len(names)}")
    fig = _figure(figsize or (2.6 * len(images), 2.9 + (0.3 if title else 0.0)))
    axes = np.atleast_1d(fig.subplots(1, len(images)))
    for ax, img, name in zip(axes, images, names):
        arr = np.asarray(img)
        if arr.ndim not in (2, 3):
            raise ValueError(f"images must be (H, W) or (H, W, 3), got shape {arr.shape}")
        ax.imshow(arr, interpolation="nearest", vmin=0, vmax=255 if arr.dtype == np.uint8 else 1)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def signature_vs_dna(
    levels: ArrayLike,
    signature: ArrayLike,
    dna_at: ArrayLike,
    *,
    correlation: float | None = None,
    title: str = "Acceleration signature of a run against the DNA",
    figsize: tuple[float, float] = (6.4, 4.0),
) -> Figure:
    """A run's acceleration signature and the DNA at the same levels, both log scale.

    Args:
        levels: (W,) the windows' noise levels (:class:`cotj.analysis.diagnose.RunSignature`).
        signature: (W,) the signature of one sample.
        dna_at: (W,) the DNA at ``levels``.
        correlation: their rank correlation, shown in the title.
    """
    lv = _array("levels", levels, (1,))
    sig, d = _array("signature", signature, (1,)), _array("dna_at", dna_at, (1,))
    if sig.shape != lv.shape or d.shape != lv.shape:
        raise ValueError(f"signature and dna_at must match levels' shape {lv.shape}, got {sig.shape} and {d.shape}")
    fig = _figure(figsize)
    ax = fig.add_subplot()
    ax.semilogy(lv, np.where(sig > 0, sig, np.nan), marker="o", ms=3, color=_NEGATIVE, label="acceleration signature")
    ax.set_ylabel("mean squared d³x/dt³", color=_NEGATIVE)
    twin = ax.twinx()
    twin.semilogy(lv, np.where(d > 0, d, np.nan), color=_POSITIVE, lw=1.8, label="DNA d(t)")
    twin.set_ylabel("one-step error d(t)", color=_POSITIVE)
    ax.set_xlim(1.0, 0.0)
    ax.set_xlabel(_T_LABEL)
    ax.set_title(title if correlation is None else f"{title}\nSpearman ρ = {correlation:.2f}")
    ax.grid(True, alpha=0.3)
    handles, labels = (a + b for a, b in zip(ax.get_legend_handles_labels(), twin.get_legend_handles_labels()))
    twin.legend(handles, labels, loc="best")
    return fig
