"""``grid="auto"``: a time grid shaped by the dynamics, from a pilot adaptive solve.

A cheap pilot integrates the probability-flow ODE on a small batch with the adaptive
Dormand-Prince pair (``solvers.adaptive_ode.solve_adaptive``), in the EDM variables of
Karras et al. 2022 with the log noise level ``u = ln S`` (``S = sigma/alpha``,
``y = x/alpha``) as the independent variable::

    dy/du = S dy/dS = y - D(y; S),        D = E[x_0 | x_t]  (Tweedie)

The accepted pilot steps ``h_k`` (in ``u``) are small where the solution bends, so their
density ``rho(u) = 1/h_k`` says where a fixed-grid solver needs steps. For a method of
local order ``p`` with local error ``C(u) h^(p+1)``, spreading the global error evenly
gives the step density ``C^(1/(p+1))``; the pilot's 5th-order steps measure
``C_5 ~ h_5^-6``, so the target density is ``rho^gamma`` with ``gamma`` about 1-2 (it cannot
know the fixed-grid method's own error constant; ``gamma`` is a parameter). The grid is
the equidistribution of ``rho^gamma`` (plus a uniform share ``mix`` of the total, so
that no stretch of ``u`` is left empty) into ``n`` equal masses, mapped back to times.

The pilot is cached per (score object, SDE and its schedule, sample shape, dtype, device,
settings), so repeated calls with one score object pay it once (a closure made per call, as
``model.score_fn(sde)`` is, is a new object each time: build it once and reuse it); ``pilot_cost`` reports its NFE (on ``pilot`` samples). An entry holds
only a weak reference to the score and is used only while that very object is alive (a new
closure that happens to reuse a freed one's address gets its own pilot, and the entry is
dropped when its score is freed); a score that is a ``torch.nn.Module``, a bound method of one,
or a function whose closure holds modules (``ScoreModel.score_fn(sde)``) also keys on their
parameters' and buffers' versions, so training them in place between calls invalidates the
entry. A score that changes in any other way between calls (weights written through
``.data``, a model reached through other objects) needs ``clear_cache()``. A score that
takes no weak reference is never cached.
"""

from __future__ import annotations

import inspect
import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .adaptive_ode import solve_adaptive
from .dynamics import ProbabilityFlowODE
from .grids import equidistribute
from .marginals import edm_sigma, time_from_edm_sigma
from .protocol import DiffusionSDE, ScoreFn
from .utils import batch_time

__all__ = ["auto_grid", "auto_grid_report", "pilot_steps", "pilot_cost", "clear_cache", "PilotReport"]


@dataclass(frozen=True)
class PilotReport:
    """What the grid's pilot cost: ``nfe`` evaluations on ``batch`` samples, ``seconds`` of wall
    time spent on it in this call (0 when ``cached``)."""

    nfe: int
    batch: int
    seconds: float
    cached: bool


@dataclass
class _Entry:
    owner: weakref.ref[Any]
    weights: tuple[tuple[int, int], ...]
    nodes: Tensor
    nfe: int


_CACHE: dict[tuple[object, ...], _Entry] = {}
CPU = torch.device("cpu")


def clear_cache() -> None:
    """Forget every cached pilot (e.g. after training, in place, a model a closure calls)."""
    _CACHE.clear()


def _owner(score: ScoreFn) -> tuple[Any, object]:
    """The object whose lifetime and weights the score's result depends on, and what to add to
    the key: a bound method's instance and function (each attribute access makes a new method
    object), else the callable itself."""
    if inspect.ismethod(score):
        return score.__self__, score.__func__
    return score, None


def _modules(owner: Any) -> list[torch.nn.Module]:
    """The modules a score's result depends on, as far as can be seen: the score itself, or the
    modules its closure holds (``ScoreModel.score_fn(sde)`` is a closure over the network)."""
    if isinstance(owner, torch.nn.Module):
        return [owner]
    cells = getattr(owner, "__closure__", None) or ()
    found = []
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, torch.nn.Module):
            found.append(value)
    return found


def _weights(owner: Any) -> tuple[tuple[int, int], ...]:
    """``(data_ptr, version)`` of the parameters and buffers of `_modules` (empty for anything
    else): in-place updates (optimizer steps, ``load_state_dict``, EMA updates) bump the versions;
    writes through ``.data`` do not (``clear_cache()`` after them)."""
    return tuple((int(p.data_ptr()), int(p._version))
                 for m in _modules(owner) for p in (*m.parameters(), *m.buffers()))


