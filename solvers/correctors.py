"""Correctors of the predictor-corrector sampler: Langevin MCMC steps targeting ``p_t`` at a fixed ``t``.

Song et al. 2021 ("Score-Based Generative Modeling through SDEs"), Section 4.2, Alg. 4-5.
One corrector step at time ``t`` on ``x: (B, *D)`` is the unadjusted Langevin update::

    x <- x + h s(x, t) + sqrt(2 h) z,        z ~ N(0, I)

with a step size ``h`` of shape ``(B,)`` (per sample) or ``(1,)`` (shared by the batch):

* `LangevinCorrector`: ``h = 2 a (r ||z|| / ||s||)^2`` (Alg. 4 VE, Alg. 5 VP), the
  norms taken over all non-batch dims and averaged over the batch (``norm="batch"``, as
  Song et al.'s reference code), or per sample (``norm="sample"``), capped at
  ``h <= sigma(t)^2``, half the chain's stability limit for any ``p_t`` (``cap``; ``None``
  is the reference code's unbounded rule);
* `AnnealedLangevinCorrector`: ``h = 2 a (r sigma(t))^2``, the annealed Langevin
  dynamics of SMLD/NCSN (Song & Ermon 2019) written for any SDE;
* `NoneCorrector`: no corrector.

``a`` generalises VP's ``alpha_i = 1 - beta_i``: it is ``a^2`` of the forward transition
``x_t = a x_s + b z`` over the grid step (`corrector_weight`), i.e. ``1 - beta_i`` for
VP and sub-VP and ``1`` for VE. ``r`` is ``snr``; the paper uses 0.16 for VE (default here)
and 0.01 for VP. Without the cap a fixed ``snr`` leaves an ``O(snr^2)`` bias of the
unadjusted Langevin chain that does not shrink with the number of grid steps (the within-mode
spread of a sharp mixture stays ``snr^2 / 2`` too wide); with it the bias falls as the grid
is refined (`LangevinCorrector`).

Why ``norm="batch"`` is the default: a per-sample step ``h(x) = 2 a r^2 ||z||^2 / ||s(x)||^2``
depends on the state, and blows up where the score vanishes, i.e. at the modes' centres
and at saddles. In high dimension ``||s(x)||`` concentrates and the two rules agree; in
low dimension the uncapped per-sample rule kicks samples out of the modes (at every ``snr``;
figures in docs/solvers.md; the cap bounds it, which brings it to the noise floor on
``eight_gaussians`` too). A state-dependent step size
also changes the chain's invariant law (it would need an Ito correction term). The batch
rule's step is (for large batches) a function of ``t`` only, so the chain keeps ``p_t``
invariant up to the usual ``O(h)`` discretisation bias.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Literal

import torch
from torch import Tensor

from .dynamics import ReverseDynamics
from .marginals import forward_transition, marginals_of
from .noise import NoiseSource
from .registry import lookup
from .utils import append_dims, batch_time, coeff_time, flat_norm

__all__ = [
    "DEFAULT_SNR",
    "LANGEVIN_CAP",
    "LANGEVIN_NORMS",
    "Corrector",
    "LangevinCorrector",
    "AnnealedLangevinCorrector",
    "NoneCorrector",
    "CORRECTORS",
    "get_corrector",
    "corrector_weight",
    "langevin_update",
]

DEFAULT_SNR = 0.16
"""Song et al.'s signal-to-noise ratio for VE (their VP runs use 0.01)."""

LANGEVIN_NORMS = ("batch", "sample")

LANGEVIN_CAP = 1.0
"""Default ``c`` of `LangevinCorrector`'s step cap ``h <= c sigma(t)^2`` (half the chain's stability edge)."""


