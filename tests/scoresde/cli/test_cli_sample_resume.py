"""`scoresde sample --batch-size`: chunks kept on disk, an interrupted run resumes to the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde.cli import main

ARGS = ["sample", "--target", "sharp_8", "--solver", "pc", "--steps", "20", "--n", "50", "--batch-size", "20",
        "--no-plot", "--no-progress"]


def test_chunked_cli_run_equals_the_chunked_api_run(tmp_path):
    assert main([*ARGS, "--out", str(tmp_path / "o")]) == 0
    sde = sd.VPSDE()
    api = solvers.sample(sde, sd.targets.sharp_8().score_fn(sde), shape=(50, 2), solver="pc", steps=20, seed=0,
                         batch_size=20, dtype=torch.float32)
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "samples.npy"), api.samples.numpy())
    assert not (tmp_path / "o" / "chunks").exists()  # removed once the samples file is written


def test_an_interrupted_run_resumes_to_the_same_samples(tmp_path, monkeypatch, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "whole")]) == 0
    whole = np.load(tmp_path / "whole" / "samples.npy")
    real = solvers.sample
    calls = []

    def interrupted_after_two_chunks(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "o"
    monkeypatch.setattr(solvers, "sample", interrupted_after_two_chunks)
    assert main([*ARGS, "--out", str(out)]) == 130
    assert "2 of 3 chunks are kept" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["chunk-00000.pt", "chunk-00001.pt", "run.json"]
    assert not (out / "samples.npy").exists()
    monkeypatch.setattr(solvers, "sample", real)
    calls.clear()
    monkeypatch.setattr(solvers, "sample", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert main([*ARGS, "--out", str(out)]) == 0
    assert len(calls) == 1 and "resumed: 2 finished chunk(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out / "samples.npy"), whole)


def test_chunks_of_other_settings_are_refused_and_damaged_chunks_are_recomputed(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    real = solvers.sample
    calls: list[int] = []

    def stop_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(solvers, "sample", stop_at_third)
    assert main([*ARGS, "--seed", "1", "--out", str(out)]) == 130
    monkeypatch.setattr(solvers, "sample", real)
    # Another seed: the stored chunks are neither reused nor deleted; the run is refused, naming
    # the differing setting, until --overwrite discards them.
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "seed: 1 -> 0" in err and "--overwrite" in err
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["chunk-00000.pt", "chunk-00001.pt", "run.json"]
    assert main([*ARGS, "--overwrite", "--out", str(out)]) == 0
    assert "discarding 2 finished chunk(s)" in capsys.readouterr().err
    assert main([*ARGS, "--out", str(tmp_path / "ref")]) == 0
    np.testing.assert_array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "ref" / "samples.npy"))
    # A damaged chunk is recomputed, and the result is still that of an uninterrupted run.
    calls.clear()
    monkeypatch.setattr(solvers, "sample", stop_at_third)
    assert main([*ARGS, "--out", str(out)]) == 130
    monkeypatch.setattr(solvers, "sample", real)
    (out / "chunks" / "chunk-00001.pt").write_bytes(b"not a chunk")
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "chunk-00001.pt has no integrity header" in captured.err
    assert "resumed: 1 finished chunk(s)" in captured.out
    np.testing.assert_array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "ref" / "samples.npy"))


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_bad_batch_size_is_a_usage_error(tmp_path, bad, capsys):
    assert main([*ARGS[:-4], "--batch-size", bad, "--no-plot", "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "batch_size must be a positive integer" in capsys.readouterr().err
