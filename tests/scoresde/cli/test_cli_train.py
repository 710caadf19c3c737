"""``scoresde train`` and ``scoresde sample``: files written, resume, errors, exact targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli import main
from scoresde.train import TrainConfig, load_checkpoint

SMALL = ["--width", "16", "--depth", "1", "--batch-size", "32", "--log-every", "5", "--no-progress"]


def test_train_writes_run_dir_and_resume_extends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", "eight_gaussians", "--sde", "ve", "--steps", "10", "--out", str(out),
                 "--ckpt-every", "5", "--weighting", "likelihood", "--importance", *SMALL]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "checkpoints", "config.json",
                                                     "metrics.jsonl"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000005.pt", "step-00000010.pt"]
    cfg = TrainConfig.from_json(out / "config.json")
    assert (cfg.sde.name, cfg.steps, cfg.model.net["width"], cfg.loss.importance) == ("ve", 10, 16, True)
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [5, 10]
    # A second run into the same directory is refused unless resumed.
    assert main(["train", "--steps", "10", "--out", str(out), *SMALL]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--config", str(out / "config.json"), "--steps", "15", "--out", str(out),
                 "--resume", "--no-progress"]) == 0
    assert load_checkpoint(out)["step"] == 15
    # Resuming with a changed model is refused with the differing key named.
    assert main(["train", "--config", str(out / "config.json"), "--width", "8", "--out", str(out),
                 "--resume", "--no-progress"]) == 2
    assert "model.net.width" in capsys.readouterr().err


def test_sample_from_checkpoint_and_from_exact_target(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--steps", "5", "--out", str(run), *SMALL]) == 0
    out = tmp_path / "s"
    assert main(["sample", "--checkpoint", str(run), "--n", "64", "--steps", "10", "--seed", "3",
                 "--out", str(out)]) == 0
    x = np.load(out / "samples.npy")
    assert x.shape == (64, 2) and np.isfinite(x).all()
    assert (out / "samples.png").stat().st_size > 1000
    # Same seed, same samples; .pt format; exact target without a checkpoint.
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--n", "64", "--steps", "10",
                 "--seed", "3", "--out", str(out), "--format", "pt", "--no-plot"]) == 0
    np.testing.assert_array_equal(torch.load(out / "samples.pt").numpy(), x)
    assert main(["sample", "--target", "ring", "--n", "32", "--steps", "10", "--out", str(tmp_path / "t"),
                 "--no-plot"]) == 0
    assert np.load(tmp_path / "t" / "samples.npy").shape == (32, 2)


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", "nosuchdata", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "unknown data" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["sample", "--target", "ring", "--solver", "nope", "--out", str(tmp_path / "z")]) == 2
    assert "unknown solver" in capsys.readouterr().err
    assert main(["sample", "--target", "ring", "--solver", "DPMPP_2M", "--out", str(tmp_path / "z")]) == 2
    assert "did you mean 'DPMPP_2M' -> 'dpmpp_2m'?" in capsys.readouterr().err
    assert main(["sample", "--target", "sharp8", "--out", str(tmp_path / "z")]) == 2
    assert "Did you mean 'sharp_8'?" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_resume_reads_the_checkpoints_settings_when_config_json_is_damaged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    # config.json was rewritten in place on every start: a failed write (disk full) cut it off,
    # and then --resume failed on its JSON, or fell back to the recipe (width 128 != 16).
    out = tmp_path / "run"
    assert main(["train", "--steps", "6", "--ckpt-every", "3", "--out", str(out), *SMALL]) == 0
    cfg = out / "config.json"
    if damage == "truncate":
        cfg.write_text(cfg.read_text()[:100])
    else:
        cfg.unlink()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--steps", "9", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{cfg} is {'unreadable' if damage == 'truncate' else 'missing'}" in err
    assert "resuming from the settings stored in" in err
    assert load_checkpoint(out)["step"] == 9
    assert TrainConfig.from_json(cfg).model.net["width"] == 16  # written again, whole


def test_config_json_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scoresde.atomic as atomic

    written: list[str] = []
    real = atomic.atomic_write_with
    monkeypatch.setattr(atomic, "atomic_write_with", lambda p, w: written.append(Path(p).name) or real(p, w))
    assert main(["train", "--steps", "2", "--out", str(tmp_path / "run"), *SMALL]) == 0
    assert "config.json" in written and "metrics.jsonl" in written
