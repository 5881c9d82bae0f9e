"""Microchip's secure-element manifest (Trust&GO, TrustFLEX, TrustCUSTOM) as a source of serial rows.

The format is Microchip's "Trust Platform Manifest File Format" user guide: a JSON array of
*SignedSecureElement* objects, each a JWS in the flattened JSON serialization (RFC 7515 section 7.2.2):
`{"protected", "payload", "signature", "header": {"uniqueId"}}`. The protected header carries `alg` (ES256),
`kid` (the signer's subject key identifier) and `x5t#S256` (the SHA-256 thumbprint of the signer's
certificate). The payload is a *SecureElement*: `uniqueId` (the chip's serial number, lowercase hex) and a
`publicKeySet` of JWKs whose `kid` is the key's slot; slot 0, the device key of a Trust&GO part, also
carries `x5c` = [device certificate, signer certificate] (standard base64 DER).

What this reads: the public key of one slot (`--key-slot`, default 0) becomes the serial's
`public_key_sha256`. The serial comes from the signed `uniqueId`, from the CN of the slot's device
certificate, or from a map the factory's test station wrote (uniqueId -> product serial). The unsigned
`header.uniqueId` is never trusted: it must agree with the payload, or the entry is refused.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.registry import HeaderParameter

from fleetctl.errors import FleetctlError, UsageError
from fleetctl.fingerprint import public_key_sha256
from fleetctl.serial_csv import BATCH_RE, BadRow, SerialRow
from fleetctl.target import Settings

UNIQUE_ID, CERTIFICATE_CN = "unique-id", "certificate-cn"
SERIAL_SOURCES = (UNIQUE_ID, CERTIFICATE_CN)
DEVICE_KEY_SLOT = "0"  # Trust&GO: slot 0 holds the device's private key, the one its certificate names
UNIQUE_ID_RE = re.compile(r"(?:[0-9a-f]{2}){1,32}")
# Microchip signs with ES256; the EC family is accepted, never HMAC or "none" (the key is public).
ALGORITHMS = ("ES256", "ES384", "ES512")
_REGISTRY = jws.JWSRegistry(
    header_registry={"uniqueId": HeaderParameter("Microchip: the secure element's serial number", "str")},
    algorithms=ALGORITHMS,
    # Vendors add protected members over time; the signature covers them, so they are not a risk.
    strict_check_header=False,
)


@dataclass(frozen=True)
class ManifestOptions:
    serial_from: str | None = None  # UNIQUE_ID or CERTIFICATE_CN; or serial_map
    serial_map: dict[str, str] | None = None  # uniqueId -> serial
    key_slot: str = DEVICE_KEY_SLOT
    batch: str | None = None
    signers: tuple[x509.Certificate, ...] = ()  # empty: signatures are not checked (the operator said so)


class MicrochipManifest:
    """The manifest's entries as rows for the importer: one `SerialRow` or `BadRow` per entry (1-based)."""

    unit = "entry"

    def __init__(self, path: Path, settings: Settings, options: ManifestOptions) -> None:
        self.path = path
        self.settings = settings
        self.options = options
        self.attribute_columns: list[str] = []
        self._entries = self._load()
        self._rows: list[SerialRow | BadRow] | None = None

    def _load(self) -> list[Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            raise UsageError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{self.path}: is a directory, not a manifest") from None
        except OSError as exc:
            raise UsageError(f"{self.path}: {exc.strerror}") from None
        except ValueError as exc:
            raise FleetctlError(f"{self.path}: not JSON ({exc})") from None
        if not isinstance(data, list):
            raise FleetctlError(f"{self.path}: a manifest is a JSON array of signed secure elements")
        if not data:
            raise FleetctlError(f"{self.path}: the manifest has no entries")
        return data

    def rows(self) -> Iterator[SerialRow | BadRow]:
        # The whole manifest is in memory already (it is one JSON document); check each entry once.
        if self._rows is None:
            self._rows = [self._row(n, entry) for n, entry in enumerate(self._entries, 1)]
        yield from self._rows

    def _row(self, n: int, entry: Any) -> SerialRow | BadRow:
        try:
            element = self._secure_element(entry)
            unique_id = _unique_id(element, entry)
            certificates, key = self._slot_key(element)
            serial = self._serial(unique_id, certificates)
        except _Bad as bad:
            return BadRow(n, str(bad))
        problem = self.settings.serial_problem(serial)
        if problem:
            return BadRow(n, f"uniqueId {unique_id}: {problem}")
        batch = self.options.batch
        return SerialRow(
            n,
            serial,
            batch,
            public_key_sha256=public_key_sha256(key),
            sets_batch=batch is not None,
            sets_attributes=False,
        )

    def _secure_element(self, entry: Any) -> dict[str, Any]:
        """The entry's payload, its signature checked against the given signers (unless told not to)."""
        if not isinstance(entry, dict):
            raise _Bad("not a JSON object")
        if "signatures" in entry:
            raise _Bad("a general-serialization JWS; Microchip's manifests use the flattened one")
        if not all(isinstance(entry.get(k), str) for k in ("protected", "payload", "signature")):
            raise _Bad("not a signed secure element (a JWS with protected, payload and signature)")
        header = _json_object(entry["protected"], "protected header")
        if self.options.signers:
            signer = _signer(header, self.options.signers)
            signer_key = signer.public_key()
            if not isinstance(signer_key, ec.EllipticCurvePublicKey):
                raise _Bad(f"the signer {_name(signer)} has no EC key (Microchip signs with ES256)")
            member = cast(
                jws.FlattenedJSONSerialization,
                {k: entry[k] for k in ("protected", "payload", "signature", "header") if k in entry},
            )
            try:
                verified = jws.deserialize_json(member, ECKey.import_key(signer_key), registry=_REGISTRY)
            except (JoseError, ValueError, TypeError) as exc:
                raise _Bad(f"signature does not verify with {_name(signer)} ({exc})") from None
            payload: bytes = verified.payload
        else:
            payload = _b64url(entry["payload"], "payload")
        try:
            element = json.loads(payload)
        except ValueError:
            raise _Bad("the payload is not JSON") from None
        if not isinstance(element, dict):
            raise _Bad("the payload is not a secure element object")
        return element

    def _slot_key(self, element: dict[str, Any]) -> tuple[list[x509.Certificate], ec.EllipticCurvePublicKey]:
        """The certificates (may be none) and the public key of the configured slot, checked to agree."""
        slot = self.options.key_slot
        key_set = element.get("publicKeySet")
        keys = key_set.get("keys") if isinstance(key_set, dict) else None
        if not isinstance(keys, list):
            raise _Bad("the payload has no publicKeySet.keys")
        jwk = next((k for k in keys if isinstance(k, dict) and k.get("kid") == slot), None)
        if jwk is None:
            raise _Bad(f"no public key for slot {slot} (JWK kid {slot!r})")
        if jwk.get("kty") != "EC":
            raise _Bad(f"slot {slot}: key type {str(jwk.get('kty'))[:20]!r}, expected EC")
        members = {k: jwk.get(k) for k in ("kty", "crv", "x", "y")}
        if not all(isinstance(v, str) for v in members.values()):
            raise _Bad(f"slot {slot}: the JWK lacks crv, x or y")
        try:
            key = ECKey.import_key(cast(dict[str, str | list[str]], members)).public_key
        except (JoseError, ValueError, TypeError) as exc:
            raise _Bad(f"slot {slot}: not a valid EC public key ({exc})") from None
        certificates = [_certificate(c, slot) for c in jwk.get("x5c") or []]
        if certificates:
            if public_key_sha256(certificates[0].public_key()) != public_key_sha256(key):
                raise _Bad(f"slot {slot}: the certificate in x5c[0] is for another key than the JWK")
            for child, issuer in zip(certificates, certificates[1:], strict=False):
                try:
                    child.verify_directly_issued_by(issuer)
                except (ValueError, TypeError, InvalidSignature):
                    raise _Bad(
                        f"slot {slot}: x5c is not a chain ({_name(child)} not signed by {_name(issuer)})"
                    ) from None
        return certificates, key

    def _serial(self, unique_id: str, certificates: Sequence[x509.Certificate]) -> str:
        if self.options.serial_map is not None:
            serial = self.options.serial_map.get(unique_id)
            if serial is None:
                raise _Bad(f"uniqueId {unique_id} is not in the serial map")
            return serial
        if self.options.serial_from == CERTIFICATE_CN:
            if not certificates:
                raise _Bad(f"slot {self.options.key_slot} has no certificate (x5c) to take a CN from")
            names = certificates[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if not names:
                raise _Bad("the device certificate has no CN")
            return str(names[0].value)
        return unique_id


class _Bad(Exception):
    """One entry is unusable; the message is its reason."""


def _unique_id(element: dict[str, Any], entry: dict[str, Any]) -> str:
    value = element.get("uniqueId")
    if not isinstance(value, str) or not UNIQUE_ID_RE.fullmatch(value.lower()):
        raise _Bad(f"uniqueId {str(value)[:40]!r} is not a hex serial number")
    unsigned = entry.get("header", {}).get("uniqueId") if isinstance(entry.get("header"), dict) else None
    if unsigned is not None and str(unsigned).lower() != value.lower():
        # The unprotected header is outside the signature: anyone could have edited it.
        raise _Bad(f"the unsigned header says uniqueId {str(unsigned)[:40]!r}, the signed payload {value!r}")
    return value.lower()


def _signer(header: dict[str, Any], signers: Sequence[x509.Certificate]) -> x509.Certificate:
    thumbprint = header.get("x5t#S256")
    if not isinstance(thumbprint, str):
        raise _Bad("the protected header has no x5t#S256 (the signer's certificate thumbprint)")
    wanted = _b64url(thumbprint, "x5t#S256")
    for signer in signers:
        if signer.fingerprint(hashes.SHA256()) == wanted:
            return signer
    raise _Bad(f"signed by a certificate not given with --verify-signer (x5t#S256 {wanted.hex()})")


def _certificate(value: Any, slot: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise _Bad(f"slot {slot}: x5c holds something that is not a base64 DER certificate") from None


def _b64url(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _Bad(f"the {what} is not base64url") from None


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(text, what))
    except ValueError:
        raise _Bad(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _Bad(f"the {what} is not a JSON object")
    return value


def _name(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()[:80] or "(no subject)"


# -- the operator's inputs --------------------------------------------------------------------------------


def load_signers(paths: Sequence[Path]) -> tuple[x509.Certificate, ...]:
    """Manifest signer certificates (PEM, one or more per file), as Microchip publishes them."""
    found: list[x509.Certificate] = []
    for path in paths:
        try:
            found.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        except FileNotFoundError:
            raise UsageError(f"--verify-signer {path}: no such file") from None
        except OSError as exc:
            raise UsageError(f"--verify-signer {path}: {exc.strerror}") from None
        except ValueError:
            raise UsageError(f"--verify-signer {path}: not a PEM certificate") from None
    return tuple(found)


def load_serial_map(path: Path, settings: Settings) -> dict[str, str]:
    """`unique_id,serial` rows (header required): what the test station recorded for each chip."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"unique_id", "serial"} <= {f.strip() for f in reader.fieldnames}:
                raise FleetctlError(f"{path}: line 1: a serial map needs the columns unique_id,serial")
            mapping: dict[str, str] = {}
            serials: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                unique_id, serial = cells.get("unique_id", "").lower(), cells.get("serial", "")
                if not UNIQUE_ID_RE.fullmatch(unique_id):
                    raise FleetctlError(f"{path}: line {line}: unique_id {unique_id[:40]!r} is not hex")
                problem = settings.serial_problem(serial)
                if problem:
                    raise FleetctlError(f"{path}: line {line}: {problem}")
                if unique_id in mapping:
                    raise FleetctlError(f"{path}: line {line}: unique_id {unique_id} appears twice")
                if serial in serials:
                    raise FleetctlError(
                        f"{path}: line {line}: serial {serial!r} repeats line {serials[serial]}"
                    )
                mapping[unique_id], serials[serial] = serial, line
    except FileNotFoundError:
        raise UsageError(f"--serial-map {path}: no such file") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FleetctlError(f"{path}: not a readable UTF-8 CSV ({exc})") from None
    except OSError as exc:
        raise UsageError(f"--serial-map {path}: {exc.strerror}") from None
    return mapping


def check_batch(batch: str | None) -> str | None:
    if batch is not None and not BATCH_RE.fullmatch(batch):
        raise UsageError(f"--batch {batch[:80]!r} is not a valid batch name")
    return batch
