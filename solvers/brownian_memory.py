"""Rejection Sampling with Memory for adaptive SDE solvers (Rackauckas & Nie 2017, RSwM1).

A rejected attempt of an adaptive SDE step has already revealed the Brownian increment over
the attempted interval; drawing a fresh one would select the accepted noise (large increments
would be rejected more often) and bias the law of the solution. `BrownianMemory` keeps what
was revealed and refines it with the Brownian bridge. Used by `solvers.adaptive_sde`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .utils import append_dims

__all__ = ["BrownianMemory"]


class BrownianMemory:
    """Per-sample stacks of Brownian increments already revealed by rejected steps.

    Rejection Sampling with Memory (Rackauckas & Nie 2017, RSwM1 with clipping): a rejected
    attempt over ``[t - h, t]`` revealed ``dW``; redrawing it would bias the accepted noise
    (steps with large ``|z|`` would be rejected more often). Instead the revealed piece is
    pushed on a stack, and every later step either lies inside the top piece (its increment
    is drawn from the Brownian bridge ``dW' = (h/L) W + sqrt(h (L - h)/L) xi``, the rest
    ``(W - dW', L - h)`` stays) or is clipped to end exactly at the piece's end. Pieces are
    ``(W: (K, B, *D), L: (K, B))``; ``depth: (B,)`` counts each sample's pieces.
    """

    def __init__(self, like: Tensor) -> None:
        b = like.shape[0]
        self.W = like.new_zeros((2, *like.shape))
        self.L = torch.zeros((2, b), dtype=torch.float64, device=like.device)
        self.depth = torch.zeros(b, dtype=torch.long, device=like.device)
        self.ar = torch.arange(b, device=like.device)

    def reserve(self, max_depth: int) -> None:
        """Grow the stacks so that one more push fits (``max_depth`` from the last sync)."""
        k = self.W.shape[0]
        if max_depth + 2 > k:
            self.W = torch.cat([self.W, torch.zeros_like(self.W)])
            self.L = torch.cat([self.L, torch.zeros_like(self.L)])

    def clip(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Clip ``h: (B,)`` to the top piece; returns ``(h, has_piece, uses_whole_piece)``."""
        self.has = self.depth > 0
        self.top = (self.depth - 1).clamp(min=0)
        self.W_top, self.L_top = self.W[self.top, self.ar], self.L[self.top, self.ar]
        h = torch.where(self.has, torch.minimum(h, self.L_top), h)
        # A step that would leave a sliver (< 1%) of the piece takes the whole piece.
        self.full = self.has & (h >= 0.99 * self.L_top)
        h = torch.where(self.full, self.L_top, h)
        return h, self.has, self.full

    def increment(self, h: Tensor, xi: Tensor) -> Tensor:
        """Brownian increment over the clipped step ``h``: bridge inside a piece, else fresh."""
        nd = xi.ndim
        L = torch.where(self.has, self.L_top, torch.ones_like(h))
        frac = torch.where(self.has, h / L, torch.zeros_like(h))
        var = torch.where(self.has, h * (L - h) / L, h).clamp(min=0.0)
        return (
            append_dims(frac.to(xi.dtype), nd) * self.W_top
            + append_dims(var.sqrt().to(xi.dtype), nd) * xi
        )

    def update(self, dW: Tensor, h: Tensor, accept: Tensor, active: Tensor) -> None:
        """Consume the accepted part of the top piece; push what a rejected attempt revealed."""
        nd = dW.ndim
        rejected = active & ~accept
        # The rest of a partly used piece stays on top (accepted or rejected attempt).
        shrink = self.has & ~self.full & active
        sx = append_dims(shrink, nd)
        self.W[self.top, self.ar] = torch.where(sx, self.W_top - dW, self.W_top)
        self.L[self.top, self.ar] = torch.where(shrink, self.L_top - h, self.L_top)
        # An accepted step that used a whole piece pops it.
        self.depth = self.depth - (accept & self.full).long()
        # A rejected attempt that revealed new information pushes (dW, h).
        push = rejected & ~self.full
        px = append_dims(push, nd)
        slot = self.depth
        self.W[slot, self.ar] = torch.where(px, dW, self.W[slot, self.ar])
        self.L[slot, self.ar] = torch.where(push, h, self.L[slot, self.ar])
        self.depth = self.depth + push.long()
