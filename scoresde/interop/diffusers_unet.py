"""diffusers interop: a ``UNet2DModel`` (+ its scheduler config) as a score for our solvers.

A diffusers model is trained on a discrete schedule ``alphas_cumprod`` (Ho et al. 2020) with
integer timesteps ``k``; `scoresde.DiscreteVPSDE` places that schedule in continuous time
(``t_k = (k + 1)/N``, exact marginals at every ``t_k``). The network is called at the
continuous timestep ``k(t) = N t - 1`` (its sinusoidal embedding accepts any real ``k``;
``round_timesteps=True`` rounds to the nearest integer instead), and its output is read by
the scheduler's ``prediction_type``:

* ``"epsilon"``: ``eps``, score ``-eps / sigma``;
* ``"v_prediction"``: ``v = alpha eps - sigma x0`` (Salimans & Ho 2022), diffusers' convention;
* ``"sample"``: ``x0``.

The conversions are those of `scoresde.models.parameterization.convert`. Nothing here
imports diffusers: any module called as ``unet(x, timesteps)`` returning a tensor or an
object with ``.sample`` works.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from solvers.inputs import as_integer
from solvers.utils import batch_time

from ..discrete import DiscreteVPSDE, alphas_cumprod_from_config
from ..models.parameterization import convert
from ._warn import reemit_at_user, warn_at_user
from .kdiffusion import work_dtype

__all__ = ["PREDICTION_TYPES", "sde_from_scheduler", "DiffusersScore", "unet_score"]

PREDICTION_TYPES: dict[str, str] = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
"""diffusers ``prediction_type`` -> our output name."""


_MODEL_KEYS: tuple[str, ...] = ("in_channels", "out_channels", "block_out_channels", "down_block_types")
"""Config keys of a diffusers *model* (``UNet2DModel.config``); no scheduler config has them."""


def _config(scheduler_or_config: Any) -> Mapping[str, Any]:
    """The scheduler's config mapping.

    Raises:
        TypeError: a model (a ``torch.nn.Module``, or a config with model keys such as
            ``in_channels``) where the scheduler belongs; anything else that is not a scheduler
            or a mapping.
    """
    if isinstance(scheduler_or_config, nn.Module):
        raise TypeError(
            f"scheduler_or_config must be a diffusers scheduler (e.g. diffusers.DDPMScheduler) or its "
            f".config, got the model {type(scheduler_or_config).__name__} (a torch.nn.Module); the "
            "order is unet_score(unet, scheduler) / DiffusersScore(unet, scheduler)")
    cfg = getattr(scheduler_or_config, "config", scheduler_or_config)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"expected a diffusers scheduler or its config (a mapping), got {type(cfg).__name__}")
    model_keys = [k for k in _MODEL_KEYS if k in cfg]
    if model_keys:
        name = cfg.get("_class_name", "a model")
        raise TypeError(
            f"scheduler_or_config must be a diffusers scheduler or its config, got the config of "
            f"{name} (it has the model keys {', '.join(model_keys)}); pass the scheduler (e.g. "
            "diffusers.DDPMScheduler.from_pretrained(path, subfolder='scheduler')) or scheduler.config")
    return cfg


_IGNORED_KEYS: dict[str, str] = {
    "clip_sample": "clips the predicted x0 to [-clip_sample_range, clip_sample_range] at every step",
    "thresholding": "applies dynamic thresholding to the predicted x0 at every step",
}
"""Scheduler options that change diffusers' own sampling loop and that the score does not apply."""


