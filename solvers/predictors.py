"""Predictors of the predictor-corrector sampler: one step of the reverse process from ``t`` to ``t_next``.

Song et al. 2021 ("Score-Based Generative Modeling through SDEs"), Section 4.2 and
Appendices E-G. Each predictor moves ``x: (B, *D)`` from time ``t`` down to ``t_next < t``:

* `EulerMaruyamaPredictor`: the Euler-Maruyama step of the reverse SDE (eq. 6).
* `ReverseDiffusionPredictor`: reverses the discretised forward step
  ``x_t = a x_s + b z`` (App. E; Alg. 2 for VE, Alg. 3 for VP).
* `AncestralPredictor`: samples the exact Gaussian posterior ``q(x_s | x_t, x0_hat)``
  of that forward step (App. F; DDPM ancestral sampling for VP, SMLD's for VE).
* `NonePredictor`: leaves the state unchanged (annealed Langevin dynamics).

Transition coefficients come from `solvers.dynamics.forward_transition`, Tweedie's
``x0_hat`` from `solvers.dynamics.ReverseDynamics.x0_from_score`, so each formula
lives in one place. The Gaussian draw of a step is the Brownian increment of the noise
source over ``[t_next, t]`` divided by ``sqrt(t - t_next)``: i.i.d. ``N(0, I)`` for
`GaussianNoise`, and consistent across step counts for
`BrownianPath`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from .dynamics import ReverseDynamics
from .euler_maruyama import em_update
from .marginals import forward_transition, marginals_of, x0_from_score
from .noise import NoiseSource, step_normal
from .registry import lookup
from .utils import append_dims, batch_time, coeff_time

__all__ = [
    "Predictor",
    "EulerMaruyamaPredictor",
    "ReverseDiffusionPredictor",
    "AncestralPredictor",
    "NonePredictor",
    "PREDICTORS",
    "get_predictor",
]


class Predictor(ABC):
    """One step of the reverse process from ``t`` to ``t_next < t``.

    Class attributes:
        name: the name under which `PREDICTORS` registers it.
        evaluations: score evaluations per step (0 or 1).
        needs_marginals: uses ``alpha(t), sigma(t)`` of the SDE.
    """

    name: ClassVar[str]
    evaluations: ClassVar[int] = 1
    needs_marginals: ClassVar[bool] = False

    def step(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        t_next: float,
        noise: NoiseSource,
        *,
        add_noise: bool = True,
    ) -> Tensor:
        """Move ``x: (B, *D)`` from ``t`` to ``t_next``: evaluate the score at ``(x, t)``, then `update`."""
        score = dynamics.score(x, batch_time(t, x)) if self.evaluations else None
        return self.update(dynamics, x, t, t_next, score, noise, add_noise=add_noise)

    @abstractmethod
    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        t_next: float,
        score: Tensor | None,
        noise: NoiseSource,
        *,
        add_noise: bool = True,
    ) -> Tensor:
        """The step given ``score = s(x, t)`` (``None`` when ``evaluations == 0``).

        ``add_noise=False`` returns the step's mean.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EulerMaruyamaPredictor(Predictor):
    """Euler-Maruyama step of the reverse SDE ``dx = [f - g^2 s] dt + g dW_bar`` (Song et al. eq. 6).

    ``x <- x - [f(x, t) - g(t)^2 s(x, t)] (t - t_next) + g(t) (W(t) - W(t_next))``: the step
    `solvers.euler_maruyama.em_update`, so that the formula lives in one place. Needs only the
    SDE's drift and diffusion.
    """

    name = "euler_maruyama"

    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        t_next: float,
        score: Tensor | None,
        noise: NoiseSource,
        *,
        add_noise: bool = True,
    ) -> Tensor:
        assert score is not None
        drift = dynamics.drift_from_score(x, batch_time(t, x), score)
        return em_update(dynamics, x, t, t_next, drift, noise, add_noise=add_noise)


