"""Resumable likelihoods for ``scoresde likelihood --batch-size B --out FILE``.

The library runs the points ``B`` at a time (`scoresde.likelihood`, ``batch_size``) and hands
every finished piece (the pilot of ``--steps auto``, then each chunk) to a `FolderStore`, which
writes it atomically to ``FILE.chunks/`` together with the state of the run's generator after
it, next to ``FILE.chunks/run.json`` (the settings and the data's identity). Rerunning the
same command after an interruption loads the finished pieces, restores the generator and goes
on, so the numbers are those of an uninterrupted run. Every piece file carries an integrity
header (`scoresde.cli._chunks.write_piece`: its name and rows, the run's settings digest, the
SHA-256 of its data); a piece that fails it (damaged, another chunk's file, an older version's
file) is noted and computed again. A folder of pieces written with other settings or other
data is refused, naming what differs (``--overwrite`` discards it). A chunk stores its own
rows only (a ``[start, stop)`` range when they are consecutive). The folder is removed once
the output file has been written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_write_bytes
from ..likelihood.pilot import PilotGrid, Solved
from ._chunks import (
    PieceError,
    chunk_path,
    clean_chunk_temps,
    holds_run,
    read_piece,
    run_digest,
    write_piece,
)
from ._settings import _jsonable

__all__ = ["FolderStore", "chunks_folder"]


def chunks_folder(out: Path) -> Path:
    """Where the pieces of a run writing ``out`` are kept: ``out`` + ``.chunks``."""
    return out.with_name(out.name + ".chunks")


def _rows(idx: Tensor) -> tuple[int, int] | None:
    """``(start, stop)`` when ``idx`` is the consecutive rows ``start .. stop - 1``, else None."""
    if idx.numel() == 0:
        return None
    start, stop = int(idx[0]), int(idx[-1]) + 1
    if stop - start == idx.numel() and torch.equal(idx.cpu(), torch.arange(start, stop, dtype=idx.dtype)):
        return start, stop
    return None


def _solved_record(solved: Solved) -> dict[str, Any]:
    """A piece's tensors, each its own storage (a slice of a larger tensor would save all of it);
    consecutive rows are stored as ``idx_range`` only."""
    rows = _rows(solved.idx)
    return {"idx": None if rows is not None else solved.idx.detach().cpu().clone(),
            "idx_range": None if rows is None else list(rows),
            "x_T": solved.x_T.detach().cpu().clone(), "delta": solved.delta.detach().cpu().clone(),
            "prior": solved.prior.detach().cpu().clone(),
            "correction": None if solved.correction is None else solved.correction.detach().cpu().clone()}


def _idx(rec: dict[str, Any]) -> Tensor:
    """The row indices of a stored piece (from ``idx_range`` or ``idx``)."""
    if rec.get("idx_range") is not None:
        start, stop = (int(v) for v in rec["idx_range"])
        return torch.arange(start, stop)
    idx = rec.get("idx")
    if not isinstance(idx, Tensor):
        raise PieceError("no row indices")
    return idx


def _solved(rec: dict[str, Any], device: torch.device) -> Solved:
    corr = rec["correction"]
    return Solved(_idx(rec).to(device), rec["x_T"].to(device), rec["delta"].to(device), rec["prior"].to(device),
                  None if corr is None else corr.to(device))


class FolderStore:
    """A `scoresde.likelihood.runner.ChunkStore` on a folder of atomically written files.

    Args:
        folder: the folder (created on the first write).
        fingerprint: JSON-able settings and data identity; stored pieces are used only under
            an equal fingerprint (a folder of other settings is refused, see `holds_run`).
        device: where loaded tensors go (the computation's device).
        overwrite: discard any stored pieces and start afresh.

    Raises:
        ChunkSettingsError: the folder holds pieces of a run with other settings (without
            ``overwrite``).
    """

    def __init__(self, folder: Path, fingerprint: dict[str, Any], device: torch.device, *,
                 overwrite: bool = False) -> None:
        self.folder, self.device = folder, device
        self.reused = 0
        self._run = run_digest(fingerprint)
        clean_chunk_temps(folder)
        if not holds_run(folder, fingerprint, overwrite=overwrite):
            atomic_write_bytes(folder / "run.json", json.dumps(fingerprint, sort_keys=True).encode())

    def _load(self, path: Path, piece: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The checked record of a piece file, or None (absent, or noted and to be computed again)."""
        if not path.exists():
            return None
        try:
            rec = read_piece(path, piece=piece, rows=None, run=self._run)
            missing = [k for k in keys if k not in rec]
            if missing:
                raise PieceError(f"{path} lacks {', '.join(missing)}")
            if rec["solved"] is not None:
                idx = _idx(rec["solved"])
                if rec.get("rows") != [int(idx.min()), int(idx.max()) + 1, int(idx.numel())]:
                    raise PieceError(f"{path}: its row indices do not match its record")
        except (OSError, PieceError, KeyError, TypeError, ValueError, RuntimeError) as err:
            text = str(err) if str(path) in str(err) else f"{path}: {err}"
            print(f"note: {text}; computing it again", file=sys.stderr)
            return None
        return rec

    def _save(self, path: Path, piece: str, rec: dict[str, Any]) -> None:
        solved = rec["solved"]
        if solved is not None:  # first row, last row + 1, count: checked against the indices on load
            idx = _idx(solved)
            rec = {**rec, "rows": [int(idx.min()), int(idx.max()) + 1, int(idx.numel())]}
        write_piece(path, rec, piece=piece, rows=None, run=self._run)

    def load_pilot(self) -> tuple[PilotGrid, Tensor] | None:
        rec = self._load(self.folder / "pilot.pt", "pilot", ("grid", "steps", "nfe", "info", "solved", "rng_state"))
        if rec is None:
            return None
        solved = None if rec["solved"] is None else _solved(rec["solved"], self.device)
        pilot = PilotGrid(rec["grid"], int(rec["steps"]), int(rec["nfe"]), dict(rec["info"]), solved)
        return pilot, rec["rng_state"]

    def save_pilot(self, pilot: PilotGrid, rng_state: Tensor) -> None:
        info = json.loads(json.dumps(_jsonable(pilot.info)))
        self._save(self.folder / "pilot.pt", "pilot", {
            "grid": pilot.grid.cpu(), "steps": pilot.steps, "nfe": pilot.nfe, "info": info,
            "solved": None if pilot.solved is None else _solved_record(pilot.solved), "rng_state": rng_state.cpu()})

    def load_chunk(self, k: int) -> tuple[Solved, dict[str, Any], Tensor] | None:
        """Chunk ``k`` if stored and intact (the runner checks its rows against the ones it expects)."""
        rec = self._load(chunk_path(self.folder, k), f"chunk {k}", ("solved", "stats", "rng_state"))
        if rec is None or rec["solved"] is None:
            return None
        self.reused += 1
        return _solved(rec["solved"], self.device), dict(rec["stats"]), rec["rng_state"]

    def save_chunk(self, k: int, solved: Solved, stats: dict[str, Any], rng_state: Tensor) -> None:
        self._save(chunk_path(self.folder, k), f"chunk {k}", {"solved": _solved_record(solved),
                                                             "stats": json.loads(json.dumps(_jsonable(stats))),
                                                             "rng_state": rng_state.cpu()})