def _warn_ignored_options(cfg: Mapping[str, Any]) -> None:
    """Warn (at the user's line) when ``clip_sample`` / ``thresholding`` are on in ``cfg``."""
    on = [k for k in _IGNORED_KEYS if bool(cfg.get(k, False))]
    if not on:
        return
    what = "; ".join(f"{k}=True: diffusers {_IGNORED_KEYS[k]}" for k in on)
    warn_at_user(
        f"the scheduler config has {what}. These are options of diffusers' own step() loop, not of "
        "the model: the SDE and score built here read only the alphas_cumprod table and "
        "prediction_type, and our solvers never clip, so samples differ from the diffusers pipeline's "
        f"(e.g. by O(1) for DDIMScheduler's default clip_sample=True). To silence this, pass a "
        f"scheduler or config with {' and '.join(f'{k}=False' for k in on)} "
        "(e.g. diffusers.DDPMScheduler.from_config(scheduler.config, clip_sample=False))",
        UserWarning)


_BETA_KEYS: tuple[str, ...] = ("beta_schedule", "beta_start", "beta_end", "trained_betas")
"""Config keys of a betas-based (DDPM-type) schedule; a config with none of them set describes no betas."""


def _carries_betas(cfg: Mapping[str, Any]) -> bool:
    """Whether the config sets a betas schedule (a key set to ``None``, e.g. ``trained_betas``, does not count)."""
    return any(cfg.get(k) is not None for k in _BETA_KEYS) or bool(cfg.get("rescale_betas_zero_snr", False))


def sde_from_scheduler(scheduler_or_config: Any, *, prior: float | str | None = None,
                       data_std: float = 1.0) -> DiscreteVPSDE:
    """The `DiscreteVPSDE` of a diffusers scheduler (or its ``config``).

    The table is rebuilt in float64 from the config (`scoresde.discrete.alphas_cumprod_from_config`);
    a scheduler whose ``beta_schedule`` that function does not know, or whose config carries
    no betas keys, is read from its own ``alphas_cumprod`` table instead. ``prior`` and
    ``data_std`` go to `DiscreteVPSDE` (``None``: ``N(0, I)``, with a warning when the table
    stops short of it, e.g. ``num_train_timesteps=10``; ``"matched"`` or a std otherwise).

    diffusers' ``clip_sample`` and ``thresholding`` (on by default in ``DDPMScheduler`` and
    ``DDIMScheduler``: ``clip_sample=True``) act on the x0 prediction inside diffusers' own
    ``step()``; they are not part of the schedule and are not applied here or by our solvers
    (a warning says so when they are on). With them off, diffusers' ``DDIMScheduler`` and our
    ``"ddim"`` on the same timesteps (``timestep_spacing`` ``"leading"`` or ``"trailing"``)
    agree to about 1e-6, the rounding of diffusers' float32 ``alphas_cumprod`` (1e-15 with our
    float64 table in the scheduler).

    Raises:
        TypeError: not a scheduler or a mapping; a model (``torch.nn.Module``, or its config)
            in the scheduler's place; ``num_train_timesteps`` not an integer
            (``10.5`` is refused, not truncated).
        ValueError: a scheduler that is not a discrete-VP (DDPM-type) schedule: its config has
            no ``beta_schedule`` / ``beta_start`` / ``beta_end`` / ``trained_betas`` and it has no
            ``alphas_cumprod`` (sigma-space schedulers such as ``EDMEulerScheduler``,
            ``ScoreSdeVeScheduler``, ``CMStochasticIterativeScheduler``); an unknown
            ``beta_schedule``; ``rescale_betas_zero_snr``; a bad ``prior``.

    Warns:
        UserWarning: ``prior=None`` and ``p_T`` far from ``N(0, I)`` (`DiscreteVPSDE`);
            ``clip_sample`` or ``thresholding`` on in the config (not applied). Both name the
            caller's line.
    """
    cfg = _config(scheduler_or_config)
    _warn_ignored_options(cfg)
    with warnings.catch_warnings(record=True) as caught:  # DiscreteVPSDE's prior warning, re-issued at the caller
        warnings.simplefilter("always")
        sde = _sde_from_config(scheduler_or_config, cfg, prior, data_std)
    reemit_at_user(caught)
    return sde


