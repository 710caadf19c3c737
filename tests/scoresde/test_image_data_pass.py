"""Image data as a student meets them: palette PNGs, resize arguments, U-Net widths, `plot`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoresde.cli import main
from scoresde.data import load_image_folder
from scoresde.models.unet import UNet
from solvers.inputs import NotAnIntegerError


def _gray_pngs(folder: Path, n: int = 3, palette: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        im = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L")
        (im.convert("P") if palette else im).save(folder / f"{i}.png")


def test_grayscale_pngs_saved_with_a_palette_load_as_one_channel(tmp_path: Path) -> None:
    # Some tools write grayscale PNGs with a palette (mode "P"); they loaded as 3-channel RGB.
    _gray_pngs(tmp_path / "gray")
    _gray_pngs(tmp_path / "pal", palette=True)
    gray, pal = load_image_folder(tmp_path / "gray"), load_image_folder(tmp_path / "pal")
    assert pal.shape == (1, 8, 8) and pal.levels == 256
    assert (pal.images == gray.images).all()


def test_a_coloured_palette_stays_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "colour"
    folder.mkdir()
    a = np.zeros((8, 8, 3), dtype=np.uint8)
    a[:4, :, 0] = 200  # red top half
    Image.fromarray(a, "RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "0.png")
    assert load_image_folder(folder).shape == (3, 8, 8)


@pytest.mark.parametrize("size, error, match", [
    ((8,), ValueError, r"an integer or a pair \(H, W\), got 1 values"),
    (8.5, NotAnIntegerError, "size"),
    ("8", NotAnIntegerError, "size"),
    ((4, 0), ValueError, r"image size \(width\) must be an integer >= 1"),
    (0, ValueError, "image size must be an integer >= 1"),
])
def test_bad_resize_arguments_are_named(tmp_path: Path, size, error, match) -> None:
    _gray_pngs(tmp_path / "g")
    with pytest.raises(error, match=match):
        load_image_folder(tmp_path / "g", size=size)


def test_resize_accepts_a_list_pair(tmp_path: Path) -> None:
    _gray_pngs(tmp_path / "g")
    assert load_image_folder(tmp_path / "g", size=[4, 6]).shape == (1, 4, 6)


def test_unet_channels_not_a_multiple_of_the_groups_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"use channels that are a multiple of 8 \(e.g. 8\)"):
        UNet((1, 8, 8), channels=12)


def test_plot_refuses_an_image_run_naming_sample_and_likelihood(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    _gray_pngs(tmp_path / "imgs", n=4)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "imgs"), "--steps", "1", "--batch-size", "2", "--out", str(run),
                 "--channels", "8", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["plot", "--checkpoint", str(run), "--out", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err
    assert "plots need 2-D points" in err and "samples of shape 1x8x8" in err
    assert f"scoresde sample --checkpoint {run}" in err and f"scoresde likelihood --checkpoint {run} --bpd" in err


def test_a_run_on_resized_images_names_the_way_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # docs/guide_data.md trains on load_data(folder, image_size=8); the config keeps only the
    # folder, so every command that rebuilds the data read it at 16x16 and said only "pass the
    # training data", which the folder is.
    from scoresde.data import load_data
    from scoresde.train import Trainer, digits_config

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "RGB").save(folder / f"{i}.png")
    ds = load_data(folder, image_size=8)
    cfg = digits_config(data=str(folder), data_shape=ds.shape, steps=1)
    cfg.model.net.update(channels=8)
    cfg.batch_size = 2
    run = tmp_path / "run"
    trainer = Trainer(cfg, data=ds, out_dir=run, progress=False)
    trainer.fit()
    trainer.close()
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run), "--data", str(folder), "--n", "2", "--steps", "2",
                 "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "saw these images as 3x8x8" in err and "image_size=(8, 8), channels=3" in err
    assert main(["likelihood", "--checkpoint", str(run), "--data", str(folder), "--bpd", "--no-progress"]) == 2
    assert "then --data test.npy" in capsys.readouterr().err
    np.save(tmp_path / "train.npy", load_data(folder, image_size=(8, 8), channels=3).images.numpy())  # as told
    assert main(["sample", "--checkpoint", str(run), "--data", str(tmp_path / "train.npy"), "--n", "2",
                 "--steps", "2", "--out", str(tmp_path / "s2")]) == 0
