"""Which pair of evaluations should the end-of-run step fit its Gaussian to?

The default end step (`solvers.end`) fits ``s^2`` per sample to its own evaluation at ``eps``
and the run's previous evaluation at another time. This script compares it with a *probe*:
one more evaluation at ``S' = ratio * S`` (``S = sigma/alpha`` at ``eps``; ``ratio > 1`` keeps
``t' > eps``, inside a model's training range), at the state one Euler step of
``dy/dS = (y - D)/S`` away, so the pair lies on one deterministic path and close in ``S``
whatever the solver did before (+1 NFE). Reported: the within-mode spread (1 = exact) of the
same run finished both ways (float64, n = 2000, seed 0, VP SDE).

    OMP_NUM_THREADS=1 python benchmarks/end_step_pairs.py --target aniso_64d --ratio 1.1   # 5 min

Measured (docs/defaults.md, "Two targets outside the presets"): on ``aniso_64d`` the probe
takes ``euler_maruyama`` (1000 steps) from 1.0109 to 1.0014 and ``sde_dpmpp_2m`` from 1.0069
to 0.9975; ``ratio = 2`` helps far less (1.0087) and hurts ``dpmpp_2m`` (1.0030 -> 1.0110).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

import scoresde as sd
import solvers
import solvers.base
import solvers.end
from scoresde.quality import within_mode_spread
from solvers.dynamics import ReverseDynamics
from solvers.gaussian_fit import fit_gaussian_part
from solvers.marginals import require_marginals, time_from_edm_sigma
from solvers.utils import batch_time

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sharp import make_target  # noqa: E402

HISTORY = solvers.end.final_step


def probe_end_step(ratio: float):  # type: ignore[no-untyped-def]
    """An ``"ode"`` end step that fits ``s^2`` to a probe at ``ratio * S`` instead of the history."""

    def final(dynamics: ReverseDynamics, x: Tensor, t: float, kind: str = "ode") -> Tensor:
        if kind != "ode":
            return HISTORY(dynamics, x, t, kind)  # type: ignore[arg-type]
        with torch.no_grad():
            sde = require_marginals(dynamics.sde, "the probe end step")
            tt = batch_time(t, x)
            d = dynamics.x0_pred(x, tt)
            a, sig = (float(c[0]) for c in sde.marginal_coeffs(tt[:1]))
            s_end = sig / a
            y = x / a
            u = (y - d) / s_end**2
            t_probe = float(time_from_edm_sigma(sde, [ratio * s_end])[0])
            a2, sig2 = (float(c[0]) for c in sde.marginal_coeffs(torch.tensor([t_probe], dtype=torch.float64)))
            s_probe = sig2 / a2
            y2 = y + (s_probe - s_end) * (y - d) / s_end  # Euler step of dy/dS = (y - D)/S
            d2 = dynamics.x0_pred(y2 * a2, batch_time(t_probe, x))
            s2 = fit_gaussian_part(d, d2, u, (y2 - d2) / s_probe**2)
            s = s2.sqrt()
            coeff = s * s_end**2 / (torch.sqrt(s2 + s_end**2) + s)
            return d + coeff.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1)) * u

    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="aniso_64d")
    ap.add_argument("--ratio", type=float, default=1.1)
    ap.add_argument("--runs", nargs="*", default=["euler_maruyama:1000", "sde_dpmpp_2m:1000", "ancestral:1000",
                                                  "ode_dopri5:1", "dpmpp_2m:200", "dpmpp_2m:20"])
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args(argv)
    mix = make_target(args.target)
    sde = sd.VPSDE()
    score = mix.score_fn(sde)
    print(f"| solver | steps | history pair | probe at {args.ratio:g} S (+1 NFE) |")
    print("|---|---|---|---|")
    for run in args.runs:
        name, steps = run.split(":")
        spreads = []
        for final in (HISTORY, probe_end_step(args.ratio)):
            solvers.base.final_step = final  # type: ignore[attr-defined]
            try:
                r = solvers.sample(sde, score, shape=(args.n, mix.dim), solver=name, steps=int(steps), seed=0,
                                   dtype=torch.float64)
            finally:
                solvers.base.final_step = HISTORY  # type: ignore[attr-defined]
            spreads.append(within_mode_spread(r.samples, mix))
        print(f"| {name} | {steps} | {spreads[0]:.4f} | {spreads[1]:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
