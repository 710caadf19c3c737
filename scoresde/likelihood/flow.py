"""The probability-flow ODE augmented with the integral of its divergence.

Instantaneous change of variables (Chen et al. 2018, Thm. 1; Grathwohl et al. 2019, eq. 2-4;
Song et al. 2021, App. D.2): along ``dx/dt = F(x, t) = f(x, t) - g(t)^2 s(x, t) / 2``,
``d log p_t(x_t) / dt = -div F(x_t, t)``, hence for ``x`` at ``t = eps``::

    log p_eps(x) = log p_T(x_T) + int_eps^T div F(x_t, t) dt.

`AugmentedFlow` is the vector field of the state ``y = [x (flattened), w * l]`` with
``dl/dt = div F``: ``(B, d + M)`` where ``d = prod(D)`` and ``M`` is the number of divergence
estimates per sample (1 for the exact divergence, the number of probes for Hutchinson).
It plugs into any function-level integrator of `solvers` (``integrate_fixed``,
``solve_adaptive``, ``solve_ivp_torch``).

``w`` (``logp_scale``) weights the log-density columns in the integrators' error norm
``RMS(err / (atol + rtol rel |y|))``, where ``rel`` (`AugmentedFlow.relative_weights`) is 1
for the data coordinates and 0 for the log-density columns: the torch integrators hold ``l``
to ``atol / w`` per step, with no part relative to its accumulated size. ``w -> 0`` removes
them from step-size control, which ``probe_refresh="eval"`` needs with adaptive integrators
(see `AugmentedFlow`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor

from solvers.dynamics import ProbabilityFlowODE, note_calling_convention
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.utils import batch_time

from .divergence import (
    ProbeKind,
    exact_divergence,
    exact_jacobian,
    hutchinson_divergence,
    make_probes,
)

__all__ = ["AugmentedFlow", "DivergenceKind", "ProbeRefresh"]

DivergenceKind = Literal["exact", "hutchinson"]
ProbeRefresh = Literal["solve", "eval"]


def graph_reaches(out: Tensor, x: Tensor) -> bool:
    """Whether ``out``'s autograd graph leads back to ``x`` (a walk over its nodes, no backward pass)."""
    target = x.grad_fn
    stack = [out.grad_fn]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node is target or (target is None and getattr(node, "variable", None) is x):
            return True
        stack.extend(nxt for nxt, _ in node.next_functions)
    return out is x


