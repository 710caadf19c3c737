"""Image workflows, from an outside check: grid separators, bits/dim's default scale, alpha
channels, point figures given images, and the resized-folder hint given another folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import scoresde as sd
import solvers
from scoresde.cli import main
from scoresde.data import ImageDataset, image_grid, load_data
from scoresde.likelihood import bits_per_dim, bpd_offset, dequantize


def test_grid_separators_differ_from_white_and_black_pixels() -> None:
    x = -torch.ones(4, 1, 8, 8)
    x[:, :, 0, :] = 1.0  # black images with a white top row
    g = image_grid(x, pad=1)
    assert float(g[0, 0, 1]) == 0.5 and float(g[0, 1, 1]) == 1.0  # separator row, then the white row
    assert not bool((image_grid(torch.ones(4, 1, 8, 8)) == 1).all())  # white images stay apart
    assert bool((image_grid(torch.ones(4, 1, 8, 8), pad_value=1.0) == 1).all())
    with pytest.raises(ValueError, match="pad_value"):
        image_grid(x, pad_value=2.0)


def test_bits_per_dim_defaults_to_the_packages_image_scale() -> None:
    assert ImageDataset.data_range == (-1.0, 1.0) and bpd_offset() == 7.0
    k = torch.randint(0, 256, (64, 2), generator=torch.Generator().manual_seed(0))
    y = dequantize(k, generator=torch.Generator().manual_seed(1))
    assert -1.0 <= float(y.min()) and float(y.max()) <= 1.0 and float(y.min()) < -0.5
    sde = sd.VPSDE()
    target = sd.GaussianMixture(torch.zeros(1, 2), torch.full((1, 2), 0.5), torch.ones(1))
    opts = dict(integrator="rk4", steps=8, grid="uniform", dtype=torch.float64)
    default = bits_per_dim(sde, target.score_fn(sde), k[:8], **opts)
    scaled = bits_per_dim(sde, target.score_fn(sde), k[:8], data_range=(-1.0, 1.0), **opts)
    unit = bits_per_dim(sde, target.score_fn(sde), k[:8], data_range=(0.0, 1.0), **opts)
    torch.testing.assert_close(default, scaled, rtol=0, atol=0)
    assert not torch.allclose(default, unit)


def _png(folder: Path, name: str, alpha: int, mode: str = "RGBA") -> None:
    folder.mkdir(exist_ok=True)
    a = np.dstack([np.full((8, 8, 3), 100, np.uint8), np.full((8, 8), alpha, np.uint8)])
    Image.fromarray(a, "RGBA").convert(mode).save(folder / name)


def test_transparent_pixels_are_named_when_the_alpha_channel_is_dropped(tmp_path: Path) -> None:
    _png(tmp_path / "t", "a.png", 0)
    _png(tmp_path / "t", "b.png", 255)
    with pytest.warns(UserWarning, match=r"1 of 2 images have transparent pixels \(e\.g\. a\.png\)") as rec:
        data = load_data(tmp_path / "t")
    assert rec[0].filename == __file__  # points at the caller's line
    assert data.images.shape == (2, 3, 8, 8)
    _png(tmp_path / "o", "a.png", 255)
    _png(tmp_path / "o", "b.png", 255, mode="RGB")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_data(tmp_path / "o")  # opaque: nothing to say


def test_point_figures_given_image_samples_say_so(tmp_path: Path) -> None:
    from scoresde import plotting

    sde = sd.VPSDE()
    res = {"dpmpp_2m": solvers.sample(sde, lambda x, t: -x, (4, 1, 8, 8), "dpmpp_2m", steps=3, seed=0)}
    with pytest.raises(ValueError, match=r"shape \(1x8x8\) per sample \(images\?\).*image_grid"):
        plotting.write_sampling_figures(tmp_path, res, sde=sde, score=lambda x, t: -x,
                                        x0=torch.zeros(4, 1, 8, 8), which=("solver_grid",))


def test_another_folder_gets_no_resized_folder_hint(tmp_path: Path, capsys) -> None:
    from scoresde.train import Trainer, digits_config

    rng = np.random.default_rng(3)
    for name, shape, mode in (("gray", (8, 8), "L"), ("rgb", (8, 8, 3), "RGB")):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / name / f"{i}.png")
    ds = load_data(tmp_path / "gray")
    cfg = digits_config(data=str(tmp_path / "gray"), data_shape=ds.shape, steps=1)
    cfg.model.net.update(channels=8)
    cfg.batch_size = 2
    trainer = Trainer(cfg, data=ds, out_dir=tmp_path / "run", progress=False)
    trainer.fit()
    trainer.close()
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "rgb"), "--n", "2",
                 "--steps", "2", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "the data given is" in err and "resized or converted" not in err
