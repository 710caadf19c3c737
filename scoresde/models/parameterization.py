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

Tweedie's formula ties them: ``x0 = (x + sigma^2 s) / alpha`` (the same relation as
:meth:`solvers.ReverseDynamics.x0_from_score`). Every conversion lives in :func:`convert`.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from solvers.utils import append_dims

__all__ = ["OUTPUTS", "Output", "convert", "check_output"]

Output = Literal["score", "eps", "x0", "v"]
OUTPUTS: tuple[str, ...] = ("score", "eps", "x0", "v")


def check_output(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`OUTPUTS`, else raise ``ValueError``."""
    if kind not in OUTPUTS:
        raise ValueError(f"unknown prediction type {kind!r}; valid: {', '.join(OUTPUTS)}")
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


def convert(o: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, *, src: str, dst: str) -> Tensor:
    """Convert a prediction ``o`` of type ``src`` at ``x`` into type ``dst``.

    Shapes: ``o, x: (B, *D)``, ``alpha, sigma: (B,)`` (or 0-d); returns ``(B, *D)``.
    ``src = "score"`` means the scaled output ``o = sigma * s`` (see the module docstring).
    """
    check_output(src)
    check_output(dst)
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
