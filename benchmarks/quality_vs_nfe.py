"""Sample quality vs NFE for every registered solver on exact Gaussian-mixture targets.

For each (target, SDE) problem every solver samples with the exact score at several step
budgets (adaptive solvers: several tolerances) with its defaults, end-of-run step to
``sigma = 0`` included; the table reports the NFE actually counted (that step's evaluation
included), sliced-W2 and MMD^2 against independent exact samples of ``p_0``, and the noise
floor of each metric (its value between two exact sample sets of the same size). A solver
without systematic bias reaches the floor at some NFE. ``--denoise none`` stops every run at
``eps`` and scores it against exact samples of ``p_eps``.

Reproduce (cells are cached under --out, so an interrupted run resumes)::

    python benchmarks/quality_vs_nfe.py                          # all solvers, 4 problems
    python benchmarks/quality_vs_nfe.py --solvers pc ode_heun dpmpp_2m --targets eight_gaussians
    python benchmarks/quality_vs_nfe.py --targets sharp_8 sharp_25 sharp_32d   # sharp presets
"""

from __future__ import annotations

import argparse
from pathlib import Path

import solvers
from scoresde import compare

PROBLEMS = [
    ("eight_gaussians", "vp"),
    ("eight_gaussians", "ve"),
    ("high_dim_16", "vp"),
    ("grid_25", "subvp"),
    # Sharp presets (mode std 1/20-1/30 of the mode spacing); the combined metric and the
    # within-mode spread for these are in benchmarks/sharp.py and benchmarks/peers.py.
    ("sharp_8", "vp"),
    ("sharp_25", "subvp"),
    ("sharp_32d", "ve"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", nargs="*", default=None, help="solver names (default: all)")
    parser.add_argument("--targets", nargs="*", default=None, help="restrict to these targets")
    parser.add_argument("--steps", nargs="*", type=int, default=[5, 10, 20, 50, 200])
    parser.add_argument("--tolerances", nargs="*", type=float, default=[1e-2, 1e-3, 1e-4])
    parser.add_argument("--n", type=int, default=4000, help="samples per cell")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--out", default="build/bench_quality", help="cache and result folder")
    parser.add_argument("--denoise", default=None, choices=["ode", "tweedie", "none"],
                        help="end-of-run step (default: each solver's own, to sigma = 0)")
    args = parser.parse_args()

    known = list(dict.fromkeys(target for target, _ in PROBLEMS))
    unknown = [t for t in args.targets or [] if t not in known]
    if unknown:  # it ran nothing and printed nothing
        parser.error(f"--targets {' '.join(unknown)} not among this benchmark's targets: {', '.join(known)}")
    names = args.solvers or solvers.available()
    for target, sde in PROBLEMS:
        if args.targets and target not in args.targets:
            continue
        problem = compare.Problem.from_target(target, sde=sde)
        res = compare.run_comparison(
            problem,
            names,
            steps=args.steps,
            tolerances=args.tolerances,
            seeds=args.seeds,
            n=args.n,
            metrics=("sliced_w2", "mmd"),
            out=Path(args.out) / f"{target}_{sde}",
            denoise=args.denoise,
            plots=False,
        )
        print(f"\n## {target}, {sde.upper()} SDE (n = {args.n})\n")
        print(res.table())


if __name__ == "__main__":
    main()
