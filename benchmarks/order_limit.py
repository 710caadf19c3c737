"""Experiment: a per-sample order test for the third-order multistep solvers (not shipped).

``dpmpp_3m`` and ``unipc`` are not monotone in NFE on sharp data (docs/defaults.md, "Between
those budgets"). Variable-order Adams codes lower the order when the higher-order term of
the expansion stops decreasing (Shampine & Gordon 1975, "Computer Solution of Ordinary
Differential Equations", ch. 5). Applied per sample to one step's results at orders 1, 2, 3
(``x1, x2, x3``; for ``unipc`` the order-1 step, the 2M predictor and the corrected step)::

    keep x3 where |x3 - x2| <= theta |x2 - x1|, else x2

This script runs that rule at ``theta`` on the peers script's sharp targets (combined metric,
median over seeds, end step included) and on a single Gaussian, where the exact
probability-flow map is closed-form, as the maximum error over 8 trajectories::

    OMP_NUM_THREADS=1 python benchmarks/order_limit.py --problems sharp_8-vp sharp_25-vp \
        sharp_32d-vp --theta 0.5 --nfe 8 10 12 14 16 20 25 30 40 --seeds 3     # ~6 min

Findings: docs/defaults.md, "Tried: third order only where its term is small".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (the benchmark next to this file)

import scoresde as sd  # noqa: E402
import solvers  # noqa: E402
from solvers.base import SolveContext  # noqa: E402
from solvers.dynamics import ReverseDynamics  # noqa: E402
from solvers.exponential import phi_data, phi_weights  # noqa: E402


def per_sample_norm(v: Tensor) -> Tensor:
    """``(B, *dims) -> (B, 1, ..., 1)``: each sample's Euclidean norm."""
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1).reshape(
        -1, *([1] * (v.dim() - 1))
    )


def limit(x1: Tensor, x2: Tensor, x3: Tensor, theta: float) -> Tensor:
    """``x3`` where ``|x3 - x2| <= theta |x2 - x1|`` (per sample), else ``x2``."""
    return torch.where(per_sample_norm(x3 - x2) <= theta * per_sample_norm(x2 - x1), x3, x2)


class LimitedDPMSolverPP3M(solvers.DPMSolverPP3M):
    """`solvers.DPMSolverPP3M` whose third-order steps fall back to 2M per sample (`limit`)."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = theta

    def step(
        self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext
    ) -> Tensor:
        i, tab = ctx.index, self.schedule(ctx)
        k = self.step_order(i, ctx.n_steps)
        if k < 3:
            return super().step(dynamics, x, t, t_next, ctx)
        a_t, h = tab.alpha[i + 1], tab.log_snr[i + 1] - tab.log_snr[i]
        d = dynamics.x0_at(x, t)
        hist = self.remember(ctx, d)
        x_lin = (tab.sigma[i + 1] / tab.sigma[i]) * x
        r0 = (tab.log_snr[i] - tab.log_snr[i - 1]) / h
        r1 = (tab.log_snr[i - 1] - tab.log_snr[i - 2]) / h
        d1_0, d1_1 = (d - hist[-2]) / r0, (hist[-2] - hist[-3]) / r1
        diff = (d1_0 - d1_1) / (r0 + r1)
        x1 = x_lin + (a_t * phi_data(h, 1)) * d
        x2 = x_lin + (a_t * phi_data(h, 1)) * (d + 0.5 * d1_0)
        x3 = x1 + (a_t * phi_data(h, 2)) * (d1_0 + r0 * diff) + (2.0 * a_t * phi_data(h, 3)) * diff
        return limit(x1, x2, x3, self.theta)


class LimitedUniPC(solvers.UniPC):
    """`solvers.UniPC` whose corrector is kept per sample only where `limit` allows."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = theta

    def step(
        self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext
    ) -> Tensor:
        i, tab = ctx.index, self.schedule(ctx)
        a_t, h = tab.alpha[i + 1], tab.log_snr[i + 1] - tab.log_snr[i]
        d = ctx.memory.pop("d_next", None)
        if d is None:
            d = dynamics.x0_at(x, t)
        hist = self.remember(ctx, d)
        x_lin = (tab.sigma[i + 1] / tab.sigma[i]) * x
        k = self.step_order(i, ctx.n_steps)
        x1 = x_lin + (a_t * phi_data(h, 1)) * d
        x_pred = x1
        if k > 1:
            r0 = (tab.log_snr[i] - tab.log_snr[i - 1]) / h
            x_pred = x_lin + (a_t * phi_data(h, 1)) * (d + (0.5 / r0) * (d - hist[-2]))
        if ctx.is_last:
            return x_pred
        d_next = dynamics.x0_at(x_pred, t_next)
        ctx.memory["d_next"] = d_next
        past = hist[-k:]
        nodes = [tab.log_snr[i - len(past) + 1 + j] - tab.log_snr[i] for j in range(len(past))] + [
            h
        ]
        x_corr = x_lin
        for wj, dj in zip(phi_weights(nodes, h), [*past, d_next], strict=True):
            x_corr = x_corr + (a_t * wj) * dj
        return x_corr if k == 1 else limit(x1, x_pred, x_corr, self.theta)


