"""Options of `likelihood`, grouped by what they control.

* `IntegratorOptions`: which integrator, its tolerances, the fixed-grid steps and grid, and
  the pilot that builds the `"auto"` grid.
* `DivergenceOptions`: exact divergence or Hutchinson probes.
* `DensityOptions`: which density is estimated (the data's `log p_0` or the marginal
  `log p_eps`), on which interval, with which prior at `T`.
* `RunOptions`: chunking, dtype/device, randomness, gradients, checks, progress.

`LikelihoodOptions.from_kwargs` maps the flat keyword arguments of `likelihood` (the names of
the fields below) onto the groups, so existing calls keep working.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from solvers.grids import GRIDS
from solvers.inputs import as_real, check_device, check_dtype, check_generator, check_seed
from solvers.protocol import DiffusionSDE
from solvers.step_control import PIDController

from .divergence import PROBES, ProbeKind
from .flow import DivergenceKind, ProbeRefresh
from .integrators import IntegratorSpec, resolve_integrator

__all__ = [
    "IntegratorOptions",
    "DivergenceOptions",
    "DensityOptions",
    "RunOptions",
    "LikelihoodOptions",
    "Prior",
    "Density",
    "checked_prior",
    "check_interval",
]

Prior = Callable[[Tensor], Tensor]
Density = Literal["auto", "data", "marginal"]


def _given(options: Any, name: str) -> bool:
    """Whether option ``name`` of a frozen options dataclass differs from its declared default."""
    default = next(f.default for f in dataclasses.fields(options) if f.name == name)
    return bool(getattr(options, name) != default)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def checked_prior(prior: Prior) -> Prior:
    """`prior` with every output checked: a `(B,)` tensor for `x_T: (B, *D)`, finite where `x_T` is.

    A wrong shape would otherwise be broadcast onto every point (a scalar, `[:1]`) or fail in
    an indexing error far from its cause.

    Raises (at each call):
        TypeError: the prior returned no tensor.
        ValueError: the output is not `(B,)`, or is NaN/inf at a finite `x_T`.
    """

    def call(x_T: Tensor) -> Tensor:
        out = prior(x_T)
        b = x_T.shape[0]
        if not isinstance(out, Tensor):
            raise TypeError(f"prior returned {type(out).__name__}; it must return a tensor of shape (B,) = ({b},), "
                            f"the log-density of each x_T {tuple(x_T.shape)}")
        if tuple(out.shape) != (b,):
            raise ValueError(f"prior returned shape {tuple(out.shape)}; it must return shape (B,) = ({b},), one "
                             f"log-density per x_T {tuple(x_T.shape)} (e.g. sum over the data dimensions)")
        bad = ~torch.isfinite(out.detach()) & torch.isfinite(x_T.detach().reshape(b, -1)).all(dim=1)
        if bool(bad.any()):
            rows = bad.nonzero().flatten()
            shown = ", ".join(str(i) for i in rows[:5].tolist()) + (", ..." if rows.numel() > 5 else "")
            far = float(x_T.detach().reshape(b, -1)[rows].abs().max())
            raise ValueError(f"prior returned NaN/inf at {rows.numel()} finite x_T (rows {shown}); it must "
                             f"return a finite log-density. The largest |x_T| there is {far:.3g}: if that is far "
                             f"beyond the prior's scale, the ODE was driven there by a huge score (check the "
                             f"model), and the log-density overflows {out.dtype}")
        return out

    return call


def check_interval(sde: DiffusionSDE, eps: Any, T: Any) -> tuple[float, float]:
    """`(eps, T)` as floats if `0 < eps < T <= sde.T` (the model is defined up to `sde.T` only).

    Raises:
        TypeError: `eps` or `T` is not a real number.
        ValueError: a non-finite value, `T` past the SDE's horizon, or not `0 < eps < T`.
    """
    lo, hi, horizon = as_real(eps, "eps"), as_real(T, "T"), float(sde.T)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"eps and T must be finite, got eps={lo}, T={hi}")
    if hi > horizon:
        raise ValueError(f"T={hi:g} exceeds the SDE's horizon sde.T={horizon:g}: the score and the prior are "
                         f"defined on [0, sde.T] only; pass T <= {horizon:g} or leave T unset")
    if not (0.0 < lo < hi):
        raise ValueError(f"need 0 < eps < T, got eps={lo}, T={hi}")
    return lo, hi


@dataclass(frozen=True)
class IntegratorOptions:
    """How the augmented ODE is integrated.

    Attributes:
        integrator: a name of `INTEGRATOR_TABLE` (or a solver-style spelling, e.g. `"ode_rk45"`).
        steps: fixed grids: number of intervals, or `"auto"` (chosen on the pilot to reach
            `target_error`, see `choose_steps`; where no count up to 512 reaches it, or the
            last is more than 10x above it, the batch is solved by `dopri5`: `pilot.grid_fails`).
        grid: fixed grids: `"auto"` (a pilot solve's accepted times, resampled), a grid name
            of `solvers.grids`, or an explicit increasing grid.
        target_error: `steps="auto"`: mean `|log p|` error per point (nats) on the pilot.
        rtol, atol: adaptive tolerances, also of the pilot (default `1e-5` in any dimension, see
            `tolerances`; `1e-6` for the pilot of `steps="auto"`, which also holds the answer's
            error to `0.1 target_error` (`pilot.reference_goal`), and `1e-5 sqrt(2/d)` for one
            that shapes a grid of a given number of steps, `pilot.grid_pilot_tolerance`). The torch adaptive
            integrators also hold the answer's error from each step (`s . dx` and the
            log-density columns' error) to `atol` (`AugmentedFlow.answer_sensitivity`).
        logp_scale: weight `w` of the log-density columns in step-size control (default 1;
            `1e-6` with `probe_refresh="eval"`). The torch adaptive integrators hold those
            columns to `atol / w` per step, with no part relative to the accumulated
            log-density (`AugmentedFlow.relative_weights`); SciPy's apply `rtol` to them too.
            A pilot that shapes a fixed grid uses `w = 10` under the norm relative to every
            entry (its grids were measured that way); one that answers the whole batch is the
            main solve.
        per_sample, controller: torch adaptive integrators: per-sample error norm and the
            step-size controller.
        pilot_size: samples of the pilot solve (a seeded random subset).
        max_steps: step budget of the adaptive integrators (attempted steps; default 10^4) and
            the SciPy ones (accepted steps; default 10^5), the pilot's `dopri5` solve included;
            past it they raise (`solvers.step_control.MaxStepsExceeded` for the torch ones).
        state_scale: `rk4_simpson`: `"marginal"` (default) integrates `x / r(t)` with
            `r = sqrt(alpha^2 c^2 + sigma^2)`, `c^2` the data's mean square (`state_scale`),
            where `r(T) / r(eps)` is outside `[0.5, 2]` (VE) and the SDE has
            `marginal_coeffs`; otherwise, or with `"none"`, `x` itself.
    """

    integrator: str = "dopri5"
    steps: int | Literal["auto"] = 32
    grid: str | Tensor | Sequence[float] = "auto"
    target_error: float = 5e-4
    rtol: float | None = None
    atol: float | None = None
    logp_scale: float | None = None
    per_sample: bool = False
    controller: PIDController | None = None
    pilot_size: int = 256
    max_steps: int | None = None
    state_scale: Literal["marginal", "none"] = "marginal"

    @property
    def spec(self) -> IntegratorSpec:
        """The resolved integrator (raises on an unknown name)."""
        return resolve_integrator(self.integrator)

    @property
    def auto_grid(self) -> bool:
        """Whether the fixed grid comes from a pilot solve."""
        return isinstance(self.grid, str) and self.grid == "auto"

    def validate(self, divergence: DivergenceOptions, grad: bool) -> None:
        """Raise `ValueError` for inconsistent settings (messages name the option and the fix)."""
        spec = self.spec
        if grad and spec.kind == "scipy":
            raise ValueError(f"grad=True needs a torch integrator; {spec.name!r} runs in NumPy")
        _positive_int("pilot_size", self.pilot_size)
        if self.max_steps is not None:
            _positive_int("max_steps", self.max_steps)
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 < value < math.inf):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")
        if self.state_scale not in ("marginal", "none"):
            raise ValueError(f"state_scale must be 'marginal' or 'none', got {self.state_scale!r}")
        if isinstance(self.grid, str) and not self.auto_grid and self.grid not in GRIDS:
            raise ValueError(f"unknown grid {self.grid!r}; valid: auto, {', '.join(GRIDS)} or an "
                             "increasing sequence of times")
        if self.steps == "auto":
            if not self.auto_grid or spec.kind != "fixed":
                raise ValueError("steps='auto' needs a fixed-grid integrator and grid='auto' (the pilot "
                                 "solve is what the error is measured against)")
            if divergence.fresh:
                raise ValueError("steps='auto' needs a deterministic field: divergence='exact' or "
                                 "probe_refresh='solve'")
            if not (0.0 < self.target_error < float("inf")):
                raise ValueError(f"target_error must be positive and finite, got {self.target_error}")
        elif isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer or 'auto', got {self.steps!r}")
        if not isinstance(self.grid, str) and _given(self, "steps"):
            n = len(self.grid) - 1 if hasattr(self.grid, "__len__") else "its"
            raise ValueError(f"an explicit grid sets the steps itself ({n} intervals); steps={self.steps!r} "
                             "would be ignored: pass one or the other (steps= with grid='auto' or a grid name)")
        if self.steps != "auto" and _given(self, "target_error"):
            warnings.warn(f"target_error= sets the step count of steps='auto' (integrator='rk4_simpson'); "
                          f"with steps={self.steps!r} and integrator={spec.name!r} it is ignored: pass "
                          "steps='auto' to use it, or rtol=/atol= for the adaptive integrators", stacklevel=5)
        if spec.kind != "fixed" and (_given(self, "steps") or not self.auto_grid):
            warnings.warn(
                f"steps= and grid= apply to the fixed-grid integrators (rk4_simpson, rk4, heun, euler); "
                f"integrator={spec.name!r} chooses its own steps and ignores them: pass "
                "integrator='rk4_simpson' to use them, or rtol=/atol= to set its accuracy", stacklevel=5)
        if self.max_steps is not None and spec.kind == "fixed" and not self.auto_grid:
            warnings.warn(f"max_steps= bounds adaptive solves; integrator={spec.name!r} on a given grid makes "
                          "none and ignores it", stacklevel=5)

    def tolerances(self) -> tuple[float, float]:
        """`(rtol, atol)` of the adaptive integrators: `1e-5` each unless given, in any dimension.

        The torch integrators hold the state to them and, by their goal, the answer's own error
        from each step (`s . dx` plus the log-density columns' error,
        `AugmentedFlow.answer_sensitivity`) to `atol`, whatever `d`. Before the goal, the
        state's RMS norm let the log-density's error grow with `d` (at `1e-5`: 1e-4 to 3e-4
        nats per point in 2-D, 8e-4 to 2.2e-3 in 32-D), and the default was `1e-5 sqrt(2/d)`;
        with the goal, `1e-5` is 0.5e-5 to 3.1e-5 nats per point off on sharp mixtures in 8-D to
        32-D, for 5-26% fewer evaluations than that scaled tolerance (docs/likelihood.md).
        """
        return (1e-5 if self.rtol is None else self.rtol, 1e-5 if self.atol is None else self.atol)


@dataclass(frozen=True)
class DivergenceOptions:
    """How `div F` is computed.

    Attributes:
        divergence: `"exact"` (`prod(D)` backward passes per evaluation) or `"hutchinson"`.
        probe: Hutchinson probe distribution, `"rademacher"` or `"gaussian"`.
        n_probes: probes per sample (Hutchinson only).
        probe_refresh: `"solve"` (probes fixed per solve, FFJORD) or `"eval"` (fresh probes at
            every evaluation); see `AugmentedFlow`.
    """

    divergence: DivergenceKind = "exact"
    probe: ProbeKind = "rademacher"
    n_probes: int = 1
    probe_refresh: ProbeRefresh = "solve"

    @property
    def fresh(self) -> bool:
        """Fresh probes at every evaluation (a stochastic field)."""
        return self.divergence == "hutchinson" and self.probe_refresh == "eval"

    def validate(self) -> None:
        """Raise `ValueError` on an unknown kind or an inconsistent probe count."""
        if self.divergence not in ("exact", "hutchinson"):
            raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {self.divergence!r}")
        if self.probe not in PROBES:
            raise ValueError(f"probe must be one of {', '.join(PROBES)}, got {self.probe!r}")
        _positive_int("n_probes", self.n_probes)
        if self.probe_refresh not in ("solve", "eval"):
            raise ValueError(f"probe_refresh must be 'solve' or 'eval', got {self.probe_refresh!r}")
        if self.divergence == "exact":
            given = [f"{k}={getattr(self, k)!r}" for k in ("n_probes", "probe", "probe_refresh")
                     if _given(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)} applies to divergence='hutchinson' only "
                                 "(the default divergence='exact' draws no probes)")


@dataclass(frozen=True)
class DensityOptions:
    """Which density is estimated.

    Attributes:
        density: `"data"`: the data density `log p_0(x)` (the ODE runs from a small end time
            `t_end`, `data_end_time(sde)`, or `eps` when given, and the last piece `[0, t_end]`
            is added by `data_correction`). `"marginal"`: `log p_eps(x)`, `x` treated as a
            sample at `eps` (Song et al. 2021's likelihood computation). `"auto"` (default):
            `"data"` unless `eps` is given.
        eps, T: integration interval, `0 < eps < T <= sde.T` (defaults: `data_end_time(sde)`
            for `"data"`, `sde.eps` for `"marginal"`; `sde.T`).
        prior: log-density at `T`, `x_T: (B, *D) -> (B,)` (default `sde.prior_log_prob`);
            its output is checked (`checked_prior`): shape `(B,)`, finite.
    """

    density: Density = "auto"
    eps: float | None = None
    T: float | None = None
    prior: Prior | None = None

    def resolved(self) -> Literal["data", "marginal"]:
        """`"data"` or `"marginal"` (what `"auto"` means for these options).

        Raises:
            ValueError: an unknown `density`, or a `prior` that is not callable.
        """
        if self.prior is not None and not callable(self.prior):
            raise ValueError(f"prior must be a function x_T: (B, *D) -> (B,) log-density, got "
                             f"{type(self.prior).__name__} {self.prior!r}")
        if self.density not in ("auto", "data", "marginal"):
            raise ValueError(f"density must be 'auto', 'data' or 'marginal', got {self.density!r}")
        if self.density == "auto":
            return "data" if self.eps is None else "marginal"
        return self.density


@dataclass(frozen=True)
class RunOptions:
    """How the computation is run.

    Attributes:
        batch_size: evaluate the data in chunks of this many samples (memory stays that of one
            chunk; the `"auto"` grid is built once and shared, so fixed-grid results do not
            depend on the chunking).
        dtype, device: of the computation (default: those of `x`; integers become the default
            float dtype); a dtype may be named (`"float64"`). Half precision is refused, and so
            is a device this machine or torch build lacks.
        seed, generator: randomness of the probes and of the pilot subset: ``seed`` (default
            0; ``None``: a seed drawn from torch's global generator) or a ``generator``, which replaces the default seed
            (another seed together with a generator is refused).
        grad: keep autograd graphs so the result can be differentiated (torch integrators).
        check_finite: raise on NaN/inf scores.
        progress: tqdm progress bar.
        store: where finished pieces are kept so that an interrupted run resumes (a
            `scoresde.likelihood.runner.ChunkStore`, e.g. the command line's folder of chunk
            files): the pilot and every finished chunk, each with the generator's state after
            it, so a resumed run gives the numbers of an uninterrupted one. Not with `grad`.
    """

    batch_size: int | None = None
    dtype: torch.dtype | str | None = None
    device: torch.device | str | None = None
    seed: int | None = 0
    generator: torch.Generator | None = None
    grad: bool = False
    check_finite: bool = True
    progress: bool = False
    store: Any = None

    def validate(self) -> None:
        """Raise `ValueError` for a bad chunk size, dtype, device or seed, a `generator` with a
        seed other than the default, or `store` with `grad` (`TypeError` for a generator that is not
        one, or a `store` that is not a `ChunkStore`)."""
        if self.dtype is not None:
            check_dtype(self.dtype)
        device = check_device(self.device) if self.device is not None else None
        check_seed(self.seed)
        if device is not None:
            check_generator(self.generator, device)
        elif self.generator is not None and not isinstance(self.generator, torch.Generator):
            check_generator(self.generator, torch.device("cpu"))
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)
        if self.seed not in (None, 0) and self.generator is not None:  # 0: the default, left as is
            raise ValueError(f"pass either seed or generator, not both (got seed={self.seed} and a generator)")
        if self.store is not None and self.grad:
            raise ValueError("store= keeps finished chunks on disk, which grad=True (autograd graphs) cannot")
        if self.store is not None:
            missing = [m for m in ("load_pilot", "save_pilot", "load_chunk", "save_chunk")
                       if not callable(getattr(self.store, m, None))]
            if missing:
                raise TypeError(
                    f"store must be a scoresde.likelihood.runner.ChunkStore (load_pilot, save_pilot, "
                    f"load_chunk, save_chunk); got {type(self.store).__name__} {self.store!r}, without "
                    f"{', '.join(missing)}. A folder path is not taken here: the library cannot tell whether "
                    "stored chunks came from the same score; `scoresde likelihood --out DIR` keeps them in "
                    "a folder checked against its settings")


_GROUPS = {"integration": IntegratorOptions, "divergence": DivergenceOptions,
           "density": DensityOptions, "run": RunOptions}


@dataclass(frozen=True)
class LikelihoodOptions:
    """All options of `likelihood`, in four groups (each a frozen dataclass)."""

    integration: IntegratorOptions = field(default_factory=IntegratorOptions)
    divergence: DivergenceOptions = field(default_factory=DivergenceOptions)
    density: DensityOptions = field(default_factory=DensityOptions)
    run: RunOptions = field(default_factory=RunOptions)

    @classmethod
    def names(cls) -> dict[str, str]:
        """Flat option name -> its group (`"steps" -> "integration"`, ...)."""
        return {f.name: group for group, klass in _GROUPS.items() for f in dataclasses.fields(klass)}

    def replace(self, **flat: Any) -> LikelihoodOptions:
        """A copy with flat options (`steps=16`, `divergence="hutchinson"`, ...) changed.

        Raises:
            TypeError: an unknown option name (the message lists the valid ones).
        """
        where = self.names()
        unknown = sorted(k for k in flat if k not in where)
        if unknown:
            raise TypeError(f"unknown likelihood option(s) {', '.join(unknown)}; valid: {', '.join(sorted(where))}")
        groups: dict[str, dict[str, Any]] = {}
        for k, v in flat.items():
            groups.setdefault(where[k], {})[k] = v
        return dataclasses.replace(
            self, **{g: dataclasses.replace(getattr(self, g), **kw) for g, kw in groups.items()})

    @classmethod
    def from_kwargs(cls, **flat: Any) -> LikelihoodOptions:
        """Options from the flat keyword arguments of `likelihood`."""
        return cls().replace(**flat)

    def validate(self) -> None:
        """Check every group (raises `ValueError` naming the option)."""
        self.divergence.validate()
        self.integration.validate(self.divergence, self.run.grad)
        self.run.validate()
        self.density.resolved()
