"""Solver overhead: wall time / (NFE x one bare score-network forward), for every solver.

A ratio of 1.00 means the solver costs nothing beyond its score evaluations; the target is
<= 1.05 (no Python loops over samples, no host syncs inside a step). Two ratios are printed:
``ratio`` divides by the median bare forward measured just before the run, ``in-situ``
divides by the time actually spent inside the score calls of that run (robust to machine
load changing between the two measurements). The score network is a
stand-in 4x256 SiLU MLP on ``(x, t)`` (untrained: cost, not quality, is measured here)
evaluated on a batch of 10,000 2-D points.

Reproduce (both numbers of each ratio are measured in the same run)::

    python benchmarks/overhead.py                      # every registered solver
    python benchmarks/overhead.py --solvers pc ode_heun --batch 10000 --steps 50
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

import scoresde as sd
import solvers

ADAPTIVE_OPTIONS = {"rtol": 1e-3, "atol": 1e-3}


def make_mlp(dim: int, width: int = 256, depth: int = 4) -> nn.Module:
    """``depth`` hidden layers of ``width`` with SiLU; input ``(x, t)``, output like ``x``."""
    layers: list[nn.Module] = [nn.Linear(dim + 1, width), nn.SiLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.SiLU()]
    layers.append(nn.Linear(width, dim))
    return nn.Sequential(*layers)


def bare_forward_seconds(net: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of one ``net(cat(x, t))`` call, the unit of the ratio."""
    t = torch.full((x.shape[0], 1), 0.5)
    times = []
    with torch.no_grad():
        for _ in range(3):
            net(torch.cat([x, t], dim=1))
        for _ in range(repeats):
            start = time.perf_counter()
            net(torch.cat([x, t], dim=1))
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", nargs="*", default=None, help="names (default: all)")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="runs per solver (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The untrained stand-in network has no pull towards a centre at T, so every run would warn
    # that its prior draw is not a sample of p_T (solvers.prior_match); cost is measured here.
    warnings.simplefilter("ignore", RuntimeWarning)

    sde = sd.VPSDE()
    net = make_mlp(2).eval()

    spent = [0.0]

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = net(torch.cat([x, t[:, None]], dim=1))
        spent[0] += time.perf_counter() - start
        return out

    x = torch.randn(args.batch, 2)
    names = args.solvers or solvers.available()
    print(f"batch={args.batch} steps={args.steps} threads={torch.get_num_threads()}")
    print(f"{'solver':<26} {'NFE':>6} {'wall s':>8} {'bare fwd ms':>11} {'ratio':>7} {'in-situ':>8}")
    for name in names:
        cls = solvers.SOLVERS[name]
        opts = ADAPTIVE_OPTIONS if cls.adaptive else {}
        solvers.sample(sde, score, (args.batch, 2), name, steps=5, seed=0, **opts)  # warm-up
        ratios, walls, nfes, bares, insitu = [], [], [], [], []
        for rep in range(args.repeats):
            # Bare forward measured right before each run, so both see the same machine state.
            bare = bare_forward_seconds(net, x, repeats=10)
            spent[0] = 0.0
            start = time.perf_counter()
            r = solvers.sample(sde, score, (args.batch, 2), name, steps=args.steps, seed=rep, **opts)
            wall = time.perf_counter() - start
            ratios.append(wall / (r.nfe * bare))
            insitu.append(wall / spent[0])
            walls.append(wall)
            nfes.append(r.nfe)
            bares.append(bare)
        print(
            f"{name:<26} {statistics.median(nfes):>6.0f} {statistics.median(walls):>8.3f} "
            f"{1e3 * statistics.median(bares):>11.2f} {statistics.median(ratios):>7.3f} "
            f"{statistics.median(insitu):>8.3f}"
        )


if __name__ == "__main__":
    main()
