"""Experiment: a per-solver time grid optimised against an accurate pilot solve (not shipped).

For one solver, target and step count: draw ``--pilot`` prior samples, solve the
probability-flow ODE for them accurately (``ode_dopri5`` at ``rtol = atol = 1e-7``), then
optimise the grid's log-noise-level increments (``u = ln(sigma/alpha)``, softmax-normalised so
that the grid stays decreasing from ``T`` to ``eps``) with Powell's method to minimise the
solver's mean squared per-sample error against that solve at ``eps``, starting from the
solver's default grid. The optimised grid is then scored on fresh runs (the combined metric of
``scoresde.quality.CombinedMetric``, 5-seed median, the peers script's ``x_T``) next to the
default grid, and the per-sample error is measured on a held-out prior batch.

This is the "schedule optimised once per model and SDE" idea (as in Sabour et al. 2024,
"Align Your Steps", with a different objective). Findings in docs/fast_solvers.md
(``grid="auto"``): the per-sample error trades mode flips (large error, harmless for the
distribution) for samples stranded between modes (smaller error, harmful), so the grids it
finds help the multistep solvers a lot on some targets and hurt others.

    OMP_NUM_THREADS=1 python benchmarks/grid_optimization.py --target sharp_25 --solver unipc --nfe 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy.optimize import minimize

import scoresde as sd
import solvers
from scoresde.quality import CombinedMetric
from solvers.marginals import edm_sigma, time_from_edm_sigma


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="sharp_25")
    ap.add_argument("--sde", default="vp")
    ap.add_argument("--solver", default="unipc", help="a deterministic solver with 1 NFE per step")
    ap.add_argument("--nfe", type=int, default=10, help="budget, the end-of-run step included")
    ap.add_argument("--pilot", type=int, default=256)
    ap.add_argument("--maxfev", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--objective", choices=["own", "flip-tolerant"], default="own",
                    help="own: squared error to each sample's own accurate solution; flip-tolerant: "
                    "the smaller of that and the squared distance to the nearest accurate solution of "
                    "any pilot sample (a sample that lands in another mode is not penalised)")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)

    sde = sd.get_sde(args.sde)
    target = sd.targets.get_target(args.target)
    score = target.score_fn(sde)
    steps = args.nfe - 1
    default_grid = solvers.SOLVERS[args.solver].factory().grid_for(sde)
    ts0 = solvers.grids.get_grid(default_grid)(sde, steps)
    u0 = edm_sigma(sde, ts0).log().numpy()
    alpha_eps = float(sde.marginal_coeffs(torch.tensor([sde.eps]))[0][0])

    def grid_of(z: np.ndarray) -> torch.Tensor:
        w = np.exp(z - z.max())
        u = u0[0] + (u0[-1] - u0[0]) * np.concatenate([[0.0], np.cumsum(w / w.sum())])
        ts = time_from_edm_sigma(sde, torch.exp(torch.as_tensor(u)))
        ts[0], ts[-1] = sde.T, sde.eps
        return ts

    def reference(x_T: torch.Tensor) -> torch.Tensor:
        return solvers.sample(sde, score, solver="ode_dopri5", x_T=x_T, denoise="none", rtol=1e-7, atol=1e-7).samples

    def error(ts: torch.Tensor | None, x_T: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        out = solvers.sample(sde, score, solver=args.solver, steps=steps, grid=ts, x_T=x_T, denoise="none").samples
        own = ((out - ref) / alpha_eps).pow(2).sum(1)
        if args.objective == "own":
            return own
        nearest = torch.cdist(out / alpha_eps, ref / alpha_eps).min(dim=1).values.pow(2)
        return torch.minimum(own, nearest)

    x_p = sde.prior_sample((args.pilot, target.dim), generator=torch.Generator().manual_seed(999), dtype=torch.float64)
    ref_p = reference(x_p)

    def objective(z: np.ndarray) -> float:
        ts = grid_of(np.asarray(z))
        if not bool((ts[1:] < ts[:-1]).all()):
            return 1e9
        return float(error(ts, x_p, ref_p).mean())

    z0 = np.log(np.diff(u0) / (u0[-1] - u0[0]))
    start = time.perf_counter()
    res = minimize(objective, z0, method="Powell", options={"maxfev": args.maxfev, "xtol": 1e-3, "ftol": 1e-4})
    ts_opt = grid_of(res.x)
    print(f"{args.target} / {args.sde} / {args.solver} / NFE {args.nfe}: pilot error {objective(z0):.3e} -> "
          f"{res.fun:.3e} ({res.nfev} evaluations, {time.perf_counter() - start:.1f} s)")
    print("  optimised sigma/alpha:", " ".join(f"{float(v):.3g}" for v in edm_sigma(sde, ts_opt)))

    x_h = sde.prior_sample((args.n, target.dim), generator=torch.Generator().manual_seed(4242), dtype=torch.float64)
    ref_h = reference(x_h)
    metric = CombinedMetric(target, args.n)
    for label, grid in ((f"default ({default_grid})", None), ("optimised", ts_opt)):
        e = error(grid, x_h, ref_h)
        cells: list[dict[str, float]] = []
        for s in range(args.seeds):
            x_T = target.sample_marginal(args.n, sde, sde.T, generator=torch.Generator().manual_seed(10_000 + s))
            r = solvers.sample(sde, score, solver=args.solver, steps=steps, grid=grid, x_T=x_T, seed=s)
            cells.append(metric.ratios(r.samples, metric.exact_reference(s)))
        med = {k: statistics.median(c[k] for c in cells) for k in cells[0]}
        combined = statistics.median(max(c.values()) for c in cells)
        print(f"  {label:20s} held-out error {float(e.mean()):.2e} (median {float(e.median()):.1e}); combined "
              f"{combined:.2f}; " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))


if __name__ == "__main__":
    main()
