"""Predict: the Diffusion DNA of a condition (docs/method.md §2, §8). Needs the ``torch`` extra.

- :func:`extract_dna`: ground truth, the model's one-step error at every grid level;
- :func:`to_x0`: any prediction type -> the clean estimate;
- :class:`DNAPredictor`, :func:`train_predictor`, :func:`cosine_scores`: the MLP that predicts
  the DNA from a condition embedding;
- :class:`FluxDenoiser`, :class:`SD3Denoiser`, :class:`UNetDenoiser`: Diffusers models as ``model(x_t, t, cond)``;
- :func:`calibrate`: teacher runs -> the model's measured jump costs (the "teacher" and "calibrated"
  objectives and closed-loop replanning, :mod:`cotj.planning.objectives`);
- :func:`extract_sharded`, :func:`load_sharded`: extraction over many prompts, sharded across
  processes with ``torch.distributed`` (gloo; launched with torchrun), or in one process.
"""

from cotj.paths import PREDICTIONS, prediction_of, to_x0
from cotj.predict.denoisers import FluxDenoiser, SD3Denoiser, UNetDenoiser
from cotj.predict.extract import DNAResult, cfg, cfg_renorm, extract_dna, mse
from cotj.predict.predictor import DNAPredictor
from cotj.predict.shard import DNAInputs, ShardedDNA, extract_sharded, load_sharded
from cotj.predict.teacher import Trajectories, calibrate, euler_trajectories
from cotj.predict.training import CosineReport, TrainReport, cosine_scores, train_predictor

__all__ = [
    "PREDICTIONS",
    "CosineReport",
    "DNAPredictor",
    "DNAInputs",
    "DNAResult",
    "FluxDenoiser",
    "SD3Denoiser",
    "ShardedDNA",
    "TrainReport",
    "Trajectories",
    "UNetDenoiser",
    "calibrate",
    "cfg",
    "cfg_renorm",
    "cosine_scores",
    "extract_dna",
    "euler_trajectories",
    "extract_sharded",
    "load_sharded",
    "mse",
    "prediction_of",
    "to_x0",
    "train_predictor",
]
