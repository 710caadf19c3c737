"""Do an SDE's marginals belong to its drift and diffusion? A warning before a run if not.

Solvers read an SDE in two ways. Euler-Maruyama, the ``ode_*`` integrators and the
``torchsde_*`` methods use ``drift(x, t)`` and ``diffusion(t)``; DDIM, the exponential
integrators, the end-of-run step and the ``logsnr``/``karras`` grids use
``marginal_coeffs(t) = (alpha, sigma)``. For a linear SDE ``dx = f(t) x dt + g(t) dW`` the
marginals ``x_t = alpha x_0 + sigma z`` follow from ``f`` and ``g`` (Song et al. 2021, App. B;
Kingma et al. 2021, "Variational Diffusion Models", eq. 16-17)::

    f(t) = d ln alpha / dt,        g(t)^2 = d sigma^2 / dt - 2 f(t) sigma^2.

A hand-written SDE whose members disagree (a drift off by a factor, ``g = t`` instead of
``sqrt(2 t)`` for ``sigma = t``) runs without an error, and the two families of solvers then
sample different laws. `warn_if_inconsistent` checks both identities at a few interior times
by central and one-sided (second-order) finite differences (a schedule with a kink, e.g. a piecewise-
constant ``beta``, matches on one side) and warns above `CONSISTENCY_RTOL`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .protocol import ReverseSDEParts
from .warning_types import SDEConsistencyWarning, warn

__all__ = ["warn_if_inconsistent", "consistency_error", "CONSISTENCY_RTOL", "PROBE_FRACTIONS"]

CONSISTENCY_RTOL = 0.01
"""Relative mismatch of the identities above that is reported. The built-in schedules match to
1e-5 at the finite-difference step `_STEP` (second-order differences), sub-VP and a 50-step DDPM
table to 3e-4; a schedule computed in float32 to about 1e-4 (its round-off divided by the step)."""

PROBE_FRACTIONS = (0.05, 0.25, 0.5, 0.75, 0.95)
"""Where in ``[eps, T]`` the identities are checked."""

_STEP = 1e-3  # finite-difference step, relative to T - eps


def consistency_error(sde: ReverseSDEParts, data_shape: tuple[int, ...],
                      device: torch.device | None = None) -> tuple[float, float, float, float, str]:
    """``(relative error, t, value, implied, what)``: the largest mismatch of the identities
    above over `PROBE_FRACTIONS`, where it is, the member's value there and the value the
    marginals imply, and which member (``"drift"``: ``drift(1, t)`` against ``f(t)``, or
    ``"diffusion"``: ``g(t)^2`` against ``d sigma^2/dt - 2 f sigma^2``).

    The drift is compared on ``x = 1`` (shape ``(1, *data_shape)``) with ``f(t) x``, relative to
    ``max(|f|, 1/(T - eps))``: a drift off by ``delta f`` rescales the probability-flow solution
    by about ``exp(integral of delta f dt)``, so 1% of ``|f|`` is 5% of scale on the default VP
    SDE, and where ``f = 0`` (VE) an error of ``0.01/(T - eps)`` is a 1% scale over the run.
    ``g^2`` is compared relative to the larger of ``|g^2|`` and the value the marginals imply.
    Evaluated in float64 (float32 on devices without it).
    """
    dtype = torch.float32 if device is not None and device.type == "mps" else torch.float64
    T, eps = float(sde.T), float(sde.eps)
    h = _STEP * (T - eps)
    centre = torch.tensor([eps + f * (T - eps) for f in PROBE_FRACTIONS], dtype=dtype, device=device)
    k = len(PROBE_FRACTIONS)
    times = torch.cat([centre + j * h for j in (-2, -1, 0, 1, 2)])
    with torch.no_grad():
        alpha, sigma = (v.to(dtype) for v in sde.marginal_coeffs(times))  # type: ignore[attr-defined]
        log_a, var = alpha.log().view(5, k), sigma.pow(2).view(5, k)
        g2 = sde.diffusion(centre).to(dtype).pow(2)
        x = torch.ones((k, *data_shape), dtype=dtype, device=device)
        drift = sde.drift(x, centre).to(dtype).reshape(k, -1)
    worst: tuple[float, float, float, float, str] = (0.0, T, 0.0, 0.0, "")

    def central(v: Tensor) -> Tensor:
        return (v[3] - v[1]) / (2 * h)

    def backward(v: Tensor) -> Tensor:  # second order, from t - 2h, t - h, t
        return (3 * v[2] - 4 * v[1] + v[0]) / (2 * h)

    def forward(v: Tensor) -> Tensor:  # second order, from t, t + h, t + 2h
        return (-3 * v[2] + 4 * v[3] - v[4]) / (2 * h)

    # All three of second order (a first-order one-sided difference is off by h beta / 2, 1% on a
    # steep schedule): a kink in the schedule matches on one side.
    diffs = [(d(log_a), d(var)) for d in (central, backward, forward)]
    drift_err, g2_err, f_implied, g2_implied = [], [], [], []
    for f, dvar in diffs:
        g2_model = dvar - 2 * f * var[2]
        drift_err.append((drift - f[:, None]).abs().amax(dim=1) / f.abs().clamp(min=1.0 / (T - eps)))
        g2_err.append((g2 - g2_model).abs() / torch.maximum(g2.abs(), g2_model.abs()))
        f_implied.append(f)
        g2_implied.append(g2_model)
    for what, errs, values, implied in (("drift", drift_err, drift[:, 0], f_implied),
                                        ("diffusion", g2_err, g2, g2_implied)):
        stacked: Tensor = torch.stack(errs).nan_to_num(nan=float("inf"))
        best, side = stacked.min(dim=0)
        i = int(best.argmax())
        if float(best[i]) > worst[0]:
            worst = (float(best[i]), float(centre[i]), float(values[i]), float(implied[int(side[i])][i]), what)
    return worst


def warn_if_inconsistent(sde: ReverseSDEParts, data_shape: tuple[int, ...],
                         device: torch.device | None = None, stacklevel: int = 3) -> None:
    """Warn when ``sde``'s ``marginal_coeffs`` do not belong to its drift and diffusion
    (module docstring); nothing for an SDE without ``marginal_coeffs``."""
    if not callable(getattr(sde, "marginal_coeffs", None)):
        return
    err, t, value, implied, what = consistency_error(sde, data_shape, device)
    if not err > CONSISTENCY_RTOL:
        return
    name = type(sde).__name__
    rule = ("drift(x, t) = (d ln alpha/dt) x" if what == "drift"
            else "diffusion(t)^2 = d sigma^2/dt - 2 (d ln alpha/dt) sigma^2")
    got = "drift(1, t)" if what == "drift" else "diffusion(t)^2"
    warn(
        f"{name}: marginal_coeffs(t) = (alpha, sigma) do not belong to its {what}: a linear SDE has "
        f"{rule}, but at t = {t:.4g} {got} = {value:.6g} where the marginals give {implied:.6g}. Solvers that use "
        "the marginals (ddim, dpmpp_*, unipc, the end step, the logsnr/karras grids) and those that "
        "use drift and diffusion (euler_maruyama, ode_*, torchsde_*) will sample different laws; "
        "fix the member that is wrong",
        SDEConsistencyWarning,
    )