def _sde_from_config(scheduler_or_config: Any, cfg: Mapping[str, Any], prior: float | str | None,
                     data_std: float) -> DiscreteVPSDE:
    """`sde_from_scheduler` past the config checks and the warnings."""
    if "num_train_timesteps" in cfg:
        as_integer(cfg["num_train_timesteps"], "num_train_timesteps", minimum=2)
    table = getattr(scheduler_or_config, "alphas_cumprod", None)
    if not _carries_betas(cfg):
        if table is None:
            if cfg is scheduler_or_config:  # a bare config: its class if saved (``_class_name``), and its keys
                keys = ", ".join(sorted(str(k) for k in cfg if not str(k).startswith("_")))
                name = f"{cfg.get('_class_name', 'the scheduler')} config (a {type(cfg).__name__} with keys: {keys})"
            else:
                name = type(scheduler_or_config).__name__
            raise ValueError(
                f"{name} is not a discrete-VP (DDPM-type) schedule: the config has none of "
                f"{', '.join(_BETA_KEYS)} and there is no alphas_cumprod table, so there is no betas / "
                "alphas_cumprod schedule to read (defaults would be made up). For a sigma-space schedule "
                "(EDM, VE, consistency models) use scoresde.SigmaSDE(sigma) or scoresde.EDMSDE(sigma_min, "
                "sigma_max) with a score from the network (e.g. scoresde.interop.score_from_denoiser)")
        return DiscreteVPSDE(torch.as_tensor(table, dtype=torch.float64), prior=prior, data_std=data_std)
    try:
        abar = alphas_cumprod_from_config(cfg)  # float64 rebuild
    except ValueError as err:
        if table is None or "unknown beta_schedule" not in str(err):
            raise
        abar = torch.as_tensor(table, dtype=torch.float64)
    return DiscreteVPSDE(abar, prior=prior, data_std=data_std)


