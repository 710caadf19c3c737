"""Do the solvers sample p_0 on sharp targets? Spread, mode weights and the combined metric.

Every run uses the exact mixture score through ``solvers.sample(sde, score, shape=...,
solver=name, steps=S, seed=s, **options)`` on the sharp presets (``scoresde.targets``:
mode std 1/20 to 1/30 of the distance between neighbouring modes) and reports, against
exact samples of ``p_0``:

* ``spread``: the within-mode spread ``sqrt(mean r^2 / D)`` (1 for exact samples;
  +2% means blurred by noise of std 0.2 x mode std, -2% over-sharpened), mean over seeds;
* ``combined``: the median over ``--seeds`` seeds (default 5) of ``scoresde.quality.CombinedMetric`` (worst of sliced W2,
  MMD, mode-weight TV and spread error, each over its exact-vs-exact floor; exact samples
  themselves score 1.1-2.6);
* ``nfe``: score evaluations actually counted.

Reproduce the tables in docs/defaults.md (about 20 minutes on one core)::

    OMP_NUM_THREADS=1 python benchmarks/sharp.py --n 2000 --seeds 5 --nfe 1000 --sdes vp subvp ve

One configuration: ``python benchmarks/sharp.py --solvers pc --options snr=0.01 --sdes vp``.
Sharper modes: ``--targets sharp_8:std=0.005`` (any ``sharp_8`` / ``sharp_25`` std); targets
outside the presets: ``--targets aniso_64d skewed_2d ring12w mix64d`` (`EXTRA_TARGETS`).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

import scoresde as sd
import solvers
from scoresde.quality import CombinedMetric, within_mode_spread

#: 2 NFE per step for these solvers, 3 for dpm_solver_3; adaptive ones run at their default tolerance.
NFE_PER_STEP: dict[str, int] = {
    "pc": 2,
    "annealed_langevin": 1,
    "dpm_solver_2": 2,
    "dpm_solver_3": 3,
    "edm_heun": 2,
    "ode_heun": 2,
    "ode_rk4": 4,
    "torchsde_milstein": 1,
    "torchsde_srk": 2,
    "torchsde_midpoint": 2,
    "torchsde_reversible_heun": 1,
}
ADAPTIVE = {"ode_rk45", "ode_dop853", "ode_dopri5", "ode_bosh3", "adaptive_sde"}

_METRICS: dict[tuple[str, int], CombinedMetric] = {}


def aniso_64d() -> sd.GaussianMixture:
    """8 modes in 64-D (means 3 N(0, I), nearest pair 27 apart), weights 1 ... 8, diagonal stds
    log-uniform in [0.005, 0.2]: within a mode the std varies 40-fold, and a fifth of the
    directions are narrower than the noise left at the VP SDE's ``eps`` (0.0105)."""
    g = torch.Generator().manual_seed(7)
    k, d = 8, 64
    means = 3 * torch.randn(k, d, generator=g, dtype=torch.float64)
    log_std = math.log(0.005) + math.log(0.2 / 0.005) * torch.rand(k, d, generator=g, dtype=torch.float64)
    return sd.GaussianMixture(means, log_std.exp(), torch.arange(1.0, k + 1, dtype=torch.float64), name="aniso_64d")


def skewed_2d() -> sd.GaussianMixture:
    """Two 2-D modes 4 apart with weights 0.02 / 0.98: a narrow anisotropic minor mode (stds 0.03,
    0.01) next to a broad major one (std 0.3)."""
    return sd.GaussianMixture([[-2.0, 0.0], [2.0, 0.5]], [[0.03, 0.01], [0.3, 0.3]], [0.02, 0.98], name="skewed_2d")


def ring12w() -> sd.GaussianMixture:
    """12 modes on a circle of radius 3 (neighbours 1.55 apart), std 0.02 (1/78 of the spacing),
    weights 1 ... 12."""
    k = 12
    angle = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = 3 * torch.stack([angle.cos(), angle.sin()], 1)
    return sd.GaussianMixture(means, 0.02, torch.arange(1.0, k + 1, dtype=torch.float64), name="ring12w")


