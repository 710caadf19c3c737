"""Peak memory of sampling many 2-D points through the CLI, with and without ``--batch-size``.

Runs ``python -m scoresde sample --target eight_gaussians ...`` in a child process for each
configuration and reports the child's peak resident set size (``ru_maxrss``), next to the size
of the output array (``N x 2`` float32). Chunked sampling keeps the working state and score
evaluations of one chunk only, so the peak is the output plus a constant.

Reproduce (the target of issue 14: 1e8 points under 2 GB)::

    python benchmarks/memory.py --n 100000000 --batch-size 1000000
    python benchmarks/memory.py --n 2000000 --batch-size 100000 --unchunked   # compare both

A cheap deterministic solver (``ode_euler``, 2 steps) keeps the run to a few minutes; the
peak does not depend on the step count.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def peak_rss_gb(n: int, batch_size: int | None, solver: str, steps: int) -> tuple[float, float]:
    """(peak RSS of one CLI run in GB, wall seconds); a fresh child process per run."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "scoresde", "sample", "--target", "eight_gaussians",
               "--sde", "vp", "--solver", solver, "--steps", str(steps), "--n", str(n),
               "--no-plot", "--out", out]
        if batch_size is not None:
            cmd += ["--batch-size", str(batch_size)]
        # A wrapper child so that RUSAGE_CHILDREN measures this run only.
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - start
        kb = int(res.stdout.strip().splitlines()[-1])
    return kb / 1024**2, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--batch-size", type=int, default=1_000_000)
    parser.add_argument("--solver", default="ode_euler")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--unchunked", action="store_true", help="also run without --batch-size")
    args = parser.parse_args()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >= 0
    output_gb = args.n * 2 * 4 / 1024**3
    print(f"N={args.n:.3g} solver={args.solver} steps={args.steps} output={output_gb:.3f} GB")
    runs = [args.batch_size] + ([None] if args.unchunked else [])
    for b in runs:
        peak, wall = peak_rss_gb(args.n, b, args.solver, args.steps)
        label = "unchunked" if b is None else f"--batch-size {b}"
        print(f"{label:<24} peak RSS {peak:6.3f} GB ({peak / output_gb:5.2f}x output)  {wall:7.1f} s")


if __name__ == "__main__":
    main()
