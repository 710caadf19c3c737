"""Denoising score matching in continuous time (Vincent 2011; Song et al. 2021, eq. 7).

For ``x_t = alpha(t) x0 + sigma(t) z`` the per-sample loss is::

    L = E_t E_x0 E_z [ w(t) || s_theta(x_t, t) + z / sigma(t) ||^2 ],    t ~ U(t_min, T)
      = E_t E_x0 E_z [ (w(t) / sigma(t)^2) || eps_theta(x_t, t) - z ||^2 ]

since ``sigma s_theta = -eps_theta``; the second form is what is computed (no division of
``z`` by a tiny ``sigma``). Weightings ``w(t)``:

* ``"sigma2"``: ``w = sigma^2`` (Song et al. 2021's default; equals the epsilon-prediction
  loss of Ho et al. 2020);
* ``"likelihood"``: ``w = g^2`` (Song et al. 2021b, "Maximum likelihood training": the loss
  then bounds the negative log-likelihood);
* ``"none"``: ``w = 1``;
* ``"min_snr"``: Min-SNR-``gamma`` (Hang et al. 2023, "Efficient Diffusion Training via
  Min-SNR Weighting Strategy"): ``min(SNR, gamma)`` on ``||x0_theta - x0||^2``, with
  ``SNR = alpha^2/sigma^2`` and ``gamma`` = `MIN_SNR_GAMMA`, i.e. ``min(SNR, gamma)/SNR`` on the
  epsilon loss. For an ``x0``-predicting network the others weight its error by at least
  ``SNR``, unbounded as ``t -> 0`` (at the default ``t_min``: 9e3 under VP, 8e7 under sub-VP
  and 6e7 under VE): the
  smallest times then dominate the loss and its gradients (`warn_x0_weighting`);
* ``"edm"``: EDM's ``lambda(sigma_edm) = (sigma_edm^2 + sd^2)/(sigma_edm sd)^2`` on
  ``||D - x0||^2`` (Karras et al. 2022, Table 1), ``sigma_edm = sigma/alpha``,
  ``sd = sigma_data``. Since ``D - x0 = -sigma_edm (eps_theta - z)``, the factor on
  ``||eps_theta - z||^2`` is ``lambda sigma_edm^2 = 1 + sigma_edm^2/sd^2``. (EDM also draws
  ``ln sigma_edm ~ N(P_mean, P_std^2)``: `edm_time_sample` gives such times.)

Importance sampling of ``t`` (Song et al. 2021b, Sec. 5; Huang et al. 2021): draw ``t`` from
``q(t) ∝ h(t) = w(t)/sigma(t)^2`` and weight each term by ``h(t) / ((T - t_min) q(t))``, which
keeps the estimator's expectation equal to the uniform-``t`` loss above while its weights are
(almost) constant. For ``w = g^2``, ``h = g^2/sigma^2 = d ln(sigma^2/alpha^2)/dt``. The CDF of
``q`` is tabulated numerically on a log-spaced grid of ``t`` (``h`` behaves like ``1/t`` near
0) and inverted by linear interpolation; the weights use the density of exactly that
piecewise sampler, so the estimator is unbiased whatever the grid resolution.

``reduce``: ``"mean"`` or ``"sum"`` of the squared error over the data dimensions; the batch
is always averaged. ``t_min`` is the epsilon-truncation of time (default ``sde.eps``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from solvers.inputs import as_integer, as_real, check_device, check_dtype, check_generator
from solvers.protocol import DiffusionSDE
from solvers.utils import append_dims

from .models import ScoreModel
from .models.parameterization import edm_loss_weight
from .sde import configs_match

__all__ = [
    "WEIGHTINGS",
    "REDUCTIONS",
    "loss_weight",
    "warn_x0_weighting",
    "MIN_SNR_GAMMA",
    "ImportanceTimeSampler",
    "dsm_per_sample",
    "dsm_loss",
    "eps_loss",
    "LossConfig",
    "DSMLoss",
    "edm_time_sample",
]

WEIGHTINGS: tuple[str, ...] = ("sigma2", "likelihood", "none", "edm", "min_snr")

MIN_SNR_GAMMA = 5.0
"""``gamma`` of the ``"min_snr"`` weighting (Hang et al. 2023 recommend 5)."""
REDUCTIONS: tuple[str, ...] = ("mean", "sum")


def _check(weighting: str, reduce: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; valid: {', '.join(REDUCTIONS)}")


def _sigma_data(sigma_data: Any) -> float:
    """``sigma_data`` as a finite positive float (EDM's data standard deviation)."""
    sd = as_real(sigma_data, "sigma_data")
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"sigma_data (the data standard deviation) must be finite and > 0, got {sigma_data!r}")
    return sd


