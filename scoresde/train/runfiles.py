"""The run directory: pre-flight checks, the crash-safe metrics log, the recorded environment.

* `preflight` runs before any work: the folder must be a writable directory, ``checkpoint.pt``
  must not be a directory, and a folder holding files of something else is not written into
  unless asked (``overwrite``); a run killed before its first checkpoint (only its
  ``config.json`` and ``metrics.jsonl``) is restarted by the same command. Stale temporary files of an interrupted atomic write are removed.
* `append_metrics` appends one JSON line and fsyncs it; `read_metrics` skips a torn or
  damaged line with a warning naming the file and line instead of failing.
* `environment` is what bit-exact resume depends on (torch thread count, device, torch / numpy /
  Python versions, deterministic-algorithm mode); it is stored in every checkpoint and
  `environment_mismatch` lists what differs on resume.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import OutputPathError, atomic_write_bytes, check_writable_dir, clean_stale_temps
from .checkpoint import CHECKPOINT_NAME, ROTATING_DIR

__all__ = ["preflight", "append_metrics", "read_metrics", "rewrite_metrics", "environment",
           "environment_mismatch", "METRICS_NAME", "CONFIG_NAME", "OWN_FILES"]

METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
OWN_FILES = frozenset({CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME, ROTATING_DIR})


def preflight(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Check ``out_dir`` before any training work; clean stale temp files (see module doc).

    Raises:
        OutputPathError: not a writable directory, or ``checkpoint.pt`` is a directory.
        FileExistsError: a checkpoint exists (without ``resume``/``overwrite``), or the folder
            holds other files and no checkpoint (without ``overwrite``).
    """
    ckpt = out_dir / CHECKPOINT_NAME
    if ckpt.is_dir():
        raise OutputPathError(f"{ckpt} is a directory, not a checkpoint file; remove it or choose "
                              "another output folder")
    existed = out_dir.is_dir()
    check_writable_dir(out_dir, "output folder")
    for folder in (out_dir, out_dir / ROTATING_DIR):
        clean_stale_temps(folder)
    if resume or not existed:
        return
    if ckpt.exists():
        if not overwrite:
            raise FileExistsError(f"{ckpt} exists; resume it (resume=True / --resume), pass "
                                  "overwrite=True (--overwrite), or choose another output folder")
        return
    entries = sorted(p.name for p in out_dir.iterdir() if not p.name.startswith("."))
    if _only_unsaved_run_files(out_dir, entries):
        return  # a run killed before its first checkpoint: its config and log only, nothing to keep
    if entries and not overwrite:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise FileExistsError(
            f"output folder {out_dir} is not empty ({shown}) and holds no checkpoint to resume; "
            "choose an empty folder or pass overwrite=True (--overwrite) to write into it"
        )


def _only_unsaved_run_files(out_dir: Path, entries: list[str]) -> bool:
    """Whether ``out_dir`` holds nothing but a training run's own files from before its first
    checkpoint (``config.json``, ``metrics.jsonl``, an empty rotating-checkpoint folder): a rerun
    may start afresh there, since no trained state would be lost."""
    if not {CONFIG_NAME, METRICS_NAME} <= set(entries) <= {CONFIG_NAME, METRICS_NAME, ROTATING_DIR}:
        return False
    rotating = out_dir / ROTATING_DIR
    if rotating.exists() and (not rotating.is_dir() or any(not p.name.startswith(".") for p in rotating.iterdir())):
        return False
    if not ((out_dir / CONFIG_NAME).is_file() and (out_dir / METRICS_NAME).is_file()):
        return False
    try:  # a training config written by this package, not a file of the user's that happens to be named so
        saved = json.loads((out_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(saved, dict) and {"data", "sde", "model", "loss", "optim"} <= set(saved)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` and fsync it (a crash loses at most this line)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics log; damaged lines are skipped with a `RuntimeWarning`."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            warnings.warn(f"{path}: skipping damaged line {i} ({err}); probably torn by a crash",
                          RuntimeWarning, stacklevel=2)
            continue
        out.append(rec)
    return out


def rewrite_metrics(path: Path, upto_step: int) -> None:
    """Keep the log's records with ``step <= upto_step`` (drop an interrupted run's tail)."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path) if int(r.get("step", 0)) <= upto_step]
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode())


def environment(device: torch.device) -> dict[str, Any]:
    """What bit-exact resume depends on, as recorded in a checkpoint."""
    env: dict[str, Any] = {
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": str(device) if device.type == "cpu" else f"{device.type}",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    return env


def environment_mismatch(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """``["threads: 1 -> 2", ...]`` for every recorded item that differs (empty: none)."""
    if not saved:
        return []
    keys = sorted(set(saved) | set(now))
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]
