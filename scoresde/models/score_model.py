"""``ScoreModel``: a network plus its output parameterization, and the model config.

A `ScoreModel` wraps a raw network ``net(x_in: (B, *D), t: (B,)) -> (B, *D)`` and
knows what its output means (`.parameterization`). It is SDE-agnostic: every call
takes the SDE whose ``alpha(t), sigma(t)`` define the conversions, and
`ScoreModel.score_fn` turns it into the ``(x, t) -> score`` callable every solver takes.

Optional input scaling (Karras et al. 2022, "EDM", Table 1): the network sees
``c_in x`` with ``c_in = 1 / sqrt(alpha^2 sigma_data^2 + sigma^2)``, so its input has
roughly unit variance for every ``t`` and every SDE (VE inputs reach ``sigma_max``).
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from solvers.inputs import as_real
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.score_sde import check_training_sde
from solvers.utils import append_dims, batch_time

from .mlp import MLP, data_sizes
from .parameterization import check_output, convert
from .unet import UNet

__all__ = ["ScoreModel", "ModelConfig", "NETWORKS", "build_network"]

NETWORKS: dict[str, type[nn.Module]] = {"mlp": MLP, "unet": UNet}


def build_network(arch: str, data_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """Build a registered network by name; unknown names or options raise with the valid ones."""
    try:
        cls = NETWORKS[arch]
    except KeyError:
        raise ValueError(f"unknown network {arch!r}; valid: {', '.join(NETWORKS)}") from None
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "data_shape")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"network {arch!r} got unknown option(s) {unknown}; it accepts: {accepted}")
    return cls(data_shape, **kwargs)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `ScoreModel` (saved as JSON in checkpoints).

    Attributes:
        arch: network name in `NETWORKS` (``"mlp"``, ``"unet"``).
        data_shape: shape ``D`` of one sample.
        output: what the network predicts: ``"score"``, ``"eps"``, ``"x0"`` or ``"v"``.
        input_scaling: feed ``c_in x`` with ``c_in = 1/sqrt(alpha^2 sigma_data^2 + sigma^2)``.
        sigma_data: data standard deviation used by the input scaling.
        net: keyword arguments of the network class (e.g. ``{"width": 128, "depth": 3}``).
    """

    arch: str = "mlp"
    data_shape: tuple[int, ...] = (2,)
    output: str = "eps"
    input_scaling: bool = True
    sigma_data: float = 1.0
    net: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_shape = data_sizes(self.data_shape)  # 2.7 is refused, not truncated
        if not self.data_shape:  # the networks refuse it too, but only when built
            raise ValueError("data_shape must be non-empty: the shape of one sample, e.g. (2,) or (1, 28, 28)")
        check_output(self.output)
        self.input_scaling = _check_flag(self.input_scaling, "input_scaling")
        self.sigma_data = _check_sigma_data(self.sigma_data)
        # Lists from JSON become tuples so that a round trip compares equal.
        self.net = {k: tuple(v) if isinstance(v, list) else v for k, v in self.net.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)

    def build(self, *, seed: int | None = None) -> ScoreModel:
        """Instantiate the model; ``seed`` makes the initial weights reproducible."""
        if seed is None:
            net = build_network(self.arch, self.data_shape, **self.net)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = build_network(self.arch, self.data_shape, **self.net)
        return ScoreModel(net, output=self.output, input_scaling=self.input_scaling,
                          sigma_data=self.sigma_data, config=self)


def _check_flag(value: Any, name: str) -> bool:
    """A boolean option (``True`` / ``False``; ``"no"`` would read as true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _check_sigma_data(value: Any) -> float:
    """The data's std, a positive finite number (``inf`` would zero the input scaling ``c_in``)."""
    sigma = as_real(value, "sigma_data")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma_data must be positive and finite, got {value!r}")
    return sigma


def like_parameters(module: nn.Module, x: Tensor, *, exact: bool = False, what: str = "model",
                    fix: str = "move the model with model.to(...) or convert x") -> Tensor:
    """``x`` in the dtype of ``module``'s parameters: cast up where that loses nothing (float32
    data, a float64 module), else refused with ``fix`` (a raw matmul dtype error otherwise).
    ``exact`` refuses any other dtype; another device is always refused.

    Raises:
        TypeError: names ``what``, both dtypes and devices, and ``fix``.
    """
    param = next(module.parameters(), None)
    if param is None or (param.dtype == x.dtype and param.device == x.device):
        return x
    if param.device == x.device and not exact and torch.promote_types(x.dtype, param.dtype) == param.dtype:
        return x.to(param.dtype)
    raise TypeError(f"{what} parameters are {param.dtype} on {param.device} but x is {x.dtype} on {x.device}; {fix}")


