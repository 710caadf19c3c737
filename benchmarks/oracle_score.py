"""Speed of the exact mixture score (`GaussianMixture.marginal_score`) against the plain layout.

The oracle score is what every exact-target test, benchmark and tutorial evaluates, often
thousands of times on 10,000 points. Up to `COMPONENTS_FIRST_MAX_DIM` dimensions its
per-component terms are laid out components first, ``(K, D, B)``, with the component sums
folded in a fixed order (`GaussianMixture._component_terms`); above, ``(B, K, D)``. Either
way an isotropic component has one variance, not ``D``. The baseline here is the direct
``(B, K, D)`` layout with ``D`` variances per component and the softmax over components on
the last axis of ``(B, K)``, the textbook way to write it (and this library's until this
benchmark's commit). Both are timed in one run, case by case, single thread; the table gives the median
times and the ratio baseline / current, for the score alone, for the score with its exact
divergence (``D`` backward passes, what `scoresde.likelihood` does per evaluation), and for a
whole `solvers.sample` run (``euler_maruyama``, 200 steps) with each score::

    OMP_NUM_THREADS=1 python benchmarks/oracle_score.py            # ~3 min
    OMP_NUM_THREADS=1 python benchmarks/oracle_score.py --quick    # ~30 s
    OMP_NUM_THREADS=1 python benchmarks/oracle_score.py --sizes 64 256   # small batches, ~1 min

The two agree to round-off (checked here on every case before timing, and against
torch.distributions in tests/scoresde/test_targets.py).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sharp  # noqa: E402  (the benchmark next to this file: its extra targets)

import scoresde as sd  # noqa: E402
import solvers  # noqa: E402
from scoresde.likelihood.divergence import exact_divergence  # noqa: E402
from scoresde.targets import GaussianMixture  # noqa: E402


def baseline_score(mix: GaussianMixture, x: Tensor, t: Tensor, sde: sd.AffineSDE) -> Tensor:
    """``grad log p_t(x)`` in the ``(B, K, D)`` layout, softmax over the last axis of ``(B, K)``."""
    _, alpha, sigma = mix._coeffs(x, t, sde)  # the same input checks as the current code
    mu = mix.means.to(x)
    var = alpha[:, None, None] ** 2 * mix.stds.to(x)[None] ** 2 + sigma[:, None, None] ** 2
    resid = alpha[:, None, None] * mu[None] - x[:, None, :]
    logits = mix.weights.to(x).log()[None] - 0.5 * ((resid**2) / var + torch.log(2 * math.pi * var)).sum(dim=-1)
    return (torch.softmax(logits, dim=1)[:, :, None] * resid / var).sum(dim=1)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def time_case(kind: str, fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor, sde: sd.AffineSDE,
              repeats: int) -> float:
    """Median time of one ``kind`` of work with the score ``fn`` on ``x: (B, D)`` at times ``t``:
    ``"score"`` (ms), ``"divergence"`` (the score and its exact divergence, ms) or ``"sample"``
    (a 200-step ``euler_maruyama`` run of ``B`` samples, one repeat, s)."""
    if kind == "score":
        return median_ms(lambda: fn(x, t), repeats)
    if kind == "divergence":
        return median_ms(lambda: exact_divergence(lambda z: fn(z, t), x), max(3, repeats // 3))
    return median_ms(lambda: solvers.sample(sde, fn, shape=tuple(x.shape), solver="euler_maruyama", steps=200,
                                            seed=0, dtype=x.dtype), 1) / 1e3


def targets() -> list[GaussianMixture]:
    return [sd.targets.sharp_8(), sd.targets.sharp_25(), sharp.skewed_2d(), sd.targets.high_dim(16),
            sd.targets.sharp_32d(), sharp.aniso_64d()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    ap.add_argument("--sizes", type=int, nargs="*", default=None,
                    help="batch sizes (default: 1000 10000; --quick: 10000)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sde = sd.VPSDE()
    sizes = args.sizes or ([10_000] if args.quick else [1_000, 10_000])
    repeats = 5 if args.quick else 15
    print("| target | D | K | isotropic | dtype | B | score ms (plain / ours, ratio) "
          "| score + divergence ms (ratio) | sample 200 steps s (ratio) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mix in targets():
        iso = bool((mix.stds == mix.stds[:, :1]).all())
        for dtype in (torch.float32, torch.float64):
            for b in sizes:
                if mix.dim * b > 400_000 and dtype == torch.float64 and args.quick:
                    continue
                g = torch.Generator().manual_seed(0)
                x = mix.sample_marginal(b, sde, 0.1, generator=g, dtype=dtype)
                t = (sde.eps + 0.5 * torch.rand(b, generator=g, dtype=torch.float64)).to(dtype)
                ours = mix.score_fn(sde)

                def plain(z: Tensor, s: Tensor, mix: GaussianMixture = mix) -> Tensor:
                    return baseline_score(mix, z, s, sde)

                scale = float(plain(x, t).abs().max())
                if float((ours(x, t) - plain(x, t)).abs().max()) > (1e-4 if dtype == torch.float32 else 1e-10) * scale:
                    raise AssertionError(f"{mix.name}: the two layouts disagree beyond round-off")
                cells = []
                for kind in ("score", "divergence", "sample"):
                    if kind == "divergence" and mix.dim * b > 320_000:
                        cells.append("")
                        continue
                    if kind == "sample" and b != sizes[-1]:
                        cells.append("")
                        continue
                    timed = [time_case(kind, fn, x, t, sde, repeats) for fn in (plain, ours)]
                    cells.append(f"{timed[0]:.2f} / {timed[1]:.2f} ({timed[0] / timed[1]:.2f}x)")
                print(f"| {mix.name} | {mix.dim} | {mix.n_components} | {'yes' if iso else 'no'} | "
                      f"{str(dtype).removeprefix('torch.')} | {b} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
