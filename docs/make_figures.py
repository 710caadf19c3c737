"""Regenerate the documentation gallery and the generated parts of the guide pages.

    python docs/make_figures.py            # everything (about 10 minutes on 2 CPU cores)
    python docs/make_figures.py --only gallery,tables
    python docs/make_figures.py --quick    # small sizes, a smoke test of this script

Writes ``docs/figures/`` and replaces the blocks between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` markers in ``docs/solvers.md`` (the solver table) and
``docs/comparisons.md`` (the comparison tables). The solver comparison caches its finished
cells under ``build/docs_compare/`` (not in the docs), so an interrupted run resumes and a
rerun after a change to one solver recomputes only that solver's cells.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

import scoresde as sd
import solvers
from scoresde import compare, plotting
from scoresde.plotting.report import safe_name

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GALLERY_SOLVERS = ("euler_maruyama", "pc", "ode_heun", "dpmpp_2m")
COMPARE_SOLVERS = ("euler_maruyama", "pc", "ode_euler", "ode_heun", "ddim", "dpmpp_2m", "unipc",
                   "ode_rk45")
COMPARE_TARGETS = ("eight_gaussians", "grid_25")
PARTS = ("gallery", "sdes", "compare", "tables")


def _available(names: tuple[str, ...], k: int | None = None) -> list[str]:
    """The wanted solvers that this build registers (others fill up to ``k``)."""
    avail = solvers.available()
    picked = [s for s in names if s in avail]
    if k is not None and len(picked) < k:
        picked += [s for s in compare.default_solvers(k + len(picked)) if s not in picked]
    return picked[:k] if k is not None else picked


def replace_block(path: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``."""
    src = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(src):
        raise ValueError(f"{path} has no <!-- {name}:begin/end --> markers")
    path.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), src),
                    encoding="utf-8")


def gallery(out: Path, quick: bool) -> None:
    """Trajectories, snapshots, fields and the animation for two exact targets."""
    n, steps = (600, 20) if quick else (5000, 100)
    for target_name, sde_name, which in (
        ("eight_gaussians", "vp", plotting.report.FIGURES),
        ("ring", "ve", ("solver_grid", "fields")),
    ):
        sde = sd.get_sde(sde_name)
        target = sd.targets.get_target(target_name)
        score = target.score_fn(sde)
        names = _available(GALLERY_SOLVERS, 4)
        results = compare.sample_solvers(sde, score, names, shape=(n, 2), steps=steps, seed=0,
                                         max_frames=61)
        x0 = target.sample(n, generator=torch.Generator().manual_seed(1))
        files = plotting.write_sampling_figures(
            out / f"{target_name}_{sde_name}", results, sde=sde, score=score, target=target, x0=x0,
            title=f"{target_name}, {type(sde).__name__}", which=which,
            fields_at=(1.0, 0.5, 0.2, 0.02) if sde_name == "ve" else (1.0, 0.3, 0.1, 0.01),
            gif_points=800, dpi=90 if quick else 110)
        print(f"gallery {target_name}/{sde_name}: {len(files)} files")


