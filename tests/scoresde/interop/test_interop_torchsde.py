"""torchsde.sdeint driving our reverse dynamics through the public ReverseTorchSDE object."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.interop import ReverseTorchSDE, TorchsdeBrownianNoise

torchsde = pytest.importorskip("torchsde")
F64 = torch.float64


def _torchsde_times(s0: float, s1: float, dt: float) -> list[float]:
    """The step times torchsde's fixed-step loop visits (curr + dt, capped at the end)."""
    out, cur = [s0], torch.tensor(s0, dtype=F64)
    end = torch.tensor(s1, dtype=F64)
    while cur < end:
        cur = torch.minimum(cur + dt, end)
        out.append(float(cur))
    return out


@pytest.mark.parametrize("noise_type", ["diagonal", "additive"])
@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["vp", "ve"])
def test_sdeint_euler_equals_our_euler_maruyama(sde: sd.AffineSDE, noise_type: str) -> None:
    target = sd.targets.eight_gaussians()
    score = target.score_fn(sde)
    b, n = 64, 40
    rev = ReverseTorchSDE(sde, score, data_shape=(2,), noise_type=noise_type)
    x_T = sde.prior_sample((b, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    bm = torchsde.BrownianInterval(t0=-sde.T, t1=-sde.eps, size=(b, 2), dtype=F64, entropy=1)
    dt = (sde.T - sde.eps) / n
    ys = torchsde.sdeint(rev, rev.state(x_T), rev.times([sde.T, sde.eps]), method="euler", dt=dt, bm=bm)
    theirs = rev.unstate(ys[-1])
    # Our Euler-Maruyama on the same time points and the same Brownian increments (final noise on,
    # as torchsde adds noise on every step).
    grid = -torch.tensor(_torchsde_times(-sde.T, -sde.eps, dt), dtype=F64)
    ours = solvers.EulerMaruyama(final_noise=True).solve(
        solvers.ReverseSDE(sde, score), x_T, grid, noise=TorchsdeBrownianNoise(bm))
    assert rev.dynamics.nfe == len(grid) - 1 + 1  # one drift per step + torchsde's shape check
    # Same arithmetic: measured bit-identical (max diff 0.0); the tolerance allows float64 round-off.
    torch.testing.assert_close(ours.samples, theirs, rtol=1e-12, atol=1e-12)


def test_other_torchsde_methods_accept_the_object() -> None:
    sde = sd.VPSDE()
    target = sd.targets.two_gaussians()
    rev = ReverseTorchSDE(sde, target.score_fn(sde), data_shape=(2,), sde_type="stratonovich")
    x_T = sde.prior_sample((256, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    bm = torchsde.BrownianInterval(t0=-sde.T, t1=-sde.eps, size=(256, 2), dtype=F64, entropy=0)
    ys = torchsde.sdeint(rev, rev.state(x_T), rev.times(solvers.grids.uniform(sde, 200)), method="midpoint",
                         dt=(sde.T - sde.eps) / 200, bm=bm)
    x = rev.unstate(ys)
    assert x.shape == (201, 256, 2)
    # The samples land on the data: two Gaussians at -+ mean; exact log-density is well above the prior's.
    lp = target.log_prob(x[-1]).mean()
    lp_ref = target.log_prob(target.sample(4000, generator=torch.Generator().manual_seed(1), dtype=F64)).mean()
    assert abs(float(lp - lp_ref)) < 0.3, (float(lp), float(lp_ref))  # MC error ~0.1 at n = 256


def test_bad_arguments() -> None:
    sde = sd.VPSDE()
    score = sd.targets.two_gaussians().score_fn(sde)
    with pytest.raises(ValueError, match="noise_type"):
        ReverseTorchSDE(sde, score, data_shape=(2,), noise_type="scalar")
    rev = ReverseTorchSDE(sde, score, data_shape=(2,))
    with pytest.raises(ValueError, match="decreasing"):
        rev.times([0.1, 1.0])
    with pytest.raises(ValueError, match="shape"):
        rev.state(torch.zeros(3, 4))
    # Images flatten and come back.
    rev_img = ReverseTorchSDE(sde, lambda x, t: -x, data_shape=(1, 4, 4))
    x = torch.randn(2, 1, 4, 4, dtype=F64)
    assert rev_img.unstate(rev_img.state(x)).shape == x.shape
    assert rev_img.g(torch.tensor(-0.5, dtype=F64), rev_img.state(x)).shape == (2, 16)


def test_fuzzed_bad_arguments() -> None:
    sde = sd.VPSDE()
    score = sd.targets.two_gaussians().score_fn(sde)
    with pytest.raises(TypeError, match="data_shape"):
        ReverseTorchSDE(sde, score, data_shape=(2.5,))  # was silently truncated to (2,)
    with pytest.raises(ValueError, match="data_shape"):
        ReverseTorchSDE(sde, score, data_shape=(0,))  # was accepted (d = 0)
    with pytest.raises(ValueError, match="data_shape"):
        ReverseTorchSDE(sde, score, data_shape=())
    rev = ReverseTorchSDE(sde, score, data_shape=(2,))
    with pytest.raises(TypeError, match="torch.Tensor"):
        rev.state([[0.0, 0.0]])  # was AttributeError
    with pytest.raises(ValueError, match=r"\(\.\.\., B, 2\)"):
        rev.unstate(torch.zeros(4, 3))  # was RuntimeError from reshape
    with pytest.raises(ValueError, match=r"\(\.\.\., B, 2\)"):
        rev.f(torch.tensor(-0.5), torch.zeros(4, 3))  # was RuntimeError from reshape
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        rev.g(torch.tensor(-0.5), torch.zeros(4, 3))  # was a (4, 2) diffusion for a (4, 3) state
    with pytest.raises(ValueError, match="decreasing"):
        rev.times([])  # was an empty grid
    assert rev.f(-0.5, torch.zeros(4, 2)).shape == (4, 2)  # a float time: was AttributeError
    with pytest.raises(TypeError, match="bm must be"):
        TorchsdeBrownianNoise(None)  # failed only at the first increment
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        TorchsdeBrownianNoise(lambda a, b: torch.zeros(8), generator=3)
    with pytest.raises(ValueError, match="size="):
        TorchsdeBrownianNoise(lambda a, b: torch.zeros(7)).increment(0.5, 0.4, torch.zeros(4, 2))
