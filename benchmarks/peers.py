"""Fast samplers, ours vs k-diffusion and diffusers, on exact Gaussian-mixture targets at equal NFE.

Every sampler integrates the same problem from the same ``x_T`` (exact samples of ``p_T``)
with the exact mixture score, and is judged by sliced-W2 and MMD^2 (fixed RBF bandwidths)
against exact samples of ``p_0``, next to the metric's noise floor (two independent exact
sample sets of the same size). NFE is counted by wrapping the score, for peers too.

Adapters (no peer code is modified):

* k-diffusion samplers take a denoiser ``D(x_edm, sigma_edm)`` in EDM form. For any affine SDE,
  ``x_edm = x/alpha(t)`` and ``sigma_edm = sigma(t)/alpha(t)``; ``D`` is our Tweedie
  ``E[x_0 | x_t]`` at the time ``t`` with that ``sigma_edm`` (inverted by bisection), so
  k-diffusion runs on VP and VE alike. Its ``sigmas`` are its own Karras (rho = 7) or
  exponential schedules between ``sigma_edm(eps)`` and ``sigma_edm(T)``, with its final 0.
  Its package ``__init__`` imports training/evaluation dependencies (torchvision, kornia,
  wandb, clean-fid, ...); when those are absent only ``k_diffusion/sampling.py`` is loaded.
* diffusers schedulers live on 1000 discrete DDPM steps: ``trained_betas`` are set so that
  their ``alphas_cumprod[k] = alpha(t_k)^2`` of our VP SDE at ``t_k = (k + 1)/1000``, and the
  model returns the exact noise prediction ``-sigma(t) score(x, t)``. VP only (their
  native family); their default timestep spacing and final step to sigma = 0.

Every sampler, ours and the peers', ends at ``sigma = 0`` (ours through the default
end-of-run step, ``solvers.end``), so both tables judge against ``p_0``.

Install the peers (benchmark-only extras, never package dependencies)::

    pip install -e ".[peers]"                 # diffusers, torchdiffeq
    pip install --no-deps k-diffusion==0.1.1.post1

Reproduce the tables in docs/fast_solvers.md: the sharp targets, combined metric (5 min with
the ``--only`` list given there), and the SW2 / MMD^2 tables on broader targets (about 30
minutes on 2 busy CPU cores)::

    OMP_NUM_THREADS=1 python benchmarks/peers.py --problems 8gauss-vp 8gauss-ve hd16-vp \
        --nfe 5 10 20 50 --table sw-mmd --no-exact-row --n 6000 --seeds 4 --mmd-n 3000

Targets outside the presets (any target ``benchmarks/sharp.py`` builds, as ``<target>-<sde>``)::

    OMP_NUM_THREADS=1 python benchmarks/peers.py --problems sharp_8:std=0.002-vp ring12w-vp \
        sharp_8:std=0.002-ve ring12w-ve --seeds 5 --nfe 5 10 20 --only ...

Quick look: ``python benchmarks/peers.py --n 2000 --seeds 1 --nfe 10 20``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sharp import EXTRA_TARGETS, make_target
from torch import Tensor

import scoresde as sd
import solvers
from scoresde import compare, metrics
from scoresde.interop.kdiffusion import load_k_diffusion_sampling
from scoresde.quality import CombinedMetric, within_mode_spread
from solvers.edm import time_from_edm_sigma
from solvers.utils import batch_time

Sampler = Callable[["Problem", int, int], tuple[Tensor, int]]
"""``(problem, nfe_budget, seed) -> (samples at eps or 0, NFE actually used)``."""


# --- problems --------------------------------------------------------------------------------
@dataclass
class Problem:
    """An exact target under an SDE, with the shared start ``x_T`` and reference samples."""

    name: str
    target: sd.GaussianMixture
    sde: sd.AffineSDE
    n: int
    x_T: dict[int, Tensor] = field(default_factory=dict)
    bandwidths: tuple[float, ...] = ()

    @property
    def score(self) -> solvers.ScoreFn:
        return self.target.score_fn(self.sde)

    def start(self, seed: int) -> Tensor:
        if seed not in self.x_T:
            g = torch.Generator().manual_seed(10_000 + seed)
            self.x_T[seed] = self.target.sample_marginal(self.n, self.sde, self.sde.T, generator=g)
        return self.x_T[seed].clone()

    def reference(self, seed: int) -> Tensor:
        """Exact samples of ``p_0`` (the SW2 / MMD table's reference for run ``seed``)."""
        g = torch.Generator().manual_seed(20_000 + seed)
        return self.target.sample(self.n, generator=g)

    def sigma_edm(self, t: float) -> float:
        alpha, sigma = self.sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64))
        return float(sigma[0] / alpha[0])


