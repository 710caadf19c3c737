"""The recipe for the 8x8 digits of scikit-learn: a small U-Net, trained in minutes on a CPU.

VP SDE, epsilon-prediction, ``sigma^2`` weighting; U-Net with 32 channels at 8x8 and 64 at
4x4, one residual block per level (two on the way up), self-attention at 4x4 (about 0.6M
parameters); AdamW 1e-3 with warm-up (200 steps, at most 10% of the run) and a cosine decay
to the end of the run, EMA 0.999, batch 64. The same recipe serves your own small images
(``data`` a folder of PNG/JPEG files, ``data_shape`` their ``(C, H, W)``, any H and W).
"""

from __future__ import annotations

from ..losses import LossConfig
from ..models import ModelConfig
from .config import OptimConfig, SDEConfig, TrainConfig

__all__ = ["digits_config"]


def digits_config(
    *, steps: int = 3000, seed: int = 0, sde: str = "vp", data: str = "digits",
    data_shape: tuple[int, int, int] = (1, 8, 8),
) -> TrainConfig:
    """`TrainConfig` for ``data="digits"`` (images ``(1, 8, 8)`` in ``[-1, 1]``), or for your own
    image folder ``data`` with images of shape ``data_shape`` ``(C, H, W)``."""
    return TrainConfig(
        data=data,
        sde=SDEConfig(sde),
        model=ModelConfig(
            arch="unet",
            data_shape=tuple(data_shape),
            output="eps",
            input_scaling=True,
            sigma_data=0.75,
            net={"channels": 32, "channel_mults": (1, 2), "num_res_blocks": 1,
                 "attention_levels": (1,), "groups": 8},
        ),
        loss=LossConfig(weighting="sigma2"),
        optim=OptimConfig(lr=1e-3, warmup_steps=200, warmup_fraction=0.1, decay_to_end=True,
                          min_lr_ratio=0.05, grad_clip=1.0, ema_decay=0.999),
        steps=steps,
        batch_size=64,
        seed=seed,
        log_every=100,
        ckpt_every=500,
    )
