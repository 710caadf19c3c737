"""Chunked, resumable likelihoods for ``scoresde likelihood --batch-size B [--out FILE]``.

The points are evaluated ``B`` at a time, chunk ``k`` with the seed ``seed + k`` (its
Hutchinson probes and pilot; the default exact divergence draws nothing). With ``--out``, after every chunk
its per-point results are written atomically to ``FILE.chunks/chunk-KKKKK.pt``, next to
``FILE.chunks/run.json`` (the settings and the data's identity). Rerunning the same command
after an interruption loads the finished chunks and goes on with the next one, so the result
is the same as that of an uninterrupted run. Chunks written with other settings or other data
are discarded (with a note); a damaged chunk file is recomputed. The folder is removed once
the output file has been written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._chunks import chunk_path, holds_run

__all__ = ["chunks_folder", "likelihood_resumable"]

#: Per-point fields of `LikelihoodResult`, concatenated over chunks (``None`` stays ``None``).
_POINT_FIELDS = ("log_prob", "prior_log_prob", "delta_log_prob", "x_T", "probe_log_probs", "std_err",
                 "end_correction")


def chunks_folder(out: Path) -> Path:
    """Where the chunks of a run writing ``out`` are kept: ``out`` + ``.chunks``."""
    return out.with_name(out.name + ".chunks")


def _record(result: Any) -> dict[str, Any]:
    from ._settings import _jsonable

    rec: dict[str, Any] = {k: None if getattr(result, k) is None else getattr(result, k).detach().cpu()
                           for k in _POINT_FIELDS}
    rec.update(nfe=int(result.nfe), seconds=float(result.seconds), eps=float(result.eps), T=float(result.T),
               density=str(result.density), stats=json.loads(json.dumps(_jsonable(result.stats))))
    return rec


def _load(folder: Path, k: int) -> dict[str, Any] | None:
    path = chunk_path(folder, k)
    if not path.exists():
        return None
    try:
        rec: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if not all(f in rec for f in (*_POINT_FIELDS, "nfe", "seconds", "eps", "T", "density", "stats")):
            raise ValueError("missing fields")
    except Exception:  # a damaged or foreign chunk file: recompute from here on  # noqa: BLE001
        print(f"note: {path} cannot be read; recomputing from chunk {k}", file=sys.stderr)
        return None
    return rec


def likelihood_resumable(
    folder: Path | None, fingerprint: dict[str, Any], x: Tensor, *, batch_size: int, seed: int, progress: bool,
    compute: Callable[[Tensor, int], Any],
) -> tuple[Any, int]:
    """Evaluate ``compute(x[chunk], seed + k)`` chunk by chunk, resuming from ``folder``.

    Args:
        folder: where the finished chunks are kept (`chunks_folder`); ``None``: nowhere (the
            same chunks and seeds, nothing to resume from).
        fingerprint: JSON-able settings and data identity; chunks are reused only under equal ones.
        x: ``(N, *D)`` points.
        batch_size: points per chunk.
        seed: chunk ``k`` runs with seed ``seed + k``.
        progress: show a bar over the points.
        compute: ``(x_chunk, seed) -> LikelihoodResult`` (the library's `likelihood`).

    Returns:
        ``(LikelihoodResult over all N points, chunks reused)``; ``nfe`` and ``seconds`` are
        summed over the chunks, ``stats`` concatenated.
    """
    from ..atomic import atomic_write_bytes, atomic_write_with
    from ..likelihood import LikelihoodResult

    n = x.shape[0]
    starts = list(range(0, n, batch_size))
    records: list[dict[str, Any]] = []
    if folder is None:
        pass
    elif holds_run(folder, fingerprint):
        for k in range(len(starts)):
            rec = _load(folder, k)
            if rec is None:
                break
            records.append(rec)
    else:
        atomic_write_bytes(folder / "run.json", json.dumps(fingerprint, sort_keys=True).encode())
    reused = len(records)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=n, initial=min(reused * batch_size, n), desc="log-likelihood", unit="point")
    try:
        for k in range(reused, len(starts)):
            start = starts[k]
            rec = _record(compute(x[start : start + batch_size], seed + k))
            if folder is not None:
                atomic_write_with(chunk_path(folder, k), lambda f, r=rec: torch.save(r, f))
            records.append(rec)
            if bar is not None:
                bar.update(min(batch_size, n - start))
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        if folder is not None:
                print(f"{len(records)} of {len(starts)} chunks are kept in {folder}; rerun the same command to resume",
                  file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()

    def cat(name: str) -> Tensor | None:
        parts = [r[name] for r in records]
        return None if any(p is None for p in parts) else torch.cat(parts)

    fields = {k: cat(k) for k in _POINT_FIELDS}
    first = records[0]
    result = LikelihoodResult(
        **fields,  # type: ignore[arg-type]
        nfe=sum(int(r["nfe"]) for r in records), seconds=sum(float(r["seconds"]) for r in records),
        eps=float(first["eps"]), T=float(first["T"]), stats=[s for r in records for s in r["stats"]],
        density=str(first["density"]),
    )
    return result, reused
