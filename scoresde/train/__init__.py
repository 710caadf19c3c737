"""Training score networks: config, loop, EMA, atomic checkpoints, resume, DDP, toy recipes.

    from scoresde.train import TrainConfig, train, load_model
    trainer = train(TrainConfig(data="eight_gaussians", steps=2000), out_dir="runs/8g")
    model, sde, config = load_model("runs/8g")          # EMA weights by default
    samples = solvers.sample(sde, model.score_fn(sde), shape=(10_000, 2), solver="pc").samples
"""

from __future__ import annotations

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import (
    LRAnchor,
    OptimConfig,
    SDEConfig,
    TrainConfig,
    config_diff,
    effective_warmup,
    lr_factor,
    resume_anchor,
)
from .data import checkpoint_loader, data_names, make_data, reference_data
from .digits import digits_config
from .distributed import DistInfo
from .ema import EMA
from .signals import EXIT_DIVERGED, TrainingDiverged, TrainingInterrupted
from .toy import TOY_STEPS, toy_config, train_toy
from .trainer import Trainer, load_model, train

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "OptimConfig",
    "SDEConfig",
    "TrainConfig",
    "config_diff",
    "lr_factor",
    "LRAnchor",
    "effective_warmup",
    "resume_anchor",
    "data_names",
    "checkpoint_loader",
    "reference_data",
    "make_data",
    "DistInfo",
    "EMA",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "EXIT_DIVERGED",
    "load_model",
    "train",
    "TOY_STEPS",
    "toy_config",
    "train_toy",
    "digits_config",
]