class DiffusersScore:
    """``score(x: (B, C, H, W), t: (B,) or float) -> (B, C, H, W)`` from a diffusers-style UNet.

    Args:
        unet: e.g. ``diffusers.UNet2DModel``; called as ``unet(x, k)`` with ``k: (B,)``.
        scheduler_or_config: its scheduler (or ``scheduler.config``): the schedule and the
            ``prediction_type``.
        prediction_type: overrides the config's (``"epsilon"``, ``"v_prediction"``, ``"sample"``).
        round_timesteps: call the network at ``round(k(t))`` instead of the real ``k(t)``.
        prior, data_std: the prior of the `DiscreteVPSDE` (`sde_from_scheduler`).

    Attributes:
        sde: the `DiscreteVPSDE` to sample with (``T = 1``, ``eps = 1/N``).
        output: our name of the prediction type.

    The input is cast to the network's dtype and the score back to the input's dtype; the
    timesteps are float32 (float64 for a float64 network; `scoresde.interop.kdiffusion.work_dtype`),
    never half precision: bfloat16 has 8 significant bits (``k = 999`` rounds to 1000, outside
    the trained range) and float16 11 (``k = 123.4`` becomes 123.375); diffusers' pipelines
    likewise give half-precision networks float32 or integer timesteps. The network runs without autograd unless ``x`` requires grad. ``t`` may be a
    float or 0-d tensor (broadcast to the batch).

    Layout: a network whose ``config`` names ``in_channels`` (every diffusers UNet) takes
    channels-first data, ``x: (B, in_channels, H, W)`` for a 2-D UNet (``(B, C, L)`` for a 1-D
    and ``(B, C, F, H, W)`` for a 3-D one); ``H, W`` are usually its ``sample_size``. Flat
    ``(B, D)`` or channels-last ``(B, H, W, C)`` states are refused with that layout named
    (solve with ``shape=(B, C, H, W)``). Any other module gets ``x`` as it is.

    Raises:
        TypeError: ``unet`` not a ``torch.nn.Module`` (e.g. the scheduler, or the two
            arguments swapped); a model in the scheduler's place (`sde_from_scheduler`).
        ValueError: (when called) ``t`` not 0-d or ``(B,)``, or not in ``[1/N, T]`` (below
            ``1/N`` the network would get a negative timestep it was never trained on; the
            likelihood's data-density ODE stops at ``1/N`` for this reason,
            `scoresde.DiscreteVPSDE.min_score_time`); ``x`` not in the network's layout
            ``(B, in_channels, ...)``.
    """

    def __init__(self, unet: nn.Module, scheduler_or_config: Any, *, prediction_type: str | None = None,
                 round_timesteps: bool = False, prior: float | str | None = None,
                 data_std: float = 1.0) -> None:
        if not isinstance(unet, nn.Module):
            swapped = isinstance(scheduler_or_config, nn.Module)
            hint = (f"; the arguments look swapped (the model {type(scheduler_or_config).__name__} was passed "
                    "as the scheduler): the order is unet_score(unet, scheduler)") if swapped else (
                "; a scheduler goes in the second argument: unet_score(unet, scheduler)"
                if hasattr(unet, "config") else "")
            raise TypeError(f"unet must be a torch.nn.Module called as unet(x, timesteps) (e.g. "
                            f"diffusers.UNet2DModel), got {type(unet).__name__}{hint}")
        cfg = _config(scheduler_or_config)
        if str(cfg.get("timestep_type", "discrete")) != "discrete":
            raise ValueError(
                f"the scheduler config has timestep_type={cfg.get('timestep_type')!r}: its network is "
                "conditioned on a function of sigma (e.g. 0.25 ln sigma), not on the discrete timesteps "
                "0 .. N-1 this wrapper passes; wrap it as a denoiser of sigma instead "
                "(scoresde.interop.score_from_denoiser with scoresde.EDMSDE / SigmaSDE)")
        variance = str(cfg.get("variance_type", "") or "")
        # Learned-variance models (improved DDPM) return [mean part, variance part] on the channel
        # axis; the score needs only the first half, as diffusers' own ODE schedulers take it.
        self.learned_variance = variance in ("learned", "learned_range")
        kind = prediction_type or cfg.get("prediction_type", "epsilon")
        if kind not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {kind!r}; supported: {', '.join(PREDICTION_TYPES)}")
        self.unet, self.prediction_type, self.output = unet, kind, PREDICTION_TYPES[kind]
        self.sde = sde_from_scheduler(scheduler_or_config, prior=prior, data_std=data_std)  # warns at the caller
        self.round_timesteps = bool(round_timesteps)
        self._layout = _unet_layout(unet)

    def _check_layout(self, x: Tensor) -> None:
        """Refuse ``x`` that is not ``(B, in_channels, ...)`` of the network's rank (when it says).

        Raises:
            ValueError: naming the expected layout, ``in_channels`` and ``sample_size``.
        """
        if self._layout is None:
            return
        ndim, channels, sample = self._layout
        if x.ndim == ndim and x.shape[1] == channels:
            return
        names = {3: "(B, C, L)", 4: "(B, C, H, W)", 5: "(B, C, F, H, W)"}[ndim]
        dims = ", ".join(str(v) for v in sample) if sample else "..."
        hint = ""
        if x.ndim == 2:
            hint = (f"; flat (B, D) data: this is a convolutional network, sample with shape=(B, {channels}, "
                    f"{dims}) (or reshape x)")
        elif x.ndim == ndim and x.shape[-1] == channels:
            hint = "; channels-last data: move the channels to dim 1, e.g. x.permute(0, 3, 1, 2)"
        raise ValueError(
            f"x must be {names} = (B, {channels}, {dims}) for {type(self.unet).__name__} "
            f"(config in_channels={channels}, sample_size={getattr(self.unet, 'config', {}).get('sample_size')}); got {tuple(x.shape)}{hint}")

    def timesteps(self, t: Tensor) -> Tensor:
        """Network timesteps ``k(t) = N t - 1`` (rounded if ``round_timesteps``), ``(B,)``."""
        k = self.sde.timestep(t.to(torch.float64))
        return torch.round(k) if self.round_timesteps else k

    def model_output(self, x: Tensor, t: Tensor) -> Tensor:
        """Raw network output at ``(x, t)`` in ``x``'s dtype, ``(B, *D)``.

        ``x`` runs in the network's dtype; the timesteps ``k: (B,)`` in at least float32 (`work_dtype`).
        """
        p = next(self.unet.parameters(), None)
        dtype = p.dtype if p is not None else x.dtype
        k = self.timesteps(t).to(device=x.device, dtype=work_dtype(dtype))
        out = self.unet(x.to(dtype), k)
        out = getattr(out, "sample", out)
        if (self.learned_variance and isinstance(out, Tensor) and out.ndim == x.ndim
                and out.shape[1] == 2 * x.shape[1] and out.shape[2:] == x.shape[2:]):
            out = out[:, : x.shape[1]]  # the prediction; the learned variance is not used
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            hint = ""
            if isinstance(out, Tensor) and out.ndim == x.ndim and out.shape[1] == 2 * x.shape[1]:
                hint = (" (twice the channels: a learned-variance model? its scheduler config should say "
                        "variance_type='learned_range' or 'learned', and then the first half is used)")
            raise ValueError(f"the network must return a tensor of the input's shape {tuple(x.shape)}, "
                             f"got {got}{hint}")
        return out.to(x.dtype)

    def __call__(self, x: Tensor, t: Tensor | float) -> Tensor:
        self._check_layout(x)
        t = batch_time(t, x)
        t_0 = self.sde.min_score_time
        bad = ~((t >= t_0 * (1 - 1e-6)) & (t <= self.sde.T * (1 + 1e-7)))  # NaN is bad too
        if bool(bad.any()):
            raise ValueError(f"t must be in [1/N, T] = [{t_0:g}, {self.sde.T:g}]: the network was trained on "
                             f"timesteps k = N t - 1 in 0..{self.sde.num_timesteps - 1}, and t = "
                             f"{float(t[bad][0]):g} is timestep {float(self.sde.timestep(t[bad][:1].double())[0]):g}")
        if x.requires_grad:
            o = self.model_output(x, t)
        else:
            with torch.no_grad():
                o = self.model_output(x, t)
        alpha, sigma = self.sde.marginal_coeffs(t)
        return convert(o, x, alpha, sigma, src=self.output, dst="score")


