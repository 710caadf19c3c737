"""Resumable likelihoods for ``scoresde likelihood --batch-size B --out FILE``.

The library runs the points ``B`` at a time (`scoresde.likelihood`, ``batch_size``) and hands
every finished piece (the pilot of ``--steps auto``, then each chunk) to a `FolderStore`, which
writes it atomically to ``FILE.chunks/`` together with the state of the run's generator after
it, next to ``FILE.chunks/run.json`` (the settings and the data's identity). Rerunning the
same command after an interruption loads the finished pieces, restores the generator and goes
on, so the numbers are those of an uninterrupted run. Pieces written with other settings or
other data are discarded (with a note); a damaged piece is computed again. The folder is
removed once the output file has been written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_write_bytes, atomic_write_with
from ..likelihood.pilot import PilotGrid, Solved
from ._chunks import chunk_path, holds_run
from ._settings import _jsonable

__all__ = ["FolderStore", "chunks_folder"]


def chunks_folder(out: Path) -> Path:
    """Where the pieces of a run writing ``out`` are kept: ``out`` + ``.chunks``."""
    return out.with_name(out.name + ".chunks")


def _solved_record(solved: Solved) -> dict[str, Any]:
    return {"idx": solved.idx.cpu(), "x_T": solved.x_T.detach().cpu(), "delta": solved.delta.detach().cpu(),
            "prior": solved.prior.detach().cpu(),
            "correction": None if solved.correction is None else solved.correction.detach().cpu()}


def _solved(rec: dict[str, Any], device: torch.device) -> Solved:
    corr = rec["correction"]
    return Solved(rec["idx"].to(device), rec["x_T"].to(device), rec["delta"].to(device), rec["prior"].to(device),
                  None if corr is None else corr.to(device))


class FolderStore:
    """A `scoresde.likelihood.runner.ChunkStore` on a folder of atomically written files.

    Args:
        folder: the folder (created on the first write).
        fingerprint: JSON-able settings and data identity; stored pieces are used only under
            an equal fingerprint (a folder of other settings is removed).
        device: where loaded tensors go (the computation's device).
    """

    def __init__(self, folder: Path, fingerprint: dict[str, Any], device: torch.device) -> None:
        self.folder, self.device = folder, device
        self.reused = 0
        if not holds_run(folder, fingerprint):
            atomic_write_bytes(folder / "run.json", json.dumps(fingerprint, sort_keys=True).encode())

    def _load(self, path: Path, keys: tuple[str, ...]) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            rec: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            if not all(k in rec for k in keys):
                raise ValueError("missing fields")
        except Exception:  # a damaged or foreign file: compute this piece again  # noqa: BLE001
            print(f"note: {path} cannot be read; computing it again", file=sys.stderr)
            return None
        return rec

    def _save(self, path: Path, rec: dict[str, Any]) -> None:
        atomic_write_with(path, lambda f: torch.save(rec, f))

    def load_pilot(self) -> tuple[PilotGrid, Tensor] | None:
        rec = self._load(self.folder / "pilot.pt", ("grid", "steps", "nfe", "info", "solved", "rng_state"))
        if rec is None:
            return None
        solved = None if rec["solved"] is None else _solved(rec["solved"], self.device)
        pilot = PilotGrid(rec["grid"], int(rec["steps"]), int(rec["nfe"]), dict(rec["info"]), solved)
        return pilot, rec["rng_state"]

    def save_pilot(self, pilot: PilotGrid, rng_state: Tensor) -> None:
        info = json.loads(json.dumps(_jsonable(pilot.info)))
        self._save(self.folder / "pilot.pt", {
            "grid": pilot.grid.cpu(), "steps": pilot.steps, "nfe": pilot.nfe, "info": info,
            "solved": None if pilot.solved is None else _solved_record(pilot.solved), "rng_state": rng_state.cpu()})

    def load_chunk(self, k: int) -> tuple[Solved, dict[str, Any], Tensor] | None:
        rec = self._load(chunk_path(self.folder, k), ("solved", "stats", "rng_state"))
        if rec is None:
            return None
        self.reused += 1
        return _solved(rec["solved"], self.device), dict(rec["stats"]), rec["rng_state"]

    def save_chunk(self, k: int, solved: Solved, stats: dict[str, Any], rng_state: Tensor) -> None:
        self._save(chunk_path(self.folder, k), {"solved": _solved_record(solved),
                                                "stats": json.loads(json.dumps(_jsonable(stats))),
                                                "rng_state": rng_state.cpu()})
