"""Resumable chunked sampling for ``scoresde sample --batch-size B``.

The batch is solved chunk after chunk exactly as ``solvers.sample(..., batch_size=B)`` does:
``x_T`` for all ``n`` samples is drawn first from the run's generator, then each chunk is
integrated with the same generator supplying its noise. After every chunk its samples and the
generator's state are written atomically to ``OUT/chunks/chunk-KKKKK.pt``, next to
``OUT/chunks/run.json`` (the settings that produced them). An ``after_step`` hook with its own
randomness (`scoresde.conditional.StatefulHook`: ``Replacement``, ``LinearReplacement``,
``ParticleFilter``) has its state stored in the same record. Rerunning the same command after
an interruption loads the finished chunks, restores the generator (and the hook) and goes on
with the next chunk, so the final samples are bit for bit those of an uninterrupted run. Chunks written
with other settings are discarded (with a note). The folder is removed once the whole batch
has been written.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["chunk_path", "file_identity", "holds_run", "sample_resumable"]


def file_identity(path: str | Path, *, checkpoint: bool = False) -> dict[str, int]:
    """``{"size", "mtime_ns"}`` of a file (a run folder's ``checkpoint.pt`` with ``checkpoint``):
    a file replaced at the same path is another input, and its stored chunks are not reused."""
    p = Path(path)
    if checkpoint and p.is_dir():
        p = p / "checkpoint.pt"
    stat = p.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def chunk_path(folder: Path, k: int) -> Path:
    """The file of chunk ``k``."""
    return folder / f"chunk-{k:05d}.pt"


def holds_run(folder: Path, fingerprint: dict[str, Any]) -> bool:
    """``folder`` holds chunks written under ``fingerprint``; a folder of other settings is removed."""
    meta = folder / "run.json"
    if not meta.exists():
        return False
    try:
        stored = json.loads(meta.read_text())
    except (OSError, ValueError):
        stored = None
    if stored != fingerprint:
        print(f"note: {folder} holds chunks of a run with other settings; starting afresh", file=sys.stderr)
        shutil.rmtree(folder)
        return False
    return True


def _load_finished(folder: Path, fingerprint: dict[str, Any], batch_size: int, out: Tensor) -> list[dict[str, Any]]:
    """Copy the finished chunks ``0 .. k-1`` stored under ``fingerprint`` into ``out: (n, *D)``
    (none if there are none or they have other settings); their records, samples dropped."""
    if not holds_run(folder, fingerprint):
        return []
    done: list[dict[str, Any]] = []
    for k, start in enumerate(range(0, out.shape[0], batch_size)):
        path = chunk_path(folder, k)
        if not path.exists():
            break
        stop = start + batch_size
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
            out[start:stop] = record.pop("samples").to(out.dtype)  # one chunk in memory at a time
        except Exception:  # a damaged or foreign chunk file: recompute from here on  # noqa: BLE001
            print(f"note: {path} cannot be read; recomputing from chunk {k}", file=sys.stderr)
            break
        done.append(record)
    return done


def sample_resumable(
    out: Path, fingerprint: dict[str, Any], *, sde: Any, score: Any, shape: tuple[int, ...], solver: str,
    batch_size: int, seed: int, dtype: torch.dtype, progress: bool, device: torch.device | None = None,
    **kwargs: Any,
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
        **kwargs: the other ``solvers.sample`` arguments (steps, grid, lam, denoise, options...);
            an ``after_step`` that is a `scoresde.conditional.StatefulHook` has its state saved
            with every chunk and restored on resume.

    Returns:
        ``(samples (n, *D), nfe per sample, seconds summed over chunks, chunks reused, the
        end-of-run step taken: "ode", "tweedie" or "none")``.
    """
    import solvers
    from solvers.noise import make_generator

    from ..atomic import atomic_write_bytes, atomic_write_with
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
    done = _load_finished(folder, fingerprint, batch_size, x_T)  # their samples are copied into x_T
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
            atomic_write_with(chunk_path(folder, k), lambda f, rec=record: torch.save(rec, f))
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
