"""Ground-truth Diffusion DNA: the one-step reconstruction error at every grid level (docs/method.md §2).

For a condition c, noise eps and a reference x_ref, the canonical state at level t_i is built
directly, ``x_t = a(t_i)·x_ref + s(t_i)·eps``; the model's clean estimate there is scored against
x_ref: ``d_i = metric(x0_hat, x_ref)`` (MSE by default). The B·N evaluations (B samples, N
levels) run in batches of ``batch_size`` rows under ``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from tqdm.auto import tqdm

from cotj import gains
from cotj._deprecation import warn
from cotj.paths import PREDICTIONS, ddim_update, to_x0
from cotj.planning.schedules import Schedule, default_grid, linear_flow

__all__ = ["DNAResult", "Denoiser", "Guidance", "Metric", "cfg", "cfg_renorm", "extract_dna", "mse"]

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""``model(x_t (n, ...), t (n,) levels, cond) -> prediction (n, ...)``."""
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``metric(x0_hat (n, ...), x_ref (n, ...)) -> (n,)`` per-sample score, lower is better."""
Guidance = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
"""``combine(cond_pred, uncond_pred, scale) -> guided prediction``, all (n, ...)."""
PathLike = Schedule | Sequence[ArrayLike]


def cfg(cond_pred: torch.Tensor, uncond_pred: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``u + w·(c - u)`` (SD, SD3, Flux ``true_cfg_scale``)."""
    return uncond_pred + scale * (cond_pred - uncond_pred)


def cfg_renorm(cond_pred: torch.Tensor, uncond_pred: torch.Tensor, scale: float) -> torch.Tensor:
    """Qwen-Image's guidance: :func:`cfg`, then rescaled to the norm of the conditional
    prediction along the last (channel) dimension of packed latents (n, seq, C)."""
    guided = cfg(cond_pred, uncond_pred, scale)
    return guided * (cond_pred.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))