SCHEDULE_PROBES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
"""Fractions of ``[eps, T]`` at which the key reads ``alpha, sigma``: two SDEs of one class
without a ``config()`` (or with one that leaves the schedule out) get their own pilots."""


def _schedule(sde: DiffusionSDE) -> tuple[float, ...]:
    eps, T = float(sde.eps), float(sde.T)
    ts = torch.tensor([eps + f * (T - eps) for f in SCHEDULE_PROBES], dtype=torch.float64)
    alpha, sigma = sde.marginal_coeffs(ts)
    return (eps, T, *torch.cat([alpha.reshape(-1), sigma.reshape(-1)]).tolist())


def _key(sde: DiffusionSDE, owner: Any, func: object, shape: tuple[int, ...], pilot: int, rtol: float,
         seed: int, dtype: torch.dtype, device: torch.device) -> tuple[object, ...]:
    cfg = sde.config() if hasattr(sde, "config") else ()
    return (id(owner), func, type(sde).__name__, repr(cfg), _schedule(sde), tuple(shape[1:]), pilot, rtol,
            seed, str(dtype), str(device))


def _cached(key: tuple[object, ...], owner: Any) -> _Entry | None:
    entry = _CACHE.get(key)
    if entry is None:
        return None
    if entry.owner() is not owner or entry.weights != _weights(owner):
        del _CACHE[key]  # another object at a reused address, or the weights changed
        return None
    return entry


def pilot_steps(
    sde: DiffusionSDE,
    score: ScoreFn,
    shape: tuple[int, ...],
    *,
    pilot: int = 128,
    rtol: float = 1e-3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, int]:
    """Accepted nodes ``u_k = ln S`` (decreasing, ``(K + 1,)`` float64) of the pilot solve, and its NFE.

    Args:
        sde: the forward SDE (its ``eps`` and ``T`` are the ends).
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        shape: ``(B, *D)`` of the real run (only ``D`` is used).
        pilot: pilot batch size.
        rtol: relative and absolute tolerance of the pilot (per-sample error control).
        seed: seed of the pilot's prior sample.
        dtype, device: where the pilot runs (the score is called there; `solvers.sample` passes
            its run's).
    """
    nodes, nfe, _ = _pilot(sde, score, shape, pilot=pilot, rtol=rtol, seed=seed, dtype=dtype,
                           device=torch.device(device))
    return nodes, nfe


def _pilot(
    sde: DiffusionSDE, score: ScoreFn, shape: tuple[int, ...], *, pilot: int, rtol: float, seed: int,
    dtype: torch.dtype = torch.float64, device: torch.device = CPU,
    cache_as: tuple[ScoreFn, object] | None = None,
) -> tuple[Tensor, int, PilotReport]:
    """`pilot_steps` and what it cost in this call; ``cache_as = (score, tag)`` keys the cache on
    another callable than the one called (the user's, under a wrapper made per call)."""
    owner, func = _owner(score if cache_as is None else cache_as[0])
    key = _key(sde, owner, (func, None if cache_as is None else cache_as[1]), shape, pilot, rtol, seed,
               dtype, device)
    entry = _cached(key, owner)
    if entry is not None:
        return entry.nodes, entry.nfe, PilotReport(entry.nfe, pilot, 0.0, True)
    start = time.perf_counter()
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    s_T, s_eps = edm_sigma(sde, ends).tolist()
    gen = torch.Generator(device=device).manual_seed(seed)
    x_T = sde.prior_sample((pilot, *shape[1:]), generator=gen, dtype=dtype, device=device)
    dyn = ProbabilityFlowODE(sde, score)
    a_T, _ = sde.marginal_coeffs(ends[:1])

    def field(u: float, y: Tensor) -> Tensor:
        s = math.exp(u)
        t = float(time_from_edm_sigma(sde, [s])[0]) if s < s_T else sde.T
        alpha, _ = sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64))
        x = float(alpha[0]) * y
        return y - dyn.x0_pred(x, batch_time(t, x))

    _, info = solve_adaptive(
        field, x_T / float(a_T[0]), math.log(s_T), math.log(s_eps), rtol=rtol, atol=rtol, per_sample=True
    )
    nodes = info["t"]
    assert isinstance(nodes, Tensor)
    out, nfe = nodes.to(torch.float64), int(info["nfe"])  # type: ignore[call-overload]

    def forget(_: object, k: tuple[object, ...] = key) -> None:
        _CACHE.pop(k, None)

    try:  # the entry leaves the cache when the score object is freed
        ref = weakref.ref(owner, forget)
    except TypeError:  # no weak reference to this callable: not cached
        ref = None
    if ref is not None:
        _CACHE[key] = _Entry(ref, _weights(owner), out, nfe)
    return out, nfe, PilotReport(nfe, pilot, time.perf_counter() - start, False)


