"""Score networks and parameterizations: exact conversions, shapes, dtypes, configs."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from scoresde.models import (
    MLP,
    OUTPUTS,
    GaussianFourierEmbedding,
    ModelConfig,
    ScoreModel,
    SinusoidalEmbedding,
    UNet,
    convert,
)
from solvers import ReverseDynamics
from solvers.utils import append_dims

SDES = [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(), sd.CosineVPSDE()]


class _Oracle(torch.nn.Module):
    """A 'network' whose output is the exact prediction of type ``kind`` for a mixture."""

    def __init__(self, target: sd.GaussianMixture, sde: sd.AffineSDE, kind: str) -> None:
        super().__init__()
        self.target, self.sde, self.kind = target, sde, kind
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.target.marginal_score(x, t, self.sde)
        alpha, sigma = (c[:, None] for c in self.sde.marginal_coeffs(t))
        eps = -sigma * s
        x0 = (x + sigma**2 * s) / alpha
        return {"score": sigma * s, "eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}[self.kind]


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("kind", OUTPUTS)
def test_every_parameterization_gives_the_exact_score(sde: sd.AffineSDE, kind: str) -> None:
    target = sd.targets.eight_gaussians()
    model = ScoreModel(_Oracle(target, sde, kind), output=kind, input_scaling=False)
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(sde.eps, sde.T, 64, dtype=torch.float64)
    x = target.sample(64, generator=g, dtype=torch.float64) * 1.3 + torch.randn(64, 2, generator=g, dtype=torch.float64)
    exact = target.marginal_score(x, t, sde)
    got = model.score_fn(sde)(x, t)
    # float64 round trip through alpha/sigma: only rounding error (scores reach 1/sigma^2 ~ 1e6 at eps).
    torch.testing.assert_close(got, exact, rtol=1e-8, atol=1e-8 * float(exact.abs().max()))


@pytest.mark.parametrize("src", OUTPUTS)
@pytest.mark.parametrize("dst", OUTPUTS)
def test_conversions_round_trip_and_agree_with_reverse_dynamics(src: str, dst: str) -> None:
    sde = sd.VESDE()
    g = torch.Generator().manual_seed(1)
    t = torch.rand(32, generator=g, dtype=torch.float64) * 0.9 + 0.05
    a, s = sde.marginal_coeffs(t)
    x = torch.randn(32, 3, 4, generator=g, dtype=torch.float64) * 5
    o = torch.randn(32, 3, 4, generator=g, dtype=torch.float64)
    mid = convert(o, x, a, s, src=src, dst=dst)
    if dst == "score":  # as an input type, "score" is the scaled output sigma * s
        mid = append_dims(s, 3) * mid
    back = convert(mid, x, a, s, src=dst, dst=src)
    if src == "score":
        back = append_dims(s, 3) * back
    # Exact algebra in float64: rounding only.
    torch.testing.assert_close(back, o, rtol=1e-9, atol=1e-9)
    # Tweedie and eps-from-score as the solvers compute them.
    score = convert(o, x, a, s, src=src, dst="score")
    dyn = ReverseDynamics(sde, lambda x_, t_: score)
    torch.testing.assert_close(convert(o, x, a, s, src=src, dst="x0"), dyn.x0_from_score(x, t, score))
    torch.testing.assert_close(convert(o, x, a, s, src=src, dst="eps"), dyn.noise_from_score(x, t, score))


def test_score_output_is_scaled_by_one_over_sigma() -> None:
    class Const(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.ones_like(x)

    sde = sd.VPSDE()
    model = ScoreModel(Const(), output="score", input_scaling=False)
    t = torch.tensor([0.01, 0.5, 1.0])
    s = model.score(torch.zeros(3, 2), t, sde)
    torch.testing.assert_close(s, (1.0 / sde.sigma(t))[:, None].expand(3, 2))


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["VP", "VE"])
def test_input_scaling_gives_unit_variance_inputs(sde: sd.AffineSDE) -> None:
    seen: list[torch.Tensor] = []

    class Spy(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            return torch.zeros_like(x)

    model = ScoreModel(Spy(), sigma_data=3.0)
    g = torch.Generator().manual_seed(0)
    for tv in (sde.eps, 0.5, sde.T):
        t = torch.full((20_000,), tv)
        x0 = 3.0 * torch.randn(20_000, 2, generator=g)
        x_t, _ = sde.marginal_sample(x0, t, generator=g)
        model.eps(x_t, t, sde)
        # Std of 40,000 unit normals is within ~0.004 of 1; 0.03 leaves room.
        assert abs(float(seen[-1].std()) - 1.0) < 0.03


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 5), (2, 16, 12)])
def test_unet_any_image_shape_and_zero_init(shape: tuple[int, int, int]) -> None:
    net = UNet(shape, channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), groups=4)
    x = torch.randn(3, *shape)
    out = net(x, torch.rand(3))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # output conv starts at zero
    # After perturbing the output layer gradients flow to the first layer.
    torch.nn.init.normal_(net.conv_out.weight)
    net(x, torch.rand(3)).square().sum().backward()
    assert net.conv_in.weight.grad is not None and net.conv_in.weight.grad.abs().sum() > 0


def test_unet_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="groups"):
        UNet((1, 8, 8), channels=12, groups=8)
    with pytest.raises(ValueError, match="attention_levels"):
        UNet((1, 8, 8), channel_mults=(1, 2), attention_levels=(3,))
    with pytest.raises(ValueError, match="expects images"):
        UNet((1, 8, 8), channels=8, groups=4)(torch.randn(2, 1, 9, 8), torch.rand(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mlp_shapes_dtypes_and_embeddings(dtype: torch.dtype) -> None:
    for emb in ("sinusoidal", "fourier"):
        net = MLP((3, 2), width=16, depth=2, emb_dim=8, embedding=emb, zero_out=False).to(dtype)
        x = torch.randn(5, 3, 2, dtype=dtype)
        out = net(x, torch.rand(5, dtype=dtype))
        assert out.shape == x.shape and out.dtype == dtype
    assert SinusoidalEmbedding(10)(torch.rand(4)).shape == (4, 10)
    assert GaussianFourierEmbedding(6, seed=3)(torch.rand(4)).shape == (4, 6)
    with pytest.raises(ValueError, match="even"):
        SinusoidalEmbedding(7)
    with pytest.raises(ValueError, match="activation"):
        MLP((2,), activation="tanhh")


def test_model_config_build_is_seeded_and_validated() -> None:
    cfg = ModelConfig(arch="mlp", data_shape=(2,), output="v", net={"width": 16, "depth": 1})
    a, b = cfg.build(seed=3), cfg.build(seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown network"):
        ModelConfig(arch="transformer").build()
    with pytest.raises(TypeError, match="unknown option"):
        ModelConfig(net={"widht": 3}).build()
    with pytest.raises(ValueError, match="prediction type"):
        ModelConfig(output="noise")


def test_score_fn_autograd_only_when_x_requires_grad_and_dtype_check() -> None:
    sde = sd.VPSDE()
    model = ModelConfig(net={"width": 8, "depth": 1, "zero_out": False}).build(seed=0)
    score = model.score_fn(sde)
    x, t = torch.randn(4, 2), torch.rand(4)
    assert not score(x, t).requires_grad
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(xg, t).sum(), xg)
    assert grad.shape == x.shape
    with pytest.raises(TypeError, match="model.to"):
        score(x.double(), t)
    # float64 works once the model is moved.
    assert model.double().score_fn(sde)(x.double(), t).dtype == torch.float64


def test_score_model_needs_a_module_and_points_to_the_config_builder() -> None:
    from scoresde.models import ModelConfig, ScoreModel

    with pytest.raises(TypeError, match=r"ModelConfig\(\.\.\.\)\.build\(\)"):
        ScoreModel(ModelConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="torch.nn.Module, got function"):
        ScoreModel(lambda x, t: x)  # type: ignore[arg-type]