def mse(x0_hat: torch.Tensor, x_ref: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error (n,) over all non-batch dimensions."""
    return (x0_hat - x_ref).pow(2).flatten(1).mean(1)


@dataclass(frozen=True)
class DNAResult:
    """DNA of a batch of B samples on a grid of N levels.

    Attributes:
        dna: (B, N) float64, ``dna[b, i]`` the score at level ``grid[i]``; feeds
            :func:`cotj.plan_batch` as it is.
        grid: (N,) float64 ascending levels.
        x_ref: (B, ...) the reference samples used (given or computed).
        evaluations: model evaluations (batch rows) spent per sample, reference run and
            classifier-free guidance included.
    """

    dna: NDArray[np.float64]
    grid: NDArray[np.float64]
    x_ref: torch.Tensor
    evaluations: int

    @property
    def gains(self) -> NDArray[np.float64]:
        """(B, N - 1) per-level gains ``d[i + 1] - d[i]`` (:func:`cotj.gains`)."""
        return gains(self.dna)


@dataclass(frozen=True)
class _Path:
    """The Gaussian path on the grid, as float64 arrays (da, ds None on the linear flow)."""

    grid: NDArray[np.float64]
    a: NDArray[np.float64]
    s: NDArray[np.float64]
    da: NDArray[np.float64] | None
    ds: NDArray[np.float64] | None

    def descent(self, start: int, steps: int) -> list[int]:
        """Grid indices of a ``steps``-step descent from level ``start`` toward 0: the targets
        ``t_start·(steps - k)/steps`` snapped to the nearest grid level, without repeats."""
        targets = self.grid[start] * (steps - np.arange(steps)) / steps
        idx = np.abs(self.grid[None, :] - targets[:, None]).argmin(axis=1)
        idx[0] = start
        return list(dict.fromkeys(int(i) for i in idx))


def _resolve_path(denoiser: Any, grid: ArrayLike | None, schedule: PathLike | None, prediction: str) -> _Path:
    g = default_grid(100) if grid is None else np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size < 2 or not np.all(np.diff(g) > 0) or g[0] <= 0 or g[-1] > 1:
        raise ValueError(f"grid must be a 1-D ascending array of at least 2 levels in (0, 1], got shape {g.shape}")
    if schedule is None:
        schedule = denoiser.schedule(g) if hasattr(denoiser, "schedule") else linear_flow(g)
    parts = [np.asarray(v, dtype=np.float64) for v in schedule]
    if len(parts) not in (2, 4) or any(p.shape != g.shape for p in parts):
        raise ValueError(f"schedule must be (a, s) or (a, s, da, ds), each of shape {g.shape}")
    a, s = parts[0], parts[1]
    if np.any(s <= 0):
        raise ValueError("schedule s must be positive on every grid level")
    if len(parts) == 4:
        return _Path(g, a, s, parts[2], parts[3])
    if prediction == "flow" and not np.allclose(a + s, 1.0, atol=1e-9):
        raise ValueError("a flow prediction on a path other than the linear flow needs schedule=(a, s, da, ds)")
    return _Path(g, a, s, None, None)


def _take(cond: Any, idx: torch.Tensor, batch: int) -> Any:
    """Rows ``idx`` of every tensor in ``cond`` whose first dimension is the batch size."""
    if isinstance(cond, torch.Tensor) and cond.ndim > 0 and cond.shape[0] == batch:
        return cond[idx.to(cond.device)]
    if isinstance(cond, dict):
        return {k: _take(v, idx, batch) for k, v in cond.items()}
    return cond


class _Runner:
    """Evaluates the (guided) model and converts to x0 for rows at given grid levels."""

    def __init__(self, denoiser: Denoiser, cond: Any, guidance: tuple[Any, float | None, Guidance], path: _Path,
                 prediction: str, batch: int, device: torch.device, dtype: torch.dtype, bar: Any) -> None:
        self.denoiser, self.cond = denoiser, cond
        self.uncond, self.scale, self.combine = guidance
        self.path, self.prediction, self.batch = path, prediction, batch
        self.device, self.dtype, self.bar = device, dtype, bar
        self.rows = 0

    def coef(self, values: NDArray[np.float64], idx: torch.Tensor) -> torch.Tensor:
        """``values`` (N,) at grid indices ``idx`` (n,), float32 on the model's device."""
        return torch.as_tensor(values, dtype=torch.float32, device=self.device)[idx.to(self.device)]

    def x0(self, x: torch.Tensor, level: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``x0_hat`` (n, ...) float32 for states x (n, ...) at grid indices ``level`` of samples ``rows``."""
        t = self.coef(self.path.grid, level)
        xin = x.to(self.dtype)
        pred = self.denoiser(xin, t.to(self.dtype), _take(self.cond, rows, self.batch))
        calls = 1
        if self.scale is not None:
            uncond = self.denoiser(xin, t.to(self.dtype), _take(self.uncond, rows, self.batch))
            pred = self.combine(pred, uncond, self.scale)
            calls = 2
        if pred.shape != x.shape:
            raise ValueError(f"the denoiser returned shape {tuple(pred.shape)} for input shape {tuple(x.shape)}")
        self.rows += calls * len(rows)
        self.bar.update(len(rows))
        p = self.path
        da, ds = (None, None) if p.da is None or p.ds is None else (self.coef(p.da, level), self.coef(p.ds, level))
        return to_x0(pred.float(), x, self.coef(p.a, level), self.coef(p.s, level), self.prediction, da, ds)

    def step(self, x: torch.Tensor, x0: torch.Tensor, level: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        """One deterministic first-order step (:func:`cotj.paths.ddim_update`) from grid levels
        ``level`` to ``nxt`` (-1 means t = 0, where ``a = 1, s = 0`` and the state is x0)."""
        shape = (-1, *([1] * (x.ndim - 1)))
        a, s = self.coef(self.path.a, level).reshape(shape), self.coef(self.path.s, level).reshape(shape)
        clean = (nxt < 0).to(self.device)
        clamp = nxt.clamp(min=0)
        a_n = torch.where(clean, 1.0, self.coef(self.path.a, clamp)).reshape(shape)
        s_n = torch.where(clean, 0.0, self.coef(self.path.s, clamp)).reshape(shape)
        return ddim_update(x, x0, a, s, a_n, s_n)

    def descend(self, x: torch.Tensor, paths: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Run each row along its path of grid indices (n, m), -1 padded; returns the final x0."""
        out = x.clone()
        for k in range(paths.shape[1]):
            active = paths[:, k] >= 0
            if not bool(active.any()):
                break
            act = active.to(self.device)
            nxt = paths[active, k + 1] if k + 1 < paths.shape[1] else torch.full((int(active.sum()),), -1)
            x0 = self.x0(x[act], paths[active, k], rows[active])
            x[act] = self.step(x[act], x0, paths[active, k], nxt)
            out[act] = x0
        return out


def _placement(denoiser: Any, noise: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    if isinstance(denoiser, torch.nn.Module):
        param = next(iter(denoiser.parameters()), None)
        if param is not None:
            return param.device, param.dtype
    return noise.device, noise.dtype


def _padded(paths: list[list[int]]) -> torch.Tensor:
    width = max(len(p) for p in paths)
    return torch.tensor([p + [-1] * (width - len(p)) for p in paths], dtype=torch.long)


def extract_dna(
    denoiser: Denoiser,
    *args: Any,
    noise: torch.Tensor | None = None,
    cond: Any = None,
    x_ref: torch.Tensor | None = None,
    grid: ArrayLike | None = None,
    prediction: str | None = None,
    schedule: PathLike | None = None,
    batch_size: int = 32,
    metric: Metric | None = None,
    guidance_scale: float | None = None,
    uncond: Any = None,
    combine: Guidance = cfg,
    completion_steps: int = 1,
    reference_steps: int = 50,
    progress: bool = True,
) -> DNAResult:
    """The DNA ``d_i`` (docs/method.md §2) of B samples at every level of a grid: ``extract_dna(denoiser,
    noise=noise, cond=cond)``, the order of every sampler of the package.

    ``denoiser``: ``model(x_t, t, cond) -> prediction`` (:mod:`cotj.predict.denoisers` adapts Diffusers models).
    ``noise``: (B, ...) the noise on the model's device; ``cond``: a tensor (B, ...), a dict of per-sample and shared
    tensors, or None. ``x_ref``: (B, ...) reference clean samples; None runs ``reference_steps`` first-order steps
    from ``noise``. ``grid``: (N,) ascending levels in (0, 1] (default ``t_i = (i + 1)/100``). ``prediction`` and
    ``schedule`` (``(a, s)`` or ``(a, s, da, ds)``) default to the adapter's. ``metric(x0_hat, x_ref) -> (n,)``
    (default :func:`mse`); ``guidance_scale`` with ``uncond`` and ``combine`` takes the DNA on the guided prediction
    (extract it at the scale you sample with); ``completion_steps`` m > 1 scores the estimate completed by m steps.
    Positional ``cond, noise`` (the previous order) still work for one release, with a DeprecationWarning.

    Returns a :class:`DNAResult`: ``dna`` (B, N) float64, ``gains`` (B, N - 1), the grid, x_ref, the cost.
    Raises ValueError / TypeError for mismatched shapes, an unknown prediction, a bad grid, schedule, batch size or
    step count, guidance without ``uncond``.
    """
    if args:
        if len(args) > 4 or noise is not None or cond is not None:
            raise TypeError("extract_dna takes denoiser positionally, then noise=, cond=, x_ref=, grid= by keyword")
        warn("extract_dna(denoiser, cond, noise, ...) with positional arguments",
             "extract_dna(denoiser, noise=noise, cond=cond, ...)")
        cond, noise = args[0], args[1] if len(args) > 1 else None
        x_ref = args[2] if len(args) > 2 else x_ref
        grid = args[3] if len(args) > 3 else grid
    if noise is None:
        raise TypeError("extract_dna needs noise= (B, ...) the noise of each sample")
    prediction = prediction if prediction is not None else getattr(denoiser, "prediction", None)
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS} (the denoiser does not say), got {prediction!r}")
    if not isinstance(noise, torch.Tensor) or noise.ndim < 2:
        raise TypeError("noise must be a tensor (B, ...) with a batch dimension")
    if x_ref is not None and (not isinstance(x_ref, torch.Tensor) or x_ref.shape != noise.shape):
        raise ValueError(f"x_ref must be a tensor of noise's shape {tuple(noise.shape)}")
    if isinstance(cond, torch.Tensor) and (cond.ndim == 0 or cond.shape[0] != noise.shape[0]):
        raise ValueError(f"cond must have the batch size {noise.shape[0]} on its first dimension, got shape {tuple(cond.shape)}")
    for name, value in (("batch_size", batch_size), ("completion_steps", completion_steps), ("reference_steps", reference_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if guidance_scale is not None and uncond is None:
        raise ValueError("guidance_scale needs uncond, the unconditional (negative) condition")
    path = _resolve_path(denoiser, grid, schedule, prediction)
    metric = mse if metric is None else metric
    device, dtype = _placement(denoiser, noise)
    batch, n = noise.shape[0], path.grid.size
    eps = noise.to(device=device, dtype=torch.float32)
    pairs = torch.arange(batch * n)
    paths = [path.descent(int(p) % n, completion_steps) for p in pairs]
    total = sum(map(len, paths)) + (0 if x_ref is not None else batch * len(path.descent(n - 1, reference_steps)))
    dna = np.empty(batch * n, dtype=np.float64)
    with torch.inference_mode(), tqdm(total=total, unit="eval", desc="DNA", disable=not progress) as bar:
        run = _Runner(denoiser, cond, (uncond, guidance_scale, combine), path, prediction, batch, device, dtype, bar)
        if x_ref is None:
            ref_path = path.descent(n - 1, reference_steps)
            chunks = [torch.arange(batch)[i : i + batch_size] for i in range(0, batch, batch_size)]
            ref = torch.cat([run.descend(eps[c.to(device)].clone(), _padded([ref_path] * len(c)), c) for c in chunks])
        else:
            ref = x_ref.to(device=device, dtype=torch.float32)
        for start in range(0, batch * n, batch_size):
            chunk = pairs[start : start + batch_size]
            rows, level = chunk // n, chunk % n
            dev_rows = rows.to(device)
            a, s = run.coef(path.a, level), run.coef(path.s, level)
            shape = (-1, *([1] * (noise.ndim - 1)))
            x = a.reshape(shape) * ref[dev_rows] + s.reshape(shape) * eps[dev_rows]
            x0 = run.descend(x, _padded(paths[start : start + batch_size]), rows)
            score = torch.as_tensor(metric(x0, ref[dev_rows]))
            if score.shape != (len(chunk),):
                raise ValueError(f"metric must return one score per sample, shape ({len(chunk)},), got {tuple(score.shape)}")
            dna[start : start + len(chunk)] = score.double().cpu().numpy()
    return DNAResult(dna.reshape(batch, n), path.grid.copy(), ref.to(noise.dtype), run.rows // batch)
