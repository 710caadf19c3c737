"""Exponential moving average of model weights (Polyak averaging; Song et al. 2021 sample with it).

After each optimizer step ``theta_ema <- d theta_ema + (1 - d) theta`` with
``d = min(decay, (1 + n)/(10 + n))`` when ``warmup`` is on (``n`` = updates so far), so
early averages are not dominated by the random initialisation.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A frozen copy of ``model`` that tracks the moving average of its parameters.

    Buffers (e.g. Fourier frequencies) are copied, not averaged. ``ema.model`` is in eval mode
    with gradients off.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src: list[torch.Tensor] = [p for p in model.parameters()]
        self._dst: list[torch.Tensor] = [p for p in self.model.parameters()]
        self._src_buf = [b for b in model.buffers()]
        self._dst_buf = [b for b in self.model.buffers()]

    def current_decay(self) -> float:
        """Decay used by the next :meth:`update`."""
        if self.warmup:
            return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step towards the tracked model's current weights."""
        d = self.current_decay()
        # theta_ema + (1 - d) (theta - theta_ema), fused over all tensors.
        torch._foreach_lerp_(self._dst, self._src, 1.0 - d)
        for dst, src in zip(self._dst_buf, self._src_buf, strict=True):
            dst.copy_(src)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
