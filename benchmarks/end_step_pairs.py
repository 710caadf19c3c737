"""Which pair of evaluations should the end-of-run step fit its Gaussian to?

The end step (`solvers.end`) fits ``s^2`` per sample to its own evaluation at ``eps`` and one
more: the run's previous evaluation (``pair="history"``, the default after a deterministic
run) or a *probe* at ``S' = 1.1 S`` one Euler step of ``dy/dS = (y - D)/S`` away
(``pair="probe"``, +1 NFE, the default after a run that drew noise and whose last step spans
less than ``S/2``). This script finishes the
same runs both ways and reports the within-mode spread (1 = exact; float64, n = 2000, seed 0,
VP SDE)::

    OMP_NUM_THREADS=1 python benchmarks/end_step_pairs.py --target aniso_64d   # 5 min

Measured (docs/defaults.md, "Two targets outside the presets"): on ``aniso_64d`` the probe
takes ``euler_maruyama`` (1000 steps) from 1.0109 to 1.0014 and ``sde_dpmpp_2m`` from 1.0069
to 0.9975, and leaves ``dpmpp_2m`` at 200 steps level (1.0030 -> 1.0037).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import scoresde as sd
import solvers
import solvers.base
import solvers.end
from scoresde.quality import within_mode_spread
from solvers.dynamics import ReverseDynamics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sharp import make_target  # noqa: E402

FINAL = solvers.end.final_step


def forced(pair: str):  # type: ignore[no-untyped-def]
    """`solvers.end.final_step` with ``pair`` forced, whatever the run drew."""

    def final(dynamics: ReverseDynamics, x: Tensor, t: float, kind: str = "ode", **run: Any) -> Tensor:
        return FINAL(dynamics, x, t, kind, pair=pair, info=run.get("info"))  # type: ignore[arg-type]

    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="aniso_64d")
    ap.add_argument("--runs", nargs="*", default=["euler_maruyama:1000", "sde_dpmpp_2m:1000", "ancestral:1000",
                                                  "ode_dopri5:1", "dpmpp_2m:200", "dpmpp_2m:20"])
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args(argv)
    mix = make_target(args.target)
    sde = sd.VPSDE()
    score = mix.score_fn(sde)
    print(f"| solver | steps | history pair | probe at {solvers.end.PROBE_RATIO:g} S (+1 NFE) |")
    print("|---|---|---|---|")
    for run in args.runs:
        name, steps = run.split(":")
        spreads = []
        for final in (forced("history"), forced("probe")):
            solvers.base.final_step = final  # type: ignore[attr-defined]
            try:
                r = solvers.sample(sde, score, shape=(args.n, mix.dim), solver=name, steps=int(steps), seed=0,
                                   dtype=torch.float64)
            finally:
                solvers.base.final_step = FINAL  # type: ignore[attr-defined]
            spreads.append(within_mode_spread(r.samples, mix))
        print(f"| {name} | {steps} | {spreads[0]:.4f} | {spreads[1]:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
