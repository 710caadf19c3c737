"""Resumable chunked sampling for ``scoresde sample --batch-size B``.

The batch is solved chunk after chunk exactly as ``solvers.sample(..., batch_size=B)`` does:
``x_T`` for all ``n`` samples is drawn first from the run's generator, then each chunk is
integrated with the same generator supplying its noise. After every chunk its samples and the
generator's state are written atomically to ``OUT/chunks/chunk-KKKKK.pt``, next to
``OUT/chunks/run.json`` (the settings that produced them). An ``after_step`` hook with its own
randomness (`scoresde.conditional.StatefulHook`: ``Replacement``, ``LinearReplacement``,
``ParticleFilter``) has its state stored in the same record. Rerunning the same command after
an interruption loads the finished chunks, restores the generator (and the hook) and goes on
with the next chunk, so the final samples are bit for bit those of an uninterrupted run.

Every piece file starts with a one-line JSON header (`write_piece`): the piece's name and
row range, a digest of the run's settings, and the length and SHA-256 of the serialized
record that follows (`scoresde.sealed`). A piece whose header or digest does not match (a flipped bit, a
truncated file, another chunk's file under this name, a file of another run) is noted and
computed again. A folder holding chunks of a run with other settings is refused, naming the
settings that differ (`holds_run`); ``--overwrite`` discards it. The settings include a
digest of the package's source (`code_digest`), so chunks written before the code changed (an
edit, a ``git pull``, an upgrade) are never joined to chunks of the new code. The folder is
removed once the whole batch has been written.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..sealed import SealError, seal, unseal

__all__ = ["ChunkSettingsError", "PieceError", "chunk_path", "clean_chunk_temps", "code_digest", "file_identity",
           "holds_run", "read_piece", "run_digest", "sample_resumable", "write_piece"]

CODE_PACKAGES: tuple[str, ...] = ("scoresde", "solvers")
"""Packages whose every source file enters `code_digest`."""

CODE_KEY = "code"
"""The fingerprint's entry that holds `code_digest` (see `holds_run`'s message)."""

_MAGIC = b"SCORESDE-PIECE 1\n"
"""First line of a piece file of this format (older files are plain ``torch.save`` records)."""


class ChunkSettingsError(ValueError):
    """A chunk folder holds finished chunks of a run with other settings (a usage error, exit 2)."""


class PieceError(ValueError):
    """A stored piece file fails its integrity check (the message names the file and the problem)."""


def file_identity(path: str | Path, *, checkpoint: bool = False) -> dict[str, int]:
    """``{"size", "mtime_ns"}`` of a file (a run folder's ``checkpoint.pt`` with ``checkpoint``):
    a file replaced at the same path is another input, and its stored chunks are not reused."""
    p = Path(path)
    if checkpoint and p.is_dir():
        p = p / "checkpoint.pt"
    stat = p.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@functools.cache
def code_digest() -> str:
    """`scoresde.source_digest.source_digest` of every ``.py`` file of `CODE_PACKAGES`, labelled
    by its path within its package: part of a chunked run's fingerprint, so stored pieces are
    reused only by the same code. Read once per process (about 5 ms for the two packages)."""
    from ..source_digest import package_root, package_sources, source_digest

    return source_digest(
        (f"{name}/{path.relative_to(package_root(name)).as_posix()}", path)
        for name in CODE_PACKAGES for path in package_sources(name))


def chunk_path(folder: Path, k: int) -> Path:
    """The file of chunk ``k``."""
    return folder / f"chunk-{k:05d}.pt"


def run_digest(fingerprint: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a run's settings (stored in every piece it writes)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def write_piece(path: Path, record: dict[str, Any], *, piece: str, rows: tuple[int, int] | None,
                run: str) -> None:
    """Write ``record`` atomically to ``path`` behind an integrity header.

    Args:
        path: the piece file.
        record: the tensors and numbers of the piece (``torch.save``-able, weights only).
        piece: its name (``"chunk 3"``, ``"pilot"``), checked on load.
        rows: the ``[start, stop)`` rows it holds (None: not a row range).
        run: `run_digest` of the run's settings.
    """
    from ..atomic import atomic_write_with

    buf = io.BytesIO()
    torch.save(record, buf)
    header = {"piece": piece, "rows": None if rows is None else [int(rows[0]), int(rows[1])], "run": run}
    sealed = seal(_MAGIC, header, buf.getvalue())
    atomic_write_with(path, lambda f: f.write(sealed))


def read_piece(path: Path, *, piece: str, rows: tuple[int, int] | None, run: str) -> dict[str, Any]:
    """The record of a piece file written by `write_piece`, after checking it.

    Raises:
        PieceError: the file has no integrity header (an older version's file), its payload's
            length or SHA-256 differs from the header's (damaged), or it holds another piece,
            other rows or a piece of another run; or the record cannot be deserialized.
    """
    try:
        header, payload = unseal(path.read_bytes(), _MAGIC)
    except SealError as err:
        if err.kind == "magic":
            raise PieceError(f"{path} has no integrity header (damaged, or written by an older version)") from None
        if err.kind == "header":
            raise PieceError(f"{path} has a damaged integrity header") from None
        if err.kind == "length":
            raise PieceError(f"{path} is damaged: {err}") from None
        raise PieceError(f"{path} is damaged: SHA-256 of its data does not match its header") from None
    want_rows = None if rows is None else [int(rows[0]), int(rows[1])]
    if header.get("piece") != piece or header.get("rows") != want_rows:
        raise PieceError(f"{path} holds {header.get('piece')} (rows {header.get('rows')}), not {piece} "
                         f"(rows {want_rows})")
    if header.get("run") != run:
        raise PieceError(f"{path} was written by a run with other settings")
    try:
        record = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a valid digest over a record torch cannot read
        raise PieceError(f"{path} cannot be deserialized ({type(err).__name__})") from None
    if not isinstance(record, dict):
        raise PieceError(f"{path} holds no piece record")
    return record


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``["settings.seed: 1 -> 0", ...]``: the leaves of two JSON values that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{name}: (not set) -> {json.dumps(new[key])}")
            elif key not in new:
                out.append(f"{name}: {json.dumps(old[key])} -> (not set)")
            else:
                out.extend(_differences(old[key], new[key], name))
        return out
    if old == new:
        return []
    return [f"{prefix or 'settings'}: {json.dumps(old)} -> {json.dumps(new)}"]


def _count_pieces(folder: Path) -> int:
    return sum(1 for p in folder.glob("*.pt") if not p.name.startswith("."))


def _describe_pieces(folder: Path) -> str:
    """``"3 finished chunk(s)"`` (``" and a pilot"`` where one is stored)."""
    chunks = sum(1 for _ in folder.glob("chunk-*.pt"))
    return f"{chunks} finished chunk(s)" + (" and a pilot" if (folder / "pilot.pt").exists() else "")


def clean_chunk_temps(folder: Path) -> None:
    """Remove temporary files a killed atomic write left in a chunk folder (see `scoresde.atomic`)."""
    from ..atomic import clean_stale_temps

    clean_stale_temps(folder)


def remove_pieces(folder: Path) -> None:
    """Delete what a chunked run wrote in ``folder`` (``run.json``, ``chunk-*.pt``, ``pilot.pt``,
    temporary files), and the folder once empty. Anything else in it is the user's and stays."""
    from ..atomic import clean_stale_temps

    if not folder.is_dir():
        return
    for p in [folder / "run.json", folder / "pilot.pt", *folder.glob("chunk-*.pt")]:
        if p.is_file():
            p.unlink()
    clean_stale_temps(folder, older_than_s=0.0)
    try:
        folder.rmdir()
    except OSError:  # not empty: the user's files
        print(f"note: kept {folder}: it holds files this command did not write", file=sys.stderr)


def holds_run(folder: Path, fingerprint: dict[str, Any], *, overwrite: bool = False,
              what: str = "--out") -> bool:
    """Whether ``folder`` holds pieces written under ``fingerprint``.

    A folder of other settings is kept and refused (nothing is deleted without being asked);
    with ``overwrite`` any stored pieces are discarded (with a note) and the run starts afresh.

    Raises:
        ChunkSettingsError: the folder holds pieces of a run with other settings (or an
            unreadable ``run.json``) and ``overwrite`` is not set; the message lists the
            settings that differ (old -> new) and how to proceed.
    """
    meta = folder / "run.json"
    if overwrite and folder.is_dir():
        kept = _count_pieces(folder)
        if kept:
            print(f"note: --overwrite: discarding {_describe_pieces(folder)} in {folder}; starting afresh",
                  file=sys.stderr)
        remove_pieces(folder)
        return False
    if not meta.exists():
        return False
    try:
        stored = json.loads(meta.read_text())
    except (OSError, ValueError):
        stored = None
    if stored == fingerprint:
        return True
    kept = _count_pieces(folder)
    if not kept:  # nothing finished to lose: start afresh quietly
        remove_pieces(folder)
        return False
    if isinstance(stored, dict) and stored.get(CODE_KEY) != fingerprint.get(CODE_KEY) and all(
            stored.get(k) == v for k, v in fingerprint.items() if k != CODE_KEY):
        raise ChunkSettingsError(
            f"{folder} holds {_describe_pieces(folder)} written by another version of scoresde / solvers "
            f"(source digest {stored.get(CODE_KEY, '(none recorded)')} -> {fingerprint.get(CODE_KEY)}): joining "
            f"them to pieces of this version would give results of neither; choose another {what}, or pass "
            "--overwrite to discard them and start afresh"
        )
    if isinstance(stored, dict):
        diff = _differences(stored, fingerprint)
        shown = "; ".join(diff[:6]) + (f"; ... ({len(diff)} in all)" if len(diff) > 6 else "")
        cause = f"of a run with other settings ({shown})"
        resume = "rerun with the earlier settings to resume them, "
    else:  # which settings made them cannot be told: they cannot be resumed
        cause = f"whose settings file {meta} cannot be read (damaged), so they cannot be resumed"
        resume = ""
    raise ChunkSettingsError(
        f"{folder} holds {_describe_pieces(folder)} {cause}; {resume}choose another {what}, or pass "
        "--overwrite to discard them"
    )


def _load_finished(folder: Path, fingerprint: dict[str, Any], batch_size: int, out: Tensor, *,
                   overwrite: bool = False) -> list[dict[str, Any]]:
    """Copy the finished chunks ``0 .. k-1`` stored under ``fingerprint`` into ``out: (n, *D)``
    (none if there are none); their records, samples dropped. A chunk that fails its integrity
    check (`read_piece`) is noted, and it and every later one are computed again.

    Raises:
        ChunkSettingsError: the folder holds chunks of other settings (see `holds_run`).
    """
    if not holds_run(folder, fingerprint, overwrite=overwrite):
        return []
    run = run_digest(fingerprint)
    n = out.shape[0]
    done: list[dict[str, Any]] = []
    for k, start in enumerate(range(0, n, batch_size)):
        path = chunk_path(folder, k)
        if not path.exists():
            break
        stop = min(start + batch_size, n)
        try:
            record = read_piece(path, piece=f"chunk {k}", rows=(start, stop), run=run)
            samples = record.pop("samples")
            if not isinstance(samples, Tensor) or tuple(samples.shape) != (stop - start, *out.shape[1:]):
                raise PieceError(f"{path} holds samples of another shape")
            if not isinstance(record.get("rng_state"), Tensor):
                raise PieceError(f"{path} holds no generator state")
            out[start:stop] = samples.to(out.dtype)  # one chunk in memory at a time
        except (OSError, PieceError) as err:  # recompute from here on
            print(f"note: {err}; recomputing from chunk {k}", file=sys.stderr)
            break
        done.append(record)
    return done


def sample_resumable(
    out: Path, fingerprint: dict[str, Any], *, sde: Any, score: Any, shape: tuple[int, ...], solver: str,
    batch_size: int, seed: int, dtype: torch.dtype, progress: bool, device: torch.device | None = None,
    overwrite: bool = False, **kwargs: Any,
) -> tuple[Tensor, int, float, int, str | None]:
    """Sample ``shape`` in chunks of ``batch_size``, resuming from ``out/chunks``.

    Args:
        out: the output folder (chunks go to ``out/chunks``).
        fingerprint: JSON-able settings; stored chunks are reused only under equal settings.
        sde, score, shape, solver, seed, dtype: as for ``solvers.sample``.
        batch_size: samples per chunk.
        progress: show a bar over the samples.
        device: where ``x_T``, the generator and the solves live (default CPU); the chunks are
            stored on the CPU either way.
        overwrite: discard any stored chunks and start afresh (else chunks of other settings
            are refused with `ChunkSettingsError`).
        **kwargs: the other ``solvers.sample`` arguments (steps, grid, lam, denoise, options...);
            an ``after_step`` that is a `scoresde.conditional.StatefulHook` has its state saved
            with every chunk and restored on resume.

    Returns:
        ``(samples (n, *D), nfe per sample, seconds summed over chunks, chunks reused, the
        end-of-run step taken: "ode", "tweedie" or "none")``.
    """
    import solvers
    from solvers.noise import make_generator

    from ..atomic import atomic_write_bytes
    from ..conditional import StatefulHook

    n = shape[0]
    starts = list(range(0, n, batch_size))
    folder = out / "chunks"
    hook = kwargs.get("after_step")
    hook = hook if isinstance(hook, StatefulHook) else None
    # chunks written before hook states were stored cannot resume a run with a stateful hook
    fingerprint = {**fingerprint, "hook_state": hook is not None}
    device = torch.device("cpu") if device is None else device
    gen = make_generator(seed, device)
    x_T = sde.prior_sample(shape, generator=gen, dtype=dtype, device=device)
    clean_chunk_temps(folder)
    # their samples are copied into x_T
    done = _load_finished(folder, fingerprint, batch_size, x_T, overwrite=overwrite)
    run = run_digest(fingerprint)
    reused = len(done)
    if done:
        gen.set_state(done[-1]["rng_state"])
        if hook is not None:
            hook.set_state(done[-1]["hook_state"])
    else:
        atomic_write_bytes(folder / "run.json", json.dumps(fingerprint, sort_keys=True).encode())
    bar = None
    if progress:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=n, initial=min(len(done) * batch_size, n), desc=solver, unit="sample")
    try:
        for k, start in enumerate(starts):
            stop = min(start + batch_size, n)
            if k < reused:
                continue
            part = solvers.sample(sde, score, solver=solver, x_T=x_T[start:stop], generator=gen, dtype=dtype,
                                  **kwargs)
            record = {"samples": part.samples.detach().cpu(), "rng_state": gen.get_state(),
                      "nfe": part.nfe, "seconds": part.seconds, "end_step": part.stats.get("end_step")}
            if hook is not None:  # its noise goes on from here in the next chunk
                record["hook_state"] = hook.get_state()
            write_piece(chunk_path(folder, k), record, piece=f"chunk {k}", rows=(start, stop), run=run)
            x_T[start:stop] = record.pop("samples")  # the prior draw's buffer holds the output
            del part
            done.append(record)
            if bar is not None:
                bar.update(stop - start)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        print(f"{len(done)} of {len(starts)} chunks are kept in {folder}; rerun the same command to resume",
              file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
    nfe = max(int(c["nfe"]) for c in done)
    seconds = sum(float(c["seconds"]) for c in done)
    end_step = done[-1].get("end_step")  # the same for every chunk (chunks stored before it was: None)
    return x_T, nfe, seconds, reused, end_step
