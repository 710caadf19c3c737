"""Own data at the wrong scale, or in another dtype: found by a researcher bringing their own
arrays; each test failed before its fix."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli import main
from scoresde.train import load_model, train_toy
from scoresde.train.data import checkpoint_loader


def _moons(scale: float, n: int = 600) -> np.ndarray:
    g = np.random.default_rng(0)
    t = g.uniform(0, np.pi, n)
    upper = g.uniform(size=n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    return (scale * np.stack([x, y], 1)).astype(np.float64)


def test_a_checkpoint_of_data_finer_than_the_end_noise_warns_when_loaded(tmp_path: Path) -> None:
    # Data x 1e-3 under VPSDE(): training warned that samples stay blurred, but a later load
    # for sampling said nothing, and every solver returned a blob over the two moons.
    with pytest.warns(UserWarning, match="stay blurred"):
        train_toy("tiny", data=torch.from_numpy(_moons(1e-3)), steps=2, out_dir=tmp_path / "tiny", progress=False)
    with pytest.warns(UserWarning, match=r"checkpoint .*tiny.*sigma_data.*stay blurred at any step count"):
        load_model(tmp_path / "tiny")
    train_toy("unit", data=torch.from_numpy(_moons(1.0)), steps=2, out_dir=tmp_path / "unit", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(tmp_path / "unit")


def test_train_toy_given_an_array_first_names_its_own_data_argument() -> None:
    with pytest.raises(TypeError, match=r"pass a data object or array as train_toy\('label', data=obj\)"):
        train_toy(torch.randn(100, 2), steps=1, progress=False)  # type: ignore[arg-type]


def test_the_same_points_in_another_dtype_are_refused_with_the_reason(tmp_path: Path) -> None:
    points = _moons(1.0)
    np.save(tmp_path / "moons.npy", points)
    train_toy("mine", data=torch.from_numpy(points).float(), steps=1, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"float32 \(sha256.*float64 \(sha256.*trained on float32 values"):
        checkpoint_loader(str(tmp_path / "moons.npy"))(tmp_path / "run")


def test_a_sigma_max_below_the_ve_sigma_min_names_the_remedy(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "tiny.npy", _moons(1e-3))
    rc = main(["train", "--data", str(tmp_path / "tiny.npy"), "--sde", "ve", "--sigma-max", "0.00358",
               "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--sigma-max 0.00358 is not above the VE SDE's smallest noise level sigma_min = 0.01" in err
    assert "Rescale the data to about unit spread" in err
