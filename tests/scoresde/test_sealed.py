"""Sealed files (magic, JSON header with length and SHA-256, payload): each kind of damage is named."""

from __future__ import annotations

import pytest

from scoresde.sealed import SealError, seal, unseal

MAGIC = b"TEST-SEAL 1\n"


def test_round_trip_keeps_header_and_payload():
    header, payload = unseal(seal(MAGIC, {"piece": "chunk 3", "rows": [6, 9]}, b"\x00payload\n\xff"), MAGIC)
    assert payload == b"\x00payload\n\xff"
    assert header["piece"] == "chunk 3" and header["rows"] == [6, 9] and header["nbytes"] == 10


@pytest.mark.parametrize(("mutate", "kind"), [
    (lambda b: b"OTHER" + b, "magic"),
    (lambda b: b[: len(MAGIC) + 3], "header"),
    (lambda b: b[:-1], "length"),
    (lambda b: b + b"x", "length"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "digest"),
])
def test_each_kind_of_damage_is_named(mutate, kind):
    data = seal(MAGIC, {"format": 1}, b"some payload bytes")
    with pytest.raises(SealError) as err:
        unseal(mutate(data), MAGIC)
    assert err.value.kind == kind
