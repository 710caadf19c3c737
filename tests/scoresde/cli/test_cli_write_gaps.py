"""Atomic writes and messages of the plotting commands: samples.png, an animation's temporary
file, ``--frames``, and the demo's reason for not resuming."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from scoresde.atomic import clean_stale_temps
from scoresde.cli import main
from scoresde.cli.demo import _one_line


def test_samples_png_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scoresde.plotting._common as common

    written: list[str] = []
    real = common.atomic_write_with
    monkeypatch.setattr(common, "atomic_write_with", lambda p, w: written.append(Path(p).name) or real(p, w))
    assert main(["sample", "--target", "eight_gaussians", "--n", "64", "--steps", "4", "--solver", "ddim",
                 "--out", str(tmp_path / "s")]) == 0
    assert "samples.png" in written and (tmp_path / "s" / "samples.png").stat().st_size > 1000


def test_an_animations_stale_temporary_file_is_cleaned(tmp_path: Path) -> None:
    # plotting.animation keeps the format in the temporary name, which the cleaner did not match
    stale = tmp_path / ".forward_reverse.gif.mvg329h8.tmp.gif"
    stale.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    keep = tmp_path / "forward_reverse.gif"
    keep.write_bytes(b"GIF89a")
    assert clean_stale_temps(tmp_path) == [stale]
    assert keep.exists()


def test_plot_names_frames_as_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", "--target", "eight_gaussians", "--frames", "1", "--out", str(tmp_path / "p")]) == 2
    assert "--frames must be at least 2" in capsys.readouterr().err


def test_the_demos_resume_note_keeps_the_differing_settings() -> None:
    err = ValueError("checkpoint.pt was written by a different configuration; refusing to resume:\n"
                     "  seed: checkpoint 0 != current 1\n")
    assert _one_line(err) == ("checkpoint.pt was written by a different configuration; refusing to resume: "
                              "seed: checkpoint 0 != current 1")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_sample_plot_draws_images_of_any_channel_count(tmp_path: Path, channels: int) -> None:
    # 2 channels failed in imshow ("Invalid shape (15, 15, 2) for image data") after the samples
    # were written; 4 were drawn as RGBA, the fourth channel taken for transparency.
    import matplotlib.image as mpimg

    from scoresde.cli.sample import _plot
    x = torch.rand(4, channels, 5, 5, generator=torch.Generator().manual_seed(0)) * 2 - 1
    _plot(x, tmp_path / "samples.png", "samples")
    img = mpimg.imread(tmp_path / "samples.png")
    assert img.ndim == 3 and img.shape[0] > 10
    if img.shape[2] == 4:  # nothing of the data is read as transparency
        assert img[..., 3].min() == 1.0
