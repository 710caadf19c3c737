"""Bring your own schedule: closed-form SDEs from a ``beta(t)`` or ``sigma(t)`` callable.

* `BetaSDE` (VP type): ``dx = -beta(t) x/2 dt + sqrt(beta(t)) dW`` with
  ``alpha(t) = exp(-B(t)/2)``, ``B(t) = int_0^t beta``, ``sigma(t)^2 = 1 - alpha(t)^2``
  (Song et al. 2021, eq. 11 with a general ``beta``). ``B`` is the closed form you pass, or
  composite 64-point Gauss-Legendre quadrature of ``beta`` on adaptive panels
  (`scoresde.beta_integral.CompositeIntegral`: float64 round-off for smooth and for
  piecewise-smooth schedules, e.g. a warm-up or a jump of ``beta``; continuous, with
  ``dB/dt = beta``).
* `SigmaSDE` (VE type): ``dx = sqrt(d sigma^2/dt) dW``, ``alpha = 1`` (Song et al. 2021,
  eq. 9 with a general ``sigma``); ``d sigma^2/dt`` is the closed form you pass or autograd
  of ``sigma``.

Both satisfy ``solvers.DiffusionSDE`` (they are `scoresde.AffineSDE` subclasses) and so work
with every solver, loss and likelihood routine. Where ``beta`` jumps, the solvers that read the
coefficients at the points they visit (``ode_euler``, ``ode_heun``, ``ode_rk4``,
``euler_maruyama``) need their grid to resolve the jump: a step that starts on the large side
integrates the small side with the large rate. On the default log-SNR grid a jump from 0.5 to
25 at ``t = 0.37`` put one step of ``0.04`` across it at 100 steps, and ``ode_heun`` returned
modes of std 0.10 / 0.32 / 0.07 for 0.30 / 0.50 / 0.20 (an outside check; ``dpmpp_2m`` and the
other exponential integrators, exact on the linear part, were right there). Use those: more
steps of the explicit ones do not reliably help (``ode_heun`` read 0.29 / 0.49 / 0.20 at 200
steps, 0.24 / 0.45 / 0.16 at 500).

The prior. Samplers start from, and likelihoods evaluate, ``N(0, prior_std^2 I)``; this is
only right when ``p_T`` is close to it. `check_prior` measures how far it is and warns with
the numbers; ``prior="matched"`` (with ``data_std``) or ``prior=<float>`` replaces the
default prior by ``N(0, (alpha(T)^2 data_std^2 + sigma(T)^2) I)`` or ``N(0, prior^2 I)``,
the Gaussian with ``p_T``'s variance, which keeps likelihoods right when ``alpha(T)`` is
not small.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from solvers.inputs import as_real

from .beta_integral import CompositeIntegral, check_derivative, check_integral
from .sde import SCHEDULE_PROBE_KEY, AffineSDE, VarPreservingSDE, schedule_probe

__all__ = [
    "BetaSDE", "SigmaSDE", "EDMSDE", "PriorCheck", "check_prior", "isotropic_prior_std", "matched_prior_std", "PRIOR_KL_TOL",
    "check_end_noise", "END_NOISE_RATIO",
]

Schedule = Callable[[Tensor], Tensor]

PRIOR_KL_TOL = 1e-3
"""`check_prior` warns when the prior mismatch bound exceeds this many nats per dimension."""

def _as_prior_std(sde: AffineSDE, prior: float | str | None, data_std: float, default: float) -> float:
    if prior is None:
        return default
    if isinstance(prior, str):
        if prior != "matched":
            raise ValueError(f"prior must be None, a positive float (its std) or 'matched', got {prior!r}")
        return matched_prior_std(sde, data_std)
    std = float(prior)
    if not (std > 0 and math.isfinite(std)):
        raise ValueError(f"prior std must be positive and finite, got {prior!r}")
    return std


def matched_prior_std(sde: AffineSDE, data_std: float = 1.0) -> float:
    """``sqrt(alpha(T)^2 data_std^2 + sigma(T)^2)``: the std of ``p_T`` for data of std ``data_std``."""
    if not data_std > 0:
        raise ValueError(f"data_std must be positive, got {data_std}")
    a, s = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))
    return math.sqrt(float(a[0]) ** 2 * data_std**2 + float(s[0]) ** 2)


@dataclass(frozen=True)
class PriorCheck:
    """What `check_prior` measured (KLs in nats per data dimension).

    Attributes:
        alpha_T, sigma_T: marginal coefficients at ``T``.
        prior_std: std of the SDE's prior ``N(0, prior_std^2 I)``.
        data_std: root mean square of the data's coordinates about the origin (the data proxy;
            the std for centred data).
        kl_gaussian: ``KL(N(0, v) || N(0, prior_std^2))`` with ``v = alpha_T^2 data_std^2 + sigma_T^2``,
            the variance mismatch of ``p_T``.
        kl_bound: ``E_x0 KL(N(alpha_T x0, sigma_T^2) || prior)`` for ``E x0^2 = data_std^2``: by
            convexity of KL an upper bound on ``KL(p_T || prior)`` for any data of that std.
        ok: ``kl_bound <= tol``.
    """

    alpha_T: float
    sigma_T: float
    prior_std: float
    data_std: float
    kl_gaussian: float
    kl_bound: float
    ok: bool
    fix: str = ""

    def message(self) -> str:
        return (
            f"p_T is far from the prior N(0, {self.prior_std:.4g}^2 I): alpha(T) = {self.alpha_T:.4g}, "
            f"sigma(T) = {self.sigma_T:.4g}; for data of root-mean-square {self.data_std:g} (per coordinate, "
            f"about the origin, so an offset counts), KL(p_T || prior) can reach "
            f"{self.kl_bound:.3g} nats per dimension (variance mismatch alone: {self.kl_gaussian:.3g}). "
            f"Samples start from, and likelihoods are computed against, the wrong density. Fix: "
            f"{self.fix or _GENERIC_FIX}."
        )


_GENERIC_FIX = ("centre the data and rescale them to about unit spread, or a schedule that forgets the data "
                "by T (smaller alpha(T)/sigma(T))")


def _prior_fix(sde: object) -> str:
    """The remedy that fits ``sde``: its constructor's ``prior=`` where it has one, a larger
    ``sigma_max`` for a variance-exploding SDE, else rescaling the data or the schedule."""
    import inspect

    try:
        takes_prior = "prior" in inspect.signature(type(sde)).parameters
    except (TypeError, ValueError):
        takes_prior = False
    if takes_prior:
        return (f"{_GENERIC_FIX}, or {type(sde).__name__}(..., prior='matched', data_std=...) or prior=<std> "
                "for the Gaussian with p_T's variance")
    if hasattr(sde, "sigma_max"):
        return ("a larger sigma_max (scoresde.data.suggest_sigma_max(data) gives one for these data), or data "
                "centred and rescaled to about unit spread")
    return _GENERIC_FIX


def _variance_at_origin(log_prob_at_0: float, dim: int) -> float:
    """``p^2`` of ``N(0, p^2 I)`` in ``dim`` dimensions from its log-density at 0, ``-dim ln(2 pi p^2)/2``."""
    return math.exp(-2.0 * log_prob_at_0 / dim) / (2 * math.pi)


def _prior_std_of(sde: object) -> float:
    std = getattr(sde, "prior_std", None)
    if std is not None:
        return float(std)
    if hasattr(sde, "prior_log_prob"):
        lp0 = float(sde.prior_log_prob(torch.zeros(1, 1, dtype=torch.float64))[0])
        return math.sqrt(_variance_at_origin(lp0, 1))
    if hasattr(sde, "prior_sample"):
        # Only a sampler: the root mean square of 2^16 seeded draws (relative error ~0.3%).
        z = sde.prior_sample((1 << 16, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return float(z.pow(2).mean().sqrt())
    raise TypeError(f"{type(sde).__name__} has neither prior_log_prob nor prior_sample: no prior to check")


def isotropic_prior_std(sde: object, data_shape: tuple[int, ...]) -> float | None:
    """``p`` when ``sde``'s prior is ``N(0, p^2 I)`` on data of shape ``data_shape``, else ``None``.

    ``prior_log_prob``, the density the likelihood uses, is read at ``z = 0``
    (``-D ln(2 pi p^2)/2`` gives ``p``) and compared at ``z = 1`` with
    ``-D ln(2 pi p^2)/2 - D/(2 p^2)``: a prior of another form (a mean off the origin, another
    variance per coordinate) does not match and gives ``None``, whatever a ``prior_std``
    attribute says (a subclass may override the density and inherit the attribute). Without
    ``prior_log_prob``, the ``prior_std`` attribute (or ``None``).
    """
    prior = getattr(sde, "prior_log_prob", None)
    if not callable(prior):
        std = getattr(sde, "prior_std", None)
        return None if std is None else float(std)
    dim = math.prod(data_shape)
    z = torch.stack([torch.zeros(data_shape, dtype=torch.float64), torch.ones(data_shape, dtype=torch.float64)])
    with torch.no_grad():
        lp = prior(z).to(torch.float64).tolist()
    p2 = _variance_at_origin(lp[0], dim)
    expected = lp[0] - dim / (2 * p2)
    return math.sqrt(p2) if math.isclose(lp[1], expected, rel_tol=1e-6, abs_tol=1e-9) else None


def check_prior(sde: AffineSDE, data_std: float = 1.0, *, tol: float = PRIOR_KL_TOL,
                warn: bool = True, stacklevel: int = 2, prior_std: float | None = None) -> PriorCheck:
    """Measure how far ``p_T`` can be from the SDE's Gaussian prior; warn when it is far.

    Per dimension, with ``a = alpha(T)``, ``s = sigma(T)``, prior variance ``p^2`` and a data
    proxy of second moment ``d^2 = data_std^2``::

        kl_bound    = (s^2 + a^2 d^2) / (2 p^2) - 1/2 - ln(s / p)      (E_x0 KL(N(a x0, s^2) || N(0, p^2)))
        kl_gaussian = v / (2 p^2) - 1/2 - ln(v) / 2 + ln(p),            v = a^2 d^2 + s^2

    Args:
        sde: any ``solvers.DiffusionSDE``; its prior is taken to be ``N(0, p^2 I)`` with ``p`` its
            ``prior_std`` attribute or, without one, read off ``prior_log_prob`` at 0.
        data_std: root mean square of the data's coordinates about the origin (not about their
            mean: an offset from the prior's centre counts), 1.0 for standardised data.
        tol: warning threshold on ``kl_bound`` (nats per dimension).
        warn: emit a ``UserWarning`` with the numbers when ``kl_bound > tol``.
        stacklevel: passed to ``warnings.warn`` (2: the caller of `check_prior`).
        prior_std: ``p``, when the caller has read it already (`isotropic_prior_std`).

    Returns:
        The `PriorCheck` with the measured numbers.
    """
    if not (data_std >= 0 and math.isfinite(data_std)):  # 0: data at the origin (e.g. x = 0 in likelihood)
        raise ValueError(f"data_std must be finite and >= 0, got {data_std}")
    a_t, s_t = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))
    p = _prior_std_of(sde) if prior_std is None else float(prior_std)
    a, s, d = float(a_t[0]), float(s_t[0]), float(data_std)
    v = a * a * d * d + s * s
    kl_bound = (s * s + a * a * d * d) / (2 * p * p) - 0.5 - math.log(s / p)
    kl_gauss = v / (2 * p * p) - 0.5 - 0.5 * math.log(v / (p * p))
    res = PriorCheck(a, s, p, d, kl_gauss, kl_bound, kl_bound <= tol, _prior_fix(sde))
    if warn and not res.ok:
        warnings.warn(res.message(), UserWarning, stacklevel=stacklevel)
    return res


END_NOISE_RATIO = 0.1
"""`check_end_noise` warns when the noise left at ``eps`` exceeds this fraction of the data's std."""


