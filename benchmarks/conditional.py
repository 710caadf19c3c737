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
    # Every row stops at eps, the time of the exact reference (a hook run does anyway; a
    # score-wrapper run would otherwise take the default end step to sigma = 0).
    r = solvers.sample(sde, score, shape, solver, steps=steps, seed=0, after_step=hook, denoise="none",
                       dtype=torch.float64)
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


def particle_filter(n: int) -> list[dict[str, Any]]:
    """The particle-filter hook (unconditional proposal, PiGDM twist) against the exact conditionals."""
    from scoresde.conditional.smc import ParticleFilter

    sde = sd.VPSDE()
    mix8 = sd.targets.eight_gaussians()
    weak = (mix8, torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([1.0]), 0.5)
    cases: list[tuple[str, Any]] = [("weak measurement 2-D (x1 + N(0, 0.5^2) = 1)", weak),
                                    ("measurement 2-D", P.measurement_2d()), ("imputation 2-D", P.imputation_2d()),
                                    ("measurement 16-D", P.measurement_16d())]
    rows = []
    for name, case in cases:
        if len(case) == 3:
            mix, A, y = case
            oc = ObservedCoordinates(mix, A, y)
            target, project, sy = oc.conditional, oc.free, 0.0
        else:
            mix, A, y, sy = case
            target, project = condition_on_measurement(mix, A, y, sy), (lambda x: x)
        ref = ConditionalReference(target, sde, sde.eps, n=n)
        for steps in (200, 1000):
            pf = ParticleFilter(mix.score_fn(sde), sde, A, y, (mix.dim,), noise_std=sy, seed=0)
            row = _row(ref, sde, mix.score_fn(sde), pf, (n, mix.dim), "euler_maruyama", steps, project)
            rows.append({"problem": name, "resamples": pf.resamples, **row})
    return rows


def overlapping_classes() -> ClassMixture:
    """Two overlapping classes in 2-D: N((-0.5, 0), 0.5^2 I) and N((0.5, 0), 0.5^2 I)."""
    return ClassMixture(sd.GaussianMixture([[-0.5, 0.0], [0.5, 0.0]], 0.5, name="overlap"), [0, 1])


def guidance(n: int, cm: ClassMixture | None = None) -> list[dict[str, Any]]:
    """Classifier guidance with the exact p_t(c | x); default: eight Gaussians, classes = pairs of modes."""
    sde = sd.VPSDE()
    cm = ClassMixture(sd.targets.eight_gaussians(), [0, 0, 1, 1, 2, 2, 3, 3]) if cm is None else cm
    mix = cm.mixture
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
        rows.append({"w": w, "nfe": r.nfe, "wall": wall, "mean_p_c": float(p_c.mean()), "mean_x1": float(x[:, 0].mean()),
                     "rel_within_var": rel_var, **ref.evaluate(x)})
    return rows, ref.exact_combined


