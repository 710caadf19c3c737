"""Experiment: stochastic samplers on data centred away from the origin (mode weights, spread).

A sampler whose step is equivariant to shifting the data keeps the mode weights of a mixture
wherever the mixture sits; one whose error is proportional to the state ``x`` pulls the
samples towards the origin, so the modes nearer to it gain weight. Song et al.'s
reverse-diffusion step (Alg. 3) undoes the forward drift by subtraction, ``(2 - a) x`` for
``x / a``, short by about ``b^4/4`` of ``x`` per step; its default here is Tweedie's one-step
posterior mean ``(x + b^2 s) / a`` (`solvers.predictors.ReverseDiffusionPredictor`).

Target: four modes of std 0.04 at distance 1 from their centre, weights 0.4 / 0.3 / 0.2 / 0.1,
the centre shifted by ``(c, c)``; VP SDE, exact score, n = 4000 per seed. Per cell: mode-weight
total variation (mean weights over the seeds; binomial noise about 0.005-0.01) and the mean
within-mode spread (1 = exact).

Reproduce (docs/defaults.md, "Reverse diffusion's mean: Tweedie's one-step posterior")::

    OMP_NUM_THREADS=1 python benchmarks/offcentre.py                    # ~2 min
"""

from __future__ import annotations

import argparse
import warnings

import torch

import scoresde as sd
import solvers
from scoresde.quality import mode_frequencies, within_mode_spread
from solvers.predictors import ReverseDiffusionPredictor

VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "reverse_diffusion": ("reverse_diffusion", {}),
    "reverse_diffusion (additive, Song et al. Alg. 3)": (
        "reverse_diffusion", {"predictor": ReverseDiffusionPredictor(mean="additive")}),
    "pc": ("pc", {}),
    "pc (additive predictor)": ("pc", {"predictor": ReverseDiffusionPredictor(mean="additive")}),
    "euler_maruyama": ("euler_maruyama", {}),
    "ancestral": ("ancestral", {}),
}


def target(shift: float) -> sd.targets.GaussianMixture:
    mu = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64) + shift
    return sd.targets.GaussianMixture(mu, 0.04, [0.4, 0.3, 0.2, 0.1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shifts", type=float, nargs="+", default=[0.0, 5.0, 10.0, 20.0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--only", nargs="*", default=None, help="variants whose name contains one of these")
    args = ap.parse_args(argv)
    sde = sd.VPSDE()
    variants = {k: v for k, v in VARIANTS.items() if not args.only or any(s in k for s in args.only)}
    print("| sampler | steps | " + " | ".join(f"shift {c:g}" for c in args.shifts) + " |")
    print("|---|---|" + "---|" * len(args.shifts))
    for name, (solver, options) in variants.items():
        for steps in args.steps:
            cells = []
            for shift in args.shifts:
                tg = target(shift)
                score = tg.score_fn(sde)
                weights, spreads, nfe = [], [], 0
                for seed in range(args.seeds):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # the prior-shift note on large shifts
                        r = solvers.sample(sde, score, shape=(args.n, 2), solver=solver, steps=steps, seed=seed,
                                           dtype=torch.float64, **options)
                    weights.append(mode_frequencies(r.samples, tg))
                    spreads.append(float(within_mode_spread(r.samples, tg)))
                    nfe = r.nfe
                tv = 0.5 * float((torch.stack(weights).mean(0) - tg.weights).abs().sum())
                cells.append(f"{tv:.4f} ({sum(spreads) / len(spreads):.4f})")
            print(f"| {name} | {steps} [{nfe}] | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