def _t_min(sde: DiffusionSDE, t_min: float | None) -> float:
    if not all(hasattr(sde, a) for a in ("marginal_coeffs", "eps", "T")):
        raise TypeError(f"sde must be a DiffusionSDE (e.g. scoresde.VPSDE()), got {type(sde).__name__}")
    lo = sde.eps if t_min is None else as_real(t_min, "t_min")
    if not 0.0 < lo < sde.T:
        raise ValueError(f"t_min must lie in (0, T={sde.T:g}), got {lo}")
    return lo


def loss_weight(sde: DiffusionSDE, t: Tensor, weighting: str = "sigma2", *, sigma_data: float = 1.0) -> Tensor:
    """``w(t)/sigma(t)^2``, the factor multiplying ``||eps_theta - z||^2``; ``t: (B,) -> (B,)``.

    ``sigma_data`` is used only by ``"edm"``.

    Raises:
        ValueError: an unknown ``weighting``, or (``"edm"``) ``sigma_data`` not finite and > 0.
        TypeError: ``t`` is not a tensor.
    """
    _check(weighting, "mean")
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch.Tensor of times (B,), got {type(t).__name__}")
    if weighting == "sigma2":
        return torch.ones_like(t)
    alpha, sigma = sde.marginal_coeffs(t)
    if weighting == "edm":
        return edm_loss_weight(sigma / alpha, _sigma_data(sigma_data)) * (sigma / alpha) ** 2
    if weighting == "likelihood":
        return sde.diffusion(t) ** 2 / sigma**2
    if weighting == "min_snr":
        snr = (alpha / sigma) ** 2
        return snr.clamp(max=MIN_SNR_GAMMA) / snr
    return sigma ** (-2)


def warn_x0_weighting(output: str, weighting: str, sde: DiffusionSDE, t_min: float | None = None, *,
                      stacklevel: int = 2) -> None:
    """Warn when an ``x0``-predicting network is trained with a weighting other than ``"min_snr"``.

    The loss is ``loss_weight(t) ||eps_theta - z||^2`` and ``eps_theta - z = -(alpha/sigma)
    (x0_theta - x0)``, so the network's own error is weighted by ``loss_weight(t) SNR(t)``,
    at least ``SNR = alpha^2/sigma^2`` for every weighting but ``"min_snr"``: the smallest
    times dominate the loss and its (clipped) gradients, and the rest is barely trained.
    """
    if output != "x0" or weighting == "min_snr":
        return
    lo = _t_min(sde, t_min)
    t = torch.tensor([lo], dtype=torch.float64)
    alpha, sigma = sde.marginal_coeffs(t)
    top = float(loss_weight(sde, t, weighting) * (alpha / sigma) ** 2)
    warnings.warn(
        f"output='x0' with weighting={weighting!r} weights the network's x0 error by "
        f"{'SNR = alpha^2/sigma^2' if weighting == 'sigma2' else 'more than SNR = alpha^2/sigma^2'}, "
        f"{top:.2g} at t_min = {lo:g} under {type(sde).__name__}: the smallest times dominate the loss "
        f"and its gradients, and the model comes out poor (checkerboard, 1000 steps, sliced W2 at 16x "
        f"the exact-sample level with dpmpp_2m under sub-VP and VE; 1.7x with output='eps'). Use "
        f"weighting='min_snr' (Hang et al. 2023; the CLI's default for --output x0: 2.1x and 1.9x there), "
        f"or output 'eps' or 'v'",
        RuntimeWarning, stacklevel=stacklevel + 1)


