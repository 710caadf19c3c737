"""`likelihood` / `log_likelihood`: log-density of data under a score model by the probability-flow ODE.

What is computed (Song et al. 2021, App. D.2; Grathwohl et al. 2019): starting from the data,
integrate `[x, l]` up to `T` along the augmented ODE of `AugmentedFlow`, then::

    log p_eps(x) = log prior(x_T) + l(T),      l(T) = int_eps^T div F(x_t, t) dt.

By default (`density="data"`) the result estimates the data density `log p_0(x)`: the ODE
runs from `t_end = data_end_time(sde)` (1e-5, Song et al.'s likelihood setting, or `sde.eps`
if smaller) and the last piece `[0, t_end]` is added by `data_correction`: exactly for locally
Gaussian data when the divergence is exact and `d <= 256` (from the score's Jacobian at the
data point; modes far narrower than the end noise included), to first order in
`sigma(t_end)^2` otherwise; on sharp mixtures (mode std 1/25 of the mode spacing) the
remaining bias of that piece is ~1e-5 nats per point under VP, sub-VP and VE. With `density="marginal"` (what an
explicit `eps=` selects) `x` is treated as a sample at `eps` and the result is `log p_eps(x)`,
the density of the data blurred to `eps`; for an exact mixture that is
`target.marginal_log_prob(x, eps, sde)`.

How it is integrated (`IntegratorOptions`; the integrators are the function-level ones of
`solvers`, listed once in `INTEGRATOR_TABLE`):

* default `integrator="dopri5"`, `rtol = atol = 1e-5`: torch Dormand–Prince with error control
  on the whole batch.
* `integrator="rk4_simpson", grid="auto"` (the fast path): a pilot solve on a subset builds
  the grid (`run_pilot`), and the batch is integrated on it with RK4 for the path and
  Simpson's rule for the log-density (half the divergences of RK4). `steps="auto"` chooses the
  count by measurement on the pilot (`choose_steps`, `target_error`).
* `"bosh3"`; `"rk45"`/`"dop853"`/`"rk23"` (SciPy); `"rk4"`/`"heun"`/`"euler"` on a named or
  explicit grid.

The prior: the model's density uses `sde.prior_log_prob` at `x_T`; the forward marginal `p_T`
is only close to it. Pass `prior=` (`x_T -> (B,)`) to use another density at `T`, e.g. the
exact `p_T` of a mixture; `LikelihoodResult.prior_log_prob` reports the term used.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from solvers.inputs import check_device, check_dtype, check_score
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.score_sde import check_score_sde

from .endpoint import warn_if_below_trained_range
from .integrators import INTEGRATOR_TABLE
from .options import LikelihoodOptions
from .result import LikelihoodResult
from .runner import LikelihoodRun

__all__ = ["INTEGRATORS", "ADAPTIVE", "SCIPY", "FIXED", "LikelihoodResult", "likelihood", "log_likelihood",
           "check_data"]

ADAPTIVE: tuple[str, ...] = tuple(k for k, v in INTEGRATOR_TABLE.items() if v.kind == "adaptive")
"""Torch-native embedded Runge–Kutta with error control."""
SCIPY: dict[str, str] = {k: v.method for k, v in INTEGRATOR_TABLE.items() if v.kind == "scipy"}
"""SciPy explicit methods (name -> SciPy's name); `rk45` is the reference code's integrator."""
FIXED: tuple[str, ...] = tuple(k for k, v in INTEGRATOR_TABLE.items() if v.kind == "fixed")
"""Fixed-grid methods on `time_grid` or the `"auto"` grid."""
INTEGRATORS: tuple[str, ...] = tuple(INTEGRATOR_TABLE)

_HALF = (torch.float16, torch.bfloat16)


def check_data(x: Tensor, dtype: torch.dtype | None = None) -> None:
    """Refuse data `likelihood` cannot use, with a message naming the problem and the fix.

    Raises:
        TypeError: not a tensor.
        ValueError: not `(B, *D)` with `B >= 1`; NaN/inf entries; half precision.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, *D), got {type(x).__name__}; "
                        "convert it with torch.as_tensor(x, dtype=torch.float64)")
    if x.ndim < 2 or x.shape[0] < 1:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, *D) with B >= 1, got {got}")
    for what, dt in (("x", x.dtype), ("dtype", dtype)):
        if dt in _HALF:
            raise ValueError(
                f"{what} is {dt}: half precision is too coarse for the divergence integral (results "
                "are off by ~0.1 nats without warning); use torch.float32 or torch.float64, e.g. "
                "pass x.float() or dtype=torch.float64")
    check_finite_rows(x)