NAMED_PROBLEMS = {
    "8gauss-vp": ("eight_gaussians", "vp"),
    "8gauss-ve": ("eight_gaussians", "ve"),
    "hd16-vp": ("high_dim_16", "vp"),
    "hd16-ve": ("high_dim_16", "ve"),
}
"""Short names of the broad problems; any other problem is ``<target>-<vp|subvp|ve>``."""


def parse_problem(name: str) -> tuple[str, str]:
    """``(target, sde)`` of a problem name: a short name, or ``<target>-<sde>`` where ``target`` is
    anything `sharp.make_target` builds (a preset, ``sharp_8:std=0.002``, ``ring12w``, ...)."""
    if name in NAMED_PROBLEMS:
        return NAMED_PROBLEMS[name]
    target, _, sde_name = name.rpartition("-")
    if sde_name not in ("vp", "subvp", "ve") or not target:
        raise argparse.ArgumentTypeError(
            f"problem {name!r}: use <target>-<vp|subvp|ve> (e.g. sharp_8-vp, sharp_8:std=0.002-vp, "
            f"ring12w-ve) or one of {', '.join(NAMED_PROBLEMS)}"
        )
    try:
        make_target(target)
    except (KeyError, ValueError) as err:
        raise argparse.ArgumentTypeError(
            f"problem {name!r}: {err}; or one of benchmarks/sharp.py's {', '.join(EXTRA_TARGETS)} "
            "(sharp_8 / sharp_25 also take ':std=<float>')"
        ) from None
    return target, sde_name


def _problem_name(name: str) -> str:
    parse_problem(name)  # argparse turns its ArgumentTypeError into a usage message
    return name


def make_problems(n: int, names: list[str]) -> list[Problem]:
    out = []
    for name in names:
        tname, sname = parse_problem(name)
        out.append(Problem(name, make_target(tname), sd.get_sde(sname), n))
    return out


# --- reference row ---------------------------------------------------------------------------
EXACT_ROW = "exact samples of p_0"


def exact_p0(p: Problem, budget: int, seed: int) -> tuple[Tensor, int]:
    """Fresh exact samples of ``p_0`` (seeded apart from the metric's references), at no NFE: the
    row every sampler is read against, since exact samples themselves score above 1."""
    return p.target.sample(p.n, generator=torch.Generator().manual_seed(50_000 + seed)), 0


