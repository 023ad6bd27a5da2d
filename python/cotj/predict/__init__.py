"""Predict: the Diffusion DNA of a condition (SPEC 2, 6). Needs the ``torch`` extra.

- :func:`extract_dna`: ground truth, the model's one-step error at every grid level;
- :func:`to_x0`: any prediction type -> the clean estimate;
- :class:`DNAPredictor`, :func:`train_predictor`, :func:`cosine_scores`: the MLP that predicts
  the DNA from a condition embedding;
- :class:`FluxDenoiser`, :class:`UNetDenoiser`: Diffusers models as ``model(x_t, t, cond)``.
"""

from cotj.predict.denoisers import FluxDenoiser, UNetDenoiser
from cotj.predict.extract import DNAResult, cfg, cfg_renorm, extract_dna, mse
from cotj.predict.prediction import PREDICTIONS, prediction_of, to_x0
from cotj.predict.predictor import DNAPredictor
from cotj.predict.training import CosineReport, TrainReport, cosine_scores, train_predictor

__all__ = [
    "PREDICTIONS",
    "CosineReport",
    "DNAPredictor",
    "DNAResult",
    "FluxDenoiser",
    "TrainReport",
    "UNetDenoiser",
    "cfg",
    "cfg_renorm",
    "cosine_scores",
    "extract_dna",
    "mse",
    "prediction_of",
    "to_x0",
    "train_predictor",
]
