"""Label-conditional score networks by composition: a label embedding added to the time features.

`LabelConditional` wraps an existing network (`MLP` or `UNet`, any module with a time
embedding ``net.embed: t -> (B, E)``) without changing its code: it replaces ``net.embed`` by
``t -> embed(t) + L[c]`` with a learned table ``L`` of ``n_classes + 1`` rows. The last row is
the **null label** ``n_classes`` ("no class"), used for label dropout and for the
unconditional branch of classifier-free guidance (Ho & Salimans 2022). The network's output
is an epsilon prediction; the score is ``-eps / sigma(t)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from solvers.inputs import as_integer
from solvers.protocol import DiffusionSDE

__all__ = ["LabelConditional"]


class _LabelledEmbedding(nn.Module):
    """``t -> embed(t) + table[labels]``; ``labels`` is set by `LabelConditional` for each call."""

    def __init__(self, embed: nn.Module, n_labels: int, dim: int) -> None:
        super().__init__()
        self.embed = embed
        self.table = nn.Embedding(n_labels, dim)
        nn.init.normal_(self.table.weight, std=0.5)
        self.labels: Tensor | None = None

    def forward(self, t: Tensor) -> Tensor:
        if self.labels is None:
            raise RuntimeError("LabelConditional: call the wrapper with labels, not the inner network")
        return self.embed(t) + self.table(self.labels).to(dtype=t.dtype)


class LabelConditional(nn.Module):
    """``(x: (B, *D), t: (B,), labels: (B,)) -> (B, *D)`` epsilon prediction.

    Args:
        net: a time-conditioned network with a ``net.embed`` time embedding (`MLP`, `UNet`).
        n_classes: number of real classes; label ``n_classes`` is the null label.

    Raises:
        NotAnIntegerError: ``n_classes`` not an integer (``2.5``). ValueError: ``n_classes < 1``.
        TypeError: ``net`` without a ``net.embed`` time embedding.
    """

    def __init__(self, net: nn.Module, n_classes: int) -> None:
        super().__init__()
        n_classes = as_integer(n_classes, "n_classes", minimum=1)
        embed = getattr(net, "embed", None)
        if not isinstance(embed, nn.Module):
            raise TypeError("net must expose its time embedding as `net.embed` (MLP and UNet do)")
        dim = int(embed(torch.zeros(1)).shape[-1])
        net.embed = _LabelledEmbedding(embed, n_classes + 1, dim)
        self.net = net
        self.n_classes = int(n_classes)
        self.null_label = int(n_classes)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """Epsilon prediction for ``x: (B, *D)``, ``t: (B,)`` and integer ``labels: (B,)``.

        Raises:
            TypeError: ``labels`` not an integer tensor (float or bool labels are refused).
            ValueError: ``labels`` not ``(B,)`` or outside ``0 .. n_classes``.
        """
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels must be an integer torch.Tensor (B,), got {type(labels).__name__}")
        if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
            raise TypeError(f"labels must be an integer tensor (e.g. torch.long) of class indices, "
                            f"got dtype {labels.dtype}; convert with labels.long()")
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(labels.shape)}")
        if bool(((labels < 0) | (labels > self.n_classes)).any()):
            raise ValueError(f"labels must lie in 0 .. {self.n_classes} (null label {self.null_label})")
        emb: _LabelledEmbedding = self.net.embed  # type: ignore[assignment]
        emb.labels = labels.to(x.device)
        try:
            return self.net(x, t)
        finally:
            emb.labels = None

    def score_fn(self, sde: DiffusionSDE):  # type: ignore[no-untyped-def]
        """``(x, t, labels) -> -eps(x, t, labels) / sigma(t)``: the conditional score for guidance."""

        def score(x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
            _, sigma = sde.marginal_coeffs(t)
            eps = self(x, t.to(x), labels)
            return -eps / sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)

        return score
