"""Sealed files: magic bytes, a one-line JSON header, and a payload whose length and SHA-256 the
header records, so that a damaged, truncated or foreign file is recognised before it is used.

Layout: ``magic`` (ending in a newline), ``json(header) + "\\n"`` with ``header["nbytes"]`` and
``header["sha256"]`` of the payload, then the payload. Used by training checkpoints
(`scoresde.train.checkpoint`) and the CLI's resumable chunk files (`scoresde.cli._chunks`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["SealError", "seal", "unseal"]


class SealError(ValueError):
    """A sealed file fails a check; ``kind`` says which: ``"magic"``, ``"header"``, ``"length"``
    or ``"digest"`` (callers word their own message from it)."""

    def __init__(self, kind: Literal["magic", "header", "length", "digest"], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def seal(magic: bytes, header: Mapping[str, Any], payload: bytes) -> bytes:
    """``magic + json(header with nbytes and sha256 of payload) + "\\n" + payload``."""
    head = {**header, "nbytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    return magic + json.dumps(head, sort_keys=True).encode() + b"\n" + payload


def unseal(data: bytes, magic: bytes) -> tuple[dict[str, Any], bytes]:
    """``(header, payload)`` of sealed bytes, after the magic, header, length and SHA-256 checks.

    Raises:
        SealError: with ``kind`` ``"magic"`` (not such a file), ``"header"`` (no or unreadable
            header line), ``"length"`` (truncated or padded: the detail gives both byte counts)
            or ``"digest"`` (the payload's SHA-256 differs from the header's).
    """
    if not data.startswith(magic):
        raise SealError("magic", "bad magic bytes")
    end = data.find(b"\n", len(magic))
    try:
        if end < 0:
            raise ValueError("no header line")
        header = json.loads(data[len(magic):end])
        if not isinstance(header, dict):
            raise TypeError(f"header is a {type(header).__name__}, not an object")
        nbytes, digest = int(header["nbytes"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError) as err:
        raise SealError("header", str(err)) from None
    payload = data[end + 1:]
    if len(payload) != nbytes:
        raise SealError("length", f"payload has {len(payload)} bytes, header says {nbytes}")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise SealError("digest", "SHA-256 of the payload does not match its header")
    return header, payload
