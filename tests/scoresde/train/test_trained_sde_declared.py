"""A trained model's score knows the SDE it belongs to.

An outside study built ``model.score_fn(sde)`` for a VP-trained network with a sub-VP SDE in
hand and got a plausible but wrong likelihood (NLL 1.63 against the VP model's 1.21), and a
VE-trained network under VP gave NLL 38634, with no warning: the CLI and ``load_model(path,
sde=...)`` refused the mismatch, the documented Python path did not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.likelihood import log_likelihood
from scoresde.train import load_model, train_toy


@pytest.fixture(scope="module")
def vp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vp_run")
    train_toy("eight_gaussians", sde=sd.VPSDE(), steps=2, out_dir=out, progress=False)
    return out


def test_score_fn_refuses_an_sde_other_than_the_training_one(vp_run: Path) -> None:
    model, sde, _ = load_model(vp_run)
    for other in (sd.SubVPSDE(), sd.VESDE(), sd.VPSDE(beta_max=10.0)):
        with pytest.raises(ValueError, match=r"this model was trained under .*VPSDE.*, but score_fn was given"):
            model.score_fn(other)
    model.score_fn(sd.VPSDE())  # another instance with the same marginals is the same process
    model.score_fn(sd.VPSDE(eps=1e-5))


def test_the_trainer_s_model_knows_its_sde_too(tmp_path: Path) -> None:
    model, _ = train_toy("eight_gaussians", sde=sd.VESDE(), steps=2, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="this model was trained under"):
        model.score_fn(sd.VPSDE())


def test_a_score_built_for_one_sde_is_refused_beside_another(vp_run: Path) -> None:
    model, sde, _ = load_model(vp_run)
    score = model.score_fn(sde)
    assert score.sde is sde  # type: ignore[attr-defined]
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="the score was made for"):
        log_likelihood(sd.SubVPSDE(), score, x)
    with pytest.raises(ValueError, match="the score was made for"):
        solvers.sample(sd.VESDE(), score, shape=(8, 2), solver="dpmpp_2m", steps=5, seed=0)


def test_an_exact_mixture_score_declares_its_sde() -> None:
    target = sd.targets.eight_gaussians()
    score = target.score_fn(sd.VESDE())
    with pytest.raises(ValueError, match=r"the score was made for .*VESDE.*not for the sde given, VPSDE"):
        solvers.sample(sd.VPSDE(), score, shape=(8, 2), solver="ddim", steps=5, seed=0)
    r = solvers.sample(sd.VESDE(), score, shape=(8, 2), solver="ddim", steps=5, seed=0)
    assert torch.isfinite(r.samples).all()


def test_a_hand_built_model_is_not_checked_against_a_training_sde() -> None:
    # No trained_sde: nothing to compare with, so any SDE is accepted (as before).
    model = sd.models.ModelConfig().build(seed=0)
    assert model.trained_sde is None
    model.score_fn(sd.VESDE())


def test_an_eps_below_the_training_range_is_warned_about(vp_run: Path) -> None:
    # The same study ran `likelihood --eps 1e-5` on a network trained from t = 1e-3: the ODE ran
    # on [1e-05, 1] without a word, though by default it stops at the training range.
    import warnings

    model, sde, _ = load_model(vp_run)
    score = model.score_fn(sde)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    fast = dict(integrator="rk4", grid="uniform", steps=2)
    with pytest.warns(UserWarning, match=r"eps = 1e-05 is below the earliest time the network was trained at \(0\.001\)"):
        log_likelihood(sde, score, x, eps=1e-5, **fast)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_likelihood(sde, score, x, eps=1e-3, **fast)


def test_the_elbo_warns_below_the_training_range_too(vp_run: Path) -> None:
    from scoresde.likelihood import elbo

    model, sde, _ = load_model(vp_run)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"eps = 1e-05 is below the earliest time the network was trained at"):
        elbo(sde, model.score_fn(sde), x, n_samples=4, eps=1e-5, seed=0)
