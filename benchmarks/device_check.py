"""Device check: every solver, likelihoods, training, conditional sampling and interop on one device.

Runs the library's main paths on ``DEVICE`` (e.g. ``cuda``) and prints one line per check:
``OK``, ``FAIL`` (an exception, with the end of its traceback) or ``BAD`` (ran, but a number is
off: a deterministic solver that differs from the CPU by more than 1e-6 from the same ``x_T``
in float64, a float32 run far worse than float64, a likelihood more than 2e-3 nats per point
(Hutchinson: 5e-2) from the exact ``log p_0``, a seeded run that does not repeat bit for bit).
Sample quality is the combined metric of `scoresde.quality.CombinedMetric` (1 = exact samples;
a 4-repeat floor, so single values up to ~3 are noise); the CPU comparisons need the CPU too.
Writes ``OUT/check.json``.

An earlier form of this script, with the same checks, ran on one H200 in about 3 minutes. Every
check there is OK after the two fixes it led to: resuming a GPU-trained run on the CPU, and
``--device`` for ``scoresde sample`` / ``likelihood``. ``--quick`` runs a subset in under a
minute on a CPU. Reproduce::

    python benchmarks/device_check.py cuda device_out
    python benchmarks/device_check.py cpu device_out --quick
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import scoresde as sd
import solvers
from scoresde.quality import CombinedMetric

if any(a in ("-h", "--help") for a in sys.argv[1:]):
    print(__doc__)
    raise SystemExit(0)
if len(sys.argv) < 3:
    raise SystemExit(__doc__)

DEV = torch.device(sys.argv[1])
OUT = sys.argv[2]
QUICK = "--quick" in sys.argv
N = 500 if QUICK else 2000
STEPS = 20 if QUICK else 40
results: list[dict[str, Any]] = []


def record(section: str, name: str, status: str, **info: Any) -> None:
    results.append({"section": section, "name": name, "status": status, **info})
    extra = " ".join(f"{k}={v}" for k, v in info.items() if k != "trace")
    print(f"{status:4s} {section:12s} {name:40s} {extra}", flush=True)
    if "trace" in info:
        print(info["trace"], flush=True)


def run_check(section: str, name: str, check: Callable[..., None], *args: Any) -> None:
    """Run ``check(*args)``; an exception is recorded as ``FAIL`` with the end of its traceback."""
    t0 = time.perf_counter()
    try:
        check(*args)
    except Exception as err:  # noqa: BLE001 - every failure is a finding of this script
        record(section, name, "FAIL", err=f"{type(err).__name__}: {str(err)[:300]}",
               trace="".join(traceback.format_exc().splitlines(True)[-6:]), s=round(time.perf_counter() - t0, 2))


# ---------------------------------------------------------------- solvers
target = sd.targets.sharp_8()
metric = CombinedMetric(target, N, repeats=4)
exact = target.sample(N, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
SDES = {"vp": sd.VPSDE(), "subvp": sd.SubVPSDE(), "ve": sd.VESDE()}
stochastic = {n for n in solvers.available() if solvers.get_solver(n).stochastic}
names = solvers.available()
if QUICK:
    names = names[:6] + ["ode_rk45", "torchsde_euler", "adaptive_sde"]


def check_solver(sde_name: str, sde: Any, name: str) -> None:
    """One solver on the device in float64 (against the CPU from the same ``x_T``) and float32."""
    score = target.score_fn(sde)
    t0 = time.perf_counter()
    x_T = sde.prior_sample((N, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r64 = solvers.sample(sde, score, solver=name, steps=STEPS, x_T=x_T.to(DEV), seed=1)
    assert r64.samples.device.type == DEV.type, f"samples on {r64.samples.device}"
    assert r64.samples.dtype == torch.float64, r64.samples.dtype
    info = {"nfe": r64.nfe}
    if name not in stochastic:
        rc = solvers.sample(sde, score, solver=name, steps=STEPS, x_T=x_T, seed=1)
        info["cpu_diff"] = f"{float((r64.samples.cpu() - rc.samples).abs().max()):.1e}"
    r32 = solvers.sample(sde, score, (N, 2), solver=name, steps=STEPS, seed=5, device=DEV)
    r32b = solvers.sample(sde, score, (N, 2), solver=name, steps=STEPS, seed=5, device=DEV)
    assert r32.samples.dtype == torch.float32 and r32.samples.device.type == DEV.type
    info["repro"] = bool(torch.equal(r32.samples, r32b.samples))
    m64 = metric(r64.samples.cpu().double(), exact)
    m32 = metric(r32.samples.cpu().double(), exact)
    info["m64"], info["m32"] = round(float(m64), 2), round(float(m32), 2)
    ok = torch.isfinite(r64.samples).all() and torch.isfinite(r32.samples).all() and info["repro"]
    bad = "cpu_diff" in info and float(info["cpu_diff"]) > 1e-6
    bad = bad or m32 > 3 * m64 + 5
    info["s"] = round(time.perf_counter() - t0, 2)
    record("solver", f"{sde_name}/{name}", "OK" if ok and not bad else "BAD", **info)


for sde_name, sde in SDES.items():
    for name in names:
        run_check("solver", f"{sde_name}/{name}", check_solver, sde_name, sde, name)

# chunked + progress + brownian noise + trajectories on device


def check_sampling_options() -> None:
    """Chunks, Brownian noise, trajectories, a progress bar and grid="auto" on the device."""
    sde = SDES["vp"]
    score = target.score_fn(sde)
    a = solvers.sample(sde, score, (N, 2), solver="dpmpp_2m", steps=20, seed=0, device=DEV, batch_size=N // 3)
    b = solvers.sample(sde, score, (N, 2), solver="dpmpp_2m", steps=20, seed=0, device=DEV)
    c = solvers.sample(sde, score, (N, 2), solver="euler_maruyama", steps=20, seed=0, device=DEV, noise="brownian",
                       keep_trajectory=True, progress=True)
    d = solvers.sample(sde, score, (N, 2), solver="pc", steps=20, seed=0, device=DEV, grid="auto")
    assert c.trajectory is not None and c.trajectory.device.type == DEV.type
    record("solver", "chunked/keep_trajectory/brownian", "OK", chunk_diff=f"{float((a.samples - b.samples).abs().max()):.1e}",
           auto_nfe=d.nfe)


run_check("solver", "chunked/keep_trajectory/brownian", check_sampling_options)


# ---------------------------------------------------------------- likelihood
LT = sd.targets.sharp_25()
XL = LT.sample(300 if QUICK else 1000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
EXACT_LP = LT.log_prob(XL)
LIKELIHOOD_OPTIONS: dict[str, dict[str, Any]] = {
    "default": {}, "fast": {"integrator": "rk4_simpson", "steps": "auto"},
    "hutchinson": {"divergence": "hutchinson", "seed": 0}, "chunked": {"batch_size": 256},
}


def check_likelihood(sde_name: str, label: str) -> None:
    """``log p_0`` on the device against the exact one (and against the CPU for two settings)."""
    from scoresde.likelihood import likelihood

    sde, kw = SDES[sde_name], LIKELIHOOD_OPTIONS[label]
    t0 = time.perf_counter()
    r = likelihood(sde, LT.score_fn(sde), XL.to(DEV), **kw)
    assert r.log_prob.device.type == DEV.type, r.log_prob.device
    err = float((r.log_prob.cpu() - EXACT_LP).mean())
    aerr = float((r.log_prob.cpu() - EXACT_LP).abs().mean())
    cdiff = None
    if label in ("default", "hutchinson"):  # Hutchinson's probes differ per device: large, by design
        rc = likelihood(sde, LT.score_fn(sde), XL, **kw)
        cdiff = f"{float((rc.log_prob - r.log_prob.cpu()).abs().max()):.1e}"
    bad = abs(err) > (0.05 if label == "hutchinson" else 2e-3)
    record("likelihood", f"{sde_name}/{label}", "BAD" if bad else "OK", mean_err=f"{err:.1e}",
           abs_err=f"{aerr:.1e}", cpu_diff=cdiff, s=round(time.perf_counter() - t0, 2))


def check_likelihood_extras() -> None:
    """float32 state, bits/dim and the ELBO on the device."""
    from scoresde.likelihood import bpd_from_log_prob, elbo, likelihood

    sde = SDES["vp"]
    r = likelihood(sde, LT.score_fn(sde), XL.float().to(DEV))
    bound = elbo(sde, LT.score_fn(sde), XL.to(DEV)[:200], n_samples=8, seed=0)
    bpd = bpd_from_log_prob(r.log_prob, 2)
    ok = bool(torch.isfinite(bound.elbo).all()) and bool(torch.isfinite(bpd).all())
    record("likelihood", "float32+bpd+elbo", "OK" if ok else "BAD",
           err32=f"{float((r.log_prob.double().cpu() - EXACT_LP).abs().mean()):.1e}")


for sde_name in ("vp", "ve"):
    for label in LIKELIHOOD_OPTIONS:
        run_check("likelihood", f"{sde_name}/{label}", check_likelihood, sde_name, label)
run_check("likelihood", "float32+bpd+elbo", check_likelihood_extras)


# ---------------------------------------------------------------- training
TMP = Path(tempfile.mkdtemp())


def check_toy_training() -> None:
    """Train on the device, load on the CPU and the device, resume on the CPU (another device type)."""
    from scoresde.train import Trainer, load_model, toy_config

    t0 = time.perf_counter()
    cfg = toy_config("eight_gaussians", steps=200, seed=0)
    cfg.device = str(DEV)
    trainer = Trainer(cfg, out_dir=TMP / "run", overwrite=True, progress=False)
    trainer.fit()
    trainer.close()
    m_cpu, sde, _ = load_model(TMP / "run", device="cpu")
    m_dev, _, _ = load_model(TMP / "run", device=DEV)
    x_T = sde.prior_sample((N, 2), generator=torch.Generator().manual_seed(0))
    on_dev = solvers.sample(sde, m_dev.score_fn(sde), solver="dpmpp_2m", steps=20, x_T=x_T.to(DEV))
    on_cpu = solvers.sample(sde, m_cpu.score_fn(sde), solver="dpmpp_2m", steps=20, x_T=x_T)
    more = toy_config("eight_gaussians", steps=250, seed=0)
    more.device = "cpu"
    resumed = Trainer(more, out_dir=TMP / "run", resume=True, progress=False)
    resumed.fit()
    resumed.close()
    record("train", "toy on device, load cpu + device, resume", "OK" if resumed.step == 250 else "BAD",
           dev_vs_cpu=f"{float((on_dev.samples.cpu() - on_cpu.samples).abs().max()):.1e}",
           resumed_step=resumed.step, s=round(time.perf_counter() - t0, 2))


def check_image_training() -> None:
    """The digits U-Net: a few steps on the device, then sampling there."""
    from scoresde.train import Trainer, digits_config, load_model

    t0 = time.perf_counter()
    cfg = digits_config(steps=50, seed=0)
    cfg.device = str(DEV)
    trainer = Trainer(cfg, out_dir=TMP / "img", overwrite=True, progress=False)
    trainer.fit()
    trainer.close()
    model, sde, _ = load_model(TMP / "img", device=DEV)
    r = solvers.sample(sde, model.score_fn(sde), (64, *cfg.model.data_shape), "dpmpp_2m", steps=20, seed=0,
                       device=DEV)
    record("train", "digits unet on device", "OK" if bool(torch.isfinite(r.samples).all()) else "BAD",
           shape=tuple(r.samples.shape), s=round(time.perf_counter() - t0, 2))


run_check("train", "toy on device, load cpu + device, resume", check_toy_training)
run_check("train", "digits unet on device", check_image_training)


# ---------------------------------------------------------------- conditional and interop
def check_conditional() -> None:
    """The exact conditional score, replacement and PiGDM on the device (x1 = 1 observed)."""
    from scoresde.conditional import ObservedCoordinates, PosteriorGuidance, Replacement

    sde = SDES["vp"]
    mix = sd.targets.eight_gaussians()
    mask = torch.tensor([True, False])
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    a = solvers.sample(sde, ObservedCoordinates(mix, mask, y).score_fn(sde), (N, 2), "dpmpp_2m", steps=30, seed=0,
                       dtype=torch.float64, device=DEV)
    b = solvers.sample(sde, mix.score_fn(sde), (N, 2), "euler_maruyama", steps=100, seed=0, dtype=torch.float64,
                       device=DEV, after_step=Replacement(sde, mask, y, seed=0))
    guided = PosteriorGuidance(mix.score_fn(sde), sde, mask, y, (2,), noise_std=0.0)
    c = solvers.sample(sde, guided, (N, 2), "euler_maruyama", steps=100, seed=0, device=DEV)
    x1 = [float(r.samples[:, 0].mean()) for r in (a, b, c)]
    record("conditional", "exact/replacement/pigdm on device", "OK" if max(abs(v - 1) for v in x1) < 0.05 else "BAD",
           x1=[round(v, 3) for v in x1])


def check_interop() -> None:
    """k-diffusion's denoiser wrapper and torchsde's sdeint through `ReverseTorchSDE` on the device."""
    import torchsde

    from scoresde.interop import kdiffusion as kd
    from scoresde.interop.torchsde_sde import ReverseTorchSDE

    sde = SDES["vp"]
    score = target.score_fn(sde)
    denoised = kd.denoiser_from_score(score, sde)(torch.randn(4, 2, device=DEV), torch.full((4,), 0.5, device=DEV))
    reverse = ReverseTorchSDE(sde, score, data_shape=(2,))
    x_T = sde.prior_sample((N, 2), generator=torch.Generator().manual_seed(0)).to(DEV)
    ts = reverse.times(torch.linspace(sde.T, sde.eps, 101)).to(DEV)
    ys = torchsde.sdeint(reverse, reverse.state(x_T), ts, method="euler", dt=float(ts[1] - ts[0]))
    xs = reverse.unstate(ys[-1])
    record("interop", "kdiffusion denoiser/torchsde sdeint on device", "OK",
           devices=[str(denoised.device), str(xs.device)], torchsde_m=round(float(metric(xs.cpu().double(), exact)), 2))


run_check("conditional", "exact/replacement/pigdm on device", check_conditional)
run_check("interop", "kdiffusion denoiser/torchsde sdeint on device", check_interop)

Path(OUT).mkdir(parents=True, exist_ok=True)
(Path(OUT) / "check.json").write_text(json.dumps(results, indent=1, default=str))
not_ok = [r for r in results if r["status"] != "OK"]
print(f"\n{len(results)} checks, {len(not_ok)} not OK")
