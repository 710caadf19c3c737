"""`scoresde likelihood --batch-size --out`: chunks kept on disk, an interrupted run resumes to the same numbers."""

from __future__ import annotations

import numpy as np
import torch

import scoresde as sd
import scoresde.likelihood
from scoresde.cli import main

# Hutchinson with two probes: chunk k draws its probes from seed + k, so a resumed run must
# restore exactly which chunk it is at to give the same numbers.
ARGS = ["likelihood", "--target", "eight_gaussians", "--n", "50", "--batch-size", "20", "--divergence",
        "hutchinson", "--probes", "2", "--integrator", "rk4", "--steps", "8", "--no-progress"]


def _table(path):
    return np.loadtxt(path, delimiter=",", skiprows=1)


def test_chunks_use_seed_plus_k_and_the_folder_goes_once_written(tmp_path):
    out = tmp_path / "ll.csv"
    assert main([*ARGS, "--out", str(out)]) == 0
    assert not (tmp_path / "ll.csv.chunks").exists()
    # The same chunks and seeds through the library, one call per chunk.
    sde = sd.VPSDE()
    target = sd.targets.get_target("eight_gaussians")
    x = target.sample(50, generator=torch.Generator().manual_seed(0)).to(torch.float32)
    parts = [scoresde.likelihood.likelihood(sde, target.score_fn(sde), x[s:s + 20], divergence="hutchinson",
                                            n_probes=2, integrator="rk4", steps=8, seed=k).log_prob
             for k, s in enumerate(range(0, 50, 20))]
    np.testing.assert_allclose(_table(out)[:, 0], torch.cat(parts).double().numpy(), rtol=0, atol=1e-6)
    # Without --out: the same chunks, nothing kept.
    assert main(ARGS) == 0


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "whole.csv")]) == 0
    whole = _table(tmp_path / "whole.csv")
    real = scoresde.likelihood.likelihood
    calls: list[int] = []

    def interrupted_at_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "ll.csv"
    folder = tmp_path / "ll.csv.chunks"
    monkeypatch.setattr(scoresde.likelihood, "likelihood", interrupted_at_the_third_chunk)
    assert main([*ARGS, "--out", str(out)]) == 130
    assert "2 of 3 chunks are kept" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["chunk-00000.pt", "chunk-00001.pt", "run.json"]
    assert not out.exists()
    calls.clear()
    monkeypatch.setattr(scoresde.likelihood, "likelihood", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert main([*ARGS, "--out", str(out)]) == 0
    assert len(calls) == 1 and "resumed: 2 finished chunk(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(_table(out), whole)
    assert not folder.exists()


def test_chunks_of_other_settings_or_data_and_damaged_chunks_are_recomputed(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ll.csv"
    folder = tmp_path / "ll.csv.chunks"
    real = scoresde.likelihood.likelihood
    calls: list[int] = []

    def stop_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoresde.likelihood, "likelihood", stop_at_third)
    assert main([*ARGS, "--seed", "1", "--out", str(out)]) == 130  # other seed: other data and probes
    monkeypatch.setattr(scoresde.likelihood, "likelihood", real)
    assert main([*ARGS, "--out", str(out)]) == 0
    assert "other settings" in capsys.readouterr().err
    assert main([*ARGS, "--out", str(tmp_path / "ref.csv")]) == 0
    np.testing.assert_array_equal(_table(out), _table(tmp_path / "ref.csv"))
    # A damaged chunk is recomputed from there on; the result is still the uninterrupted one.
    calls.clear()
    monkeypatch.setattr(scoresde.likelihood, "likelihood", stop_at_third)
    assert main([*ARGS, "--out", str(out)]) == 130
    monkeypatch.setattr(scoresde.likelihood, "likelihood", real)
    (folder / "chunk-00001.pt").write_bytes(b"not a chunk")
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "cannot be read" in captured.err and "resumed: 1 finished chunk(s)" in captured.out
    np.testing.assert_array_equal(_table(out), _table(tmp_path / "ref.csv"))
