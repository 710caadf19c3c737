"""Fixes from a user pass over conditional sampling: resumable chunked runs with a conditioning
hook, per-sample observations and chunks, the classifier's data and dtype, particle-filter
solvers, 0/1 masks, non-numeric files and what ``samples.json`` records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde.cli import main
from scoresde.conditional import (
    ClassifierGuidance,
    LinearReplacement,
    ParticleFilter,
    PosteriorGuidance,
    Replacement,
)
from scoresde.train.classifier import mixture_data, train_classifier

VP = sd.VPSDE()
MIX = sd.targets.eight_gaussians()
SMALL = ["--width", "16", "--depth", "1", "--batch-size", "32", "--log-every", "5", "--no-progress"]
IMPUTE = ["sample", "--target", "eight_gaussians", "--solver", "euler_maruyama", "--steps", "20", "--n", "40",
          "--mask", "1,0", "--observed", "1.0,0", "--no-plot", "--no-progress"]


def _sample(tmp_path: Path, *flags: str, out: str = "o") -> int:
    return main(["sample", "--target", "eight_gaussians", "--steps", "10", "--n", "20", "--no-plot",
                 "--no-progress", "--out", str(tmp_path / out), *flags])


def _record(tmp_path: Path, out: str = "o") -> dict:
    return json.loads((tmp_path / out / "samples.json").read_text())["conditioning"]


# --- 1. resuming a chunked run with a conditioning hook ----------------------------------------
def test_interrupted_chunked_imputation_resumes_bit_for_bit(tmp_path, monkeypatch, capsys) -> None:
    args = [*IMPUTE, "--batch-size", "10"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = np.load(tmp_path / "whole" / "samples.npy")
    real, calls = solvers.sample, []

    def interrupted_in_third_chunk(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(solvers, "sample", interrupted_in_third_chunk)
    assert main([*args, "--out", str(tmp_path / "o")]) == 130
    monkeypatch.setattr(solvers, "sample", real)
    assert main([*args, "--out", str(tmp_path / "o")]) == 0  # a fresh Replacement hook: its state is restored
    assert "resumed: 2 finished chunk(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "samples.npy"), whole)


@pytest.mark.parametrize("make", [
    lambda: Replacement(VP, [True, False], [1.0, 0.0], seed=3),
    lambda: LinearReplacement(VP, [[1.0, 1.0]], [0.5], seed=3),
    lambda: ParticleFilter(MIX.score_fn(VP), VP, [True, False], [1.0, 0.0], (2,), noise_std=0.5, seed=3),
])
def test_hook_state_round_trips(make) -> None:
    hook, other = make(), make()
    x, t = torch.randn(64, 2), torch.full((64,), 0.5)
    hook(x, t)  # advance its generator
    state = hook.get_state()
    first = hook(x, t)
    other.set_state(torch.load(_saved(state), weights_only=True))  # what a chunk record stores
    torch.testing.assert_close(other(x, t), first, rtol=0, atol=0)


def _saved(state: dict) -> object:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_set_state_refuses_foreign_state() -> None:
    with pytest.raises(ValueError, match=r"Replacement.set_state needs the dict returned by Replacement.get_state"):
        Replacement(VP, [True, False], [1.0, 0.0], seed=0).set_state({"rng": 1})


# --- 2. per-sample observations and chunks ----------------------------------------------------
def test_per_sample_observations_need_one_row_per_sample_and_no_chunks(tmp_path, capsys) -> None:
    ten, twenty = tmp_path / "o10.npy", tmp_path / "o20.npy"
    np.save(ten, np.ones((10, 2)))
    np.save(twenty, np.ones((20, 2)))
    assert _sample(tmp_path, "--batch-size", "10", "--mask", "1,0", "--observed", str(ten)) == 2
    assert "--observed holds 10 observations" in capsys.readouterr().err  # was: chunk 2 silently reused rows 0..9
    assert _sample(tmp_path, "--batch-size", "10", "--mask", "1,0", "--observed", str(twenty)) == 2
    assert "drop --batch-size 10" in capsys.readouterr().err
    assert _sample(tmp_path, "--mask", "1,0", "--observed", str(twenty), "--impute", "pigdm") == 2
    assert "--impute replacement only" in capsys.readouterr().err
    assert _sample(tmp_path, "--mask", "1,0", "--observed", str(twenty)) == 0  # unchunked: fine


# --- 3 and 5a. a trained classifier with a checkpoint: its data is checked, its dtype fits ------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for dtype in ("float32", "float64"):
        assert main(["train", "--data", "eight_gaussians", "--steps", "5", "--dtype", dtype,
                     "--out", str(root / dtype), *SMALL]) == 0
    for data in ("grid_25", "eight_gaussians"):
        assert main(["train-classifier", "--target", data, "--steps", "5", "--out", str(root / f"{data}.pt")]) == 0
    return root


def test_classifier_of_other_data_is_warned_about_with_a_checkpoint(runs, tmp_path, capsys) -> None:
    assert main(["sample", "--checkpoint", str(runs / "float32"), "--class", "1", "--classifier",
                 str(runs / "grid_25.pt"), "--steps", "10", "--n", "10", "--no-plot", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 0
    assert "trained for data 'grid_25' (here: 'eight_gaussians')" in capsys.readouterr().err


def test_float32_classifier_guides_a_float64_run(runs, tmp_path) -> None:
    assert main(["sample", "--checkpoint", str(runs / "float64"), "--class", "1", "--classifier",
                 str(runs / "eight_gaussians.pt"), "--steps", "5", "--n", "10", "--no-plot", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 0
    assert np.load(tmp_path / "o" / "samples.npy").dtype == np.float64


def test_classifier_dtype_mismatch_is_a_clear_error() -> None:
    clf = train_classifier(*mixture_data(MIX, n=200), VP, steps=2, batch_size=16)
    score = ClassifierGuidance(MIX.score_fn(VP), clf, 1)
    x, t = torch.randn(4, 2, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"classifier parameters are torch.float32 .* classifier.to\(torch.float64\)"):
        score(x, t)
    wide = ClassifierGuidance(MIX.score_fn(VP), clf.double(), 1)  # float32 state, float64 classifier: cast up
    assert wide(x.float(), t.float()).dtype == torch.float32


# --- 4. the particle filter refuses solvers it is not valid for --------------------------------
def test_particle_filter_refuses_unequal_times_of_adaptive_solvers() -> None:
    pf = ParticleFilter(MIX.score_fn(VP), VP, [True, False], [1.0, 0.0], (2,), noise_std=0.5, seed=0)
    with pytest.raises(ValueError, match="different times in one call .* 'adaptive_sde'"):
        solvers.sample(VP, MIX.score_fn(VP), (50, 2), "adaptive_sde", steps=10, seed=0, after_step=pf)


@pytest.mark.parametrize(("name", "why"), [("dpmpp_2m", "deterministic"), ("unipc", "deterministic"),
                                           ("sde_dpmpp_2m", "multistep"), ("adaptive_sde", "its own steps"),
                                           ("ode_heun", "deterministic")])
def test_particle_filter_refuses_named_solvers(name, why) -> None:
    with pytest.raises(ValueError, match=f"cannot run under solver '{name}': it .*{why}.*use one of euler_maruyama"):
        ParticleFilter(MIX.score_fn(VP), VP, [True, False], [1.0, 0.0], (2,), noise_std=0.5, solver=name)
    ParticleFilter.check_solver("euler_maruyama")


# --- 5b. integer / float 0/1 masks are masks everywhere ---------------------------------------
@pytest.mark.parametrize("mask", [[1, 0], np.array([1.0, 0.0]), torch.tensor([1, 0], dtype=torch.uint8)])
def test_zero_one_masks_are_masks_for_guidance_and_particle_filter(mask) -> None:
    score = MIX.score_fn(VP)
    x, t = torch.randn(8, 2), torch.full((8,), 0.3)
    ref = PosteriorGuidance(score, VP, torch.tensor([True, False]), [1.0, 0.0], (2,))
    torch.testing.assert_close(PosteriorGuidance(score, VP, mask, [1.0, 0.0], (2,))(x, t), ref(x, t))
    pf = ParticleFilter(score, VP, mask, [1.0, 0.0], (2,), noise_std=0.5)
    assert pf.op.m == 1


# --- 5c. a non-numeric .npy names the flag ----------------------------------------------------
def test_non_numeric_observed_file_names_the_flag(tmp_path, capsys) -> None:
    path = tmp_path / "strings.npy"
    np.save(path, np.array(["1", "0"]))
    assert _sample(tmp_path, "--mask", "1,0", "--observed", str(path)) == 2
    assert "--observed file" in capsys.readouterr().err


# --- 6. samples.json records what ran ---------------------------------------------------------
def test_samples_json_records_the_conditioning_that_ran(tmp_path, capsys, monkeypatch) -> None:
    assert _sample(tmp_path) == 0
    assert _record(tmp_path) == dict.fromkeys(("label", "guidance", "classifier", "mask", "observed", "impute"))
    assert _sample(tmp_path, "--class", "2") == 0
    assert _record(tmp_path) | {} == {"label": 2, "guidance": 1.0, "classifier": None, "mask": None,
                                      "observed": None, "impute": None}
    mask = tmp_path / "m.npy"
    np.save(mask, np.array([1, 0]))
    monkeypatch.chdir(tmp_path)
    assert _sample(tmp_path, "--mask", "m.npy", "--observed", "1.0,0") == 0
    rec = _record(tmp_path)
    assert rec["mask"] == str(mask.resolve()) and rec["observed"] == "1.0,0" and rec["impute"] == "replacement"


def test_impute_without_mask_is_refused(tmp_path, capsys) -> None:
    assert _sample(tmp_path, "--impute", "exact") == 2
    assert "--impute exact applies to --mask/--observed" in capsys.readouterr().err


def test_cli_replacement_noise_is_not_the_solver_stream() -> None:
    import torch

    from scoresde.cli.conditional import hook_seed

    assert hook_seed(0) != 0 and hook_seed(0) == hook_seed(0) and hook_seed(0) != hook_seed(1)
    a = torch.randn(100, generator=torch.Generator().manual_seed(0))  # what the solver draws first
    b = torch.randn(100, generator=torch.Generator().manual_seed(hook_seed(0)))
    assert not torch.equal(a, b) and abs(float((a * b).mean())) < 0.3
