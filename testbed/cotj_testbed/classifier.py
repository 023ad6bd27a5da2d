"""Attribute classifier for shapes images: the testbed's GenEval-like prompt-following metric.

A small CNN with one head per attribute (colour, shape, count, size, position, background), trained on fresh
procedural scenes with mild noise and colour jitter so it also reads imperfect generated images. :func:`score`
says, for a batch of images and their prompts, how often each *mentioned* attribute is right, and how often
all of them are (the GenEval-style "all correct" rate).

Train (about 5 minutes on one thread) into runs/classifier/, or replace the shipped weights with ``--update``::

    python -m cotj_testbed.classifier --steps 3000 --update
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from cotj.models import shapes
from cotj_testbed import outputs

WEIGHTS = Path(__file__).resolve().parent / "weights" / "classifier.safetensors"
"""The shipped classifier weights."""
RUN_WEIGHTS = outputs.RUNS / "classifier" / WEIGHTS.name
"""Where the command line writes the weights without ``--update``."""

log = logging.getLogger(__name__)


class AttributeClassifier(nn.Module):
    """CNN on ``(B, 3, 24, 24)`` images in [-1, 1] -> logits per attribute (about 0.25M parameters)."""

    def __init__(self, resolution: int = 24) -> None:
        super().__init__()
        if resolution % 4:
            raise ValueError(f"resolution must be a multiple of 4, got {resolution}")
        self.resolution = resolution
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
            nn.Conv2d(64, 96, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(96, 32, 1), nn.SiLU(),
            nn.Flatten(),
            nn.Linear(32 * (resolution // 4) ** 2, 128), nn.SiLU(),
        )  # fmt: skip
        self.heads = nn.ModuleDict({a: nn.Linear(128, shapes.NUM_CLASSES[a]) for a in shapes.ATTRIBUTES})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``{attribute: (B, classes)}`` for images ``(B, 3, H, W)`` in [-1, 1]."""
        if images.ndim != 4 or images.shape[1:] != (3, self.resolution, self.resolution):
            raise ValueError(f"images must be (B, 3, {self.resolution}, {self.resolution}), got {tuple(images.shape)}")
        h = self.features(images)
        return {a: head(h) for a, head in self.heads.items()}

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """Most likely attributes, int64 ``(B, 6)`` in :data:`cotj.models.shapes.ATTRIBUTES` order."""
        with torch.no_grad():
            logits = self(images.float())
        return torch.stack([logits[a].argmax(-1) for a in shapes.ATTRIBUTES], dim=1).numpy()


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-image colour jitter (±0.08 per channel) and Gaussian pixel noise (std up to 0.12)."""
    b = x.shape[0]
    x = x + rng.uniform(-0.08, 0.08, (b, 3, 1, 1)).astype(np.float32)
    x = x + rng.uniform(0.0, 0.12, (b, 1, 1, 1)).astype(np.float32) * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x, -1.0, 1.0)


def train_classifier(steps: int = 3000, batch: int = 128, lr: float = 2e-3, seed: int = 0) -> AttributeClassifier:
    """Train on fresh scenes (seeded); cosine learning-rate decay. Returns the model in eval mode."""
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AttributeClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    bar = tqdm(range(steps), desc="train classifier", mininterval=5.0, disable=outputs.bar_disable(True))
    for step in bar:
        scenes = shapes.sample_scenes(rng, batch)
        x = torch.from_numpy(_augment(shapes.render(scenes, rng, model.resolution), rng))
        logits = model(x)
        labels = torch.from_numpy(scenes.labels)
        loss = torch.stack([nn.functional.cross_entropy(logits[a], labels[:, i]) for i, a in enumerate(shapes.ATTRIBUTES)]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


def load_classifier(weights: str | Path = WEIGHTS) -> AttributeClassifier:
    """The shipped classifier (raises FileNotFoundError if absent)."""
    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(f"no classifier weights at {weights}")
    model = AttributeClassifier()
    model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return model.eval()


def score(
    images: torch.Tensor, attributes: list[str] | np.ndarray, classifier: AttributeClassifier | None = None
) -> dict[str, float]:
    """Prompt-following accuracy of ``images`` ``(B, 3, 24, 24)`` in [-1, 1].

    ``attributes``: the B prompts, or an int array ``(B, 6)`` with ``-1`` for "not asked for". Returns the accuracy
    of each attribute over the images whose prompt states it (NaN if none does) and ``"all"``: the fraction of
    images with every stated attribute right.
    """
    if isinstance(attributes, list):
        target = np.stack([shapes.parse_prompt(p) for p in attributes])
    else:
        target = np.asarray(attributes)
        if target.ndim != 2 or target.shape[1] != len(shapes.ATTRIBUTES) or target.dtype.kind not in "iu":
            raise ValueError(f"attributes must be prompts or an int array (B, {len(shapes.ATTRIBUTES)})")
    if target.shape[0] != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {target.shape[0]} attribute rows")
    pred = (classifier or load_classifier()).predict(images)
    asked = target >= 0
    right = (pred == target) | ~asked
    out = {a: float(right[asked[:, i], i].mean()) if asked[:, i].any() else float("nan")
           for i, a in enumerate(shapes.ATTRIBUTES)}  # fmt: skip
    out["all"] = float(right.all(axis=1).mean())
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: train the classifier and write its weights."""
    parser = outputs.Parser(prog="python -m cotj_testbed.classifier", description="Train the classifier.",
                            epilog="3000 steps: about 5 minutes on one thread.")
    parser.add_argument("--steps", type=outputs.positive_int, default=3000)
    parser.add_argument("--batch", type=outputs.positive_int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=outputs.positive_int, default=1)
    parser.add_argument("--to", help=f"destination .safetensors (default {RUN_WEIGHTS}; with --update the shipped {WEIGHTS})")
    parser.add_argument("--update", action="store_true", help="write the shipped weights (or let --to name a committed file)")
    args = parser.parse_args(argv)
    try:
        args.to = outputs.output(args.to or outputs.default_output(RUN_WEIGHTS, WEIGHTS, args.update), "--to", update=args.update)
    except outputs.UsageError as exc:
        outputs.fail(parser, exc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    model = train_classifier(args.steps, args.batch, seed=args.seed)
    Path(args.to).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(args.to))
    rng = np.random.default_rng(args.seed + 1)
    scenes = shapes.sample_scenes(rng, 2000, p_mention=1.0)
    acc = score(torch.from_numpy(shapes.render(scenes, rng, model.resolution)), scenes.labels, model)
    log.info("wrote %s; accuracy on 2000 fresh scenes: %s", args.to, {k: round(v, 4) for k, v in acc.items()})


if __name__ == "__main__":
    main()
