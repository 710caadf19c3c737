"""Stored chunks of `scoresde sample` / `scoresde likelihood --batch-size`: integrity, settings, size, temp files.

A damaged chunk (a flipped bit that `torch.load` does not notice), or another chunk's file under
its name, is noted and recomputed, and the output is still bit for bit that of an uninterrupted
run; a rerun with other settings is refused without deleting the finished chunks (``--overwrite``
discards them); a likelihood chunk stores its own rows only; stale temporary files of a killed
atomic write are removed at the start of a run.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import solvers
from scoresde.cli import _likelihood_chunks as lchunks
from scoresde.cli import main

SAMPLE = ["sample", "--target", "sharp_8", "--solver", "pc", "--steps", "20", "--n", "50", "--batch-size", "20",
          "--no-plot", "--no-progress"]
LIKELIHOOD = ["likelihood", "--target", "eight_gaussians", "--n", "50", "--batch-size", "20", "--divergence",
              "hutchinson", "--probes", "2", "--integrator", "rk4_simpson", "--steps", "8", "--no-progress"]


def _record(path: Path) -> dict[str, Any]:
    """The torch record inside a chunk file (with or without an integrity header in front)."""
    data = path.read_bytes()
    return torch.load(io.BytesIO(data[data.index(b"PK\x03\x04"):]), map_location="cpu", weights_only=True)


def _flip_inside(path: Path, tensor: torch.Tensor, offset: int) -> None:
    """Flip one bit of the stored bytes of ``tensor`` in ``path`` (a change `torch.load` does not notice)."""
    data = bytearray(path.read_bytes())
    raw = tensor.contiguous().numpy().tobytes()
    at = bytes(data).index(raw) + offset
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def _interrupted_sample(monkeypatch: pytest.MonkeyPatch, args: list[str], out: Path) -> None:
    """Run ``sample`` and interrupt it at its third chunk (chunks 0 and 1 are kept)."""
    real = solvers.sample
    calls: list[int] = []

    def stop_at_third(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(solvers, "sample", stop_at_third)
        assert main([*args, "--out", str(out)]) == 130


def _interrupted_likelihood(monkeypatch: pytest.MonkeyPatch, args: list[str], out: Path) -> None:
    """Run ``likelihood`` and interrupt it before chunk 2 is saved (pilot, chunks 0 and 1 kept)."""
    real = lchunks.FolderStore.save_chunk

    def save(self: Any, k: int, *a: Any) -> Any:
        if k == 2:
            raise KeyboardInterrupt
        return real(self, k, *a)

    with monkeypatch.context() as m:
        m.setattr(lchunks.FolderStore, "save_chunk", save)
        assert main([*args, "--out", str(out)]) == 130


def _table(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1)


@pytest.fixture(scope="module")
def sample_ref(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("ref") / "s"
    assert main([*SAMPLE, "--out", str(out)]) == 0
    return np.load(out / "samples.npy")


@pytest.fixture(scope="module")
def likelihood_ref(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("ref") / "ll.csv"
    assert main([*LIKELIHOOD, "--out", str(out)]) == 0
    return _table(out)


# --- D1: integrity of stored chunks -------------------------------------------------------------


@pytest.mark.parametrize("field", ["samples", "rng_state"])
def test_a_bit_flip_in_a_sample_chunk_is_detected_and_the_chunk_recomputed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sample_ref: np.ndarray,
        field: str) -> None:
    out = tmp_path / "o"
    _interrupted_sample(monkeypatch, SAMPLE, out)
    path = out / "chunks" / "chunk-00001.pt"
    _flip_inside(path, _record(path)[field], 37)
    capsys.readouterr()
    assert main([*SAMPLE, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{path} is damaged: SHA-256" in captured.err and "recomputing from chunk 1" in captured.err
    assert "resumed: 1 finished chunk(s)" in captured.out
    np.testing.assert_array_equal(np.load(out / "samples.npy"), sample_ref)


def test_another_chunk_file_under_a_chunk_name_is_detected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        sample_ref: np.ndarray) -> None:
    out = tmp_path / "o"
    _interrupted_sample(monkeypatch, SAMPLE, out)
    shutil.copyfile(out / "chunks" / "chunk-00000.pt", out / "chunks" / "chunk-00001.pt")
    capsys.readouterr()
    assert main([*SAMPLE, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "chunk-00001.pt holds chunk 0 (rows [0, 20]), not chunk 1 (rows [20, 40])" in err
    np.testing.assert_array_equal(np.load(out / "samples.npy"), sample_ref)


def test_a_bit_flip_in_a_likelihood_chunk_is_detected_and_the_chunk_computed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        likelihood_ref: np.ndarray) -> None:
    out = tmp_path / "ll.csv"
    _interrupted_likelihood(monkeypatch, LIKELIHOOD, out)
    path = tmp_path / "ll.csv.chunks" / "chunk-00001.pt"
    _flip_inside(path, _record(path)["solved"]["delta"], 9)
    capsys.readouterr()
    assert main([*LIKELIHOOD, "--out", str(out)]) == 0
    assert f"{path} is damaged: SHA-256" in capsys.readouterr().err
    np.testing.assert_array_equal(_table(out), likelihood_ref)


def test_another_likelihood_chunk_under_a_chunk_name_is_noted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        likelihood_ref: np.ndarray) -> None:
    out = tmp_path / "ll.csv"
    _interrupted_likelihood(monkeypatch, LIKELIHOOD, out)
    folder = tmp_path / "ll.csv.chunks"
    shutil.copyfile(folder / "chunk-00000.pt", folder / "chunk-00001.pt")
    capsys.readouterr()
    assert main([*LIKELIHOOD, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "chunk-00001.pt holds chunk 0" in captured.err and "computing it again" in captured.err
    assert "resumed: 1 finished chunk(s)" in captured.out
    np.testing.assert_array_equal(_table(out), likelihood_ref)


# --- D2: a rerun with other settings keeps the finished chunks ----------------------------------


def test_a_sample_rerun_with_other_settings_is_refused_and_keeps_the_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        sample_ref: np.ndarray) -> None:
    out = tmp_path / "o"
    _interrupted_sample(monkeypatch, SAMPLE, out)
    before = {p.name: p.read_bytes() for p in (out / "chunks").iterdir()}
    typo = [*SAMPLE]
    typo[typo.index("--steps") + 1] = "19"
    capsys.readouterr()
    assert main([*typo, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds 2 finished chunk(s) of a run with other settings (settings.steps: 20 -> 19)" in err
    assert "choose another --out, or pass --overwrite to discard them" in err
    assert {p.name: p.read_bytes() for p in (out / "chunks").iterdir()} == before
    # the corrected rerun still resumes from them
    assert main([*SAMPLE, "--out", str(out)]) == 0
    assert "resumed: 2 finished chunk(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out / "samples.npy"), sample_ref)


def test_a_damaged_settings_file_does_not_advise_resuming(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # "rerun with the earlier settings to resume them" cannot work when run.json is unreadable
    out = tmp_path / "o"
    _interrupted_sample(monkeypatch, SAMPLE, out)
    (out / "chunks" / "run.json").write_text("{ damaged")
    capsys.readouterr()
    assert main([*SAMPLE, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot be read (damaged), so they cannot be resumed" in err and "to resume them" not in err
    assert "pass --overwrite to discard them" in err


def test_a_likelihood_rerun_with_other_settings_is_refused_and_keeps_the_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        likelihood_ref: np.ndarray) -> None:
    out = tmp_path / "ll.csv"
    _interrupted_likelihood(monkeypatch, LIKELIHOOD, out)
    folder = tmp_path / "ll.csv.chunks"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    assert main([*LIKELIHOOD, "--probes", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings (settings.probes: 2 -> 3)" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main([*LIKELIHOOD, "--out", str(out)]) == 0
    assert "resumed: 2 finished chunk(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(_table(out), likelihood_ref)


@pytest.mark.parametrize("command", ["sample", "likelihood"])
def test_chunks_of_another_code_version_are_not_joined_to_this_versions(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Chunks written before an edit / upgrade of the package, resumed after it, would make an
    # output that neither version computes: the rerun is refused, naming the code as the cause.
    from scoresde.cli import _chunks

    if command == "sample":
        out = tmp_path / "o"
        _interrupted_sample(monkeypatch, SAMPLE, out)
        args, folder = [*SAMPLE, "--out", str(out)], out / "chunks"
    else:
        out = tmp_path / "ll.csv"
        _interrupted_likelihood(monkeypatch, LIKELIHOOD, out)
        args, folder = [*LIKELIHOOD, "--out", str(out)], tmp_path / "ll.csv.chunks"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = _chunks.code_digest()
    monkeypatch.setattr(_chunks, "code_digest", lambda: "0123456789abcdef")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "written by another version of scoresde / solvers" in err
    assert f"source digest {real} -> 0123456789abcdef" in err and "--overwrite" in err
    assert "rerun with the earlier settings" not in err  # that cannot bring the old code back
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main([*args, "--overwrite"]) == 0
    assert "discarding 2 finished chunk(s)" in capsys.readouterr().err


def test_the_code_digest_covers_every_source_file_of_both_packages() -> None:
    import hashlib

    from scoresde.cli import _chunks

    digest = _chunks.code_digest()
    assert len(digest) == 16 and int(digest, 16) >= 0
    # recomputed by hand: one changed byte in any file (here: the last one read) changes it
    import scoresde

    files = []
    for name, package in (("scoresde", scoresde), ("solvers", solvers)):
        root = Path(package.__file__).parent
        files += [(f"{name}/{p.relative_to(root).as_posix()}", p.read_bytes()) for p in sorted(root.rglob("*.py"))]
    assert any(n.startswith("scoresde/cli/") for n, _ in files) and any(n == "solvers/api.py" for n, _ in files)

    def digest_of(entries: list[tuple[str, bytes]]) -> str:
        h = hashlib.sha256()
        for n, b in entries:
            h.update(n.encode() + b"\0" + b + b"\0")
        return h.hexdigest()[:16]

    assert digest_of(files) == digest
    files[-1] = (files[-1][0], files[-1][1] + b"#")
    assert digest_of(files) != digest


# --- D3: a likelihood chunk stores its own rows only --------------------------------------------


def test_a_likelihood_chunk_stores_only_its_own_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [*LIKELIHOOD]
    args[args.index("--n") + 1] = "400"
    _interrupted_likelihood(monkeypatch, args, tmp_path / "ll.csv")
    rec = _record(tmp_path / "ll.csv.chunks" / "chunk-00001.pt")

    def tensors(value: Any) -> list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, dict):
            return [t for v in value.values() for t in tensors(v)]
        return []

    for t in tensors(rec["solved"]):  # no tensor drags the storage of all 400 points along
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
        assert t.numel() <= 20 * 2


# --- minor: stale temporary files of a killed atomic write --------------------------------------


def _stale(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(path, (old, old))
    return path


def test_stale_temps_are_removed_at_the_start_of_sample_and_likelihood(tmp_path: Path) -> None:
    out = tmp_path / "o"
    s1, s2 = _stale(out / ".samples.npy.abcd1234.tmp"), _stale(out / "chunks" / ".chunk-00000.pt.abcd1234.tmp")
    assert main([*SAMPLE, "--out", str(out)]) == 0
    assert not s1.exists() and not s2.exists()
    ll = tmp_path / "l" / "ll.csv"
    l1 = _stale(ll.parent / ".ll.csv.abcd1234.tmp")
    l2 = _stale(ll.parent / "ll.csv.chunks" / ".chunk-00000.pt.abcd1234.tmp")
    other = _stale(ll.parent / ".notes.txt.abcd1234.tmp")  # not the command's: kept
    assert main([*LIKELIHOOD, "--out", str(ll)]) == 0
    assert not l1.exists() and not l2.exists() and other.exists()


def test_likelihood_writes_its_out_file_before_printing(tmp_path, monkeypatch):
    # With stdout closed (`... | head -1`) the summary print failed before --out was written:
    # everything was computed and nothing kept.
    import builtins

    from scoresde.cli import main as cli_main

    real_print = builtins.print

    def broken_stdout(*a, **kw):
        if kw.get("file") is None:
            raise BrokenPipeError(32, "Broken pipe")
        return real_print(*a, **kw)

    out = tmp_path / "lp.csv"
    monkeypatch.setattr(builtins, "print", broken_stdout)
    try:
        cli_main(["likelihood", "--target", "eight_gaussians", "--n", "20", "--out", str(out)])
    except BaseException:  # noqa: BLE001 - how the CLI reports the broken pipe is not the point here
        pass
    monkeypatch.setattr(builtins, "print", real_print)
    assert out.is_file() and len(out.read_text().splitlines()) == 21
