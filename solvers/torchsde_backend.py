"""torchsde's fixed-step SDE methods on the reverse-time dynamics, time reversal done for the user.

The reverse family (Song et al. 2021, eq. 6; ``lam = 1`` is the reverse SDE) runs from ``T``
down to ``eps``::

    dx = F(x, t) dt + lam g(t) dW_bar,      F = f - (1 + lam^2)/2 g^2 s,

but torchsde integrates forward in time. With ``s = -t`` (exact in floating point, so every
grid time is recovered bit for bit) the same process reads, for increasing ``s``::

    dx = -F(x, -s) ds + lam g(-s) dB(s),

where the increment of ``B`` over ``[s_a, s_b]`` is the reverse-time increment over
``[t_b, t_a]`` that `EulerMaruyama` adds. The state is
flattened to torchsde's ``(B, prod D)``. The noise is additive (``g`` does not depend on
``x``), so Itô and Stratonovich forms coincide and each method gets the ``sde_type`` it is
written for (Itô: euler, milstein, srk; Stratonovich: midpoint, heun, euler_heun,
reversible_heun). Strong order 1 for all methods with additive noise, 1.5 for srk (SRA1 of
Rößler 2010).

Steps land exactly on the given grid (any grid, not only uniform ones): we call the step
function of torchsde's solver for each grid interval, instead of ``torchsde.sdeint``, whose
fixed-step loop would not land on the points of a non-uniform grid and whose argument
checks evaluate the drift once more per call. The solver classes are reached through
``torchsde._core`` (tested with torchsde 0.2.6).

Randomness: the Brownian increments are those of the solve's
`NoiseSource`, one query per grid interval (every method here asks for
exactly one increment per step), wrapped as a ``torchsde.BaseBrownian``. So with the same
`BrownianPath` or the same seed (`GaussianNoise`),
``torchsde_euler`` sees exactly the increments of ``EulerMaruyama(final_noise=True)``. ``srk``
also needs the space-time Lévy area ``H ~ N(0, h/12)`` (independent of the increment): it is
drawn from the noise source's ``normal()``, which is exact in law for i.i.d. noise; a
`BrownianPath` stores no Lévy area, so ``srk`` refuses it.

Score evaluations per step (counted by the dynamics, never self-reported): euler 1,
milstein 1, euler_heun 1, reversible_heun 1 (+1 at the start), midpoint 2, heun 2, srk 2.
(torchsde's SRA1 step asks for the drift at the step's start twice; a small cache of the last
drift values, keyed by the identity of the state tensor, answers the repeat.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torchsde
from torch import Tensor

from .base import DynamicsKind, FixedGridSolver, SolveContext
from .defaults import sde_solver_grid
from .dynamics import ReverseDynamics
from .grids import get_grid
from .noise import BrownianPath, NoiseSource
from .registry import lookup
from .stability import EXPLICIT_METHODS, warn_if_unstable
from .utils import append_dims, batch_time
from .warning_types import MethodLimitWarning, warn

__all__ = ["TORCHSDE_METHODS", "TorchSDE"]

Method = Literal["euler", "milstein", "srk", "midpoint", "reversible_heun", "heun", "euler_heun"]

TORCHSDE_METHODS: Mapping[str, tuple[str, str, float]] = {
    "euler": ("ito", "additive", 1.0),
    "milstein": ("ito", "additive", 1.0),
    "srk": ("ito", "additive", 1.5),
    "midpoint": ("stratonovich", "additive", 1.0),
    "heun": ("stratonovich", "additive", 1.0),
    "euler_heun": ("stratonovich", "additive", 1.0),
    # Reversible Heun needs g itself (not only g v); "diagonal" lets g be (B, d) instead of a
    # (B, d, d) matrix. The noise is still additive.
    "reversible_heun": ("stratonovich", "diagonal", 1.0),
}
"""Accepted methods -> (torchsde sde_type, torchsde noise_type, strong order with additive noise)."""


def _torchsde_solver(method: str, sde: Any, bm: torchsde.BaseBrownian) -> Any:
    """Instantiate torchsde's fixed-step solver object for ``method`` (torchsde internals)."""
    try:
        from torchsde._core.base_sde import ForwardSDE
        from torchsde._core.methods import select
    except ImportError as exc:  # pragma: no cover - depends on the installed torchsde
        raise ImportError(
            f"solvers.torchsde_backend needs torchsde's solver classes (torchsde._core); "
            f"installed torchsde {torchsde.__version__} does not provide them"
        ) from exc
    solver_cls = select(method=method, sde_type=sde.sde_type)
    # dt, tolerances and dt_min are unused: we call step() on our own grid.
    return solver_cls(
        sde=ForwardSDE(sde), bm=bm, dt=1.0, adaptive=False, rtol=0.0, atol=0.0, dt_min=0.0, options={}
    )


def _stamp(y: Tensor) -> int | Tensor:
    """What tells that ``y`` was not changed in place: its version counter, or (inference
    tensors, e.g. under ``torch.inference_mode()``, have none) a copy of its values."""
    return y.clone() if y.is_inference() else y._version