def corrector_weight(dynamics: ReverseDynamics, t: float, t_next: float, like: Tensor) -> Tensor:
    """``a_i = a^2`` of the forward transition ``x_t = a x_s + b z`` over the grid step ``[t_next, t]``.

    VP / sub-VP: ``a^2 = alpha(t)^2 / alpha(t_next)^2 = 1 - beta_i`` (Alg. 5); VE: ``1`` (Alg. 4).
    Returns ``(1,)`` (one grid time for the whole batch; broadcast with ``append_dims``) on
    the device and dtype of ``like: (B, *D)``.
    """
    a, _ = forward_transition(marginals_of(dynamics), coeff_time(t_next, like), coeff_time(t, like))
    return a**2


def langevin_update(x: Tensor, score: Tensor, step_size: Tensor, z: Tensor) -> Tensor:
    """Unadjusted Langevin step ``x + h s + sqrt(2 h) z`` with ``h = step_size``.

    Shapes: ``x, score, z: (B, *D)``, ``step_size: (B,)`` or ``(1,)``.
    """
    h = step_size
    return x + append_dims(h, x.ndim) * score + append_dims(torch.sqrt(2.0 * h), x.ndim) * z


def _check_snr(snr: float) -> float:
    if isinstance(snr, bool) or not isinstance(snr, (int, float)):
        raise TypeError(f"snr must be a positive float, got {type(snr).__name__}")
    if not (math.isfinite(snr) and snr > 0):
        raise ValueError(f"snr must be a positive finite number, got {snr!r}")
    return float(snr)


