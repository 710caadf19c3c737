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
from ..sde import SDES, get_sde

__all__ = ["SDEConfig", "OptimConfig", "TrainConfig", "RUNTIME_FIELDS", "config_diff", "lr_factor",
           "CUSTOM_SDE"]

RUNTIME_FIELDS: tuple[str, ...] = ("steps", "log_every", "ckpt_every", "eval_every", "device")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


CUSTOM_SDE = "custom"
_SDE_METHODS = ("drift", "diffusion", "marginal_coeffs", "prior_sample")


@dataclass
class SDEConfig:
    """An SDE by name (``vp``, ``subvp``, ``ve``, ``cosine``) and constructor arguments, or a
    custom SDE object (``name="custom"``).

    A custom SDE is any object with ``T``, ``eps``, ``drift``, ``diffusion``,
    ``marginal_coeffs`` and ``prior_sample`` (the ``solvers.DiffusionSDE`` protocol). Its
    config records the class (``params["class"]``) and, if it has one, its ``config()``; the
    object itself is not saved, so loading such a run needs it again
    (``load_model(path, sde=my_sde)``).
    """

    name: str = "vp"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name.lower() not in SDES and self.name.lower() != CUSTOM_SDE:
            raise ValueError(f"unknown SDE {self.name!r}; valid names: {', '.join(sorted(SDES))} "
                             "(or pass an SDE object in Python)")
        self.name = self.name.lower()

    def build(self) -> Any:
        """The SDE: a registered one built from ``params``, or the custom object attached."""
        if self.name != CUSTOM_SDE:
            return get_sde(self.name, **self.params)
        obj = getattr(self, "_instance", None)
        if obj is None:
            raise ValueError(
                f"this run used a custom SDE ({self.params.get('class', '?')}, config "
                f"{self.params.get('config')}) that a config file cannot rebuild; pass the same "
                "object again, e.g. load_model(path, sde=my_sde)"
            )
        return obj

    def with_instance(self, sde: Any) -> SDEConfig:
        """This config bound to the SDE object ``sde`` (for loading a run); refuses another SDE.

        Raises:
            ValueError: ``sde`` is not the SDE this config describes (other class or parameters).
        """
        given = SDEConfig.from_sde(sde)
        if self.name == CUSTOM_SDE:
            ok = given.name == CUSTOM_SDE and given.params.get("class") == self.params.get("class")
            ok = ok and (self.params.get("config") is None or given.params.get("config") == self.params.get("config"))
        else:
            ok = given.name == self.name and all(
                math.isclose(float(given.params[k]), float(v)) for k, v in self.params.items() if k in given.params)
        if not ok:
            raise ValueError(f"the run was trained with the SDE {self.name} {self.params}, "
                             f"but the SDE given is {given.name} {given.params}")
        return given

    @classmethod
    def from_sde(cls, sde: Any) -> SDEConfig:
        """The config of an SDE object: by name for the registered classes, else ``custom``.

        Raises:
            TypeError: ``sde`` lacks a method or attribute of the SDE protocol.
        """
        for name, c in SDES.items():
            if type(sde) is c:
                return cls(name=name, params=dict(sde.config()))
        missing = [m for m in (*_SDE_METHODS, "T", "eps") if not hasattr(sde, m)]
        if missing:
            raise TypeError(
                f"{type(sde).__name__} is not an SDE: it lacks {missing} (needed: T, eps, "
                f"{', '.join(_SDE_METHODS)}; see solvers.DiffusionSDE)"
            )
        conf = getattr(sde, "config", None)
        try:
            params_conf = json.loads(json.dumps(conf())) if callable(conf) else None
        except (TypeError, ValueError):
            params_conf = None
        klass = f"{type(sde).__module__}.{type(sde).__qualname__}"
        out = cls(name=CUSTOM_SDE, params={"class": klass, "config": params_conf,
                                           "T": float(sde.T), "eps": float(sde.eps)})
        out._instance = sde  # not a dataclass field: never serialised
        return out


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, optional cosine decay, gradient clipping, and EMA.

    Attributes:
        lr, weight_decay, betas: AdamW (Loshchilov & Hutter 2019).
        warmup_steps: the learning rate rises linearly to ``lr`` over this many steps.
        warmup_fraction: if set, the warm-up is at most this fraction of the run
            (``min(warmup_steps, ceil(warmup_fraction * steps))``), so a short run is not all
            warm-up.
        decay_steps: if set, cosine decay from ``lr`` to ``min_lr_ratio * lr`` over this many
            steps after warm-up (then constant).
        decay_to_end: cosine decay from the end of warm-up to the last step of the run
            (``decay_steps`` is then ignored). The schedule follows the run length, so
            resuming with a larger ``steps`` stretches the rest of the decay to the new end.
        grad_clip: maximum global gradient norm (``None``: no clipping).
        ema_decay: EMA decay of the weights used for sampling.
        ema_warmup: use ``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates.
    """

    lr: float = 2e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    warmup_fraction: float | None = None
    decay_steps: int | None = None
    decay_to_end: bool = False
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
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must lie in [0, 1] or be None, got {self.warmup_fraction}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


def lr_factor(c: OptimConfig, step: int, total_steps: int | None = None) -> float:
    """Multiplier of ``lr`` at optimizer step ``step`` (0-based): warm-up, then cosine/constant.

    ``total_steps`` (the run length) is needed by ``warmup_fraction`` and ``decay_to_end``.
    """
    warmup, decay = c.warmup_steps, c.decay_steps
    if total_steps is not None and c.warmup_fraction is not None:
        warmup = min(warmup, math.ceil(c.warmup_fraction * total_steps))
    if c.decay_to_end:
        if total_steps is None:
            raise ValueError("decay_to_end needs the run length: lr_factor(c, step, total_steps)")
        decay = max(1, total_steps - warmup)
    f = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if decay is not None:
        p = min(1.0, max(0.0, (step - warmup) / decay))
        f *= c.min_lr_ratio + (1.0 - c.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return f


@dataclass
class TrainConfig:
    """One training run.

    ``data`` is a built-in name (a 2-D toy, an exact target preset, ``"digits"``), a data file
    or image folder (see `scoresde.data.load_data`), or a label for data passed in Python.
    ``data_id`` is the identity of the data actually trained on (`scoresde.data.data_identity`:
    a content hash for arrays), filled in by the trainer; a checkpoint is only ever compared
    with data of the same identity.
    """

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
    data_id: dict[str, Any] | None = None

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
    sd, cd = saved.to_dict(), current.to_dict()
    if sd.get("data_id") is None or cd.get("data_id") is None:  # an older run: no identity stored
        sd.pop("data_id", None)
        cd.pop("data_id", None)
    a, b = _flatten(sd), _flatten(cd)
    keys = sorted((set(a) | set(b)) - set(RUNTIME_FIELDS))
    return [f"{k}: checkpoint {a.get(k)!r} != current {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
