"""Which time grid suits a trained network at low NFE? Sliced W2 of a few solvers per grid.

The default grids were chosen on exact mixture scores with sharp modes (docs/defaults.md,
docs/fast_solvers.md). A trained network adds its own error, which grows like ``S`` in the
denoiser at high noise (`benchmarks/first_step_error.py`), so the best grid for it can differ.
For each checkpoint (``scoresde train --data NAME --steps 2000 --out DIR``) and solver, the
sliced W2 to fresh data draws (n samples, mean over seeds) at each NFE (the end-of-run step
included), on the solver's default grid and on the named others.

Reproduce (docs/fast_solvers.md, "Grids for trained networks")::

    for d in swiss_roll eight_gaussians checkerboard; do scoresde train --data $d --steps 2000 --out m_$d; done
    OMP_NUM_THREADS=1 python benchmarks/trained_grids.py --checkpoints m_swiss_roll m_eight_gaussians m_checkerboard
"""

from __future__ import annotations

import argparse
import warnings

import torch

import solvers
from scoresde.data import load_data
from scoresde.metrics import sliced_wasserstein
from scoresde.train.persist import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--solvers", nargs="+", default=["gaussian_2m", "dpmpp_2m", "unipc"])
    parser.add_argument("--grids", nargs="+", default=["default", "karras", "quadratic"])
    parser.add_argument("--nfe", type=int, nargs="+", default=[6, 8, 10, 14, 20, 50])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| data | solver | grid | " + " | ".join(f"NFE {k}" for k in args.nfe) + " |")
    print("|---|---|---|" + "---|" * len(args.nfe))
    for path in args.checkpoints:
        model, sde, config = load_model(path)
        score = model.score_fn(sde)
        ref = load_data(config.data).sample(args.n, generator=torch.Generator().manual_seed(12345))
        for solver in args.solvers:
            for grid in args.grids:
                options = {} if grid == "default" else {"grid": grid}
                cells = []
                for nfe in args.nfe:  # one evaluation goes to the end-of-run step
                    sw = [float(sliced_wasserstein(solvers.sample(sde, score, (args.n, *ref.shape[1:]), solver=solver,
                                                                  steps=nfe - 1, seed=seed, **options).samples, ref))
                          for seed in range(args.seeds)]
                    cells.append(f"{sum(sw) / len(sw):.3f}")
                print(f"| {config.data} | {solver} | {grid} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