class AugmentedFlow:
    """Vector field ``(t, y) -> dy/dt`` of the probability-flow ODE plus its divergence integral.

    Args:
        sde: forward SDE (any `DiffusionSDE`).
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``; counted through
            `solvers.dynamics.CountedScore` (``nfe``).
        data_shape: ``D``, the shape of one sample.
        divergence: ``"exact"`` (autograd, ``prod(D)`` backward passes per evaluation) or
            ``"hutchinson"`` (``n_probes`` backward passes).
        probes: ``(M, B, *D)`` probes for ``probe_refresh="solve"`` (drawn by the caller).
        probe_kind, n_probes, generator: how to draw fresh probes when ``probe_refresh="eval"``.
        probe_refresh: ``"solve"``: the probes are fixed for the whole solve (FFJORD's choice;
            the field is deterministic, as adaptive step control needs). ``"eval"``: fresh
            probes at every evaluation. The data coordinates never depend on the probes, and an
            explicit Runge–Kutta update of ``l`` is a fixed linear combination of the stage
            derivatives, so each stage estimate being unbiased keeps ``l`` unbiased for the
            exact-divergence solution on the same steps, while independent probes across the
            stages and steps average the noise out instead of integrating one probe's error
            coherently over ``[eps, T]``. With an adaptive integrator, use it only with the
            log-density columns removed from error control (tiny ``logp_scale``): then the
            steps depend on ``x`` alone.
        logp_scale: weight ``w`` of the log-density columns in the state (see module docstring).
        create_graph: keep autograd graphs (gradients of the likelihood); default off.
        check_finite: raise on NaN/inf scores.
        on_eval: optional hook ``on_eval(t)`` called at every evaluation (progress display).
    """

    def __init__(
        self,
        sde: DiffusionSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        *,
        divergence: DivergenceKind = "exact",
        probes: Tensor | None = None,
        probe_kind: ProbeKind = "rademacher",
        n_probes: int = 1,
        probe_refresh: ProbeRefresh = "solve",
        generator: torch.Generator | None = None,
        logp_scale: float = 1.0,
        create_graph: bool = False,
        check_finite: bool = True,
        on_eval: Callable[[float], None] | None = None,
    ) -> None:
        if divergence not in ("exact", "hutchinson"):
            raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
        if probe_refresh not in ("solve", "eval"):
            raise ValueError(f"probe_refresh must be 'solve' or 'eval', got {probe_refresh!r}")
        if not (logp_scale > 0 and logp_scale < float("inf")):
            raise ValueError(f"logp_scale must be positive and finite, got {logp_scale}")
        self._user_score = score
        self._graph_checked = False  # whether a score output was traced back to its x once
        self._score_called = False  # a score failing at its first call gets the calling convention
        self.dynamics = ProbabilityFlowODE(sde, self._score, check_finite=check_finite)
        self.sde = sde
        self._extra_nfe = 0  # score calls made outside the flow's dynamics (score_divergence)
        self.points = 0  # points the score was evaluated at, summed over calls (rows x calls)
        self.tally: list[int] | None = None  # a run's running total of `points`, if it keeps one
        self.data_shape = tuple(int(s) for s in data_shape)
        self.dim = 1
        for s in self.data_shape:
            self.dim *= s
        self.divergence = divergence
        self.probe_kind = probe_kind
        self.probe_refresh = probe_refresh
        self.generator = generator
        self.logp_scale = float(logp_scale)
        self.create_graph = create_graph
        self.on_eval = on_eval
        if divergence == "exact":
            self.n_est = 1
            self.probes = None
        elif probe_refresh == "solve":
            if probes is None:
                raise ValueError("probe_refresh='solve' needs probes of shape (M, B, *D)")
            self.probes = probes
            self.n_est = probes.shape[0]
        else:
            self.probes = None
            self.n_est = int(n_probes)
            if self.n_est < 1:
                raise ValueError(f"n_probes must be positive, got {n_probes}")

    def _score(self, x: Tensor, t: Tensor) -> Tensor:
        """The user's score, refused when it returns no tensor or is not differentiable in ``x``.

        The divergence is taken by autograd: a score that detaches its output (``.detach()``,
        ``torch.no_grad``, NumPy inside) would leave only the drift's part of ``div F`` under
        VP (a silently wrong likelihood) and no graph at all under VE.
        """
        try:
            out = self._user_score(x, t)
        except Exception as err:
            if not self._score_called:
                note_calling_convention(err, x, t)
            raise
        self._score_called = True
        if not isinstance(out, Tensor):
            raise TypeError(f"score returned {type(out).__name__}; it must return a tensor of the shape of x "
                            f"{tuple(x.shape)}")
        if out.shape != x.shape:
            raise ValueError(f"score returned shape {tuple(out.shape)}, expected the shape of x {tuple(x.shape)}")
        if x.requires_grad and torch.is_grad_enabled():
            if not out.requires_grad:
                raise ValueError(
                    "score is not differentiable with respect to x (its output has no autograd graph: it "
                    "detaches, runs under torch.no_grad or goes through NumPy); the likelihood takes the "
                    "divergence of the probability-flow field by autograd, so the score must stay in torch "
                    "with gradients enabled")
            if not self._graph_checked:
                # A graph through the model's parameters only (``net(x.detach(), t)``) would leave
                # the drift's part of div F under VP: a silently wrong likelihood. Traced once.
                if not graph_reaches(out, x):
                    raise ValueError(
                        "score is not differentiable with respect to x: its output has an autograd graph "
                        "(through a model's parameters, or a detached copy of x that requires grad, as an "
                        "energy model's own autograd.grad makes), but the x it was given is not in it; "
                        "the likelihood takes the divergence of the probability-flow field with respect "
                        "to x, so the score must be computed from x itself")
                self._graph_checked = True
        return out

    def _count(self, x: Tensor) -> None:
        """Add the points of one evaluation at ``x: (B, *D)`` to `points` (and the run's tally)."""
        self.points += x.shape[0]
        if self.tally is not None:
            self.tally[0] += x.shape[0]

    @property
    def nfe(self) -> int:
        """Score calls made so far (each on the batch it was given; `points` counts the rows)."""
        return self.dynamics.nfe + self._extra_nfe

    # --- state layout -------------------------------------------------------------------
    def pack(self, x: Tensor) -> Tensor:
        """Initial state ``[x (flattened), 0]``: ``(B, *D) -> (B, d + M)``."""
        flat = x.reshape(x.shape[0], -1)
        zeros = torch.zeros(x.shape[0], self.n_est, dtype=x.dtype, device=x.device)
        return torch.cat([flat, zeros], dim=1)

    def unpack(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_T: (B, *D), l: (B, M))`` from a state, undoing the log-density weight."""
        x = y[:, : self.dim].reshape(y.shape[0], *self.data_shape)
        return x, y[:, self.dim :] / self.logp_scale

    def relative_weights(self, y: Tensor) -> Tensor:
        """``(d + M,)`` weights of ``rtol`` per state column for `solve_adaptive`'s ``relative=``.

        1 for the data coordinates, 0 for the log-density columns: those hold an integral that
        grows with every step (to ~1e4 nats for a point far from the data), so a tolerance
        relative to its size would let each of thousands of steps add ``rtol |l|`` (measured:
        1e3 nats off at a point 5 units from a mixture of modes of std 0.02). They are held to
        ``atol / w`` per step instead.
        """
        w = torch.ones(y.shape[1], dtype=y.dtype, device=y.device)
        w[self.dim :] = 0.0
        return w

    def answer_sensitivity(self, t: float, y: Tensor, k: Tensor) -> Tensor:
        """``(B, d + M)``: the answer's sensitivity to the state at ``t``, `solve_adaptive`'s ``goal``.

        Along the flow, ``log p_lo(x_lo) = log p_t(x_t) + int_lo^t div F`` for every ``t``, so an
        error ``dx`` made at ``t`` moves the answer by ``s(x_t, t) . dx``: the score is the
        adjoint of the change of variables. The state's relative tolerance holds ``dx`` to
        ``rtol |x|``, which is loose where the density is far narrower than ``|x|`` (sharp modes
        away from the origin: under VE, ``|s| ~ sqrt(d) / width``); this weight holds ``s . dx``
        itself. ``s`` comes from the velocity the integrator already has, ``k = dy/dt``:
        ``s = 2 (f(x, t) - F) / g(t)^2`` (no evaluation; weight 0 where ``g = 0``). The
        answer is ``log p_T(x_T) + mean_m l_m``, so an error ``dl_m`` in a log-density column
        moves it by ``dl_m / M``: the columns, which hold ``w l``, get weight ``1 / M`` (the
        goal holds ``s . dx + w mean_m dl_m``, the answer's own error at the default ``w = 1``;
        ``w`` weights them here as in the state's norm). In the state's RMS norm a column
        counts only ``1 / sqrt(d + M)``; the goal counts it in full, whatever ``d``. With fresh
        probes (``probe_refresh="eval"``) the columns are noise, not error, and get weight 0.
        Detached: a step size is a constant for autograd.
        """
        d = self.dim
        y, k = y.detach(), k.detach()
        x = y[:, :d].reshape(y.shape[0], *self.data_shape)
        s = self.score_from_velocity(x, k[:, :d].reshape(x.shape), t).reshape(y.shape[0], d)
        return torch.cat([s, self.column_sensitivity(y)], dim=1)

    def column_sensitivity(self, y: Tensor) -> Tensor:
        """``(B, M)``: `answer_sensitivity`'s weights of the log-density columns (``1 / M``, or 0
        with fresh probes)."""
        weight = 0.0 if self.probe_refresh == "eval" and self.divergence == "hutchinson" else 1.0 / self.n_est
        return torch.full_like(y[:, self.dim :], weight)

    def score_from_velocity(self, x: Tensor, velocity: Tensor, t: float) -> Tensor:
        """``s = 2 (f(x, t) - F) / g(t)^2`` from the probability-flow velocity ``F`` (0 where ``g = 0``)."""
        tt = batch_time(t, x)
        g2 = self.sde.diffusion(tt).to(x.dtype).pow(2).reshape(-1, *([1] * (x.ndim - 1)))
        gap = self.sde.drift(x, tt) - velocity
        return torch.where(g2 > 0, 2.0 * gap / torch.where(g2 > 0, g2, 1.0), 0.0)

    # --- the field ----------------------------------------------------------------------
    def velocity(self, x: Tensor, t: float) -> Tensor:
        """Probability-flow velocity ``F(x, t) = f - g^2 s / 2`` (one score evaluation)."""
        self._count(x)
        return self.dynamics.drift(x, batch_time(t, x))

    def velocity_and_divergence(self, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """``(F(x, t): (B, *D), div F(x, t): (B, M))``, unweighted (one score evaluation).

        ``M = 1`` for the exact divergence; one column per probe for Hutchinson (fresh probes
        when ``probe_refresh="eval"``). Calls ``on_eval(t)`` first.
        """
        if self.on_eval is not None:
            self.on_eval(t)

        def field(z: Tensor) -> Tensor:
            return self.velocity(z, t)

        return self._divergence(field, x)

    def _divergence(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
        """``(fn(x), div fn(x): (B, M))`` with this flow's divergence kind and probes."""
        if self.divergence == "exact":
            f, div = exact_divergence(fn, x, create_graph=self.create_graph)
            return f, div[:, None]
        probes = self.probes
        if probes is None:  # fresh probes at every evaluation
            probes = make_probes(self.n_est, x, self.probe_kind, generator=self.generator)
        elif probes.dtype != x.dtype or probes.device != x.device:
            probes = probes.to(dtype=x.dtype, device=x.device)
        return hutchinson_divergence(fn, x, probes, create_graph=self.create_graph)

    def score(self, x: Tensor, t: float) -> Tensor:
        """The score ``s(x, t): (B, *D)`` (one counted evaluation, no divergence)."""
        self._extra_nfe += 1
        self._count(x)
        return self._score(x, batch_time(t, x))

    def score_jacobians(self, x: Tensor, t: float, chunk: int) -> Iterator[tuple[slice, Tensor, Tensor]]:
        """``(rows, s(x[rows], t): (b, *D), ds/dx: (b, d, d))`` for consecutive chunks of at most
        ``chunk`` points (one counted evaluation per point in all, ``d`` backward passes per chunk)."""
        self._extra_nfe += 1
        self._count(x)
        for start in range(0, x.shape[0], chunk):
            part = x[start:start + chunk]
            tt = batch_time(t, part)
            s, jac = exact_jacobian(lambda z, tt=tt: self._score(z, tt), part)
            yield slice(start, start + part.shape[0]), s, jac

    def score_divergence(self, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """``(s(x, t): (B, *D), div s(x, t): (B, M))`` (one counted evaluation)."""
        self._extra_nfe += 1
        self._count(x)
        tt = batch_time(t, x)
        return self._divergence(lambda z: self._score(z, tt), x)

    def __call__(self, t: float, y: Tensor) -> Tensor:
        """``dy/dt`` at ``t`` for ``y: (B, d + M)``: ``[F(x, t), w * div F(x, t)]``."""
        x = y[:, : self.dim].reshape(y.shape[0], *self.data_shape)
        f, div = self.velocity_and_divergence(x, t)
        return torch.cat([f.reshape(y.shape[0], -1), div * self.logp_scale], dim=1)
