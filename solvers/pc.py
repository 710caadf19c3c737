"""Predictor-corrector samplers (Song et al. 2021, Section 4.2, Alg. 1-5).

On the grid ``T = t_0 > t_1 > ... > t_n = eps`` each step ``t_i -> t_{i+1}`` runs one
predictor step (`solvers.predictors`) and ``M = corrector_steps`` corrector steps
(`solvers.correctors`)::

    predictor_first (Alg. 1, default):  x <- P(x; t_i -> t_{i+1});  M times x <- C(x; t_{i+1})
    corrector_first (reference code):   M times x <- C(x; t_i);  x <- P(x; t_i -> t_{i+1})

In ``predictor_first`` order no corrector runs at ``T`` and the last ones run at ``eps``; in
``corrector_first`` order the correctors run at ``T`` and the very last operation is the
predictor step into ``eps``. ``final_noise=False`` (default) makes that last predictor step
return its mean (Song et al.'s reference sampler returns ``x_mean``); correctors always keep
their noise, which is part of the Langevin chain targeting ``p_t``. The corrector weight
``a_i = 1 - beta_i`` (Alg. 5) is that of the current grid step ``[t_{i+1}, t_i]`` in both
orders. The default Langevin corrector averages its norms over the batch, as Song et al.'s
reference code does (see `solvers.correctors` for why not per sample).

NFE per step is ``P + M C`` with ``P, C in {0, 1}`` the evaluations of the predictor and the
corrector: ``steps * (1 + M)`` for the default PC sampler. It is counted by the dynamics'
score wrapper, never self-reported.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor

from .base import DynamicsKind, FixedGridSolver, SolveContext
from .correctors import LANGEVIN_CAP, Corrector, NoneCorrector, corrector_weight, get_corrector
from .defaults import is_variance_exploding, langevin_snr, sde_solver_grid
from .dynamics import ReverseDynamics
from .grids import get_grid
from .predictors import NonePredictor, Predictor, ReverseDiffusionPredictor, get_predictor
from .registry import lookup
from .stability import NOISE_TOO_COARSE, TRAINED_COARSE_GRID_MEASURE, reverse_diffusion_fewest_steps
from .utils import batch_time
from .warning_types import MethodLimitWarning, warn

__all__ = ["PredictorCorrector", "ReverseDiffusion", "Ancestral", "AnnealedLangevin", "PC_SEQUENCES"]

PC_SEQUENCES = ("predictor_first", "corrector_first")
"""The order in which predictor and corrector run within one grid step (option ``sequence``)."""


class PredictorCorrector(FixedGridSolver):
    """Predictor-corrector sampler (Song et al. 2021, Alg. 1): reverse-diffusion step + Langevin corrector.

    The reverse-diffusion predictor takes Tweedie's one-step posterior mean by default
    (`solvers.predictors.ReverseDiffusionPredictor`; ``predictor=ReverseDiffusionPredictor(
    mean="additive")`` is Song et al.'s Alg. 3 and reference sampler).

    Args:
        predictor: a name in `solvers.predictors.PREDICTORS` (``euler_maruyama``,
            ``reverse_diffusion``, ``ancestral``, ``none``) or a
            `Predictor`; ``None``: the class default
            (``reverse_diffusion`` here).
        corrector: a name in `solvers.correctors.CORRECTORS` (``none``, ``langevin``,
            ``annealed_langevin``) or a `Corrector`; ``None``: the
            class default (``langevin`` here).
        snr: signal-to-noise ratio ``r`` of a corrector given by name (``None``: 0.16, or the
            class default for the class's default corrector). Set it on the instance when
            passing a corrector object.
        corrector_steps: ``M``, corrector steps per grid step (``>= 0``; ``None``: the class
            default, 1 here). Must be left ``None`` with corrector ``none``.
        sequence: ``"predictor_first"`` (Alg. 1, default) or ``"corrector_first"`` (the
            sequence of Song et al.'s reference code).
        final_noise: add noise on the last predictor step too (default ``True``: the state at
            ``eps`` samples ``p_eps``, which the default end-of-run step maps to ``p_0``;
            ``False``: return the step's mean, as Song et al.'s reference sampler).
        langevin_cap: ``c`` of the Langevin corrector's step cap ``h <= c sigma(t)^2``
            (`solvers.correctors.LangevinCorrector`; default 1, in ``(0, 2)``), or ``None`` /
            ``"none"`` for Song et al.'s unbounded rule. Only for a corrector given by name
            (``"langevin"``, the default); set ``cap`` on an instance yourself.

    Defaults that depend on the SDE (`solvers.defaults`): the grid (``logsnr`` on VP / sub-VP,
    ``uniform_logsnr`` on VE) and, when neither ``snr`` nor a corrector object is given, the Langevin
    corrector's ``snr`` (0.16 on VE, 0.01 on VP / sub-VP, Song et al. 2021), set per solve.

    Capabilities: ``order`` is the weak order of the predictor as a reverse-SDE
    discretisation. The default Langevin corrector caps its step at ``sigma(t)^2``
    (`solvers.correctors.LangevinCorrector`), so its ``O(snr^2)`` bias falls as the grid is
    refined and no data's narrow mode is thrown out; with ``langevin_cap=None``
    (Song et al.'s rule; pass ``corrector=LangevinCorrector(snr, cap=None)``) a fixed ``snr``
    leaves a bias that does not shrink with the step size (it vanishes as ``snr -> 0``).
    """

    order: float = 1.0
    strong_order: float | None = None
    dynamics_kind: DynamicsKind = "sde"
    stochastic: bool = True

    default_predictor: ClassVar[str] = "reverse_diffusion"
    default_corrector: ClassVar[str] = "langevin"
    default_snr: ClassVar[float | None] = None
    default_corrector_steps: ClassVar[int] = 1

    def __init__(
        self,
        *,
        predictor: str | Predictor | None = None,
        corrector: str | Corrector | None = None,
        snr: float | None = None,
        corrector_steps: int | None = None,
        sequence: Literal["predictor_first", "corrector_first"] = "predictor_first",
        final_noise: bool = True,
        langevin_cap: float | str | None = LANGEVIN_CAP,
    ) -> None:
        self.predictor: Predictor = get_predictor(
            self.default_predictor if predictor is None else predictor
        )
        # The Langevin snr follows the SDE (set per solve) unless the user or the class fixes it.
        self._snr_per_sde = snr is None and corrector in (None, "langevin") and self.default_snr is None
        if corrector is None:
            # The class's default corrector comes with the class's default snr.
            corrector = self.default_corrector
            snr = self.default_snr if snr is None else snr
        self.corrector: Corrector = get_corrector(corrector, snr=snr, cap=langevin_cap)

        if isinstance(self.corrector, NoneCorrector):
            if corrector_steps is not None:
                raise ValueError(
                    f"corrector_steps={corrector_steps!r} has no effect with corrector 'none'"
                )
            steps = 0
        else:
            steps = self.default_corrector_steps if corrector_steps is None else corrector_steps
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                raise ValueError(f"corrector_steps must be an integer >= 0, got {steps!r}")
        self.corrector_steps: int = steps

        self.sequence: str = lookup({k: k for k in PC_SEQUENCES}, sequence, "sequence")
        # Marginals are needed by the predictor (exact transitions) or the corrector's weight.
        self.needs_marginals = self.predictor.needs_marginals or (
            self.corrector_steps > 0 and self.corrector.needs_marginals
        )
        if not isinstance(final_noise, bool):
            raise TypeError(f"final_noise must be a bool, got {type(final_noise).__name__}")
        self.final_noise = final_noise

        if isinstance(self.predictor, NonePredictor) and self.corrector_steps == 0:
            raise ValueError(
                "predictor 'none' without corrector steps never moves the prior sample; "
                "give a corrector and corrector_steps >= 1"
            )

    @property
    def snr(self) -> float | None:
        """The corrector's signal-to-noise ratio (``None`` without a corrector)."""
        return self.corrector.snr

    @property
    def evaluations_per_step(self) -> int:
        """Score evaluations per grid step: ``P + M C`` (what the counted NFE will show)."""
        return self.predictor.evaluations + self.corrector_steps * self.corrector.evaluations

    def grid_for(self, sde: object) -> str:
        return sde_solver_grid(sde)

    coarse_grid_reason: tuple[str, str] = NOISE_TOO_COARSE

    def fewest_steps(self, sde: object) -> int:
        """With the reverse-diffusion predictor on a VE SDE, the fewest steps whose first step spans
        at most 1.45 in ``ln sigma`` (7 on `scoresde.VESDE`, 8 on `scoresde.EDMSDE`;
        `solvers.stability.reverse_diffusion_fewest_steps`), else 1 (`FixedGridSolver.fewest_steps`).

        One reverse-diffusion step from ``T`` re-injects forward noise of variance
        ``sigma_max^2 - sigma(t_1)^2``, which the later steps must remove. With exact scores
        (8 modes of std 0.05 / 0.15 on circles of radius 1.5 / 2, `reverse_diffusion` and `pc`
        alike) samples' median norm over the data's reads, under VE, 39.8 / 29.8 at 1 step,
        1.39 / 3.00 at 2, 1.16 / 1.46 at 3; trained networks, whose scores far from the data are
        less exact, need more steps (checkerboard / two moons under VE: 10.7 / 8.0 at 3 steps,
        3.8 / 3.6 at 4, 1.33 / 1.63 at 5, 1.18 / 1.31 at 7). Under VP and sub-VP 0.73-1.10 from
        3 steps on, exact or trained.
        """
        if isinstance(self.predictor, ReverseDiffusionPredictor) and is_variance_exploding(sde):
            return reverse_diffusion_fewest_steps(sde, get_grid(self.grid_for(sde)))
        return 1

    def coarse_grid_measure(self, sde: object) -> str:
        return TRAINED_COARSE_GRID_MEASURE

    def prepare(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        if self._snr_per_sde and self.corrector_steps > 0:
            self.corrector.snr = langevin_snr(dynamics.sde)

    def _correct(
        self, dynamics: ReverseDynamics, x: Tensor, t_corr: float, t: float, t_next: float, ctx: SolveContext
    ) -> Tensor:
        if self.corrector_steps == 0:
            return x
        # a_i = 1 - beta_i of this grid step (1 for VE) scales the Langevin step sizes.
        weight = corrector_weight(dynamics, t, t_next, x)
        # M Langevin steps at the fixed time t_corr; the score is evaluated here.
        for _ in range(self.corrector_steps):
            score = dynamics.score(x, batch_time(t_corr, x)) if self.corrector.evaluations else None
            x = self.corrector.update(dynamics, x, t_corr, score, weight, ctx.noise)
        return x

    def _predict(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        # Noise on every predictor step but the last, unless final_noise.
        add_noise = self.final_noise or not ctx.is_last
        score = dynamics.score(x, batch_time(t, x)) if self.predictor.evaluations else None
        return self.predictor.update(dynamics, x, t, t_next, score, ctx.noise, add_noise=add_noise)

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        """One predictor and ``M`` corrector steps from ``t`` to ``t_next`` on ``x: (B, *D)``."""
        if self.sequence == "predictor_first":
            # Predictor into t_next, then correct at t_next (Alg. 1).
            x = self._predict(dynamics, x, t, t_next, ctx)
            return self._correct(dynamics, x, t_next, t, t_next, ctx)
        # Correct at t, then predict into t_next (reference code).
        x = self._correct(dynamics, x, t, t, t_next, ctx)
        return self._predict(dynamics, x, t, t_next, ctx)


class ReverseDiffusion(PredictorCorrector):
    """Reverse-diffusion sampler (Song et al. 2021, App. E): the discretised forward step run backwards.

    `PredictorCorrector` with predictor ``reverse_diffusion`` and corrector ``none``
    by default; one NFE per step. Strong order 1 (additive noise, like Euler-Maruyama).
    Its step's mean is Tweedie's one-step posterior mean ``(x + b^2 s) / a``, which keeps mode
    weights of data centred away from the origin; Song et al.'s subtractive rule (Alg. 3) is
    ``predictor=ReverseDiffusionPredictor(mean="additive")``
    (`solvers.predictors.ReverseDiffusionPredictor`).
    """

    strong_order: float | None = 1.0
    default_predictor: ClassVar[str] = "reverse_diffusion"
    default_corrector: ClassVar[str] = "none"


class Ancestral(PredictorCorrector):
    """Ancestral sampler: exact Gaussian posterior steps (DDPM on VP, SMLD's on VE; Song et al. App. F).

    `PredictorCorrector` with predictor ``ancestral`` and corrector ``none`` by
    default; one NFE per step.

    Each step plugs Tweedie's posterior mean into the posterior of the forward step and so
    drops ``Var(x_0 | x_t)``: modes come out too narrow by O(h) (a single Gaussian of std 0.02
    on VP: 0.69, 0.83, 0.91, 0.96 of its spread at 9, 19, 39, 79 steps; docs/defaults.md).
    The optimal variance of Analytic-DPM (Bao et al. 2022) restores it; this class keeps the
    published ``beta_tilde`` rule. `solvers.GaussianAncestral` (``gaussian_ancestral``) takes
    the same mean and adds the posterior variance of a per-sample fitted Gaussian: exact on
    Gaussian data at any step size (docs/defaults.md).
    """

    strong_order: float | None = 1.0
    default_predictor: ClassVar[str] = "ancestral"
    default_corrector: ClassVar[str] = "none"


class AnnealedLangevin(PredictorCorrector):
    """Annealed Langevin dynamics (SMLD, Song & Ermon 2019): Langevin steps at decreasing noise levels.

    `PredictorCorrector` with predictor ``none`` and corrector ``annealed_langevin``
    by default: no reverse-SDE step at all; at every grid time ``t_{i+1}`` the corrector
    runs ``M`` Langevin steps with step size ``h = 2 a (r sigma(t))^2``, and that is what carries
    the state from noise level to noise level. NFE = ``steps * M``.

    Not a discretisation of the reverse SDE: ``order`` is nominal. Its accuracy is set by
    the Langevin time spent near each level (grows with ``steps * M * snr^2``; the chain
    stops mixing once ``sigma(t)`` falls well below the data's own scale, so it needs many
    levels there) and an ``O(snr^2)`` bias of the unadjusted chain.

    Default ``snr = 0.316``: NCSN's step ``alpha_i = 2e-5 sigma_i^2 / sigma_L^2`` with
    ``sigma_L = 0.01`` (Song & Ermon 2019), i.e. ``h = 0.2 sigma^2 = 2 (0.316 sigma)^2``.
    With the PC default 0.16 the chain mixes four times slower per level.

    Does not reach ``p_0`` within 1000 NFE: on a sharp 8-mode target (mode std 0.05) the
    within-mode spread stays 3-5% too wide at 1000 Langevin steps on VP, sub-VP and VE with the
    default ``logsnr`` / ``uniform`` grids (36% on VP with the old uniform grid), and more on
    data away from the origin or with modes of very different widths (measured 9-11%: 8 modes
    of std 0.05 on a circle centred at (3, 0) under sub-VP, whose mean it also pulls 0.2 towards
    the origin; a 0.97 / 0.03 pair of modes of std 0.02 / 0.2 under VE). Data wider than the
    prior come out too narrow, and slowly approach it: a Gaussian of std 5 under VP gave 0.68,
    0.76, 0.84, 0.91 of its std at 500, 1000, 2000, 4000 steps (std 20: 0.29 to 0.56; sub-VP,
    std 5: 0.55 to 0.78). The chain also mixes slowly between modes: with weights 0.85 / 0.1 /
    0.04 / 0.01 on four modes of std 0.03 a unit apart (VP, 1000 steps) the 1% mode was drawn
    1.5% of the time and the 85% mode 82%. It warns at every step count. See docs/defaults.md.
    """

    default_predictor: ClassVar[str] = "none"
    default_corrector: ClassVar[str] = "annealed_langevin"
    default_snr: ClassVar[float | None] = 0.316

    def prepare(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        super().prepare(dynamics, ctx)
        n = ctx.n_steps * self.corrector_steps
        short = ("; fewer steps leave the modes far wider (8 modes of std 0.15: 3.1x, 3.8x and 27x their width "
                 "at 20 Langevin steps on VP, sub-VP and VE, 1.2-1.4x at 200)" if n < 1000 else "")
        warn(  # at any step count: the measured errors shrink slowly, and not only one way
            f"annealed_langevin ({n} Langevin steps) has no reverse-SDE "
            "predictor and was not measured to reach p_0 at any step count: modes 3-5% too wide at 1000 "
            "steps on VP, sub-VP and VE (up to 11% on off-centre data or modes of very different widths), "
            "data wider than the prior too narrow (a Gaussian of std 5 under VP: 0.76 of its std at 1000 "
            "steps, 0.91 at 4000), and with unequal mode weights mass moves between modes (a 1% mode "
            f"drawn 1.5% of the time; docs/defaults.md){short}; use 'pc' or 'euler_maruyama' to sample p_0",
            MethodLimitWarning,
        )
