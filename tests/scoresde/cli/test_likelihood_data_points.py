"""``likelihood --data FOLDER`` scores each item of a fixed data set once.

Before, the folder (and a checkpoint's own image or array data) was drawn from with
replacement: ``--n 5`` on five images scored images 4, 4, 3, 0, 3, never 1 or 2, and the
standard error over points counted the repeats as independent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.cli import main
from scoresde.cli._likelihood_load import _points_of
from scoresde.data.arrays import ArrayDataset
from scoresde.data.images import ImageDataset


def _distinct_rows(x: torch.Tensor) -> int:
    return int(torch.unique(x.reshape(x.shape[0], -1), dim=0).shape[0])


@pytest.mark.parametrize("make", [lambda t: ImageDataset(t.reshape(7, 1, 2, 2)), lambda t: ArrayDataset(t)],
                         ids=["images", "array"])
def test_a_fixed_set_gives_distinct_items(make) -> None:
    source = make(torch.arange(28, dtype=torch.float64).reshape(7, 4))
    g = torch.Generator().manual_seed(0)
    x, what = _points_of(source, 5, g, torch.float64, "set")
    assert x.shape[0] == 5 and _distinct_rows(x) == 5 and what == "5 of the 7 items of set, each once"
    x, what = _points_of(source, 100, torch.Generator().manual_seed(0), torch.float32, "set")
    assert x.shape[0] == 7 and _distinct_rows(x) == 7 and x.dtype == torch.float32
    assert what == "all 7 items of set, each once (--n 100 asks for more)"
    again, _ = _points_of(source, 5, torch.Generator().manual_seed(0), torch.float64, "set")
    first, _ = _points_of(source, 5, torch.Generator().manual_seed(0), torch.float64, "set")
    assert torch.equal(again, first)  # seeded


def test_a_sampler_without_a_fixed_size_still_draws() -> None:
    from scoresde.targets import get_target

    x, what = _points_of(get_target("eight_gaussians"), 9, torch.Generator().manual_seed(0), torch.float64, "toy")
    assert x.shape == (9, 2) and what == "9 draws of toy"


def test_cli_scores_each_image_of_a_folder_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, size=(8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "2", "--batch-size", "4", "--out", str(run),
                 "--channels", "8", "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "ll.json"
    assert main(["likelihood", "--checkpoint", str(run), "--data", str(folder), "--n", "1000", "--bpd",
                 "--integrator", "rk4_simpson", "--steps", "2", "--grid", "uniform", "--divergence", "hutchinson",
                 "--no-progress",
                 "--out", str(out)]) == 0
    assert f"all 5 items of {folder}, each once (--n 1000 asks for more)" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec and all(len(column) == 5 for column in rec.values())  # one row per image


def _fast_bpd(run: Path) -> list[str]:
    """Cheap ``likelihood --bpd`` options for ``run``."""
    return ["--checkpoint", str(run), "--bpd", "--integrator", "rk4_simpson", "--steps", "2", "--grid", "uniform",
            "--divergence", "hutchinson", "--no-progress"]


def _bpd_records(fast: list[str], folder: Path, names: tuple[str, ...], grid: str,
                 capsys: pytest.CaptureFixture[str]) -> list[object]:
    """The stored results of ``likelihood`` on each file of ``names`` in ``folder``, checking that
    each reports the pixel grid ``grid``."""
    capsys.readouterr()
    results = []
    for name in names:
        out = folder / f"{name}.json"
        assert main(["likelihood", *fast, "--data", str(folder / name), "--out", str(out)]) == 0
        assert grid in capsys.readouterr().out
        results.append(json.loads(out.read_text()))
    return results


def test_bpd_takes_integer_pixel_levels_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A uint8 .npy of test images was read as floats and refused ("not on the 256-level grid of
    # [0, 1]; pass integer levels"); for an image model the levels map onto its range [-1, 1].
    folder = tmp_path / "imgs"
    folder.mkdir()
    k = np.random.default_rng(2).integers(0, 256, size=(4, 1, 8, 8), dtype=np.uint8)
    for i in range(4):
        Image.fromarray(k[i, 0]).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "1", "--batch-size", "2", "--out", str(run),
                 "--channels", "8", "--no-progress"]) == 0
    np.save(tmp_path / "levels.npy", k)
    np.save(tmp_path / "scaled.npy", k.astype(np.float64) / 127.5 - 1.0)  # the same images on [-1, 1]
    fast = _fast_bpd(run)
    results = _bpd_records(fast, tmp_path, ("levels.npy", "scaled.npy"), "levels 256, data range [-1, 1]", capsys)
    assert results[0] == results[1]  # the same points, the same dequantisation noise
    np.save(tmp_path / "wide.npy", k.astype(np.uint16) * 257)
    assert main(["likelihood", *fast, "--data", str(tmp_path / "wide.npy")]) == 2
    assert "integer levels must lie in 0..255 for --levels 256; the data span [" in capsys.readouterr().err


def test_the_divergence_default_is_hutchinson_for_images_and_exact_for_points(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "1", "--batch-size", "2", "--out", str(run),
                 "--channels", "8", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["likelihood", "--checkpoint", str(run), "--bpd", "--integrator", "rk4", "--steps", "2",
                 "--grid", "uniform",
                 "--no-progress"]) == 0
    assert "D=64, divergence=hutchinson" in capsys.readouterr().out
    assert main(["likelihood", "--target", "eight_gaussians", "--n", "4", "--integrator", "rk4", "--steps", "2",
                 "--no-progress"]) == 0
    assert "D=2, divergence=exact" in capsys.readouterr().out
    assert main(["likelihood", "--checkpoint", str(run), "--bpd", "--integrator", "rk4", "--steps", "2",
                 "--grid", "uniform",
                 "--n", "1", "--divergence", "exact", "--no-progress"]) == 0  # still there when asked for
    assert "D=64, divergence=exact" in capsys.readouterr().out


def test_bpd_of_a_file_reads_it_on_the_models_own_pixel_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A digits model (17 levels on [-1, 1]) scoring a uint8 file of its levels 0..16 read them on
    # 256 levels, mapped onto [-1, -0.87]: 10.62 bits/dim, silently; the same images as floats on
    # [-1, 1] were refused as "not on the 256-level grid". Both now use the model's 17 levels.
    from scoresde.data import digits
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--steps", "1", "--batch-size", "4", "--out", str(run),
                 "--channels", "8", "--no-progress"]) == 0
    x = digits().images[:3].numpy()
    np.save(tmp_path / "floats.npy", x)
    np.save(tmp_path / "levels.npy", ((x + 1) * 8).round().astype(np.uint8))
    fast = _fast_bpd(run)
    results = _bpd_records(fast, tmp_path, ("levels.npy", "floats.npy"), "levels 17, data range [-1, 1]", capsys)
    assert results[0] == results[1]
    np.save(tmp_path / "eight_bit.npy", np.full((2, 1, 8, 8), 200, dtype=np.uint8))
    assert main(["likelihood", *fast, "--data", str(tmp_path / "eight_bit.npy")]) == 2
    assert "pass --levels for the data's own grid (8-bit images: --levels 256" in capsys.readouterr().err
