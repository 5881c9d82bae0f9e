"""Malformed and random requests for the provisioning topics, reproducible from a seed.

Each one must be answered with exactly one rejection: none is a valid request (no well-formed CSR, no
live ownership token), in JSON and in CBOR, over every shape a broken or hostile device could send.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cbor2

CSR = "create-from-csr"
REGISTER = "register"
OVERSIZE_MIN = 128 * 1024 + 1  # over AWS IoT's 128 KB message limit
OVERSIZE_MAX = 200 * 1024  # but under the broker's packet limit, so the request is read and answered


@dataclass(frozen=True)
class Garbage:
    operation: str  # CSR | REGISTER
    fmt: str  # json | cbor
    kind: str
    payload: bytes


def _encode(value: Any, fmt: str) -> bytes:
    return cbor2.dumps(value) if fmt == "cbor" else json.dumps(value).encode()


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(n))


def _odd_value(rng: random.Random) -> Any:
    return rng.choice([0, -1, 2**40, 3.5, True, False, None, [], [1, "a"], {}, {"x": 1}, "", "   "])


def _fake_csr(rng: random.Random) -> str:
    body = base64.encodebytes(rng.randbytes(rng.randint(0, 400))).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _valid_shape(operation: str, rng: random.Random) -> dict[str, Any]:
    if operation == CSR:
        return {"certificateSigningRequest": _fake_csr(rng)}
    return {"certificateOwnershipToken": _text(rng, 40), "parameters": {"SerialNumber": _text(rng, 10)}}


def _random_bytes(op: str, fmt: str, rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 300))


def _truncated(op: str, fmt: str, rng: random.Random) -> bytes:
    whole = _encode(_valid_shape(op, rng), fmt)
    return whole[: rng.randint(0, len(whole) - 1)]


def _wrong_types(op: str, fmt: str, rng: random.Random) -> bytes:
    if op == CSR:
        return _encode({"certificateSigningRequest": _odd_value(rng)}, fmt)
    choice = rng.randint(0, 3)
    if choice == 0:
        return _encode({"certificateOwnershipToken": _odd_value(rng), "parameters": {}}, fmt)
    if choice == 1:
        return _encode({"certificateOwnershipToken": "t", "parameters": _odd_value(rng)}, fmt)
    if choice == 2:
        return _encode(
            {"certificateOwnershipToken": "t", "parameters": {"SerialNumber": _odd_value(rng)}}, fmt
        )
    return _encode({"certificateOwnershipToken": "t", "parameters": {"": "x", "k" * 3000: "v"}}, fmt)


def _not_an_object(op: str, fmt: str, rng: random.Random) -> bytes:
    return _encode(
        rng.choice([[], [1, 2], "text", 42, 1.5, None, True, [{"certificateSigningRequest": "x"}]]), fmt
    )


def _missing_fields(op: str, fmt: str, rng: random.Random) -> bytes:
    return _encode(
        rng.choice([{}, {"foo": "bar"}, {"parameters": {"SerialNumber": "A1"}}, {"csr": "x"}]), fmt
    )


def _bogus_csr_or_token(op: str, fmt: str, rng: random.Random) -> bytes:
    """The right shape with values that mean nothing: a PEM armour around random bytes, a made-up token."""
    return _encode(_valid_shape(op, rng), fmt)


def _oversized(op: str, fmt: str, rng: random.Random) -> bytes:
    size = rng.randint(OVERSIZE_MIN, OVERSIZE_MAX)
    padding = "A" * size
    body = {"certificateSigningRequest": padding} if op == CSR else {"certificateOwnershipToken": padding}
    return _encode(body, fmt)


def _encoding_tricks(op: str, fmt: str, rng: random.Random) -> bytes:
    """What trips decoders rather than validators: deep nesting, huge numbers, bad UTF-8, non-text keys."""
    choice = rng.randint(0, 4)
    if choice == 0:
        depth = rng.randint(1_000, 20_000)
        return b"\x81" * depth + b"\x00"  # CBOR arrays nested 1,000+ deep
    if choice == 1:
        return b'{"certificateSigningRequest": "\xff\xfe\xc3\x28"}' if fmt == "json" else b"\xa1\x61\xff\x61a"
    if choice == 2:
        return cbor2.dumps({1: "x", b"k": "v"}) if fmt == "cbor" else b'{"a": NaN, "b": Infinity}'
    if choice == 3:
        # CBOR: a text key whose value is a tagged datetime; JSON: a BOM and trailing data.
        if fmt == "cbor":
            return cbor2.dumps({"certificateSigningRequest": cbor2.CBORTag(1, 1_700_000_000)})
        return b"\xef\xbb\xbf" + _encode(_valid_shape(op, rng), fmt) + b" trailing"
    # Indefinite-length CBOR map that never ends / JSON with an unterminated string.
    return b"\xbf\x61a\x61b" if fmt == "cbor" else b'{"certificateSigningRequest": "-----BEGIN'


def json_decoder_limits(rng: random.Random) -> bytes:
    """JSON that Python's decoder refuses with RecursionError or ValueError, not JSONDecodeError."""
    if rng.random() < 0.5:
        depth = rng.randint(1_000, 20_000)
        return b"[" * depth + b"]" * depth
    return b'{"certificateSigningRequest": ' + b"9" * rng.randint(5_000, 20_000) + b"}"


def _decoder_limits(op: str, fmt: str, rng: random.Random) -> bytes:
    return json_decoder_limits(rng) if fmt == "json" else b"\x81" * rng.randint(1_000, 20_000) + b"\x00"


KINDS: dict[str, tuple[int, Callable[[str, str, random.Random], bytes]]] = {
    # kind: (weight, maker); oversized payloads are few, so 10,000 requests stay a few megabytes.
    "random_bytes": (20, _random_bytes),
    "truncated": (15, _truncated),
    "wrong_types": (20, _wrong_types),
    "not_an_object": (10, _not_an_object),
    "missing_fields": (10, _missing_fields),
    "bogus_csr_or_token": (15, _bogus_csr_or_token),
    "encoding_tricks": (7, _encoding_tricks),
    "decoder_limits": (2, _decoder_limits),
    "oversized": (1, _oversized),
}


def garbage(count: int, seed: int = 6) -> Iterator[Garbage]:
    rng = random.Random(seed)
    names = list(KINDS)
    weights = [KINDS[k][0] for k in names]
    for i in range(count):
        kind = names[i % len(names)] if i < len(names) * 2 else rng.choices(names, weights)[0]
        operation, fmt = rng.choice([CSR, REGISTER]), rng.choice(["json", "cbor"])
        yield Garbage(operation, fmt, kind, KINDS[kind][1](operation, fmt, rng))
