"""Multistep DPM-Solver++ (2M, 3M) in data prediction (Lu et al. 2022b, Alg. 2 and App.)."""

from __future__ import annotations

from torch import Tensor

from .base import DynamicsKind, SolveContext
from .dynamics import ReverseDynamics
from .exponential import ExponentialIntegrator, phi_data, phi_weights
from .inputs import check_flag

__all__ = ["DPMSolverPP2M", "DPMSolverPP3M", "UniPC", "LOWER_ORDER_FINAL_BELOW"]

LOWER_ORDER_FINAL_BELOW = 15
"""With fewer grid intervals than this, ``lower_order_final`` lowers the order of the last steps."""


class _MultistepDPMSolverPP(ExponentialIntegrator):
    """Shared loop of DPM-Solver++(kM): one score evaluation per step, history of data predictions.

    Step ``i`` from ``t_i`` to ``t_{i+1}`` evaluates ``d_i = E[x_0 | x_{t_i}]`` once and reuses
    ``d_{i-1}, d_{i-2}`` from earlier steps. With ``h = lambda_{i+1} - lambda_i``,
    ``h_0 = lambda_i - lambda_{i-1}``, ``h_1 = lambda_{i-1} - lambda_{i-2}`` and
    ``r_0 = h_0/h``, ``r_1 = h_1/h`` (``phi_k`` = `phi_data`)::

        1st order: x' = (s'/s) x + a' phi_1(h) d_i
        2nd order: x' = (s'/s) x + a' phi_1(h) [d_i + (d_i - d_{i-1}) / (2 r_0)]      (Alg. 2)
        3rd order: D1_0 = (d_i - d_{i-1})/r_0,  D1_1 = (d_{i-1} - d_{i-2})/r_1
                   D1 = D1_0 + r_0/(r_0 + r_1) (D1_0 - D1_1)       ~ h d'
                   D2 = (D1_0 - D1_1)/(r_0 + r_1)                  ~ h^2 d''/2
                   x' = (s'/s) x + a' [phi_1(h) d_i + phi_2(h) D1 + 2 phi_3(h) D2]

    The third-order line is the Taylor expansion of ``sigma_t int e^lambda d(lambda) dlambda``
    to ``d''``: ``h^2 d''`` enters as ``2 D2``. (The reference implementations of
    DPM-Solver and diffusers weight ``D2`` by ``phi_3`` alone, i.e. half the ``d''`` term;
    `tests.test_exponential` measures third order with the factor 2.)

    Warm-up: the first steps use the orders their history allows (1, then 2). With
    ``lower_order_final`` and fewer than `LOWER_ORDER_FINAL_BELOW` intervals, the last
    steps use order ``min(k, steps left)`` (as the DPM-Solver code does for few steps),
    which keeps the final, strongly curved steps near ``eps`` stable.
    """

    dynamics_kind: DynamicsKind = "ode"

    def __init__(self, *, lower_order_final: bool = True) -> None:
        self.lower_order_final = check_flag(lower_order_final, "lower_order_final")

    @property
    def history(self) -> int:
        """Data predictions kept (the order of the multistep predictor)."""
        return int(self.order)

    def step_order(self, index: int, n_steps: int) -> int:
        """Order used on step ``index`` of ``n_steps`` (warm-up and lower-order final steps)."""
        k = min(self.history, index + 1)
        if self.lower_order_final and n_steps < LOWER_ORDER_FINAL_BELOW:
            k = min(k, n_steps - index)
        return k

    def remember(self, ctx: SolveContext, d: Tensor) -> list[Tensor]:
        """Append ``d_i`` to this solve's history of data predictions (the last `history` kept)."""
        hist: list[Tensor] = ctx.memory.setdefault("d", [])
        hist.append(d)
        if len(hist) > self.history:
            hist.pop(0)
        return hist

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        i, tab = ctx.index, self.schedule(ctx)
        s_s, a_t, s_t = tab.sigma[i], tab.alpha[i + 1], tab.sigma[i + 1]
        h = tab.log_snr[i + 1] - tab.log_snr[i]
        d = dynamics.x0_at(x, t, (tab.alpha[i], s_s))
        hist = self.remember(ctx, d)
        k = self.step_order(i, ctx.n_steps)
        x_lin = (s_t / s_s) * x
        if k == 1:
            return x_lin + (a_t * phi_data(h, 1)) * d
        r0 = (tab.log_snr[i] - tab.log_snr[i - 1]) / h
        d1_0 = (d - hist[-2]) / r0
        if k == 2:
            # Alg. 2: D = d_i + (d_i - d_{i-1})/(2 r_0), integrated with phi_1.
            return x_lin + (a_t * phi_data(h, 1)) * (d + 0.5 * d1_0)
        r1 = (tab.log_snr[i - 1] - tab.log_snr[i - 2]) / h
        d1_1 = (hist[-2] - hist[-3]) / r1
        diff = (d1_0 - d1_1) / (r0 + r1)
        d1 = d1_0 + r0 * diff
        return x_lin + (a_t * phi_data(h, 1)) * d + (a_t * phi_data(h, 2)) * d1 + (2.0 * a_t * phi_data(h, 3)) * diff


