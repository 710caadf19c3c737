"""The solve loop, written once: `Solver.solve` is a template method.

`Solver.solve` alone validates the dynamics and the grid (once per call), builds the noise
source, runs under ``torch.no_grad``, times the run, counts NFE, applies the ``after_step`` hook,
records and thins the trajectory, runs the end-of-run step (`Solver.finish`) and builds the
`Solution`. A subclass implements exactly one integration method:

* `FixedGridSolver.step` (one grid interval; the loop over the grid is here), or
* `Solver.integrate` (adaptive and backend solvers: their own loop), reporting every accepted
  state through `SolveContext.accept` (or `SolveContext.hook` / `SolveContext.record` when a
  solver hooks and records at different moments).

Per-solve state lives in the `SolveContext`, never on the solver, so one solver instance can
serve many solves (and threads).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from .dynamics import ReverseDynamics
from .end import end_step_kind, final_step
from .grids import check_grid
from .inputs import as_real, check_flag, check_generator
from .marginals import require_marginals
from .noise import CountedNoise, GaussianNoise, NoiseSource
from .result import Solution
from .stability import COARSE_GRID_MEASURE, HIGHER_ORDER_TOO_COARSE, warn_if_too_coarse
from .trajectory import TrajectoryRecorder
from .utils import batch_time

__all__ = ["Solver", "FixedGridSolver", "SolveContext", "TrajectoryRecorder", "AfterStep", "DynamicsKind"]

AfterStep = Callable[[Tensor, Tensor], Tensor]
"""``after_step(x: (B, *D), t: (B,)) -> x``: applied after every accepted step (e.g. inpainting)."""

DynamicsKind = Literal["ode", "sde", "any"]


@dataclass
class SolveContext:
    """Per-solve state handed to `FixedGridSolver.step` and `Solver.integrate`.

    Attributes:
        grid: the validated ``(n + 1,)`` float64 grid; ``times`` is the same as floats.
        noise: the noise source of this solve (a `CountedNoise` around the caller's source
            when built by `Solver.solve`; `noise_source` is the caller's).
        after_step: the user's hook (applied by `hook` / `accept`).
        recorder: the trajectory of this solve (fed by `record` / `accept`).
        index: step number ``i`` of a fixed-grid solve (from ``t_i`` to ``t_{i+1}``), 0-based.
        memory: solver-owned storage for this solve (multistep history, precomputed tables).
        stats: solver-specific counters copied to `Solution.stats`.
        visited: times actually visited, when they differ from ``grid`` (adaptive solvers).
        denoise: the end-of-run step: ``"ode"`` (to ``sigma = 0``), ``"tweedie"`` or ``"none"``
            (see `Solver.finish` and `solvers.end`).
    """

    grid: Tensor
    times: list[float]
    noise: NoiseSource
    after_step: AfterStep | None
    recorder: TrajectoryRecorder
    denoise: str = "none"
    index: int = 0
    memory: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    visited: Tensor | None = None

    @property
    def noise_source(self) -> NoiseSource:
        """The caller's noise source (``noise`` without the draw counter)."""
        return self.noise.source if isinstance(self.noise, CountedNoise) else self.noise

    @property
    def drew_noise(self) -> bool:
        """This solve has drawn noise so far (``False`` if ``noise`` is not counted)."""
        return isinstance(self.noise, CountedNoise) and self.noise.draws > 0

    @property
    def n_steps(self) -> int:
        """Number of grid intervals."""
        return len(self.times) - 1

    @property
    def is_last(self) -> bool:
        """This fixed-grid step ends at ``t_end``."""
        return self.index == self.n_steps - 1

    @property
    def t_start(self) -> float:
        return self.times[0]

    @property
    def t_end(self) -> float:
        return self.times[-1]

    @property
    def watches_states(self) -> bool:
        """A hook or a trajectory wants the accepted states (adaptive backends may skip callbacks otherwise)."""
        return self.after_step is not None or self.recorder.enabled

    def hook(self, x: Tensor, t: float | Tensor) -> Tensor:
        """Apply ``after_step`` to ``x: (B, *D)`` at ``t`` (a float or per-sample ``(B,)``)."""
        if self.after_step is None:
            return x
        tt = t.to(x.dtype) if isinstance(t, Tensor) else batch_time(t, x)
        out = self.after_step(x, tt)
        if not isinstance(out, Tensor) or out.shape != x.shape or out.dtype != x.dtype:
            got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"after_step must return a tensor of the state's shape and dtype {tuple(x.shape)} {x.dtype}, got {got}"
            )
        return out

    def record(self, t: float, x: Tensor, sample_t: Tensor | None = None) -> None:
        """Offer ``x`` at time ``t`` to the trajectory (kept if ``keep_trajectory`` and not thinned)."""
        self.recorder.add(t, x, sample_t)

    def accept(self, t: float, x: Tensor) -> Tensor:
        """An accepted step landed on ``t``: apply the hook, record the state, return it."""
        x = self.hook(x, t)
        self.record(t, x)
        return x