def _unchanged(y: Tensor, stamp: int | Tensor) -> bool:
    """``y`` still holds what it held when `_stamp` took ``stamp``."""
    return torch.equal(stamp, y) if isinstance(stamp, Tensor) else stamp == y._version


class _ReversedSDE:
    """The reverse dynamics in torchsde's form: forward time ``s = -t``, flat state ``(B, d)``.

    ``f(s, y) = -F(y, -s)`` and ``g(s, y) = lam g(-s)`` in the shape of the declared noise type
    (``(B, d)`` diagonal, ``(B, d, d)`` additive), so `torchsde.sdeint` accepts it too.
    """

    def __init__(self, dynamics: ReverseDynamics, shape: torch.Size, sde_type: str, noise_type: str) -> None:
        self.dynamics = dynamics
        self.shape = shape
        self.sde_type = sde_type
        self.noise_type = noise_type
        self._cache: list[tuple[float, Tensor, int | Tensor, Tensor]] = []

    def f(self, s: float, y: Tensor) -> Tensor:
        # Re-use the drift at a point asked for again within a step (same time, same tensor).
        for s_c, y_c, stamp, out in self._cache:
            if y_c is y and s_c == s and _unchanged(y, stamp):
                return out
        x = y.reshape(self.shape)
        # Reverse drift F = f - (1 + lam^2)/2 g^2 score at t = -s; negated for increasing s.
        out = -self.dynamics.drift(x, batch_time(-s, x)).reshape(y.shape)
        self._cache = [(s, y, _stamp(y), out), *self._cache[:3]]
        return out

    def g(self, s: float, y: Tensor) -> Tensor:
        # lam g(t) in torchsde's shape for the declared noise type: (B, d) for "diagonal",
        # (B, d, d) = lam g(t) I for "additive" (a general (B, d, m) matrix with m = d).
        diag = append_dims(self.dynamics.diffusion(batch_time(-s, y)), y.ndim).expand_as(y)
        return diag if self.noise_type == "diagonal" else torch.diag_embed(diag)

    def g_prod(self, s: float, y: Tensor, v: Tensor) -> Tensor:
        # lam g(t) dW, the same product EulerMaruyama forms.
        return append_dims(self.dynamics.diffusion(batch_time(-s, y)), v.ndim) * v


class _NoiseBrownian(torchsde.BaseBrownian):
    """A `NoiseSource` seen by torchsde as a Brownian motion in ``s = -t``.

    ``bm(s_a, s_b)`` is ``noise.increment(-s_a, -s_b, like)``, flattened to ``(B, d)``. With
    ``return_U`` it also returns ``U = h (W/2 + H)``, ``H ~ N(0, h/12)`` from ``noise.normal``.
    """

    def __init__(self, noise: NoiseSource, like: Tensor, *, levy_area: bool) -> None:
        super().__init__()
        self._noise = noise
        self._like = like
        self._flat = (like.shape[0], like[0].numel())
        self._levy = "space-time" if levy_area else "none"

    def __call__(self, ta: float, tb: float | None = None, return_U: bool = False, return_A: bool = False) -> Any:
        if tb is None:
            raise ValueError("the reverse-time Brownian motion answers interval queries only")
        if return_A or (return_U and self._levy == "none"):
            raise ValueError(f"this noise source provides no Lévy area ({'A' if return_A else 'U'})")
        w = self._noise.increment(-float(ta), -float(tb), self._like).reshape(self._flat)
        if not return_U:
            return w
        # Space-time Lévy area: H ~ N(0, h/12), independent of the increment W.
        h = float(tb) - float(ta)
        big_h = math.sqrt(h / 12.0) * self._noise.normal(self._like).reshape(self._flat)
        return w, h * (0.5 * w + big_h)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise={self._noise!r}, shape={self._flat})"

    @property
    def dtype(self) -> torch.dtype:
        return self._like.dtype

    @property
    def device(self) -> torch.device:
        return self._like.device

    @property
    def shape(self) -> tuple[int, int]:
        return self._flat

    @property
    def levy_area_approximation(self) -> str:
        return self._levy