def figures(out: str, n: int) -> None:
    """2-D figures: imputation and measurement posteriors, conditional trajectories, guidance sweep."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    Path(out).mkdir(parents=True, exist_ok=True)
    sde = sd.VPSDE()
    mix, mask, y = P.imputation_2d()
    oc = ObservedCoordinates(mix, mask, y)
    score = mix.score_fn(sde)
    g = torch.Generator().manual_seed(0)
    exact = oc.conditional.sample_marginal(n, sde, sde.eps, generator=g, dtype=torch.float64)[:, 0]
    runs = {
        "exact conditional score": (oc.score_fn(sde), None),
        "replacement": (score, Replacement(sde, mask, y, seed=1)),
        "PiGDM": (PosteriorGuidance(score, sde, mask, y, (2,)), None),
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bins = torch.linspace(-2.2, 2.2, 89).numpy()
    axes[0].hist(exact.numpy(), bins=bins, density=True, color="0.75", label="exact p(x2 | x1 = 1)")
    traj = None
    for name, (s, hook) in runs.items():
        r = solvers.sample(sde, s, (n, 2), "euler_maruyama", steps=1000, seed=0, after_step=hook,
                           dtype=torch.float64, keep_trajectory=name == "replacement")
        axes[0].hist(r.samples[:, 1].numpy(), bins=bins, density=True, histtype="step", lw=1.5, label=name)
        if r.trajectory is not None:
            traj, times = r.trajectory, r.trajectory_times
    axes[0].set_xlabel("x2")
    axes[0].set_title("imputation of x2 given x1 = 1 (eight Gaussians, EM 1000 steps)")
    axes[0].legend(fontsize=8)
    assert traj is not None
    for i in range(40):
        axes[1].plot(times.numpy(), traj[:, i, 1].numpy(), lw=0.6, alpha=0.7)
    axes[1].invert_xaxis()
    axes[1].set_xlabel("t (reverse time)")
    axes[1].set_ylabel("x2")
    axes[1].set_title("replacement: free-coordinate trajectories")
    fig.tight_layout()
    fig.savefig(f"{out}/imputation_2d.png", dpi=110)
    plt.close(fig)
    _measurement_and_guidance_figures(out, n, g)


def _measurement_and_guidance_figures(out: str, n: int, g: torch.Generator) -> None:
    import matplotlib.pyplot as plt

    sde = sd.VPSDE()
    mix, A, ym, sy = P.measurement_2d()
    score = mix.score_fn(sde)
    post = condition_on_measurement(mix, A, ym, sy)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    ex = post.sample_marginal(n, sde, sde.eps, generator=g, dtype=torch.float64)
    rows = [("exact posterior samples", ex),
            ("exact conditional score, DPM-Solver++(2M) 50",
             solvers.sample(sde, post.score_fn(sde), (n, 2), "dpmpp_2m", steps=50, seed=0, dtype=torch.float64).samples),
            ("PiGDM, DPM-Solver++(2M) 50",
             solvers.sample(sde, PosteriorGuidance(score, sde, A, ym, (2,), noise_std=sy), (n, 2), "dpmpp_2m",
                            steps=50, seed=0, dtype=torch.float64).samples)]
    prior = mix.sample(n, generator=g)
    for ax, (title, x) in zip(axes, rows, strict=True):
        ax.scatter(prior[:, 0], prior[:, 1], s=1, c="0.85")
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.5)
        ax.plot([-1, 2.5], [2.5, -1], "k--", lw=0.7)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
    fig.suptitle("x given y = x1 + x2 + N(0, 0.1^2) = 1.5 (grey: prior)")
    fig.tight_layout()
    fig.savefig(f"{out}/measurement_2d.png", dpi=110)
    plt.close(fig)

    cm = ClassMixture(sd.targets.eight_gaussians(), [0, 0, 1, 1, 2, 2, 3, 3])
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6), sharex=True, sharey=True)
    ex = cm.conditional(1).sample(n, generator=g)
    axes[0].scatter(ex[:, 0], ex[:, 1], s=2, alpha=0.5, c="C2")
    axes[0].set_title("exact p(x | c = 1)", fontsize=9)
    for ax, w in zip(axes[1:], (0.0, 1.0, 2.0, 4.0), strict=True):
        s = ClassifierGuidance(cm.mixture.score_fn(sde), cm.classifier(sde), 1, w)
        x = solvers.sample(sde, s, (n, 2), "euler_maruyama", steps=1000, seed=0, dtype=torch.float64).samples
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.5)
        ax.set_title(f"classifier guidance w = {w:g}", fontsize=9)
    for ax in axes:
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(f"{out}/guidance_2d.png", dpi=110)
    plt.close(fig)


def digits_figures(out: str, steps: int, seed: int = 0) -> None:
    """8x8 digits: a label-conditional MLP with label dropout, CFG sweep, inpainting of masked halves.

    Prints the fraction of guided samples that a noise-conditional classifier (trained here,
    evaluated at t = eps) assigns to the requested class, for each guidance weight.
    """
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    from scoresde.conditional import ClassifierFreeGuidance
    from scoresde.data.images import image_grid
    from scoresde.models.conditional import LabelConditional
    from scoresde.models.mlp import MLP
    from scoresde.train.classifier import digits_data, train_classifier
    from scoresde.train.conditional import train_conditional

    Path(out).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    sde = sd.VPSDE()
    x, labels = digits_data()
    t0 = time.perf_counter()
    model = train_conditional(LabelConditional(MLP((1, 8, 8), width=256, depth=4), 10), x, labels, sde,
                              steps=steps, batch_size=128, seed=seed)
    print(f"conditional MLP: {steps} steps in {time.perf_counter() - t0:.0f} s")
    clf = train_classifier(x, labels, sde, steps=1500, seed=seed)
    cond_score = model.score_fn(sde)

    def show(imgs: torch.Tensor, nrow: int, path: str, title: str) -> None:
        grid = image_grid(imgs.clamp(-1, 1).float(), nrow=nrow)
        fig, ax = plt.subplots(figsize=(nrow * 0.6 + 0.4, grid.shape[1] / grid.shape[2] * nrow * 0.6 + 0.6))
        ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    per = 8
    rows = []
    for w in (0.0, 1.0, 3.0):
        imgs, correct = [], 0.0
        for c in range(10):
            s = ClassifierFreeGuidance(cond_score, c, w, null_label=model.null_label, n_classes=10)
            with torch.no_grad():
                r = solvers.sample(sde, s, (per, 1, 8, 8), "dpmpp_2m", steps=50, seed=c)
                pred = clf(r.samples, torch.full((per,), sde.eps)).argmax(1)
            correct += float((pred == c).float().mean()) / 10
            imgs.append(r.samples)
        rows.append((w, correct))
        show(torch.stack(imgs, 1).reshape(-1, 1, 8, 8), 10, f"{out}/digits_cfg_w{w:g}.png",
             f"classifier-free guidance w = {w:g} (columns: classes 0-9)")
        print(f"w = {w:g}: fraction classified as the requested class {correct:.3f}")

    # Inpainting: bottom half observed, top half sampled with the unconditional branch + replacement.
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, 4:] = True
    truth = x[torch.arange(10) * 37]
    null = torch.full((10,), model.null_label)

    def uncond(xx: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return cond_score(xx, t, null[: xx.shape[0]])

    with torch.no_grad():
        r = solvers.sample(sde, uncond, (10, 1, 8, 8), "euler_maruyama", steps=500, seed=seed,
                           after_step=Replacement(sde, mask, truth, seed=seed))
    masked = torch.where(mask, truth, torch.full_like(truth, -1.0))
    show(torch.cat([truth, masked, r.samples]), 10, f"{out}/digits_inpainting.png",
         "rows: original, observed bottom half, replacement inpainting (EM 500)")


def _table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="samples per row and per exact set")
    ap.add_argument("--only", choices=("imputation", "measurement", "guidance", "smc"), default=None)
    ap.add_argument("--figures", default=None, help="write the 2-D figures to this folder and exit")
    ap.add_argument("--digits", default=None, help="train on 8x8 digits, write the digits figures here and exit")
    ap.add_argument("--steps", type=int, default=3000, help="training steps for --digits")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.digits:
        digits_figures(args.digits, args.steps)
        return
    if args.figures:
        figures(args.figures, args.n)
        return
    keys = ["method", "solver", "nfe", "combined", "sw", "mmd", "modes", "spread", "wall"]
    if args.only in (None, "imputation"):
        for name, prob in (("imputation 2-D", P.imputation_2d), ("imputation 16-D", P.imputation_16d)):
            rows, floor = imputation(name, prob, args.n)
            print(f"\n### {name} (a second exact set scores {floor:.2f})\n\n" + _table(rows, keys), flush=True)
    if args.only in (None, "measurement"):
        for name, prob in (("measurement 2-D", P.measurement_2d), ("measurement 16-D", P.measurement_16d)):
            rows, floor = measurement(name, prob, args.n)
            print(f"\n### {name} (a second exact set scores {floor:.2f})\n\n" + _table(rows, keys), flush=True)
    if args.only in (None, "smc"):
        rows = particle_filter(args.n)
        print("\n### particle filter (Euler-Maruyama proposal with the unconditional score)\n\n"
              + _table(rows, ["problem", "nfe", "resamples", "combined", "sw", "mmd", "modes", "spread", "wall"]),
              flush=True)
    if args.only in (None, "guidance"):
        keys = ["w", "nfe", "combined", "mean_p_c", "mean_x1", "rel_within_var", "sw", "mmd", "modes", "spread", "wall"]
        for title, cm in (("eight Gaussians, class 1 = modes at 90 and 135 degrees", None),
                          ("two overlapping classes, class 1 = N((0.5, 0), 0.5^2 I)", overlapping_classes())):
            rows, floor = guidance(args.n, cm)
            print(f"\n### classifier guidance, exact p_t(c|x): {title} (a second exact set scores {floor:.2f})\n\n"
                  + _table(rows, keys), flush=True)


if __name__ == "__main__":
    main()
