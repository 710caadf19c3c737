"""``likelihood --bpd`` takes the pixel grid from image data, which know it.

Before, ``scoresde likelihood --checkpoint <digits run> --bpd`` (the run's own data) stopped with
"the data are not on the 256-level grid of [0, 1]": the defaults were 256 levels on ``[0, 1]``
for every data set, while the digits have 17 levels and image folders 256, both on ``[-1, 1]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.cli import main
from scoresde.data import load_image_folder
from scoresde.data.images import ImageDataset, digits


def _on_grid(x: torch.Tensor, levels: int) -> bool:
    k = (x.double() + 1.0) / 2.0 * (levels - 1)
    return bool((k - k.round()).abs().max() < 1e-3) and float(k.min()) >= 0 and float(k.max()) <= levels - 1


def test_digits_know_their_17_levels() -> None:
    d = digits()
    assert d.levels == 17 and d.data_range == (-1.0, 1.0)
    assert _on_grid(d.images, 17) and not _on_grid(d.images, 16)


def _png(folder: Path, name: str, a: np.ndarray) -> None:
    folder.mkdir(exist_ok=True)
    Image.fromarray(a).save(folder / name)


def test_image_folders_know_their_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, size=(6, 6), dtype=np.uint8)
    sixteen = rng.integers(0, 65536, size=(6, 6)).astype(np.uint16)
    _png(tmp_path / "a", "0.png", eight)
    a = load_image_folder(tmp_path / "a")
    assert a.levels == 256 and _on_grid(a.images, 256)
    _png(tmp_path / "b", "0.png", sixteen)
    _png(tmp_path / "b", "1.png", eight)  # 8-bit values lie on the 16-bit grid: k16 = 257 k8
    b = load_image_folder(tmp_path / "b", dtype=torch.float64)
    assert b.levels == 65536 and _on_grid(b.images, 65536)
    c = load_image_folder(tmp_path / "b", size=4, dtype=torch.float64)  # 16-bit resampled in floats
    assert c.levels is None
    assert load_image_folder(tmp_path / "a", size=4).levels == 256  # 8-bit resampling stays 8-bit


def test_levels_are_checked() -> None:
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        ImageDataset(torch.zeros(1, 1, 2, 2), levels=1)


def test_likelihood_bpd_of_an_image_run_needs_no_grid_options(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for i in range(6):
        _png(folder, f"{i}.png", rng.integers(0, 256, size=(8, 8), dtype=np.uint8))
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "2", "--batch-size", "4", "--out", str(run),
                 "--channels", "8", "--no-progress"]) == 0
    capsys.readouterr()
    fast = ["--n", "3", "--bpd", "--integrator", "rk4_simpson", "--steps", "2", "--divergence", "hutchinson",
            "--no-progress"]
    assert main(["likelihood", "--checkpoint", str(run), *fast]) == 0  # the run's own data
    assert "levels 256, data range [-1, 1]" in capsys.readouterr().out
    assert main(["likelihood", "--checkpoint", str(run), "--data", str(folder), *fast]) == 0
    assert "levels 256, data range [-1, 1]" in capsys.readouterr().out
    # Given options still win; a table of numbers keeps the old default (256 levels on [0, 1]).
    assert main(["likelihood", "--checkpoint", str(run), *fast, "--levels", "255"]) == 2
    assert "not on the 255-level grid" in capsys.readouterr().err
    assert main(["likelihood", "--target", "eight_gaussians", "--n", "3", "--bpd", "--no-progress",
                 "--integrator", "rk4_simpson", "--steps", "2"]) == 2
    assert "256-level grid of [0, 1]" in capsys.readouterr().err