class DPMSolverPP2M(_MultistepDPMSolverPP):
    """DPM-Solver++(2M): multistep second order in data prediction; 1 NFE per step.

    Lu et al. 2022b, Alg. 2, on the log-SNR grid of any affine SDE; see
    `_MultistepDPMSolverPP` for the update and the warm-up/final steps. On sharp data its
    error is not monotone between about 10 and 25 NFE (the first-order last step below 15
    intervals narrows the modes, the multistep widens them; e.g. combined metric 1.16 then 4.01
    at NFE 10 and 12 on an 8-mode circle, where exact samples score 1.32; docs/defaults.md,
    "Between those budgets").

    Args:
        lower_order_final: first-order last step when there are fewer than 15 intervals.
    """

    order: float = 2.0


class DPMSolverPP3M(_MultistepDPMSolverPP):
    """DPM-Solver++(3M): multistep third order in data prediction; 1 NFE per step.

    Uses ``d_i, d_{i-1}, d_{i-2}`` to estimate ``d'`` and ``d''`` on non-uniform log-SNR steps;
    see `_MultistepDPMSolverPP` for the update and warm-up/final steps.

    ``order`` is that of the steps after the warm-up. The first step is first order (local
    error ``O(h^2)``), so the global error is ``O(h^2)`` in the limit; its constant is small
    (``d`` hardly moves at the prior's noise level), and the second order shows only below
    about 1e-8: on one Gaussian in float64 under VE the error falls 3.5x and 3.9x per
    doubling from 1024 to 4096 steps (order 4-like above that; an outside measurement).

    Not monotone in the step count on sharp data: once the lower-order final steps switch off
    (15 intervals) the quadratic extrapolation of ``d`` past the point where it saturates
    widens narrow modes, and the error rises up to tenfold from NFE 14 to 16 before it falls
    again (converged by 40-60 NFE; docs/defaults.md, "Between those budgets"). For a budget
    sweep on sharp data use ``gaussian_2m``, or ``lower_order_final=False``: monotone from 5
    to 60 NFE on the five sharp targets measured, but worse in 20 of the 25 cells at NFE
    8-15 (up to 67x; better in the 32-D target's five).

    Args:
        lower_order_final: orders 2 then 1 on the last two steps when there are fewer than
            15 intervals.
    """

    order: float = 3.0

    def fewest_steps(self, sde: object) -> int:
        """8 under every SDE (`FixedGridSolver.fewest_steps`).

        With 5-7 steps the first third-order steps span several units of log-SNR, and the
        quadratic extrapolation of ``d`` across them throws samples out: median distance from
        the centre over the data's, exact score of 8 modes on a circle (std 0.15 / 0.05), 4000
        samples, at 5 / 6 / 7 steps: sub-VP 2.06 / 1.62 / 1.54 and 1.88 / 1.25 / 1.20, VE 1.66 /
        1.70 / 1.16 and 1.76 / 1.12 / 0.94 (an outside check; at most 1.43 under VP, cosine VP and
        EDM). From 8 steps on at most 1.19 everywhere; at 3-4 steps the run is mostly first and
        second order and stays inside the data (at most 1.23), but takes 8 steps to be trusted.
        """
        return 8


