"""A hand-written SDE (the protocol, no base class) around the solvers: comparison cache,
checkpoint configs, consistency of its members, NumPy ends, priors of its own, field plots,
and the messages for what it lacks (user pass on custom SDEs)."""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde import compare
from scoresde.schedules import isotropic_prior_std
from scoresde.train.config import SDEConfig
from solvers.sde_consistency import CONSISTENCY_RTOL, consistency_error

matplotlib.use("Agg")
F64 = torch.float64


class LinearVP:
    """dx = -beta x/2 dt + sqrt(beta) dW, beta(t) = lo + (hi - lo) t / T; no config()."""

    def __init__(self, hi: float = 20.0, lo: float = 0.1, T: float = 1.0, eps: float = 1e-3) -> None:
        self.hi, self.lo, self.T, self.eps = hi, lo, T, eps

    def beta(self, t):
        return self.lo + (self.hi - self.lo) * t / self.T

    def integral(self, t):
        return self.lo * t + 0.5 * (self.hi - self.lo) * t**2 / self.T

    def drift(self, x, t):
        return -0.5 * self.beta(t).reshape(-1, *[1] * (x.ndim - 1)) * x

    def diffusion(self, t):
        return self.beta(t).sqrt()

    def marginal_coeffs(self, t):
        a = torch.exp(-0.5 * self.integral(t))
        return a, (1 - a**2).sqrt()

    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def prior_log_prob(self, z):
        return -0.5 * z.flatten(1).pow(2).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)


class DoubledDrift(LinearVP):
    def drift(self, x, t):
        return 2 * super().drift(x, t)


class EDMWrongG:
    """sigma(t) = t with g = t (the right one is sqrt(2 t))."""

    T, eps = 80.0, 0.002

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, t):
        return t.clone()

    def marginal_coeffs(self, t):
        return torch.ones_like(t), t.clone()

    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return 80.0 * torch.randn(shape, generator=generator, dtype=dtype, device=device)


class StepBeta(LinearVP):
    """A piecewise-constant beta (a kink in ln alpha at t = 0.5), consistent."""

    def beta(self, t):
        return torch.where(t < 0.5, torch.ones_like(t), torch.full_like(t, 19.0))

    def integral(self, t):
        return torch.where(t < 0.5, t, 0.5 + 19.0 * (t - 0.5))


def test_comparison_cache_tells_two_custom_sdes_of_one_class_apart(tmp_path):
    target = sd.targets.two_gaussians()
    out = []
    for hi in (20.0, 3.0):
        problem = compare.Problem.from_target(target, LinearVP(hi=hi))
        # (the folder's config.json of the first SDE would refuse the second: the cells' keys are tested)
        (tmp_path / "config.json").unlink(missing_ok=True)
        res = compare.run_comparison(problem, ["ddim"], steps=(5,), seeds=(0,), n=200, out=tmp_path,
                                     progress=False, plots=False, floor_repeats=1)
        out.append((res.reused, res.records[0]["sliced_w2"]))
    assert out[1][0] == 0 and out[1][1] != out[0][1]
    # the same SDE again is reused
    problem = compare.Problem.from_target(target, LinearVP(hi=3.0))
    res = compare.run_comparison(problem, ["ddim"], steps=(5,), seeds=(0,), n=200, out=tmp_path,
                                 progress=False, plots=False, floor_repeats=1)
    assert res.reused == 1


def test_checkpoint_config_refuses_another_schedule_of_a_custom_class():
    stored = SDEConfig.from_sde(LinearVP(hi=20.0))
    stored.with_instance(LinearVP(hi=20.0))  # the same schedule
    with pytest.raises(ValueError, match="the SDE given is"):
        stored.with_instance(LinearVP(hi=3.0))


@pytest.mark.parametrize("sde", [DoubledDrift(), EDMWrongG()], ids=["drift", "diffusion"])
def test_members_that_disagree_with_the_marginals_warn(sde):
    with pytest.warns(RuntimeWarning, match="do not belong to its"):
        solvers.sample(sde, lambda x, t: -x, (4, 2), "ddim", steps=3, seed=0)


def test_consistent_sdes_do_not_warn():
    sdes = [sd.get_sde(name) for name in sd.SDES] + [
        LinearVP(), StepBeta(), sd.EDMSDE(), sd.BetaSDE(lambda t: 0.1 + 19.9 * t),
        sd.DiscreteVPSDE(torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=F64), 0)),
    ]
    for sde in sdes:
        err, t, _, _, what = consistency_error(sde, (3, 2))
        assert err < CONSISTENCY_RTOL / 3, (type(sde).__name__, err, t, what)