class TorchSDE(FixedGridSolver):
    """torchsde's fixed-step SDE methods on the reverse dynamics (Euler–Maruyama by default).

    Runs torchsde's ``method`` step by step on the given grid, for the reverse-time family
    ``dx = [f - (1+lam^2)/2 g^2 s] dt + lam g dW_bar`` (Song et al. 2021, eq. 6 at ``lam = 1``),
    reparameterised to increasing time ``s = -t`` and a flat ``(B, prod D)`` state. Noise is
    added on every step, the last included (like ``EulerMaruyama(final_noise=True)``). Needs
    only the SDE's drift and diffusion.

    Methods (registered as ``torchsde_<method>``; strong orders for additive noise):

    * ``euler`` (1 NFE/step), ``milstein`` (Itô; its correction ``g g' (dW^2 - dt)/2`` vanishes
      for additive noise, so it equals Euler–Maruyama), ``euler_heun`` (1 NFE): strong order 1;
    * ``midpoint``, ``heun`` (Stratonovich, 2 NFE): strong order 1;
    * ``srk``: stochastic Runge–Kutta SRA1 (Rößler 2010), strong order 1.5, 2 NFE; needs the
      space-time Lévy area, so it refuses a shared `solvers.noise.BrownianPath`;
    * every method but ``reversible_heun`` warns, like `solvers.EulerMaruyama`, when the grid's
      steps are outside its stability region for sharp data: the variance recursion of the
      method's own step on one Gaussian mode (`solvers.stability`, matched to runs within 1%).
      On the default grids it warns at 11 steps or fewer under VE (``euler``, ``milstein``,
      ``euler_heun``, ``midpoint``), 13 (``srk``) and 34 (``heun``); under sub-VP at 14, 16, 13
      and 17 (``euler``, ``srk``, ``midpoint``, ``heun``); under VP at 6, 6, 4 and 9;
    * ``reversible_heun`` (Kidger et al. 2021): 1 NFE per step (+1 at the start). Its auxiliary
      state follows a leapfrog-like recursion that is only weakly stable on dissipative
      dynamics: on the VP reverse SDE it needs a few hundred steps before its error is small.
      Prefer it for its algebraic reversibility, not for sampling: on a sharp 8-mode target it
      did not reach ``p_0`` within 1000 steps on VP, sub-VP or VE (it warns).

    Args:
        method: one of `TORCHSDE_METHODS`. Sets ``order`` and ``strong_order``.
    """

    order: float = 1.0
    strong_order: float | None = 1.0
    dynamics_kind: DynamicsKind = "any"
    stochastic: bool = True

    def __init__(self, method: Method = "euler") -> None:
        sde_type, noise_type, order = lookup(TORCHSDE_METHODS, method, "torchsde method")
        self.method = method
        self.order = self.strong_order = order

    def grid_for(self, sde: object) -> str:
        """``logsnr`` on VP / sub-VP, ``uniform_logsnr`` on VE (`solvers.defaults.sde_solver_grid`)."""
        return sde_solver_grid(sde)

    def diagnose(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        """Warn when the grid's steps are outside the explicit method's stability region."""
        if self.method in EXPLICIT_METHODS:  # every method but reversible Heun, which warns in prepare
            warn_if_unstable(
                f"torchsde_{self.method}", dynamics.sde, ctx.grid, dynamics.lam,
                get_grid(self.grid_for(dynamics.sde)), method=self.method, stacklevel=4,
            )

    def prepare(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        """Check the noise source; the torchsde objects are built on the first step (they need ``x``)."""
        if self.method == "reversible_heun":
            warn(
                "torchsde 'reversible_heun' does not sample p_0 within 1000 steps on VP, sub-VP or VE "
                "(its auxiliary state is only weakly stable on the reverse SDE: the within-mode spread "
                "of a sharp mixture came out 24-170x too wide, and two equal-weight modes of stds 0.2 and "
                "0.4 got weights 0.03 / 0.97 at 127 steps, 0.29 / 0.71 at 1000; docs/defaults.md); use torchsde_euler "
                "or euler_maruyama",
                MethodLimitWarning,
            )
        if self.method == "srk" and isinstance(ctx.noise_source, BrownianPath):
            raise ValueError(
                "torchsde 'srk' needs the space-time Lévy area of the Brownian motion, which "
                "solvers.noise.BrownianPath does not store; use i.i.d. noise (a seed or "
                "GaussianNoise) or another method for a shared path"
            )

    def _start(self, dynamics: ReverseDynamics, x: Tensor, noise: NoiseSource) -> dict[str, Any]:
        """Build the torchsde view, Brownian wrapper and solver object for this solve."""
        sde_type, noise_type, _ = TORCHSDE_METHODS[self.method]
        view = _ReversedSDE(dynamics, x.shape, sde_type, noise_type)
        bm = _NoiseBrownian(noise, x, levy_area=self.method == "srk")
        return {"solver": _torchsde_solver(self.method, view, bm), "extra": None, "out": None}

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        mem = ctx.memory
        if "torchsde" not in mem:
            mem["torchsde"] = self._start(dynamics, x, ctx.noise)
        state = mem["torchsde"]
        solver = state["solver"]
        y = x.reshape(x.shape[0], -1)
        extra = state["extra"]
        out = state["out"]
        if extra is None or out is None or x is not out[0] or not _unchanged(x, out[1]):
            # First step, or a hook replaced the state: (re)initialise the solver's carried
            # state (reversible Heun keeps the drift/diffusion at its auxiliary state).
            extra = solver.init_extra_solver_state(-t, y)
        # One torchsde step from s = -t to s' = -t_next (> s).
        y_next, extra = solver.step(-t, -t_next, y, extra)
        x_next: Tensor = y_next.reshape(x.shape)
        state["extra"], state["out"] = extra, (x_next, _stamp(x_next))
        return x_next
