"""`scoresde likelihood --batch-size --out`: finished pieces kept on disk, an interrupted run resumes to the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scoresde as sd
import scoresde.likelihood
from scoresde.cli import _likelihood_chunks as chunks
from scoresde.cli import main

# Hutchinson probes and the pilot of the auto grid both draw from the run's generator, so a
# resumed run must restore the generator's state after each finished piece to give the same numbers.
ARGS = ["likelihood", "--target", "eight_gaussians", "--n", "50", "--batch-size", "20", "--divergence",
        "hutchinson", "--probes", "2", "--integrator", "rk4_simpson", "--steps", "8", "--no-progress"]


def _table(path):
    return np.loadtxt(path, delimiter=",", skiprows=1)


def _interrupt_at_chunk(monkeypatch, k_stop):
    """Make the store raise KeyboardInterrupt instead of saving chunk `k_stop`; count the saves."""
    real = chunks.FolderStore.save_chunk
    saved: list[int] = []

    def save(self, k, *args):
        if k == k_stop:
            raise KeyboardInterrupt
        saved.append(k)
        return real(self, k, *args)

    monkeypatch.setattr(chunks.FolderStore, "save_chunk", save)
    return saved


def test_the_kept_run_gives_the_library_numbers_and_the_folder_goes_once_written(tmp_path):
    out = tmp_path / "ll.csv"
    assert main([*ARGS, "--out", str(out)]) == 0
    assert not (tmp_path / "ll.csv.chunks").exists()
    sde = sd.VPSDE()
    target = sd.targets.get_target("eight_gaussians")
    x = target.sample(50, generator=torch.Generator().manual_seed(0)).to(torch.float32)
    lib = scoresde.likelihood.likelihood(sde, target.score_fn(sde), x, divergence="hutchinson", n_probes=2,
                                         integrator="rk4_simpson", steps=8, batch_size=20, seed=0)
    np.testing.assert_allclose(_table(out)[:, 0], lib.log_prob.double().numpy(), rtol=0, atol=1e-6)


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "whole.csv")]) == 0
    whole = _table(tmp_path / "whole.csv")
    out, folder = tmp_path / "ll.csv", tmp_path / "ll.csv.chunks"
    with monkeypatch.context() as m:
        _interrupt_at_chunk(m, 2)
        assert main([*ARGS, "--out", str(out)]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["chunk-00000.pt", "chunk-00001.pt", "pilot.pt", "run.json"]
    assert not out.exists()
    with monkeypatch.context() as m:
        saved = _interrupt_at_chunk(m, -1)
        assert main([*ARGS, "--out", str(out)]) == 0
    assert saved == [2] and "resumed: 2 finished chunk(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(_table(out), whole)
    assert not folder.exists()


def test_pieces_of_other_settings_are_refused_and_damaged_pieces_are_computed_again(tmp_path, monkeypatch, capsys):
    out, folder = tmp_path / "ll.csv", tmp_path / "ll.csv.chunks"
    assert main([*ARGS, "--out", str(tmp_path / "ref.csv")]) == 0
    with monkeypatch.context() as m:
        _interrupt_at_chunk(m, 2)
        assert main([*ARGS, "--seed", "1", "--out", str(out)]) == 130  # other data and probes
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out)]) == 2  # refused, nothing deleted
    err = capsys.readouterr().err
    assert "other settings" in err and "settings.seed: 1 -> 0" in err and "--overwrite" in err
    assert sorted(p.name for p in folder.iterdir()) == ["chunk-00000.pt", "chunk-00001.pt", "pilot.pt", "run.json"]
    assert main([*ARGS, "--overwrite", "--out", str(out)]) == 0
    assert "discarding 2 finished chunk(s) and a pilot" in capsys.readouterr().err
    np.testing.assert_array_equal(_table(out), _table(tmp_path / "ref.csv"))
    # A damaged chunk and a damaged pilot are computed again; the result is still the uninterrupted one.
    for damaged in ("chunk-00001.pt", "pilot.pt"):
        with monkeypatch.context() as m:
            _interrupt_at_chunk(m, 2)
            assert main([*ARGS, "--out", str(out)]) == 130
        (folder / damaged).write_bytes(b"not a piece")
        capsys.readouterr()
        assert main([*ARGS, "--out", str(out)]) == 0
        assert f"{damaged} has no integrity header" in capsys.readouterr().err
        np.testing.assert_array_equal(_table(out), _table(tmp_path / "ref.csv"))


def test_a_store_refuses_grad():
    sde = sd.VPSDE()
    target = sd.targets.get_target("eight_gaussians")
    with pytest.raises(ValueError, match="grad"):
        scoresde.likelihood.likelihood(sde, target.score_fn(sde), torch.zeros(4, 2), integrator="rk4", steps=4,
                                       grad=True, store=object())
