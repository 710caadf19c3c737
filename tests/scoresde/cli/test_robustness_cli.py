"""Robustness from outside (issue cases 2, 5, 7): SIGTERM / SIGINT to a training process,
a full disk (a file-size limit), unwritable outputs, and the CLI's one error path."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import solvers
from scoresde.cli import main
from scoresde.cli.errors import describe
from scoresde.train import TrainConfig, Trainer, load_checkpoint

SMALL = ["--width", "16", "--depth", "1", "--batch-size", "32", "--warmup", "2", "--decay-steps", "0",
         "--no-progress"]
# Subprocesses use this process's torch thread count: a checkpoint written here and resumed there
# would otherwise warn that the environment differs (and resume would not be bit-exact).
ENV = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()),
       "PYTHONPATH": str(Path(__file__).resolve().parents[3])}


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scoresde", "train", "--data", "eight_gaussians", "--out", str(out),
            *SMALL, *extra]


def _flat(t: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for m in (t.model, t.ema.model) for p in m.parameters()])


@pytest.mark.slow  # two training subprocesses (about 15 s each on a loaded core)
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_finishes_the_step_checkpoints_and_resumes_bit_exactly(
        tmp_path: Path, sig: signal.Signals, code: int) -> None:
    out = tmp_path / "run"
    # Far more steps than it will run; checkpoints only at the end: everything hangs on the signal.
    proc = subprocess.Popen(_train_cmd(out, "--steps", "1000000", "--ckpt-every", "0", "--log-every", "5"),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists() or not (
            out / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert f"stopped by {sig.name} after step" in stderr and "--resume" in stderr
    step = load_checkpoint(out)["step"]
    assert step >= 5 and f"after step {step};" in stderr
    # Resume to step + 7 equals an uninterrupted run to step + 7, bit for bit (same 1 thread).
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cfg = TrainConfig.from_json(out / "config.json")  # the same run length: the LR schedule
        resumed = Trainer(cfg, out_dir=out, resume=True, progress=False)  # follows it (decay_to_end)
        resumed.fit(until=step + 7)
        full = Trainer(cfg, progress=False)
        full.fit(until=step + 7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(_flat(resumed), _flat(full))


def _limit_file_size(nbytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


@pytest.mark.slow  # a training subprocess
def test_disk_full_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", "eight_gaussians", "--out", str(out), "--steps", "5", *SMALL]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    limit = len(before) // 2  # the next checkpoint cannot be written; logs and config still fit
    proc = subprocess.run(_train_cmd(out, "--steps", "10", "--resume"), env=ENV, capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: _limit_file_size(limit))
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "file too large while writing" in err and "raise the limit" in err
    assert (out / "checkpoint.pt").read_bytes() == before and load_checkpoint(out)["step"] == 5
    leftovers = [p.name for d in (out, out / "checkpoints") for p in d.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_sample_into_an_unwritable_folder_fails_before_sampling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[int] = []
    monkeypatch.setattr(solvers, "sample", lambda *a, **k: calls.append(1))
    (tmp_path / "file").write_text("x")
    assert main(["sample", "--target", "ring", "--n", "10", "--out", str(tmp_path / "file" / "s")]) == 2
    err = capsys.readouterr().err
    assert calls == [] and "not writable" in err and "choose a writable path" in err


def test_cli_error_path_messages_exit_codes_and_debug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import scoresde.cli.sample as sample_cmd

    cases = [
        (OSError(errno.ENOSPC, "No space left on device", "x.npy"), 1, "disk full while writing x.npy"),
        (PermissionError(errno.EACCES, "Permission denied", "/out"), 1, "permission denied: /out"),
        (solvers.NonFiniteScoreError("score returned NaN at t=0.5"), 1, "score returned NaN"),
        (FloatingPointError("overflow"), 1, "overflow"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (RuntimeError("Torch not compiled with CUDA enabled"), 1, "device error"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), 1, "out of memory"),
        (ValueError("--n must be positive"), 2, "--n must be positive"),
        (KeyError("boom"), 1, "unexpected KeyError"),
    ]
    for exc, code, text in cases:
        def boom(args: object, exc: BaseException = exc) -> int:
            raise exc

        monkeypatch.setattr(sample_cmd, "run", boom)
        assert main(["sample", "--target", "ring", "--out", str(tmp_path / "s")]) == code, exc
        err = capsys.readouterr().err.strip()
        assert err.startswith("scoresde sample: error:") and text in err and len(err.splitlines()) == 1, err
        assert describe(exc)[0] == code
    with pytest.raises(KeyError):  # --debug shows the traceback
        main(["sample", "--target", "ring", "--out", str(tmp_path / "s"), "--debug"])


def test_cli_train_clear_errors_for_device_divergence_missing_key_and_foreign_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not torch.cuda.is_available():
        assert main(["train", "--device", "cuda", "--out", str(tmp_path / "c"), *SMALL]) == 2
        assert "use --device cpu" in capsys.readouterr().err
    # The diverging run: exit 3, no NaN checkpoint, no clipping advice (clipping is on).
    out = tmp_path / "R"
    assert main(["train", "--steps", "200", "--batch-size", "64", "--width", "32", "--depth", "1",
                 "--lr", "1e6", "--log-every", "100", "--ckpt-every", "30", "--out", str(out),
                 "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "lower learning rate" in err and "clipping" not in err
    assert not (out / "checkpoint.pt").exists() or torch.isfinite(
        torch.cat([v.flatten() for v in load_checkpoint(out)["model"].values()])).all()
    # A folder holding only config.json is not silently overwritten.
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "config.json").write_text(json.dumps({"mine": 1}))
    assert main(["train", "--steps", "5", "--out", str(tmp_path / "f"), *SMALL]) == 2
    assert "not empty (config.json)" in capsys.readouterr().err
    assert json.loads((tmp_path / "f" / "config.json").read_text()) == {"mine": 1}
    # A checkpoint missing a key: the key and the file are named.
    run = tmp_path / "run"
    assert main(["train", "--steps", "5", "--out", str(run), *SMALL]) == 0
    from scoresde.train.checkpoint import save_checkpoint

    state = load_checkpoint(run)
    del state["ema"]
    save_checkpoint(state, run / "checkpoint.pt")
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run), "--n", "8", "--steps", "2", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt has no 'ema' entry" in err and "another version" in err


@pytest.mark.slow  # a subprocess importing torch
def test_sigkill_during_an_atomic_write_leaves_a_temp_file_that_the_next_start_removes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", "eight_gaussians", "--out", str(run), "--steps", "5", *SMALL]) == 0
    good = (run / "checkpoint.pt").read_bytes()
    # A writer killed after the bytes hit the disk and before the rename (os.replace stalls).
    script = ("import os, sys, time\nfrom scoresde.atomic import atomic_write_bytes\n"
              "os.replace = lambda *a: time.sleep(600)\n"
              "atomic_write_bytes(sys.argv[1], b'x' * 1_000_000)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(run / "checkpoint.pt")], env=ENV)
    deadline, temps = time.time() + 120, []
    while time.time() < deadline:
        temps = [p for p in run.iterdir() if p.name.endswith(".tmp") and p.stat().st_size == 1_000_000]
        if temps:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    assert len(temps) == 1 and temps[0].exists() and (run / "checkpoint.pt").read_bytes() == good
    past = time.time() - 3600  # the next start happens later than the stale age (60 s)
    os.utime(temps[0], (past, past))
    assert main(["train", "--data", "eight_gaussians", "--out", str(run), "--steps", "8", "--resume",
                 *SMALL]) == 0
    assert not temps[0].exists() and load_checkpoint(run)["step"] == 8


def test_cli_conflicting_or_empty_train_flags_and_pointless_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    cases = [
        (["--resume", "--overwrite"], "--resume continues the run in --out and --overwrite starts it afresh"),
        (["--data", ""], "--data is empty"),
        (["--channel-mults", "1,x"], "--channel-mults must be comma-separated integers"),
    ]
    for extra, message in cases:
        assert main(["train", "--steps", "2", "--out", str(out), *SMALL, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["train", "--steps", "3", "--out", str(out), *SMALL]) == 0
    capsys.readouterr()
    assert main(["train", "--steps", "2", "--resume", "--out", str(out), *SMALL]) == 0
    assert "already at step 3 >= --steps 2: nothing to train" in capsys.readouterr().out
    one = tmp_path / "one.npy"
    import numpy as np

    np.save(one, np.ones((5, 2)))
    assert main(["train", "--data", str(one), "--out", str(tmp_path / "one"), *SMALL]) == 2
    assert "the data have no spread" in capsys.readouterr().err


def test_cli_sample_refuses_nan_observations_and_likelihood_bad_levels(tmp_path: Path, capsys) -> None:
    assert main(["sample", "--target", "eight_gaussians", "--mask", "1,0", "--observed", "nan,nan", "--n", "10",
                 "--steps", "5", "--no-plot", "--out", str(tmp_path / "s")]) == 2
    assert "--observed holds NaN/inf values" in capsys.readouterr().err
    assert main(["likelihood", "--target", "eight_gaussians", "--n", "10", "--bpd", "--levels", "0",
                 "--out", str(tmp_path / "l.csv")]) == 2
    assert "--levels must be an integer >= 2, got 0" in capsys.readouterr().err


def test_cli_likelihood_errors_show_a_traceback_with_debug(tmp_path: Path, capsys) -> None:
    args = ["likelihood", "--target", "eight_gaussians", "--n", "10", "--atol", "0"]
    assert main(args) == 2
    assert "atol must be positive and finite" in capsys.readouterr().err
    with pytest.raises(ValueError, match="atol must be positive"):  # --debug shows the traceback
        main(args + ["--debug"])


def test_cli_likelihood_out_needs_a_known_suffix(tmp_path: Path, capsys) -> None:
    assert main(["likelihood", "--target", "eight_gaussians", "--n", "10", "--out", str(tmp_path / "lp.txt")]) == 2
    assert "use .csv, .json or .npy" in capsys.readouterr().err
    assert not (tmp_path / "lp.txt").exists()


def test_cli_sde_that_contradicts_the_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    # A checkpoint carries its SDE; --sde naming another one was silently ignored before.
    run = tmp_path / "run"
    assert main(["train", "--steps", "2", "--sde", "ve", "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    for command in (["sample", "--steps", "3", "--no-plot", "--out", str(tmp_path / "s")],
                    ["likelihood", "--out", str(tmp_path / "l.csv")]):
        assert main([*command, "--checkpoint", str(run), "--n", "8", "--sde", "vp"]) == 2
        err = capsys.readouterr().err
        assert "--sde vp does not match checkpoint" in err and "trained with the ve SDE" in err, err
        # naming the checkpoint's own SDE (any case) or leaving --sde out is fine
        assert main([*command, "--checkpoint", str(run), "--n", "8", "--sde", "VE"]) == 0
        assert main([*command, "--checkpoint", str(run), "--n", "8"]) == 0
        capsys.readouterr()
    assert json.loads((tmp_path / "s" / "samples.json").read_text())["sde"]["name"] == "ve"


@pytest.mark.parametrize(
    "command",
    [["sample", "--target", "eight_gaussians"], ["likelihood", "--target", "eight_gaussians"],
     ["train", "--data", "eight_gaussians"], ["plot", "--target", "eight_gaussians"],
     ["compare", "--targets", "eight_gaussians"], ["demo"], ["train-classifier", "--target", "eight_gaussians"]],
)
def test_cli_empty_out_is_refused_before_any_work(command: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    # '' used to mean the current folder: sample and plot wrote their files there.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([*command, "--out", " "])
    assert exc.value.code == 2
    assert "argument --out: is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_sigterm_to_a_chunked_sample_keeps_the_chunks_and_says_so(tmp_path: Path) -> None:
    # SIGTERM used to kill `sample`/`likelihood`/`compare` outright (no message; the exit-code
    # table promises 143 for every command); now it runs the same path as Ctrl-C.
    out = tmp_path / "S"
    cmd = [sys.executable, "-m", "scoresde", "sample", "--target", "eight_gaussians", "--n", "4000",
           "--batch-size", "500", "--steps", "1000", "--solver", "euler_maruyama", "--no-plot",
           "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "chunks").glob("chunk-*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "chunks are kept" in err and "stopped by SIGTERM" in err
    kept = len(list((out / "chunks").glob("chunk-*")))
    assert 1 <= kept < 8


def test_a_resume_with_nothing_to_train_writes_nothing_and_says_so(tmp_path: Path, capsys) -> None:
    out = tmp_path / "D"
    args = ["train", "--data", "eight_gaussians", "--out", str(out), *SMALL]
    assert main([*args, "--steps", "20"]) == 0
    config, ckpt = (out / "config.json").read_bytes(), (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main([*args, "--steps", "10", "--resume"]) == 0
    said = capsys.readouterr().out
    assert "nothing written" in said and "wrote" not in said
    # config.json kept describing the checkpoint (it was rewritten with steps = 10)
    assert (out / "config.json").read_bytes() == config and (out / "checkpoint.pt").read_bytes() == ckpt
