"""Label-conditional score networks by composition: a label embedding added to the time features.

`LabelConditional` wraps an existing network (`MLP` or `UNet`, any module with a time
embedding ``net.embed: t -> (B, E)``) without changing its code: it replaces ``net.embed`` by
``t -> embed(t) + L[c]`` with a learned table ``L`` of ``n_classes + 1`` rows. The last row is
the **null label** ``n_classes`` ("no class"), used for label dropout and for the
unconditional branch of classifier-free guidance (Ho & Salimans 2022). The network's output
is an epsilon prediction; the score is ``-eps / sigma(t)``.

Like `scoresde.models.ScoreModel`, it feeds the network ``c_in x`` with
``c_in = 1 / sqrt(alpha(t)^2 sigma_data^2 + sigma(t)^2)`` (Karras et al. 2022, Table 1), so the
network's input has about unit variance at every ``t`` under every SDE (under VE, ``x`` at
``T`` spans about ``+-sigma_max``). ``c_in`` depends on the SDE, so each call takes it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from solvers.inputs import as_integer, as_real
from solvers.protocol import DiffusionSDE
from solvers.score_sde import check_training_sde
from solvers.utils import append_dims

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
    """``(x: (B, *D), t: (B,), labels: (B,), sde) -> (B, *D)`` epsilon prediction.

    Args:
        net: a time-conditioned network with a ``net.embed`` time embedding (`MLP`, `UNet`).
        n_classes: number of real classes; label ``n_classes`` is the null label.
        input_scaling: feed the network ``c_in x`` (module docstring); ``False`` feeds ``x``.
        sigma_data: the data's std in ``c_in``. The default 1.0 makes ``c_in = 1`` under VP
            (``alpha^2 + sigma^2 = 1``) and ``1/sqrt(1 + sigma^2)`` under VE. Measured on eight
            Gaussians (std 1.42), 4 classes, 1000 steps, 3 seeds: VE's combined metric fell from
            25.5 / 25.9 (no scaling) to 9.4 / 9.4 (sub-VP's from 24.2 / 43.1 to 24.0 / 33.9),
            against 13.1 / 13.7 with the data's std;
            under VP the data's std (c_in about 0.7 near the data) raised it from 22.7 / 7.6 to
            32.4 / 31.5.

    Raises:
        NotAnIntegerError: ``n_classes`` not an integer (``2.5``). ValueError: ``n_classes < 1``,
        or ``sigma_data`` not positive and finite. TypeError: ``net`` without a ``net.embed``
        time embedding, or ``input_scaling`` not a bool.
    """

    def __init__(self, net: nn.Module, n_classes: int, *, input_scaling: bool = True,
                 sigma_data: float = 1.0) -> None:
        super().__init__()
        n_classes = as_integer(n_classes, "n_classes", minimum=1)
        if not isinstance(input_scaling, bool):
            raise TypeError(f"input_scaling must be True or False, got {input_scaling!r}")
        sigma = as_real(sigma_data, "sigma_data")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma_data must be positive and finite, got {sigma_data!r}")
        self.input_scaling, self.sigma_data = input_scaling, sigma
        # The input scaling's settings travel with the weights: saved in the state_dict, and
        # taken from it on loading (weights trained with other settings are not silently rescaled).
        self.register_buffer("input_scaling_settings", torch.tensor([float(input_scaling), sigma], dtype=torch.float64))
        embed = getattr(net, "embed", None)
        if not isinstance(embed, nn.Module):
            raise TypeError("net must expose its time embedding as `net.embed` (MLP and UNet do)")
        dim = int(embed(torch.zeros(1)).shape[-1])
        net.embed = _LabelledEmbedding(embed, n_classes + 1, dim)
        self.net = net
        self.n_classes = int(n_classes)
        self.null_label = int(n_classes)
        # The SDE it was trained under (set by `scoresde.train.train_conditional`): `score_fn`
        # refuses one with other marginals, as `ScoreModel.score_fn` does.
        self.trained_sde: DiffusionSDE | None = None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Take ``input_scaling`` and ``sigma_data`` from the loaded weights. A state_dict saved
        before they were stored (no ``input_scaling_settings``) is that of a network without
        input scaling: refused by a model with it, naming the fix."""
        key = prefix + "input_scaling_settings"
        if key not in state_dict:
            if self.input_scaling:
                raise RuntimeError(
                    "this LabelConditional state_dict has no input_scaling_settings: it was saved by a version "
                    "that fed the network x unscaled; load it into LabelConditional(net, n_classes, "
                    "input_scaling=False)")
            state_dict[key] = self.input_scaling_settings.clone()
        super()._load_from_state_dict(state_dict, prefix, *args)
        flag, sigma = (float(v) for v in self.input_scaling_settings.tolist())
        self.input_scaling, self.sigma_data = bool(flag), sigma

    def scaled_input(self, x: Tensor, t: Tensor, sde: DiffusionSDE | None) -> Tensor:
        """``c_in(t) x`` with ``c_in = 1/sqrt(alpha^2 sigma_data^2 + sigma^2)``, or ``x`` without
        input scaling.

        Raises:
            TypeError: input scaling on and no ``sde`` given.
        """
        if not self.input_scaling:
            return x
        if sde is None:
            raise TypeError("this LabelConditional scales its input by c_in(t), which depends on the SDE: "
                            "call model(x, t, labels, sde) (or build it with input_scaling=False)")
        alpha, sigma = sde.marginal_coeffs(t)
        c_in = torch.rsqrt(alpha**2 * self.sigma_data**2 + sigma**2).to(x)
        return append_dims(c_in, x.ndim) * x

    def forward(self, x: Tensor, t: Tensor, labels: Tensor, sde: DiffusionSDE | None = None) -> Tensor:
        """Epsilon prediction for ``x: (B, *D)``, ``t: (B,)`` and integer ``labels: (B,)``.

        ``sde`` gives ``alpha(t), sigma(t)`` for the input scaling (required when it is on).

        Raises:
            TypeError: ``labels`` not an integer tensor (float or bool labels are refused);
                input scaling on and no ``sde``.
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
        x_in = self.scaled_input(x, t, sde)
        emb: _LabelledEmbedding = self.net.embed  # type: ignore[assignment]
        emb.labels = labels.to(x.device)
        try:
            return self.net(x_in, t)
        finally:
            emb.labels = None

    def score_fn(self, sde: DiffusionSDE):  # type: ignore[no-untyped-def]
        """``(x, t, labels) -> -eps(x, t, labels) / sigma(t)``: the conditional score for guidance.

        Raises:
            ValueError: the model was trained (``trained_sde``) under an SDE whose marginals
                differ from ``sde``'s.
        """
        check_training_sde(self.trained_sde, sde)

        def score(x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
            _, sigma = sde.marginal_coeffs(t)
            eps = self(x, t.to(x), labels, sde)
            return -eps / sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)

        score.sde = sde  # type: ignore[attr-defined]  # forwarded by ClassifierFreeGuidance
        return score