class Solver:
    """Base class of every sampler.

    Capabilities (class defaults; a solver whose options change them sets them on the instance):
        order: deterministic / weak order of convergence in the step size.
        strong_order: strong order for SDE solvers (``None`` for ODE solvers and where none is
            claimed).
        dynamics_kind: ``"ode"`` (needs the probability-flow ODE, ``lam = 0``), ``"sde"``
            (needs the reverse SDE, ``lam = 1``) or ``"any"``.
        stochastic: draws noise (DDIM and EDM Heun set it per instance: not at ``eta = 0`` or
            without churn); `draws_noise` adds the run's ``lam``.
        needs_marginals: uses ``alpha(t), sigma(t)`` (exponential integrators, transitions).
        adaptive: chooses its own steps (the grid gives only the end points).
        default_grid: grid name `solvers.sample` uses when none is given.
    """

    order: float = 1.0
    strong_order: float | None = None
    dynamics_kind: DynamicsKind = "any"
    stochastic: bool = False
    needs_marginals: bool = False
    adaptive: bool = False
    default_grid: str = "uniform"
    default_final: str = "ode"

    def check_dynamics(self, dynamics: ReverseDynamics) -> None:
        """Raise ``TypeError`` if ``dynamics`` is not what this solver integrates."""
        name = type(self).__name__
        if not isinstance(dynamics, ReverseDynamics):
            raise TypeError(
                f"{name} integrates solvers.ReverseDynamics (ReverseSDE / ProbabilityFlowODE), "
                f"got {type(dynamics).__name__}"
            )
        if self.dynamics_kind == "ode" and not dynamics.is_ode:
            raise TypeError(
                f"{name} is an ODE solver: pass ProbabilityFlowODE(sde, score) (lam=0), "
                f"got lam={dynamics.lam}"
            )
        if self.dynamics_kind == "sde" and dynamics.lam != 1.0:
            raise TypeError(
                f"{name} discretises the reverse SDE: pass ReverseSDE(sde, score) (lam=1), "
                f"got lam={dynamics.lam}"
            )
        if self.needs_marginals:
            require_marginals(dynamics.sde, name)

    def lam_for(self, lam: float | None, name: str | None = None) -> float:
        """The reverse-family noise level this solver runs at, given the user's ``lam`` (or ``None``).

        ODE solvers run at 0, reverse-SDE solvers at 1, the others at ``lam`` (default 1).
        ``name``: how the user called the solver (its registered name), for the message.

        Raises:
            ValueError: ``lam`` contradicts the solver's ``dynamics_kind``.
        """
        name = repr(name) if name is not None else type(self).__name__
        if self.dynamics_kind == "ode":
            if lam not in (None, 0, 0.0):
                raise ValueError(f"{name} is an ODE solver; lam must be 0")
            return 0.0
        if self.dynamics_kind == "sde":
            if lam not in (None, 1, 1.0):
                raise ValueError(f"{name} needs the reverse SDE; lam must be 1")
            return 1.0
        return 1.0 if lam is None else as_real(lam, "lam")

    def draws_noise(self, lam: float) -> bool:
        """Whether a run at reverse-family level ``lam`` adds fresh noise: a stochastic solver
        (``stochastic`` on the instance, so DDIM at ``eta = 0`` and EDM without churn are not)
        except one of kind ``"any"`` at ``lam = 0``, whose noise is ``lam g dW``."""
        if not self.stochastic:
            return False
        return not (self.dynamics_kind == "any" and lam == 0.0)

    def reverse_level(self, lam: float, sde: object = None, ts: Tensor | None = None) -> float:
        """The level ``lam'`` of the reverse family whose contraction of an offset in ``x_T`` a
        run at ``lam`` on the grid ``ts`` gets (`solvers.prior_match`): 0 without fresh noise,
        the run's ``lam`` for a solver of kind ``"any"``, 1 for an SDE solver. Solvers whose
        noise is not one member of the family say so (DDIM: ``eta``; EDM: from its churn)."""
        if not self.draws_noise(lam):
            return 0.0
        return lam if lam > 0 else 1.0

    def solve(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        ts: Tensor,
        *,
        noise: NoiseSource | None = None,
        generator: torch.Generator | None = None,
        keep_trajectory: bool = False,
        max_frames: int | None = 101,
        after_step: AfterStep | None = None,
        denoise: bool | str | None = False,
    ) -> Solution:
        """Integrate ``dynamics`` from ``x`` at ``ts[0]`` along the decreasing grid ``ts``.

        Args:
            dynamics: reverse-time dynamics (its score is counted for ``nfe``).
            x: initial state ``(B, *D)`` at ``ts[0]`` (usually a prior sample at ``T``).
            ts: ``(n + 1,)`` strictly decreasing times inside ``[eps, T]`` (adaptive solvers
                use only the end points).
            noise: randomness for stochastic solvers (default: `GaussianNoise` on ``generator``).
            generator: used by the default noise source.
            keep_trajectory: store (thinned) intermediate states.
            max_frames: at most this many stored states (``None``: all).
            after_step: hook ``(x, t) -> x`` applied to the state after every accepted step.
            denoise: the end-of-run step at ``ts[-1]`` (`finish`): ``False`` / ``"none"``
                (default of this composable layer: the state at ``ts[-1]``); ``None``: the
                solver's ``default_final`` (what `solvers.sample` uses by default: ``"ode"``, a
                second-order step to ``sigma = 0``, one NFE, so the result samples ``p_0``);
                ``"ode"``; ``"tweedie"`` or ``True``: Tweedie's ``E[x_0 | x_t]``.

        Returns:
            `Solution` (``nfe`` and ``seconds`` include the end-of-run step).

        Raises:
            TypeError: the dynamics are not what the solver integrates; ``x`` not a tensor, a
                ``generator`` that is not a ``torch.Generator``, ``keep_trajectory`` not a bool.
            ValueError: a bad grid or ``max_frames``.
        """
        self.check_dynamics(dynamics)
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor (B, *D), got {type(x).__name__}")
        check_generator(generator, x.device)
        keep_trajectory = check_flag(keep_trajectory, "keep_trajectory")
        grid = check_grid(ts, dynamics.sde)
        times = grid.tolist()
        recorder = TrajectoryRecorder(keep_trajectory, None if self.adaptive else len(times) - 1, max_frames)
        ctx = SolveContext(
            grid=grid,
            times=times,
            noise=CountedNoise(GaussianNoise(generator) if noise is None else noise),
            after_step=after_step,
            recorder=recorder,
            denoise=self._final_for(dynamics, denoise, after_step),
        )
        self.diagnose(dynamics, ctx)  # before the clock: a diagnostic is not the solver's time
        nfe0 = dynamics.nfe
        start = time.perf_counter()
        with torch.no_grad():
            ctx.record(times[0], x)
            x = self.integrate(dynamics, x, ctx)
            x = self.finish(dynamics, x, ctx)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        seconds = time.perf_counter() - start
        traj, traj_t, per_sample_t = recorder.result()
        ctx.stats.setdefault("end_step", ctx.denoise)  # "none": samples at ts[-1]; else denoised to t = 0
        if per_sample_t is not None:
            ctx.stats["trajectory_sample_times"] = per_sample_t
        return Solution(
            samples=x,
            nfe=dynamics.nfe - nfe0,
            times=grid if ctx.visited is None else ctx.visited,
            trajectory=traj,
            trajectory_times=traj_t,
            seconds=seconds,
            stats=ctx.stats,
        )

    def diagnose(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        """Warnings about this solve that cost work of their own (e.g. the stability analysis of
        `solvers.stability`), run before the solve's clock starts so that ``Solution.seconds``
        times the solver alone; default: nothing."""

    def integrate(self, dynamics: ReverseDynamics, x: Tensor, ctx: SolveContext) -> Tensor:
        """Carry ``x: (B, *D)`` from ``ctx.t_start`` to ``ctx.t_end``; report accepted states to ``ctx``.

        The one method a solver implements (fixed-grid solvers implement `FixedGridSolver.step`
        instead). Accepted states go through ``ctx.accept`` (hook, then trajectory).
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither integrate nor step")

    def grid_for(self, sde: object) -> str:
        """The grid `solvers.sample` uses on ``sde`` when none is given; default ``default_grid``."""
        return self.default_grid

    def final_kind(self, denoise: bool | str | None) -> str:
        """The end-of-run step a ``denoise`` argument asks for (``None``: ``default_final``).

        Raises:
            ValueError: an unknown name.
        """
        return end_step_kind(denoise, self.default_final)

    def _final_for(self, dynamics: ReverseDynamics, denoise: bool | str | None, after_step: object) -> str:
        # The default end step needs the marginals; an SDE without them ends at eps. With an
        # after_step hook (conditioning: replacement, particle filters) the unconditional
        # denoiser would undo the hook's last correction, so the default there is "none".
        kind = self.final_kind(denoise)
        has_marginals = hasattr(dynamics.sde, "marginal_coeffs")
        if denoise is None and (after_step is not None or not has_marginals):
            return "none"
        if kind != "none" and not has_marginals:
            raise TypeError(
                f"denoise={denoise!r} (the end-of-run step to sigma = 0) needs the SDE's marginal_coeffs(t) "
                f"-> (alpha(t), sigma(t)), which {type(dynamics.sde).__name__} does not define; add it, or "
                "pass denoise='none' to return the samples at eps"
            )
        return kind

    def finish(self, dynamics: ReverseDynamics, x: Tensor, ctx: SolveContext) -> Tensor:
        """The end of a run, after the last step: the one place that decides what a run returns.

        ``ctx.denoise`` names the step (`solvers.end.final_step`): ``"ode"`` (every solver's
        default) follows the probability-flow ODE from ``t = ctx.t_end`` to ``sigma = 0`` through
        a local Gaussian fitted per sample to this evaluation and the run's previous one (one
        NFE; exact for Gaussian modes, the trapezoid ``(x/alpha + D(x))/2`` without a previous
        evaluation, see `solvers.end`), or, if the run drew noise (``ctx.drew_noise``) and its
        last step was short (under ``S/2``: the difference is then mostly the step's noise), to
        a probe at ``1.1 S`` instead (two NFE; ``stats["end_pair"]`` says which), so the
        result samples ``p_0``, not the blurred ``p_eps``;
        ``"tweedie"`` returns ``D(x) = E[x_0 | x_t]`` (Efron 2011; an Euler step to
        ``sigma = 0``, which over-shrinks by ``sigma^2/(s^2 + sigma^2)`` a mode of std ``s``);
        ``"none"`` returns ``x`` (a sample of ``p_eps``).
        """
        info: dict[str, object] = {}
        pair = "noisy" if ctx.drew_noise else "history"
        out = final_step(dynamics, x, ctx.t_end, ctx.denoise, pair=pair, info=info)  # type: ignore[arg-type]
        ctx.stats["end_pair"] = info.get("pair")
        return out

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


class FixedGridSolver(Solver, ABC):
    """A solver that visits exactly the given grid; subclasses implement `step` (and may `prepare`)."""

    def fewest_steps(self, sde: object) -> int:
        """Fewest grid steps below which this solver's steps are too long to be trusted on ``sde``.

        A higher-order correction evaluated across a step that spans most of the noise range
        (from ``sigma ~ 1`` to ``sigma ~ 0.01`` in one or two steps) can throw samples far past the
        data; below this count `integrate` warns (`solvers.stability.warn_if_too_coarse`).
        Default 1 (never); the solvers that diverge so override it with their measured limit.
        """
        return 1

    coarse_grid_reason: tuple[str, str] = HIGHER_ORDER_TOO_COARSE
    """``(why, instead)`` quoted by the coarse-grid warning (`solvers.stability.warn_if_too_coarse`)."""

    def coarse_grid_measure(self, sde: object) -> str:
        """How `fewest_steps` was measured on ``sde``, quoted by the coarse-grid warning."""
        return COARSE_GRID_MEASURE

    def prepare(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        """Per-solve precomputation into ``ctx.memory`` before the first step; default: nothing."""

    @abstractmethod
    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        """Advance ``x: (B, *D)`` from ``t`` to ``t_next < t``; return the new state."""

    def integrate(self, dynamics: ReverseDynamics, x: Tensor, ctx: SolveContext) -> Tensor:
        warn_if_too_coarse(type(self).__name__, self.fewest_steps(dynamics.sde), ctx.n_steps, self.coarse_grid_reason,
                           self.coarse_grid_measure(dynamics.sde))
        self.prepare(dynamics, ctx)
        times = ctx.times
        for i in range(ctx.n_steps):
            ctx.index = i
            x = self.step(dynamics, x, times[i], times[i + 1], ctx)
            x = ctx.accept(times[i + 1], x)
        return x
