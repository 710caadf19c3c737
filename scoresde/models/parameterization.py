"""Output parameterizations of a score network and the exact conversions between them.

With ``x = alpha x0 + sigma eps`` (``alpha, sigma = sde.marginal_coeffs(t)``) a network output
``o`` can stand for any of four equivalent predictions (Song et al. 2021; Ho et al. 2020;
Salimans & Ho 2022 for v):

* ``"score"``: ``s = o / sigma`` (the usual output scaling by ``1/sigma(t)``, Song et al. 2021
  App. H: the network predicts ``-eps`` and the score is ``-eps/sigma``);
* ``"eps"``: ``eps = o``, and ``s = -eps / sigma``;
* ``"x0"``: ``x0 = o``, and ``eps = (x - alpha x0) / sigma``;
* ``"v"``: ``v = alpha eps - sigma x0``, inverted as
  ``eps = (alpha v + sigma x) / (alpha^2 + sigma^2)``, ``x0 = (alpha x - sigma v) / (alpha^2 + sigma^2)``.

EDM preconditioning (Karras et al. 2022, Table 1) adds a fifth output, ``"edm"``: in EDM's
variables ``x_edm = x / alpha``, ``sigma_edm = sigma / alpha`` the denoiser is
``D = c_skip x_edm + c_out o`` (the network predicts the rescaled residual ``o = F``), with
``c_skip, c_out, c_in, c_noise`` from `edm_coefficients`; ``D`` is the ``x0`` prediction.
The input scaling of ``ScoreModel`` is EDM's ``c_in``. ``"edm"`` needs ``sigma_data``.

Tweedie's formula ties them: ``x0 = (x + sigma^2 s) / alpha`` (the same relation as
`solvers.ReverseDynamics.x0_from_score`). Every conversion lives in `convert`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from solvers.utils import append_dims

__all__ = ["OUTPUTS", "ALL_OUTPUTS", "Output", "convert", "check_output", "edm_coefficients", "edm_loss_weight"]

Output = Literal["score", "eps", "x0", "v", "edm"]
OUTPUTS: tuple[str, ...] = ("score", "eps", "x0", "v")
ALL_OUTPUTS: tuple[str, ...] = (*OUTPUTS, "edm")
"""`OUTPUTS` plus the EDM-preconditioned output ``"edm"`` (which needs ``sigma_data``)."""


def edm_coefficients(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EDM preconditioning (Karras et al. 2022, Table 1) at noise level ``sigma: (B,)``.

    ``c_skip = sd^2/(sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1/sqrt(sigma^2 + sd^2)``, ``c_noise = ln(sigma)/4`` (``sd = sigma_data``).

    Returns:
        ``(c_skip, c_out, c_in, c_noise)``, each of the shape of ``sigma``.
    """
    if not sigma_data > 0:
        raise ValueError(f"sigma_data must be positive, got {sigma_data}")
    var = sigma * sigma + sigma_data**2
    return sigma_data**2 / var, sigma * sigma_data / torch.sqrt(var), torch.rsqrt(var), 0.25 * torch.log(sigma)


def edm_loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """EDM's loss weight ``lambda(sigma) = (sigma^2 + sd^2)/(sigma sd)^2`` on ``||D - x0||^2`` (Karras et al. 2022, Table 1).

    It equals ``1/c_out^2``, so the loss is ``||F - F_target||^2`` with unit weight.
    """
    return (sigma * sigma + sigma_data**2) / (sigma * sigma_data) ** 2


def check_output(kind: str) -> str:
    """Return ``kind`` if it is one of `ALL_OUTPUTS`, else raise ``ValueError``."""
    if kind not in ALL_OUTPUTS:
        raise ValueError(f"unknown prediction type {kind!r}; valid: {', '.join(ALL_OUTPUTS)}")
    return kind


def _eps(o: Tensor, x: Tensor, a: Tensor, s: Tensor, src: str) -> Tensor:
    """Noise prediction ``eps`` from an output of type ``src`` (``a, s`` already broadcast)."""
    if src == "eps":
        return o
    if src == "score":
        return -o  # eps = -sigma * (o / sigma)
    if src == "x0":
        return (x - a * o) / s
    return (a * o + s * x) / (a * a + s * s)  # v


def _x0(o: Tensor, x: Tensor, a: Tensor, s: Tensor, src: str) -> Tensor:
    """Data prediction ``x0`` from an output of type ``src`` (``a, s`` already broadcast)."""
    if src == "x0":
        return o
    if src == "v":
        return (a * x - s * o) / (a * a + s * s)
    return (x - s * _eps(o, x, a, s, src)) / a


def convert(o: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, *, src: str, dst: str,
            sigma_data: float = 1.0) -> Tensor:
    """Convert a prediction ``o`` of type ``src`` at ``x`` into type ``dst``.

    Shapes: ``o, x: (B, *D)``, ``alpha, sigma: (B,)`` (or 0-d); returns ``(B, *D)``.
    ``src = "score"`` means the scaled output ``o = sigma * s`` (see the module docstring),
    while ``dst = "score"`` returns the score ``s = grad_x log p_t`` itself: for ``"score"``
    the call is not its own inverse (``convert(s, ..., src="score")`` reads ``s`` as
    ``sigma * s``; pass ``sigma * s``). ``sigma_data`` is used only by ``"edm"``.
    """
    check_output(src)
    check_output(dst)
    if "edm" in (src, dst) and src != dst:
        c_skip, c_out, _, _ = (append_dims(c, x.ndim) for c in edm_coefficients(sigma / alpha, sigma_data))
        x_edm = x / append_dims(alpha, x.ndim)
        if src == "edm":  # D = c_skip x_edm + c_out F is the x0 prediction
            return convert(c_skip * x_edm + c_out * o, x, alpha, sigma, src="x0", dst=dst)
        x0 = convert(o, x, alpha, sigma, src=src, dst="x0")
        return (x0 - c_skip * x_edm) / c_out
    a, s = append_dims(alpha, x.ndim), append_dims(sigma, x.ndim)
    if dst == src and dst != "score":
        return o
    if dst == "eps":
        return _eps(o, x, a, s, src)
    if dst == "x0":
        return _x0(o, x, a, s, src)
    if dst == "score":
        return -_eps(o, x, a, s, src) / s
    # v = alpha eps - sigma x0
    return a * _eps(o, x, a, s, src) - s * _x0(o, x, a, s, src)
