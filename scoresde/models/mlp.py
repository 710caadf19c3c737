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
from typing import Any

from torch import Tensor, nn

from solvers.inputs import NotAnIntegerError, as_integer, as_real

from .embeddings import make_time_embedding

__all__ = ["MLP", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


def as_size(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as a Python int >= ``minimum``: an integer (Python, NumPy, one-element tensor) or
    an integral float such as ``16.0`` (as read from JSON).

    Raises:
        NotAnIntegerError: a non-integral number (``16.5``), a bool, a string.
        ValueError: below ``minimum``.
    """
    try:
        return as_integer(value, name, minimum=minimum)
    except NotAnIntegerError:
        if isinstance(value, (bool, str, bytes)) or type(value).__name__ == "bool_":
            raise
        try:
            f = as_real(value, name)
        except (TypeError, ValueError):
            raise NotAnIntegerError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
        if not (math.isfinite(f) and f == int(f)):
            raise NotAnIntegerError(f"{name} must be an integer, got {value!r}") from None
        return as_integer(int(f), name, minimum=minimum)


def data_sizes(data_shape: Any) -> tuple[int, ...]:
    """``data_shape`` as a non-empty tuple of positive ints (``2.7`` refused, not truncated)."""
    if isinstance(data_shape, (str, bytes)) or not hasattr(data_shape, "__iter__"):
        raise TypeError(f"data_shape must be a sequence of positive integers, got {type(data_shape).__name__} "
                        f"{data_shape!r}")
    return tuple(as_size(s, "every size in data_shape") for s in data_shape)


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
        shape = data_sizes(data_shape)
        if not shape:
            raise ValueError(f"data_shape must be non-empty with positive sizes, got {data_shape!r}")
        width = as_size(width, "width")
        depth = as_size(depth, "depth", minimum=0)
        emb_dim = as_size(emb_dim, "emb_dim")
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
        h = self.inp(x.reshape(x.shape[0], self.inp.in_features))  # explicit width: B = 0 works
        for block in self.blocks:
            h = block(h, temb)
        return self.out(self.out_act(h)).reshape(x.shape)
