"""A small U-Net score network for images ``x: (B, C, H, W)`` of any size.

The DDPM / NCSN++ layout (Ho et al. 2020; Song et al. 2021, App. H) at small scale:
a 3x3 input convolution, then per resolution level ``num_res_blocks`` residual blocks
(GroupNorm -> SiLU -> conv, the time embedding added per channel after the first conv),
optional self-attention at chosen levels, a stride-2 downsampling convolution between
levels, a middle block (res, attention, res), and the mirrored upsampling path that
concatenates the stored skip activations. Inputs whose ``H, W`` are not multiples of
``2^(levels-1)`` are zero-padded and the output is cropped back, so any ``(C, H, W)`` works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from solvers.utils import append_dims

from .embeddings import make_time_embedding
from .mlp import as_size, data_sizes

__all__ = ["UNet"]


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels)


class _ResBlock(nn.Module):
    """Residual block ``x + conv(act(norm(conv(act(norm(x))) + temb))))``; ``x: (B, C, H, W)``."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out)
        self.norm2 = _norm(c_out, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        # Time conditioning: a per-channel shift, broadcast over the spatial dims.
        h = h + append_dims(self.temb(temb), h.ndim)
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over the ``H * W`` positions, with a residual connection."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """U-Net ``(x: (B, C, H, W), t: (B,)) -> (B, C, H, W)`` (raw output).

    Args:
        data_shape: ``(C, H, W)`` of one image.
        channels: channels at the first level.
        channel_mults: multiplier of ``channels`` per resolution level (its length = levels).
        num_res_blocks: residual blocks per level on the way down.
        attention_levels: indices of the levels that get self-attention after each block.
        groups: GroupNorm groups (must divide every channel count).
        dropout: dropout rate inside residual blocks.
        emb_dim: size of the time features; ``embedding``/``fourier_scale`` as in `MLP`.

    Integer options accept NumPy integers and integral floats (``32.0`` from JSON).

    Raises:
        ValueError: ``data_shape`` not ``(C, H, W)`` with positive sizes, a size / count < 1
            (``groups=0`` included), ``groups`` not dividing every level's channels, a bad
            ``attention_levels`` / ``dropout``.
        TypeError: (`NotAnIntegerError`) a size or count that is not an integer.
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (1, 8, 8),
        *,
        channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (1,),
        groups: int = 8,
        dropout: float = 0.0,
        emb_dim: int = 64,
        embedding: str = "sinusoidal",
        fourier_scale: float = 16.0,
    ) -> None:
        super().__init__()
        shape = data_sizes(data_shape)
        if len(shape) != 3:
            raise ValueError(f"UNet needs data_shape (C, H, W) with positive sizes, got {data_shape!r}")
        if isinstance(channel_mults, (str, bytes)) or not hasattr(channel_mults, "__iter__"):
            raise TypeError(f"channel_mults must be a sequence of positive integers, got {channel_mults!r}")
        mults = tuple(as_size(m, "every entry of channel_mults") for m in channel_mults)
        channels = as_size(channels, "channels")
        num_res_blocks = as_size(num_res_blocks, "num_res_blocks")
        groups = as_size(groups, "groups")
        emb_dim = as_size(emb_dim, "emb_dim")
        if not mults:
            raise ValueError("need channels >= 1, num_res_blocks >= 1 and positive channel_mults")
        widths = [channels * m for m in mults]
        bad = [c for c in widths if c % groups]
        if bad:
            raise ValueError(
                f"groups={groups} (GroupNorm groups) must divide every level's channels {widths} "
                f"(channels={channels} x channel_mults={list(mults)}): use channels that are a multiple of "
                f"{groups} (e.g. {max(groups, channels // groups * groups)}), or a groups value that divides them")
        if isinstance(attention_levels, (str, bytes)) or not hasattr(attention_levels, "__iter__"):
            raise TypeError(f"attention_levels must be a sequence of level indices, got {attention_levels!r}")
        attn = set(as_size(a, "every entry of attention_levels", minimum=0) for a in attention_levels)
        if any(not 0 <= a < len(mults) for a in attn):
            raise ValueError(f"attention_levels {sorted(attn)} must index levels 0..{len(mults) - 1}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.data_shape = shape
        self.levels = len(mults)
        c_img = shape[0]
        temb_dim = 4 * channels

        self.embed = make_time_embedding(embedding, emb_dim, fourier_scale=fourier_scale)
        self.t_mlp = nn.Sequential(nn.Linear(emb_dim, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(c_img, channels, 3, padding=1)

        # Down path: remember the width of every stored skip activation.
        self.down = nn.ModuleList()
        skips = [channels]
        c = channels
        for i, w in enumerate(widths):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([_ResBlock(c, w, temb_dim, groups, dropout)])
                if i in attn:
                    block.append(_Attention(w, groups))
                self.down.append(block)
                c = w
                skips.append(c)
            if i < self.levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)

        self.mid1 = _ResBlock(c, c, temb_dim, groups, dropout)
        self.mid_attn = _Attention(c, groups)
        self.mid2 = _ResBlock(c, c, temb_dim, groups, dropout)

        # Up path: num_res_blocks + 1 blocks per level, each consuming one skip.
        self.up = nn.ModuleList()
        for i in reversed(range(self.levels)):
            w = widths[i]
            for _ in range(num_res_blocks + 1):
                block = nn.ModuleList([_ResBlock(c + skips.pop(), w, temb_dim, groups, dropout)])
                if i in attn:
                    block.append(_Attention(w, groups))
                self.up.append(block)
                c = w
            if i > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(c, c, 3, padding=1)]))

        self.norm_out = _norm(c, groups)
        self.conv_out = nn.Conv2d(c, c_img, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Raw output for ``x: (B, C, H, W)``, ``t: (B,)``; returns ``(B, C, H, W)``."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"UNet expects images of shape {self.data_shape}, got {tuple(x.shape[1:])}")
        h_in, w_in = x.shape[-2:]
        m = 2 ** (self.levels - 1)
        pad_h, pad_w = (-h_in) % m, (-w_in) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        temb = self.t_mlp(self.embed(t))

        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = self._run_block(block, h, temb)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for block in self.up:
            if isinstance(block[0], _ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run_block(block, h, temb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[..., :h_in, :w_in]

    @staticmethod
    def _run_block(block: nn.ModuleList, h: Tensor, temb: Tensor) -> Tensor:
        for layer in block:
            h = layer(h, temb) if isinstance(layer, _ResBlock) else layer(h)
        return h