def sde_marginals(out: Path, quick: bool) -> None:
    """Exact noised marginals p_t of one target under the four SDEs (rows) at five times."""
    target = sd.targets.eight_gaussians()
    x = target.sample(4000, generator=torch.Generator().manual_seed(0))
    # Song & Ermon 2020, technique 1: the largest distance (suggest_sigma_max now also covers p_T's
    # variance, 9 here; the figure keeps the distance, 5, as docs/sdes.md says)
    sigma_max = round(sd.data.scale.max_pairwise_distance(x), 1)
    sdes = {"VP": sd.VPSDE(), "sub-VP": sd.SubVPSDE(),
            f"VE ($\\sigma_{{max}}$ = {sigma_max:g})": sd.VESDE(sigma_min=0.01, sigma_max=sigma_max),
            "cosine VP": sd.CosineVPSDE()}
    fracs = (0.0, 0.1, 0.25, 0.5, 1.0)
    fig, axes = plotting.get_axes_grid(None, len(sdes) * len(fracs), ncols=len(fracs), panel=2.0,
                                       extra_width=0.2)
    for i, (label, sde) in enumerate(sdes.items()):
        for j, f in enumerate(fracs):
            t = f * sde.T
            ax = axes[i * len(fracs) + j]
            plotting.plot_density(target, sde=sde if t > 0 else None, t=t if t > 0 else None, ax=ax,
                                  lims=(-4.0, 4.0), resolution=60 if quick else 110, cmap="Blues",
                                  title="")
            a, s = sde.marginal_coeffs(torch.tensor([max(t, 1e-12)], dtype=torch.float64))
            ax.text(0.97, 0.03, f"$\\alpha$ = {float(a):.2f}\n$\\sigma$ = {float(s):.2f}", ha="right",
                    va="bottom", transform=ax.transAxes, fontsize=7, linespacing=1.1,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
            if 3 * float(s) > 4.0 and float(a) < 1.5:  # the marginal is wider than the view
                ax.text(0.5, 0.95, f"$p_t$ reaches $\\pm${3 * float(s):.0f}:\nwider than this view",
                        ha="center", va="top", transform=ax.transAxes, fontsize=7,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
            ax.set_xticks([-3, 0, 3])
            ax.set_yticks([-3, 0, 3])
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"t = {f:g} T", fontsize=10)
            if j:
                ax.set_ylabel("")
                ax.set_yticklabels([])
            else:
                ax.set_ylabel(f"{label}\n$x_2$", fontsize=9)
            if i < len(sdes) - 1:
                ax.set_xlabel("")
                ax.set_xticklabels([])
    fig.suptitle("Exact noised marginals $p_t$ of eight_gaussians (each panel on its own colour scale, "
                 "square-root shading)", fontsize=10)
    plotting.save_figure(fig, out / "sde_marginals.png", dpi=80 if quick else 90)


def comparisons(out: Path, cache: Path, quick: bool) -> str:
    """The solver sweep on two targets; returns the Markdown tables."""
    names = _available(COMPARE_SOLVERS)
    # Sliced W2 is O(n log n): 10,000 samples keep its noise floor low enough to separate
    # solvers. (MMD and energy distance are O(n^2); the CLI offers them.)
    kw = {"steps": [5, 10, 20, 50, 100], "seeds": [0, 1, 2], "tolerances": [1e-2, 1e-3, 1e-4],
          "n": 10_000, "metrics": ["sliced_w2"], "floor_repeats": 32}
    if quick:
        kw.update(steps=[5, 20], seeds=[0, 1], tolerances=[1e-2], n=300, floor_repeats=2)
        names = names[:5]
    results = []
    for target in COMPARE_TARGETS:
        problem = compare.Problem.from_target(target, "vp")
        res = compare.run_comparison(problem, names, out=cache / safe_name(target), **kw)
        print(f"compare {target}: {res.computed} computed, {res.reused} reused")
        results.append(res)
    for metric in ("sliced_w2", "outlier_fraction"):
        for x in ("nfe", "seconds"):
            fig, axes = plotting.get_axes_grid(None, len(results), ncols=len(results), panel=4.6)
            for i, (r, ax) in enumerate(zip(results, axes, strict=True)):
                plotting.plot_metric_curves(r.records, metric, x=x, ax=ax, floor=r.floors.get(metric),
                                            title=f"{r.problem} (exact score, VP)",
                                            legend="outside" if i == len(results) - 1 else False)
            plotting.save_figure(fig, out / f"compare_{metric}_{x}.png", dpi=110)
    setup = (f"{kw['n']} samples per cell, seeds {kw['seeds']}, fixed-grid budgets {kw['steps']} "
             f"steps, adaptive tolerances {kw['tolerances']}; each solver's default grid and end-of-run step "
             f"(samples of p_0, scored against exact samples of p_0); mean ± std over seeds.")
    return setup + "\n\n" + "\n\n".join(f"### {r.problem}\n\n{r.table()}" for r in results)


def solver_table() -> str:
    rows = ["| name | summary | kind | order |", "|---|---|---|---|"]
    for name, line in solvers.summaries().items():
        cls = solvers.SOLVERS[name]
        kind = "adaptive" if getattr(cls, "adaptive", False) else "fixed grid"
        kind += ", stochastic" if getattr(cls, "stochastic", False) else ", deterministic"
        rows.append(f"| `{name}` | {line.replace('|', '/')} | {kind} | {getattr(cls, 'order', '')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts among {PARTS}")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test); writes to --out")
    parser.add_argument("--out", type=Path, default=DOCS / "figures", help="figure folder")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "docs_compare",
                        help="cache of the comparison cells")
    parser.add_argument("--no-pages", action="store_true", help="do not rewrite the generated page blocks")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        parser.error(f"unknown part(s) {bad}; valid: {PARTS}")
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    if "gallery" in parts:
        gallery(args.out, args.quick)
    if "sdes" in parts:
        sde_marginals(args.out, args.quick)
    if "compare" in parts:
        tables = comparisons(args.out, args.cache, args.quick)
        if not args.no_pages:
            replace_block(DOCS / "comparisons.md", "compare-tables", tables)
    if "tables" in parts and not args.no_pages:
        replace_block(DOCS / "solvers.md", "solver-table", solver_table())
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
