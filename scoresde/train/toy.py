"""A tuned recipe for 2-D toys: a small residual MLP trained in seconds on a CPU.

``train_toy("eight_gaussians")`` reaches a sliced-W2 within 2x the noise floor of exact
samples (measured by ``benchmarks/train_toy_quality.py``; numbers in ``docs/training.md``).
The recipe: epsilon-prediction with the ``sigma^2`` weighting (the lowest-variance DSM
target), input scaling with ``sigma_data`` estimated from the data, width 128 x 2 residual
blocks, batch 1024, 3,000 steps, AdamW at 2e-3 with 100 warm-up steps (at most 10% of the
run) and a cosine decay to 10% at the end of the run, gradient clipping at 1, EMA 0.999.
(Tuning, n = 10,000, Euler-Maruyama 200 steps: batch 256 stayed at 1.6-1.8x the floor on eight_gaussians and batch 512 at 1.4-1.8x on
checkerboard; batch 1024 reaches the floor on both, about 30 s of one CPU core.)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from solvers.defaults import has_geometric_noise, is_variance_exploding

from ..data import suggest_sigma_max
from ..data.scale import warn_off_centre
from ..losses import LossConfig
from ..models import ModelConfig, ScoreModel
from ..prior_checks import check_end_noise, check_prior
from .config import OptimConfig, SDEConfig, TrainConfig
from .data import draw, make_data, sample_shape
from .trainer import EvalFn, Trainer

__all__ = ["toy_config", "train_toy", "TOY_STEPS"]

TOY_STEPS = 3000


def _data_std(source: Any) -> float:
    """Mean per-coordinate std of 10,000 draws, in float64 (the data as loaded, not rounded)."""
    x = draw(source, 10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    per = x.reshape(x.shape[0], -1).std(dim=0) if x.shape[0] > 1 else torch.zeros(1, dtype=torch.float64)
    std = float(per.mean())
    if not std > 0.0:
        raise ValueError("the data have no spread (fewer than 2 distinct samples): a score model needs "
                         "a distribution to learn, not a single point")
    flat_cols = [int(j) for j in torch.nonzero(per <= 1e-12 * float(per.max())).flatten()]
    if flat_cols:
        cols = ", ".join(str(j) for j in flat_cols[:8]) + (" ..." if len(flat_cols) > 8 else "")
        warnings.warn(
            f"the data are constant in coordinate(s) {cols} (0-based): they lie on a lower-dimensional set, "
            "which has no density in the full space. The model learns a spread there set by the noise "
            "at eps, and log-likelihoods include that made-up spread (they grow without bound as eps "
            "falls). Drop the constant column(s) before training", stacklevel=4)
    return std


def _check_ve_scale(sde_cfg: SDEConfig, source: Any) -> None:
    """Warn when a VE prior is far narrower than the data (Song & Ermon 2020, technique 1)."""
    if sde_cfg.name != "ve":
        return
    sigma_max = float(sde_cfg.params.get("sigma_max", sde_cfg.build().sigma_max))
    suggested = suggest_sigma_max(source, n=2000, warn=False)
    if sigma_max < 0.5 * suggested:
        warnings.warn(
            f"VE sigma_max = {sigma_max:g} is below half the suggested {suggested:.3g} (the largest distance among "
            f"the data points and the origin, or the level that gives the prior p_T's variance, whichever is "
            f"larger); the prior N(0, sigma_max^2 I) does not cover the data. Use "
            f"VESDE(sigma_max={suggested:.3g}) (scoresde.data.suggest_sigma_max; see docs/sdes.md)",
            stacklevel=3)
    x = draw(source, 2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    warn_off_centre(x.reshape(x.shape[0], -1), sigma_max, which="the chosen", stacklevel=4)


RESOLVED_SHARE = 0.05
"""Least share of uniform ``t`` draws at ``sigma/alpha`` below the data's std that the toy recipe
trains well with (`warn_if_unresolved_times`)."""


def warn_if_unresolved_times(sde: Any, data_std: float, *, stacklevel: int = 3) -> float:
    """Warn when a uniform ``t`` on ``[eps, T]`` puts fewer than `RESOLVED_SHARE` of the training
    draws where ``sigma/alpha`` is below ``data_std``, the noise levels at which the network learns
    the data's shape; returns that share.

    1.25% on `scoresde.EDMSDE` (``sigma = t`` up to 80, unit data); 27% on VP and 54% on VE, whose
    ``sigma`` is geometric in ``t``. Checked only for VE-type SDEs whose noise is not geometric in
    ``t`` (`check_end_noise` covers data finer than the noise at ``eps``). Measured on
    `scoresde.EDMSDE` (eight Gaussians, 1500 steps, `dpmpp_2m` at 100 steps): 36% of the samples
    between the modes (VP 5%, cosine 2%); EDM's log-normal noise levels
    (`scoresde.losses.edm_time_sample`) drawn instead did not cure it (sliced W2 0.22 against
    0.19; `euler_maruyama` 0.13 against 0.20; exact samples 0.03).
    """
    coeffs = getattr(sde, "marginal_coeffs", None)
    if coeffs is None or not hasattr(sde, "eps"):
        return 1.0
    if not is_variance_exploding(sde) or has_geometric_noise(sde):
        # VP-type and Song et al.'s VE: geometric noise near the data; data finer than the noise
        # left at eps are warned about by check_end_noise, with the remedy (rescale).
        return 1.0
    t = torch.linspace(float(sde.eps), float(sde.T), 4097, dtype=torch.float64)
    alpha, sigma = coeffs(t)
    share = float((sigma / alpha < data_std).double().mean())
    if share < RESOLVED_SHARE:
        warnings.warn(
            f"{type(sde).__name__}: the toy recipe draws t uniformly on [{float(sde.eps):g}, {float(sde.T):g}], "
            f"which puts {share:.2%} of the training draws where sigma/alpha is below the data's std "
            f"({data_std:.3g}), where the network learns the data's shape; expect a poor model at small noise "
            f"(on EDMSDE, eight Gaussians, 1500 steps: 36% of the samples between the modes, against 5% "
            f"under VP). Train under vp, ve, subvp or cosine, whose noise is geometric in t near the data",
            UserWarning, stacklevel=stacklevel)
    return share


def _check_name(name: Any, caller: str) -> None:
    """Refuse a ``name`` that is not a str or path (an array passed first), naming ``caller``'s own ``data=``."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(
            f"{caller}'s name is the data's name or file/folder path (a str), got {type(name).__name__}; "
            f"pass a data object or array as {caller}('label', data=obj)"
        )