class ScoreModel(nn.Module):
    """A network with a known output type; predicts score, eps, x0 or v for any affine SDE.

    Args:
        net: ``net(x_in: (B, *D), t: (B,)) -> (B, *D)``.
        output: what ``net`` predicts (``"score"`` means ``sigma * score``, see
            `.parameterization`).
        input_scaling, sigma_data: see the module docstring.
        config: the `ModelConfig` that built it (kept for checkpoints), if any.

    ``model(x, t, sde, kind="eps")`` is the forward pass used in training (so that
    ``DistributedDataParallel`` sees it); ``kind`` picks the returned prediction.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        output: str = "eps",
        input_scaling: bool = True,
        sigma_data: float = 1.0,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            hint = "; build a model from a config with ModelConfig(...).build()" if isinstance(net, ModelConfig) else ""
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}{hint}")
        self.net = net
        self.output = check_output(output)
        self.input_scaling = _check_flag(input_scaling, "input_scaling")
        self.sigma_data = _check_sigma_data(sigma_data)
        self.config = copy.deepcopy(config) if config is not None else None
        # The earliest time the network was trained at (set by `load_model` and the trainer from
        # the loss's t_min); `score_fn` passes it on so that the likelihood stops there.
        self.min_score_time: float | None = None
        # The SDE the network was trained under (set by `load_model` and the trainer): `score_fn`
        # refuses an SDE with other marginals, whose t would be another noise level for it.
        self.trained_sde: DiffusionSDE | None = None

    def forward(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE, kind: str = "score") -> Tensor:
        """Prediction of type ``kind`` at ``x: (B, *D)``, ``t: (B,)``; returns ``(B, *D)``.

        ``t`` may also be a float or a 0-d tensor (broadcast to the batch); it is cast to ``x``'s
        dtype and device (an integer ``t`` would otherwise round the time embedding's frequencies).
        ``x`` of a narrower dtype than the parameters (float32 data, a float64 model) is cast up.

        Raises:
            ValueError: ``t`` neither 0-d nor ``(B,)``, or ``t <= 0`` (``sigma = 0``: no score).
            TypeError: ``x`` of a wider dtype than the model's parameters, or on another device.
        """
        x = self._like_parameters(x)
        t = batch_time(t, x)
        if x.shape[0] and not bool((t > 0).all()):
            if bool(torch.isnan(t).any()):
                raise ValueError(f"t contains NaN ({int(torch.isnan(t).sum())} of {t.numel()} entries)")
            # sigma(0) = 0: every conversion to the score divides by it (inf / NaN outputs).
            raise ValueError(f"t must be > 0 (the data end t = 0 has no noise and no score); "
                             f"got min t = {float(t.min()):g}")
        alpha, sigma = sde.marginal_coeffs(t)
        x_in = x
        if self.input_scaling:
            c_in = torch.rsqrt(alpha**2 * self.sigma_data**2 + sigma**2)
            x_in = append_dims(c_in, x.ndim) * x
        o = self.net(x_in, t)
        return convert(o, x, alpha, sigma, src=self.output, dst=kind, sigma_data=self.sigma_data)

    def score(self, x: Tensor, t: Tensor, sde: DiffusionSDE) -> Tensor:
        """``grad_x log p_t(x)`` estimate."""
        return self(x, t, sde, "score")

    def eps(self, x: Tensor, t: Tensor, sde: DiffusionSDE) -> Tensor:
        """Noise prediction ``eps_hat = -sigma * score``."""
        return self(x, t, sde, "eps")

    def x0(self, x: Tensor, t: Tensor, sde: DiffusionSDE) -> Tensor:
        """Data prediction (Tweedie) ``x0_hat = (x + sigma^2 score) / alpha``."""
        return self(x, t, sde, "x0")

    def v(self, x: Tensor, t: Tensor, sde: DiffusionSDE) -> Tensor:
        """``v = alpha eps_hat - sigma x0_hat``."""
        return self(x, t, sde, "v")

    def score_fn(self, sde: DiffusionSDE) -> ScoreFn:
        """The callable ``score(x: (B, *D), t: (B,)) -> (B, *D)`` that solvers take.

        It runs without autograd unless ``x`` requires grad (likelihood code differentiates
        the score with respect to ``x``); ``t`` is cast to ``x``'s dtype and device. Call
        ``model.eval()`` first if the network has dropout. A trained model's callable carries
        ``min_score_time``, the earliest time it was trained at, where the likelihood's
        data-density ODE stops (`scoresde.likelihood.data_end_time`). The callable declares
        ``sde`` (``score.sde``), so a solver or the likelihood given another SDE refuses it.

        Raises:
            ValueError: the model was trained (``trained_sde``, set by `load_model` and the
                trainer) under an SDE whose marginals differ from ``sde``'s.
        """
        check_training_sde(self.trained_sde, sde)

        def score(x: Tensor, t: Tensor) -> Tensor:
            self._like_parameters(x, exact=True)  # a solver's state keeps its dtype: no silent casts
            if x.requires_grad:
                return self.score(x, t, sde)
            with torch.no_grad():
                return self.score(x, t, sde)

        if self.min_score_time is not None:
            score.min_score_time = self.min_score_time  # type: ignore[attr-defined]
        score.sde = sde  # type: ignore[attr-defined]
        return score

    def _like_parameters(self, x: Tensor, *, exact: bool = False) -> Tensor:
        """``x`` in the parameters' dtype (`like_parameters`); ``exact`` refuses any cast."""
        return like_parameters(self, x, exact=exact, what="model",
                               fix="move the model with model.to(...) or convert x (for sampling: "
                                   "solvers.sample(..., dtype=..., device=...) with the model's)")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return (f"output={self.output!r}, input_scaling={self.input_scaling}, "
                f"sigma_data={self.sigma_data:g}, params={self.num_parameters():,}")


