"""Gaussian-mixture data whose optimal denoiser is known in closed form (the Tier 1 benchmark's model).

For data ``x0 ~ sum_k w_k N(mu_k, diag(sd_k²))`` on a Gaussian path ``x_t = a(t)·x0 + s(t)·eps``, the marginal
at level t is the mixture ``sum_k w_k N(a·mu_k, diag(a²·sd_k² + s²))`` and, with
``g_k = (x - a·mu_k) / (a²·sd_k² + s²)`` and ``r_k`` the posterior responsibility of component k,

- ``E[x0 | x_t] = sum_k r_k (mu_k + a·sd_k²·g_k)`` (the posterior mean: what an ideal model's x0_hat is),
- ``E[eps | x_t] = s · sum_k r_k g_k``,
- the probability-flow velocity ``dx/dt = a'(t)·E[x0 | x_t] + ½ (s²)'(t) · sum_k r_k g_k``, finite at t = 0 too.

An integer condition selects one mixture of a seeded family (number of modes, spread of the means, size and
anisotropy of the components, weights), so conditions have genuinely different DNA. Two model flavours:
:class:`FlowMixtureModel` (velocity output, linear flow ``a = 1 - t``, ``s = t``) and :class:`VPMixtureModel`
(epsilon output, VP path ``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)``). Both are plain callables
``model(x_t (n, D), t (n,), cond (n,) int) -> prediction (n, D)`` with ``prediction`` and ``schedule(grid)``
attributes, as :func:`cotj.predict.extract_dna` expects. :func:`exact_endpoint` integrates the probability-flow ODE
with many RK4 steps in float64: the reference endpoint of a noise; :func:`extract` gives the true DNA of
conditions against it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike

from cotj.models import seeded_noise
from cotj.planning.schedules import Schedule, linear_flow
from cotj.predict.shard import DNAInputs, ShardedDNA, extract_sharded


@dataclass(frozen=True)
class GaussianMixture:
    """Diagonal Gaussian mixture: ``weights`` (K,), ``means`` (K, D), ``stds`` (K, D); float64 tensors."""

    weights: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor

    @property
    def dim(self) -> int:
        """Data dimension D."""
        return int(self.means.shape[1])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws, float64 ``(n, D)``."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k] * z

    def posterior(self, x: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E[x0 | x_t], sum_k r_k g_k)`` at states ``x`` (n, D) with path coefficients ``a``, ``s`` (n,); float64.

        The second output times ``s`` is ``E[eps | x_t]``; it stays finite at ``s = 0``.
        """
        x = x.to(torch.float64)
        a = a.to(torch.float64)[:, None, None]
        s = s.to(torch.float64)[:, None, None]
        var = a**2 * self.stds**2 + s**2  # (n, K, D)
        diff = x[:, None, :] - a * self.means  # (n, K, D)
        g = diff / var
        log_r = torch.log(self.weights) - 0.5 * (diff * g + torch.log(2 * math.pi * var)).sum(-1)
        r = torch.softmax(log_r, dim=-1)[..., None]  # (n, K, 1)
        x0 = (r * (self.means + a * self.stds**2 * g)).sum(1)
        return x0, (r * g).sum(1)


