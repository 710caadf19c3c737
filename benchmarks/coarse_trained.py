"""Coarse-grid limits with trained networks: where do the samples leave the data?

`FixedGridSolver.fewest_steps` names, per solver and SDE, the fewest steps below which a run can
throw samples past the data (docs/defaults.md, "Higher-order ODE steps on very coarse grids").
Exact mixture scores extrapolate perfectly far from the data; a network does not, and the
reverse-diffusion predictor under VE and DPM-Solver-3 (noise prediction) diverge at more steps
with one. This script trains small networks on 2-D toys (`scoresde.train.train_toy`, kept in
``--out`` and reused on a second run), samples them at few steps, and prints per step count the
samples' median distance from the data's centre over the data's (and the same for the 99th
percentile), the larger of two seeds, with ``W`` where the coarse-grid warning was raised. The
same is printed for exact scores of three presets.

    OMP_NUM_THREADS=1 python benchmarks/coarse_trained.py --out runs/coarse_nets   # ~8 min
    ... --solvers edm_heun ode_heun ode_rk4 --steps 2 3 4 5 6 7 8 10 12 14 16      # the ODE solvers
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import torch

import scoresde as sd
import solvers
from scoresde.data import toy
from scoresde.train import load_model, train_toy

NETS = [("checkerboard", "ve"), ("moons", "ve"), ("checkerboard", "subvp"), ("eight_gaussians", "subvp"),
        ("checkerboard", "vp"), ("checkerboard", "edm")]
PRESETS = ["sharp_8", "eight_gaussians", "checker_mixture"]


def build_sde(name: str) -> Any:
    return sd.EDMSDE() if name == "edm" else sd.get_sde(name)


def trained(data: str, sde_name: str, out: Path, steps: int) -> Any:
    """The score of a network trained on ``data`` under ``sde_name`` (trained once, then loaded)."""
    sde = build_sde(sde_name)
    folder = out / f"{data}_{sde_name}_{steps}"
    if (folder / "checkpoint.pt").exists():
        model, sde, _ = load_model(folder, sde=sde)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, _ = train_toy(data, sde=sde, steps=steps, seed=0, out_dir=folder, progress=False)
    return sde, model.score_fn(sde)


def distance_ratios(x: torch.Tensor, data: torch.Tensor) -> tuple[float, float]:
    """(median, 99th percentile) of ``|x - c|`` over the same of ``|data - c|``, ``c`` the data's mean."""
    c = data.mean(0)
    dx, dd = (x - c).norm(dim=1), (data - c).norm(dim=1)
    return float(dx.median() / dd.median()), float(dx.quantile(0.99) / dd.quantile(0.99))


def row(sde: Any, score: Any, data: torch.Tensor, solver: str, steps: list[int], n: int) -> str:
    cells = []
    for k in steps:
        med = q99 = 0.0
        warned = False
        for seed in (0, 1):
            with warnings.catch_warnings(record=True) as caught, torch.no_grad():
                warnings.simplefilter("always")
                r = solvers.sample(sde, score, (n, 2), solver=solver, steps=k, seed=seed)
            warned |= any("stay inside the data at any step count" in str(w.message) for w in caught)
            m, q = distance_ratios(r.samples.double(), data.double())
            med, q99 = max(med, m), max(q99, q)
        cells.append(f"{k}: {med:.2f} / {q99:.1f}{' W' if warned else ''}")
    return " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/coarse_nets"), help="where the networks are kept")
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--solvers", nargs="*", default=["reverse_diffusion", "pc", "dpm_solver_3", "dpm_solver_2"])
    parser.add_argument("--steps", nargs="*", type=int, default=[2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("median / 99th-percentile distance from the data's centre over the data's, worse of seeds 0 and 1; "
          "W: the coarse-grid warning was raised\n")
    print("| score | SDE | solver | " + " | ".join(f"{k} steps" for k in args.steps) + " |")
    print("|---|---|---|" + "---|" * len(args.steps))
    for data_name, sde_name in NETS:
        sde, score = trained(data_name, sde_name, args.out, args.train_steps)
        data = toy(data_name).sample(args.n, generator=torch.Generator().manual_seed(1000))
        for solver in args.solvers:
            print(f"| {data_name} network | {sde_name} | `{solver}` | {row(sde, score, data, solver, args.steps, args.n)} |",
                  flush=True)
    for preset in PRESETS:
        target = getattr(sd.targets, preset)()
        data = target.sample(args.n, generator=torch.Generator().manual_seed(1000))
        for sde_name in ("ve", "subvp", "edm"):
            sde = build_sde(sde_name)
            for solver in args.solvers:
                print(f"| exact {preset} | {sde_name} | `{solver}` | "
                      f"{row(sde, target.score_fn(sde), data, solver, args.steps, args.n)} |", flush=True)


if __name__ == "__main__":
    main()
