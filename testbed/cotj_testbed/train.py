"""Train the shapes generator with the rectified-flow objective (seeded, resumable, checkpointed).

Usage::

    python -m cotj_testbed.train --out runs/shapes --hours 2          # starts, or resumes from runs/shapes
    python -m cotj_testbed.train export --out runs/shapes --to runs/shapes/shapes_unet.safetensors
    python -m cotj_testbed.train export --out runs/shapes --update    # replaces the shipped weights

The run directory and the exported weights are not written into the checkout's committed files without ``--update``
(:mod:`cotj_testbed.outputs`); ``--hours`` bounds a run's wall time.

Each step renders a fresh batch of procedural scenes (:mod:`cotj.models.shapes`), draws ``t ~ U(0, 1)`` and noise,
and regresses the UNet's output on the velocity ``eps - x0`` at ``x_t = (1 - t)·x0 + t·eps``. A fraction
``p_uncond`` of the prompts is replaced by the empty prompt (condition dropout, for classifier-free guidance).
An EMA of the weights is kept and is what gets exported. The run directory holds ``checkpoint.safetensors``
(model + EMA), ``trainer_state.pt`` (optimizer, random states), ``log.jsonl`` (loss per interval) and the prompt
embedding cache; a run resumes from them, bit-for-bit the same as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from cotj.models import shapes
from cotj.models.generator import NULL_PROMPT, RESOLUTION, WEIGHTS, build_unet, unet_config
from cotj.models.text import PromptEncoder
from cotj_testbed import outputs

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (stored in the run directory; a resumed run must match)."""

    steps: int = 200_000
    batch: int = 32
    lr: float = 3e-4
    warmup: int = 200
    seed: int = 0
    p_uncond: float = 0.1
    ema_decay: float = 0.999
    resolution: int = RESOLUTION
    unet: dict = field(default_factory=unet_config)


def load_config(out: str | Path) -> TrainConfig | None:
    """The config stored in a run directory, or None for a new run."""
    path = _state_paths(Path(out))[2]
    if not path.exists():
        return None
    cfg = TrainConfig(**json.loads(path.read_text()))
    cfg.unet = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.unet.items()}
    return cfg


def _state_paths(out: Path) -> tuple[Path, Path, Path]:
    return out / "checkpoint.safetensors", out / "trainer_state.pt", out / "config.json"


def _atomic(path: Path, write) -> None:  # noqa: ANN001 - write(tmp_path) callable
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class _Run:
    """Model, EMA, optimizer and random state of one run directory."""

    def __init__(self, out: Path, cfg: TrainConfig) -> None:
        self.out, self.cfg = out, cfg
        torch.manual_seed(cfg.seed)
        self.unet = build_unet(cfg.unet).train()
        self.params = [p for p in self.unet.parameters()]
        self.ema = [p.detach().clone() for p in self.params]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / cfg.warmup))
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    def save(self) -> None:
        ckpt, state, _ = _state_paths(self.out)
        names = [n for n, _ in self.unet.named_parameters()]
        tensors = {f"model.{n}": p.detach().contiguous() for n, p in zip(names, self.params)}
        tensors.update({f"ema.{n}": e.contiguous() for n, e in zip(names, self.ema)})
        trainer = {
            "step": self.step,
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
        }
        _atomic(state, lambda p: torch.save(trainer, p))
        _atomic(ckpt, lambda p: save_file(tensors, str(p), metadata={"step": str(self.step)}))

    def load(self) -> None:
        ckpt, state, _ = _state_paths(self.out)
        tensors = load_file(str(ckpt))
        trainer = torch.load(state, weights_only=False)
        names = [n for n, _ in self.unet.named_parameters()]
        with torch.no_grad():
            for n, p, e in zip(names, self.params, self.ema):
                p.copy_(tensors[f"model.{n}"])
                e.copy_(tensors[f"ema.{n}"])
        self.opt.load_state_dict(trainer["opt"])
        self.sched.load_state_dict(trainer["sched"])
        self.rng.bit_generator.state = trainer["rng"]
        self.gen.set_state(trainer["gen"])
        self.step = int(trainer["step"])