def mix64d() -> sd.GaussianMixture:
    """5 isotropic modes in 64-D (means 2 N(0, I)), stds 0.02-0.1, weights 0.05-0.4: in 64-D the
    within-mode spread of 2,000 samples resolves a width error of about 0.2%."""
    g = torch.Generator().manual_seed(5)
    means = 2 * torch.randn(5, 64, generator=g, dtype=torch.float64)
    std = torch.tensor([0.02, 0.05, 0.03, 0.1, 0.04], dtype=torch.float64)
    weights = torch.tensor([0.05, 0.3, 0.15, 0.1, 0.4], dtype=torch.float64)
    return sd.GaussianMixture(means, std, weights, name="mix64d")


EXTRA_TARGETS: dict[str, Callable[[], sd.GaussianMixture]] = {
    "aniso_64d": aniso_64d,
    "mix64d": mix64d,
    "skewed_2d": skewed_2d,
    "ring12w": ring12w,
}


def make_target(name: str) -> sd.GaussianMixture:
    """A preset by name (or one of `EXTRA_TARGETS`); ``"sharp_8:std=0.005"`` rebuilds a preset
    with another mode std."""
    base, _, option = name.partition(":")
    if not option:
        return EXTRA_TARGETS[base]() if base in EXTRA_TARGETS else sd.targets.get_target(base)
    key, _, value = option.partition("=")
    if key != "std" or base not in ("sharp_8", "sharp_25"):
        raise ValueError(f"unknown target {name!r}: only sharp_8 / sharp_25 take ':std=<float>'")
    factory = {"sharp_8": sd.targets.sharp_8, "sharp_25": sd.targets.sharp_25}[base]
    return factory(std=float(value))


def metric_for(target: str, n: int) -> CombinedMetric:
    """The combined metric of ``target`` at sample size ``n`` (floors computed once)."""
    if (target, n) not in _METRICS:
        _METRICS[(target, n)] = CombinedMetric(make_target(target), n)
    return _METRICS[(target, n)]


