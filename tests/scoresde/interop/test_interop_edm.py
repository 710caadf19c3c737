"""EDM preconditioning and loss weighting (Karras et al. 2022, Table 1) against the closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
from scoresde.losses import dsm_per_sample, edm_time_sample, loss_weight
from scoresde.models import ScoreModel
from scoresde.models.parameterization import convert, edm_coefficients, edm_loss_weight

F64 = torch.float64
SDES = [sd.EDMSDE(), sd.VPSDE(), sd.VESDE(), sd.CosineVPSDE()]
IDS = ["edm", "vp", "ve", "cosine"]


def test_coefficients_closed_form() -> None:
    sig = torch.tensor([0.002, 0.1, 0.5, 1.0, 80.0], dtype=F64)
    sd_ = 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(sig, sd_)
    for i, s in enumerate(sig.tolist()):
        assert float(c_skip[i]) == pytest.approx(sd_**2 / (s**2 + sd_**2), rel=1e-15)
        assert float(c_out[i]) == pytest.approx(s * sd_ / math.sqrt(s**2 + sd_**2), rel=1e-15)
        assert float(c_in[i]) == pytest.approx(1 / math.sqrt(s**2 + sd_**2), rel=1e-15)
        assert float(c_noise[i]) == pytest.approx(math.log(s) / 4, rel=1e-15)
    # Karras et al. derive c_skip, c_out so that the training target F has unit variance:
    # Var[(x0 - c_skip (x0 + sigma n)) / c_out] = 1 for Var x0 = sd^2; and lambda = 1/c_out^2.
    var_target = ((1 - c_skip) ** 2 * sd_**2 + c_skip**2 * sig**2) / c_out**2
    torch.testing.assert_close(var_target, torch.ones_like(sig), rtol=1e-13, atol=0)
    torch.testing.assert_close(edm_loss_weight(sig, sd_), c_out ** (-2), rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="sigma_data"):
        edm_coefficients(sig, 0.0)


class _ExactF(torch.nn.Module):
    """Network returning the exact EDM target F for a mixture (input is c_in x, as ScoreModel feeds it)."""

    def __init__(self, target: sd.GaussianMixture, sde: sd.AffineSDE, sigma_data: float) -> None:
        super().__init__()
        self.target, self.sde, self.sd = target, sde, sigma_data

    def forward(self, x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.sde.marginal_coeffs(t)
        x = x_in * torch.sqrt(a**2 * self.sd**2 + s**2)[:, None]  # undo c_in
        score = self.target.marginal_score(x, t, self.sde)
        return convert(s[:, None] * score, x, a, s, src="score", dst="edm", sigma_data=self.sd)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_edm_output_gives_the_exact_score(sde: sd.AffineSDE) -> None:
    target = sd.targets.eight_gaussians()
    model = ScoreModel(_ExactF(target, sde, 0.5), output="edm", sigma_data=0.5)
    g = torch.Generator().manual_seed(0)
    t = torch.exp(torch.linspace(math.log(sde.eps), math.log(sde.T), 32, dtype=F64))
    a, s = sde.marginal_coeffs(t)
    x = a[:, None] * target.sample(32, generator=g, dtype=F64) + s[:, None] * torch.randn(32, 2, generator=g, dtype=F64)
    exact = target.marginal_score(x, t, sde)
    got = model.score_fn(sde)(x, t)
    # float64 round trip through c_skip, c_out: rounding only (scores reach 1/sigma^2).
    torch.testing.assert_close(got, exact, rtol=1e-8, atol=1e-8 * float(exact.abs().max()))
    # And D = c_skip x_edm + c_out F is the Tweedie x0.
    x0 = model(x, t, sde, "x0")
    torch.testing.assert_close(x0, (x + s[:, None] ** 2 * exact) / a[:, None], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_edm_weighting_is_lambda_times_denoiser_error(sde: sd.AffineSDE) -> None:
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(16, 3, generator=g, dtype=F64)
    t = torch.exp(torch.linspace(math.log(sde.eps), math.log(sde.T), 16, dtype=F64))
    z = torch.randn(16, 3, generator=g, dtype=F64)
    model = lambda x, t_: -0.3 * x  # noqa: E731 - any score
    per = dsm_per_sample(model, sde, x0, weighting="edm", sigma_data=0.5, t=t, z=z, reduce="sum")
    a, s = sde.marginal_coeffs(t)
    x_t = a[:, None] * x0 + s[:, None] * z
    d = (x_t + s[:, None] ** 2 * model(x_t, t)) / a[:, None]
    direct = edm_loss_weight(s / a, 0.5) * (d - x0).pow(2).sum(1)
    torch.testing.assert_close(per, direct, rtol=1e-10, atol=0)  # same quantity, other algebra
    torch.testing.assert_close(loss_weight(sde, t, "edm", sigma_data=0.5), 1 + (s / a) ** 2 / 0.25,
                               rtol=1e-12, atol=0)


def test_edm_time_sample_is_log_normal_in_sigma() -> None:
    sde = sd.EDMSDE()
    t = edm_time_sample(sde, 20000, generator=torch.Generator().manual_seed(0))
    ln = torch.log(t)
    # ln sigma ~ N(-1.2, 1.2^2); the clip at [0.002, 80] moves < 1e-3 of the mass. 5 standard errors.
    assert abs(float(ln.mean()) + 1.2) < 5 * 1.2 / math.sqrt(20000)
    assert abs(float(ln.std()) - 1.2) < 5 * 1.2 / math.sqrt(2 * 20000)
    assert float(t.min()) >= sde.eps and float(t.max()) <= sde.T
