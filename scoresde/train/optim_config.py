"""The optimizer's settings and its learning-rate schedule (`OptimConfig`, `lr_factor`).

AdamW with a linear warm-up and an optional cosine decay (to a fixed step, or to the run's
last step); `resume_anchor` keeps the learning rate continuous when a run is resumed with
another length. Part of `scoresde.train.config.TrainConfig`, which re-exports these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers.inputs import as_integer, as_real

__all__ = ["OptimConfig", "LRAnchor", "lr_factor", "effective_warmup", "resume_anchor"]


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
            resuming with a larger ``steps`` stretches the rest of the decay to the new end,
            from the learning rate reached (`resume_anchor`).
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
        for name in ("lr", "weight_decay", "min_lr_ratio", "ema_decay"):
            setattr(self, name, _real(getattr(self, name), name))
        for name in ("grad_clip", "warmup_fraction"):
            if getattr(self, name) is not None:
                setattr(self, name, _real(getattr(self, name), name))
        for name in ("decay_to_end", "ema_warmup"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.betas, (str, bytes)) or not hasattr(self.betas, "__len__") or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers (beta1, beta2), got {self.betas!r}")
        self.betas = (_real(self.betas[0], "betas[0]"), _real(self.betas[1], "betas[1]"))
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if not 0.0 < self.lr < math.inf:
            raise ValueError(f"lr must be positive and finite, got {self.lr}")
        if not 0.0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be >= 0 and finite, got {self.weight_decay}")
        self.warmup_steps = as_integer(self.warmup_steps, "warmup_steps", minimum=0)
        if self.decay_steps is not None:
            self.decay_steps = as_integer(self.decay_steps, "decay_steps", minimum=1)
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must lie in [0, 1] or be None, got {self.warmup_fraction}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


def _real(value: Any, name: str) -> float:
    """A config number as a float; a bool (JSON ``true``, i.e. 1.0) or a string is refused by name."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got the bool {value!r}")
    return as_real(value, name)


@dataclass(frozen=True)
class LRAnchor:
    """Where a run resumed with another ``steps`` picked up its decay (`resume_anchor`).

    From ``step`` on, ``decay_to_end``'s cosine runs from ``progress`` (the fraction of the
    decay done by then, in ``[0, 1]``) to 1 at the new last step; ``warmup`` is the warm-up
    length the run started with (``warmup_fraction`` would otherwise rescale it).
    """

    warmup: int
    step: int
    progress: float


def effective_warmup(c: OptimConfig, total_steps: int | None = None, anchor: LRAnchor | None = None) -> int:
    """The warm-up length a run of ``total_steps`` uses (``warmup_fraction`` applied)."""
    if anchor is not None:
        return anchor.warmup
    if total_steps is not None and c.warmup_fraction is not None:
        return min(c.warmup_steps, math.ceil(c.warmup_fraction * total_steps))
    return c.warmup_steps


def lr_factor(c: OptimConfig, step: int, total_steps: int | None = None, anchor: LRAnchor | None = None) -> float:
    """Multiplier of ``lr`` at optimizer step ``step`` (0-based): warm-up, then cosine/constant.

    ``total_steps`` (the run length) is needed by ``warmup_fraction`` and ``decay_to_end``.
    ``anchor`` (a resumed run whose length changed) sets the warm-up and, from
    ``anchor.step`` on, the progress of ``decay_to_end``'s cosine:
    ``p = progress + (1 - progress) (step - anchor.step)/(total_steps - anchor.step)``.
    """
    warmup = effective_warmup(c, total_steps, anchor)
    f = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if c.decay_to_end:
        if total_steps is None:
            raise ValueError("decay_to_end needs the run length: lr_factor(c, step, total_steps)")
        p = _decay_progress(step, warmup, total_steps, anchor)
    elif c.decay_steps is not None:
        p = min(1.0, max(0.0, (step - warmup) / c.decay_steps))
    else:
        return f
    return f * (c.min_lr_ratio + (1.0 - c.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p)))


def _decay_progress(step: int, warmup: int, total_steps: int, anchor: LRAnchor | None) -> float:
    """``decay_to_end``'s progress in ``[0, 1]`` at ``step``: from the end of the warm-up to
    ``total_steps``, or from ``anchor`` on, from its progress to 1 over the steps left."""
    if anchor is not None and step >= anchor.step:
        rest = min(1.0, (step - anchor.step) / max(1, total_steps - anchor.step))
        return anchor.progress + (1.0 - anchor.progress) * rest
    return min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))


def resume_anchor(c: OptimConfig, step: int, old_steps: int, new_steps: int,
                  anchor: LRAnchor | None = None) -> LRAnchor | None:
    """The anchor that continues a run stopped at ``step`` of ``old_steps`` to ``new_steps``.

    ``decay_to_end``'s schedule depends on the run length. Recomputing it for a new length
    would jump the learning rate (a run resumed at its end, step 60 of 60, to 120 steps went
    from ``min_lr_ratio * lr`` back to half of ``lr``). The anchor keeps the warm-up and the
    decay's progress at ``step`` and spreads the rest of the decay over the steps left, so the
    learning rate is continuous at ``step``. ``None`` when the schedule does not depend on the
    length (no ``decay_to_end``, no ``warmup_fraction``) or the length is unchanged.
    """
    if new_steps == old_steps or not (c.decay_to_end or c.warmup_fraction is not None):
        return anchor
    warmup = effective_warmup(c, old_steps, anchor)
    if not c.decay_to_end:
        return LRAnchor(warmup, step, 0.0)
    start = max(step, warmup)
    return LRAnchor(warmup, start, _decay_progress(start, warmup, old_steps, anchor))