def steps_for(solver: str, nfe: int) -> int:
    """Grid steps whose NFE is about ``nfe`` for a registered solver."""
    return max(1, nfe // NFE_PER_STEP.get(solver, 1))


def make_sde(name: str) -> object:
    """An SDE by name: ``vp``, ``subvp``, ``ve``, ``cosine`` (`scoresde.get_sde`) or ``edm`` (`scoresde.EDMSDE`)."""
    return sd.EDMSDE() if name == "edm" else sd.get_sde(name)


def end_cost(sde: object, mix: sd.GaussianMixture, solver: str, steps: int, **options: object) -> int:
    """Evaluations a run of ``solver`` with ``steps`` grid steps spends outside them (the end-of-run
    step: 1, or 2 with its probe after a short noisy last step), read off a run on two samples."""
    with warnings.catch_warnings():  # the run's own warnings come with the real run
        warnings.simplefilter("ignore")
        r = solvers.sample(sde, mix.score_fn(sde), shape=(2, mix.dim), solver=solver, steps=steps, seed=0,
                           **options)
    return max(0, r.nfe - steps * NFE_PER_STEP.get(solver, 1))


def run_cell(
    target: str,
    sde_name: str,
    solver: str,
    nfe: int,
    *,
    n: int,
    seeds: Sequence[int],
    sampler: Callable[..., Tensor] | None = None,
    final: str | None = None,
    **options: object,
) -> dict[str, float]:
    """Sample ``n`` points per seed; return spread, mode TV to the weights, combined median, NFE."""
    mix = make_target(target)
    sde = make_sde(sde_name)
    metric = metric_for(target, n)
    combined, spreads, tvs, nfes = [], [], [], []
    start = time.perf_counter()
    for s in seeds:
        if sampler is not None:
            x, used = sampler(sde, mix, nfe, n, s, **options)
        else:
            kw = dict(options)
            steps = 1  # adaptive solvers: their default tolerances; the NFE column says what it cost
            if final is not None:
                kw["denoise"] = final
            if solver not in ADAPTIVE:  # the end-of-run step's evaluations come out of the budget
                guess = steps_for(solver, nfe - 1)
                steps = steps_for(solver, nfe - end_cost(sde, mix, solver, guess, **kw))
            r = solvers.sample(sde, mix.score_fn(sde), shape=(n, mix.dim), solver=solver, steps=steps, seed=s, **kw)
            x, used = r.samples, r.nfe
        x = x.to(torch.float64)
        combined.append(metric(x, metric.exact_reference(s)))
        spreads.append(within_mode_spread(x, mix) if bool(torch.isfinite(x).all()) else float("inf"))
        freq = torch.bincount(mix.responsibilities(x).argmax(1), minlength=mix.n_components) / n
        tvs.append(0.5 * float((freq.to(torch.float64) - mix.weights).abs().sum()))
        nfes.append(used)
    return {
        "combined": statistics.median(combined),
        "spread": statistics.fmean(spreads),
        "mode_tv": statistics.fmean(tvs),
        "nfe": statistics.fmean(nfes),
        "seconds": time.perf_counter() - start,
    }


def exact_sampler(sde: object, mix: sd.GaussianMixture, nfe: int, n: int, seed: int) -> tuple[Tensor, int]:
    """Fresh exact samples of ``p_0`` (seeded apart from the metric's reference): the row every
    solver is read against, since exact samples themselves score 1.1-2.6 on the combined metric."""
    return mix.sample(n, generator=torch.Generator().manual_seed(50_000 + seed)), 0


def _parse_options(items: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = float(value) if any(c in value for c in ".e") else int(value)
        except ValueError:
            out[key] = {"True": True, "False": False}.get(value, value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solvers", nargs="*", default=None, help="solver names (default: all)")
    ap.add_argument("--targets", nargs="*", default=list(sd.targets.SHARP_TARGETS))
    ap.add_argument("--sdes", nargs="*", default=["vp"])
    ap.add_argument("--nfe", nargs="*", type=int, default=[1000])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--options", nargs="*", default=[], help="solver / sample options key=value")
    ap.add_argument("--final", choices=["none", "tweedie", "ode"], default=None,
                    help="sample(denoise=...): the end-of-run step (default: the solver's, 'ode')")
    ap.add_argument("--no-exact-row", dest="exact_row", action="store_false",
                    help="skip the reference row of fresh exact samples per target and SDE")
    args = ap.parse_args(argv)
    names = args.solvers or solvers.available()
    opts = _parse_options(args.options)
    print(f"| target | SDE | solver | NFE | spread | mode TV | combined ({args.seeds}-seed median) |")
    print("|---|---|---|---|---|---|---|")
    for target in args.targets:
        for sde_name in args.sdes:
            if args.exact_row:
                c = run_cell(target, sde_name, "exact", 0, n=args.n, seeds=range(args.seeds), sampler=exact_sampler)
                print(f"| {target} | {sde_name} | exact samples of p_0 | 0 | {c['spread']:.4f} | "
                      f"{c['mode_tv']:.4f} | {c['combined']:.2f} |", flush=True)
            for name in names:
                for nfe in args.nfe:
                    try:
                        c = run_cell(target, sde_name, name, nfe, n=args.n, seeds=range(args.seeds), final=args.final, **opts)
                    except (TypeError, ValueError) as err:
                        print(f"| {target} | {sde_name} | {name} | {nfe} | error: {err} | | |")
                        continue
                    print(
                        f"| {target} | {sde_name} | {name} | {c['nfe']:.0f} | {c['spread']:.4f} | "
                        f"{c['mode_tv']:.4f} | {c['combined']:.2f} |",
                        flush=True,
                    )
                    print(f"  ({c['seconds']:.1f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
