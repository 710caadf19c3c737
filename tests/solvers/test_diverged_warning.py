"""A run that blows up without NaN is reported (`solvers.sde_checks.warn_if_diverged`).

A user pass trained a VE model with sigma_max = 4 on data around (10, 10) and sampled it:
samples of size 1e6, written with exit code 0 and no message (the finite check only catches
NaN/inf). Here an outward-pointing "score" stands in for a network evaluated far from where it
was trained.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers.sde_checks import DIVERGED_FACTOR, warn_if_diverged


def test_a_run_that_blows_up_is_reported() -> None:
    sde = sd.VESDE(sigma_max=4.0)

    def repelling(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 3.0 * x / sde.marginal_coeffs(t)[1][:, None] ** 2  # the score's sign flipped, 3x

    with pytest.warns(RuntimeWarning, match=r"the samples reach \|x\| = .*sigma\(T\)/alpha\(T\) = 4.*diverged"):
        r = solvers.sample(sde, repelling, (64, 2), "euler_maruyama", steps=50, seed=0, dtype=torch.float64)
    assert torch.isfinite(r.samples).all() and float(r.samples.abs().max()) > DIVERGED_FACTOR * 4.0


@pytest.mark.parametrize("make_sde", [sd.VPSDE, sd.SubVPSDE, sd.VESDE])
def test_good_runs_and_large_legitimate_data_are_quiet(make_sde) -> None:
    sde = make_sde()
    target = sd.targets.sharp_8()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        solvers.sample(sde, target.score_fn(sde), (200, 2), "dpmpp_2m", steps=10, seed=0)
        solvers.sample(sde, target.score_fn(sde), (200, 2), "euler_maruyama", steps=50, seed=0, batch_size=64)
        alpha, sigma = sde.marginal_coeffs(torch.tensor([sde.T]))
        big = torch.full((3, 2), 0.9 * DIVERGED_FACTOR * float(sigma / alpha))  # large, but within the bound
        warn_if_diverged(big, sde)
    with pytest.warns(RuntimeWarning, match="diverged"):
        warn_if_diverged(big * 2, sde)


def test_nan_samples_of_a_run_without_the_finite_check_are_counted() -> None:
    # check_finite=False let a NaN score run on: every sample came back NaN, and nothing was said
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    exact = target.score_fn(sde)
    calls: list[int] = []

    def breaks_late(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        out = exact(x, t)
        if len(calls) > 5:
            out[:3] = float("nan")  # three samples break down
        return out

    with pytest.warns(RuntimeWarning, match=r"3 of 40 samples hold NaN or inf: the run broke down"):
        r = solvers.sample(sde, breaks_late, (40, 2), "ddim", steps=10, seed=0, check_finite=False)
    assert int((~torch.isfinite(r.samples)).any(dim=1).sum()) == 3
    # the finite rest is still checked for size
    bad = torch.full((4, 2), 2 * DIVERGED_FACTOR * 160.0)
    bad[0, 0] = float("inf")
    with pytest.warns(RuntimeWarning) as rec:
        warn_if_diverged(bad, sde)
    messages = [str(w.message) for w in rec]
    assert len(messages) == 2 and messages[0].startswith("1 of 4 samples hold NaN or inf")
    assert messages[1].startswith(f"the samples reach |x| = {2 * DIVERGED_FACTOR * 160.0:.3g}, more than")
