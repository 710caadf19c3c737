"""Training configuration: nested dataclasses that round-trip through JSON.

A :class:`TrainConfig` fixes everything that determines the trained weights (data, SDE,
network, loss, optimizer, batch size, seed, dtype). The run-time fields in
:data:`RUNTIME_FIELDS` (how long to train, how often to log/checkpoint, the device) may
change when a run is resumed; any other difference is refused (:func:`config_diff`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..losses import LossConfig
from ..models import ModelConfig
from ..sde import SDES, AffineSDE, get_sde

__all__ = ["SDEConfig", "OptimConfig", "TrainConfig", "RUNTIME_FIELDS", "config_diff", "lr_factor"]

RUNTIME_FIELDS: tuple[str, ...] = ("steps", "log_every", "ckpt_every", "eval_every", "device")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class SDEConfig:
    """An SDE by name (``vp``, ``subvp``, ``ve``, ``cosine``) and constructor arguments."""

    name: str = "vp"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name.lower() not in SDES:
            raise ValueError(f"unknown SDE {self.name!r}; valid names: {', '.join(sorted(SDES))}")
        self.name = self.name.lower()

    def build(self) -> AffineSDE:
        return get_sde(self.name, **self.params)

    @classmethod
    def from_sde(cls, sde: AffineSDE) -> SDEConfig:
        """The config of an SDE instance of one of the registered classes."""
        for name, c in SDES.items():
            if type(sde) is c:
                return cls(name=name, params=dict(sde.config()))
        raise TypeError(f"{type(sde).__name__} is not one of the registered SDEs {sorted(SDES)}")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, optional cosine decay, gradient clipping, and EMA.

    Attributes:
        lr, weight_decay, betas: AdamW (Loshchilov & Hutter 2019).
        warmup_steps: the learning rate rises linearly to ``lr`` over this many steps.
        decay_steps: if set, cosine decay from ``lr`` to ``min_lr_ratio * lr`` over this many
            steps after warm-up (then constant).
        grad_clip: maximum global gradient norm (``None``: no clipping).
        ema_decay: EMA decay of the weights used for sampling.
        ema_warmup: use ``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates.
    """

    lr: float = 2e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    decay_steps: int | None = None
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("need lr > 0, weight_decay >= 0 and warmup_steps >= 0")
        if self.decay_steps is not None and self.decay_steps < 1:
            raise ValueError(f"decay_steps must be positive or None, got {self.decay_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


def lr_factor(c: OptimConfig, step: int) -> float:
    """Multiplier of ``lr`` at optimizer step ``step`` (0-based): warm-up, then cosine/constant."""
    f = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else 1.0
    if c.decay_steps is not None:
        p = min(1.0, max(0.0, (step - c.warmup_steps) / c.decay_steps))
        f *= c.min_lr_ratio + (1.0 - c.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return f


@dataclass
class TrainConfig:
    """One training run. ``data`` names a 2-D toy, an exact target preset or ``"digits"``."""

    data: str = "eight_gaussians"
    sde: SDEConfig = field(default_factory=SDEConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 5000
    batch_size: int = 512
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    log_every: int = 100
    ckpt_every: int = 1000
    eval_every: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"need steps >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}")
        for name in ("log_every", "ckpt_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables), got {getattr(self, name)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}")
        d = dict(d)
        nested = {"sde": SDEConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig}
        for key, klass in nested.items():
            if key in d and isinstance(d[key], dict):
                d[key] = klass(**d[key])
        return cls(**d)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TrainConfig:
        """Parse JSON text, or read it from a file path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.loads(json.dumps(v))  # normalise tuples/lists
    return out


def config_diff(saved: TrainConfig, current: TrainConfig) -> list[str]:
    """Differences that forbid resuming (run-time fields ignored), as ``"key: a != b"`` lines."""
    a, b = _flatten(saved.to_dict()), _flatten(current.to_dict())
    keys = sorted((set(a) | set(b)) - set(RUNTIME_FIELDS))
    return [f"{k}: checkpoint {a.get(k)!r} != current {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