class Corrector(ABC):
    """A Markov-chain step that leaves ``p_t`` (approximately) invariant, applied at a fixed ``t``.

    Class attributes:
        name: the name under which `CORRECTORS` registers it.
        evaluations: score evaluations per corrector step (0 or 1).

    Attributes:
        snr: the signal-to-noise ratio ``r`` (``None`` for `NoneCorrector`).
    """

    name: ClassVar[str]
    evaluations: ClassVar[int] = 1
    needs_marginals: ClassVar[bool] = True
    snr: float | None = None

    def step(
        self, dynamics: ReverseDynamics, x: Tensor, t: float, weight: Tensor, noise: NoiseSource
    ) -> Tensor:
        """One corrector step at time ``t`` on ``x: (B, *D)``: evaluate the score, then `update`.

        ``weight: (B,)`` or ``(1,)`` is ``a_i``.
        """
        score = dynamics.score(x, batch_time(t, x)) if self.evaluations else None
        return self.update(dynamics, x, t, score, weight, noise)

    @abstractmethod
    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        score: Tensor | None,
        weight: Tensor,
        noise: NoiseSource,
    ) -> Tensor:
        """The step given ``score = s(x, t)`` (``None`` when ``evaluations == 0``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(snr={self.snr!r})"


class _LangevinStep(Corrector):
    """Shared Langevin move; subclasses choose the step size ``h: (B,)`` or ``(1,)``."""

    snr: float

    def __init__(self, snr: float = DEFAULT_SNR) -> None:
        self.snr = _check_snr(snr)

    @abstractmethod
    def step_size(self, dynamics: ReverseDynamics, score: Tensor, z: Tensor, t: Tensor, weight: Tensor) -> Tensor:
        """Step size ``h`` (``(B,)`` or ``(1,)``) for ``score, z: (B, *D)`` at ``t``, ``weight = a_i``.

        ``t`` and ``weight`` are ``(1,)`` (one grid time) or ``(B,)``.
        """

    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        score: Tensor | None,
        weight: Tensor,
        noise: NoiseSource,
    ) -> Tensor:
        assert score is not None
        z = noise.normal(x)
        # Step size from the signal-to-noise ratio, then the Langevin move.
        h = self.step_size(dynamics, score, z, coeff_time(t, x), weight)
        return langevin_update(x, score, h, z)


class LangevinCorrector(_LangevinStep):
    """Langevin corrector with step ``h = min(2 a (r ||z|| / ||s||)^2, c sigma(t)^2)`` (Song et al. Alg. 4-5, capped).

    The first term is Song et al.'s rule. The cap ``c sigma(t)^2`` (``cap = c``, default 1)
    keeps every step inside the stability region of the unadjusted Langevin chain for any
    data: ``p_t`` is ``p_0`` (scaled by ``alpha``) convolved with ``N(0, sigma(t)^2 I)``, so
    ``-Hess log p_t = I / sigma^2 - Cov[alpha x_0 | x_t] / sigma^4 <= I / sigma(t)^2`` and the
    chain is stable along every direction for ``h < 2 sigma(t)^2``. Song et al.'s rule sets
    one step for the whole batch from the average score norm, i.e. from the widest parts of
    the data; once ``sigma(t)`` falls below the width of a narrower mode or direction, that
    step can exceed twice its variance and the chain throws samples out of it (a 2% mode of
    width 0.01 next to a broad one, VE, snr 0.16: the whole mode lost at 200-2000 NFE,
    docs/defaults.md). The cap also makes the chain's stationary bias
    ``min(snr^2 / 2, c sigma^2 / (4 (v + sigma^2)))`` (spread, mode of variance ``v``: the
    unadjusted chain with step ``h`` on ``N(0, V)`` has stationary variance ``V / (1 - h/(2V))``) vanish as
    ``sigma(t)`` falls below the data's scale. The chain follows it down until it relaxes too
    slowly, a point that moves down as the grid gets finer, so the error falls with the step
    count instead of stopping at ``snr^2 / 2`` (1.3% at snr 0.16): on a 16-D Gaussian of std
    0.05 under VE the spread is 1.0102, 1.0060, 1.0033 at 250, 1000, 2000 PC steps, against
    1.0125-1.0132 uncapped (reverse diffusion alone: 1.0221, 1.0061, 1.0012). It binds only
    where Song's step exceeds ``c sigma^2``, i.e. where the data is resolved at that noise
    level (for a mode of variance ``v``: ``v > (c / (2 r^2) - 1) sigma^2``); at snr 0.01
    (VP, sub-VP default) practically never.

    Args:
        snr: the ratio ``r = ||h s|| / ||sqrt(2 h) z||`` of the step's signal to its
            noise (exactly, for ``a = 1``, where the cap does not bind).
        norm: ``"batch"`` (default): ``||z||`` and ``||s||`` are the batch means of the
            per-sample norms (Song et al.'s reference code), so all samples share one step
            size; ``"sample"``: each sample uses its own norms (unreliable in low dimension;
            see the module docstring).
        cap: ``c`` in ``h <= c sigma(t)^2`` (a positive float below 2, the stability edge;
            default 1, half of it), or ``None`` for Song et al.'s rule unbounded (their
            reference code).

    Where the score norm is exactly zero the step size is undefined and set to 0.
    """

    name = "langevin"

    def __init__(
        self,
        snr: float = DEFAULT_SNR,
        *,
        norm: Literal["batch", "sample"] = "batch",
        cap: float | None = LANGEVIN_CAP,
    ) -> None:
        super().__init__(snr)
        if norm not in LANGEVIN_NORMS:
            raise ValueError(f"unknown norm {norm!r}; valid norms: {', '.join(LANGEVIN_NORMS)}")
        self.norm = norm
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, (int, float)):
                raise TypeError(f"cap must be a float in (0, 2) or None, got {type(cap).__name__}")
            if not (math.isfinite(cap) and 0 < cap < 2):
                raise ValueError(
                    f"cap must lie in (0, 2) (h <= cap sigma(t)^2; 2 is the Langevin chain's stability edge), got {cap!r}"
                )
            cap = float(cap)
        self.cap: float | None = cap

    def step_size(self, dynamics: ReverseDynamics, score: Tensor, z: Tensor, t: Tensor, weight: Tensor) -> Tensor:
        """``h = min(2 a (r ||z|| / ||s||)^2, c sigma(t)^2)``: ``(B,)`` per sample or for ``t: (B,)``, else ``(1,)``."""
        # Norms over all non-batch dims, then (by default) averaged over the batch.
        s_norm, z_norm = flat_norm(score), flat_norm(z)
        if self.norm == "batch":
            s_norm, z_norm = s_norm.mean(), z_norm.mean()
        ratio = torch.where(s_norm > 0, z_norm / s_norm, torch.zeros_like(s_norm))
        h = 2.0 * weight * (self.snr * ratio) ** 2
        if self.cap is None:
            return h
        _, sigma = marginals_of(dynamics).marginal_coeffs(t)
        return torch.minimum(h, self.cap * sigma.to(h) ** 2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(snr={self.snr!r}, norm={self.norm!r}, cap={self.cap!r})"


class AnnealedLangevinCorrector(_LangevinStep):
    """Annealed Langevin dynamics (SMLD/NCSN): step ``h = 2 a (r sigma(t))^2``.

    Song & Ermon 2019 (Alg. 1) use ``alpha_i = epsilon sigma_i^2 / sigma_L^2``: the same
    ``h proportional to sigma(t)^2`` rule, here parameterised by ``r = snr`` as in Song et al.
    2021's reference sampler. ``sigma(t)`` is the SDE's marginal noise scale.

    Args:
        snr: ``r``; the step size does not depend on the state.
    """

    name = "annealed_langevin"

    def step_size(self, dynamics: ReverseDynamics, score: Tensor, z: Tensor, t: Tensor, weight: Tensor) -> Tensor:
        """``h = 2 a (r sigma(t))^2``, shaped like ``t``."""
        _, sigma = marginals_of(dynamics).marginal_coeffs(t)
        return 2.0 * weight * (self.snr * sigma) ** 2


class NoneCorrector(Corrector):
    """No corrector: a predictor-only sampler."""

    name = "none"
    evaluations = 0
    needs_marginals = False

    def update(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        t: float,
        score: Tensor | None,
        weight: Tensor,
        noise: NoiseSource,
    ) -> Tensor:
        return x

    def __repr__(self) -> str:
        return "NoneCorrector()"


CORRECTORS: Mapping[str, type[Corrector]] = {
    "none": NoneCorrector,
    "langevin": LangevinCorrector,
    "annealed_langevin": AnnealedLangevinCorrector,
}


def get_corrector(
    spec: str | Corrector, *, snr: float | None = None, cap: float | str | None = LANGEVIN_CAP
) -> Corrector:
    """A corrector from its name in `CORRECTORS` (with ``snr``) or a `Corrector` instance.

    ``snr=None`` keeps the default `DEFAULT_SNR`. ``cap`` is the step cap of the ``"langevin"``
    corrector (`LangevinCorrector`; ``None`` or ``"none"``: Song et al.'s unbounded rule).

    Raises:
        ValueError: unknown name (the message lists the valid names), ``snr`` given for an
            instance (set it on the instance) or for ``"none"``, a non-default ``cap`` for an
            instance or for a corrector other than ``"langevin"``, or a cap outside ``(0, 2)``.
        TypeError: neither a name nor a `Corrector`; a ``cap`` that is not a number, ``None``
            or ``"none"``.
    """
    if isinstance(cap, str):
        if cap.lower() != "none":
            raise TypeError(f"cap must be a float in (0, 2), None or 'none', got {cap!r}")
        cap = None
    custom_cap = cap != LANGEVIN_CAP
    if isinstance(spec, Corrector):
        if snr is not None:
            raise ValueError(
                f"snr={snr!r} given with a corrector instance {spec!r}; set snr on the instance"
            )
        if custom_cap:
            raise ValueError(f"cap={cap!r} given with a corrector instance {spec!r}; set cap on the instance")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"corrector must be a name or a Corrector, got {type(spec).__name__}")
    cls = lookup(CORRECTORS, spec, "corrector")
    if custom_cap and cls is not LangevinCorrector:
        raise ValueError(f"cap={cap!r} has no effect with corrector {spec!r} (only 'langevin' has a step cap)")
    if not issubclass(cls, _LangevinStep):
        if snr is not None:
            raise ValueError(f"snr={snr!r} has no effect with corrector {spec!r}")
        return cls()
    value = DEFAULT_SNR if snr is None else snr
    return LangevinCorrector(value, cap=cap) if cls is LangevinCorrector else cls(value)
