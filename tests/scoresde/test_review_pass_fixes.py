"""Defects found by an outside review of the conditional, image-data, likelihood and prior-offset
changes, and by a likelihood user's pass; each test failed on the code before its fix."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli import main

# --- conditional: Python lists keep float64 ----------------------------------------------------

def test_lists_are_read_in_float64_not_rounded_through_float32() -> None:
    from scoresde.conditional.checks import as_tensor

    y = as_tensor([0.1, 16777217.0], "y", torch.float64)
    assert y.dtype == torch.float64
    assert y[0].item() == 0.1 and y[1].item() == 16777217.0  # float32 gave 0.10000000149, 16777216
    with pytest.raises(TypeError, match="real numbers"):
        as_tensor([1 + 2j], "y", torch.float64)


def test_reference_allows_rounding_relative_to_the_samples_size() -> None:
    # The allowance for float32 samples on a noiseless constraint scaled with the constraint's
    # value, not with |x|: exact float32 samples near 1000 scored 44 times the floor.
    import scoresde as sd
    from scoresde.conditional import ConditionalReference, condition_on_measurement
    from scoresde.targets import GaussianMixture

    sde = sd.VESDE(sigma_max=2000)
    c = 1000.0
    mix = GaussianMixture([[c, c], [c + 1, c - 1]], [0.5, 0.5])
    post = condition_on_measurement(mix, torch.tensor([[1.0, -1.0]], dtype=torch.float64),
                                    torch.tensor([0.001], dtype=torch.float64))
    ref = ConditionalReference(post, sde, 0.0, n=500, repeats=2)
    ex = post.sample_marginal(500, sde, 0.0, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    scores = ref.evaluate(ex.float())
    assert scores["constraint"] < 1.0 and scores["combined"] < 3.0
    # a real violation still shows: samples moved off the constraint by 1e-2
    off = ex.clone()
    off[:, 0] += 1e-2
    assert ref.evaluate(off)["constraint"] > 10.0


# --- images ----------------------------------------------------------------------------------

def test_image_size_accepts_an_array_of_sizes() -> None:
    from scoresde.data.folder import _size

    assert _size(np.array([8, 6])) == (8, 6)
    assert _size(torch.tensor([4, 5])) == (4, 5)
    for bad in ((1, 2, 3), np.array([8])):
        with pytest.raises(ValueError, match="pair"):
            _size(bad)


def test_integer_levels_tells_raw_pixel_levels_from_scaled_data() -> None:
    from scoresde.data.arrays import integer_levels

    assert integer_levels(torch.tensor([[0.0, 255.0, 3.0]])) == 256
    assert integer_levels(torch.tensor([[0, 1000]], dtype=torch.int64)) == 65536
    assert integer_levels(torch.tensor([[-1.0, 1.0, 0.0]])) is None  # images on [-1, 1]
    assert integer_levels(torch.tensor([[0.0, 1.0]])) is None  # binary / [0, 1]
    assert integer_levels(torch.tensor([[0.5, 200.0]])) is None  # not whole numbers


def test_training_on_raw_pixel_levels_warns(tmp_path: Path) -> None:
    from scoresde.train import Trainer, digits_config

    k = np.random.default_rng(0).integers(0, 256, size=(8, 1, 4, 4), dtype=np.uint8)
    path = tmp_path / "u8.npy"
    np.save(path, k)
    cfg = digits_config(data=str(path), data_shape=(1, 4, 4), steps=1)
    with pytest.warns(UserWarning, match="raw pixel levels"):
        Trainer(cfg, progress=False)
    scaled = tmp_path / "scaled.npy"
    np.save(scaled, k.astype(np.float32) / 127.5 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Trainer(digits_config(data=str(scaled), data_shape=(1, 4, 4), steps=1), progress=False)


_FAST = ["--integrator", "rk4_simpson", "--steps", "2", "--grid", "uniform", "--no-progress"]


def test_bpd_of_a_run_trained_on_raw_levels_uses_those_levels(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # A run trained on a uint8 file learns 0..255 as they are; --bpd mapped that same file onto
    # [-1, 1] without a word (and its own data were refused as "not on the grid of [-1, 1]").
    k = np.random.default_rng(1).integers(0, 256, size=(6, 1, 4, 4), dtype=np.uint8)
    path = tmp_path / "u8.npy"
    np.save(path, k)
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), "--steps", "1", "--batch-size", "2", "--out", str(run),
                 "--channels", "8", "--no-progress"]) == 0
    assert "raw pixel levels" in capsys.readouterr().err
    for extra in (["--data", str(path)], ["--n", "2"]):
        assert main(["likelihood", "--checkpoint", str(run), "--bpd", "--divergence", "hutchinson",
                     *extra, *_FAST]) == 0
        assert "data range [0, 255]" in capsys.readouterr().out


def test_bpd_warns_when_the_model_was_trained_on_another_scale(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = np.random.default_rng(2).normal(size=(64, 2)) * 3.0  # spans about [-9, 9]
    path = tmp_path / "pts.npy"
    np.save(path, data)
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), "--steps", "1", "--out", str(run), "--no-progress"]) == 0
    levels = tmp_path / "k.npy"
    np.save(levels, np.random.default_rng(3).integers(0, 256, size=(4, 2), dtype=np.uint8))
    capsys.readouterr()
    assert main(["likelihood", "--checkpoint", str(run), "--data", str(levels), "--bpd", *_FAST]) == 0
    out = capsys.readouterr()
    assert "trained on another scale" in out.err
    assert "every row of k.npy" in out.out  # a file is scored whole: the label says so


# --- likelihood ----------------------------------------------------------------------------------

def test_prior_warning_of_scored_points_says_they_stand_in_for_the_data() -> None:
    import scoresde as sd
    from scoresde.likelihood import log_likelihood

    target = sd.targets.eight_gaussians()
    sde = sd.VESDE()
    with pytest.warns(UserWarning, match="the points scored have root-mean-square") as rec:
        log_likelihood(sde, target.score_fn(sde), torch.tensor([[60.0, 0.0]]), integrator="rk4", steps=4)
    assert any(Path(w.filename).resolve() == Path(__file__).resolve() for w in rec)  # the caller's line


def test_out_refuses_another_runs_settings_file_and_names_its_columns(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = ["likelihood", "--target", "eight_gaussians", "--n", "6", *_FAST]
    assert main([*base, "--out", str(tmp_path / "r.csv")]) == 0
    settings = tmp_path / "r.json"
    before = settings.read_text()
    assert main([*base, "--out", str(settings)]) == 2
    assert "settings file of the run that wrote r.csv" in capsys.readouterr().err
    assert settings.read_text() == before  # not overwritten
    assert main([*base, "--divergence", "hutchinson", "--probes", "3", "--out", str(tmp_path / "h.npy")]) == 0
    cols = json.loads((tmp_path / "h.json").read_text())["columns"]
    assert cols[:2] == ["log_prob", "log_prob_std_err"]
    assert np.load(tmp_path / "h.npy").shape == (6, len(cols))


# --- training: resuming a run from its data saved under another name ------------------------------

def test_resume_accepts_the_same_data_under_another_name(tmp_path: Path) -> None:
    from scoresde.data import load_data
    from scoresde.data.identity import data_identity
    from scoresde.train import TrainConfig, config_diff
    from scoresde.train.config import same_data

    arr = np.random.default_rng(4).normal(size=(32, 2))
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, arr)
    np.save(b, arr)
    ida, idb = (data_identity(load_data(p), name=p.name) for p in (a, b))
    assert same_data(ida, idb)
    run = tmp_path / "run"
    assert main(["train", "--data", str(a), "--steps", "2", "--out", str(run), "--no-progress"]) == 0
    saved = TrainConfig.from_json(run / "config.json")
    moved = TrainConfig.from_dict({**saved.to_dict(), "data": str(b), "data_id": idb})
    assert config_diff(saved, moved) == []
    assert main(["train", "--out", str(run), "--resume", "--config", str(run / "config.json"),
                 "--data", str(b), "--steps", "3", "--no-progress"]) == 0
    other = tmp_path / "c.npy"
    np.save(other, arr + 1.0)
    assert main(["train", "--out", str(run), "--resume", "--config", str(run / "config.json"),
                 "--data", str(other), "--steps", "4", "--no-progress"]) == 2  # other data: refused


# --- sampling: the prior-offset warning ----------------------------------------------------------

def test_edm_churn_level_does_not_depend_on_s_noise() -> None:
    # The churn shrinks an offset by restarting the flow from S_hat, whatever noise it adds:
    # with s_noise = 0 the level was 0 ("the ODE carries the offset", 0.40 predicted, 0.03 kept).
    import scoresde as sd
    from solvers.edm import EDMHeun

    sde = sd.VESDE(sigma_max=50)
    ts = torch.linspace(sde.T, sde.eps, 41, dtype=torch.float64)
    levels = [EDMHeun(s_churn=10.0, s_noise=s).reverse_level(0.0, sde, ts) for s in (0.0, 0.5, 1.0, 1.5)]
    assert levels[0] > 0.5 and max(levels) - min(levels) < 1e-12
    assert EDMHeun().reverse_level(0.0, sde, ts) == 0.0


def test_level_advice_solves_for_what_the_run_keeps() -> None:
    from solvers.prior_match import PRIOR_SHIFT_LIMIT
    from solvers.prior_warnings import _level_factor

    assert _level_factor(0.5, 0.0, 0.0) == pytest.approx(0.5 / PRIOR_SHIFT_LIMIT)  # ODE, narrow data
    for lam, r, kept in ((1.0, 0.05, 0.085), (0.3, 0.4, 0.2), (0.0, 0.5, 1.4)):
        k = _level_factor(kept, r, lam)
        after = kept * (r + (1 - r) * k * k) ** (-(1 + lam * lam) / 2)
        assert after == pytest.approx(PRIOR_SHIFT_LIMIT, rel=1e-9)


def test_stochastic_warning_quotes_what_the_run_keeps_and_a_level_that_fixes_it() -> None:
    import scoresde as sd
    import solvers
    from scoresde.targets import GaussianMixture

    mix = GaussianMixture([[20.0, 20.0]], [11.0])
    sde = sd.VESDE(sigma_max=50)
    with pytest.warns(RuntimeWarning, match="prior draw") as rec:
        r = solvers.sample(sde, mix.score_fn(sde), (2000, 2), "euler_maruyama", steps=100, seed=0)
    msg = next(str(w.message) for w in rec if "prior draw" in str(w.message))
    kept = float(msg.split("here about ")[1].split(" ")[0])
    assert kept == pytest.approx(r.stats["prior_shift_carried"], abs=0.006)
    level = float(msg.split("A noise level of about ")[1].split(" ")[0])
    assert 55 < level < 80  # the reverse SDE needs about 65 here; the ODE's rule said 393
    assert not math.isnan(kept)
