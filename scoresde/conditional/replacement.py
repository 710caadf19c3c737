"""Replacement imputation (Song et al. 2021, sec. 5 and App. I.2) as an ``after_step`` hook.

After every solver step to time ``t`` the observed part of the state is replaced by a fresh
draw of its forward transition from the data, ``x_{t,o} = alpha(t) y_o + sigma(t) z``; the free
part evolves under the unconditional score. For a general noiseless measurement ``y = A x``
the same is done in the orthonormal basis of the SVD ``A = U S V^T`` (colorization in Song et
al. 2021, App. I.3, is the case of a per-pixel channel mean): the coordinates ``V_M^T x`` are
observed as ``S^{-1} U^T y``.

This is *not* the exact conditional: the free part is driven by
``grad log p_t(x_u | x_{t,o})``, which conditions on a noisy copy of ``y`` rather than on
``y`` (measured in docs/conditional.md).

    hook = Replacement(sde, mask, observed, seed=0)
    solvers.sample(sde, score, shape, "euler_maruyama", after_step=hook, seed=0)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from solvers.inputs import check_generator, check_seed
from solvers.noise import make_generator
from solvers.protocol import DiffusionSDE
from solvers.utils import append_dims

from .checks import as_tensor, check_finite_observed, check_full_row_rank, check_mask, check_matrix

__all__ = ["Replacement", "LinearReplacement", "StatefulHook"]


@runtime_checkable
class StatefulHook(Protocol):
    """An ``after_step`` hook whose randomness (or other state) carries over from one run to the next.

    ``get_state()`` returns what the next run depends on (e.g. the CPU generator's state) as a
    dict of tensors and numbers (``torch.save`` / ``torch.load(weights_only=True)`` round-trip
    it); ``set_state(state)`` puts it back. Chunked, resumable sampling
    (``scoresde sample --batch-size``) stores the hook's state with every finished chunk and
    restores it on resume, so a resumed run draws the same hook noise as an uninterrupted one.
    """

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    """``{"generator": ByteTensor}``: the state of a hook's CPU generator (see `StatefulHook`)."""
    return {"generator": generator.get_state()}


def set_generator_state(generator: torch.Generator, state: Any, owner: str) -> None:
    """Restore ``generator`` from ``state["generator"]`` (written by `generator_state`).

    Raises:
        ValueError: ``state`` is not such a dict (naming ``owner``, the hook's class).
    """
    saved = state.get("generator") if isinstance(state, dict) else None
    if not isinstance(saved, torch.Tensor) or saved.dtype != torch.uint8:
        raise ValueError(f"{owner}.set_state needs the dict returned by {owner}.get_state() "
                         f"(with a 'generator' ByteTensor), got {type(state).__name__}")
    generator.set_state(saved)


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """A CPU generator: ``generator``, one seeded with ``seed``, or a randomly seeded one.

    Raises:
        ValueError: both given, or a seed outside ``torch.Generator``'s range.
        TypeError: ``generator`` not a CPU ``torch.Generator``; `NotAnIntegerError`: ``seed``
            not an integer (``1.5`` is refused, not truncated).
    """
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    seed = check_seed(seed)
    if generator is not None:
        try:
            return check_generator(generator, torch.device("cpu"))  # type: ignore[return-value]
        except ValueError as err:
            raise TypeError(f"{err} (the conditioning noise is drawn on the CPU)") from None
    return make_generator(seed)  # seed=None: drawn from torch's global generator


class Replacement:
    """``after_step(x, t)``: observed coordinates <- ``alpha(t) y + sigma(t) z``.

    Args:
        sde: the forward SDE (gives ``alpha, sigma``).
        mask: booleans of the data shape ``*D``, True = observed (0/1 integers or floats too).
        observed: values of shape ``*D`` or ``(1, *D)`` (one observation for the batch) or
            ``(B, *D)`` (one per sample). Per-sample observations need an unchunked run: ``solvers.sample``
            without ``batch_size`` (or with ``batch_size >= B``). The hook sees one chunk at a
            time and cannot tell which samples it holds: chunks of another size are refused,
            but with ``batch_size`` equal to ``B`` every chunk would silently get observations
            ``0 .. B-1`` (``scoresde sample`` refuses that case up front).
        seed, generator: randomness of the replacement noise (CPU generator). The generator
            carries over from one run to the next: a hook reused for a second run draws new
            noise (build a new one, or `set_state` a saved state, to repeat a run).
        exact_at_end: at ``t <= sde.eps`` write ``y`` itself (no noise) into the result.

    Raises:
        ValueError: a bad ``mask`` (see `check_mask`), ``observed`` of another shape or with
            NaN / inf at the observed positions, a bad ``seed``; at call time a state whose
            data shape or batch size does not match.
        TypeError: ``mask`` / ``observed`` not numeric arrays, a bad ``generator``.
    """

    def __init__(
        self,
        sde: DiffusionSDE,
        mask: Any,
        observed: Tensor,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        exact_at_end: bool = True,
    ) -> None:
        m = as_tensor(mask, "mask")
        self.mask = check_mask(m, tuple(m.shape))
        y = as_tensor(observed, "observed")
        if tuple(y.shape[-self.mask.ndim:]) != tuple(self.mask.shape) or y.ndim not in (self.mask.ndim, self.mask.ndim + 1):
            raise ValueError(
                f"observed has shape {tuple(y.shape)}; expected the mask's shape {tuple(self.mask.shape)} "
                "or (B, *mask.shape)"
            )
        if y.ndim == self.mask.ndim + 1 and y.shape[0] == 1:
            y = y[0]  # one observation with a batch axis of 1 (as a CLI file holds it): shared by all samples
        check_finite_observed(y[..., self.mask], "observed (at the masked positions)")
        self.sde = sde
        self.observed = y
        self.generator = _generator(seed, generator)
        self.exact_at_end = exact_at_end

    def get_state(self) -> dict[str, Any]:
        """The replacement noise's generator state (`StatefulHook`)."""
        return generator_state(self.generator)

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from `get_state`: the next draws continue from there."""
        set_generator_state(self.generator, state, type(self).__name__)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != tuple(self.mask.shape):
            raise ValueError(f"state has data shape {tuple(x.shape[1:])}, the mask {tuple(self.mask.shape)}")
        if self.observed.ndim > self.mask.ndim and self.observed.shape[0] != x.shape[0]:
            raise ValueError(
                f"observed holds {self.observed.shape[0]} observations but the batch has {x.shape[0]} samples; "
                f"give one per sample or a single one of shape {tuple(self.mask.shape)}. "
                "solvers.sample(batch_size=...) hands the hook one chunk at a time and the hook cannot "
                "tell which samples a chunk holds, so per-sample observations need an unchunked run "
                "(no batch_size) or one observation shared by all samples"
            )
        alpha, sigma = self.sde.marginal_coeffs(t)
        y = self.observed.to(x).expand_as(x)
        if self.exact_at_end and float(t.max()) <= self.sde.eps * (1 + 1e-6):
            noised = y
        else:
            z = torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
            noised = append_dims(alpha, x.ndim) * y + append_dims(sigma, x.ndim) * z
        return torch.where(self.mask.to(x.device), noised, x)


class LinearReplacement:
    """Replacement for a noiseless ``y = A x`` in the SVD basis of ``A`` (flat states ``(B, D)``).

    Args:
        sde: the forward SDE.
        A: ``(M, D)`` with full row rank ``M < D``.
        y: ``(M,)`` measurement.
        seed, generator: randomness of the replacement noise.
        exact_at_end: at ``t <= sde.eps`` project onto ``A x = y`` exactly.

    Raises:
        ValueError: ``A`` not ``(M, D)`` with ``M < D`` and full row rank, ``y`` not ``(M,)``,
            NaN / inf entries, a bad ``seed``.
        TypeError: ``A`` / ``y`` not numeric arrays, a bad ``generator``.
    """

    def __init__(
        self,
        sde: DiffusionSDE,
        A: Any,
        y: Any,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        exact_at_end: bool = True,
    ) -> None:
        a = as_tensor(A, "measurement matrix A", torch.float64)
        if a.ndim != 2:
            raise ValueError(f"measurement matrix A must have shape (M, D), got {tuple(a.shape)}")
        a, yy = check_matrix(a, a.shape[1], y)
        assert yy is not None
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        if a.shape[0] >= a.shape[1]:
            raise ValueError(f"A {tuple(a.shape)} observes as many numbers as the data has: nothing is left to sample")
        check_full_row_rank(a, "for replacement")
        self.sde = sde
        self.basis = vh  # (M, D): orthonormal rows V_M^T
        self.coords = (u.T @ yy) / s  # observed coordinates in that basis
        self.generator = _generator(seed, generator)
        self.exact_at_end = exact_at_end

    def get_state(self) -> dict[str, Any]:
        """The replacement noise's generator state (`StatefulHook`)."""
        return generator_state(self.generator)

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from `get_state`: the next draws continue from there."""
        set_generator_state(self.generator, state, type(self).__name__)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        v = self.basis.to(x)
        if x.ndim != 2 or x.shape[1] != v.shape[1]:
            raise ValueError(f"state must have shape (B, {v.shape[1]}), got {tuple(x.shape)}")
        alpha, sigma = self.sde.marginal_coeffs(t)
        target = alpha[:, None] * self.coords.to(x)[None]
        if not (self.exact_at_end and float(t.max()) <= self.sde.eps * (1 + 1e-6)):
            z = torch.randn(target.shape, generator=self.generator, dtype=x.dtype).to(x.device)
            target = target + sigma[:, None] * z
        elif self.exact_at_end:
            target = self.coords.to(x)[None].expand_as(target)
        return x + (target - x @ v.T) @ v
