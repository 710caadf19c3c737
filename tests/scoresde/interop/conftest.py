"""Shared fixtures of the interop tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


@pytest.fixture
def small_unet() -> Callable[[], torch.nn.Module]:
    """A factory of the same small random float64 diffusers ``UNet2DModel`` (1x8x8, no downloads)."""
    diffusers = pytest.importorskip("diffusers")

    def make() -> torch.nn.Module:
        torch.manual_seed(0)
        return diffusers.UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
        ).double().eval()

    return make
