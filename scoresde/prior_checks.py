"""How far ``p_T`` of the data is from an SDE's prior, and how much noise is left at ``eps``.

* `check_prior` bounds ``KL(p_T || prior)`` per dimension by convexity,
  ``E_x0 KL(N(alpha(T) x0, sigma(T)^2 I) || N(0, prior_std^2 I))``, for data of a given std,
  and warns with the numbers (and the SDE's own remedy) above `PRIOR_KL_TOL`.
* `check_end_noise` compares the noise left at the end time, ``sigma(eps)/alpha(eps)``, with
  the data's spread, and warns when samples cannot get sharper than the data at any step count.
* `matched_prior_std` / `isotropic_prior_std`: the Gaussian prior with ``p_T``'s variance, and
  the std of an SDE's isotropic prior when it has one.

The SDE classes in `scoresde.schedules` and `scoresde.discrete` call these at construction,
the toy training recipe and the likelihood code with the actual data.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .sde import AffineSDE

__all__ = [
    "PriorCheck", "check_prior", "isotropic_prior_std", "matched_prior_std", "PRIOR_KL_TOL",
    "check_end_noise", "END_NOISE_RATIO",
]

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
