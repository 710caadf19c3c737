"""A hand-written SDE that breaks the protocol is named before any work (`solvers.sde_checks`).

Each case below used to run silently with wrong results (a broadcast drift, a float64 drift in a
float32 run, a prior of the wrong shape), give NaN samples (``eps = 0``), or fail far from the
cause with an error that blamed the score or came from deep inside a grid builder.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import solvers
from solvers.grids import check_grid, uniform


class PlainVPParts:
    """VP SDE with a linear beta, written from the protocol alone (no base class), no marginals."""

    def __init__(self, T: float = 1.0, eps: float = 1e-3, b0: float = 0.1, b1: float = 20.0) -> None:
        self.T, self.eps, self.b0, self.b1 = T, eps, b0, b1

    def beta(self, t: Tensor) -> Tensor:
        return self.b0 + (self.b1 - self.b0) * t

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t).reshape(-1, *([1] * (x.ndim - 1))) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                     dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)


class PlainVP(PlainVPParts):
    """`PlainVPParts` with its marginals ``alpha = exp(-int beta / 2)``, ``sigma^2 = 1 - alpha^2``."""

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha = -0.25 * t**2 * (self.b1 - self.b0) - 0.5 * t * self.b0
        return log_alpha.exp(), (-torch.expm1(2.0 * log_alpha)).sqrt()


def gaussian_score(sde: PlainVP, std: float = 0.5):
    """Exact score of ``N(0, std^2 I)`` data under ``sde``: ``-x / (alpha^2 std^2 + sigma^2)``."""

    def score(x: Tensor, t: Tensor) -> Tensor:
        a, s = sde.marginal_coeffs(t)
        return -x / (a**2 * std**2 + s**2).reshape(-1, *([1] * (x.ndim - 1)))

    return score


def run(sde: object, solver: str = "dpmpp_2m", **kw):
    kw = {"shape": (64, 2), "steps": 20, "seed": 0, **kw}
    return solvers.sample(sde, kw.pop("score", None) or gaussian_score(PlainVP()), solver=solver, **kw)


@pytest.mark.parametrize("solver", ["ode_rk45", "euler_maruyama", "dpmpp_2m"])
def test_eps_zero_is_refused_instead_of_nan_samples(solver):
    # Before: ode_rk45 returned all-NaN samples (the end step divided by sigma(0)^2 = 0).
    with pytest.raises(ValueError, match=r"PlainVP.eps=0.0.*never to t = 0"):
        run(PlainVP(eps=0.0), solver)


def test_negative_eps_and_eps_at_or_above_T_are_refused():
    with pytest.raises(ValueError, match=r"eps=-0.1"):
        run(PlainVP(eps=-0.1), "euler_maruyama")
    for eps in (1.0, 2.0):
        with pytest.raises(ValueError, match=rf"eps={eps} >= T=1.0"):
            run(PlainVP(eps=eps))


def test_T_that_is_not_a_number_is_named():
    with pytest.raises(TypeError, match=r"PlainVP.T must be a real number"):
        run(PlainVP(T="1"))  # type: ignore[arg-type]


def test_solver_solve_checks_the_time_range_too():
    sde = PlainVP()
    dyn = solvers.ProbabilityFlowODE(sde, gaussian_score(sde))
    sde.eps = 0.0
    with pytest.raises(ValueError, match="never to t = 0"):
        check_grid(torch.linspace(1.0, 0.0, 5, dtype=torch.float64), sde)
    with pytest.raises(ValueError, match="never to t = 0"):
        solvers.get_solver("ode_heun").solve(dyn, torch.zeros(4, 2), torch.linspace(1.0, 0.0, 5))


class BroadcastDrift(PlainVP):
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return super().drift(x, t)[:1]


class ColumnDrift(PlainVP):
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return super().drift(x, t)[:, :1]


class ScalarDrift(PlainVP):
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return super().drift(x, t).sum()


@pytest.mark.parametrize("cls, got", [(BroadcastDrift, r"\(1, 2\)"), (ColumnDrift, r"\(2, 1\)"), (ScalarDrift, r"\(\)")])
@pytest.mark.parametrize("solver", ["ode_heun", "euler_maruyama"])
def test_drift_of_the_wrong_shape_is_named(cls, got, solver):
    # Before: a (1, D) drift broadcast silently (ode_heun: sample std 0.005 instead of ~0.5).
    with pytest.raises(ValueError, match=rf"{cls.__name__}.drift\(x, t\) returned shape {got}"):
        run(cls(), solver)


class Float64Parts(PlainVP):
    """An SDE that computes in float64 whatever the state's dtype (float64 buffers, say)."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return super().drift(x.double(), t.double())

    def diffusion(self, t: Tensor) -> Tensor:
        return super().diffusion(t.double())


@pytest.mark.parametrize("solver", ["euler_maruyama", "ode_heun", "adaptive_sde", "torchsde_euler"])
def test_a_float64_sde_keeps_a_float32_run_in_float32(solver):
    # Before: the run turned float64 part-way (chunked runs stayed float32, so the two
    # disagreed); adaptive_sde raised "Index put requires the source and destination dtypes match".
    sde = Float64Parts()
    kw = {"score": gaussian_score(sde), "dtype": torch.float32}
    whole = run(sde, solver, **kw).samples
    assert whole.dtype == torch.float32
    assert run(sde, solver, batch_size=16, **kw).samples.dtype == torch.float32
    plain = run(PlainVP(), solver, **kw).samples
    assert torch.allclose(whole, plain, atol=1e-4)


class ColumnDiffusion(PlainVP):
    def diffusion(self, t: Tensor) -> Tensor:
        return super().diffusion(t)[:, None]


