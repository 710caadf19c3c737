"""Class guidance score wrappers: classifier guidance and classifier-free guidance.

* Classifier guidance (Song et al. 2021, sec. 5, eq. 14; Dhariwal & Nichol 2021):
  ``s_w(x, t) = s(x, t) + w grad_x log p_t(c | x)`` with a time-dependent classifier. At
  ``w = 1`` with the exact ``p_t(c | x)`` this is the exact score of ``p_t(x | c)``; ``w > 1``
  samples (approximately) ``p(x | c)`` tilted by ``p_t(c | x)^(w - 1)``, concentrating on
  points the classifier is sure about.
* Classifier-free guidance (Ho & Salimans 2022): ``s_w(x, t) = (1 + w) s(x, t, c) - w s(x, t, null)``
  with one conditional network trained with label dropout. ``w = 0`` is the conditional
  score; with exact scores, CFG weight ``w`` equals classifier guidance at scale ``1 + w``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from solvers.inputs import NotAnIntegerError, as_count, as_integer
from solvers.protocol import ScoreFn
from solvers.score_sde import marginals_difference

from ..models.score_model import like_parameters
from .checks import check_scale

__all__ = ["ClassifierGuidance", "ClassifierFreeGuidance"]

Classifier = Callable[[Tensor, Tensor], Tensor]
"""``classifier(x: (B, *D), t: (B,)) -> (B, C)`` log-probabilities (or logits) of the classes."""

ConditionalScore = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``score(x: (B, *D), t: (B,), labels: (B,)) -> (B, *D)``; ``labels == null`` is unconditional."""


_NOT_DIFFERENTIABLE = (
    "classifier's log-probability must be differentiable in x (its output has no autograd graph "
    "to x: it detaches x, runs under torch.no_grad or goes through NumPy); guidance needs grad_x log p_t(c | x)"
)


def _n_classes(n_classes: int | None) -> int | None:
    """``n_classes`` as a positive int, or ``None``."""
    return None if n_classes is None else as_count(n_classes, "n_classes")


def _check_label(label: int, n_classes: int | None) -> int:
    """``label`` as a non-negative int (NumPy / one-element torch integers too) below ``n_classes``."""
    try:
        label = as_integer(label, "label")
    except NotAnIntegerError:
        raise ValueError(f"unknown class {label!r}; classes are non-negative ints") from None
    if label < 0:
        raise ValueError(f"unknown class {label!r}; classes are non-negative ints")
    if n_classes is not None and label >= n_classes:
        raise ValueError(f"unknown class {label}; valid classes are 0 .. {n_classes - 1}")
    return label


def _like_classifier(classifier: Classifier, x: Tensor) -> Tensor:
    """``x`` in a ``torch.nn.Module`` classifier's parameter dtype where that loses nothing
    (a float32 state, a float64 classifier; gradients flow back to ``x``), else refused with
    the fix (`scoresde.models.score_model.like_parameters`).

    Raises:
        TypeError: parameters of a narrower dtype than ``x`` or on another device.
    """
    if not isinstance(classifier, torch.nn.Module):
        return x
    return like_parameters(classifier, x, what="classifier",
                           fix=f"convert the classifier with classifier.to({x.dtype}) (float32 -> float64 is "
                               "lossless) or sample in the classifier's dtype")


class _ForwardsScoreSDE:
    """A score wrapper's ``sde`` and ``min_score_time``: those its wrapped ``score`` declares, so
    that a sampler given another SDE refuses the wrapper as it would the score, and the
    likelihood stops at the network's training range."""

    score: object

    @property
    def sde(self) -> object:
        """The SDE the wrapped score declares (``score.sde``), or ``None``."""
        return getattr(self.score, "sde", None)

    @property
    def min_score_time(self) -> float | None:
        """The wrapped score's ``min_score_time`` (a trained network's earliest training time)."""
        return getattr(self.score, "min_score_time", None)


