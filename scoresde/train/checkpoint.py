"""Checkpoint files: written atomically, verified on read, never loaded partially.

Layout of a ``.pt`` checkpoint written here::

    b"SCORESDE-CHECKPOINT\n" + one JSON header line {"format", "nbytes", "sha256"} + payload

where the payload is a ``torch.save`` of a dict (``step``, ``config`` as JSON text, ``model``,
``ema``, ``optimizer``, ``scheduler``, ``rng``, ``history`` ...). Writing goes to a temporary
file in the same directory, is flushed and fsync'ed, then renamed over the target with
`os.replace` (atomic on POSIX), so a crash leaves either the old or the new file.
Reading checks the length (truncation) and the SHA-256 (corruption) before unpickling with
``weights_only=True``; any problem raises `CheckpointError` naming the file.

A run directory keeps ``checkpoint.pt`` (the newest) and a rotating set
``checkpoints/step-XXXXXXXX.pt`` of the last few (`list_rotating`, `prune_rotating`), so a
damaged or unwanted newest file never erases the only good state. Weights that are not
finite are refused both when writing (by the trainer) and when loading (`check_finite_weights`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_bytes
from ..sealed import SealError, seal, unseal

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "resolve_checkpoint", "CHECKPOINT_NAME",
           "intact_older",
           "ROTATING_DIR", "rotating_path", "list_rotating", "prune_rotating", "require",
           "check_finite_weights"]

MAGIC = b"SCORESDE-CHECKPOINT\n"
FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"
ROTATING_DIR = "checkpoints"
_ROT_RE = re.compile(r"^step-(\d{8,})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, or does not match the current run."""


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or ``path/checkpoint.pt`` when ``path`` is a run directory."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() and p.name != CHECKPOINT_NAME else p


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically to ``path`` (its directory is created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, seal(MAGIC, {"format": FORMAT}, buf.getvalue()))


def _verified_payload(path: Path) -> bytes:
    """The payload of the checkpoint file ``path`` after its magic bytes, header, length and
    SHA-256 were checked (`CheckpointError` naming the file otherwise)."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file (a run folder holds its "
                              "checkpoint as checkpoint.pt, a file)")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (check the path, or train one first)")
    try:
        header, payload = unseal(path.read_bytes(), MAGIC)
        fmt = int(header["format"])
    except SealError as err:
        if err.kind == "magic":
            raise CheckpointError(f"{path} is not a scoresde checkpoint (bad magic bytes)") from None
        if err.kind == "header":
            raise CheckpointError(f"{path} has a damaged header (truncated or corrupt file): {err}") from None
        if err.kind == "length":
            raise CheckpointError(f"{path} is truncated or padded: {err}") from None
        raise CheckpointError(f"{path} is corrupt: SHA-256 of the payload does not match its header") from None
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} has a damaged header (truncated or corrupt file): {err!r}") from None
    if fmt != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {fmt}; this version reads format {FORMAT}")
    return payload


def load_checkpoint(path: str | Path, *, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by `save_checkpoint`; returns the state dict.

    A damaged file's error names the run's intact older checkpoints (`intact_older`).
    """
    path = resolve_checkpoint(path)
    exists = path.is_file()
    try:
        payload = _verified_payload(path)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{intact_older(path) if exists else ''}") from None
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # pragma: no cover - checksum passed, so only a format bug lands here
        raise CheckpointError(f"{path} could not be unpickled: {err}") from err


def require(state: Mapping[str, Any], key: str, path: str | Path) -> Any:
    """``state[key]``, or a `CheckpointError` naming the key and the file."""
    try:
        return state[key]
    except (KeyError, TypeError):
        raise CheckpointError(
            f"{path} has no {key!r} entry: the file is corrupt or was written by another version "
            "of scoresde (resume from another checkpoint, or retrain)"
        ) from None


def check_finite_weights(weights: Mapping[str, Any], path: str | Path, what: str) -> None:
    """Refuse a state dict holding NaN or inf (a diverged run's weights)."""
    bad = [k for k, v in weights.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        p = Path(path)
        run_dir = p.parent.parent if p.parent.name == ROTATING_DIR else p.parent
        older = [q for q in list_rotating(run_dir) if q.resolve() != p.resolve()]
        hint = (f"; older checkpoints: {', '.join(str(p) for p in older[-3:])}" if older
                else "; retrain with a lower learning rate")
        raise CheckpointError(
            f"{path}: {what} weights are not finite (NaN/inf in {bad[:3]}): the run had diverged "
            f"when this was written{hint}"
        )


def _intact(path: Path) -> bool:
    """Whether ``path`` holds a complete checkpoint whose SHA-256 matches (the payload is not unpickled)."""
    try:
        _verified_payload(path)
    except (CheckpointError, OSError):
        return False
    return True


def intact_older(path: str | Path, limit: int = 3) -> str:
    """``"; intact older checkpoints: ..."`` for a damaged file of a run directory (its rotating
    copies that verify, newest first, other than ``path`` itself or a hard link to it), or ``""``."""
    p = Path(path)
    run_dir = p.parent.parent if p.parent.name == ROTATING_DIR else p.parent
    found = []
    for q in reversed(list_rotating(run_dir)):
        try:
            if q.samefile(p):
                continue
        except OSError:
            continue
        if _intact(q):
            found.append(q)
        if len(found) == limit:
            break
    if not found:
        return ""
    return (f"; intact older checkpoints: {', '.join(str(q) for q in found)} (resume from one with "
            f"--resume {found[0]})")


def rotating_path(run_dir: str | Path, step: int) -> Path:
    """``run_dir/checkpoints/step-XXXXXXXX.pt`` for ``step``."""
    return Path(run_dir) / ROTATING_DIR / f"step-{int(step):08d}.pt"


def list_rotating(run_dir: str | Path) -> list[Path]:
    """The rotating checkpoints of a run directory, oldest step first."""
    folder = Path(run_dir) / ROTATING_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _ROT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_rotating(run_dir: str | Path, keep: int, *, above: int | None = None) -> None:
    """Delete all but the newest ``keep`` rotating checkpoints (and, with ``above``, any whose
    step exceeds it: those of an abandoned continuation)."""
    files = list_rotating(run_dir)
    if above is not None:
        for p in files:
            m = _ROT_RE.match(p.name)
            if m is not None and int(m.group(1)) > above:
                p.unlink(missing_ok=True)
        files = list_rotating(run_dir)
    for p in files[: max(len(files) - max(int(keep), 0), 0)]:
        p.unlink(missing_ok=True)
