"""Per-SDE default grids (`solvers.defaults`): which family each solver gets on which SDE."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.quality import within_mode_spread
from solvers import grids
from solvers.defaults import (
    classic_ode_grid,
    has_geometric_noise,
    is_variance_exploding,
    is_variance_preserving,
    sde_solver_grid,
)


@pytest.mark.parametrize(
    "name,vp,ve",
    [("vp", True, False), ("cosine", True, False), ("subvp", False, False), ("ve", False, True)],
)
def test_sde_families_are_recognised_from_their_marginals(name: str, vp: bool, ve: bool) -> None:
    sde = sd.get_sde(name)
    assert is_variance_preserving(sde) is vp
    assert is_variance_exploding(sde) is ve


def test_objects_without_marginals_get_the_uniform_grid() -> None:
    assert classic_ode_grid(object()) == "uniform" and sde_solver_grid(object()) == "uniform"
    assert not is_variance_preserving(object())


@pytest.mark.parametrize(("solver", "subvp"), [("ode_heun", "logsnr"), ("ode_rk4", "logsnr")])
def test_classic_integrators_use_log_snr_except_under_ve(solver: str, subvp: str) -> None:
    spec = solvers.get_solver(solver)
    assert spec.grid_for(sd.get_sde("vp")) == "logsnr"
    assert spec.grid_for(sd.get_sde("cosine")) == "logsnr"
    assert spec.grid_for(sd.get_sde("subvp")) == subvp
    assert spec.grid_for(sd.get_sde("ve")) == "uniform_or_logsnr"
    assert spec.grid_for(object()) == "uniform"  # no marginals: no log-SNR grid


def test_heun_under_sub_vp_gets_closer_to_p0_as_steps_grow() -> None:
    # On sub-VP's uniform grid the within-mode spread of 8 modes of std 0.015 went 1.022, 1.148,
    # 1.121, 1.052 at 20, 30, 40, 60 steps (seed 0): worse with more steps. Log-SNR grid: 1.153,
    # 1.063, 1.031, 1.008.
    target, sde = sd.targets.sharp_8(std=0.015), sd.SubVPSDE()
    errors = []
    for steps in (20, 30, 40, 60):
        r = solvers.sample(sde, target.score_fn(sde), (2000, 2), solver="ode_heun", steps=steps, seed=0)
        errors.append(abs(within_mode_spread(r.samples, target) - 1.0))
    assert all(b <= a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.02


def test_first_order_samplers_use_log_snr_and_a_blend_under_ve() -> None:
    for solver in ("euler_maruyama", "ode_euler", "ancestral", "pc", "torchsde_srk"):
        spec = solvers.get_solver(solver)
        assert spec.grid_for(sd.get_sde("vp")) == "logsnr"
        assert spec.grid_for(sd.get_sde("subvp")) == "logsnr"
        assert spec.grid_for(sd.get_sde("ve")) == "uniform_logsnr"


def test_ve_rules_need_noise_geometric_in_t() -> None:
    """The VE grids rest on a uniform grid in t being geometric in sigma: true of Song et al.'s
    VE SDE (exact marginal or not), false of EDM's sigma = t, where every first-order sampler
    and the classic integrators take the log-SNR grid."""
    assert has_geometric_noise(sd.VESDE()) and has_geometric_noise(sd.VESDE(exact_sigma=False))
    edm = sd.EDMSDE()
    assert is_variance_exploding(edm) and not has_geometric_noise(edm)
    assert not has_geometric_noise(sd.VPSDE()) and not has_geometric_noise(object())
    for solver in ("euler_maruyama", "ode_euler", "ancestral", "pc", "annealed_langevin", "torchsde_srk",
                   "ode_heun", "ode_rk4"):
        assert solvers.get_solver(solver).grid_for(edm) == "logsnr", solver


@pytest.mark.parametrize("solver,steps,old", [("ode_heun", 20, "uniform"), ("pc", 100, "uniform_logsnr")])
def test_first_order_and_classic_solvers_resolve_edm_noise_levels(solver: str, steps: int, old: str) -> None:
    """Under EDM's sigma = t a grid uniform in t is uniform in sigma and leaves a few steps for
    the last decades of noise: on sharp_8 the modes came out 47x (ode_heun, 20 steps) and 1.25x
    (pc, 100 steps) too wide; on the default grid within 2.5%."""
    sde, target = sd.EDMSDE(), sd.targets.sharp_8()

    def spread(**kw: object) -> float:
        r = solvers.sample(sde, target.score_fn(sde), (4000, 2), solver=solver, steps=steps, seed=0,
                           dtype=torch.float64, **kw)
        return within_mode_spread(r.samples, target)

    assert abs(spread() - 1) < 0.03
    assert spread(grid=old) > 1.2


# --- logsnr_long_first: an option (docs/defaults.md, "Tried: a long first step") -----------------
@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "cosine"])
def test_long_first_step_spans_three_log_snr_intervals_above_the_floor_and_shrinks_with_n(name: str) -> None:
    sde = sd.get_sde(name)
    firsts = []
    for n in (1, 2, 4, 7, 9, 19, 199):
        ts = grids.logsnr_long_first(sde, n)
        assert ts.shape == (n + 1,) and ts[0] == sde.T and ts[-1] == sde.eps and bool((ts.diff() < 0).all())
        steps = grids.log_snr(sde, ts).diff()
        if n > 1:
            rest = steps[1:]
            torch.testing.assert_close(rest, rest.mean().expand_as(rest), rtol=1e-9, atol=1e-9)  # uniform after it
            first, h = float(steps[0]), float(rest[0])
            s_1 = float(grids.edm_sigma(sde, ts[1:2])[0])
            # Three intervals long, unless that would end below S = 8; never shorter than the rest.
            assert first >= h * (1 - 1e-9)
            assert first == pytest.approx(3 * h, rel=1e-9) or s_1 == pytest.approx(grids.LONG_FIRST_FLOOR, rel=1e-6) \
                or first == pytest.approx(h, rel=1e-9)
            assert s_1 >= grids.LONG_FIRST_FLOOR * (1 - 1e-6) or first == pytest.approx(h, rel=1e-9)
            firsts.append(first)
    # Far from the floor it is 3 L / (n + 2): it vanishes as n grows, so the grid converges.
    span = float(grids.log_snr(sde, ts).diff().sum())
    assert firsts[-1] == pytest.approx(3 * span / 201, rel=1e-9) and firsts[-1] < 0.05 * span
    # first_step = 1 is the plain log-SNR grid, bit for bit; a bad factor is refused.
    assert torch.equal(grids.logsnr(sde, 9, first_step=1.0), grids.logsnr(sde, 9))
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="first_step must be a positive number"):
            grids.logsnr(sde, 9, first_step=bad)


# --- uniform_logsnr: the VE default of the first-order samplers ---------------------------------
@pytest.mark.parametrize("name", ["ve", "vp", "subvp"])
def test_uniform_logsnr_is_a_decreasing_grid_that_reduces_to_uniform(name: str) -> None:
    sde = sd.get_sde(name)
    for n in (1, 2, 7, 50):
        ts = grids.uniform_logsnr(sde, n)
        assert ts.shape == (n + 1,) and ts[0] == sde.T and ts[-1] == sde.eps
        assert bool((ts[1:] < ts[:-1]).all())
    assert torch.allclose(grids.uniform_logsnr(sde, 20, share=0.0), grids.uniform(sde, 20), rtol=0, atol=1e-12)


def test_uniform_logsnr_bounds_every_step_in_log_noise_level_and_keeps_the_uniform_steps() -> None:
    """The step density is at least ``share`` times the log-SNR grid's and its total mass is at
    most ``1 + share``, so no step spans more than ``Lambda (1 + share) / (share n)`` in log-SNR
    (every noise scale down to ``eps`` gets resolved as ``n`` grows), and where the uniform
    density is the larger the steps are the uniform grid's, at most ``1 + share`` times longer.
    Under VE the uniform grid's last step alone spans a factor ``sqrt(t_1/eps)`` in noise level
    (10 at 1000 steps: modes finer than ``sigma_min`` are crossed in one step)."""
    sde = sd.get_sde("ve")
    share = grids.LOGSNR_SHARE
    total = float(grids.log_snr(sde, torch.tensor([sde.eps])) - grids.log_snr(sde, torch.tensor([sde.T])))
    for n in (10, 100, 1000):
        ts = grids.uniform_logsnr(sde, n)
        widest = float(grids.log_snr(sde, ts).diff().max())
        assert 0 < widest <= total * (1 + share) / (share * n) * (1 + 1e-6)
        first = float(ts[0] - ts[1])
        assert (sde.T - sde.eps) / n <= first <= (1 + share) * (sde.T - sde.eps) / n
    assert float(grids.log_snr(sde, grids.uniform(sde, 1000)).diff().max()) > math.log(9.0)


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_uniform_logsnr_rejects_a_share_outside_the_unit_interval(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        grids.uniform_logsnr(sd.get_sde("ve"), 10, share=share)


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["euler_maruyama", "reverse_diffusion", "pc"])
def test_ve_default_grid_resolves_modes_finer_than_sigma_min(solver: str) -> None:
    """Two modes of std 0.002 (a fifth of the VE SDE's sigma_min): on the uniform grid a
    first-order sampler is still 30% too wide at 400 steps (the marginal noise falls from
    sigma_min to its value at eps within the last few steps); the default grid converges."""
    mix = sd.GaussianMixture([[1.0, 1.0], [-1.0, -1.0]], 0.002, name="fine")
    sde = sd.get_sde("ve")

    def spread(steps: int, **kw: object) -> float:
        r = solvers.sample(sde, mix.score_fn(sde), (4000, 2), solver=solver, steps=steps, seed=0,
                           dtype=torch.float64, **kw)
        return within_mode_spread(r.samples, mix)

    old, coarse, fine = spread(400, grid="uniform"), spread(200), spread(400)
    assert old > 1.2
    assert abs(fine - 1) < 0.07 and abs(fine - 1) < 0.7 * abs(coarse - 1)
    assert abs(fine - 1) < 0.25 * abs(old - 1)


@pytest.mark.parametrize(("solver", "steps"), [("ode_heun", (50, 100, 200)), ("ode_rk4", (25, 50, 100))])
def test_classic_integrators_under_ve_resolve_modes_finer_than_sigma_min_at_every_budget(
        solver: str, steps: tuple[int, ...]) -> None:
    """8 modes of std 0.002 (a fifth of sigma_min) under VE. On the uniform grid the last step
    in t spans the factor sqrt(t_1/eps) of the marginal noise, and an explicit step across the
    point where it passes the modes' width over-contracts them: ode_heun's spread read 0.91,
    0.43, 0.84 at 50, 100, 200 steps, ode_rk4's 1.11, 0.17, 0.68 at 14, 24, 49 (an outside
    check; quality fell as the budget grew). The default grid keeps the log-SNR grid's density
    below sigma_min."""
    mix = sd.targets.sharp_8(std=0.002)
    sde = sd.get_sde("ve")
    for n in steps:
        r = solvers.sample(sde, mix.score_fn(sde), (2000, 2), solver=solver, steps=n, seed=0)
        assert abs(within_mode_spread(r.samples.double(), mix) - 1) < 0.035, (solver, n)


@pytest.mark.parametrize("std", [0.002, 0.005])
def test_rk4_under_sub_vp_resolves_narrow_modes_at_every_budget(std: float) -> None:
    """On sub-VP's uniform grid sigma/alpha falls like t near 0 and the last RK4 step in t
    over-contracted narrow modes: spread 0.69 (std 0.002) at 197 NFE and 0.35 (std 0.005) at 97,
    silently (an outside check). The log-SNR grid resolves both."""
    mix = sd.targets.sharp_8(std=std)
    sde = sd.get_sde("subvp")
    for n in (24, 49):
        r = solvers.sample(sde, mix.score_fn(sde), (2000, 2), solver="ode_rk4", steps=n, seed=0)
        assert abs(within_mode_spread(r.samples.double(), mix) - 1) < 0.035, (std, n)


def test_uniform_or_logsnr_takes_the_denser_of_the_two_grids() -> None:
    sde = sd.get_sde("ve")
    ts = grids.uniform_or_logsnr(sde, 200)
    assert torch.equal(ts, grids.uniform_logsnr(sde, 200, share=1.0))
    lam_steps = grids.log_snr(sde, ts).diff()
    span = float(grids.log_snr(sde, ts[-1:]) - grids.log_snr(sde, ts[:1]))
    # no step longer in log-SNR than the log-SNR grid's times the total mass (at most 2)
    assert float(lam_steps.max()) <= 2 * span / 200
    # above sigma_min the steps are the uniform grid's, stretched by the same factor
    widths = -ts.diff()
    top = widths[: 100]
    assert float(top.max() / top.min()) < 1 + 1e-9 and 1.0 < float(top[0]) * 200 / (sde.T - sde.eps) < 2.0


def test_equidistribute_splits_a_piecewise_uniform_mass_into_equal_parts() -> None:
    nodes = torch.tensor([1.0, 0.5, 0.25, 0.0], dtype=torch.float64)
    flat = grids.equidistribute(nodes, torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64), 4)
    assert torch.allclose(flat, torch.linspace(1.0, 0.0, 5, dtype=torch.float64), rtol=0, atol=1e-15)
    # Three quarters of the mass on the last interval: three of four parts fall inside it.
    skewed = grids.equidistribute(nodes, torch.tensor([0.125, 0.125, 0.75], dtype=torch.float64), 4)
    assert torch.allclose(skewed, torch.tensor([1.0, 0.25, 1 / 6, 1 / 12, 0.0], dtype=torch.float64), atol=1e-15)