def pilot_cost(sde: DiffusionSDE, score: ScoreFn, shape: tuple[int, ...], **pilot_options: object) -> int:
    """NFE (on the pilot batch) of the cached pilot for these settings (runs it if needed)."""
    return pilot_steps(sde, score, shape, **pilot_options)[1]  # type: ignore[arg-type]


def auto_grid(sde: DiffusionSDE, score: ScoreFn, n: int, shape: tuple[int, ...], **options: Any) -> Tensor:
    """``n + 1`` decreasing times from ``T`` to ``eps`` equidistributing the pilot's step density:
    `auto_grid_report` without the report (``options``: its keywords ``gamma``, ``mix``,
    ``pilot``, ``rtol``, ``seed``, ``dtype``, ``device``, ``cache_as``)."""
    return auto_grid_report(sde, score, n, shape, **options)[0]


def auto_grid_report(
    sde: DiffusionSDE,
    score: ScoreFn,
    n: int,
    shape: tuple[int, ...],
    *,
    gamma: float = 1.0,
    mix: float = 0.1,
    pilot: int = 128,
    rtol: float = 1e-3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    cache_as: tuple[ScoreFn, object] | None = None,
) -> tuple[Tensor, PilotReport]:
    """``n + 1`` decreasing times from ``T`` to ``eps`` equidistributing the pilot's step density,
    and what the pilot cost (its evaluations are not the run's: `solvers.sample` reports them
    apart, in ``stats["pilot_nfe"]``).

    Args:
        sde, score, shape: the problem (``shape = (B, *D)`` of the run).
        n: number of grid intervals (>= 1).
        gamma: exponent on the pilot's step density ``1/h`` (see the module docstring).
        mix: share of the grid spread uniformly in ``ln S`` (0 <= mix < 1).
        pilot, rtol, seed, dtype, device: pilot settings (see ``pilot_steps``).
        cache_as: ``(callable, tag)`` to key the pilot cache on instead of ``score`` (for a
            wrapper built per call around the user's score).

    Returns:
        ``(n + 1,)`` float64 times, ``T`` first and ``eps`` last, and the `PilotReport`.

    Raises:
        ValueError: ``n < 1``, ``gamma <= 0`` or ``mix`` outside ``[0, 1)``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"number of steps must be a positive integer, got {n!r}")
    if not gamma > 0 or not 0 <= mix < 1:
        raise ValueError(f"need gamma > 0 and 0 <= mix < 1, got gamma={gamma}, mix={mix}")
    u, _, report = _pilot(sde, score, shape, pilot=pilot, rtol=rtol, seed=seed, dtype=dtype,
                          device=torch.device(device), cache_as=cache_as)
    h = (u[:-1] - u[1:]).abs()  # accepted step lengths, (K,)
    mass = h * h.pow(-gamma)  # integral of rho^gamma over each pilot step
    mass = (1 - mix) * mass / mass.sum() + mix * h / h.sum()
    u_grid = equidistribute(u, mass, n)  # from u_T down to u_eps
    ts = time_from_edm_sigma(sde, torch.exp(u_grid))
    ts[0], ts[-1] = float(sde.T), float(sde.eps)
    if not bool((ts[1:] < ts[:-1]).all()):  # coincident levels (tiny n): fall back to sorting out ties
        ts = torch.unique(ts).flip(0)
        if len(ts) != n + 1:
            raise ValueError(f"auto grid collapsed to {len(ts) - 1} distinct steps for n = {n}; use fewer steps")
    return ts, report