class ImportanceTimeSampler:
    """Draws ``t ~ q(t) ∝ w(t)/sigma(t)^2`` on ``[t_min, T]`` with the unbiasing weights.

    The CDF is tabulated in float64 at ``n_grid`` points equally spaced in ``u = ln t``
    (cumulative trapezoid of ``h(t) t du``) and inverted piecewise-linearly in ``u``; the
    sampler's exact density is then ``q(t) = p_k / (du * t)`` on bin ``k`` (mass ``p_k``).

    Args:
        sde: the forward SDE; ``weighting``: one of `WEIGHTINGS`.
        t_min: lower end (default ``sde.eps``); ``n_grid``: table size.

    Raises:
        ValueError: an unknown ``weighting``, ``t_min`` outside ``(0, T)``, ``n_grid < 2``,
            ``sigma_data`` not finite and > 0.
        TypeError: ``sde`` is not an SDE; `NotAnIntegerError`: ``n_grid`` not an integer.
    """

    def __init__(
        self, sde: DiffusionSDE, weighting: str = "likelihood", *, t_min: float | None = None,
        n_grid: int = 4097, sigma_data: float = 1.0,
    ) -> None:
        _check(weighting, "mean")
        n_grid = as_integer(n_grid, "n_grid", minimum=2)
        self.sde, self.weighting, self.sigma_data = sde, weighting, _sigma_data(sigma_data)
        self.t_min, self.T = _t_min(sde, t_min), float(sde.T)
        u = torch.linspace(math.log(self.t_min), math.log(self.T), n_grid, dtype=torch.float64)
        t = torch.exp(u)
        h = loss_weight(sde, t, weighting, sigma_data=self.sigma_data)
        if not bool(torch.isfinite(h).all()) or bool((h <= 0).any()):
            raise ValueError(f"w(t)/sigma(t)^2 is not finite and positive on [{self.t_min:g}, {self.T:g}]")
        f = h * t  # integrand in u = ln t
        du = float(u[1] - u[0])
        mass = 0.5 * (f[1:] + f[:-1]) * du
        self.normalizer = float(mass.sum())  # ≈ ∫ h(t) dt over [t_min, T]
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(mass, 0)]) / self.normalizer
        cdf[-1] = 1.0
        self._u, self._cdf, self._p, self._du = u, cdf, mass / self.normalizer, du
        self._tables: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """The tables ``(u, cdf, p)`` on ``device`` (copied once per device)."""
        if device not in self._tables:
            self._tables[device] = (self._u.to(device), self._cdf.to(device), self._p.to(device))
        return self._tables[device]

    def density(self, t: Tensor) -> Tensor:
        """Exact density ``q(t)`` of `sample` (float64), ``t: (B,) -> (B,)``.

        Raises:
            TypeError: ``t`` is not a tensor.
        """
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be a torch.Tensor of times (B,), got {type(t).__name__}")
        u, _, p = self._on(t.device)
        tt = t.detach().to(torch.float64)
        k = torch.clamp(torch.searchsorted(u, torch.log(tt), right=True) - 1, 0, len(p) - 1)
        return p[k] / (self._du * tt)

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(t, weight)``, each ``(n,)``: ``E_q[weight * f(t)] = E_U[h(t) f(t)]``.

        Raises:
            NotAnIntegerError: ``n`` is not an integer. ValueError: ``n < 0``, a non-floating
                ``dtype``, an unknown / unavailable ``device``.
            TypeError: ``generator`` is not a ``torch.Generator``.
        """
        n = as_integer(n, "n", minimum=0)
        check_generator(generator)
        dev = check_device(device) if device is not None else (
            generator.device if generator is not None else torch.device("cpu"))
        dtype = check_dtype(dtype)
        u, cdf, p = self._on(dev)
        r = torch.rand(n, generator=generator, dtype=torch.float64, device=dev)
        # Invert the piecewise-linear CDF: find the bin, then interpolate u within it.
        k = torch.clamp(torch.searchsorted(cdf, r, right=True) - 1, 0, len(p) - 1)
        frac = (r - cdf[k]) / p[k].clamp_min(1e-300)
        t64 = torch.exp(u[k] + frac.clamp(0.0, 1.0) * self._du).clamp(self.t_min, self.T)
        q = p[k] / (self._du * t64)
        h = loss_weight(self.sde, t64, self.weighting, sigma_data=self.sigma_data)
        weight = h / ((self.T - self.t_min) * q)
        return t64.to(dtype), weight.to(dtype)


def _same_sde(a: DiffusionSDE, b: DiffusionSDE) -> bool:
    """Whether ``a`` and ``b`` are the same SDE: the same object, or the same class and `config`.

    The configs must have the same keys and values, floats within relative
    `scoresde.sde.CONFIG_RTOL` (a schedule's probe values, `scoresde.sde.schedule_probe`).
    """
    if a is b:
        return True
    if type(a) is not type(b) or not callable(getattr(a, "config", None)):
        return False
    try:
        ca, cb = a.config(), b.config()  # type: ignore[attr-defined]
        return set(ca) == set(cb) and configs_match(ca, cb)
    except Exception:  # noqa: BLE001 - an SDE whose config cannot be compared is not the same
        return False


def _check_sampler(sampler: ImportanceTimeSampler, sde: DiffusionSDE, weighting: str, t_min: float,
                   sigma_data: float) -> None:
    """Refuse a prebuilt ``sampler`` whose SDE, weighting, ``t_min`` or ``sigma_data`` differ from the call's."""
    if not _same_sde(sampler.sde, sde):
        raise ValueError(f"sampler was built for {sampler.sde!r} but the loss is called with sde={sde!r}; "
                         "build the ImportanceTimeSampler with the same SDE")
    if sampler.weighting != weighting:
        raise ValueError(f"sampler was built for weighting={sampler.weighting!r} but the loss is called "
                         f"with weighting={weighting!r}")
    if not math.isclose(sampler.t_min, t_min, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"sampler was built for t_min={sampler.t_min:g} but the loss is called with "
                         f"t_min={t_min:g}")
    if weighting == "edm" and not math.isclose(sampler.sigma_data, sigma_data, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"sampler was built for sigma_data={sampler.sigma_data:g} but the loss is called "
                         f"with sigma_data={sigma_data:g}")


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of a `ScoreModel`'s (first floating) parameters, or ``None`` if it has none."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _is_model(model: Any) -> bool:
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    return isinstance(model, nn.Module) and isinstance(inner, ScoreModel)


def dsm_per_sample(
    model: nn.Module | Callable[[Tensor, Tensor], Tensor],
    sde: DiffusionSDE,
    x0: Tensor,
    *,
    weighting: str = "sigma2",
    importance: bool = False,
    t_min: float | None = None,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    z: Tensor | None = None,
    sampler: ImportanceTimeSampler | None = None,
    sigma_data: float = 1.0,
) -> Tensor:
    """Per-sample DSM loss ``(B,)`` for data ``x0: (B, *D)``.

    ``model`` is a `ScoreModel` (possibly wrapped in DDP), called as
    ``model(x_t, t, sde, "eps")``, or any score callable ``(x, t) -> s`` (then
    ``eps = -sigma s``). ``t`` and ``z`` may be given (then ``importance`` is ignored and
    ``t`` is weighted as a uniform draw); otherwise they are drawn from ``generator``:
    ``t`` first, then ``z``. ``sampler`` reuses a prebuilt importance table. ``sigma_data``
    is used only by ``weighting="edm"``.

    Raises:
        ValueError: an unknown ``weighting`` / ``reduce``, ``t_min`` outside ``(0, T)``, a given
            ``t`` outside ``(0, T]`` or NaN,
            ``sigma_data`` not finite and > 0, ``x0`` without a batch dimension or empty,
            ``t`` / ``z`` / the model output of the wrong shape.
            A ``sampler`` built for another SDE, weighting, ``t_min`` or (``"edm"``)
            ``sigma_data`` than the call's.
        TypeError: ``x0``, ``t`` or ``z`` not a tensor (or ``x0`` not floating point), a
            ``generator`` that is not a ``torch.Generator``, a ``sampler`` that is not an
            `ImportanceTimeSampler`, a model that does not return a tensor, or (a `ScoreModel`)
            ``x0`` of another dtype than the model's parameters. Floating ``t`` / ``z`` are cast
            to ``x0``'s dtype for a `ScoreModel`.
    """
    _check(weighting, reduce)
    lo = _t_min(sde, t_min)
    sigma_data = _sigma_data(sigma_data)
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        what = f"a {x0.dtype} tensor" if isinstance(x0, Tensor) else type(x0).__name__
        raise TypeError(f"x0 must be a floating-point torch.Tensor (B, *D), got {what}")
    if x0.ndim < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (B, *D) with B >= 1, got {tuple(x0.shape)}")
    for name, value in (("t", t), ("z", z)):
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(value).__name__}")
    check_generator(generator)
    if sampler is not None and not isinstance(sampler, ImportanceTimeSampler):
        raise TypeError(f"sampler must be an ImportanceTimeSampler or None, got {type(sampler).__name__}")
    if sampler is not None:
        _check_sampler(sampler, sde, weighting, lo, sigma_data)
    if _is_model(model):
        # A ScoreModel computes in its parameters' dtype: refuse other data, cast t and z to x0's.
        dtype = _model_dtype(model)
        if dtype is not None and torch.promote_types(x0.dtype, dtype) != dtype:  # float64 data, float32 model
            raise TypeError(f"x0 is {x0.dtype} but the model's parameters are {dtype}; convert the model "
                            f"(e.g. model.double() for float64 data) or the data (x0.to({dtype}))")
        if t is not None and t.is_floating_point():
            t = t.to(x0.dtype)
        if z is not None and z.is_floating_point():
            z = z.to(x0.dtype)
    b = x0.shape[0]
    if t is None:
        if importance:
            if sampler is None:
                sampler = ImportanceTimeSampler(sde, weighting, t_min=lo, sigma_data=sigma_data)
            t, coef = sampler.sample(b, generator=generator, dtype=x0.dtype, device=x0.device)
        else:
            u = torch.rand(b, generator=generator, dtype=x0.dtype, device=x0.device)
            t = lo + (sde.T - lo) * u
            coef = loss_weight(sde, t, weighting, sigma_data=sigma_data)
    else:
        if t.shape != (b,):
            raise ValueError(f"t must have shape ({b},), got {tuple(t.shape)}")
        if not bool(((t > 0) & (t <= sde.T)).all()):  # also NaN; t = 0 has sigma = 0 (inf loss)
            bad = t[~((t > 0) & (t <= sde.T))]
            raise ValueError(f"t must lie in (0, T = {sde.T:g}]; got {float(bad[0]):g}")
        coef = loss_weight(sde, t, weighting, sigma_data=sigma_data)
    if z is None:
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    elif z.shape != x0.shape:
        raise ValueError(f"z must have the shape of x0 {tuple(x0.shape)}, got {tuple(z.shape)}")

    # Forward-noise the data with the SDE's marginal: x_t = alpha x0 + sigma z.
    alpha, sigma = sde.marginal_coeffs(t)
    x_t = append_dims(alpha, x0.ndim) * x0 + append_dims(sigma, x0.ndim) * z
    out = model(x_t, t, sde, "eps") if _is_model(model) else model(x_t, t)
    if not isinstance(out, Tensor) or out.shape != x0.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model must return one value per entry of x0, shape {tuple(x0.shape)}; got {got}")
    eps_hat = out if _is_model(model) else -append_dims(sigma, x0.ndim) * out
    sq = (eps_hat - z).pow(2).reshape(b, -1)
    per_sample = sq.mean(dim=1) if reduce == "mean" else sq.sum(dim=1)
    return coef * per_sample


