"""A stable identity of a training data set, stored with the training config and checkpoint.

An array (``ArrayDataset``, ``ImageDataset``, a tensor) is identified by the SHA-256 of its
values (cast to float64, C order) together with its shape; a built-in data set by its name;
a built-in sampler class (a toy or a Gaussian mixture) by a fingerprint (the hash of 256
samples drawn with seed 0); any other sampler by its class name only (it is never sampled:
it may keep state). Code that
pairs a checkpoint with reference data (``scoresde compare``/``plot``/``likelihood``) compares
identities and raises ``DataMismatchError`` naming both, instead of silently using other data.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["DataMismatchError", "data_identity", "same_data", "describe_identity", "fingerprint"]


class DataMismatchError(ValueError):
    """The data given (or found by name) is not the data a checkpoint was trained on."""


def _array_of(source: Any) -> Tensor | None:
    if isinstance(source, Tensor):
        return source
    if isinstance(source, np.ndarray):
        return torch.from_numpy(source)
    for attr in ("data", "images"):
        value = getattr(source, attr, None)
        if isinstance(value, Tensor) and hasattr(source, "sample"):
            return value
    return None


def _hash(x: Tensor, chunk: int = 4096) -> str:
    """SHA-256 of the shape and the float64 values (C order), hashed in chunks of rows."""
    h = hashlib.sha256()
    h.update(str(tuple(x.shape)).encode())
    for i in range(0, max(int(x.shape[0]), 1), chunk):
        part = x[i:i + chunk].detach().cpu().to(torch.float64).contiguous()
        h.update(np.ascontiguousarray(part.numpy()).tobytes())
    return h.hexdigest()


def _fingerprint_draw(source: Any) -> Tensor:
    g = torch.Generator().manual_seed(0)
    try:
        x = source.sample(256, generator=g, dtype=torch.float64)
    except TypeError:  # a sampler without a dtype argument
        x = source.sample(256, generator=torch.Generator().manual_seed(0))
    return torch.round(x.detach().cpu().to(torch.float64), decimals=6)


def data_identity(source: Any, *, name: str, builtin: bool = False) -> dict[str, Any]:
    """The identity record of a data source, JSON-serialisable.

    Args:
        source: an array/tensor ``(N, *D)``, an object holding one (``.data`` / ``.images``), or
            any sampler with ``sample(n, generator=g)``.
        name: the label of the run (a file name, a built-in name, or a user label).
        builtin: ``source`` is the built-in data set called ``name``.

    Returns:
        ``{"kind": "builtin" | "array" | "sampler", "source": name, "sha256": ..., "shape": [...]}``
        (``shape`` is ``(N, *D)`` for arrays and ``D`` for samplers).
    """
    arr = _array_of(source)
    if builtin:
        x = source.sample(2, generator=torch.Generator().manual_seed(0))
        return {"kind": "builtin", "source": name, "shape": list(x.shape[1:])}
    if arr is not None:
        return {"kind": "array", "source": name, "sha256": _hash(arr), "shape": list(arr.shape),
                "dtype": str(arr.dtype).replace("torch.", "")}
    out: dict[str, Any] = {"kind": "sampler", "source": name, "type": type(source).__name__}
    if is_stateless(source):  # never draw from an unknown sampler: it may count or stream its draws
        x = _fingerprint_draw(source)
        out.update(sha256=_hash(x), shape=list(x.shape[1:]))
    return out


def is_stateless(source: Any) -> bool:
    """A built-in sampler class whose draws depend on the generator only (safe to fingerprint)."""
    from ..targets import GaussianMixture
    from .toys import Toy

    return isinstance(source, (GaussianMixture, Toy))


def same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two identity records describe the same data (samplers of an unknown class: by
    class name only, as they are never sampled to check)."""
    if a.get("kind") != b.get("kind"):
        return False
    if a.get("kind") == "builtin":
        return a.get("source") == b.get("source")
    if a.get("kind") == "sampler" and ("sha256" not in a or "sha256" not in b):
        return a.get("type") == b.get("type")
    return a.get("sha256") == b.get("sha256") and list(a.get("shape", [])) == list(b.get("shape", []))


def describe_identity(ident: dict[str, Any]) -> str:
    """One line: ``array 'ring.npy' (5000, 2) sha256 1a2b3c4d5e6f``."""
    kind = ident.get("kind", "?")
    shape = tuple(ident.get("shape", ()))
    if kind == "builtin":
        return f"built-in data set {ident.get('source')!r}"
    digest = str(ident.get("sha256", ""))[:12]
    what = "array" if kind == "array" else f"sampler {ident.get('type', '')}".strip()
    dtype = f" {ident['dtype']}" if ident.get("dtype") else ""
    return f"{what} {ident.get('source')!r} of shape {shape}{dtype} (sha256 {digest})"


def dtype_hint(stored: dict[str, Any], given: dict[str, Any]) -> str:
    """The reason two identities of the same shape differ when their dtypes do: the same points
    stored in float32 and float64 are different values (and hashes); else ``""``."""
    a, b = stored.get("dtype"), given.get("dtype")
    if not a or not b or a == b or tuple(stored.get("shape", ())) != tuple(given.get("shape", ())):
        return ""
    return (f". The run was trained on {a} values and these are {b}: the same points rounded to another "
            f"precision are other data. Pass the array in {a} (e.g. saved again as it was trained on)")


def fingerprint(source: Any) -> str:
    """SHA-256 of 256 samples drawn with seed 0 (rounded to 1e-6): equal for equal samplers."""
    return _hash(_fingerprint_draw(source))
