"""Conditional score training with label dropout (Ho & Salimans 2022) for classifier-free guidance.

Denoising score matching in the epsilon form (Ho et al. 2020; Song et al. 2021, eq. 7):
``E_{t, (x_0, c), z} |eps(alpha x_0 + sigma z, t, c~) - z|^2`` with ``t ~ U(eps, T)`` and
``c~ = null`` with probability ``p_uncond`` (else ``c``), so one network learns both
``s(x, t, c)`` and ``s(x, t) = s(x, t, null)``.

    model = train_conditional(LabelConditional(MLP((2,)), 4), x, labels, sde, steps=2000)
    score = ClassifierFreeGuidance(model.score_fn(sde), label=1, scale=0.0, null_label=model.null_label)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from solvers.protocol import DiffusionSDE

from ..models.conditional import LabelConditional

__all__ = ["train_conditional"]


def train_conditional(
    model: LabelConditional,
    x: Tensor,
    labels: Tensor,
    sde: DiffusionSDE,
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    p_uncond: float = 0.1,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> LabelConditional:
    """Train ``model`` in place on ``x: (N, *D)`` with classes ``labels: (N,)``; returns it in eval mode.

    Args:
        p_uncond: label-dropout probability (the null label replaces the class).
        steps, batch_size, lr: Adam with cosine decay; ``seed`` fixes batches, times, noise, dropout.
        log: ``log(step, loss)`` every 200 steps.
    """
    if x.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(f"x {tuple(x.shape)} and labels {tuple(labels.shape)} must have the same length")
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1), got {p_uncond}")
    if int(labels.max()) >= model.n_classes or int(labels.min()) < 0:
        raise ValueError(f"labels must lie in 0 .. {model.n_classes - 1}")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = x.to(dtype)  # the model's precision (a float64 model trains in float64)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        t = sde.eps + (sde.T - sde.eps) * torch.rand(batch_size, generator=g, dtype=dtype)
        alpha, sigma = sde.marginal_coeffs(t)
        shape = (batch_size,) + (1,) * (x.ndim - 1)
        z = torch.randn(x[idx].shape, generator=g, dtype=dtype)
        xt = alpha.reshape(shape) * x[idx] + sigma.reshape(shape) * z
        c = labels[idx].clone()
        c[torch.rand(batch_size, generator=g) < p_uncond] = model.null_label
        loss = nn.functional.mse_loss(model(xt, t, c, sde), z)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % 200 == 0 or step == steps - 1):
            log(step, loss.item())
    model.trained_sde = sde
    return model.eval()