class MixtureFamily:
    """Seeded family of D-dimensional mixtures, one per integer condition.

    Condition c draws (from ``numpy.random.default_rng([seed, c])``): 1-8 modes, mean spread 0.2-1.0 per
    coordinate, component scale 0.05-0.5, anisotropy 1-20 (ratio of the largest to smallest per-axis variance
    factor), Dirichlet weights with concentration 0.3-5.
    """

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.seed = int(dim), int(seed)
        self._mixtures: dict[int, GaussianMixture] = {}

    def _draw(self, cond: int) -> tuple[np.random.Generator, dict[str, float]]:
        if int(cond) < 0:
            raise ValueError(f"cond must be a non-negative int, got {cond}")
        rng = np.random.default_rng([self.seed, int(cond)])
        params = {
            "modes": float(rng.integers(1, 9)),
            "spread": rng.uniform(0.2, 1.0),
            "scale": float(np.exp(rng.uniform(np.log(0.05), np.log(0.5)))),
            "anisotropy": float(np.exp(rng.uniform(0.0, np.log(20.0)))),
            "concentration": float(np.exp(rng.uniform(np.log(0.3), np.log(5.0)))),
        }
        return rng, params

    def mixture(self, cond: int) -> GaussianMixture:
        """The mixture of condition ``cond`` (built once, then cached)."""
        if int(cond) in self._mixtures:
            return self._mixtures[int(cond)]
        rng, p = self._draw(cond)
        k, d = int(p["modes"]), self.dim
        means = rng.normal(0.0, p["spread"], (k, d))
        stds = p["scale"] * np.exp(0.5 * np.log(p["anisotropy"]) * rng.uniform(-1.0, 1.0, (k, d)))
        weights = np.maximum(rng.dirichlet(np.full(k, p["concentration"])), 1e-3)
        as64 = functools.partial(torch.tensor, dtype=torch.float64)
        mix = GaussianMixture(as64(weights / weights.sum()), as64(means), as64(stds))
        self._mixtures[int(cond)] = mix
        return mix

    def embedding(self, cond: int) -> np.ndarray:
        """A condition embedding (6,) float64 for DNA predictors: modes, spread, log scale, log anisotropy,
        log concentration, and the entropy of the weights."""
        _, p = self._draw(cond)
        w = self.mixture(cond).weights.numpy()
        entropy = float(-(w * np.log(w)).sum())
        return np.array(
            [p["modes"], p["spread"], np.log(p["scale"]), np.log(p["anisotropy"]), np.log(p["concentration"]), entropy]
        )

    def posterior(
        self, x: torch.Tensor, a: torch.Tensor, s: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`GaussianMixture.posterior` row by row under each row's condition ``cond`` (n,) int."""
        cond = _conditions(cond, x.shape[0])
        x0 = torch.empty(x.shape, dtype=torch.float64)
        g = torch.empty(x.shape, dtype=torch.float64)
        for c in torch.unique(cond).tolist():
            rows = cond == c
            x0[rows], g[rows] = self.mixture(c).posterior(x[rows], a[rows], s[rows])
        return x0, g


def _conditions(cond: torch.Tensor | int, n: int) -> torch.Tensor:
    cond = torch.as_tensor(cond)
    if cond.dtype.is_floating_point or cond.dtype == torch.bool:
        raise TypeError(f"cond must hold integer condition ids, got dtype {cond.dtype}")
    cond = cond.expand(n) if cond.ndim == 0 else cond
    if cond.shape != (n,):
        raise ValueError(f"cond must be a scalar or have shape ({n},), got {tuple(cond.shape)}")
    return cond


def _levels(t: torch.Tensor | float, n: int) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float64)
    t = t.expand(n) if t.ndim == 0 else t
    if t.shape != (n,) or torch.any((t < 0) | (t > 1)):
        raise ValueError(f"t must be a scalar or an ({n},) tensor of levels in [0, 1]")
    return t