def check_end_noise(sde: AffineSDE, data_std: float, *, ratio: float = END_NOISE_RATIO, warn: bool = True,
                    stacklevel: int = 2, source: str | None = None) -> float:
    """``S_eps / data_std``, the noise left at the end time as a fraction of the data's spread.

    Sampling stops at ``t = eps``, where the state is the data blurred by noise of std
    ``S_eps = sigma(eps)/alpha(eps)`` (0.0105 for the default VP SDE); the end-of-run step to
    ``sigma = 0`` (`solvers.end`) fits one Gaussian per sample, so structure closer together
    than a few ``S_eps`` cannot be recovered at any step count (docs/defaults.md). Data whose
    whole spread is under ``S_eps / ratio`` is certainly in that case.

    Args:
        sde: any SDE with ``marginal_coeffs`` and ``eps``.
        data_std: per-dimension standard deviation of the data (mean over dimensions).
        ratio: warning threshold on ``S_eps / data_std``.
        warn: emit a ``UserWarning`` with the numbers and the remedies above the threshold.
        stacklevel: passed to ``warnings.warn``.
        source: where ``data_std`` comes from (e.g. a checkpoint's recorded ``sigma_data``),
            named at the start of the warning.

    Raises:
        ValueError: ``data_std`` not positive and finite.
    """
    if not (data_std > 0 and math.isfinite(data_std)):
        raise ValueError(f"data_std must be positive and finite, got {data_std}")
    a_e, s_e = sde.marginal_coeffs(torch.tensor([sde.eps], dtype=torch.float64))
    s_eps = float(s_e[0] / a_e[0])
    value = s_eps / float(data_std)
    if warn and value > ratio:
        warnings.warn(
            ("" if source is None else f"{source}: ") +
            f"the data's spread (std {data_std:.3g} per dimension) is only {1 / value:.3g}x the noise left at "
            f"the SDE's end time eps = {sde.eps:g} (sigma/alpha = {s_eps:.3g}): samples will stay blurred at "
            "any step count. Rescale the data to about unit spread, or use an SDE with a smaller eps "
            "(e.g. VPSDE(eps=1e-5)) and train and sample with it",
            UserWarning, stacklevel=stacklevel)
    return value


