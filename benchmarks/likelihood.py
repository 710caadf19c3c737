"""Likelihood benchmark: accuracy, speed and Hutchinson variance against exact mixture densities.

With the exact score of a Gaussian mixture, the probability-flow ODE maps ``p_eps`` to ``p_T``
exactly, so ``target.marginal_log_prob(x, eps, sde)`` is the exact answer of the computation and
every error below is the integrator's (or the probes'), nothing else. The prior at ``T`` is the
exact ``p_T`` here (the ``N(0, I)`` mismatch is reported separately in ``accuracy``).

The reference approach is Song et al.'s likelihood code (``score_sde/likelihood.py``):
``scipy.integrate.solve_ivp(RK45, rtol = atol = 1e-5)`` on the flattened ``[x, log p]`` state in
float64 NumPy, the model in float32, the drift from a separate call, and the divergence from
their ``div_fn(x, t, v) = sum(grad(sum(F(x) * v), x) * v)``. With Hutchinson probes that is
one probe per solve; "with the exact divergence" sums ``div_fn`` over the basis vectors
``e_1 .. e_D``. `reference_log_likelihood` re-implements exactly that structure.

Sections (all in one process, timed side by side, one torch thread unless ``--threads``)::

    python benchmarks/likelihood.py                       # all sections, writes the figure
    python benchmarks/likelihood.py --sections speed      # 10,000 2-D points vs the reference
    python benchmarks/likelihood.py --sections mixtures   # every 2-D mixture preset
    python benchmarks/likelihood.py --sections sdes       # VP, sub-VP, VE, cosine
    python benchmarks/likelihood.py --sections sharp      # data density on sharp mixtures
    python benchmarks/likelihood.py --sections tolerance  # the default tolerance in 16-D and 32-D (~5 min)
    python benchmarks/likelihood.py --sections far        # points far from sharp data (minutes)
    python benchmarks/likelihood.py --sections outside    # the fast path and points outside the data (minutes)
    python benchmarks/likelihood.py --sections slack      # the default's per-sample re-solve: error, time
    python benchmarks/likelihood.py --sections inpilot    # the fast path with an outside point in its pilot (~15 min)
    python benchmarks/likelihood.py --sections population # the fast path with points spread around the data (~20 min)
    python benchmarks/likelihood.py --sections goal       # the default against its goal-less and x-only-goal predecessors (~10 min)
    python benchmarks/likelihood.py --sections reference  # steps="auto" with and without the goal in its pilot (~5 min)
    python benchmarks/likelihood.py --sections accuracy hutchinson figure
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.integrate
import torch
from torch import Tensor

import scoresde as sd
from scoresde.likelihood import integrators, pilot, runner
from scoresde.likelihood import likelihood as _likelihood
from scoresde.likelihood.flow import AugmentedFlow
from scoresde.targets import GaussianMixture

ROOT = Path(__file__).resolve().parents[1]


def likelihood(*args, **kw):  # type: ignore[no-untyped-def]
    """The sections before 'sharp' measure the ODE against the reference from the same start
    time, so they ask for ``log p_eps`` (``density="marginal"``) unless told otherwise."""
    kw.setdefault("density", "marginal")
    return _likelihood(*args, **kw)


# --- the reference approach --------------------------------------------------------------------
def reference_log_likelihood(
    sde: sd.AffineSDE,
    score_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    *,
    probes: Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    prior: Callable[[Tensor], Tensor] | None = None,
    eps: float | None = None,
) -> tuple[Tensor, int]:
    """Song et al.'s likelihood computation: ``(log p_eps(x): (B,), nfe)`` (``eps`` default ``sde.eps``).

    ``probes=None``: exact divergence as ``sum_i div_fn(x, t, e_i)``; else one Hutchinson probe
    ``(B, *D)`` fixed for the solve. The model runs in ``x``'s dtype (float32 in their code).
    """
    shape, b = tuple(x.shape), x.shape[0]
    dtype = x.dtype

    def drift_fn(xx: Tensor, t: Tensor) -> Tensor:
        # Probability-flow drift f - g^2 s / 2 (their rsde.sde(x, t)[0] with probability_flow=True).
        g2 = sde.diffusion(t) ** 2
        return sde.drift(xx, t) - (0.5 * g2).reshape(-1, *([1] * (xx.ndim - 1))) * score_fn(xx, t)

    def div_fn(xx: Tensor, t: Tensor, v: Tensor) -> Tensor:
        with torch.enable_grad():
            xx.requires_grad_(True)
            fn_v = torch.sum(drift_fn(xx, t) * v)
            grad_fn_v = torch.autograd.grad(fn_v, xx)[0]
        xx.requires_grad_(False)
        return torch.sum(grad_fn_v * v, dim=tuple(range(1, len(xx.shape))))

    if probes is None:
        d = int(np.prod(shape[1:]))
        vs = [torch.zeros(d, dtype=dtype).index_fill_(0, torch.tensor([i]), 1.0).reshape(shape[1:]).expand(shape)
              for i in range(d)]
    else:
        vs = [probes]
    nfe = 0

    def ode_func(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        sample = torch.from_numpy(y[:-b].reshape(shape)).type(dtype)
        vec_t = torch.ones(b, dtype=dtype) * t
        with torch.no_grad():
            drift = drift_fn(sample, vec_t).detach().numpy().reshape(-1)
        logp_grad = sum(div_fn(sample, vec_t, v) for v in vs).detach().numpy().reshape(-1)
        return np.concatenate([drift, logp_grad], axis=0)

    init = np.concatenate([x.detach().numpy().reshape(-1).astype(np.float64), np.zeros(b)])
    lo = sde.eps if eps is None else eps
    sol = scipy.integrate.solve_ivp(ode_func, (lo, sde.T), init, rtol=rtol, atol=atol, method="RK45")
    zp = sol.y[:, -1]
    z = torch.from_numpy(zp[:-b].reshape(shape))
    delta = torch.from_numpy(zp[-b:])
    prior_fn = sde.prior_log_prob if prior is None else prior
    return prior_fn(z) + delta, nfe


# --- a peer: torchdiffeq (FFJORD's integrator) ------------------------------------------------
def torchdiffeq_log_likelihood(
    sde: sd.AffineSDE, score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, *,
    rtol: float, atol: float, prior: Callable[[Tensor], Tensor],
) -> tuple[Tensor, int]:
    """``torchdiffeq.odeint(dopri5)`` on our augmented field (exact divergence): ``(log p, nfe)``.

    FFJORD's way of integrating the same ODE. torchdiffeq's dopri5 may evaluate the field a
    little past the end time (it steps over ``T`` and interpolates), so the time handed to
    the score is clipped to ``T``.
    """
    from torchdiffeq import odeint

    from scoresde.likelihood import AugmentedFlow

    flow = AugmentedFlow(sde, score_fn, tuple(x.shape[1:]))
    span = torch.tensor([sde.eps, sde.T], dtype=torch.float64)
    with torch.no_grad():
        y = odeint(lambda t, y: flow(min(float(t), sde.T), y), flow.pack(x), span,
                   rtol=rtol, atol=atol, method="dopri5")[-1]
    x_T, delta = flow.unpack(y)
    return prior(x_T) + delta[:, 0], flow.nfe


def have_torchdiffeq() -> bool:
    try:
        import torchdiffeq  # noqa: F401
    except ImportError:
        return False
    return True


# --- helpers ----------------------------------------------------------------------------------
def exact_setup(name: str, n: int, seed: int, sde: sd.AffineSDE) -> tuple:
    target = sd.targets.get_target(name)
    x = target.sample(n, generator=torch.Generator().manual_seed(seed))
    exact = target.marginal_log_prob(x.double(), sde.eps, sde)

    def p_T(z: Tensor) -> Tensor:
        return target.marginal_log_prob(z, sde.T, sde)

    return target, x, exact, p_T


def mean_abs(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def timed(fn: Callable[[], tuple[Tensor, int]]) -> tuple[Tensor, int, float]:
    start = time.perf_counter()
    lp, nfe = fn()
    return lp, nfe, time.perf_counter() - start


def ref(sde, score, x, prior, probes=None, eps=None) -> Callable[[], tuple[Tensor, int]]:
    def run() -> tuple[Tensor, int]:
        return reference_log_likelihood(sde, score, x, probes=probes, prior=prior, eps=eps)

    return run


def ours(sde, score, x, prior, **kw) -> Callable[[], tuple[Tensor, int]]:
    def run() -> tuple[Tensor, int]:
        r = likelihood(sde, score, x, prior=prior, **kw)
        return r.log_prob, r.score_calls

    return run


def table(rows: list[dict], cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    return head + "".join("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |\n" for r in rows)


# --- sections ---------------------------------------------------------------------------------
def section_accuracy(args: argparse.Namespace, out: dict) -> None:
    """Mean |error| over 1,000 points in 2-D and 16-D with the exact divergence."""
    sde = sd.VPSDE()
    rows = []
    for name in ("eight_gaussians", "high_dim_16"):
        target, x, exact, p_T = exact_setup(name, args.n_accuracy, 0, sde)
        score = target.score_fn(sde)
        runs = {
            "reference (scipy RK45 1e-5, Song et al.)": ref(sde, score, x, p_T),
            "ours default (torch dopri5, 1e-5)": ours(sde, score, x, p_T),
            "ours rk4, auto grid, 32 steps": ours(sde, score, x, p_T, integrator="rk4", steps=32),
            "ours rk4, auto grid, 16 steps": ours(sde, score, x, p_T, integrator="rk4", steps=16),
            "ours rk4_simpson, auto grid, 24 steps": ours(
                sde, score, x, p_T, integrator="rk4_simpson", steps=24),
            "ours rk4_simpson, auto grid, 16 steps (fast)": ours(
                sde, score, x, p_T, integrator="rk4_simpson", steps=16),
        }
        for label, fn in runs.items():
            lp, nfe, sec = timed(fn)
            rows.append({"target": name, "method": label, "NFE": nfe, "seconds": f"{sec:.2f}",
                         "mean abs err (nats)": f"{mean_abs(lp, exact):.2e}",
                         "max abs err": f"{float((lp.double() - exact).abs().max()):.2e}"})
        # The model's own prior N(0, I) instead of the exact p_T: the difference is the mismatch.
        r = likelihood(sde, score, x)
        mismatch = float((r.prior_log_prob.double() - p_T(r.x_T.double())).abs().mean())
        rows.append({"target": name, "method": "ours default, prior N(0, I) (model density)",
                     "NFE": r.score_calls, "seconds": f"{r.seconds:.2f}",
                     "mean abs err (nats)": f"{mean_abs(r.log_prob, exact):.2e}",
                     "max abs err": f"prior mismatch {mismatch:.1e}"})
        bias0 = float((exact - target.log_prob(x.double())).abs().mean())
        rows.append({"target": name, "method": "|log p_eps - log p_0| (not an error of the ODE)",
                     "mean abs err (nats)": f"{bias0:.2e}"})
    text = table(rows, ["target", "method", "NFE", "seconds", "mean abs err (nats)", "max abs err"])
    print("\n## accuracy (exact divergence, 1,000 points, exact p_T prior)\n\n" + text)
    out["accuracy"] = rows


def section_speed(args: argparse.Namespace, out: dict) -> None:
    """10,000 2-D points: reference vs ours, interleaved repeats, min and median wall time."""
    sde = sd.VPSDE()
    target, x, exact, p_T = exact_setup("eight_gaussians", args.n_speed, 0, sde)
    score = target.score_fn(sde)
    runs = {
        "reference: scipy RK45 1e-5 + Song et al. div_fn over e_i": ref(sde, score, x, p_T),
        "scipy RK45 1e-5 + our divergence (one forward, D backward)": ours(
            sde, score, x, p_T, integrator="rk45", rtol=1e-5, atol=1e-5),
        f"ours: rk4_simpson on auto grid, {args.speed_steps} steps (pilot: 256 pts, dopri5 1e-5)": ours(
            sde, score, x, p_T, integrator="rk4_simpson", steps=args.speed_steps),
        f"ours: classic rk4 on auto grid, {args.speed_steps} steps (same pilot)": ours(
            sde, score, x, p_T, integrator="rk4", steps=args.speed_steps),
        "ours: torch dopri5 1e-4": ours(sde, score, x, p_T, integrator="dopri5", rtol=1e-4, atol=1e-4),
    }
    if have_torchdiffeq():  # the benchmark-only 'peers' extra
        for tol in (1e-4, 1e-5):
            runs[f"peer: torchdiffeq dopri5 {tol:g} + our divergence (FFJORD-style)"] = (
                lambda tol=tol: torchdiffeq_log_likelihood(sde, score, x, rtol=tol, atol=tol, prior=p_T))
    times: dict[str, list[float]] = {k: [] for k in runs}
    info: dict[str, tuple[int, float]] = {}
    for _ in range(args.repeats):
        for label, fn in runs.items():
            lp, nfe, sec = timed(fn)
            times[label].append(sec)
            info[label] = (nfe, mean_abs(lp, exact))
    base = next(iter(runs))
    rows = []
    for label in runs:
        t_min, t_med = min(times[label]), statistics.median(times[label])
        rows.append({"method": label, "NFE": info[label][0],
                     "mean abs err (nats)": f"{info[label][1]:.2e}",
                     "min s": f"{t_min:.2f}", "median s": f"{t_med:.2f}",
                     "speed-up (min)": f"{min(times[base]) / t_min:.2f}x",
                     "speed-up (median)": f"{statistics.median(times[base]) / t_med:.2f}x"})
    text = table(rows, ["method", "NFE", "mean abs err (nats)", "min s", "median s",
                        "speed-up (min)", "speed-up (median)"])
    print(f"\n## speed ({args.n_speed} points, eight_gaussians, float32, {args.repeats} interleaved repeats)\n\n" + text)
    out["speed"] = rows


def section_hutchinson(args: argparse.Namespace, out: dict) -> None:
    """32-D: one probe fixed per solve vs fresh probes per evaluation, at matched wall time."""
    sde = sd.VPSDE()
    target, x, exact, p_T = exact_setup("high_dim_32", args.n_hutch, 0, sde)
    score = target.score_fn(sde)
    g = torch.Generator().manual_seed(1)
    rad = torch.randint(0, 2, x.shape, generator=g).to(x.dtype) * 2 - 1
    gauss = torch.randn(x.shape, generator=g)
    runs: dict[str, Callable[[], tuple[Tensor, int]]] = {
        "reference: scipy RK45 1e-5, 1 Rademacher probe per solve (Song et al.)": ref(sde, score, x, p_T, rad),
        "reference: scipy RK45 1e-5, 1 Gaussian probe per solve (Song et al.)": ref(sde, score, x, p_T, gauss),
    }
    hutch = dict(divergence="hutchinson", integrator="rk4", grid="quadratic", seed=1)
    for steps in args.hutch_steps:
        runs[f"1 Rademacher probe fixed per solve, rk4 {steps} steps"] = ours(
            sde, score, x, p_T, steps=steps, **hutch)
        runs[f"ours: 1 probe, fresh per evaluation, rk4 {steps} steps"] = ours(
            sde, score, x, p_T, steps=steps, probe_refresh="eval", **hutch)
        runs[f"ours: 4 probes, fresh per evaluation, rk4 {steps} steps"] = ours(
            sde, score, x, p_T, steps=steps, probe_refresh="eval", n_probes=4, **hutch)
        runs[f"ours: 4 probes, fresh per evaluation, rk4_simpson {steps} steps"] = ours(
            sde, score, x, p_T, steps=steps, probe_refresh="eval", n_probes=4,
            **{**hutch, "integrator": "rk4_simpson"})
    runs["exact divergence (32 backward passes), rk4 32 steps"] = ours(
        sde, score, x, p_T, integrator="rk4", grid="quadratic", steps=32)
    times: dict[str, list[float]] = {k: [] for k in runs}
    errs: dict[str, Tensor] = {}
    nfes: dict[str, int] = {}
    for _ in range(args.repeats):
        for label, fn in runs.items():
            lp, nfe, sec = timed(fn)
            times[label].append(sec)
            errs[label], nfes[label] = lp.double() - exact, nfe
    base = next(iter(runs))
    rows = []
    for label in runs:
        err = errs[label]
        se = float(err.std() / math.sqrt(err.numel()))
        rows.append({"method": label, "NFE": nfes[label], "min s": f"{min(times[label]):.2f}",
                     "median s": f"{statistics.median(times[label]):.2f}",
                     "per-point mean abs err": f"{float(err.abs().mean()):.3f}",
                     "error vs 1-probe reference": f"{float(errs[base].abs().mean() / err.abs().mean()):.1f}x smaller"
                     if err.abs().mean() > 0 else "",
                     "mean signed err +- SE": f"{float(err.mean()):+.3f} +- {se:.3f}"})
    text = table(rows, ["method", "NFE", "min s", "median s", "per-point mean abs err",
                        "error vs 1-probe reference", "mean signed err +- SE"])
    print(f"\n## Hutchinson in 32-D ({args.n_hutch} points, high_dim_32, {args.repeats} interleaved repeats)\n\n" + text)
    out["hutchinson"] = rows


def section_figure(args: argparse.Namespace, out: dict) -> None:
    """Error vs NFE and vs wall time for the integrators (2-D and 16-D), saved under docs/figures/."""
    sde = sd.VPSDE()
    panels: list[dict] = []
    curves: dict[str, dict[str, list]] = {}
    setups = (("eight_gaussians", args.n_figure), ("high_dim_16", max(1, args.n_figure // 5)))
    for name, n in setups:
        target, x, exact, p_T = exact_setup(name, n, 0, sde)
        score = target.score_fn(sde)
        series: dict[str, list[tuple[int, float, float, str]]] = {}

        def add(label: str, r, tag: str, nfe: int | None = None, series=series, exact=exact) -> None:
            series.setdefault(label, []).append(
                (r.score_calls if nfe is None else nfe, mean_abs(r.log_prob, exact), r.seconds, tag))

        lp, nfe, sec = timed(ref(sde, score, x, p_T))
        series["reference (Song et al.: scipy RK45 1e-5)"] = [(nfe, mean_abs(lp, exact), sec, "1e-05")]
        for tol in (1e-3, 1e-4, 1e-5, 1e-6):
            add("scipy RK45, our divergence (rtol = atol)", likelihood(
                sde, score, x, prior=p_T, integrator="rk45", rtol=tol, atol=tol), f"{tol:g}")
            add("torch dopri5 (rtol = atol)", likelihood(
                sde, score, x, prior=p_T, integrator="dopri5", rtol=tol, atol=tol), f"{tol:g}")
        for steps in (8, 12, 16, 24, 32, 48):
            r = likelihood(sde, score, x, prior=p_T, integrator="rk4", steps=steps)
            # NFE of the main solve only; the pilot (256 points) is in the wall time.
            add("rk4, auto grid (steps; NFE of the main solve, + pilot on 256 points)", r, str(steps),
                nfe=r.score_calls - r.stats[0].get("pilot_nfe", 0))
            add("rk4, quadratic grid (steps)", likelihood(
                sde, score, x, prior=p_T, integrator="rk4", steps=steps, grid="quadratic"), str(steps))
            r = likelihood(sde, score, x, prior=p_T, integrator="rk4_simpson", steps=steps)
            add("rk4_simpson, auto grid (steps; NFE of the main solve, half of them with divergence)",
                r, str(steps), nfe=r.score_calls - r.stats[0].get("pilot_nfe", 0))
        for xlabel, pos in (("score evaluations (NFE)", 0), ("wall time [s], one torch thread", 2)):
            panels.append({
                "series": {k: [(p[pos], p[1], p[3]) for p in v] for k, v in series.items()},
                "xlabel": xlabel, "ylabel": "mean |log p error| [nats]", "threshold": 1e-3,
                "title": f"{name} ({target.dim}-D), {n} points"})
        curves[name] = {k: [list(p) for p in v] for k, v in series.items()}
    from scoresde.plotting import error_cost_figure, save_figure

    order = [panels[0], panels[2], panels[1], panels[3]]  # row 1: NFE, row 2: seconds
    fig = error_cost_figure(order, ncols=2, legend_title="point labels: steps or tolerance "
                            "(auto grids: NFE of the main solve, pilot in the wall time)")
    path = ROOT / "docs" / "figures" / "likelihood_error_vs_nfe.png"
    save_figure(fig, path, dpi=100)
    print(f"\n## figure\n\n{path}")
    out["figure"] = curves


def section_mixtures(args: argparse.Namespace, out: dict) -> None:
    """Every 2-D mixture preset: the reference vs rk4_simpson on the auto grid at several step counts."""
    sde = sd.VPSDE()
    rows = []
    for name in args.mixtures:
        target, x, exact, p_T = exact_setup(name, args.n_speed, 0, sde)
        score = target.score_fn(sde)
        runs = {"reference (scipy RK45 1e-5, Song et al.)": ref(sde, score, x, p_T)}
        for steps in args.mixture_steps:
            runs[f"rk4_simpson, auto grid, {steps} steps"] = ours(
                sde, score, x, p_T, integrator="rk4_simpson", steps=steps)
        chosen: dict[str, int] = {}

        def auto(score=score, x=x, p_T=p_T, sde=sde, chosen=chosen) -> tuple[Tensor, int]:
            r = likelihood(sde, score, x, prior=p_T, integrator="rk4_simpson", steps="auto",
                           target_error=args.target_error)
            chosen["steps"] = r.stats[0]["steps"]
            return r.log_prob, r.score_calls

        auto_label = f"rk4_simpson, steps='auto', target_error={args.target_error:g}"
        runs[auto_label] = auto
        times: dict[str, list[float]] = {k: [] for k in runs}
        info: dict[str, tuple[int, float]] = {}
        for _ in range(args.mixture_repeats):
            for label, fn in runs.items():
                lp, nfe, sec = timed(fn)
                times[label].append(sec)
                info[label] = (nfe, mean_abs(lp, exact))
        runs[f"{auto_label} (chose {chosen['steps']} steps)"] = runs.pop(auto_label)
        times[f"{auto_label} (chose {chosen['steps']} steps)"] = times.pop(auto_label)
        info[f"{auto_label} (chose {chosen['steps']} steps)"] = info.pop(auto_label)
        base = min(times[next(iter(runs))])
        for label in runs:
            rows.append({"target": name, "method": label, "NFE": info[label][0],
                         "mean abs err (nats)": f"{info[label][1]:.2e}",
                         "min s": f"{min(times[label]):.2f}",
                         "speed-up (min)": f"{base / min(times[label]):.2f}x"})
    text = table(rows, ["target", "method", "NFE", "mean abs err (nats)", "min s", "speed-up (min)"])
    print(f"\n## 2-D mixtures ({args.n_speed} points each, {args.mixture_repeats} interleaved repeats)\n\n" + text)
    out["mixtures"] = rows


def section_sdes(args: argparse.Namespace, out: dict) -> None:
    """Accuracy under every SDE of the package: the default (dopri5) and rk4_simpson at several steps."""
    rows = []
    for sde_name in ("vp", "subvp", "ve", "cosine"):
        sde = sd.get_sde(sde_name)
        for name, n in (("eight_gaussians", args.n_sdes), ("high_dim_16", max(1, args.n_sdes // 3))):
            target, x, exact, p_T = exact_setup(name, n, 0, sde)
            score = target.score_fn(sde)
            row = {"sde": sde_name, "target": name, "points": n}
            r = likelihood(sde, score, x, prior=p_T)
            row["default dopri5 (NFE)"] = f"{mean_abs(r.log_prob, exact):.1e} ({r.score_calls})"
            for steps in args.sde_steps:
                r = likelihood(sde, score, x, prior=p_T, integrator="rk4_simpson", steps=steps)
                row[f"rk4_simpson {steps}"] = f"{mean_abs(r.log_prob, exact):.1e}"
            rows.append(row)
    cols = ["sde", "target", "points", "default dopri5 (NFE)", *[f"rk4_simpson {s}" for s in args.sde_steps]]
    print("\n## every SDE (mean abs error in nats, exact divergence, exact p_T prior; auto grids)\n\n"
          + table(rows, cols))
    out["sdes"] = rows


# --- sharp targets: the data density log p_0 ---------------------------------------------------
def sharp_targets(dims: list[int]) -> list[GaussianMixture]:
    """Mixtures whose mode std is 1/25 (2-D) or 1/20 (higher D) of the neighbouring-mode distance.

    ``circle8``: 8 equal modes on a circle of radius 2; ``grid25``: 25 modes on the integer grid
    of [-2, 2]^2 with weights 1 .. 4; ``mixD``: 8 modes with standard normal means in D
    dimensions and weights 1 .. 2.
    """
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    circle = torch.stack([2.0 * ang.cos(), 2.0 * ang.sin()], dim=1)
    spacing = 2 * 2.0 * math.sin(math.pi / 8)
    g = torch.arange(-2, 3, dtype=torch.float64)
    out = [GaussianMixture(circle, spacing / 25, name="circle8"),
           GaussianMixture(torch.cartesian_prod(g, g), 1 / 25, torch.linspace(1, 4, 25, dtype=torch.float64),
                           name="grid25")]
    for d in dims:
        means = torch.randn(8, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
        nearest = float((torch.cdist(means, means) + 1e9 * torch.eye(8, dtype=torch.float64)).min())
        out.append(GaussianMixture(means, nearest / 20, torch.linspace(1, 2, 8, dtype=torch.float64),
                                   name=f"mix{d}"))
    return out


def section_sharp(args: argparse.Namespace, out: dict) -> None:
    """Data density log p_0 on sharp mixtures under VP, sub-VP, VE: bias and speed vs the reference.

    The reference approach (Song et al.: scipy RK45 1e-5, their divergence) runs from their
    likelihood end time 1e-5 and returns log p_{1e-5}; ours run with their defaults
    (``density="data"``: ODE from 1e-5 plus the analytic [0, 1e-5] term). Errors are against
    the mixture's exact log p_0; the prior is the exact p_T (the N(0, I) mismatch is separate).
    """
    rows = []
    for target in sharp_targets(args.sharp_dims):
        if args.sharp_names and target.name not in args.sharp_names:
            continue
        n = args.n_speed if target.dim <= 2 else args.n_sharp_hd
        x = target.sample(n, generator=torch.Generator().manual_seed(0))
        exact0 = target.log_prob(x.double())
        for sde_name in args.sharp_sdes:
            sde = sd.get_sde(sde_name)
            score = target.score_fn(sde)

            def p_T(z: Tensor, sde=sde, target=target) -> Tensor:
                return target.marginal_log_prob(z, sde.T, sde)

            chosen: dict[str, int] = {}

            def fast(sde=sde, score=score, x=x, p_T=p_T, chosen=chosen) -> tuple[Tensor, int]:
                r = _likelihood(sde, score, x, prior=p_T, integrator="rk4_simpson", steps="auto")
                chosen["steps"] = r.stats[0]["steps"]
                return r.log_prob, r.score_calls

            runs = {
                "reference (scipy RK45 1e-5, Song et al.) from t=1e-5": ref(sde, score, x, p_T, eps=1e-5),
                "ours default (dopri5 1e-5, goal, data density)": (
                    lambda sde=sde, score=score, x=x, p_T=p_T: _nfe(_likelihood(sde, score, x, prior=p_T))),
                "ours fast (rk4_simpson, steps='auto', data density)": fast,
            }
            times: dict[str, list[float]] = {k: [] for k in runs}
            info: dict[str, tuple[int, float]] = {}
            for _ in range(args.sharp_repeats):
                for label, fn in runs.items():
                    lp, nfe, sec = timed(fn)
                    times[label].append(sec)
                    info[label] = (nfe, mean_abs(lp, exact0))
            old = _likelihood(sde, score, x[: min(n, 2000)], prior=p_T, density="marginal")
            base = min(times[next(iter(runs))])
            for label in runs:
                tag = f" (chose {chosen['steps']} steps)" if label.startswith("ours fast") else ""
                rows.append({"target": f"{target.name} ({target.dim}-D)", "sde": sde_name, "points": n,
                             "method": label + tag, "NFE": info[label][0],
                             "mean abs err vs log p_0": f"{info[label][1]:.1e}",
                             "min s": f"{min(times[label]):.2f}",
                             "speed-up (min)": f"{base / min(times[label]):.2f}x"})
            rows.append({"target": f"{target.name} ({target.dim}-D)", "sde": sde_name, "points": min(n, 2000),
                         "method": f"old default: log p_eps at sde.eps={sde.eps:g} (density='marginal')",
                         "NFE": old.score_calls, "mean abs err vs log p_0": f"{mean_abs(old.log_prob, exact0[: old.log_prob.numel()]):.1e}"})
            print(table(rows[-4:], ["target", "sde", "points", "method", "NFE", "mean abs err vs log p_0",
                                    "min s", "speed-up (min)"]), flush=True)
    text = table(rows, ["target", "sde", "points", "method", "NFE", "mean abs err vs log p_0", "min s",
                        "speed-up (min)"])
    print(f"\n## sharp targets: the data density ({args.sharp_repeats} interleaved repeats)\n\n" + text)
    out["sharp"] = rows


def section_tolerance(args: argparse.Namespace, out: dict) -> None:
    """The default tolerance against the dimension: error of the default on sharp mixtures at
    its ``rtol = atol = 1e-5``, at ``1e-5 sqrt(2/d)`` (the default before the goal held the
    log-density column), at ``1e-5 * 2/d`` and with ``per_sample``."""
    rows = []
    targets = [t for t in sharp_targets([16]) if t.dim > 2] + [sd.targets.get_target("sharp_32d")]
    for sde_name in args.sharp_sdes:
        sde = sd.get_sde(sde_name)
        for target in targets:
            x = target.sample(500, generator=torch.Generator().manual_seed(1))
            exact = target.log_prob(x.double())

            def p_T(z: Tensor, sde=sde, target=target) -> Tensor:
                return target.marginal_log_prob(z, sde.T, sde)

            row = {"sde": sde_name, "target": f"{target.name} ({target.dim}-D)"}
            d = target.dim
            scaled = 1e-5 * math.sqrt(2.0 / d)
            for label, kw in (("default 1e-5", {}), ("1e-5 sqrt(2/d)", {"rtol": scaled, "atol": scaled}),
                              ("1e-5 * 2/d", {"rtol": 2e-5 / d, "atol": 2e-5 / d}), ("per_sample", {"per_sample": True})):
                r = _likelihood(sde, target.score_fn(sde), x, prior=p_T, **kw)
                row[label] = f"{mean_abs(r.log_prob, exact):.1e} ({r.score_calls})"
            rows.append(row)
            print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "tolerance", "default tolerance vs dimension (mean |error| per point (NFE), 500 points)")


def section_far(args: argparse.Namespace, out: dict) -> None:
    """Points far from sharp data, and whole sample sets: the log-density's own tolerance.

    The torch integrators hold the log-density column to ``atol`` per step
    (``AugmentedFlow.relative_weights``); "relative l (before)" puts it back under ``rtol |l|``
    like the data columns (as SciPy's integrators and the reference code do), by patching
    ``relative_weights`` to ones. Default settings otherwise, exact ``p_T`` prior, float64, VP.
    """
    from scoresde.likelihood import AugmentedFlow

    aniso = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], [[0.02, 0.3], [0.25, 0.03]], [0.8, 0.2], name="aniso")
    g = torch.Generator().manual_seed(0)
    cases = [("aniso: (5, 5) alone", aniso, torch.tensor([[5.0, 5.0]])),
             ("aniso: (5, 5) + 5 others", aniso, torch.cat([torch.tensor([[5.0, 5.0], [0.0, 0.0], [3.0, -2.0]]),
                                                            aniso.sample(3, generator=g)])),
             ("aniso: (2, 1.5), (2.5, 2)", aniso, torch.tensor([[2.0, 1.5], [2.5, 2.0]]))]
    for name, n in (("eight_gaussians", 1000), ("sharp_8", 1000), ("sharp_25", 4000), ("sharp_32d", 500)):
        t = sd.targets.get_target(name)
        cases.append((f"{name}: {n} samples", t, t.sample(n, generator=g)))
    sde = sd.get_sde("vp")
    original = AugmentedFlow.relative_weights
    rows = []
    for label, target, x in cases:
        x = x.double()
        exact = target.log_prob(x)

        def p_T(z: Tensor, target=target) -> Tensor:
            return target.marginal_log_prob(z, sde.T, sde)

        row = {"points": label, "exact log p_0 (min)": f"{float(exact.min()):.4g}"}
        for how, kw, patch in (("absolute l (default)", {}, False), ("relative l (before)", {}, True),
                               ("default + per_sample", {"per_sample": True}, False)):
            if patch:
                AugmentedFlow.relative_weights = lambda self, y: torch.ones(y.shape[1], dtype=y.dtype)  # type: ignore[method-assign]
            try:
                r = _likelihood(sde, target.score_fn(sde), x, prior=p_T, **kw)
            finally:
                AugmentedFlow.relative_weights = original  # type: ignore[method-assign]
            err = (r.log_prob - exact).abs()
            row[how] = f"{float(err.mean()):.2g} / {float(err.max()):.2g} ({r.score_calls})"
        rows.append(row)
        print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "far", "far points: mean / max |error| per point (NFE)")


def _outside_cases(sde):  # type: ignore[no-untyped-def]
    """Two-mode mixtures (modes at (+-1, 0), weights 0.8 / 0.2; equal, crossed and anisotropic
    stds) with 300 samples and one point outside them: yields ``(stds, point, target, x,
    exact log p_0, exact log p_T)``."""
    for stds in ([[0.03, 0.03], [0.03, 0.03]], [[0.02, 0.1], [0.1, 0.02]], [[0.03, 0.3], [0.25, 0.03]]):
        target = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], stds, [0.8, 0.2])
        for far in ([2.5, 2.0], [0.0, 3.0], [5.0, 5.0]):
            x = torch.cat([target.sample(300, generator=torch.Generator().manual_seed(0)).double(),
                           torch.tensor([far], dtype=torch.float64)])

            def p_T(z: Tensor, target=target) -> Tensor:
                return target.marginal_log_prob(z, sde.T, sde)

            yield stds, far, target, x, target.log_prob(x), p_T


def section_outside(args: argparse.Namespace, out: dict) -> None:
    """The fast path (``rk4_simpson``, ``steps="auto"``) and points far outside the data.

    Two-mode mixtures (weights 0.8 / 0.2, modes at (+-1, 0)) with 300 samples and one point
    outside them, ``pilot_size=64``; VP, exact ``p_T``, float64. "before" disables the
    adaptive re-solve of samples whose error indicator is above ``runner.OUTSIDE_FACTOR``
    times the largest the pilot measured; the default integrator is shown for comparison.
    """
    sde = sd.get_sde("vp")
    rows = []
    for stds, far, target, x, exact, p_T in _outside_cases(sde):
        row = {"mode stds": f"{stds[0]} / {stds[1]}", "point": str(tuple(far)),
               "exact log p_0": f"{float(exact[-1]):.0f}"}
        factor = runner.OUTSIDE_FACTOR
        for how, f in (("fast, before", math.inf), ("fast (default settings)", factor)):
            runner.OUTSIDE_FACTOR = f
            try:
                r = _likelihood(sde, target.score_fn(sde), x, prior=p_T, integrator="rk4_simpson",
                                steps="auto", pilot_size=64)
            finally:
                runner.OUTSIDE_FACTOR = factor
            err = (r.log_prob - exact).abs()
            row[how] = (f"{float(err[-1]):.2g} / {float(err[:-1].mean()):.1e} "
                        f"({r.score_calls}, {r.stats[0].get('redone_adaptive', 0)} redone)")
        r = _likelihood(sde, target.score_fn(sde), x, prior=p_T)
        err = (r.log_prob - exact).abs()
        row["default dopri5"] = f"{float(err[-1]):.2g} / {float(err[:-1].mean()):.1e} ({r.score_calls})"
        rows.append(row)
        print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "outside", "points outside the data: |error| of the point / mean |error| of the rest (NFE)")


def section_slack(args: argparse.Namespace, out: dict) -> None:
    """The default's re-solve of samples that took the batch norm's slack: error and wall time.

    ``runner.SAMPLE_ERROR_LIMIT = runner.STEP_ERROR_LIMIT = inf`` switches the re-solve off ("batch norm only");
    ``per_sample=True`` sizes every step for the worst sample. VP, exact ``p_T``, float64,
    fastest of ``--repeats`` interleaved runs.
    """
    sde = sd.get_sde("vp")
    rows = []
    limit, step_limit = runner.SAMPLE_ERROR_LIMIT, runner.STEP_ERROR_LIMIT
    for name, n in (("eight_gaussians", 10_000), ("sharp_25", 10_000), ("sharp_8", 1000), ("sharp_32d", 500)):
        target = sd.targets.get_target(name)
        x = target.sample(n, generator=torch.Generator().manual_seed(0)).double()
        exact = target.log_prob(x)

        def p_T(z: Tensor, target=target) -> Tensor:
            return target.marginal_log_prob(z, sde.T, sde)

        row = {"points": f"{name}: {n}"}
        cells: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for how, lim, kw in (("batch norm only", math.inf, {}), ("default (re-solve)", limit, {}),
                                 ("per_sample=True", limit, {"per_sample": True})):
                runner.SAMPLE_ERROR_LIMIT = lim
                runner.STEP_ERROR_LIMIT = step_limit if math.isfinite(lim) else math.inf
                try:
                    start = time.perf_counter()
                    r = _likelihood(sde, target.score_fn(sde), x, prior=p_T, **kw)
                    cells.setdefault(how, []).append(time.perf_counter() - start)
                finally:
                    runner.SAMPLE_ERROR_LIMIT, runner.STEP_ERROR_LIMIT = limit, step_limit
                err = (r.log_prob - exact).abs()
                redone = r.stats[0].get("redone_per_sample", "-")
                row[how] = f"{float(err.mean()):.1e} / {float(err.max()):.1e} ({r.score_calls}, {redone})"
        for how, times in cells.items():
            row[how] += f" {min(times):.2f} s"
        rows.append(row)
        print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "slack", "mean / max |error| per point (NFE, samples re-solved) wall time")


def section_inpilot(args: argparse.Namespace, out: dict) -> None:
    """The fast path when the point outside the data is in the pilot's sample (default ``pilot_size``).

    The ``outside`` section's mixtures and points, 300 samples plus the point: with the default
    ``pilot_size = 256`` the point is in the pilot in these runs (the table says so). "before"
    keeps it in (``pilot.OUTLIER_SHARE = inf``: no pilot sample is ever set aside); the default
    ``dopri5`` is shown for comparison. Error of the point / mean error of the rest, NFE,
    steps chosen, wall time (one run each).
    """
    sde = sd.get_sde("vp")
    rows = []
    share = pilot.OUTLIER_SHARE
    for stds, far, target, x, exact, p_T in _outside_cases(sde):
        row = {"mode stds": f"{stds[0]} / {stds[1]}", "point": str(tuple(far))}
        for how, f in (("fast, before", math.inf), ("fast (now)", share)):
            pilot.OUTLIER_SHARE = f
            try:
                start = time.perf_counter()
                r = _likelihood(sde, target.score_fn(sde), x, prior=p_T, integrator="rk4_simpson",
                                steps="auto")
                seconds = time.perf_counter() - start
            finally:
                pilot.OUTLIER_SHARE = share
            err = (r.log_prob - exact).abs()
            st = r.stats[0]
            aside = st.get("pilot_outliers", 0)
            row[how] = (f"{float(err[-1]):.2g} / {float(err[:-1].mean()):.1e} ({r.score_calls}, "
                        f"{st['auto_steps'][-1]['steps']} steps{f', {aside} set aside' if aside else ''}) "
                        f"{seconds:.1f} s")
        start = time.perf_counter()
        r = _likelihood(sde, target.score_fn(sde), x, prior=p_T)
        seconds = time.perf_counter() - start
        err = (r.log_prob - exact).abs()
        row["default dopri5"] = f"{float(err[-1]):.2g} / {float(err[:-1].mean()):.1e} ({r.score_calls}) {seconds:.1f} s"
        rows.append(row)
        print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "inpilot", "a point outside the data in the pilot's sample: |error| of the point / "
             "mean |error| of the rest (NFE, steps) wall time")


def section_population(args: argparse.Namespace, out: dict) -> None:
    """The fast path with several points outside the data, many of them in the pilot's sample.

    300 samples of the ``outside`` section's crossed and anisotropic mixtures plus 3 or 30
    points drawn uniformly from ``[-3, 3]^2`` (one generator, seed 3, in this order), default
    ``pilot_size``. "before" uses every ``steps="auto"`` count, met or not
    (``pilot.grid_fails`` always false); "now" solves adaptively where the count missed
    (``pilot.FALLBACK_FACTOR``, ``pilot.MAX_AUTO_STEPS``); the default ``dopri5`` is shown for
    comparison. Worst error among the points / mean error of the rest, NFE, steps tried, wall
    time (one run each).
    """
    sde = sd.get_sde("vp")
    rows = []
    g = torch.Generator().manual_seed(3)
    fails = pilot.grid_fails
    for stds in ([[0.02, 0.1], [0.1, 0.02]], [[0.03, 0.3], [0.25, 0.03]]):
        target = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], stds, [0.8, 0.2])

        def p_T(z: Tensor, target=target) -> Tensor:
            return target.marginal_log_prob(z, sde.T, sde)

        for k in (3, 30):
            points = torch.rand(k, 2, generator=g, dtype=torch.float64) * 6 - 3
            x = torch.cat([target.sample(300, generator=torch.Generator().manual_seed(0)).double(), points])
            exact = target.log_prob(x)
            row = {"mode stds": f"{stds[0]} / {stds[1]}", "points": str(k)}
            runs = (("fast, before", {"integrator": "rk4_simpson", "steps": "auto"}, True),
                    ("fast (now)", {"integrator": "rk4_simpson", "steps": "auto"}, False),
                    ("default dopri5", {}, False))
            for how, kw, before in runs:
                if before:
                    pilot.grid_fails = lambda *a: False  # type: ignore[assignment]
                try:
                    start = time.perf_counter()
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        r = _likelihood(sde, target.score_fn(sde), x, prior=p_T, **kw)
                    seconds = time.perf_counter() - start
                finally:
                    pilot.grid_fails = fails  # type: ignore[assignment]
                err = (r.log_prob - exact).abs()
                st = r.stats[0]
                steps = [h["steps"] for h in st.get("auto_steps", [])]
                notes = (f", {steps} steps" if steps else "") + (", adaptive" if st.get("auto_fallback") else "") + \
                    (", warned" if any(issubclass(w.category, RuntimeWarning) for w in caught) else "")
                row[how] = (f"{float(err[300:].max()):.2g} / {float(err[:300].mean()):.1e} ({r.score_calls}{notes}) "
                            f"{seconds:.0f} s")
            rows.append(row)
            print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "population", "points spread around the data: worst |error| among them / mean |error| "
             "of the rest (NFE, steps tried) wall time")


def narrow_mixture(d: int) -> GaussianMixture:
    """Five modes of std 0.01 at means `1.5 randn(d)` (seed d), weights 1 ... 5: std/spacing ~1/1000."""
    g = torch.Generator().manual_seed(d)
    means = torch.randn(5, d, generator=g, dtype=torch.float64) * 1.5
    weights = torch.arange(1, 6, dtype=torch.float64)
    return GaussianMixture(means.tolist(), [[0.01] * d] * 5, (weights / weights.sum()).tolist(),
                           name=f"narrow_{d}d")


def section_goal(args: argparse.Namespace, out: dict) -> None:
    """The default against the two before it: the state's norm alone, and the goal on `x` alone.

    * "5c3dd8a": `solve_adaptive` without `goal` (the state's norm alone), `rtol = atol =
      1e-5 sqrt(2/d)` above 2-D;
    * "5ffd8f0": the goal on `x` alone (`s . dx`; the log-density columns' weight 0), the same
      scaled tolerance;
    * "default": the goal on `s . dx` and the log-density columns, `rtol = atol = 1e-5`.

    300 points per target (seed 1), exact `p_T`, float64; mean error / mean |error| / max |error|
    (NFE, samples re-solved) and the fastest wall time of `--goal-repeats` interleaved runs.
    """
    real_solve, real_columns = integrators.solve_adaptive, AugmentedFlow.column_sensitivity

    def state_only(*a, **kw):  # type: ignore[no-untyped-def]
        kw.pop("goal", None)
        return real_solve(*a, **kw)

    def no_columns(self: AugmentedFlow, y: Tensor) -> Tensor:
        return torch.zeros_like(y[:, self.dim:])

    variants = (("5c3dd8a: state only, 1e-5 sqrt(2/d)", state_only, real_columns, True),
                ("5ffd8f0: goal on x, 1e-5 sqrt(2/d)", real_solve, no_columns, True),
                ("default: goal on x and log p, 1e-5", real_solve, real_columns, False))
    rows = []
    for sde_name in ("vp", "subvp", "ve"):
        sde = sd.get_sde(sde_name)
        for target in [sd.targets.get_target(n) for n in ("eight_gaussians", "sharp_8", "sharp_25", "high_dim_16",
                                                          "sharp_32d")] + [narrow_mixture(d) for d in (8, 16, 32)]:
            x = target.sample(300, generator=torch.Generator().manual_seed(1)).double()
            exact = target.log_prob(x)
            d = x[0].numel()
            scaled = 1e-5 * math.sqrt(2.0 / d) if d > 2 else 1e-5

            def p_T(z: Tensor, target=target, sde=sde) -> Tensor:
                return target.marginal_log_prob(z, sde.T, sde)

            row = {"SDE": sde_name, "target": target.name}
            times: dict[str, list[float]] = {}
            for _ in range(args.goal_repeats):
                for how, solve, columns, scale in variants:
                    integrators.solve_adaptive, AugmentedFlow.column_sensitivity = solve, columns  # type: ignore[method-assign]
                    try:
                        start = time.perf_counter()
                        r = _likelihood(sde, target.score_fn(sde), x, prior=p_T,
                                        **({"rtol": scaled, "atol": scaled} if scale else {}))
                        times.setdefault(how, []).append(time.perf_counter() - start)
                    finally:
                        integrators.solve_adaptive, AugmentedFlow.column_sensitivity = real_solve, real_columns  # type: ignore[method-assign]
                    err = r.log_prob - exact
                    row[how] = (f"{float(err.mean()):.1e} / {float(err.abs().mean()):.1e} / "
                                f"{float(err.abs().max()):.1e} ({r.score_calls}, {r.stats[0].get('redone_per_sample', '-')})")
            for how, ts in times.items():
                row[how] += f" {min(ts):.1f} s"
            rows.append(row)
            print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "goal", "mean error / mean |error| / max |error| (NFE, re-solved) wall time")


def six_narrow_modes(d: int, std: float, weights: list[float]) -> GaussianMixture:
    """Six modes of std `std` at means `1 + 2 randn(d)` (seed `d`) with the given weights."""
    g = torch.Generator().manual_seed(d)
    means = torch.randn(6, d, generator=g, dtype=torch.float64) * 2 + 1.0
    return GaussianMixture(means, std, torch.tensor(weights, dtype=torch.float64), name=f"six_{d}d_{std:g}")


def section_reference(args: argparse.Namespace, out: dict) -> None:
    """`steps="auto"`: its pilot (the trials' reference) with and without the goal on the answer.

    "state norm only": `pilot.REFERENCE_SHARE = inf` (the goal's weights are 0, the pilot of
    21aa4d2); "with the goal": the default, the answer held to a tenth of `target_error`. Six
    modes of std 0.01 / 0.02 at `1 + 2 randn(d)`, exact `p_T`, float64, one run each: steps
    chosen (a `*` where the stall warning was raised), NFE, seconds, mean |error| vs `log p_0`.
    """
    skewed = [0.5, 0.2, 0.15, 0.1, 0.04, 0.01]
    ramp = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    cases = [(8, 0.01, ramp, 100, "ve"), (16, 0.01, ramp, 100, "ve")]
    cases += [(16, 0.01, skewed, 300, s) for s in ("ve", "subvp", "vp")]
    cases += [(32, 0.02, skewed, 300, "ve")]
    cases += [(64, 0.02, skewed, 300, s) for s in ("ve", "subvp", "vp")]
    real = pilot.REFERENCE_SHARE
    rows = []
    for d, std, weights, n, sde_name in cases:
        target, sde = six_narrow_modes(d, std, weights), sd.get_sde(sde_name)
        x = target.sample(n, generator=torch.Generator().manual_seed(1)).double()
        exact = target.log_prob(x)

        def p_T(z: Tensor, target=target, sde=sde) -> Tensor:
            return target.marginal_log_prob(z, sde.T, sde)

        row = {"d, std, points": f"{d}, {std:g}, {n}", "weights": "1 .. 6" if weights == ramp else "0.5 .. 0.01",
               "SDE": sde_name}
        for how, share in (("state norm only", math.inf), ("with the goal", real)):
            pilot.REFERENCE_SHARE = share
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    start = time.perf_counter()
                    r = _likelihood(sde, target.score_fn(sde), x, prior=p_T, integrator="rk4_simpson", steps="auto")
                    sec = time.perf_counter() - start
            finally:
                pilot.REFERENCE_SHARE = real
            stalled = any("stalls" in str(w.message) for w in caught)
            row[how] = (f"{r.stats[0]['steps']}{'*' if stalled else ''} steps, {r.score_calls} NFE, {sec:.1f} s, "
                        f"{float((r.log_prob - exact).abs().mean()):.1e}")
        rows.append(row)
        print(table(rows[-1:], list(row)), flush=True)
    _summary(rows, out, "reference", "steps='auto': steps (* stall warning), NFE, seconds, mean |error| vs log p_0")


def _summary(rows: list[dict], out: dict, key: str, title: str) -> None:
    """Print the section's whole table under ``title`` and keep its rows in ``out[key]``."""
    print(f"\n## {title}\n\n" + table(rows, list(rows[0])))
    out[key] = rows


def _nfe(r) -> tuple[Tensor, int]:  # type: ignore[no-untyped-def]
    return r.log_prob, r.score_calls


SECTIONS = {"accuracy": section_accuracy, "speed": section_speed, "mixtures": section_mixtures,
            "sdes": section_sdes, "sharp": section_sharp, "tolerance": section_tolerance, "far": section_far,
            "outside": section_outside, "slack": section_slack, "inpilot": section_inpilot,
            "population": section_population, "goal": section_goal, "reference": section_reference,
            "hutchinson": section_hutchinson, "figure": section_figure}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--n-accuracy", type=int, default=1000)
    parser.add_argument("--n-speed", type=int, default=10_000)
    parser.add_argument("--speed-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats in 'speed'")
    parser.add_argument("--mixtures", nargs="*", default=[
        "eight_gaussians", "two_gaussians", "grid_25", "ring", "checker_mixture"])
    parser.add_argument("--mixture-steps", type=int, nargs="*", default=[12, 16, 20, 24])
    parser.add_argument("--mixture-repeats", type=int, default=2)
    parser.add_argument("--target-error", type=float, default=5e-4, help="for steps='auto' in 'mixtures'")
    parser.add_argument("--n-sdes", type=int, default=3000, help="2-D points per SDE (16-D: a third)")
    parser.add_argument("--sde-steps", type=int, nargs="*", default=[16, 24, 32])
    parser.add_argument("--n-hutch", type=int, default=500)
    parser.add_argument("--hutch-steps", type=int, nargs="*", default=[16, 32])
    parser.add_argument("--n-figure", type=int, default=10_000, help="2-D points (16-D: a fifth)")
    parser.add_argument("--sharp-dims", type=int, nargs="*", default=[16], help="dimensions of 'sharp' mixtures")
    parser.add_argument("--sharp-sdes", nargs="*", default=["vp", "subvp", "ve"])
    parser.add_argument("--sharp-names", nargs="*", default=[], help="only these sharp targets (default: all)")
    parser.add_argument("--n-sharp-hd", type=int, default=1000, help="points of the higher-D sharp mixtures")
    parser.add_argument("--sharp-repeats", type=int, default=2)
    parser.add_argument("--goal-repeats", type=int, default=1, help="interleaved repeats in 'goal'")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"threads": args.threads, "torch": torch.__version__}
    for name in args.sections:
        SECTIONS[name](args, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
