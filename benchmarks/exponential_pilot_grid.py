"""Experiment: a grid shaped by an adaptive exponential-integrator pilot (not shipped).

`solvers.auto_grid` shapes its grid by the steps of a Dormand-Prince pilot on
``dy/du = y - D`` (``u = ln S``). In the high-noise stretch that pilot takes steps of about
constant length in ``u`` (it integrates the growth ``y ~ S`` itself), while an exponential
integrator (DDIM, DPM-Solver++, UniPC) is exact there as long as ``D`` is nearly constant.
This pilot instead runs the pair DDIM / DPM-Solver++(2S) (midpoint, Lu et al. 2022b) in
``lambda = -ln S`` with step control on their difference,
``(1 - e^{-h}) (D(u_mid) - D(y))``, RMS over a pilot batch, mixed tolerance ``tol (1 + |y|)``;
its accepted steps are long where ``D`` hardly changes and short where the modes separate.
The grid equidistributes the step density ``1/h`` raised to ``gamma``, with a share ``mix``
spread uniformly in ``lambda`` (as `solvers.auto_grid`), and each solver runs its whole
budget on it, against its default grid at the same NFE.

Findings in docs/fast_solvers.md ("Tried: a pilot made of an exponential integrator")::

    OMP_NUM_THREADS=1 python benchmarks/exponential_pilot_grid.py --problems sharp_8-vp \
        sharp_25-vp sharp_32d-vp --nfe 5 10 20 50                     # ~15 min on one core
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
from solvers.grids import equidistribute  # noqa: E402
from solvers.marginals import edm_sigma, time_from_edm_sigma  # noqa: E402
from solvers.utils import batch_time  # noqa: E402

_PILOTS: dict[tuple[object, ...], Tensor] = {}


def pilot_nodes(p: peers.Problem, batch: int = 256, tol: float = 1e-3, seed: int = 0) -> Tensor:
    """Accepted nodes ``lambda_k = -ln S_k`` (increasing) of the adaptive DDIM / DPM-Solver++(2S) pilot."""
    key = (p.name, batch, tol, seed)
    if key in _PILOTS:
        return _PILOTS[key]
    sde = p.sde
    s_T, s_eps = edm_sigma(sde, torch.tensor([sde.T, sde.eps], dtype=torch.float64)).tolist()
    x_T = sde.prior_sample((batch, p.target.dim), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    a_T = float(sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))[0][0])
    dyn = solvers.ProbabilityFlowODE(sde, p.score)

    def denoise(y: Tensor, s: float) -> Tensor:
        t = float(time_from_edm_sigma(sde, [s])[0]) if s < s_T else sde.T
        alpha = float(sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64))[0][0])
        return dyn.x0_pred(alpha * y, batch_time(t, y))

    lam, lam_end, h = -math.log(s_T), -math.log(s_eps), 0.1
    y = x_T / a_T
    d_now = denoise(y, s_T)
    nodes = [lam]
    while lam < lam_end - 1e-12:
        h = min(h, lam_end - lam)
        e_full, e_half = math.exp(-h), math.exp(-h / 2)
        first = e_full * y + (1 - e_full) * d_now
        d_mid = denoise(e_half * y + (1 - e_half) * d_now, math.exp(-(lam + h / 2)))
        second = e_full * y + (1 - e_full) * d_mid
        scale = tol * (1 + torch.maximum(first.abs(), second.abs()))
        err = float(((second - first) / scale).pow(2).mean().sqrt())
        if err <= 1:
            lam, y = lam + h, second
            nodes.append(lam)
            if lam < lam_end - 1e-12:
                d_now = denoise(y, math.exp(-lam))
        h *= min(5.0, max(0.2, 0.9 * max(err, 1e-10) ** -0.5))
    _PILOTS[key] = torch.tensor(nodes, dtype=torch.float64)
    return _PILOTS[key]


def pilot_grid(p: peers.Problem, n: int, gamma: float, mix: float) -> Tensor:
    """``n + 1`` decreasing times from ``T`` to ``eps`` equidistributing the pilot's ``(1/h)^gamma``."""
    lam = pilot_nodes(p)
    h = lam.diff()
    mass = h * h.pow(-gamma)
    mass = (1 - mix) * mass / mass.sum() + mix * h / h.sum()
    ts = time_from_edm_sigma(p.sde, torch.exp(-equidistribute(lam, mass, n)))
    ts[0], ts[-1] = p.sde.T, p.sde.eps
    return ts


def on_pilot_grid(solver: str, gamma: float, mix: float, nfe_per_step: int) -> peers.Sampler:
    def run(p: peers.Problem, budget: int, seed: int) -> tuple[Tensor, int]:
        steps = max(1, (budget - 1) // nfe_per_step)
        r = solvers.sample(p.sde, p.score, solver=solver, steps=steps, grid=pilot_grid(p, steps, gamma, mix),
                           x_T=p.start(seed), seed=seed)
        return r.samples, r.nfe

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["sharp_8-vp", "sharp_25-vp", "sharp_32d-vp"])
    ap.add_argument("--solvers", nargs="+", default=["dpmpp_2m", "unipc", "gaussian_2m", "lms", "ddim", "dpm_solver_2"])
    ap.add_argument("--shapes", nargs="+", default=["1/0.1", "1/0.3", "0.5/0.1"], help="gamma/mix pairs")
    ap.add_argument("--nfe", nargs="+", type=int, default=[5, 10, 20, 50])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    problems = peers.make_problems(args.n, args.problems)
    samplers: dict[str, peers.Sampler] = {}
    for name in args.solvers:
        samplers[name] = peers.OURS[name]
        for shape in args.shapes:
            gamma, mix = (float(v) for v in shape.split("/"))
            per_step = {"dpm_solver_2": 2, "dpm_solver_3": 3, "edm_heun": 2}.get(name, 1)
            samplers[f"{name}, pilot grid {shape}"] = on_pilot_grid(name, gamma, mix, per_step)
    cells, _ = peers.evaluate(problems, samplers, args.nfe, args.seeds, args.n)
    print(peers.combined_table(problems, list(samplers), args.nfe, cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