class BetaSDE(VarPreservingSDE):
    """VP-type SDE from a noise schedule ``beta(t)``: ``dx = -beta x/2 dt + sqrt(beta) dW``.

    ``alpha(t) = exp(-B(t)/2)``, ``sigma(t) = sqrt(1 - exp(-B(t)))``, ``B(t) = int_0^t beta``
    (Song et al. 2021, eq. 11). Example: ``BetaSDE(lambda t: 0.1 + 19.9 * t**3)``.

    Args:
        beta: ``beta(t: (N,)) -> (N,)``, positive, written with torch operations.
        integral: optional closed form ``B(t) = int_0^t beta``; default: composite Gauss-Legendre
            quadrature on adaptive panels (`scoresde.beta_integral.CompositeIntegral`), exact to
            round-off also for a ``beta`` with jumps or kinks.
            A given one is checked against that quadrature on ``[0, T]`` (``B(0) = 0``, finite,
            non-decreasing, within relative `scoresde.beta_integral.INTEGRAL_RTOL`).
        T, eps: time horizon and the smallest sampling time.
        prior: ``None`` (``N(0, I)``), a float (the prior std) or ``"matched"``
            (std ``sqrt(alpha(T)^2 data_std^2 + sigma(T)^2)``).
        data_std: data std used by ``prior="matched"`` and by the construction-time `check_prior`.

    Raises:
        TypeError: ``beta`` / ``integral`` not callable or not returning a tensor.
        ValueError: ``beta`` negative or not finite on ``[0, T]``; ``integral`` not ``int_0^t beta``.

    Warns:
        UserWarning: from `check_prior` when ``prior`` is left at ``None`` and ``p_T`` is far from ``N(0, I)``.
    """

    def __init__(self, beta: Schedule, integral: Schedule | None = None, *, T: float = 1.0,
                 eps: float = 1e-3, prior: float | str | None = None, data_std: float = 1.0) -> None:
        super().__init__(T=T, eps=eps)
        if not callable(beta) or (integral is not None and not callable(integral)):
            raise TypeError("beta (and integral, if given) must be callables t -> tensor")
        self._beta, self._integral = beta, integral
        probe = torch.linspace(0.0, self.T, 257, dtype=torch.float64)
        b = beta(probe)
        if not isinstance(b, Tensor):
            raise TypeError(f"beta(t) must return a tensor of the shape of t (a constant: "
                            f"lambda t: torch.full_like(t, c)), got {type(b).__name__}")
        if b.shape != probe.shape or not bool(torch.isfinite(b).all()) or bool((b < 0).any()):
            raise ValueError("beta(t) must return finite, non-negative values of the shape of t on [0, T]")
        if integral is not None:
            check_integral(beta, integral, self.T, probe)
        self._quadrature = CompositeIntegral(beta, self.T) if integral is None else None
        if not float(self.integrated_beta(probe[-1:])[0]) > 0:
            raise ValueError("int_0^T beta must be positive")
        if not float(self.sigma(torch.tensor([self.eps], dtype=torch.float64))[0]) > 0:
            # every sampler's last step, and the score, divide by sigma(eps)
            raise ValueError(f"int_0^eps beta is 0 (beta = 0 up to eps={self.eps:g}): sigma(eps) = 0, where no "
                             "score exists; pass an eps past the start of the noise (or a beta > 0 near 0)")
        self._prior_std = _as_prior_std(self, prior, data_std, 1.0)
        self._prior_kind = prior
        self.prior_chosen = prior is not None  # the user picked the prior: no p_T check later
        if prior is None:
            check_prior(self, data_std, warn=True, stacklevel=3)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t)``, shape of ``t``."""
        return self._beta(t)

    def integrated_beta(self, t: Tensor) -> Tensor:
        """``B(t) = int_0^t beta(u) du`` (closed form if given, else composite quadrature)."""
        if self._integral is not None:
            return self._integral(t)
        assert self._quadrature is not None
        return self._quadrature(t)

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self.integrated_beta(t)

    @property
    def prior_std(self) -> float:
        return self._prior_std

    def config(self) -> dict[str, Any]:
        """``T``, ``eps``, ``prior_std`` and the schedule's log-SNR at 9 probe times
        (`scoresde.sde.schedule_probe`), which tells two ``beta`` callables apart."""
        return {**super().config(), "prior_std": self._prior_std, SCHEDULE_PROBE_KEY: schedule_probe(self)}


class SigmaSDE(AffineSDE):
    """VE-type SDE from a noise level ``sigma(t)``: ``dx = sqrt(d sigma^2/dt) dW``, ``alpha = 1``.

    ``x_t = x_0 + sigma(t) z`` (Song et al. 2021, eq. 9); ``sigma`` should increase with
    ``sigma(0) = 0`` (otherwise ``x_0`` already carries noise of std ``sigma(0)``).

    Args:
        sigma: ``sigma(t: (N,)) -> (N,)``, increasing, written with torch operations.
        dsigma2_dt: optional closed form of ``d sigma^2 / dt``; default: autograd of ``sigma``
            (also under ``torch.no_grad()`` and ``torch.inference_mode()``).
        T, eps: time horizon and the smallest sampling time.
        prior: ``None`` (``N(0, sigma(T)^2 I)``), a float (the prior std) or ``"matched"``.
        data_std: data std used by ``prior="matched"`` and the construction-time `check_prior`.

    Raises:
        TypeError: ``sigma`` / ``dsigma2_dt`` not callable or not returning a tensor; without
            ``dsigma2_dt``, a ``sigma`` autograd cannot differentiate.
        ValueError: ``sigma`` not finite, positive and strictly increasing on ``[eps, T]``;
            ``dsigma2_dt`` not finite and ``>= 0`` there, or not the derivative of ``sigma^2``
            (its quadrature off the growth of ``sigma^2`` by more than relative
            `scoresde.beta_integral.INTEGRAL_RTOL`).
    """

    def __init__(self, sigma: Schedule, dsigma2_dt: Schedule | None = None, *, T: float = 1.0,
                 eps: float = 1e-5, prior: float | str | None = None, data_std: float = 1.0) -> None:
        super().__init__(T=T, eps=eps)
        if not callable(sigma) or (dsigma2_dt is not None and not callable(dsigma2_dt)):
            raise TypeError("sigma (and dsigma2_dt, if given) must be callables t -> tensor")
        self._sigma, self._ds2 = sigma, dsigma2_dt
        probe = torch.linspace(self.eps, self.T, 257, dtype=torch.float64)
        s = sigma(probe)
        if not isinstance(s, Tensor):
            raise TypeError(f"sigma(t) must return a tensor of the shape of t (written with torch operations), "
                            f"got {type(s).__name__}")
        if s.shape != probe.shape or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise ValueError("sigma(t) must return finite, positive values of the shape of t on [eps, T]")
        if not bool((s[1:] > s[:-1]).all()):
            raise ValueError("sigma(t) must be strictly increasing on [eps, T]")
        self._check_dsigma2_dt(probe)
        self._prior_std = _as_prior_std(self, prior, data_std, float(s[-1]))
        self.prior_chosen = prior is not None  # the user picked the prior: no p_T check later
        if prior is None:
            check_prior(self, data_std, warn=True, stacklevel=3)

    def _check_dsigma2_dt(self, probe: Tensor) -> None:
        """``d sigma^2/dt`` on ``probe``: a tensor of its shape, finite and ``>= 0`` (``g = sqrt`` of it)."""
        name = "dsigma2_dt(t)" if self._ds2 is not None else "d sigma^2/dt (autograd of sigma)"
        if self._ds2 is not None:
            d = self._ds2(probe)
        else:
            try:
                d = self.dsigma2_dt(probe)
            except RuntimeError as err:
                raise TypeError(f"sigma must be differentiable by autograd (written with torch operations on t) "
                                f"when dsigma2_dt is not given; autograd failed: {err}. Pass dsigma2_dt=<closed "
                                f"form of d sigma^2/dt> or write sigma with torch operations") from None
        if not isinstance(d, Tensor):
            raise TypeError(f"{name} must return a tensor of the shape of t, got {type(d).__name__}")
        if d.shape != probe.shape or not bool(torch.isfinite(d).all()):
            raise ValueError(f"{name} must return finite values of the shape of t on [eps, T]")
        if bool((d < 0).any()):
            i = int(torch.argmin(d))
            raise ValueError(f"{name} must be >= 0 on [eps, T] (the diffusion is its square root); got "
                             f"{float(d[i]):.6g} at t = {float(probe[i]):.4g}")
        if self._ds2 is not None:  # a closed form must integrate to sigma^2 (autograd does by construction)
            check_derivative(self._ds2, lambda t: self._sigma(t) ** 2, self.eps, self.T,
                             rate_name="dsigma2_dt(t)", value_name="sigma(t)^2")

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def sigma(self, t: Tensor) -> Tensor:
        return self._sigma(t)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """``d sigma^2/dt`` (closed form if given, else autograd; differentiable if ``t`` is)."""
        if self._ds2 is not None:
            return self._ds2(t)
        if t.requires_grad:  # keep the graph: d sigma^2/dt is itself differentiated
            with torch.enable_grad():
                (grad,) = torch.autograd.grad((self._sigma(t) ** 2).sum(), t, create_graph=True)
            return grad
        # A leaf copy of t that records a graph, also under torch.inference_mode() (where
        # enable_grad alone records nothing and t itself is an inference tensor).
        with torch.inference_mode(False), torch.enable_grad():
            tt = t.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad((self._sigma(tt) ** 2).sum(), tt)
        return grad

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(d sigma^2/dt)``."""
        return torch.sqrt(self.dsigma2_dt(t))

    @property
    def prior_std(self) -> float:
        return self._prior_std

    def config(self) -> dict[str, Any]:
        """``T``, ``eps``, ``prior_std`` and the schedule's log-SNR ``-ln sigma`` at 9 probe times
        (`scoresde.sde.schedule_probe`), which tells two ``sigma`` callables apart."""
        return {**super().config(), "prior_std": self._prior_std, SCHEDULE_PROBE_KEY: schedule_probe(self)}


