"""Robustness of training runs (issue cases 1, 3, 4, 5, 7): divergence, rotating checkpoints,
non-finite or incomplete checkpoints, torn metrics, recorded environment, pre-flight checks,
stale temporary files, empty data, unusable devices, t outside [0, T]."""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch

import scoresde as sd
from scoresde.atomic import OutputPathError, clean_stale_temps
from scoresde.models import ModelConfig
from scoresde.train import (
    CheckpointError,
    OptimConfig,
    TrainConfig,
    Trainer,
    load_checkpoint,
    load_model,
)
from scoresde.train.checkpoint import save_checkpoint
from scoresde.train.signals import TrainingDiverged


def _config(**kw: object) -> TrainConfig:
    base = dict(data="eight_gaussians", steps=20, batch_size=32, log_every=5, ckpt_every=5, device="cpu",
                model=ModelConfig(net={"width": 16, "depth": 1}), optim=OptimConfig(warmup_steps=2))
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


class NaNAfter:
    """Eight-Gaussians batches, then values so large that the loss overflows (NaN/inf) from the
    ``bad``-th draw on (the 1st draw is the shape probe). Finite data: NaN data is named as a
    data fault, not as divergence (`test_train_api_checks`)."""

    def __init__(self, bad: int) -> None:
        self.src, self.calls, self.bad = sd.targets.get_target("eight_gaussians"), 0, bad

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        self.calls += 1
        x = self.src.sample(n, generator=generator)
        return torch.full_like(x, 1e30) if self.calls >= self.bad else x


def _finite(path: Path) -> bool:
    state = load_checkpoint(path)
    return all(torch.isfinite(v).all() for d in (state["model"], state["ema"]["model"]) for v in d.values())


@pytest.mark.parametrize("log_every", [5, 0])
def test_divergence_stops_at_the_step_and_keeps_the_good_checkpoints(tmp_path: Path, log_every: int) -> None:
    # Draw 1 probes the shape, draw k+1 feeds step k: step 13 is the first NaN step.
    trainer = Trainer(_config(log_every=log_every), data=NaNAfter(14), out_dir=tmp_path, progress=False)
    with pytest.raises(TrainingDiverged, match="at step 13") as info:
        trainer.fit()
    msg = str(info.value)
    assert "lower learning rate" in msg and "step 10" in msg
    assert "clipping" not in msg  # clipping is on in this config: not advised again
    assert load_checkpoint(tmp_path)["step"] == 10 and _finite(tmp_path / "checkpoint.pt")
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == [
        "step-00000005.pt", "step-00000010.pt"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(ln)["step"] <= 10 for ln in lines)  # no NaN record logged