class ReverseDiffusionPredictor(Predictor):
    """Reverse-diffusion step: the discretised forward step run backwards (Song et al. App. E).

    With the exact forward transition ``x_t = a x_s + b z`` over the grid step ``s = t_next``,
    ``t`` (`forward_transition`)::

        x <- (x + b^2 s(x, t)) / a + b z                  # mean="posterior" (default)
        x <- x - (a - 1) x + b^2 s(x, t) + b z            # mean="additive" (Song et al. Alg. 3)

    The default mean is Tweedie's formula for that one step, ``E[x_s | x_t] = (x_t + b^2
    grad log p_t(x_t)) / a``, exact for every ``p_s``; the noise ``b z`` is the forward step's (on
    VP this is DDPM's sampler with ``sigma_t^2 = beta_t``, Ho et al. 2020, Alg. 2).
    ``mean="additive"`` is Song et al.'s rule (their Alg. 3 and reference code): it undoes the
    forward drift ``f_i(x) = (a - 1) x`` by subtraction, ``(2 - a) x`` for ``x / a``, which is
    short by ``(1 - a)^2 / a ~ b^4 / 4`` of ``x`` per step. That error is proportional to the
    state: on data centred away from the origin it moves the samples towards it (four modes of
    std 0.04 with weights 0.4 / 0.3 / 0.2 / 0.1, shifted by (10, 10), VP, 100 steps: mode-weight
    total variation 0.140 against 0.009 for the default, which reads the same unshifted; 0.030
    against 0.005 at 500 steps). On VE ``a = 1`` and the two are the same step,
    ``x + (sigma_t^2 - sigma_s^2) s + sqrt(sigma_t^2 - sigma_s^2) z`` (Alg. 2).

    Args:
        mean: ``"posterior"`` (default) or ``"additive"`` (Song et al.'s Alg. 3, to reproduce
            their reference sampler).
    """

    name = "reverse_diffusion"
    needs_marginals = True
    MEANS: ClassVar[tuple[str, ...]] = ("posterior", "additive")

    def __init__(self, mean: str = "posterior") -> None:
        self.mean: str = lookup({k: k for k in self.MEANS}, mean, "mean")

    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        t_next: float,
        score: Tensor | None,
        noise: NoiseSource,
        *,
        add_noise: bool = True,
    ) -> Tensor:
        a, b = forward_transition(marginals_of(dynamics), coeff_time(t_next, x), coeff_time(t, x))
        assert score is not None
        if self.mean == "posterior":
            # Tweedie for the one step x_t = a x_s + b z: E[x_s | x_t] = (x_t + b^2 s) / a.
            x_mean = (x + append_dims(b**2, x.ndim) * score) / append_dims(a, x.ndim)
        else:
            # Undo the forward drift (a - 1) x and move up the score by the step's variance b^2.
            x_mean = x - append_dims(a - 1.0, x.ndim) * x + append_dims(b**2, x.ndim) * score
        if not add_noise:
            return x_mean
        # Re-inject the forward step's noise b z.
        return x_mean + append_dims(b, x.ndim) * step_normal(noise, t, t_next, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean!r})"


class AncestralPredictor(Predictor):
    """Ancestral step: sample the Gaussian posterior of the forward step given Tweedie's ``x0_hat``.

    For the forward step ``x_t = a x_s + b z`` (``s = t_next < t``) and
    ``x_s | x_0 ~ N(alpha_s x_0, sigma_s^2)``, the posterior ``q(x_s | x_t, x_0)`` is Gaussian
    with (``sigma_t^2 = a^2 sigma_s^2 + b^2``)::

        mean = (b^2 alpha_s / sigma_t^2) x0_hat + (a sigma_s^2 / sigma_t^2) x_t
        var  = b^2 sigma_s^2 / sigma_t^2

    evaluated at ``x0_hat = (x_t + sigma_t^2 s(x_t, t)) / alpha_t`` (Tweedie). The mean
    simplifies to ``(x_t + b^2 s) / a``. On VP this is DDPM's ancestral sampler with
    ``sigma^2 = beta_tilde`` (Ho et al. 2020, eq. 7 and Alg. 2); on VE it is SMLD's
    ancestral step ``x + (sigma_t^2 - sigma_s^2) s + sqrt(sigma_s^2 (sigma_t^2 -
    sigma_s^2) / sigma_t^2) z`` (Song et al. 2021, App. F). Song et al.'s reference VP code
    uses the larger variance ``beta_i`` instead of ``beta_tilde``.
    """

    name = "ancestral"
    needs_marginals = True

    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        t_next: float,
        score: Tensor | None,
        noise: NoiseSource,
        *,
        add_noise: bool = True,
    ) -> Tensor:
        t1, s1 = coeff_time(t, x), coeff_time(t_next, x)
        sde = marginals_of(dynamics)
        a, b = forward_transition(sde, s1, t1)
        alpha_s, sigma_s = sde.marginal_coeffs(s1)
        _, sigma_t = sde.marginal_coeffs(t1)
        # Tweedie's estimate of the clean data.
        assert score is not None
        x0_hat = x0_from_score(sde, x, t1, score)
        # Posterior mean of x_s given x_t and x0_hat.
        var_t = sigma_t**2
        coef_x0 = b**2 * alpha_s / var_t
        coef_xt = a * sigma_s**2 / var_t
        x_mean = append_dims(coef_x0, x.ndim) * x0_hat + append_dims(coef_xt, x.ndim) * x
        if not add_noise:
            return x_mean
        # Posterior standard deviation b sigma_s / sigma_t.
        std = b * sigma_s / sigma_t
        return x_mean + append_dims(std, x.ndim) * step_normal(noise, t, t_next, x)


class NonePredictor(Predictor):
    """No predictor: the state stays put and the corrector alone moves it (annealed Langevin)."""

    name = "none"
    evaluations = 0

    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        t_next: float,
        score: Tensor | None,
        noise: NoiseSource,
        *,
        add_noise: bool = True,
    ) -> Tensor:
        return x


PREDICTORS: Mapping[str, type[Predictor]] = {
    "euler_maruyama": EulerMaruyamaPredictor,
    "reverse_diffusion": ReverseDiffusionPredictor,
    "ancestral": AncestralPredictor,
    "none": NonePredictor,
}


def get_predictor(spec: str | Predictor) -> Predictor:
    """A predictor from its name in `PREDICTORS` or a `Predictor` instance.

    Raises:
        ValueError: unknown name (the message lists the valid names).
        TypeError: neither a name nor a `Predictor`.
    """
    if isinstance(spec, Predictor):
        return spec
    if isinstance(spec, str):
        return lookup(PREDICTORS, spec, "predictor")()
    raise TypeError(f"predictor must be a name or a Predictor, got {type(spec).__name__}")
