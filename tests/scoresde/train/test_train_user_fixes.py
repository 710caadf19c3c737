"""Training and data defects found by an outside pass, each with the input that showed it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli import main
from scoresde.data import ArrayDataset, digits, load_data
from scoresde.losses import LossConfig
from scoresde.train import OptimConfig


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, "float64"])
def test_array_and_image_samples_refuse_non_floating_dtypes(dtype):
    # int64 / bool truncated the data silently (digits as -1/0/1, every row True); the toys
    # already refused them with this message.
    for source in (ArrayDataset(np.random.default_rng(0).normal(size=(10, 2))), digits()):
        with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
            source.sample(3, dtype=dtype)
    assert digits().sample(2, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("field", ["lr", "weight_decay", "grad_clip", "ema_decay", "min_lr_ratio"])
@pytest.mark.parametrize("value", [True, "1e-3"])
def test_optimizer_numbers_refuse_bools_and_strings_by_name(field, value):
    # JSON `"lr": true` trained with lr = 1.0 (loss 90 after 10 steps); a string failed with
    # "'<' not supported between instances of 'float' and 'str'", naming no field.
    with pytest.raises(TypeError, match=f"^{field} must be a real number"):
        OptimConfig(**{field: value})


def test_config_file_with_a_bool_lr_is_refused(tmp_path: Path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"steps": 2, "optim": {"lr": True}}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "lr must be a real number, got the bool True" in capsys.readouterr().err


def test_importance_sampling_warns_where_it_is_uniform():
    # q(t) ~ w(t)/sigma(t)^2 = 1 for the default weighting: the flag only changed the random stream.
    with pytest.warns(UserWarning, match="importance=True does nothing with weighting='sigma2'"):
        LossConfig(importance=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LossConfig(importance=True, weighting="likelihood")
        LossConfig(importance=False)


@pytest.mark.parametrize("spec", ["moons", "digits", np.zeros((4, 2))])
def test_folder_only_options_are_refused_for_other_sources(spec):
    # image_size / channels were ignored for anything but a folder, without a word.
    with pytest.raises(ValueError, match="image_size applies to image folders only"):
        load_data(spec, image_size=4)
    with pytest.raises(ValueError, match="channels applies to image folders only"):
        load_data(spec, channels=1)


def test_divergence_message_names_the_warmup_in_use(tmp_path: Path, capsys):
    # warmup_fraction = 0.1 of a 100-step run: 10 warm-up steps, not the nominal 100.
    code = main(["train", "--steps", "100", "--lr", "1e30", "--grad-clip", "0", "--width", "16",
                 "--depth", "1", "--batch-size", "32", "--out", str(tmp_path / "div"), "--no-progress"])
    assert code == 3
    assert "warmup is 10)" in capsys.readouterr().err


def test_resume_refusal_says_how_to_go_on(tmp_path: Path, capsys):
    small = ["--width", "16", "--depth", "1", "--batch-size", "16", "--no-progress", "--out", str(tmp_path / "r")]
    assert main(["train", "--steps", "2", *small]) == 0
    assert main(["train", "--steps", "4", "--lr", "1e-3", "--resume", *small]) == 2
    err = capsys.readouterr().err
    assert "optim.lr: checkpoint 0.002 != current 0.001" in err
    assert "only steps, log_every" in err and "another output folder" in err


def test_sample_removes_an_earlier_runs_files_of_the_other_format(tmp_path: Path, capsys):
    out = str(tmp_path / "s")
    common = ["sample", "--target", "eight_gaussians", "--solver", "ddim", "--steps", "3", "--n", "8",
              "--out", out, "--no-progress"]
    assert main(common) == 0
    assert (tmp_path / "s" / "samples.npy").is_file() and (tmp_path / "s" / "samples.png").is_file()
    assert main([*common, "--format", "pt", "--no-plot"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["samples.json", "samples.pt"]
    assert "removed" in capsys.readouterr().out


def test_sample_keeps_files_no_earlier_run_wrote(tmp_path: Path):
    # A samples.npy that no scoresde settings file names is the user's: it stays.
    out = tmp_path / "s"
    out.mkdir()
    np.save(out / "samples.npy", np.zeros(3))
    assert main(["sample", "--target", "eight_gaussians", "--solver", "ddim", "--steps", "3", "--n", "8",
                 "--out", str(out), "--no-progress", "--format", "pt", "--no-plot"]) == 0
    assert (out / "samples.npy").is_file() and (out / "samples.pt").is_file()


def test_sample_keeps_a_plot_no_earlier_run_wrote(tmp_path: Path):
    out = tmp_path / "s"
    common = ["sample", "--target", "eight_gaussians", "--solver", "ddim", "--steps", "3", "--n", "8",
              "--out", str(out), "--no-progress", "--no-plot"]
    assert main(common) == 0
    (out / "samples.png").write_text("the user's own figure")
    assert main(common) == 0
    assert (out / "samples.png").read_text() == "the user's own figure"


def test_sample_never_deletes_a_users_chunks_folder(tmp_path: Path):
    # The folder was removed whole after every run, chunked or not.
    out = tmp_path / "s"
    (out / "chunks").mkdir(parents=True)
    (out / "chunks" / "notes.txt").write_text("mine")
    common = ["sample", "--target", "eight_gaussians", "--solver", "ddim", "--steps", "3", "--n", "8",
              "--out", str(out), "--no-progress", "--no-plot"]
    assert main(common) == 0
    assert main([*common, "--batch-size", "4"]) == 0  # chunked: its own pieces go, the note stays
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("entry", [
    {"warmup": 6, "step": 30, "progress": float("nan")},
    {"warmup": 6, "step": 30, "progress": float("inf")},
    {"warmup": 6, "step": 30, "progress": 5.0},
    {"warmup": -1, "step": 30, "progress": 0.5},
    {"warmup": True, "step": 30, "progress": 0.5},
    {"warmup": 6.9, "step": 30, "progress": 0.5},
    {"warmup": 6, "step": 30, "progress": "0.4"},
    {"warmup": 6, "step": 30},
])
def test_corrupt_lr_anchor_is_refused(tmp_path: Path, entry, capsys):
    # A NaN progress gave a NaN learning rate; out-of-range and mistyped values loaded silently.
    from scoresde.train import load_checkpoint, save_checkpoint

    small = ["--width", "16", "--depth", "1", "--batch-size", "16", "--no-progress", "--out", str(tmp_path / "r")]
    assert main(["train", "--steps", "2", *small]) == 0
    state = load_checkpoint(tmp_path / "r")
    state["lr_anchor"] = entry
    save_checkpoint(state, tmp_path / "r" / "checkpoint.pt")
    assert main(["train", "--steps", "4", "--resume", *small]) == 2
    assert "lr_anchor entry" in capsys.readouterr().err


@pytest.mark.parametrize("betas", [(False, 0.999), ("0.9", "0.99")])
def test_betas_refuse_bools_and_strings(betas):
    with pytest.raises(TypeError, match=r"^betas\[0\] must be a real number"):
        OptimConfig(betas=betas)
    with pytest.raises(TypeError, match="grad_clip must be a real number, got the bool"):
        OptimConfig(grad_clip=np.bool_(True))