def test_divergence_without_clipping_advises_it_and_save_never_writes_nan(tmp_path: Path) -> None:
    cfg = _config(optim=OptimConfig(warmup_steps=2, grad_clip=None))
    trainer = Trainer(cfg, data=NaNAfter(4), out_dir=tmp_path, progress=False)
    with pytest.raises(TrainingDiverged, match="gradient clipping"):
        trainer.fit()
    good = Trainer(cfg, out_dir=tmp_path / "g", progress=False)
    good.fit(until=5)
    before = (tmp_path / "g" / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        next(good.model.parameters())[0] = float("inf")
    with pytest.raises(TrainingDiverged):
        good.save()
    assert (tmp_path / "g" / "checkpoint.pt").read_bytes() == before


def test_loading_refuses_non_finite_weights_and_missing_keys(tmp_path: Path) -> None:
    t = Trainer(_config(), out_dir=tmp_path / "run", progress=False)
    t.fit(until=5)
    state = t.state_dict()
    state["ema"]["model"] = {k: torch.full_like(v, float("nan")) for k, v in state["ema"]["model"].items()}
    save_checkpoint(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="not finite"):
        load_model(tmp_path / "nan.pt")
    save_checkpoint(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not finite.*older checkpoints"):
        Trainer(_config(), out_dir=tmp_path / "run", resume=True, progress=False)
    del state["ema"]
    save_checkpoint(state, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"old\.pt has no 'ema' entry.*another version"):
        load_model(tmp_path / "old.pt")


def test_rotation_keeps_the_newest_n_and_an_older_one_resumes_exactly(tmp_path: Path) -> None:
    full = Trainer(_config(), out_dir=tmp_path / "full", progress=False)
    full.fit()
    run = tmp_path / "run"
    Trainer(_config(), out_dir=run, keep_checkpoints=2, progress=False).fit()
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-00000015.pt", "step-00000020.pt"]
    assert (run / "checkpoint.pt").read_bytes() == (run / "checkpoints" / "step-00000020.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(b"damaged")  # one bad newest file loses nothing
    resumed = Trainer(_config(), out_dir=run, resume=run / "checkpoints" / "step-00000015.pt", progress=False)
    assert resumed.step == 15
    resumed.fit()
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [5, 10, 15, 20]


def test_torn_metrics_line_is_skipped_with_a_warning_naming_the_file(tmp_path: Path) -> None:
    Trainer(_config(steps=10), out_dir=tmp_path, progress=False).fit()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "lo')  # a crash mid-append
    with pytest.warns(RuntimeWarning, match=r"metrics\.jsonl: skipping damaged line 3"):
        t = Trainer(_config(steps=15), out_dir=tmp_path, resume=True, progress=False)
    t.fit()
    assert [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [5, 10, 15]


def test_environment_is_recorded_and_a_thread_mismatch_warns(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        Trainer(_config(steps=5), out_dir=tmp_path, progress=False).fit()
        env = load_checkpoint(tmp_path)["env"]
        assert env["threads"] == 1 and env["torch"] == str(torch.__version__) and env["device"] == "cpu"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # same environment: no warning
            Trainer(_config(steps=5), out_dir=tmp_path, resume=True, progress=False)
        torch.set_num_threads(2)
        with pytest.warns(RuntimeWarning, match="threads: 1 -> 2"):
            Trainer(_config(steps=5), out_dir=tmp_path, resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_preflight_refuses_unusable_output_folders_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "a" / "checkpoint.pt").mkdir(parents=True)
    with pytest.raises(OutputPathError, match="is a directory"):
        Trainer(_config(), out_dir=tmp_path / "a", overwrite=True, progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"not empty \(config.json\)"):
        Trainer(_config(), out_dir=tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "config.json").read_text() == "{}"  # not overwritten
    Trainer(_config(), out_dir=tmp_path / "b", overwrite=True, progress=False)  # asked for: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="not writable|not a directory"):
        Trainer(_config(), out_dir=tmp_path / "file" / "run", progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_preflight_refuses_a_read_only_folder(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(OutputPathError, match="not writable"):
        Trainer(_config(), out_dir=tmp_path / "ro", progress=False)


def test_stale_temp_files_of_a_killed_write_are_cleaned_only_when_ours_and_old(tmp_path: Path) -> None:
    Trainer(_config(steps=5), out_dir=tmp_path, progress=False).fit()
    # What a SIGKILL during atomic_write_bytes leaves: its mkstemp file, full of bytes.
    old = Path(tempfile.mkstemp(dir=tmp_path, prefix=".checkpoint.pt.", suffix=".tmp")[1])
    fresh = Path(tempfile.mkstemp(dir=tmp_path / "checkpoints", prefix=".step-00000010.pt.", suffix=".tmp")[1])
    foreign = tmp_path / ".notes.tmp"
    for p in (old, fresh, foreign):
        p.write_bytes(b"\0" * 1000)
    past = time.time() - 3600
    os.utime(old, (past, past))
    os.utime(foreign, (past, past))
    Trainer(_config(steps=5), out_dir=tmp_path, resume=True, progress=False)
    assert not old.exists() and fresh.exists() and foreign.exists()
    os.utime(fresh, (past, past))
    assert clean_stale_temps(fresh.parent) == [fresh]


def test_empty_data_unusable_device_and_out_of_range_t_are_clear_errors() -> None:
    class Empty:
        def __len__(self) -> int:
            return 0

        def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
            return torch.empty(0, 2)

    class EmptyNoLen:
        def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
            return torch.empty(0, 2)

    for data in (Empty(), EmptyNoLen()):
        with pytest.raises(ValueError, match="'eight_gaussians' is empty"):
            Trainer(_config(), data=data, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use --device cpu"):
            Trainer(_config(device="cuda"), progress=False)
    with pytest.raises(ValueError, match="unknown device"):
        Trainer(_config(device="gpu0"), progress=False)
    sde = sd.VPSDE()
    with pytest.raises(ValueError, match=r"t must lie in \[0, T=1\]"):
        sde.marginal_coeffs(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="t must lie"):
        sde.marginal_coeffs(torch.tensor([-0.01]))
    # The ends themselves and float32 round-off there are fine (solvers evaluate at 0 and T).
    a, s = sde.marginal_coeffs(torch.tensor([0.0, 1.0, 1.0 + 1e-7], dtype=torch.float32))
    assert torch.isfinite(a).all() and torch.isfinite(s).all()


def test_a_damaged_newest_checkpoint_names_the_intact_older_ones(tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(_config(), out_dir=run, keep_checkpoints=3, progress=False).fit()
    newest = run / "checkpoint.pt"
    # Flip bytes in place: checkpoint.pt and checkpoints/step-00000020.pt may be one file (a hard link).
    with newest.open("r+b") as f:
        f.seek(newest.stat().st_size // 2)
        f.write(b"\x00\xff\x00\xff")
    with pytest.raises(CheckpointError, match="corrupt") as err:
        load_model(run)
    message = str(err.value)
    assert "intact older checkpoints" in message and "step-00000015.pt" in message
    if (run / "checkpoints" / "step-00000020.pt").samefile(newest):
        assert "step-00000020.pt" not in message
    resumed = Trainer(_config(), out_dir=run, resume=run / "checkpoints" / "step-00000015.pt", progress=False)
    assert resumed.step == 15


def test_a_run_killed_before_its_first_checkpoint_is_restarted_by_the_same_command(tmp_path: Path) -> None:
    # A SIGKILL before the first checkpoint left config.json and metrics.jsonl: the same command
    # was refused ("not empty"), and --resume found no checkpoint.
    out = tmp_path / "run"
    config = _config(steps=3)
    Trainer(config, out_dir=out, progress=False).fit()
    (out / "checkpoint.pt").unlink()
    for p in (out / "checkpoints").glob("*") if (out / "checkpoints").is_dir() else ():
        p.unlink()
    assert (out / "config.json").is_file() and (out / "metrics.jsonl").is_file()
    Trainer(config, out_dir=out, progress=False).fit()
    assert (out / "checkpoint.pt").is_file()
    # Anything else in the folder (or a config.json that is not a training config) still refuses.
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"mine": 1}')
    (other / "metrics.jsonl").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        Trainer(config, out_dir=other, progress=False)


def test_a_checkpoint_path_that_is_a_folder_is_named_as_such(tmp_path: Path) -> None:
    # RUN/checkpoint.pt being a folder was reported as "no checkpoint at RUN/checkpoint.pt/checkpoint.pt".
    (tmp_path / "checkpoint.pt").mkdir()
    for path in (tmp_path, tmp_path / "checkpoint.pt"):
        with pytest.raises(CheckpointError, match=r"checkpoint.pt is a directory, not a checkpoint file") as err:
            load_checkpoint(path)
        assert "checkpoint.pt/checkpoint.pt" not in str(err.value)
