"""Input checks of the losses, the metrics and the network constructors (one test per fix)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scoresde as sd
from scoresde import losses as L
from scoresde import metrics
from scoresde.models.conditional import LabelConditional
from scoresde.models.mlp import MLP
from scoresde.models.unet import UNet


def _model() -> torch.nn.Module:
    return sd.models.ModelConfig().build(seed=0)


def test_dsm_loss_refuses_a_sampler_that_does_not_match_the_call() -> None:
    sde, m, x = sd.VPSDE(), _model(), torch.randn(4, 2)
    with pytest.raises(ValueError, match="weighting"):
        L.dsm_loss(m, sde, x, importance=True, sampler=L.ImportanceTimeSampler(sde, "likelihood"),
                   weighting="sigma2")
    with pytest.raises(ValueError, match="sde"):
        L.dsm_loss(m, sde, x, importance=True, weighting="likelihood",
                   sampler=L.ImportanceTimeSampler(sd.VESDE(), "likelihood"))
    with pytest.raises(ValueError, match="t_min"):
        L.dsm_loss(m, sde, x, importance=True, weighting="likelihood", t_min=1e-3,
                   sampler=L.ImportanceTimeSampler(sde, "likelihood", t_min=0.5))
    with pytest.raises(ValueError, match="sigma_data"):
        L.dsm_loss(m, sde, x, importance=True, weighting="edm", sigma_data=0.5,
                   sampler=L.ImportanceTimeSampler(sde, "edm", sigma_data=1.0))
    # A matching sampler (an equal SDE built separately included) gives the same loss as before.
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = L.dsm_loss(m, sde, x, importance=True, weighting="likelihood", generator=g1,
                   sampler=L.ImportanceTimeSampler(sd.VPSDE(), "likelihood"))
    b = L.dsm_loss(m, sde, x, importance=True, weighting="likelihood", generator=g2)
    assert torch.equal(a, b)


def test_loss_config_build_checks_t_min_against_T() -> None:
    with pytest.raises(ValueError, match="t_min"):
        L.LossConfig(t_min=2.0).build(sd.VPSDE())
    L.LossConfig(t_min=0.01).build(sd.VPSDE())


def test_dsm_loss_dtype_mismatch_is_explained_and_t_z_are_cast() -> None:
    sde, m, x = sd.VPSDE(), _model(), torch.randn(4, 2)
    with pytest.raises(TypeError, match=r"x0 is torch.float64.*model.double\(\)"):
        L.dsm_loss(m, sde, x.double())
    t, z = torch.rand(4) * 0.9 + 0.05, torch.randn(4, 2)
    ref = L.dsm_loss(m, sde, x, t=t, z=z)
    assert torch.equal(L.dsm_loss(m, sde, x, t=t.double(), z=z), ref)
    assert torch.equal(L.dsm_loss(m, sde, x, t=t, z=z.double()), ref)
    assert ref.dtype == torch.float32


def test_networks_accept_integral_sizes_and_refuse_fractional_ones() -> None:
    net = sd.models.ModelConfig(net={"width": 16.0}).build(seed=0)
    assert net.net.inp.out_features == 16
    with pytest.raises(TypeError, match="width"):
        sd.models.ModelConfig(net={"width": 16.5}).build()
    with pytest.raises(TypeError, match="data_shape"):
        MLP((2.7,))


def test_mmd_bandwidths_are_numbers_not_strings() -> None:
    x, y = torch.randn(20, 2, generator=torch.Generator().manual_seed(0)), torch.randn(20, 2)
    with pytest.raises(TypeError, match="bandwidths"):
        metrics.mmd(x, y, bandwidths="12")
    with pytest.raises(TypeError, match="bandwidths"):
        metrics.mmd(x, y, bandwidths="0.5")
    assert metrics.mmd(x, y, bandwidths=np.array(1.0)) == metrics.mmd(x, y, bandwidths=1.0)
    assert metrics.mmd(x, y, bandwidths=[0.5, 2.0]) == metrics.mmd(x, y, bandwidths=(0.5, 2.0))


def test_noise_floor_checks_both_sets_and_accepts_numpy() -> None:
    calls = []

    def bad_b(n: int, g: torch.Generator) -> torch.Tensor:
        calls.append(n)
        return torch.randn(n, 2, generator=g) if len(calls) % 2 else torch.randn(n + 1, 2, generator=g)

    with pytest.raises(ValueError, match="set b"):
        metrics.noise_floor(metrics.sliced_wasserstein, bad_b, 10)
    calls.clear()

    def wider_b(n: int, g: torch.Generator) -> torch.Tensor:
        calls.append(n)
        return torch.randn(n, 2 if len(calls) % 2 else 3, generator=g)

    with pytest.raises(ValueError, match="different shapes"):
        metrics.noise_floor(metrics.sliced_wasserstein, wider_b, 10)

    def np_sample(n: int, g: torch.Generator) -> np.ndarray:
        return torch.randn(n, 2, generator=g, dtype=torch.float64).numpy()

    def torch_sample(n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(n, 2, generator=g, dtype=torch.float64)

    assert metrics.noise_floor(metrics.mmd, np_sample, 50, repeats=2) == metrics.noise_floor(
        metrics.mmd, torch_sample, 50, repeats=2)


def test_network_constructor_and_label_checks() -> None:
    torch.manual_seed(0)
    assert MLP((2,), emb_dim=np.int64(8)).t_mlp[0].in_features == 8
    with pytest.raises(ValueError, match="groups"):
        UNet((1, 8, 8), groups=0)
    with pytest.raises(TypeError, match="n_classes"):
        LabelConditional(MLP((2,)), 2.5)
    net = LabelConditional(MLP((2,)), 2)
    x, t = torch.randn(3, 2), torch.rand(3)
    with pytest.raises(TypeError, match="labels"):
        net(x, t, torch.tensor([0.0, 1.0, 2.0]))
    assert net(x, t, torch.tensor([0, 1, 2]), sd.VPSDE()).shape == (3, 2)