# --- ours ------------------------------------------------------------------------------------
def ours(solver: str | solvers.Solver, nfe_per_step: int, **kw: object) -> Sampler:
    """One of our solvers with its defaults (end-of-run step included) at the most steps whose
    NFE fits the budget."""

    def run(p: Problem, budget: int, seed: int) -> tuple[Tensor, int]:
        steps = max(1, (budget - 1) // nfe_per_step)
        while True:  # the largest step count whose NFE (end-of-run step included) fits the budget
            r = solvers.sample(p.sde, p.score, solver=solver, steps=steps, x_T=p.start(seed), seed=seed, **kw)
            if r.nfe <= budget:
                return r.samples, r.nfe
            if steps == 1:  # one step already costs more: no cell at this budget (as for the peers)
                raise NotImplementedError(f"one step costs {r.nfe} NFE > {budget}")
            steps -= max(1, (r.nfe - budget) // nfe_per_step)
            steps = max(1, steps)

    return run


OURS: dict[str, Sampler] = {
    "ddim": ours("ddim", 1),
    "dpm_solver_2": ours("dpm_solver_2", 2),
    "dpm_solver_3": ours("dpm_solver_3", 3),
    "dpmpp_2m": ours("dpmpp_2m", 1),
    "dpmpp_3m": ours("dpmpp_3m", 1),
    "unipc": ours("unipc", 1),
    "gaussian_2m": ours("gaussian_2m", 1),
    "gaussian_2m (long first step)": ours("gaussian_2m", 1, grid="logsnr_long_first"),
    "dpmpp_2m (quadratic)": ours("dpmpp_2m", 1, grid="quadratic"),
    # k-diffusion's sample_dpmpp_2m on its exponential grid, step for step: no lower-order last
    # step, and Tweedie's denoiser as the step to sigma = 0 (docs/fast_solvers.md, NFE 10).
    "dpmpp_2m (k-diffusion's end)": ours("dpmpp_2m", 1, lower_order_final=False, denoise="tweedie"),
    "dpmpp_2m (tweedie end)": ours("dpmpp_2m", 1, denoise="tweedie"),
    "unipc (quadratic)": ours("unipc", 1, grid="quadratic"),
    "edm_heun": ours("edm_heun", 2),
    "sde_dpmpp_2m": ours("sde_dpmpp_2m", 1),
    "sde_dpmpp_2m (quadratic)": ours("sde_dpmpp_2m", 1, grid="quadratic"),
    "sde_dpmpp_2m (uniform)": ours("sde_dpmpp_2m", 1, grid="uniform"),
    "gaussian_ancestral": ours("gaussian_ancestral", 1),
    "ancestral": ours("ancestral", 1),
    "euler_maruyama": ours("euler_maruyama", 1),
    "lms": ours("lms", 1),
}


# --- k-diffusion -------------------------------------------------------------------------------
# The loader lives in the library (scoresde.interop.kdiffusion.load_k_diffusion_sampling).


class EDMDenoiser:
    """``D(x_edm, sigma_edm)`` for k-diffusion: Tweedie of the exact score at ``t(sigma_edm)``."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.dyn = solvers.ProbabilityFlowODE(p.sde, p.score)
        self._t: dict[float, tuple[float, float]] = {}

    @property
    def nfe(self) -> int:
        return self.dyn.nfe

    def _time(self, s: float) -> tuple[float, float]:
        if s not in self._t:
            t = float(time_from_edm_sigma(self.p.sde, [s])[0])
            alpha, _ = self.p.sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64))
            self._t[s] = (t, float(alpha[0]))
        return self._t[s]

    def __call__(self, x_edm: Tensor, sigma: Tensor) -> Tensor:
        t, alpha = self._time(float(sigma[0]))
        return self.dyn.x0_pred(alpha * x_edm, batch_time(t, x_edm))


def k_diffusion_samplers(kd: types.ModuleType) -> dict[str, Sampler]:
    def make(fn_name: str, schedule: str, nfe_of_n: Callable[[int], int], **kw: object) -> Sampler:
        fn = getattr(kd, fn_name)

        def run(p: Problem, budget: int, seed: int) -> tuple[Tensor, int]:
            # Largest number of sigmas whose NFE fits the budget.
            fits = [m for m in range(1, budget + 2) if nfe_of_n(m) <= budget]
            if not fits:  # no cell at this budget: every schedule costs more
                raise NotImplementedError(f"{fn_name} needs more than {budget} NFE")
            n = max(fits)
            s_min, s_max = p.sigma_edm(p.sde.eps), p.sigma_edm(p.sde.T)
            if schedule == "karras":
                sigmas = kd.get_sigmas_karras(n, s_min, s_max, rho=7.0)
            else:
                sigmas = kd.get_sigmas_exponential(n, s_min, s_max)
            sigmas = sigmas.to(torch.get_default_dtype())
            model = EDMDenoiser(p)
            alpha_T, _ = p.sde.marginal_coeffs(torch.tensor([p.sde.T], dtype=torch.float64))
            x = p.start(seed) / float(alpha_T[0])
            torch.manual_seed(seed)
            extra = dict(kw)
            if fn_name.endswith("_sde"):
                extra["noise_sampler"] = kd.BrownianTreeNoiseSampler(x, s_min, s_max, seed=seed)
            out = fn(model, x, sigmas, disable=True, **extra)
            return out, model.nfe

        return run

    one = lambda n: n  # noqa: E731 - one evaluation per sigma step
    heun = lambda n: max(1, 2 * n - 1)  # noqa: E731 - Heun, Euler on the step to 0
    return {
        "kd dpmpp_2m (karras)": make("sample_dpmpp_2m", "karras", one),
        "kd dpmpp_2m (exp)": make("sample_dpmpp_2m", "exponential", one),
        "kd heun (karras)": make("sample_heun", "karras", heun),
        "kd lms (karras)": make("sample_lms", "karras", one),
        "kd dpmpp_2m_sde (karras)": make("sample_dpmpp_2m_sde", "karras", one),
        "kd dpmpp_3m_sde (karras)": make("sample_dpmpp_3m_sde", "karras", one),
    }


# --- diffusers ---------------------------------------------------------------------------------
def diffusers_samplers() -> dict[str, Sampler]:
    try:
        import diffusers
    except ImportError:
        return {}

    def make(cls_name: str, nfe_per_step: int = 1, **config: object) -> Sampler:
        cls = getattr(diffusers, cls_name)

        def run(p: Problem, budget: int, seed: int) -> tuple[Tensor, int]:
            if not isinstance(p.sde, sd.VPSDE):
                raise NotImplementedError("diffusers schedulers are discrete VP")
            # alphas_cumprod[k] = alpha(t_k)^2 at t_k = (k + 1)/1000.
            tk = torch.arange(1, 1001, dtype=torch.float64) / 1000.0
            abar = p.sde.alpha(tk) ** 2
            betas = 1.0 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
            sched = cls(num_train_timesteps=1000, trained_betas=betas.numpy(), **config)
            # Heun-type schedulers: 2 NFE per step, minus one on the final step to sigma = 0.
            steps = budget if nfe_per_step == 1 else max(1, (budget + 1) // 2)
            sched.set_timesteps(steps)
            if abs(float(sched.timesteps[0]) - 999.0) > 0.5:
                raise ValueError(f"{cls_name} starts at timestep {float(sched.timesteps[0])}, not at T")
            dyn = solvers.ProbabilityFlowODE(p.sde, p.score)
            x = p.start(seed) * float(sched.init_noise_sigma)
            gen = torch.Generator().manual_seed(seed)
            for ts in sched.timesteps:
                inp = sched.scale_model_input(x, ts)
                t = (float(ts) + 1.0) / 1000.0
                eps = dyn.noise_pred(inp, batch_time(t, inp))
                kwargs = {"generator": gen} if "generator" in sched.step.__code__.co_varnames else {}
                x = sched.step(eps, ts, x, **kwargs).prev_sample
            return x, dyn.nfe

        return run

    return {
        "df DPMSolverMultistep 2M": make("DPMSolverMultistepScheduler"),
        "df DPMSolverMultistep 3M": make("DPMSolverMultistepScheduler", solver_order=3),
        "df DPMSolverMultistep 2M karras": make("DPMSolverMultistepScheduler", use_karras_sigmas=True),
        "df DPMSolverMultistep SDE 2M": make("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++"),
        "df UniPCMultistep bh2": make("UniPCMultistepScheduler"),
        "df UniPCMultistep bh2 order3": make("UniPCMultistepScheduler", solver_order=3),
        "df DEISMultistep": make("DEISMultistepScheduler"),
        "df DDIM": make("DDIMScheduler", timestep_spacing="trailing", clip_sample=False),
        "df EulerDiscrete": make("EulerDiscreteScheduler"),
        "df EulerDiscrete karras": make("EulerDiscreteScheduler", use_karras_sigmas=True),
        "df HeunDiscrete": make("HeunDiscreteScheduler", nfe_per_step=2),
    }


# --- the sweep ---------------------------------------------------------------------------------
FLOOR_REPEATS = compare.DEFAULT_FLOOR_REPEATS
"""Pairs of exact sample sets behind each noise floor."""


@dataclass
class Cell:
    sw: list[float] = field(default_factory=list)
    mmd: list[float] = field(default_factory=list)
    combined: list[float] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)
    nfe: int = 0
    seconds: float = 0.0


def evaluate(
    problems: list[Problem], samplers: dict[str, Sampler], budgets: list[int], seeds: int, mmd_n: int
) -> tuple[dict[tuple[str, str, int], Cell], dict[str, tuple[float, float, float, float]]]:
    """Run every sampler at every budget; return cells and the per-problem noise floors."""
    cells: dict[tuple[str, str, int], Cell] = {}
    floors: dict[str, tuple[float, float, float, float]] = {}
    for p in problems:
        ref_fn = lambda n, g, p=p: p.target.sample(n, generator=g)  # noqa: E731
        a, b = ref_fn(p.n, torch.Generator().manual_seed(1)), ref_fn(p.n, torch.Generator().manual_seed(2))
        p.bandwidths = metrics.median_bandwidths(a, b)
        m = min(mmd_n, p.n)
        mmd = lambda x, y, p=p, m=m: metrics.mmd(x[:m], y[:m], bandwidths=p.bandwidths)  # noqa: E731
        # as many pairs as scoresde compare's floors (5 gave floors biased low, with bands too narrow)
        sw_m, sw_s = metrics.noise_floor(metrics.sliced_wasserstein, ref_fn, p.n, repeats=FLOOR_REPEATS)
        mm_m, mm_s = metrics.noise_floor(mmd, ref_fn, m, repeats=FLOOR_REPEATS)
        floors[p.name] = (sw_m, sw_s, mm_m, mm_s)
        refs = [p.reference(s) for s in range(seeds)]
        combined = CombinedMetric(p.target, p.n)
        exact0 = [combined.exact_reference(s) for s in range(seeds)]
        for name, fn in samplers.items():
            for budget in budgets:
                cell = Cell()
                for s in range(seeds):
                    start = time.perf_counter()
                    try:
                        out, nfe = fn(p, budget, s)
                    except NotImplementedError:
                        break
                    cell.seconds += time.perf_counter() - start
                    out = out.to(torch.float64)
                    y = refs[s].to(torch.float64)
                    ok = bool(torch.isfinite(out).all())
                    cell.sw.append(metrics.sliced_wasserstein(out, y) if ok else math.inf)
                    cell.mmd.append(mmd(out, y) if ok else math.inf)
                    cell.combined.append(combined(out, exact0[s]) if ok else math.inf)
                    cell.spread.append(within_mode_spread(out, p.target) if ok else math.inf)
                    cell.nfe = nfe
                if cell.sw:
                    cells[(p.name, name, budget)] = cell
            print(f"  done {p.name} {name}", file=sys.stderr, flush=True)
    return cells, floors


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def table(
    problems: list[Problem],
    samplers: list[str],
    budgets: list[int],
    cells: dict[tuple[str, str, int], Cell],
    floors: dict[str, tuple[float, float, float, float]],
) -> str:
    """Markdown: one block per problem, SW2 / MMD^2 x 1e3 per NFE budget (actual NFE in brackets)."""
    lines = []
    for p in problems:
        sw_m, sw_s, mm_m, mm_s = floors[p.name]
        lines.append(f"\n### {p.name} (noise floor SW2 {sw_m:.4f} ± {sw_s:.4f}, "
                     f"MMD² {1e3 * mm_m:.3f} ± {1e3 * mm_s:.3f} ×1e-3)\n")
        head = "| sampler | " + " | ".join(f"NFE {b}: SW2 / MMD²·1e3" for b in budgets) + " |"
        lines += [head, "|" + "---|" * (len(budgets) + 1)]
        for name in samplers:
            row = []
            have = False
            for b in budgets:
                c = cells.get((p.name, name, b))
                if c is None:
                    row.append("–")
                    continue
                have = True
                sw, mm = _mean(c.sw), _mean(c.mmd)
                row.append(f"{sw:.4f} / {1e3 * mm:.3f} [{c.nfe}]")
            if have:
                lines.append(f"| {name} | " + " | ".join(row) + " |")
        summary = []
        for b in budgets:
            parts = []
            for group, pred in (
                ("ours", lambda n: not n.startswith(("kd ", "df ")) and n != EXACT_ROW),
                ("k-diffusion", lambda n: n.startswith("kd ")),
                ("diffusers", lambda n: n.startswith("df ")),
            ):
                have = [n for n in samplers if (p.name, n, b) in cells and pred(n)]
                if have:
                    v, n = min((_mean(cells[(p.name, n, b)].sw), n) for n in have)
                    vm, nm = min((_mean(cells[(p.name, n, b)].mmd), n) for n in have)
                    parts.append(f"{group}: {n} {v:.4f} / {nm} {1e3 * vm:.3f}")
            summary.append(f"- NFE {b}, best SW2 / best MMD²·1e3 — " + "; ".join(parts))
        lines.append("")
        lines += summary
    return "\n".join(lines)


GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("ours", lambda n: not n.startswith(("kd ", "df ")) and n != EXACT_ROW),
    ("k-diffusion", lambda n: n.startswith("kd ")),
    ("diffusers", lambda n: n.startswith("df ")),
)


def combined_table(
    problems: list[Problem],
    samplers: list[str],
    budgets: list[int],
    cells: dict[tuple[str, str, int], Cell],
) -> str:
    """Markdown: median over seeds of the combined metric (1 = exact-sample level) per NFE budget.

    Each cell is ``combined (spread)`` with ``spread`` the mean within-mode spread (1 = exact);
    the summary lines give the best sampler of each group per budget.
    """
    lines = []
    for p in problems:
        lines.append(f"\n### {p.name}\n")
        lines += ["| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |", "|" + "---|" * (len(budgets) + 1)]
        for name in samplers:
            row = []
            for b in budgets:
                c = cells.get((p.name, name, b))
                row.append("–" if c is None else f"{statistics.median(c.combined):.2f} ({_mean(c.spread):.3f}) [{c.nfe}]")
            if any(r != "–" for r in row):
                lines.append(f"| {name} | " + " | ".join(row) + " |")
        lines.append("")
        for b in budgets:
            parts = []
            for group, pred in GROUPS:
                have = [n for n in samplers if (p.name, n, b) in cells and pred(n)]
                if have:
                    v, n = min((statistics.median(cells[(p.name, n, b)].combined), n) for n in have)
                    parts.append(f"{group}: {n} {v:.2f}")
            lines.append(f"- NFE {b}, best: " + "; ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per run (and per reference set)")
    ap.add_argument("--mmd-n", type=int, default=4000, help="points used for MMD (O(n^2) cost)")
    ap.add_argument("--seeds", type=int, default=5, help="independent runs per cell (median / mean over them)")
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20], help="NFE budgets")
    ap.add_argument(
        "--problems", nargs="+", default=[f"{t}-vp" for t in sd.targets.SHARP_TARGETS], type=_problem_name,
        help="<target>-<vp|subvp|ve> for any target benchmarks/sharp.py builds (sharp_8-vp, "
        "sharp_8:std=0.002-vp, ring12w-ve, aniso_64d-vp, ...), or " + ", ".join(NAMED_PROBLEMS),
    )
    ap.add_argument("--table", choices=["combined", "sw-mmd"], default="combined",
                    help="combined metric (5-seed median) or the SW2 / MMD^2 means, both against p_0")
    ap.add_argument("--only", nargs="*", default=None, help="run only samplers whose name contains one of these ('=name': exactly that name)")
    ap.add_argument("--no-peers", action="store_true", help="our solvers only")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    ap.add_argument("--no-exact-row", dest="exact_row", action="store_false",
                    help="skip the reference row of fresh exact samples of p_0")
    args = ap.parse_args(argv)

    samplers: dict[str, Sampler] = dict(OURS)
    if not args.no_peers:
        kd = load_k_diffusion_sampling()
        if kd is None:
            print("k-diffusion not installed: pip install --no-deps k-diffusion", file=sys.stderr)
        else:
            samplers.update(k_diffusion_samplers(kd))
        dfs = diffusers_samplers()
        if not dfs:
            print("diffusers not installed: pip install diffusers", file=sys.stderr)
        samplers.update(dfs)
    if args.only:
        samplers = {k: v for k, v in samplers.items()
                    if any(k == s[1:] if s.startswith("=") else s in k for s in args.only)}
    if args.exact_row:
        samplers = {EXACT_ROW: exact_p0, **samplers}

    problems = make_problems(args.n, args.problems)
    start = time.perf_counter()
    cells, floors = evaluate(problems, samplers, args.nfe, args.seeds, args.mmd_n)
    if args.table == "combined":
        text = combined_table(problems, list(samplers), args.nfe, cells)
    else:
        text = table(problems, list(samplers), args.nfe, cells, floors)
    text += f"\n\n(n = {args.n}, MMD on {min(args.mmd_n, args.n)} points, {args.seeds} seed(s) per cell, {time.perf_counter() - start:.0f} s)\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