class UniPC(_MultistepDPMSolverPP):
    """DPM-Solver++(2M) + UniPC-style corrector (exact exponential Adams–Moulton); order 3, 1 NFE/step.

    Predictor: the DPM-Solver++(2M) step of `DPMSolverPP2M` gives ``x~_{i+1}``. The
    score at ``(x~_{i+1}, t_{i+1})`` is needed by the next step anyway; evaluated now, it
    also corrects the step for free (Zhao et al. 2023, "UniPC", §3.2): with
    ``d~_{i+1} = E[x_0 | x~_{i+1}]`` the data prediction is interpolated through
    ``lambda_{i-1}, lambda_i, lambda_{i+1}`` and integrated exactly against
    ``sigma_t e^lambda`` (`phi_weights`)::

        x_{i+1} = (sigma_{i+1}/sigma_i) x_i + alpha_{i+1} (w_- d_{i-1} + w_0 d_i + w_+ d~_{i+1})

    and the next step starts from the corrected ``x_{i+1}`` with ``d~_{i+1}`` as its
    prediction (UniPC's reuse). One more node than the predictor raises the order to 3
    (measured by refinement in the tests). UniPC derives its corrector weights from a
    ``B(h)`` family; here they are the exact-integral (Taylor) weights. The last step is
    not corrected (that would cost an extra NFE). Measured errors against DPM-Solver++(2M):
    docs/fast_solvers.md. Like `DPMSolverPP3M` it is not monotone in the step count on sharp
    data between about 15 and 30 NFE (up to 5x worse at NFE 16 than at 14; docs/defaults.md,
    "Between those budgets").

    Args:
        lower_order_final: first-order last step when there are fewer than 15 intervals.
    """

    order: float = 3.0

    @property
    def history(self) -> int:
        return 2  # the predictor is DPM-Solver++(2M)

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        i, tab = ctx.index, self.schedule(ctx)
        s_s, a_t, s_t = tab.sigma[i], tab.alpha[i + 1], tab.sigma[i + 1]
        h = tab.log_snr[i + 1] - tab.log_snr[i]
        # Data prediction at t_i: from the previous corrector evaluation when there is one.
        d = ctx.memory.pop("d_next", None)
        if d is None:
            d = dynamics.x0_at(x, t, (tab.alpha[i], s_s))
        hist = self.remember(ctx, d)
        x_lin = (s_t / s_s) * x
        # Predictor: DPM-Solver++(2M) (Alg. 2), first order on warm-up / final steps.
        k = self.step_order(i, ctx.n_steps)
        if k == 1:
            x_pred: Tensor = x_lin + (a_t * phi_data(h, 1)) * d
        else:
            r0 = (tab.log_snr[i] - tab.log_snr[i - 1]) / h
            x_pred = x_lin + (a_t * phi_data(h, 1)) * (d + (0.5 / r0) * (d - hist[-2]))
        if ctx.is_last:
            return x_pred
        # Corrector: evaluate at the predicted point (reused by the next step) and
        # re-integrate through the nodes lambda_{i-1}, lambda_i, lambda_{i+1}.
        d_next = dynamics.x0_at(x_pred, t_next, (a_t, s_t))
        ctx.memory["d_next"] = d_next
        past = hist[-k:]
        nodes = [tab.log_snr[i - len(past) + 1 + j] - tab.log_snr[i] for j in range(len(past))] + [h]
        w = phi_weights(nodes, h)
        x_corr = x_lin
        for wj, dj in zip(w, [*past, d_next], strict=True):
            x_corr = x_corr + (a_t * wj) * dj
        return x_corr
