"""Training set-up checks: float64 runs train on float64 data, data that overflow the run's dtype,
data objects where a name belongs, class labels of a classifier, and ``--steps 0``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from scoresde.cli import main
from scoresde.data import ArrayDataset
from scoresde.train import TrainConfig, Trainer, toy_config

SMALL = ["--width", "16", "--depth", "1", "--batch-size", "32", "--log-every", "5", "--no-progress"]


def _fine(scale: float = 1e-4) -> np.ndarray:
    """Two far-apart coordinates with a spread float32 cannot hold (its spacing at 1e4 is ~1e-3)."""
    return np.array([1e4, -1e4]) + np.random.default_rng(0).normal(size=(500, 2)) * scale


@pytest.mark.filterwarnings("ignore:the data's spread", "ignore:p_T is far from the prior")
def test_float64_run_draws_float64_data() -> None:
    # toy_config drew float32 data: "the data have no spread"; the trainer drew float32 batches
    # (about 7 distinct values per column) and cast them to float64 afterwards.
    config = toy_config("fine.npy", steps=2, data=_fine())
    config.dtype, config.batch_size = "float64", 64
    trainer = Trainer(config, data=_fine(), progress=False)
    seen: list[torch.Tensor] = []
    loss_fn = trainer.loss_fn

    def spy(net: Any, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        seen.append(x0)
        return loss_fn(net, x0, g)

    trainer.loss_fn = spy
    trainer.train_step()
    assert seen[0].dtype == torch.float64
    assert len(torch.unique(seen[0][:, 0])) > 30


@pytest.mark.filterwarnings("ignore:p_T is far from the prior")
def test_data_overflowing_float32_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # train said "the data have no spread"; likelihood "x contains NaN/inf in 1 sample(s)" without the file.
    path = tmp_path / "f.npy"
    np.save(path, np.array([[1e39, 2.0], [1.0, 1.0], [3.0, 4.0]]))
    out = tmp_path / "run"
    rc = main(["train", "--data", str(path), "--steps", "2", "--out", str(out), *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "f.npy" in err and "row 0" in err and "overflow float32" in err and "--dtype float64" in err
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.jsonl").exists()
    assert main(["likelihood", "--target", "eight_gaussians", "--data", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "f.npy" in err and "row 0" in err and "overflow float32" in err and "--float64" in err


def test_data_object_in_place_of_a_name_is_refused_before_any_file(tmp_path: Path) -> None:
    # toy_config(dataset) was accepted, then Trainer wrote metrics.jsonl and failed with "Object of
    # type ArrayDataset is not JSON serializable", so a retry met FileExistsError.
    data = ArrayDataset(np.random.default_rng(0).normal(size=(200, 2)))
    with pytest.raises(TypeError, match="toy_config's name .*ArrayDataset.*data=obj"):
        toy_config(data, steps=2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"TrainConfig\.data .*ArrayDataset"):
        TrainConfig(data=data)  # type: ignore[arg-type]
    # A set-up that fails after the folder check leaves no half-made run folder behind.
    config = toy_config("label", steps=2, data=data)
    config.model.data_shape = (3,)
    out = tmp_path / "x"
    with pytest.raises(ValueError, match="model.data_shape"):
        Trainer(config, data=data, out_dir=out, progress=False)
    assert not out.exists()
    config.model.data_shape = (2,)
    Trainer(config, data=data, out_dir=out, progress=False).close()  # the retry works
    assert (out / "config.json").exists()


def test_classifier_classes_must_be_0_to_c_minus_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --classes 0,0,5,... built a 6-class classifier with classes 1-4 empty; a typo gave
    # "invalid literal for int()" without naming --classes.
    out = str(tmp_path / "clf.pt")
    base = ["train-classifier", "--target", "eight_gaussians", "--steps", "2", "--out", out]
    assert main([*base, "--classes", "0,0,5,5,5,5,5,5"]) == 2
    err = capsys.readouterr().err
    assert "--classes" in err and "1, 2, 3, 4 never occur" in err
    assert main([*base, "--classes", "0,0,1,1,2,2,3,x"]) == 2
    assert "--classes must be comma-separated integers" in capsys.readouterr().err
    assert not Path(out).exists()


def test_steps_zero_is_refused_for_a_new_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It said "the checkpoint is already at step 0" and wrote an untrained checkpoint.
    out = tmp_path / "run"
    assert main(["train", "--steps", "0", "--out", str(out), *SMALL]) == 2
    assert "steps must be >= 1 for a new run" in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Trainer(TrainConfig(steps=0), progress=False)
    # Resuming a finished run with the same --steps still means "nothing to train".
    assert main(["train", "--steps", "2", "--out", str(out), *SMALL]) == 0
    assert main(["train", "--steps", "2", "--out", str(out), "--resume", *SMALL]) == 0
    assert "already at step 2" in capsys.readouterr().out

