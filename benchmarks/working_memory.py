"""Peak working memory of `solvers.sample`, in units of one state ``(B, *D)``.

Each configuration runs in a fresh child process (``ru_maxrss`` only grows), on a batch of
(2000, 3, 16, 16) float32 states (6 MB each) with the score of ``N(0, I)`` data under VP
(``-x``: no memory of its own). The peak above the child's baseline is divided by one state's
size; ``MALLOC_MMAP_THRESHOLD_`` makes glibc return freed blocks, so the peak tracks live
tensors rather than heap fragmentation.

    OMP_NUM_THREADS=1 python benchmarks/working_memory.py
    OMP_NUM_THREADS=1 python benchmarks/working_memory.py --solvers adaptive_sde --trajectory 11
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, warnings
import torch
import scoresde as sd, solvers
warnings.simplefilter("ignore")
torch.set_num_threads(1)
name, steps, frames, denoise = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
shape = (2000, 3, 16, 16)
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
sde = sd.VPSDE()
base = rss_mb()
kw = dict(keep_trajectory=frames > 0, max_frames=max(frames, 2))
if denoise != "default":
    kw["denoise"] = denoise
solvers.sample(sde, lambda x, t: -x, shape, name, steps=steps, seed=0, **kw)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
state = torch.empty(shape).numel() * 4 / 2**20
print(json.dumps({"peak_states": (peak - base) / state, "peak_mb": peak - base}))
"""


def run(solver: str, steps: int, frames: int, denoise: str) -> dict[str, float]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, solver, str(steps), str(frames), denoise],
                         env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solvers", nargs="+", default=["euler_maruyama", "ddim", "dpmpp_2m", "ode_heun", "ode_dopri5"])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--trajectory", type=int, default=0, help="max_frames of a kept trajectory (0: none)")
    ap.add_argument("--denoise", default="default", help="default, none, tweedie or ode")
    args = ap.parse_args()
    print("| solver | steps | trajectory frames | denoise | peak (state sizes) | peak (MB) |")
    print("|---|---|---|---|---|---|")
    for name in args.solvers:
        r = run(name, args.steps, args.trajectory, args.denoise)
        print(f"| {name} | {args.steps} | {args.trajectory} | {args.denoise} | {r['peak_states']:.1f} | "
              f"{r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