def dsm_loss(model: nn.Module | Callable[[Tensor, Tensor], Tensor], sde: DiffusionSDE, x0: Tensor,
             **kwargs: Any) -> Tensor:
    """Batch mean of `dsm_per_sample` (same keyword options); a scalar."""
    return dsm_per_sample(model, sde, x0, **kwargs).mean()


def eps_loss(model: nn.Module | Callable[[Tensor, Tensor], Tensor], sde: DiffusionSDE, x0: Tensor,
             **kwargs: Any) -> Tensor:
    """Epsilon-prediction loss ``E ||eps_theta(x_t, t) - z||^2`` (Ho et al. 2020), t uniform.

    Identical to `dsm_loss` with ``weighting="sigma2"``.
    """
    if "weighting" in kwargs or "importance" in kwargs:
        raise TypeError("eps_loss has a fixed weighting; use dsm_loss to choose one")
    return dsm_loss(model, sde, x0, weighting="sigma2", **kwargs)


@dataclass
class LossConfig:
    """Loss options saved with a training run (see the module docstring).

    Raises:
        ValueError: an unknown ``weighting`` / ``reduce``, ``t_min`` not a finite number > 0
            (checked against ``T`` when the loss is built), ``sigma_data`` not finite and > 0.
        TypeError: ``importance`` not a bool, ``t_min`` / ``sigma_data`` not numbers.
    """

    weighting: str = "sigma2"
    importance: bool = False
    reduce: str = "mean"
    t_min: float | None = None
    sigma_data: float = 1.0

    def __post_init__(self) -> None:
        _check(self.weighting, self.reduce)
        if not isinstance(self.importance, bool):
            raise TypeError(f"importance must be True or False, got {self.importance!r}")
        if self.importance and self.weighting == "sigma2":
            warnings.warn("importance=True does nothing with weighting='sigma2': q(t) is proportional "
                          "to w(t)/sigma(t)^2 = 1, i.e. uniform in t as without it; it lowers the "
                          "loss's variance with weighting='likelihood' or 'none'",
                          UserWarning, stacklevel=3)
        if self.importance and self.weighting == "edm":
            # EDM's weight already makes every t's term unit-scale; q ~ w/sigma^2 then puts most
            # draws near T and the rare small-t ones carry the estimate (unbiased, but noisier).
            warnings.warn("importance=True with weighting='edm' makes the loss noisier, not less: EDM's "
                          "weight already makes each t's term unit-scale, and q(t) ~ w(t)/sigma(t)^2 puts "
                          "most draws near T (measured with the exact score of N(0, I): per-sample std "
                          "1.0 -> 26-31 under VP over two draws, 1.0 -> 3.2 under VE); leave importance=False for 'edm'",
                          UserWarning, stacklevel=3)
        if self.t_min is not None:
            lo = as_real(self.t_min, "t_min")
            if not (math.isfinite(lo) and lo > 0):
                raise ValueError(f"t_min must be a finite time > 0 (or None for sde.eps), got {self.t_min!r}")
        _sigma_data(self.sigma_data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossConfig:
        return cls(**d)

    def build(self, sde: DiffusionSDE) -> DSMLoss:
        """The loss bound to ``sde``.

        Raises:
            ValueError: ``t_min`` not below ``sde.T``. TypeError: ``sde`` is not an SDE.
        """
        return DSMLoss(sde, self)


class DSMLoss:
    """``loss(model, x0, generator) -> scalar``: `dsm_loss` bound to an SDE and a config.

    The importance-sampling table (if any) is built once here.
    """

    def __init__(self, sde: DiffusionSDE, config: LossConfig | None = None) -> None:
        self.sde = sde
        self.config = config or LossConfig()
        c = self.config
        _t_min(sde, c.t_min)  # t_min in (0, T): refused here, not at the first call
        self.sampler = (ImportanceTimeSampler(sde, c.weighting, t_min=c.t_min, sigma_data=c.sigma_data)
                        if c.importance else None)

    def __call__(self, model: nn.Module, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        c = self.config
        return dsm_loss(model, self.sde, x0, weighting=c.weighting, importance=c.importance,
                        t_min=c.t_min, reduce=c.reduce, generator=generator, sampler=self.sampler,
                        sigma_data=c.sigma_data)


def edm_time_sample(
    sde: DiffusionSDE, n: int, *, p_mean: float = -1.2, p_std: float = 1.2,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Times ``t: (n,)`` with ``ln sigma_edm(t) ~ N(p_mean, p_std^2)`` (Karras et al. 2022, Table 1).

    ``sigma_edm = sigma/alpha`` is inverted by bisection (``solvers.grids.time_from_edm_sigma``);
    levels outside ``[sigma_edm(eps), sigma_edm(T)]`` are clipped to the ends. Pass the result
    as ``t=`` to `dsm_per_sample` (with ``weighting="edm"``) for EDM's training objective.

    Raises:
        NotAnIntegerError: ``n`` is not an integer. ValueError: ``n < 0``, ``p_mean`` not
            finite, ``p_std`` not finite and >= 0, a non-floating ``dtype``.
        TypeError: ``generator`` is not a ``torch.Generator``.
    """
    from solvers.grids import time_from_edm_sigma

    n = as_integer(n, "n", minimum=0)
    if not math.isfinite(as_real(p_mean, "p_mean")):
        raise ValueError(f"p_mean must be finite, got {p_mean!r}")
    if not (math.isfinite(as_real(p_std, "p_std")) and p_std >= 0):
        raise ValueError(f"p_std must be finite and >= 0, got {p_std!r}")
    check_generator(generator)
    dtype = check_dtype(dtype)
    z = torch.randn(n, generator=generator, dtype=torch.float64)
    return time_from_edm_sigma(sde, torch.exp(p_mean + p_std * z)).to(dtype)