def flow_loss(unet: torch.nn.Module, x0: torch.Tensor, cond: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rectified-flow loss: mean squared error of the predicted velocity at ``t ~ U(0, 1)`` (scalar)."""
    eps = torch.randn(x0.shape, generator=gen)
    t = torch.rand(x0.shape[0], generator=gen)
    tb = t[:, None, None, None]
    v = unet((1 - tb) * x0 + tb * eps, t * 1000.0, cond).sample
    return torch.nn.functional.mse_loss(v, eps - x0)


def train(
    out: str | Path,
    cfg: TrainConfig | None = None,
    *,
    hours: float | None = None,
    checkpoint_minutes: float = 10.0,
    log_every: int = 50,
    encoder: PromptEncoder | None = None,
) -> list[float]:
    """Train (or resume) the run in ``out`` until ``cfg.steps`` total steps or ``hours`` of wall time.

    ``cfg`` defaults to the run's stored config (or :class:`TrainConfig` for a new run); a stored config that
    differs in anything but ``steps`` raises ValueError (raising ``steps`` extends a run). Returns the per-step
    losses of this invocation.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, _, cfg_path = _state_paths(out)
    stored = load_config(out)
    if stored is not None and cfg is not None:
        if dataclasses.asdict(dataclasses.replace(cfg, steps=stored.steps)) != dataclasses.asdict(stored):
            raise ValueError(f"cfg differs from the config stored in {cfg_path} (only steps may change on resume)")
    cfg = cfg or stored or TrainConfig()
    cfg_path.write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    run = _Run(out, cfg)
    if ckpt.exists():
        run.load()
        log.info("resumed %s at step %d", out, run.step)
    encoder = encoder or PromptEncoder(out / "prompt_embeds.safetensors")
    null = encoder.encode([NULL_PROMPT])
    encoder.encode(shapes.all_prompts())  # the grammar is finite: embed it once
    deadline = time.monotonic() + 3600.0 * hours if hours is not None else float("inf")
    last_ckpt, t0, losses = time.monotonic(), time.monotonic(), []
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train shapes", dynamic_ncols=True, mininterval=5.0,
               disable=outputs.bar_disable(True))
    with open(out / "log.jsonl", "a") as log_file:
        while run.step < cfg.steps and time.monotonic() < deadline:
            scenes = shapes.sample_scenes(run.rng, cfg.batch)
            x0 = torch.from_numpy(shapes.render(scenes, run.rng, cfg.resolution))
            cond = encoder.encode(scenes.prompts())
            drop = torch.from_numpy(run.rng.random(cfg.batch) < cfg.p_uncond)
            cond = torch.where(drop[:, None, None], null, cond)
            loss = flow_loss(run.unet, x0, cond, run.gen)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.params, 1.0)
            run.opt.step()
            run.sched.step()
            with torch.no_grad():
                torch._foreach_lerp_(run.ema, [p.detach() for p in run.params], 1.0 - cfg.ema_decay)
            run.step += 1
            losses.append(loss.item())
            bar.update(1)
            if run.step % log_every == 0:
                recent = float(np.mean(losses[-log_every:]))
                bar.set_postfix(loss=f"{recent:.4f}")
                rate = len(losses) * cfg.batch / (time.monotonic() - t0)
                log_file.write(json.dumps({"step": run.step, "loss": recent, "images_per_s": rate}) + "\n")
                log_file.flush()
            if time.monotonic() - last_ckpt > 60.0 * checkpoint_minutes:
                run.save()
                encoder.save()
                last_ckpt = time.monotonic()
    bar.close()
    run.save()
    encoder.save()
    return losses


def export(out: str | Path, dest: str | Path, dtype: torch.dtype = torch.float16, weights: str = "ema") -> int:
    """Write the run's ``weights`` ("ema" or the raw "model") to ``dest`` (safetensors, fp16 by default, with the
    UNet config in the metadata). Returns the step."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    ckpt, _, cfg_path = _state_paths(Path(out))
    if not ckpt.exists():
        raise FileNotFoundError(f"no checkpoint in {out}")
    tensors = load_file(str(ckpt))
    from safetensors import safe_open

    with safe_open(str(ckpt), framework="pt") as f:
        step = int(f.metadata()["step"])
    cfg = json.loads(cfg_path.read_text())
    prefix = weights + "."
    chosen = {k[len(prefix) :]: v.to(dtype).contiguous() for k, v in tensors.items() if k.startswith(prefix)}
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    meta = {"unet_config": json.dumps(cfg["unet"]), "step": str(step), "weights": weights}
    save_file(chosen, str(dest), metadata=meta)
    return step


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m cotj_testbed.train [export] --out DIR ...``."""
    parser = outputs.Parser(prog="python -m cotj_testbed.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["train", "export"], default="train")
    parser.add_argument("--out", required=True, help="run directory (created, or resumed from)")
    parser.add_argument("--hours", type=float, default=None, help="stop after this much wall time")
    parser.add_argument("--steps", type=int, default=None, help="total optimizer steps of the run")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--to", default=None, help=f"export: destination .safetensors (with --update default {WEIGHTS})")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema", help="export: which weights")
    parser.add_argument("--update", action="store_true", help="export: replace the shipped weights (or let --to name a committed file)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            outputs.need_dir(args.out, "--out", [p.name for p in _state_paths(Path(args.out))[::2]], "python -m cotj_testbed.train")
            if args.to is None and not args.update:
                raise outputs.UsageError("export needs --to FILE (or --update to replace the shipped weights)")
            args.to = outputs.output(args.to or WEIGHTS, "--to", update=args.update)
        else:
            outputs.output(args.out, "--out", can_update=False)
    except outputs.UsageError as exc:
        outputs.fail(parser, exc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.command == "export":
        step = export(args.out, args.to, weights=args.weights)
        log.info("exported %s weights of step %d to %s", args.weights, step, args.to)
        return
    overrides = {k: getattr(args, k) for k in ("steps", "batch", "lr", "seed") if getattr(args, k) is not None}
    stored = load_config(args.out)
    if stored is not None and overrides.keys() - {"steps"}:
        parser.error(f"{args.out} already has a config; only --steps may change on resume")
    cfg = dataclasses.replace(stored or TrainConfig(), **overrides)
    train(args.out, cfg, hours=args.hours, checkpoint_minutes=args.checkpoint_minutes)


if __name__ == "__main__":
    main()