@pytest.mark.parametrize("solver", ["euler_maruyama", "dpmpp_2m", "edm_heun", "ode_heun"])
@pytest.mark.parametrize("grid", [None, "uniform_logsnr", "karras"])
def test_numpy_ends_run(solver, grid):
    score = sd.targets.two_gaussians().score_fn(sd.VPSDE())
    sde = LinearVP(T=np.float32(1.0), eps=np.float32(1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = solvers.sample(sde, score, (8, 2), solver, steps=6, seed=0, grid=grid)
        ref = solvers.sample(LinearVP(), score, (8, 2), solver, steps=6, seed=0, grid=grid)
    assert float(r.times[0]) == pytest.approx(1.0) and float(r.times[-1]) == pytest.approx(1e-3)
    torch.testing.assert_close(r.samples, ref.samples, rtol=1e-4, atol=1e-4)


class ExactPriorVP(LinearVP):
    """T = 0.2, where p_T of N(m, 0.5^2 I) is far from N(0, I): the prior is that p_T itself."""

    mean = torch.tensor([1.0, -0.5], dtype=F64)

    def __init__(self) -> None:
        super().__init__(T=0.2)

    def _p_T(self):
        a, s = self.marginal_coeffs(torch.tensor([self.T], dtype=F64))
        return a[0] * self.mean, (a[0] ** 2 * 0.25 + s[0] ** 2).sqrt()

    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        mu, s = self._p_T()
        return (mu + s * torch.randn(shape, generator=generator, dtype=F64)).to(dtype)

    def prior_log_prob(self, z):
        mu, s = self._p_T()
        return (-0.5 * ((z.double() - mu) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(1)


def test_likelihood_takes_a_prior_of_the_users_own_without_warning():
    sde = ExactPriorVP()
    target = sd.GaussianMixture([[1.0, -0.5]], 0.5, [1.0])
    x = target.sample(32, generator=torch.Generator().manual_seed(0)).to(F64)
    assert isotropic_prior_std(sde, (2,)) is None
    assert isotropic_prior_std(sd.VPSDE(), (2,)) == pytest.approx(1.0)
    assert isotropic_prior_std(sd.VESDE(), (3, 2)) == pytest.approx(sd.VESDE().sigma_max)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = sd.likelihood.log_likelihood(sde, target.score_fn(sde), x)
    assert float((lp - target.log_prob(x)).abs().max()) < 1e-3
    # the built-in check still speaks for an isotropic prior far from p_T
    with pytest.warns(UserWarning, match="far from the prior"):
        sd.likelihood.log_likelihood(LinearVP(T=0.2), target.score_fn(LinearVP(T=0.2)), x)


def test_field_panels_default_to_the_same_noise_levels_on_every_sde():
    # DDPM's integer time (T = 1000) and EDM's sigma = t (T = 80): four different noise levels,
    # the ones the default VP SDE shows at t = 1, 0.3, 0.1, 0.01.
    ddpm = LinearVP(hi=0.02, lo=1e-4, T=1000.0, eps=1.0)
    target = sd.targets.eight_gaussians()
    fig = sd.plotting.plot_fields(ddpm, target.score_fn(ddpm), target=target, density=5)
    titles = [a.get_title() for a in fig.axes[:4]]
    assert len(set(titles)) == 4 and "1e+03" in titles[0]
    assert sd.plotting.fields.default_field_times(sd.VPSDE()) == (1.0, 0.3, 0.1, 0.01)
    assert sd.plotting.fields.default_field_times(ddpm) == (1000.0, 300.0, 100.0, 10.0)
    assert sd.plotting.fields.default_field_times(sd.EDMSDE()) == (80.0, 1.2, 0.34, 0.045)
    assert sd.plotting.fields.default_field_times(DriftOnly()) == (1.0, 0.3, 0.1, 0.01)


class DriftOnly:
    T, eps = 1.0, 1e-3
    _vp = LinearVP()

    def drift(self, x, t):
        return self._vp.drift(x, t)

    def diffusion(self, t):
        return self._vp.diffusion(t)

    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)


def test_messages_for_what_a_custom_sde_lacks():
    with pytest.raises(TypeError, match="predictor='euler_maruyama', corrector='none'"):
        solvers.sample(DriftOnly(), lambda x, t: -x, (4, 2), "pc", corrector="none", steps=3, seed=0)
    r = solvers.sample(DriftOnly(), lambda x, t: -x, (4, 2), "pc", predictor="euler_maruyama",
                       corrector="none", steps=3, seed=0, denoise="none")
    assert r.nfe == 3
    with pytest.raises(TypeError, match="grid='uniform' or 'quadratic'"):
        solvers.sample(DriftOnly(), lambda x, t: -x, (4, 2), "euler_maruyama", grid="auto", steps=3, seed=0)

    class NoPriorDensity(LinearVP):
        prior_log_prob = None

    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(TypeError, match="no prior_log_prob"):
        sd.likelihood.likelihood(NoPriorDensity(), lambda x, t: -x, x)

    class OldPriorSample(LinearVP):
        def prior_sample(self, shape, generator=None):
            return torch.randn(shape, generator=generator)

    with pytest.raises(TypeError, match=r"prior_sample must take prior_sample\(shape, \*, generator"):
        solvers.sample(OldPriorSample(), lambda x, t: -x, (4, 2), "ddim", steps=3, seed=0)


class TrigVP:
    """alpha = cos(pi t/2), sigma = sin(pi t/2), written two ways (the log-SNR crosses 0 at a probe time)."""

    T, eps = 0.999, 1e-3

    def __init__(self, shifted: bool) -> None:
        self.shifted = shifted

    def config(self):
        return {"T": self.T}

    def marginal_coeffs(self, t):
        s = torch.cos(math.pi * (1 - t) / 2) if self.shifted else torch.sin(math.pi * t / 2)
        return torch.cos(math.pi * t / 2), s

    def drift(self, x, t):
        return -(math.pi / 2) * torch.tan(math.pi * t / 2).reshape(-1, *[1] * (x.ndim - 1)) * x

    def diffusion(self, t):
        return torch.sqrt(math.pi * torch.tan(math.pi * t / 2))

    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)


class MetaVP(LinearVP):
    """Its coefficients live on another device (meta stands in for a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.tensor(1.0, device="meta")

    def marginal_coeffs(self, t):
        a, s = super().marginal_coeffs(t)
        return a * self.scale, s * self.scale


def test_custom_configs_survive_round_off_and_other_devices():
    stored = SDEConfig.from_sde(TrigVP(shifted=False))
    assert abs(stored.params["config"]["log_snr_probe"][4]) < 1e-12  # round-off around 0
    stored.with_instance(TrigVP(shifted=True))  # the same SDE, computed another way
    on_device = SDEConfig.from_sde(MetaVP())  # recorded without a probe, as before
    assert on_device.params["config"] is None


class GeometricVE:
    """sigma(t) = s0 (s1/s0)^(t/T), no config(): a time-rescaled copy has the same probe values."""

    def __init__(self, T: float = 1.0, eps: float = 1e-5) -> None:
        self.s0, self.s1, self.T, self.eps = 0.01, 50.0, T, eps

    def _sigma(self, t):
        return self.s0 * (self.s1 / self.s0) ** (t / self.T)

    def marginal_coeffs(self, t):
        return torch.ones_like(t), self._sigma(t)

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, t):
        return self._sigma(t) * math.sqrt(2 * math.log(self.s1 / self.s0) / self.T)

    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return self.s1 * torch.randn(shape, generator=generator, dtype=dtype, device=device)


def test_checkpoint_config_refuses_a_time_rescaled_custom_sde():
    # The schedule probe is read at fractions of [eps, T]: it cannot tell these apart, the ends can.
    stored = SDEConfig.from_sde(GeometricVE())
    stored.with_instance(GeometricVE())
    with pytest.raises(ValueError, match="the SDE given is"):
        stored.with_instance(GeometricVE(T=1000.0, eps=1e-2))


def test_a_beta_schedule_without_noise_by_eps_is_refused_at_construction() -> None:
    # beta = 0 on a warm-up up to 0.01: sigma(eps) = 0 failed only inside a solver's check
    def warm(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t < 0.01, torch.zeros_like(t), torch.full_like(t, 12.0))

    with pytest.raises(ValueError, match=r"int_0\^eps beta is 0 .*sigma\(eps\) = 0"):
        sd.BetaSDE(warm)
    assert float(sd.BetaSDE(warm, eps=0.02).sigma(torch.tensor([0.02], dtype=torch.float64))[0]) > 0