def _unet_layout(unet: nn.Module) -> tuple[int, int, tuple[int | str, ...]] | None:
    """``(ndim, in_channels, sample_size)`` of a diffusers-style network's input, or ``None``.

    Read from ``unet.config`` (``in_channels`` and ``sample_size``); the rank is 3 for a class
    named ``...1D...``, 5 for ``...3D...``, else 4 (``UNet2DModel``, ``UNet2DConditionModel``).
    ``None`` (no check) when the network has no such config.
    """
    cfg = getattr(unet, "config", None)
    if not isinstance(cfg, Mapping):
        return None
    channels = cfg.get("in_channels")
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        return None
    name = type(unet).__name__
    ndim = 3 if "1D" in name else 5 if "3D" in name else 4
    size = cfg.get("sample_size")
    if isinstance(size, int) and not isinstance(size, bool):
        sample: tuple[int | str, ...] = ("F", size, size) if ndim == 5 else (size,) * (ndim - 2)
    elif isinstance(size, (tuple, list)) and all(isinstance(v, int) for v in size):
        sample = tuple(size)
    else:
        sample = ()
    return ndim, channels, sample


def unet_score(unet: nn.Module, scheduler_or_config: Any, **kwargs: Any) -> tuple[DiscreteVPSDE, DiffusersScore]:
    """``(sde, score)`` for a diffusers UNet and its scheduler; options as for `DiffusersScore`.

    Example (a randomly initialised model; any pretrained ``UNet2DModel`` works the same)::

        sde, score = unet_score(unet, scheduler)
        x = solvers.sample(sde, score, shape=(4, 3, 32, 32), solver="dpmpp_2m", steps=20, seed=0).samples
    """
    s = DiffusersScore(unet, scheduler_or_config, **kwargs)
    return s.sde, s