def toy_config(
    name: str = "eight_gaussians",
    *,
    sde: Any = "vp",
    steps: int = TOY_STEPS,
    seed: int = 0,
    data: Any | None = None,
) -> TrainConfig:
    """The `TrainConfig` of the toy recipe for data ``name`` and an SDE (name or object).

    The warm-up is ``min(100, 10% of steps)`` and the cosine decay to 10% runs from its end to
    the last step, so short runs get a full schedule and ``--resume`` with more steps stretches
    it. ``data`` (a source, array or path) overrides ``make_data(name)``. Warns when a VE
    ``sigma_max`` is below half of `scoresde.data.suggest_sigma_max` of the data, when the
    data are off-centre (`scoresde.data.scale.warn_off_centre`, with the ``sigma_max`` in use), and when the data's
    spread is within ten times the noise left at the SDE's ``eps``
    (`scoresde.schedules.check_end_noise`) or, for other SDEs, when ``p_T`` of the data is far
    from the prior (`scoresde.schedules.check_prior`; skipped for SDEs built with ``prior=``).
    """
    _check_name(name, "toy_config")
    source = make_data(name) if data is None else make_data(data)
    sde_cfg = SDEConfig(sde) if isinstance(sde, str) else SDEConfig.from_sde(sde)
    _check_ve_scale(sde_cfg, source)
    data_std = _data_std(source)
    sde_obj = sde_cfg.build() if isinstance(sde, str) else sde
    if hasattr(sde_obj, "marginal_coeffs") and hasattr(sde_obj, "eps"):
        check_end_noise(sde_obj, data_std, stacklevel=3)
        warn_if_unresolved_times(sde_obj, data_std, stacklevel=3)
        if sde_cfg.name != "ve" and not getattr(sde_obj, "prior_chosen", False):
            # p_T against the prior, with the numbers (VE: the sigma_max check above)
            probe = draw(source, 2048, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            check_prior(sde_obj, data_std=float(probe.double().pow(2).mean().sqrt()), stacklevel=3)
    return TrainConfig(
        data=os.fspath(name),
        sde=sde_cfg,
        model=ModelConfig(
            arch="mlp",
            data_shape=sample_shape(source),
            output="eps",
            input_scaling=True,
            sigma_data=round(data_std, 3) or float(f"{data_std:.3g}"),  # a tiny spread: 3 significant digits
            net={"width": 128, "depth": 2, "emb_dim": 64, "embedding": "sinusoidal"},
        ),
        loss=LossConfig(weighting="sigma2"),
        optim=OptimConfig(lr=2e-3, warmup_steps=100, warmup_fraction=0.1, decay_to_end=True,
                          min_lr_ratio=0.1, grad_clip=1.0, ema_decay=0.999),
        steps=steps,
        batch_size=1024,
        seed=seed,
        device="cpu",
        log_every=min(100, max(1, steps // 20)),
        ckpt_every=0,
    )


def train_toy(
    name: str = "eight_gaussians",
    *,
    sde: Any = "vp",
    steps: int = TOY_STEPS,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = True,
    eval_fn: EvalFn | None = None,
    eval_every: int = 0,
    data: Any | None = None,
) -> tuple[ScoreModel, list[dict[str, Any]]]:
    """Train the toy recipe on ``name``; returns ``(EMA model in eval mode, history)``.

    Args:
        name: a built-in data name or a data file / image folder (`scoresde.data.load_data`);
            with ``data`` it only labels the run.
        sde: a name (``vp``, ``subvp``, ``ve``, ``cosine``) or any SDE object (the
            ``solvers.DiffusionSDE`` protocol: ``T``, ``eps``, ``drift``, ``diffusion``,
            ``marginal_coeffs``, ``prior_sample``). Sample with ``model.score_fn(sde)``. A
            custom SDE is recorded by class name only: pass it again to
            ``load_model(out_dir, sde=...)``.
        steps: optimizer steps (the learning-rate schedule follows the run length).
        seed: seed of the weights, the data stream and the noise.
        out_dir: receives the checkpoint, ``config.json`` and ``metrics.jsonl`` (an existing run
            there is overwritten).
        progress: show a progress bar.
        eval_fn: ``eval_fn(trainer) -> dict``, called every ``eval_every`` steps and logged.
        eval_every: see ``eval_fn``.
        data: your own data: an array/tensor ``(N, *D)``, a file path, or any object with
            ``sample(n, generator=g)`` (e.g. an exact ``scoresde.targets.GaussianMixture``). Its
            identity (a content hash for arrays) is stored in ``config.data_id``, so the run is
            never compared with other data of the same label.
    """
    _check_name(name, "train_toy")
    source = make_data(name) if data is None else make_data(data)
    config = toy_config(name, sde=sde, steps=steps, seed=seed, data=source)
    config.eval_every = eval_every
    trainer = Trainer(config, data=None if data is None else source, out_dir=out_dir, overwrite=True,
                      eval_fn=eval_fn,
                      progress=progress)
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    return trainer.ema.model, history
