"""Conditional samplers against exact conditionals: method x solver x NFE -> distance and wall time.

Every row samples ``n`` points with ``solvers.sample`` and compares them with exact samples of
the conditional's noised marginal at ``t = eps`` (where sampling stops), in units of the noise
floor (`scoresde.conditional.ConditionalReference`: worst of sliced W2, |MMD^2|, mode-weight TV,
within-mode spread, each divided by its value between two exact sets of the same size).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/conditional.py --n 2000 > table.md
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

import scoresde as sd
import solvers
from scoresde.conditional import (
    ClassifierGuidance,
    ClassMixture,
    ConditionalReference,
    ObservedCoordinates,
    PosteriorGuidance,
    Replacement,
    condition_on_measurement,
)
from scoresde.conditional import problems as P

SOLVER_STEPS = [("euler_maruyama", 100), ("euler_maruyama", 1000), ("dpmpp_2m", 20), ("dpmpp_2m", 50), ("ode_heun", 50)]


def _row(ref: ConditionalReference, sde: Any, score: Any, hook: Any, shape: tuple[int, int], solver: str,
         steps: int, project: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = solvers.sample(sde, score, shape, solver, steps=steps, seed=0, after_step=hook, dtype=torch.float64)
    wall = time.perf_counter() - t0
    e = ref.evaluate(project(r.samples))
    return {"solver": solver, "nfe": r.nfe, "wall": wall, **e}


def imputation(name: str, problem: Any, n: int) -> list[dict[str, Any]]:
    sde = sd.VPSDE()
    mix, mask, y = problem()
    oc = ObservedCoordinates(mix, mask, y)
    ref = ConditionalReference(oc.conditional, sde, sde.eps, n=n)
    score = mix.score_fn(sde)
    d = mix.dim
    methods: dict[str, Callable[[], tuple[Any, Any]]] = {
        "exact conditional score": lambda: (oc.score_fn(sde), None),
        "replacement (Song et al. 2021)": lambda: (score, Replacement(sde, mask, y, seed=1)),
        "PiGDM (Song et al. 2023)": lambda: (PosteriorGuidance(score, sde, mask, y, (d,)), None),
        "PiGDM + replacement": lambda: (PosteriorGuidance(score, sde, mask, y, (d,)), Replacement(sde, mask, y, seed=1)),
    }
    rows = []
    for method, make in methods.items():
        for solver, steps in SOLVER_STEPS:
            s, hook = make()
            rows.append({"problem": name, "method": method, **_row(ref, sde, s, hook, (n, d), solver, steps, oc.free)})
    return rows, ref.exact_combined


def measurement(name: str, problem: Any, n: int) -> list[dict[str, Any]]:
    sde = sd.VPSDE()
    mix, A, y, sy = problem()
    post = condition_on_measurement(mix, A, y, sy)
    ref = ConditionalReference(post, sde, sde.eps, n=n)
    score = mix.score_fn(sde)
    d = mix.dim
    methods = {
        "exact conditional score": lambda: post.score_fn(sde),
        "PiGDM (Song et al. 2023)": lambda: PosteriorGuidance(score, sde, A, y, (d,), noise_std=sy),
        "DPS likelihood (Chung et al. 2022)": lambda: PosteriorGuidance(score, sde, A, y, (d,), noise_std=sy, method="dps"),
    }
    rows = []
    for method, make in methods.items():
        for solver, steps in SOLVER_STEPS:
            rows.append({"problem": name, "method": method,
                         **_row(ref, sde, make(), None, (n, d), solver, steps, lambda x: x)})
    return rows, ref.exact_combined


def guidance(n: int) -> list[dict[str, Any]]:
    """Classifier guidance with the exact p_t(c | x) on eight Gaussians, classes = pairs of modes."""
    sde = sd.VPSDE()
    mix = sd.targets.eight_gaussians()
    cm = ClassMixture(mix, [0, 0, 1, 1, 2, 2, 3, 3])
    cond = cm.conditional(1)
    ref = ConditionalReference(cond, sde, sde.eps, n=n)
    rows = []
    for w in (0.0, 1.0, 2.0, 4.0):
        s = ClassifierGuidance(mix.score_fn(sde), cm.classifier(sde), 1, w)
        t0 = time.perf_counter()
        r = solvers.sample(sde, s, (n, 2), "euler_maruyama", steps=1000, seed=0, dtype=torch.float64)
        wall = time.perf_counter() - t0
        x = r.samples
        p_c = cm.log_prob(x, sde.eps, sde)[:, 1].exp()
        # Within-mode variance relative to the exact one (1 = exact): mean squared scaled distance
        # to the assigned component of p_eps(x | c) per dimension.
        alpha, sigma = sde.marginal_coeffs(torch.tensor([sde.eps], dtype=torch.float64))
        k = cond.responsibilities(x).argmax(1)
        var = alpha**2 * cond.stds[k] ** 2 + sigma**2
        rel_var = float((((x - alpha * cond.means[k]) ** 2) / var).mean())
        rows.append({"w": w, "nfe": r.nfe, "wall": wall, "mean_p_c": float(p_c.mean()),
                     "rel_within_var": rel_var, **ref.evaluate(x)})
    return rows, ref.exact_combined


def _table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="samples per row and per exact set")
    ap.add_argument("--only", choices=("imputation", "measurement", "guidance"), default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    keys = ["method", "solver", "nfe", "combined", "sw", "mmd", "modes", "spread", "wall"]
    if args.only in (None, "imputation"):
        for name, prob in (("imputation 2-D", P.imputation_2d), ("imputation 16-D", P.imputation_16d)):
            rows, floor = imputation(name, prob, args.n)
            print(f"\n### {name} (a second exact set scores {floor:.2f})\n\n" + _table(rows, keys), flush=True)
    if args.only in (None, "measurement"):
        for name, prob in (("measurement 2-D", P.measurement_2d), ("measurement 16-D", P.measurement_16d)):
            rows, floor = measurement(name, prob, args.n)
            print(f"\n### {name} (a second exact set scores {floor:.2f})\n\n" + _table(rows, keys), flush=True)
    if args.only in (None, "guidance"):
        rows, floor = guidance(args.n)
        print(f"\n### classifier guidance, exact p_t(c|x) (a second exact set scores {floor:.2f})\n\n"
              + _table(rows, ["w", "nfe", "combined", "mean_p_c", "rel_within_var", "sw", "mmd", "modes", "spread", "wall"]), flush=True)


if __name__ == "__main__":
    main()