def check_finite_rows(x: Tensor) -> None:
    """Raise ``ValueError`` naming the rows of ``x: (B, *D)`` that hold NaN/inf."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(dim=1).nonzero().flatten()
        rows = ", ".join(str(i) for i in bad[:5].tolist()) + (", ..." if bad.numel() > 5 else "")
        raise ValueError(f"x contains NaN/inf in {bad.numel()} sample(s) (rows {rows})")


def likelihood(
    sde: DiffusionSDE,
    score_fn: ScoreFn,
    x: Tensor,
    options: LikelihoodOptions | None = None,
    **kwargs: Any,
) -> LikelihoodResult:
    """Log-likelihood (nats) of `x` by the probability-flow ODE, with diagnostics.

    Args:
        sde: forward SDE (any `solvers.protocol.DiffusionSDE`; `density="data"` needs
            `marginal_coeffs`).
        score_fn: `score(x: (B, *D), t: (B,)) -> (B, *D)`, e.g. `target.score_fn(sde)` or
            `model.score_fn(sde)`; it is differentiated with respect to `x`.
        x: data `(B, *D)`, float32 or float64 (half precision is refused).
        options: grouped options (`LikelihoodOptions`); default: all defaults.
        **kwargs: flat options overriding `options`, by field name of its groups:
            integration (`integrator`, `steps`, `grid`, `target_error`, `rtol`, `atol`,
            `logp_scale`, `per_sample`, `controller`, `pilot_size`, `max_steps`; `IntegratorOptions`),
            divergence (`divergence`, `probe`, `n_probes`, `probe_refresh`;
            `DivergenceOptions`), density (`density`, `eps`, `T`, `prior`; `DensityOptions`)
            and run (`batch_size`, `dtype`, `device`, `seed`, `generator`, `grad`,
            `check_finite`, `progress`, `store`; `RunOptions`).

    Returns:
        `LikelihoodResult`: `log_prob` estimates `log p_0(x)` (`density="data"`, the default
        without `eps`) or `log p_eps(x)` (`density="marginal"`, the default when `eps` is
        given); `nfe` includes the pilot's evaluations.

    Raises:
        TypeError: a score that is not callable, or an unknown option name.
        ValueError: bad data or inconsistent options (the message names the fix).
        RuntimeError: called under `torch.inference_mode()`, where no divergence can be taken.
    """
    check_score(score_fn)
    check_score_sde(score_fn, sde)
    opts = (options or LikelihoodOptions()).replace(**kwargs) if kwargs else (options or LikelihoodOptions())
    opts.validate()
    if torch.is_inference_mode_enabled():
        # enable_grad cannot build a graph inside inference mode, so no divergence can be taken.
        raise RuntimeError(
            "likelihood() takes the divergence of the probability-flow field by autograd, which "
            "torch.inference_mode() switches off; call it outside inference_mode (torch.no_grad() "
            "around it is fine)")
    run = opts.run
    asked = None if run.dtype is None else check_dtype(run.dtype)
    check_data(x, asked)
    dtype = asked if asked is not None else (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    device = x.device if run.device is None else check_device(run.device)
    x = x.to(dtype=dtype, device=device)
    if not run.grad:
        x = x.detach()
    _warn_if_inconsistent_sde(sde, tuple(x.shape[1:]), device)
    warn_if_below_trained_range(opts.density.eps, score_fn, sde)
    if opts.density.prior is None and not callable(getattr(sde, "prior_log_prob", None)):
        raise TypeError(
            f"{type(sde).__name__} has no prior_log_prob(z) -> (B,): the likelihood needs the log-density "
            "of the prior at T; add it to the SDE, or pass prior= (a callable x_T: (B, *D) -> (B,))"
        )
    if (opts.density.prior is None and not getattr(sde, "prior_chosen", False)
            and hasattr(sde, "marginal_coeffs")):
        # log p_0 is measured against the SDE's prior at T: say (with the numbers) when p_T is far
        # from it, e.g. an own schedule whose alpha(T) is not small (Song et al. 2021 assume p_T = prior).
        # The check assumes a prior N(0, p^2 I); a hand-written prior of another form is the user's choice.
        from ..prior_checks import check_prior, isotropic_prior_std

        prior_std = isotropic_prior_std(sde, tuple(x.shape[1:]))
        if prior_std is not None:
            # The points scored stand in for the model's data, which the function is not given:
            # say so, since points far out in the model's tails set it off too.
            res = check_prior(sde, data_std=float(x.detach().double().pow(2).mean().sqrt()),
                              prior_std=prior_std, warn=False)
            if not res.ok:
                from ..interop._warn import warn_at_user

                warn_at_user(
                    f"the points scored have root-mean-square {res.data_std:g} per coordinate; if the model's "
                    f"data are on that scale, {res.message()} (Points far out in the model's tails, "
                    "outliers scored on purpose, set this off too: then it does not apply.)")
    return LikelihoodRun(sde, score_fn, x, opts).run()


def _warn_if_inconsistent_sde(sde: DiffusionSDE, data_shape: tuple[int, ...], device: torch.device) -> None:
    """The samplers' check (`solvers.sde_consistency`), at the caller's line: the flow uses the drift
    and diffusion, the data term and the grids the marginals, so marginals that do not belong to
    them give a wrong density."""
    from solvers.sde_consistency import warn_if_inconsistent

    from ..interop._warn import reemit_at_user

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_inconsistent(sde, data_shape, device)
    reemit_at_user(caught)


def log_likelihood(sde: DiffusionSDE, score_fn: ScoreFn, x: Tensor, **options: Any) -> Tensor:
    """`log p_0(x)` in nats (`x: (B, *D) -> (B,)`); options as for `likelihood`.

    Example (exact mixture score: the exact answer is known)::

        sde = sd.VPSDE(); target = sd.targets.eight_gaussians()
        x = target.sample(1000, generator=torch.Generator().manual_seed(0))
        lp = sd.likelihood.log_likelihood(sde, target.score_fn(sde), x)
        err = (lp - target.log_prob(x)).abs().mean()
    """
    return likelihood(sde, score_fn, x, **options).log_prob
