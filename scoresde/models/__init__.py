"""Score networks and their parameterizations.

    from scoresde.models import ModelConfig
    model = ModelConfig(arch="mlp", data_shape=(2,), output="eps", net={"width": 128}).build(seed=0)
    score = model.score_fn(sde)          # (x: (B, *D), t: (B,)) -> (B, *D), for any solver
"""

from __future__ import annotations

from .embeddings import GaussianFourierEmbedding, SinusoidalEmbedding, make_time_embedding
from .mlp import MLP
from .parameterization import OUTPUTS, convert
from .score_model import NETWORKS, ModelConfig, ScoreModel, build_network
from .unet import UNet

__all__ = [
    "GaussianFourierEmbedding",
    "SinusoidalEmbedding",
    "make_time_embedding",
    "MLP",
    "UNet",
    "OUTPUTS",
    "convert",
    "NETWORKS",
    "ModelConfig",
    "ScoreModel",
    "build_network",
]
