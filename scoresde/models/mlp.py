"""A residual MLP score network for low-dimensional data (2-D toys, small vectors).

``x: (B, *D)`` is flattened to ``(B, prod(D))``; the time ``t: (B,)`` is embedded
(`.embeddings`), passed through a two-layer MLP, and added inside every residual block::

    h_0     = W_in x
    h_{k+1} = h_k + W_2 act(W_1 act(h_k) + U_k temb)
    out     = W_out act(h_L)            (reshaped to (B, *D))

The output is the raw network output; `ScoreModel` turns it into a
score, an epsilon-, x0- or v-prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from .embeddings import make_time_embedding

__all__ = ["MLP", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


class _ResBlock(nn.Module):
    """``h + W_2 act(W_1 act(h) + U temb)``; ``h: (B, width)``, ``temb: (B, width)``."""

    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        self.act = _activation(activation)
        self.fc1 = nn.Linear(width, width)
        self.temb = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        return h + self.fc2(self.act(self.fc1(self.act(h)) + self.temb(temb)))


class MLP(nn.Module):
    """Residual MLP ``(x: (B, *D), t: (B,)) -> (B, *D)`` with a time embedding.

    Args:
        data_shape: shape ``D`` of one sample (``(2,)`` for 2-D toys).
        width: hidden width.
        depth: number of residual blocks.
        emb_dim: size of the time features (even).
        embedding: ``"sinusoidal"`` or ``"fourier"`` (Gaussian random features).
        fourier_scale: std of the Fourier frequencies (``embedding="fourier"``).
        activation: ``"silu"``, ``"gelu"`` or ``"relu"``.
        zero_out: initialise the output layer to zero (the network starts at output 0).
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (2,),
        *,
        width: int = 128,
        depth: int = 3,
        emb_dim: int = 64,
        embedding: str = "sinusoidal",
        fourier_scale: float = 16.0,
        activation: str = "silu",
        zero_out: bool = True,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in data_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"data_shape must be non-empty with positive sizes, got {data_shape!r}")
        if width < 1 or depth < 0:
            raise ValueError(f"need width >= 1 and depth >= 0, got width={width}, depth={depth}")
        self.data_shape = shape
        dim = math.prod(shape)
        self.embed = make_time_embedding(embedding, emb_dim, fourier_scale=fourier_scale)
        self.t_mlp = nn.Sequential(nn.Linear(emb_dim, width), _activation(activation), nn.Linear(width, width))
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_ResBlock(width, activation) for _ in range(depth))
        self.out_act = _activation(activation)
        self.out = nn.Linear(width, dim)
        if zero_out:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Raw output for ``x: (B, *D)``, ``t: (B,)``; returns ``(B, *D)``."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"MLP expects samples of shape {self.data_shape}, got {tuple(x.shape[1:])}")
        temb = self.t_mlp(self.embed(t))
        h = self.inp(x.reshape(x.shape[0], -1))
        for block in self.blocks:
            h = block(h, temb)
        return self.out(self.out_act(h)).reshape(x.shape)