class _MixtureModel:
    """Common part: the path ``(a, s, a', (s²)')`` and the closed-form posterior."""

    prediction: str

    def __init__(self, family: MixtureFamily) -> None:
        self.family = family

    def path(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``a(t), s(t), a'(t), d(s²)/dt`` at levels ``t`` (n,), float64."""
        raise NotImplementedError

    def schedule(self, grid: ArrayLike) -> Schedule:
        """The path on a grid of levels, as the Predict stage takes it."""
        a, s, _, _ = self.path(torch.as_tensor(np.asarray(grid, dtype=np.float64)))
        return Schedule(a.numpy(), s.numpy())

    def ode_velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact probability-flow velocity ``dx/dt`` (n, D), float64."""
        t = _levels(t, x.shape[0])
        a, s, da, ds2 = self.path(t)
        x0, g = self.family.posterior(x, a, s, cond)
        return da[:, None] * x0 + 0.5 * ds2[:, None] * g

    def x0(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The exact posterior mean ``E[x0 | x_t]`` (n, D), float64."""
        t = _levels(t, x.shape[0])
        a, s, _, _ = self.path(t)
        return self.family.posterior(x, a, s, cond)[0]


class FlowMixtureModel(_MixtureModel):
    """Ideal rectified-flow model: returns the velocity ``E[eps - x0 | x_t]`` on ``x_t = (1 - t)·x0 + t·eps``."""

    prediction = "flow"

    def path(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Linear flow: ``a = 1 - t``, ``s = t``, ``a' = -1``, ``(s²)' = 2t``."""
        return 1.0 - t, t, -torch.ones_like(t), 2.0 * t

    def schedule(self, grid: ArrayLike) -> Schedule:
        """The linear flow on ``grid``."""
        return linear_flow(grid)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Velocity ``(n, D)`` in ``x_t``'s dtype."""
        return self.ode_velocity(x_t, t, cond).to(x_t.dtype)


class VPMixtureModel(_MixtureModel):
    """Ideal epsilon-prediction model on the continuous VP path
    ``alpha_bar(t) = exp(-(beta_min·t + ½(beta_max - beta_min)·t²))`` (DDPM's linear betas in the limit)."""

    prediction = "epsilon"

    def __init__(self, family: MixtureFamily, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        super().__init__(family)
        if not 0.0 < beta_min <= beta_max:
            raise ValueError(f"need 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def path(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)``, ``a' = -½ beta(t)·a``,
        ``(s²)' = beta(t)·alpha_bar``."""
        t = t.to(torch.float64)
        beta = self.beta_min + (self.beta_max - self.beta_min) * t
        alpha_bar = torch.exp(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))
        a = torch.sqrt(alpha_bar)
        return a, torch.sqrt(1.0 - alpha_bar), -0.5 * beta * a, beta * alpha_bar

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Noise prediction ``E[eps | x_t]`` ``(n, D)`` in ``x_t``'s dtype."""
        t = _levels(t, x_t.shape[0])
        a, s, _, _ = self.path(t)
        return (s[:, None] * self.family.posterior(x_t, a, s, cond)[1]).to(x_t.dtype)


def integrate(model: _MixtureModel, x: torch.Tensor, cond: torch.Tensor, t_start: float, t_end: float, steps: int) -> torch.Tensor:
    """Integrate the probability-flow ODE from level ``t_start`` to ``t_end`` with ``steps`` equal RK4 steps,
    in float64. ``x`` (n, D) is the state at ``t_start``; returns the state at ``t_end`` (n, D)."""
    x = x.to(torch.float64)
    levels = torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)
    f = model.ode_velocity
    for t0, t1 in zip(levels[:-1], levels[1:]):
        h = t1 - t0
        k1 = f(x, t0, cond)
        k2 = f(x + 0.5 * h * k1, t0 + 0.5 * h, cond)
        k3 = f(x + 0.5 * h * k2, t0 + 0.5 * h, cond)
        k4 = f(x + h * k3, t1, cond)
        x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def exact_endpoint(
    model: _MixtureModel, x: torch.Tensor, cond: torch.Tensor, t_start: float = 1.0, steps: int = 1000
) -> torch.Tensor:
    """Integrate the probability-flow ODE from level ``t_start`` to 0 with ``steps`` RK4 steps (float64).

    ``x`` (n, D) is the state at ``t_start`` (for ``t_start = 1`` on the linear flow: the noise). Returns the clean
    endpoint (n, D), float64; the error falls as ``steps^-4`` (1000 steps agree with 2000 to ~1e-9 on this family).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < t_start <= 1.0:
        raise ValueError(f"t_start must be in (0, 1], got {t_start}")
    return integrate(model, x, cond, t_start, 0.0, steps)


def inputs(model: FlowMixtureModel | VPMixtureModel, items: list[int], noise_seed: int, reference_steps: int = 200) -> DNAInputs:
    """What DNA extraction needs for condition ids ``items``: the conditions (B,), their seeded noise (B, D)
    (:func:`cotj.models.seeded_noise`) and its exact ODE endpoint (B, D) (``reference_steps`` RK4 steps)."""
    cond = torch.tensor(items)
    noise = seeded_noise(items, (model.family.dim,), noise_seed)
    return DNAInputs(cond, noise, exact_endpoint(model, noise, cond, steps=reference_steps))


def extract(model: FlowMixtureModel | VPMixtureModel, items: list[int], grid: ArrayLike, *, noise_seed: int, reference_steps: int = 200,
            out: str | Path | None = None, num_threads: int | None = None, progress: bool = True) -> ShardedDNA | None:
    """True DNA (B, N) of condition ids ``items`` on ``grid`` (N,) against the exact endpoint of each one's seeded
    noise, sharded over processes when launched by torchrun (:func:`cotj.predict.shard.extract_sharded`): the
    :class:`~cotj.predict.shard.ShardedDNA` on rank 0, None elsewhere; written to ``out`` if given."""
    n = np.asarray(grid).size
    return extract_sharded(lambda: model, items, lambda block: inputs(model, block, noise_seed, reference_steps), out,
                           grid=grid, chunk_size=64, batch_size=8 * n, num_threads=num_threads,
                           progress=progress)  # fmt: skip