def single_gaussian_errors(theta: float, steps: list[int]) -> None:
    """Max error over 8 trajectories against the exact PF-ODE map of ``N(mu, diag(s^2))``."""
    mu = torch.tensor([[1.0, -0.5, 2.0]], dtype=torch.float64)
    std = torch.tensor([[0.5, 0.3, 0.8]], dtype=torch.float64)
    gauss = sd.GaussianMixture(mu, std)
    pairs = [
        ("dpmpp_3m", solvers.DPMSolverPP3M()),
        (f"dpmpp_3m theta={theta:g}", LimitedDPMSolverPP3M(theta)),
        ("unipc", solvers.UniPC()),
        (f"unipc theta={theta:g}", LimitedUniPC(theta)),
        ("dpmpp_2m", solvers.DPMSolverPP2M()),
    ]
    for sde in (sd.VPSDE(), sd.VESDE()):
        x_T = gauss.sample_marginal(
            8, sde, sde.T, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        ts = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
        (a0, a1), (s0, s1) = sde.marginal_coeffs(ts)
        v0, v1 = a0**2 * std**2 + s0**2, a1**2 * std**2 + s1**2
        exact = a1 * mu + torch.sqrt(v1 / v0) * (x_T - a0 * mu)
        print(f"\nsingle Gaussian, {type(sde).__name__}: max error at {steps} log-SNR steps")
        for name, solver in pairs:
            errs = []
            for n in steps:
                ode = solvers.ProbabilityFlowODE(sde, gauss.score_fn(sde))
                out = solver.solve(ode, x_T.clone(), solvers.grids.logsnr(sde, n)).samples
                errs.append(f"{float((out - exact).abs().max()):.2e}")
            print(f"  {name:22s}", "  ".join(errs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["sharp_8-vp", "sharp_25-vp", "sharp_32d-vp"])
    ap.add_argument("--theta", type=float, default=0.5)
    ap.add_argument("--nfe", nargs="+", type=int, default=[8, 10, 12, 14, 16, 20, 25, 30, 40])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--gaussian-steps", nargs="+", type=int, default=[12, 24, 48, 96])
    args = ap.parse_args(argv)
    single_gaussian_errors(args.theta, args.gaussian_steps)
    torch.set_default_dtype(torch.float64)
    problems = peers.make_problems(args.n, args.problems)
    samplers: dict[str, peers.Sampler] = {
        "dpmpp_3m": peers.OURS["dpmpp_3m"],
        f"dpmpp_3m theta={args.theta:g}": peers.ours(LimitedDPMSolverPP3M(args.theta), 1),
        "unipc": peers.OURS["unipc"],
        f"unipc theta={args.theta:g}": peers.ours(LimitedUniPC(args.theta), 1),
    }
    cells, _ = peers.evaluate(problems, samplers, args.nfe, args.seeds, args.n)
    print(peers.combined_table(problems, list(samplers), args.nfe, cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
