"""Solver base classes: capability declarations, validation, and the shared fixed-grid loop.

A solver declares what it needs as class attributes (read by tests and by
:func:`solvers.sample`) and refuses dynamics that lack it with a message that says so.
Fixed-grid solvers implement only :meth:`FixedGridSolver.step`; the loop (grid checks,
noise, trajectory thinning, the per-step ``after_step`` hook, NFE and timing) lives here once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from .dynamics import ReverseDynamics
from .grids import check_grid
from .noise import GaussianNoise, NoiseSource
from .result import Solution
from .utils import batch_time

__all__ = ["Solver", "FixedGridSolver", "StepContext", "TrajectoryRecorder", "AfterStep"]

AfterStep = Callable[[Tensor, Tensor], Tensor]
"""``after_step(x: (B, *D), t: (B,)) -> x``: applied after every step (e.g. inpainting)."""


class TrajectoryRecorder:
    """Keeps at most ``max_frames`` evenly spaced states of a solve (first and last included)."""

    def __init__(self, enabled: bool, n_steps: int | None, max_frames: int | None) -> None:
        self.enabled = enabled
        self.frames: list[Tensor] = []
        self.times: list[float] = []
        self._keep: set[int] | None = None
        if enabled and n_steps is not None and max_frames is not None and n_steps + 1 > max_frames:
            if max_frames < 2:
                raise ValueError("max_frames must be at least 2")
            idx = torch.linspace(0, n_steps, max_frames).round().long().tolist()
            self._keep = set(idx)

    def add(self, index: int, t: float, x: Tensor) -> None:
        if self.enabled and (self._keep is None or index in self._keep):
            self.frames.append(x.detach().clone())
            self.times.append(t)

    def result(self) -> tuple[Tensor | None, Tensor | None]:
        if not self.enabled or not self.frames:
            return None, None
        return torch.stack(self.frames), torch.tensor(self.times, dtype=torch.float64)


class Solver(ABC):
    """Base class of every sampler.

    Class attributes (capabilities):
        order: deterministic / weak order of convergence in the step size.
        strong_order: strong order for SDE solvers (``None`` for ODE solvers).
        dynamics_kind: ``"ode"`` (needs the probability-flow ODE, ``lam = 0``), ``"sde"``
            (needs the reverse SDE, ``lam = 1``) or ``"any"``.
        stochastic: draws noise.
        needs_marginals: uses ``alpha(t), sigma(t)`` (exponential integrators, transitions).
        adaptive: chooses its own steps (the grid gives only the end points).
        default_grid: grid name :func:`solvers.sample` uses when none is given.
    """

    order: ClassVar[float] = 1.0
    strong_order: ClassVar[float | None] = None
    dynamics_kind: ClassVar[Literal["ode", "sde", "any"]] = "any"
    stochastic: ClassVar[bool] = False
    needs_marginals: ClassVar[bool] = False
    adaptive: ClassVar[bool] = False
    default_grid: ClassVar[str] = "uniform"

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
        if self.needs_marginals and not hasattr(dynamics.sde, "marginal_coeffs"):
            raise TypeError(f"{name} needs an SDE with marginal_coeffs (alpha(t), sigma(t))")

    @abstractmethod
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
    ) -> Solution:
        """Integrate ``dynamics`` from ``x`` at ``ts[0]`` along the decreasing grid ``ts``.

        Args:
            dynamics: reverse-time dynamics (its score is counted for ``nfe``).
            x: initial state ``(B, *D)`` at ``ts[0]`` (usually a prior sample at ``T``).
            ts: ``(n + 1,)`` strictly decreasing times inside ``[eps, T]``.
            noise: randomness for stochastic solvers (default: :class:`GaussianNoise`).
            generator: used by the default noise source.
            keep_trajectory: store (thinned) intermediate states.
            max_frames: at most this many stored states (``None``: all).
            after_step: hook applied to the state after every step.
        """

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


@dataclass
class StepContext:
    """Per-solve information handed to :meth:`FixedGridSolver.step`.

    Attributes:
        index: step number ``i`` (from ``t_i`` to ``t_{i+1}``), 0-based.
        n_steps: total number of steps.
        noise: the noise source of this solve.
        memory: solver-owned storage that persists across steps (multistep methods).
    """

    index: int
    n_steps: int
    noise: NoiseSource
    memory: dict[str, Any] = field(default_factory=dict)

    @property
    def is_last(self) -> bool:
        return self.index == self.n_steps - 1


class FixedGridSolver(Solver):
    """A solver that visits exactly the given grid; subclasses implement :meth:`step`."""

    @abstractmethod
    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: StepContext) -> Tensor:
        """Advance ``x: (B, *D)`` from ``t`` to ``t_next < t``; return the new state."""

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
    ) -> Solution:
        self.check_dynamics(dynamics)
        grid = check_grid(ts, dynamics.sde)
        times = grid.tolist()
        n = len(times) - 1
        noise = GaussianNoise(generator) if noise is None else noise
        ctx = StepContext(index=0, n_steps=n, noise=noise)
        rec = TrajectoryRecorder(keep_trajectory, n, max_frames)
        nfe0 = dynamics.nfe
        start = time.perf_counter()
        with torch.no_grad():
            rec.add(0, times[0], x)
            for i in range(n):
                ctx.index = i
                x = self.step(dynamics, x, times[i], times[i + 1], ctx)
                if after_step is not None:
                    x = after_step(x, batch_time(times[i + 1], x))
                rec.add(i + 1, times[i + 1], x)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        traj, traj_t = rec.result()
        return Solution(
            samples=x,
            nfe=dynamics.nfe - nfe0,
            times=grid,
            trajectory=traj,
            trajectory_times=traj_t,
            seconds=time.perf_counter() - start,
        )