class ClassifierGuidance(_ForwardsScoreSDE):
    """Score wrapper ``s(x, t) + scale * grad_x log p_t(label | x)``.

    Args:
        score: unconditional score.
        classifier: ``(x, t) -> (B, C)`` log-probabilities; log-softmax is applied, so logits
            work too. Must be differentiable in ``x``. A ``torch.nn.Module`` gets ``x`` in its
            parameters' dtype when that is a lossless cast (float32 state, float64 classifier).
        label: the class to sample.
        scale: guidance scale ``w >= 0`` (1 = the exact conditional with an exact classifier).
        n_classes: number of classes, to reject unknown labels up front (optional).

    Raises:
        ValueError: an unknown ``label`` (negative, not an integer, ``>= n_classes``), a
            ``scale`` that is negative or not finite, ``n_classes < 1``; at call time a
            classifier output that is not ``(B, C)``, has no class ``label``, or gives a NaN /
            infinite log-probability (or gradient) for it.
        TypeError: ``score`` or ``classifier`` not callable; at call time a classifier that is
            not differentiable in ``x`` (``.detach()``, ``torch.no_grad``, NumPy), or a module
            classifier whose parameters are narrower than the state (float32 parameters, a
            float64 state: convert it with ``classifier.to(torch.float64)``) or on another device.
    """

    def __init__(
        self, score: ScoreFn, classifier: Classifier, label: int, scale: float = 1.0, *, n_classes: int | None = None
    ) -> None:
        if not callable(score) or not callable(classifier):
            raise TypeError("score and classifier must be callables (x, t) -> tensor")
        self.score, self.classifier = score, classifier
        self.label = _check_label(label, _n_classes(n_classes))
        self.scale = check_scale(scale)
        made_for, own = getattr(classifier, "sde", None), getattr(score, "sde", None)
        difference = None if made_for is None or own is None else marginals_difference(made_for, own)
        if difference is not None:  # its t would be another noise level than the score's
            raise ValueError(f"the classifier was made for {made_for!r} (classifier.sde), the score for {own!r} "
                             f"(score.sde): {difference}; train or build the classifier for the score's SDE")

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        s = self.score(x, t)
        if self.scale == 0:
            return s
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            xc = _like_classifier(self.classifier, xg)
            logits = self.classifier(xc, t.to(xc.dtype) if t.is_floating_point() else t)
            if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"classifier must return (B, C) = ({x.shape[0]}, C), got {tuple(logits.shape)}")
            if self.label >= logits.shape[1]:
                raise ValueError(f"unknown class {self.label}; the classifier has {logits.shape[1]} classes")
            logp = torch.log_softmax(logits, dim=1)[:, self.label]
            if not bool(torch.isfinite(logp).all()):
                raise ValueError(
                    f"classifier returned NaN or infinite log-probabilities for class {self.label}; "
                    "the classifier (not the score) must give finite outputs"
                )
            if not logp.requires_grad:
                raise TypeError(_NOT_DIFFERENTIABLE)
            (grad,) = torch.autograd.grad(logp.sum(), xg, allow_unused=True)
        if grad is None:
            raise TypeError(_NOT_DIFFERENTIABLE)
        if not bool(torch.isfinite(grad).all()):
            raise ValueError(f"the gradient of the classifier's log-probability of class {self.label} "
                             "holds NaN or inf; the classifier must be smooth in x")
        return s.detach() + self.scale * grad


class ClassifierFreeGuidance(_ForwardsScoreSDE):
    """Score wrapper ``(1 + w) s(x, t, label) - w s(x, t, null)`` (Ho & Salimans 2022).

    Cost: with ``scale > 0`` each call runs the network once on ``2 B`` rows (the class and the
    null label in one batch), so a run's network evaluations per sample are
    `network_evaluations_per_call` (2) times the ``nfe`` a sampler reports, which counts calls
    of this wrapper; at ``scale = 0`` it is one conditional evaluation per call.

    Args:
        score: conditional score ``(x, t, labels: (B,)) -> (B, *D)``.
        label: the class to sample.
        scale: ``w >= 0`` (0 = the plain conditional score).
        null_label: the label meaning "no class" (the network's dropout label).
        n_classes: number of real classes, to reject unknown labels (optional).

    Raises:
        ValueError: an unknown ``label``; ``null_label`` equal to ``label`` or (with
            ``n_classes``) one of the real classes ``0 .. n_classes-1``; a ``scale`` that is
            negative or not finite.
        TypeError: ``score`` not callable; `NotAnIntegerError`: ``null_label`` not an integer
            (``1.5`` is refused, not truncated).
    """

    def __init__(
        self,
        score: ConditionalScore,
        label: int,
        scale: float = 0.0,
        *,
        null_label: int,
        n_classes: int | None = None,
    ) -> None:
        if not callable(score):
            raise TypeError("score must be a callable (x, t, labels) -> tensor")
        self.score = score
        n_classes = _n_classes(n_classes)
        self.label = _check_label(label, n_classes)
        null_label = as_integer(null_label, "null_label")
        if self.label == null_label:
            raise ValueError(f"label {label} is the null label; pick a real class")
        if n_classes is not None and 0 <= null_label < n_classes:
            raise ValueError(f"null_label {null_label} is one of the real classes 0 .. {n_classes - 1}; "
                             f"it must be the network's 'no class' label (usually n_classes = {n_classes})")
        self.scale = check_scale(scale)
        self.null_label = null_label

    @property
    def network_evaluations_per_call(self) -> int:
        """Network evaluations per sample in one call: 2 with guidance (``scale > 0``), else 1."""
        return 2 if self.scale != 0 else 1

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        lab = torch.full((b,), self.label, dtype=torch.long, device=x.device)
        if self.scale == 0:
            return self.score(x, t, lab)
        null = torch.full((b,), self.null_label, dtype=torch.long, device=x.device)
        both = self.score(torch.cat([x, x]), torch.cat([t, t]), torch.cat([lab, null]))
        cond, uncond = both[:b], both[b:]
        return (1 + self.scale) * cond - self.scale * uncond