class EDMSDE(AffineSDE):
    """The sigma-space SDE of Karras et al. 2022 ("EDM"): ``sigma(t) = t``, ``alpha = 1``.

    ``dx = sqrt(2 t) dW`` on ``[sigma_min, sigma_max]``, so time *is* the noise level and
    ``x_t = x_0 + t z``; prior ``N(0, sigma_max^2 I)``. Defaults are EDM's
    (``sigma_min = 0.002``, ``sigma_max = 80``, ``T = sigma_max``, ``eps = sigma_min``).

    Args:
        sigma_min, sigma_max: the noise range (``eps`` and ``T``).

    Warns:
        UserWarning: ``p_T`` far from ``N(0, sigma_max^2 I)`` for unit data, as `scoresde.VESDE`
            (``sigma_max`` below about 22; ``EDMSDE(sigma_max=0.5)``: up to 2 nats per dimension).
    """

    _prior_fix = ("a larger sigma_max: at least sqrt(1 / (2 tolerance)) = 22.4 for data of unit spread, and at "
                  "least the largest distance between data points (scoresde.data.suggest_sigma_max); the default "
                  "is 80")

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        lo, hi = as_real(sigma_min, "sigma_min"), as_real(sigma_max, "sigma_max")  # named, not as eps / T
        if not 0.0 < lo < hi < math.inf:
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        super().__init__(T=sigma_max, eps=sigma_min)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._warn_builtin_prior()

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = t``."""
        return t.clone()

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(d t^2/dt) = sqrt(2 t)``."""
        return torch.sqrt(2.0 * t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def config(self) -> dict[str, float | bool]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


EDMSDE._builtin = True  # the package's own: its construction checks run (AffineSDE._warn_builtin_prior)
