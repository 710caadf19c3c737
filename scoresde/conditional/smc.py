"""Sequential Monte Carlo conditioning as an ``after_step`` hook: consistent as particles grow.

The batch is a particle population. Sampling runs with the *unconditional* score (any
one-step stochastic solver: ``euler_maruyama``, ``reverse_diffusion``, ``ancestral``), whose
time-``t`` marginals are ``p_t``. After each step the hook multiplies every particle's weight
by ``L_t(x_t) / L_s(x_s)`` (``s`` the previous time), with the ΠGDM twist (Song et al. 2023)
``L_t(x) = N(y; A x0(x), r_t^2 A A^T + s_y^2 I)``, and resamples (systematic) when the
effective sample size drops below ``ess_fraction * B`` and always at ``t = eps``. The weights
telescope to ``L_eps(x_eps) / L_{t_1}(x_{t_1})``, so the population targets
``p_eps(x) L_eps(x)``, which tends to ``p(x | y)`` as ``eps -> 0``, exactly as the number of
particles ``B -> inf`` (the particle-filter construction of Trippe et al. 2022 and Wu et al.
2023, with an unguided proposal). The weight of the first step starts at ``L_{t_1}``, which
differs from the exact ratio by ``L_T``: nearly constant because ``x_T`` carries almost no
information about ``x_0``. At finite ``B`` resampling duplicates particles; the duplicates
separate only through the remaining noise, so diversity is the price (measured in
docs/conditional.md). Each step costs one extra score evaluation (the twist).

Only one-step stochastic fixed-grid solvers are valid (`PARTICLE_FILTER_SOLVERS`): a
multistep solver (``dpmpp_2m``, ``unipc``, ``sde_dpmpp_2m``, ...) keeps per-particle history
across steps that resampling does not reorder, an adaptive one (``adaptive_sde``) steps every
sample to its own time, and a deterministic one never separates duplicated particles. The hook
cannot see which solver calls it: it refuses unequal times within one call (adaptive
solvers) itself; give ``solver=`` (or call `ParticleFilter.check_solver`) to refuse the rest.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.utils import append_dims

from .checks import (
    NOISELESS_RANK_WHY,
    as_tensor,
    check_data_shape,
    check_data_std,
    check_finite_observed,
    check_full_row_rank,
    check_noise_std,
)
from .operators import MaskOperator, MatrixOperator, as_operator
from .replacement import _generator, generator_state, set_generator_state

__all__ = ["PARTICLE_FILTER_SOLVERS", "ParticleFilter"]

PARTICLE_FILTER_SOLVERS = ("euler_maruyama", "reverse_diffusion", "ancestral")
"""Registered solvers the particle filter is valid for: one step from ``(x_t, t)`` to
``x_s`` with fresh noise, no state carried between steps, one time for the whole batch."""


def _solver_problem(name: str) -> str:
    """Why solver ``name`` (a registered name outside `PARTICLE_FILTER_SOLVERS`) is not valid."""
    import solvers

    solver = solvers.get_solver(name)
    if solver.adaptive:
        return "chooses its own steps, per sample (resampling would mix particles at different times)"
    if not solver.stochastic:
        return "is deterministic (duplicated particles would never separate)"
    return ("carries state from one step to the next (a multistep or predictor-corrector solver, whose "
            "per-particle history is not reordered when particles are resampled), or is otherwise not a "
            "one-step solver validated for resampling")


class ParticleFilter:
    """``after_step(x, t)``: reweight and resample the batch towards ``p(x | y)``.

    The weights live between calls. A new run (a step whose time lies above the previous
    step's, or another batch size, as with each chunk of ``solvers.sample(batch_size=...)``)
    starts from fresh weights, so one filter serves several runs, including one that raised
    partway. ``reset()`` does the same by hand. The final resample happens at ``t <= sde.eps``:
    a grid that stops above ``eps`` ends with the weighted, not yet resampled, population.

    Args:
        score: the unconditional score the solver also uses.
        sde: the forward SDE.
        A: a boolean mask of the data shape, an operator, or a matrix ``(M, prod(D))``.
        y: ``(M,)`` measurement (for a mask: the masked values or a full ``*D`` array).
        data_shape: ``*D``.
        noise_std: measurement noise ``s_y >= 0``.
        ess_fraction: resample when ``ESS < ess_fraction * B`` (in ``(0, 1]``).
        data_std: ``d`` of the twist's Gaussian prior (see `PosteriorGuidance`).
        seed, generator: randomness of the resampling.
        solver: the name of the solver the filter will run under, checked with `check_solver`
            (optional; the hook cannot see the solver, so without it a multistep solver runs
            unchecked and gives biased samples).

    Attributes:
        resamples: number of resampling events so far; ``ess``: the last effective sample size.

    Raises:
        ValueError: ``A`` / ``y`` of the wrong shape or with NaN / inf, a matrix ``A`` without
            full row rank when ``noise_std = 0``, ``noise_std`` negative or not finite,
            ``ess_fraction`` outside ``(0, 1]``, ``data_std`` not finite and > 0, a bad
            ``data_shape``, a seed outside ``torch.Generator``'s range, or both ``seed`` and
            ``generator``; a ``solver`` outside `PARTICLE_FILTER_SOLVERS`; at call time
            times that differ within the batch (an adaptive solver).
        TypeError: ``A`` / ``y`` not numeric, ``generator`` not a CPU ``torch.Generator``;
            `NotAnIntegerError`: ``seed`` not an integer.
    """

    def __init__(
        self,
        score: ScoreFn,
        sde: DiffusionSDE,
        A: Any,
        y: Any,
        data_shape: tuple[int, ...],
        *,
        noise_std: float = 0.0,
        ess_fraction: float = 0.5,
        data_std: float = 1.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        solver: str | None = None,
    ) -> None:
        if solver is not None:
            self.check_solver(solver)
        self.op: MaskOperator | MatrixOperator = as_operator(A, check_data_shape(data_shape))
        yy = as_tensor(y, "y", torch.float64)
        if isinstance(self.op, MaskOperator) and tuple(yy.shape) == self.op.data_shape:
            yy = yy[self.op.mask]
        if tuple(yy.shape) != (self.op.m,):
            raise ValueError(f"y must have shape ({self.op.m},) for this operator, got {tuple(yy.shape)}")
        check_finite_observed(yy, "measurement y")
        if not 0.0 < float(ess_fraction) <= 1.0:
            raise ValueError(f"ess_fraction must lie in (0, 1], got {ess_fraction!r}")
        noise_std = check_noise_std(noise_std)
        if isinstance(self.op, MatrixOperator) and noise_std == 0:
            check_full_row_rank(self.op.A, NOISELESS_RANK_WHY, "drop redundant rows or give noise_std > 0")
        self.score, self.sde, self.y = score, sde, yy
        self.noise_std = noise_std
        self.ess_fraction = float(ess_fraction)
        self.data_std = check_data_std(data_std)
        self.generator = _generator(seed, generator)
        self._prev: Tensor | None = None
        self._logw: Tensor | None = None
        self._prev_t = float("inf")
        self.resamples = 0
        self.ess = float("nan")

    @staticmethod
    def check_solver(name: str) -> None:
        """Refuse a solver the filter is not valid for (anything outside `PARTICLE_FILTER_SOLVERS`).

        Raises:
            ValueError: an unknown name, or a multistep, adaptive or deterministic solver;
                the message says why and lists the valid solvers.
        """
        import solvers

        solvers.check_solver_names([name])
        if name not in PARTICLE_FILTER_SOLVERS:
            raise ValueError(
                f"ParticleFilter cannot run under solver {name!r}: it {_solver_problem(name)}; "
                f"use one of {', '.join(PARTICLE_FILTER_SOLVERS)}"
            )

    def get_state(self) -> dict[str, Any]:
        """The resampling generator's state and ``resamples`` (`StatefulHook`); the weights are
        not kept: each run (chunk) starts from fresh weights."""
        return {**generator_state(self.generator), "resamples": self.resamples}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from `get_state` and forget the current run's weights."""
        set_generator_state(self.generator, state, type(self).__name__)
        self.resamples = int(state.get("resamples", self.resamples))
        self.reset()

    def reset(self) -> None:
        """Forget the weights of the current run: the next call starts a new one.

        ``resamples`` keeps counting and the resampling generator is not re-seeded.
        """
        self._prev = self._logw = None
        self._prev_t = float("inf")

    def log_twist(self, x: Tensor, t: Tensor) -> Tensor:
        """``log L_t(x)``: ``(B, *D), (B,) -> (B,)`` (one score evaluation)."""
        alpha, sigma = self.sde.marginal_coeffs(t)
        x0 = (x + append_dims(sigma**2, x.ndim) * self.score(x, t)) / append_dims(alpha, x.ndim)
        resid = self.y.to(x)[None] - self.op.forward(x0)
        v = (sigma / alpha) ** 2
        r2 = self.data_std**2 * v / (self.data_std**2 + v)
        eye = torch.eye(self.op.m, dtype=x.dtype, device=x.device)
        cov = r2[:, None, None] * self.op.gram(x)[None] + self.noise_std**2 * eye[None]
        dist = torch.distributions.MultivariateNormal(torch.zeros_like(resid), covariance_matrix=cov)
        return dist.log_prob(resid)

    def _resample(self, w: Tensor) -> Tensor:
        """Systematic resampling indices ``(B,)`` for normalised weights ``w: (B,)``."""
        b = w.shape[0]
        u = (torch.rand((), generator=self.generator, dtype=torch.float64) + torch.arange(b, dtype=torch.float64)) / b
        cdf = torch.cumsum(w.double().cpu(), 0)
        cdf[-1] = 1.0
        return torch.searchsorted(cdf, u).clamp(max=b - 1).to(w.device)

    @staticmethod
    def _one_time(t: Tensor) -> float:
        """The call's time; refuses samples at different times (an adaptive solver's per-sample
        steps). One host transfer for both ends of ``t``."""
        lo, hi = (float(v) for v in torch.stack(torch.aminmax(t.detach().double())).tolist())
        if hi - lo > 1e-6 * max(1.0, abs(hi)):
            raise ValueError(
                f"ParticleFilter got samples at different times in one call (t from {lo:.6g} to {hi:.6g}): "
                "the solver steps every sample on its own grid (an adaptive solver such as 'adaptive_sde'), "
                "so resampling would mix particles at different times. Use a one-step stochastic "
                f"fixed-grid solver: {', '.join(PARTICLE_FILTER_SOLVERS)}"
            )
        return hi

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        t_now = self._one_time(t)
        if t_now > self._prev_t or (self._prev is not None and self._prev.shape[0] != x.shape[0]):
            self.reset()  # a new run (or chunk) began: the old particles' weights do not apply
        lt = self.log_twist(x, t)
        if self._prev is None or self._prev.shape != lt.shape or self._logw is None:
            self._logw = torch.zeros_like(lt)
            inc = lt
        else:
            inc = lt - self._prev
        logw = self._logw + inc
        w = torch.softmax(logw, 0)
        self.ess = float(1.0 / (w**2).sum())
        final = float(t.max()) <= self.sde.eps * (1 + 1e-6)
        if final or self.ess < self.ess_fraction * x.shape[0]:
            idx = self._resample(w)
            x, lt = x[idx], lt[idx]
            logw = torch.zeros_like(logw)
            self.resamples += 1
        self._prev, self._logw, self._prev_t = lt, logw, t_now
        if final:
            self.reset()  # ready for the next run
        return x
