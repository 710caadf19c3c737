"""Experiment: skip the high-noise part of sampling with the data's Gaussian approximation (not shipped).

While the noise level ``S = sigma/alpha`` is large against the data's scale, the noised
marginal is close to the Gaussian ``N(m, C + S^2 I)`` (``m``, ``C``: the data's mean and
covariance), whose probability-flow ODE has a closed-form solution: in the EDM variables
``y = x/alpha``, ``y(S) - m = (C + S^2 I)^(1/2) (C + S_T^2 I)^(-1/2) (y(S_T) - m)``. Wang &
Vastola (2023, "The Hidden Linear Structure in Score-Based Models and its Application") use
this to start sampling at a lower noise level at no cost in score evaluations. Here the prior
samples are moved that way to ``S_skip = c * sqrt(lambda_max(C))`` and the solver runs its
whole budget on a log-SNR grid from ``S_skip`` to ``eps`` (end step included), against the
solver's default run at the same NFE. ``m`` and ``C`` are the target's exact moments (an
upper bound on what a model that stores them could do).

What it measures (docs/fast_solvers.md, "Tried: a Gaussian first phase"): the peers script's
targets, ``x_T`` and combined metric, 5-seed medians::

    OMP_NUM_THREADS=1 python benchmarks/gaussian_skip.py --problems sharp_8-vp sharp_25-vp \
        sharp_32d-vp --c 1 2 4                                        # ~8 min on one core

``--jump`` replaces the Gaussian flow by the solver's own first step from ``T`` to ``S_skip``
(one evaluation; ``--absolute``: ``S_skip = c`` whatever the data's scale).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (the benchmark next to this file)

import solvers  # noqa: E402
from solvers.marginals import edm_sigma, time_from_edm_sigma  # noqa: E402


def gaussian_flow(p: peers.Problem, x_T: Tensor, s_skip: float) -> tuple[Tensor, float]:
    """``x_T`` at ``T`` moved by the probability-flow ODE of ``N(m, C)`` data to the time whose
    ``sigma/alpha`` is ``s_skip``; returns ``(x, t_skip)``."""
    sde = p.sde
    m, cov = p.target.mean(), p.target.covariance()
    ends = torch.tensor([sde.T], dtype=torch.float64)
    a_T, sig_T = sde.marginal_coeffs(ends)
    s_T = float(sig_T[0] / a_T[0])
    t_skip = float(time_from_edm_sigma(sde, torch.tensor([s_skip], dtype=torch.float64))[0])
    a_skip, _ = sde.marginal_coeffs(torch.tensor([t_skip], dtype=torch.float64))
    evals, vecs = torch.linalg.eigh(cov)
    ratio = ((evals + s_skip**2) / (evals + s_T**2)).sqrt()
    z = (x_T.to(torch.float64) / float(a_T[0]) - m) @ vecs
    y = m + (z * ratio) @ vecs.T
    return y * float(a_skip[0]), t_skip


def skipped(solver: str, c: float) -> peers.Sampler:
    """``solver`` on a log-SNR grid from ``c`` data stds down to ``eps``, after the Gaussian flow."""

    def run(p: peers.Problem, budget: int, seed: int) -> tuple[Tensor, int]:
        scale = math.sqrt(float(torch.linalg.eigvalsh(p.target.covariance()).max()))
        x, _ = gaussian_flow(p, p.start(seed), c * scale)
        steps = max(1, budget - 1)  # one score evaluation per step, one for the end step
        s_eps = float(edm_sigma(p.sde, torch.tensor([p.sde.eps], dtype=torch.float64))[0])
        u = torch.linspace(math.log(c * scale), math.log(s_eps), steps + 1, dtype=torch.float64)
        ts = time_from_edm_sigma(p.sde, u.exp())
        ts[-1] = p.sde.eps
        r = solvers.sample(p.sde, p.score, solver=solver, steps=steps, grid=ts, x_T=x, seed=seed)
        return r.samples, r.nfe

    return run


def jumped(solver: str, c: float, absolute: bool = False) -> peers.Sampler:
    """``solver``'s own first step from ``T`` straight to ``c`` data stds (one evaluation, no
    Gaussian flow), then a log-SNR grid down to ``eps``: the same budget moved from the
    high-noise stretch to the rest, without knowing ``m`` and ``C`` beyond the data scale
    (``absolute``: not even that; ``c`` is ``sigma/alpha`` itself)."""

    def run(p: peers.Problem, budget: int, seed: int) -> tuple[Tensor, int]:
        scale = 1.0 if absolute else math.sqrt(float(torch.linalg.eigvalsh(p.target.covariance()).max()))
        steps = max(2, budget - 1)
        s_eps = float(edm_sigma(p.sde, torch.tensor([p.sde.eps], dtype=torch.float64))[0])
        u = torch.linspace(math.log(c * scale), math.log(s_eps), steps, dtype=torch.float64)
        ts = torch.cat([torch.tensor([p.sde.T], dtype=torch.float64), time_from_edm_sigma(p.sde, u.exp())])
        ts[-1] = p.sde.eps
        r = solvers.sample(p.sde, p.score, solver=solver, steps=steps, grid=ts, x_T=p.start(seed), seed=seed)
        return r.samples, r.nfe

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["sharp_8-vp", "sharp_25-vp", "sharp_32d-vp"])
    ap.add_argument("--solvers", nargs="+", default=["dpmpp_2m", "gaussian_2m", "unipc"])
    ap.add_argument("--c", nargs="+", type=float, default=[1.0, 2.0, 4.0], help="S_skip in data stds")
    ap.add_argument("--jump", action="store_true",
                    help="instead of the Gaussian flow, the solver's own first step from T to S_skip")
    ap.add_argument("--absolute", action="store_true", help="with --jump: --c is sigma/alpha, not data stds")
    ap.add_argument("--nfe", nargs="+", type=int, default=[5, 10, 20])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    problems = peers.make_problems(args.n, args.problems)
    samplers: dict[str, peers.Sampler] = {s: peers.OURS[s] for s in args.solvers}
    for c in args.c:
        if args.jump:
            unit = "" if args.absolute else " std"
            samplers.update({f"{s}, first step to {c:g}{unit}": jumped(s, c, args.absolute) for s in args.solvers})
        else:
            samplers.update({f"{s}, Gaussian flow to {c:g} std": skipped(s, c) for s in args.solvers})
    cells, _ = peers.evaluate(problems, samplers, args.nfe, args.seeds, args.n)
    print(peers.combined_table(problems, list(samplers), args.nfe, cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
