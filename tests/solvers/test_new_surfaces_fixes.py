"""Fixes from an outside pass on the auto grid, the prior probe and the deterministic-run test.

* ``grid="auto"`` ran its pilot in float64 on the CPU whatever the run's dtype, so every
  float32 network (the default training dtype) failed inside it;
* two hand-written SDEs of one class without ``config()`` shared a cached pilot;
* an adaptive solver paid for a pilot it could not use (it reads only the grid's ends);
* the off-prior warning took DDIM (``eta = 0``), EDM Heun without churn and a solver of kind
  "any" at ``lam = 0`` for stochastic runs, and was skipped on a float32 grid whose ``T``
  rounds;
* the probe copied the whole prior draw to float64.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers import auto_grid as ag
from solvers.prior_match import PROBE_ROWS, PriorMatchProbe

F64 = torch.float64


class LinearVP:
    """A VP SDE written from scratch (no ``config()``): ``beta(t) = b0 + t (b1 - b0)``."""

    T, eps = 1.0, 1e-3

    def __init__(self, b1: float) -> None:
        self.b0, self.b1 = 0.1, b1

    def _log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.b1 - self.b0) - 0.5 * t * self.b0

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        la = self._log_alpha(t)
        return torch.exp(la), torch.sqrt(-torch.expm1(2 * la))

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        beta = (self.b0 + t * (self.b1 - self.b0)).to(x.dtype)
        return -0.5 * beta.view(-1, *[1] * (x.ndim - 1)) * x

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.b0 + t * (self.b1 - self.b0))

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                     dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)


def test_auto_grid_runs_its_pilot_in_the_runs_dtype() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 2)  # float32 parameters: refuses float64 inputs

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x + 0.01 * net(x)

    with torch.no_grad():
        out = solvers.sample(sd.VPSDE(), score, shape=(64, 2), solver="dpmpp_2m", steps=8, grid="auto", seed=0)
    assert out.samples.dtype == torch.float32 and bool(torch.isfinite(out.samples).all())
    assert out.stats["pilot_nfe"] > 0


def test_custom_sdes_of_one_class_get_their_own_pilots() -> None:
    ag.clear_cache()

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x

    shape = (16, 2)
    first = ag.auto_grid_report(LinearVP(20.0), score, 6, shape)
    second = ag.auto_grid_report(LinearVP(5.0), score, 6, shape)
    alone = ag.auto_grid_report(LinearVP(5.0), score, 6, shape, seed=1)  # another key: fresh
    assert not first[1].cached and not second[1].cached and not alone[1].cached
    assert not torch.equal(first[0], second[0])
    again = ag.auto_grid_report(LinearVP(20.0), score, 6, shape)
    assert again[1].cached and torch.equal(again[0], first[0])


def test_an_adaptive_solver_runs_no_pilot_for_the_auto_grid() -> None:
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    auto = solvers.sample(sde, score, shape=(64, 2), solver="ode_dopri5", grid="auto", seed=0, dtype=F64)
    plain = solvers.sample(sde, score, shape=(64, 2), solver="ode_dopri5", seed=0, dtype=F64)
    assert "pilot_nfe" not in auto.stats
    torch.testing.assert_close(auto.samples, plain.samples, rtol=0, atol=0)


def _off_centre() -> tuple[sd.VESDE, solvers.protocol.ScoreFn]:
    sde = sd.VESDE()
    return sde, sd.targets.GaussianMixture([[20.0, 20.0]], 5.0).score_fn(sde)


@pytest.mark.parametrize(("solver", "options", "warns"), [
    ("ddim", {}, True),
    ("ddim", {"eta": 1.0}, False),
    ("edm_heun", {}, True),
    ("edm_heun", {"s_churn": 10.0}, False),
    ("euler_maruyama", {"lam": 0.0}, True),
    ("euler_maruyama", {}, False),
])
def test_the_off_prior_warning_follows_whether_the_run_draws_noise(solver: str, options: dict[str, float],
                                                                   warns: bool) -> None:
    sde, score = _off_centre()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = solvers.sample(sde, score, shape=(256, 2), solver=solver, steps=30, seed=0, dtype=F64, **options)
    said = [w for w in caught if "not a sample of p_T" in str(w.message)]
    assert out.stats["prior_shift"] > 0.3  # 0.40 data stds (alpha(T) |mu| / sqrt(v_T))
    assert bool(said) == warns


def test_a_float32_grid_starting_at_a_rounded_T_keeps_the_probe() -> None:
    sde = sd.CosineVPSDE()
    assert float(torch.tensor(sde.T, dtype=torch.float32)) != float(sde.T)
    score = sd.targets.GaussianMixture(sd.targets.eight_gaussians().means + 10, 0.15).score_fn(sde)
    ts = torch.linspace(sde.T, sde.eps, 21, dtype=torch.float32)
    out = solvers.sample(sde, score, shape=(256, 2), solver="ode_heun", grid=ts, seed=0)
    assert out.stats.get("prior_shift") is not None and out.stats["prior_shift"] > 0.05


def test_the_probe_reads_its_rows_and_a_blockwise_second_moment() -> None:
    sde = sd.VPSDE()
    x = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)) * 1.1
    probe = PriorMatchProbe(sde, lambda z, t: -z, x)
    assert math.isclose(probe._p2, float(x.double().pow(2).mean()), rel_tol=1e-12)
    probe(x, torch.full((1000,), sde.T))
    assert probe._n == PROBE_ROWS
    _, sigma = sde.marginal_coeffs(torch.tensor([sde.T], dtype=F64))
    u = float(sigma[0]) * (-x[:PROBE_ROWS].double() + x[:PROBE_ROWS].double() / probe._p2)
    assert probe.shift is not None
    # The score -z has slope -1 = -1/v_T: r = 1 - sigma(T)^2, and the shift is mean(u) / sqrt(1 - r).
    assert math.isclose(probe.shift, float(u.mean(0).pow(2).mean().sqrt()) / float(sigma[0]), rel_tol=1e-9)


class ScaledVP(LinearVP):
    """`LinearVP` with its drift or its g^2 multiplied by a factor (a hand-written slip)."""

    def __init__(self, drift_factor: float = 1.0, g2_factor: float = 1.0) -> None:
        super().__init__(20.0)
        self.drift_factor, self.g2_factor = drift_factor, g2_factor

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.drift_factor * super().drift(x, t)

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return math.sqrt(self.g2_factor) * super().diffusion(t)


@pytest.mark.parametrize(("drift_factor", "g2_factor", "warns"), [
    (1.015, 1.0, True), (1.0, 1.015, True), (1.0, 0.985, True),
    (1.004, 1.0, False), (1.0, 1.004, False), (1.0, 1.0, False),
])
def test_the_consistency_check_warns_from_one_percent(drift_factor: float, g2_factor: float,
                                                     warns: bool) -> None:
    # A drift 1.9% off widened an 8-Gaussian ring by 8.5% under ode_heun (the flow's scale moves
    # by the integral of the drift's error, 5 x 1.9% here), yet read 0.9% against a 1% threshold.
    from solvers.sde_consistency import CONSISTENCY_RTOL, consistency_error

    err, _, _, _, _ = consistency_error(ScaledVP(drift_factor, g2_factor), (2,))
    assert (err > CONSISTENCY_RTOL) == warns, err