class ScalarDiffusion(PlainVP):
    def diffusion(self, t: Tensor) -> Tensor:
        return super().diffusion(t)[0]


class FloatDiffusion(PlainVP):
    def diffusion(self, t: Tensor) -> Tensor:  # type: ignore[override]
        return 1.0  # type: ignore[return-value]


@pytest.mark.parametrize("solver", ["euler_maruyama", "adaptive_sde", "ode_heun"])
def test_diffusion_of_the_wrong_shape_or_type_is_named(solver):
    # Before: TypeError from the stability check, IndexError, or a false stability warning.
    with pytest.raises(ValueError, match=r"ColumnDiffusion.diffusion\(t\) returned shape \(2, 1\)"):
        run(ColumnDiffusion(), solver)
    with pytest.raises(ValueError, match=r"ScalarDiffusion.diffusion\(t\) returned shape \(\)"):
        run(ScalarDiffusion(), solver)
    with pytest.raises(TypeError, match=r"FloatDiffusion.diffusion\(t\) returned float"):
        run(FloatDiffusion(), solver)


class ColumnMarginals(PlainVP):
    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, s = super().marginal_coeffs(t)
        return a[:, None], s[:, None]


class ZeroSigmaAtEps(PlainVP):
    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, s = super().marginal_coeffs(t)
        return a, torch.where(t <= self.eps, torch.zeros_like(s), s)


def test_marginal_coefficients_of_the_wrong_shape_or_zero_sigma_are_named():
    # Before: a TypeError from torch.linspace inside the log-SNR grid; NaN from sigma(eps) = 0.
    with pytest.raises(ValueError, match=r"marginal_coeffs\(t\)\[0\] \(alpha\) returned shape \(2, 1\)"):
        run(ColumnMarginals())
    with pytest.raises(ValueError, match=r"marginal_coeffs\(t\)\[1\] \(sigma\) returned .* must be > 0"):
        run(ZeroSigmaAtEps(), "ode_rk45")


NoMarginals = PlainVPParts


@pytest.mark.parametrize("solver", ["dpmpp_2m", "gaussian_2m", "lms", "edm_heun", "unipc", "ddim"])
def test_missing_marginals_named_before_the_grid_is_built(solver):
    # Before: a raw AttributeError from the default log-SNR grid.
    with pytest.raises(TypeError, match=rf"'{solver}' needs the SDE's marginal_coeffs"):
        run(NoMarginals(), solver)


def test_missing_marginals_for_a_named_grid_and_an_explicit_end_step():
    with pytest.raises(TypeError, match=r"grid='karras' needs the SDE's marginal_coeffs.*grid='uniform'"):
        run(NoMarginals(), "euler_maruyama", grid="karras")
    with pytest.raises(TypeError, match=r"denoise='ode' \(the end-of-run step.*denoise='none'"):
        run(NoMarginals(), "euler_maruyama", denoise="ode")
    # Without marginals the default end step is none: the samples at eps, finite.
    out = run(NoMarginals(), "euler_maruyama", grid="uniform")
    assert out.stats["end_step"] == "none" and bool(torch.isfinite(out.samples).all())


class NarrowPrior(PlainVP):
    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return torch.randn(shape[0], 1, generator=generator, dtype=dtype)


class NaNPrior(PlainVP):
    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return torch.full(shape, math.nan, dtype=dtype)


class Float64Prior(PlainVP):
    def prior_sample(self, shape, *, generator=None, dtype=None, device=None):
        return torch.randn(shape, generator=generator, dtype=torch.float64)


def test_prior_draws_are_checked_and_cast_to_the_run():
    # Before: samples of shape (64, 1) for shape=(64, 2); a NaN prior blamed the score.
    with pytest.raises(ValueError, match=r"NarrowPrior.prior_sample\(64, 2\) returned shape \(64, 1\)"):
        run(NarrowPrior())
    with pytest.raises(ValueError, match=r"NaNPrior.prior_sample returned 128 NaN/inf"):
        run(NaNPrior())
    assert run(Float64Prior(), dtype=torch.float32).samples.dtype == torch.float32


def test_a_conforming_hand_written_sde_samples_its_gaussian():
    sde = PlainVP(T=2.0, eps=1e-2, b0=0.05, b1=10.0)
    out = solvers.sample(sde, gaussian_score(sde), shape=(4000, 2), solver="dpmpp_2m", steps=30, seed=0,
                         dtype=torch.float64)
    # N(0, 0.25 I) data; std error of a variance estimate from 8000 values ~ 0.25 * sqrt(2/8000).
    assert abs(float(out.samples.var()) - 0.25) < 5 * 0.25 * math.sqrt(2 / 8000)
    assert uniform(sde, 4)[0] == 2.0


@pytest.mark.parametrize("name", ["ancestral", "reverse_diffusion", "annealed_langevin", "pc"])
def test_without_marginals_only_pc_is_told_to_swap_its_parts(name: str) -> None:
    # Swapping the predictor and corrector of ancestral / reverse_diffusion / annealed_langevin
    # ran Euler-Maruyama (or no Langevin at all) under their names.
    class NoMarginals:
        T, eps = 1.0, 1e-3

        def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return -0.5 * x

        def diffusion(self, t: torch.Tensor) -> torch.Tensor:
            return torch.ones_like(t)

        def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                         dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
            return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    with pytest.raises(TypeError, match="needs the SDE's marginal_coeffs") as err:
        solvers.sample(NoMarginals(), lambda x, t: -x, (10, 2), name, steps=5, seed=0)
    assert ("predictor='euler_maruyama'" in str(err.value)) == (name == "pc")
