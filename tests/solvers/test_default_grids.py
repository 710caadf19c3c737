"""Per-SDE default grids (`solvers.defaults`): which family each solver gets on which SDE."""

from __future__ import annotations

import pytest

import scoresde as sd
import solvers
from solvers.defaults import (
    classic_ode_grid,
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


@pytest.mark.parametrize("solver", ["ode_heun", "ode_rk4"])
def test_classic_integrators_use_log_snr_only_under_vp(solver: str) -> None:
    spec = solvers.get_solver(solver)
    assert spec.grid_for(sd.get_sde("vp")) == "logsnr"
    assert spec.grid_for(sd.get_sde("cosine")) == "logsnr"
    assert spec.grid_for(sd.get_sde("subvp")) == "uniform"
    assert spec.grid_for(sd.get_sde("ve")) == "uniform"


def test_first_order_samplers_use_log_snr_except_under_ve() -> None:
    for solver in ("euler_maruyama", "ode_euler", "ancestral", "pc"):
        spec = solvers.get_solver(solver)
        assert spec.grid_for(sd.get_sde("vp")) == "logsnr"
        assert spec.grid_for(sd.get_sde("subvp")) == "logsnr"
        assert spec.grid_for(sd.get_sde("ve")) == "uniform"
