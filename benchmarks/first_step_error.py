"""Experiment: what one long first step from the prior costs with a trained network.

An exponential integrator's step is exact while the denoiser ``D = E[x_0 | x_t]`` does not
change, and with an exact score ``D`` hardly moves while ``S = sigma/alpha`` is far above the
data's scale. A trained network's ``D`` is another matter: ``D = y - S eps_hat`` in the EDM
variables (``y = x/alpha``), so a relative error ``delta`` of the noise prediction is an error
of about ``S delta |eps|`` in ``D``, largest at the prior (``S = 152`` under VP). A fine grid
averages that error over many evaluations whose errors differ; one long step from ``T``
carries the first evaluation's error whole.

Two measurements on a checkpoint (``scoresde train --data NAME --steps 2000 --out DIR``):

1. ``gaussian_2m`` on a grid whose first step goes from ``T`` straight to ``S = S_j`` and whose
   other 200 steps are uniform in log-SNR from there to ``eps``, against the 200-step log-SNR
   grid from ``T``: sliced W2 to fresh data draws, mean over seeds. With the data's exact score
   (``--exact``, built-in mixture toys only) the same grids.
2. With ``--exact`` too, the network's error in ``D`` at points drawn from the exact ``p_S``:
   RMS over points, and the relative error of ``sigma * score`` (the noise prediction).

``--budgets`` instead compares, at those NFE, ``gaussian_2m`` on its default grid, on
``grid="logsnr_long_first"``, and on that grid with a DDIM second step (so that no Gaussian
fit spans the long first interval): if the fit across the long interval were what hurts, the
last variant would recover the default grid's quality.

Reproduce (docs/defaults.md, "Tried: a long first step for gaussian_2m")::

    scoresde train --data swiss_roll --steps 2000 --out sr2
    scoresde train --data eight_gaussians --steps 2000 --out eg2
    OMP_NUM_THREADS=1 python benchmarks/first_step_error.py --checkpoint sr2
    OMP_NUM_THREADS=1 python benchmarks/first_step_error.py --checkpoint eg2 --exact
    OMP_NUM_THREADS=1 python benchmarks/first_step_error.py --checkpoint sr2 --budgets 6 8 10 14 20
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch
from torch import Tensor

import solvers
from scoresde.data import load_data
from scoresde.metrics import sliced_wasserstein
from scoresde.train.persist import load_model
from solvers.gaussian_multistep import GaussianMultistep
from solvers.grids import log_snr, time_from_log_snr


def jump_grid(sde: object, s_jump: float | None, n_fine: int) -> Tensor:
    """Times: ``T``, then ``n_fine`` steps uniform in log-SNR from ``S = s_jump`` (or from ``T``) to ``eps``."""
    top, bottom = log_snr(sde, torch.tensor([sde.T, sde.eps], dtype=torch.float64)).tolist()  # type: ignore[attr-defined]
    if s_jump is None:
        levels = torch.linspace(top, bottom, n_fine + 1, dtype=torch.float64)
    else:
        fine = torch.linspace(-math.log(s_jump), bottom, n_fine + 1, dtype=torch.float64)
        levels = torch.cat([torch.tensor([top], dtype=torch.float64), fine])
    grid = time_from_log_snr(sde, levels)
    grid[0], grid[-1] = sde.T, sde.eps  # type: ignore[attr-defined]
    return grid


def compare_variants(sde: object, score: object, ref: Tensor, budgets: list[int], seeds: int) -> None:
    """Sliced W2 of ``gaussian_2m`` at each NFE: default grid, long first step, long first step + DDIM second step."""
    default_order = GaussianMultistep.step_order

    def ddim_second(self: GaussianMultistep, index: int, n_steps: int) -> int:
        return 1 if index <= 1 else default_order(self, index, n_steps)

    print(f"gaussian_2m, sliced W2 to data, mean of {seeds} seeds, n = {ref.shape[0]}; NFE " + " ".join(map(str, budgets)))
    for variant in ["default grid", "logsnr_long_first", "long first + DDIM second"]:
        GaussianMultistep.step_order = ddim_second if variant.endswith("second") else default_order  # type: ignore[method-assign]
        options = {} if variant == "default grid" else {"grid": "logsnr_long_first"}
        row = []
        for nfe in budgets:  # the end step takes one evaluation
            sw = [float(sliced_wasserstein(solvers.sample(sde, score, (ref.shape[0], ref.shape[1]), solver="gaussian_2m",
                                                          steps=nfe - 1, seed=seed, **options).samples, ref))
                  for seed in range(seeds)]
            row.append(f"{sum(sw) / len(sw):.3f}")
        print(f"  {variant:26s} " + " ".join(row), flush=True)
    GaussianMultistep.step_order = default_order  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--exact", action="store_true", help="also the data's exact score (mixture toys)")
    parser.add_argument("--jumps", type=float, nargs="*", default=[40.0, 20.0, 11.0, 6.0])
    parser.add_argument("--fine", type=int, default=200)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="*", help="NFE: compare the long-first-step variants instead")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    model, sde, config = load_model(args.checkpoint)
    source = load_data(config.data)
    ref = source.sample(args.n, generator=torch.Generator().manual_seed(12345))
    scores = {"network": model.score_fn(sde)}
    mixture = getattr(source, "mixture", None)
    if args.exact:
        if mixture is None:
            raise SystemExit(f"--exact needs a built-in mixture toy; {config.data!r} has no exact score")
        scores["exact"] = mixture.score_fn(sde)
    if args.budgets:
        compare_variants(sde, scores["network"], ref, args.budgets, args.seeds)
        return
    print(f"{config.data}: gaussian_2m, first step T -> S_j then {args.fine} log-SNR steps; "
          f"sliced W2 to data, mean of {args.seeds} seeds, n = {args.n}")
    for name, score in scores.items():
        cells = []
        for s_jump in [None, *args.jumps]:
            grid = jump_grid(sde, s_jump, args.fine)
            sw = [float(sliced_wasserstein(solvers.sample(sde, score, (args.n, ref.shape[1]), solver="gaussian_2m",
                                                          grid=grid, seed=seed).samples, ref))
                  for seed in range(args.seeds)]
            cells.append(f"{'none' if s_jump is None else f'S_j={s_jump:g}'}: {sum(sw) / len(sw):.4f}")
        print(f"  {name:8s} " + "  ".join(cells), flush=True)
    if not args.exact:
        return
    assert mixture is not None
    print("network's D error at x ~ p_S (exact): RMS |D_net - D|, relative error of sigma * score")
    g = torch.Generator().manual_seed(0)
    x0 = mixture.sample(args.n, generator=g)
    for s_edm in [152.0, 80.0, 40.0, 20.0, 11.0, 6.0, 3.0, 1.0]:
        t = time_from_log_snr(sde, torch.tensor([-math.log(s_edm)], dtype=torch.float64)).clamp(sde.eps, sde.T)
        alpha, sigma = (float(c) for c in sde.marginal_coeffs(t))
        x = alpha * x0 + sigma * torch.randn(x0.shape, generator=g)
        tt = torch.full((x.shape[0],), float(t))
        with torch.no_grad():
            net, exact = scores["network"](x, tt), scores["exact"](x, tt)
        d_err = (sigma**2 / alpha) * (net - exact)
        rel = (sigma * (net - exact)).norm(dim=1).pow(2).mean().sqrt() / (sigma * exact).norm(dim=1).pow(2).mean().sqrt()
        print(f"  S = {sigma / alpha:7.2f}: RMS D error {d_err.norm(dim=1).pow(2).mean().sqrt():.4f}, "
              f"relative noise-prediction error {rel:.2e}")


if __name__ == "__main__":
    main()
