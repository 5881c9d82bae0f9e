"""A provisioned device's directory (what `provision --out-dir` writes), and a rotation's place in it.

    D/identity.json        serial, thing name, certificate id, file names, device configuration
    D/certificate.pem      the certificate the device connects with
    D/private.key          its key (0600), or D/pkcs11.json: the key's label in the PKCS#11 token
    D/thing_name
    D/rotation/            a rotation under way: the new key (private.key or pkcs11.json), then the new
                           certificate (pending-certificate.pem) once CreateCertificateFromCsr answered,
                           then `connected` once the new identity has connected

The device keeps its old identity until the new one has connected: only then is the new one moved over the
old (`swap`), file by file with `os.replace`. `connected` is written first, so a swap cut short (power lost)
is finished by the next `load_identity`, and a device never ends up with a certificate and a key that do not
belong together.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from device_sim.errors import UserError
from device_sim.keys import DeviceKey, MemoryKey
from device_sim.pkcs11_store import IDENTITY_FILE as PKCS11_FILE

IDENTITY = "identity.json"
CERTIFICATE = "certificate.pem"
PRIVATE_KEY = "private.key"
ROTATION = "rotation"
PENDING_CERTIFICATE = "pending-certificate.pem"
CONNECTED = "connected"


@dataclass
class DeviceIdentity:
    directory: Path
    serial: str
    thing_name: str
    certificate_id: str
    certificate_pem: bytes
    key: DeviceKey
    device_configuration: dict[str, str] = field(default_factory=dict)

    @property
    def uses_pkcs11(self) -> bool:
        return not isinstance(self.key, MemoryKey)


@dataclass
class PendingRotation:
    """What a rotation under way has kept: its new key, and its new certificate once it has one."""

    key: DeviceKey
    certificate_pem: bytes | None = None
    certificate_id: str | None = None


def load_identity(directory: Path, *, pkcs11_pin: str) -> DeviceIdentity:
    """The device's current identity; a rotation whose new identity connected is finished first."""
    if (directory / ROTATION / CONNECTED).is_file():
        _finish_swap(directory, pkcs11_pin)  # a swap cut short: finish it
    data = _identity_json(directory)
    try:
        serial, thing_name = str(data["serial"]), str(data["thing_name"])
        certificate_file = directory / str(data.get("certificate_file") or CERTIFICATE)
        key_file = directory / str(data.get("key_file") or PRIVATE_KEY)
        configuration = {str(k): str(v) for k, v in dict(data.get("device_configuration") or {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{directory / IDENTITY} is not a device identity ({exc})") from None
    certificate_pem = _read(certificate_file, "certificate")
    return DeviceIdentity(
        directory=directory,
        serial=serial,
        thing_name=thing_name,
        certificate_id=str(data.get("certificate_id") or certificate_id_of(certificate_pem)),
        certificate_pem=certificate_pem,
        key=load_key(key_file, pkcs11_pin),
        device_configuration=configuration,
    )


def load_key(path: Path, pkcs11_pin: str) -> DeviceKey:
    """A key file of a device directory: a PEM private key, or the PKCS#11 label file."""
    if path.name == PKCS11_FILE:
        from device_sim.pkcs11_store import Pkcs11Key, prepare_softhsm_token

        try:
            label = json.loads(_read(path, "PKCS#11 key label").decode())
            conf = Path(label["softhsm2_conf"])
            token = prepare_softhsm_token(
                conf.parent, label=label["token_label"], user_pin=pkcs11_pin, module=Path(label["module"])
            )
            key_label = str(label["key_label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path} is not a PKCS#11 key label file ({exc})") from None
        return Pkcs11Key(token, key_label)
    try:
        return MemoryKey.from_pem(_read(path, "private key"))
    except ValueError:
        raise UserError(f"{path} is not a PEM private key") from None


def new_key_like(identity: DeviceIdentity) -> DeviceKey:
    """A new key pair in the same store as the current one (memory, or the same PKCS#11 token)."""
    if identity.uses_pkcs11:
        from device_sim.pkcs11_store import Pkcs11Key

        assert isinstance(identity.key, Pkcs11Key)
        return Pkcs11Key.generate(identity.key.token, identity.serial)
    return MemoryKey()


def keep_new_key(identity: DeviceIdentity, key: DeviceKey) -> None:
    """Before any request: the new key (or its label) in D/rotation, so a retry or a reboot uses it again."""
    rotation = identity.directory / ROTATION
    rotation.mkdir(mode=0o700, exist_ok=True)
    key.save(rotation)


def keep_new_certificate(identity: DeviceIdentity, certificate_pem: str) -> None:
    """CreateCertificateFromCsr answered: its certificate may be the one RegisterThing activates."""
    _write_atomically(identity.directory / ROTATION / PENDING_CERTIFICATE, certificate_pem.encode())


def pending_rotation(identity: DeviceIdentity, *, pkcs11_pin: str) -> PendingRotation | None:
    """The rotation an earlier run left unfinished, or None."""
    rotation = identity.directory / ROTATION
    key_file = next((rotation / n for n in (PRIVATE_KEY, PKCS11_FILE) if (rotation / n).is_file()), None)
    if key_file is None:
        return None
    pending = PendingRotation(load_key(key_file, pkcs11_pin))
    certificate = rotation / PENDING_CERTIFICATE
    if certificate.is_file():
        pending.certificate_pem = certificate.read_bytes()
        pending.certificate_id = certificate_id_of(pending.certificate_pem)
    return pending


def swap(identity: DeviceIdentity, certificate_pem: bytes, certificate_id: str) -> None:
    """The new identity has connected: it replaces the old one (the old PKCS#11 key is destroyed)."""
    rotation = identity.directory / ROTATION
    _write_atomically(rotation / CERTIFICATE, certificate_pem)
    old_label = getattr(identity.key, "key_label", None)  # a PKCS#11 key: destroyed once replaced
    marker = {"certificate_id": certificate_id, "old_pkcs11_key_label": old_label}
    _write_atomically(rotation / CONNECTED, json.dumps(marker).encode())
    _finish_swap(identity.directory, identity.key)


def _finish_swap(directory: Path, pkcs11: DeviceKey | str) -> None:
    """Idempotent: each step checks what is already done, so it may run again after a power cut.
    `pkcs11`: a key of the device's token (to destroy the old key with), or the token's PIN."""
    rotation = directory / ROTATION
    marker = json.loads(_read(rotation / CONNECTED, "rotation marker").decode())
    data = _identity_json(directory)
    new_key_name = (
        PKCS11_FILE if (rotation / PKCS11_FILE).is_file() else str(data.get("key_file") or PRIVATE_KEY)
    )
    if (rotation / new_key_name).is_file():
        os.replace(rotation / new_key_name, directory / new_key_name)
    if (rotation / CERTIFICATE).is_file():
        os.replace(rotation / CERTIFICATE, directory / CERTIFICATE)
    data.update(certificate_id=marker["certificate_id"], certificate_file=CERTIFICATE, key_file=new_key_name)
    _write_atomically(directory / IDENTITY, (json.dumps(data, indent=2) + "\n").encode())
    old_label = marker.get("old_pkcs11_key_label")
    if old_label:
        from device_sim.pkcs11_store import Pkcs11Key

        current = pkcs11 if isinstance(pkcs11, Pkcs11Key) else load_key(directory / PKCS11_FILE, str(pkcs11))
        assert isinstance(current, Pkcs11Key)
        Pkcs11Key(current.token, old_label).destroy()  # the key the device no longer uses
    shutil.rmtree(rotation, ignore_errors=True)


def certificate_id_of(certificate_pem: bytes) -> str:
    """AWS IoT's certificate id: the SHA-256 of the certificate's DER, in hex."""
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(Encoding.DER)
    except ValueError:
        raise UserError("a certificate file of the device is not a PEM certificate") from None
    return hashlib.sha256(der).hexdigest()


def _identity_json(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read(directory / IDENTITY, "device identity").decode())
    except ValueError:
        raise UserError(f"{directory / IDENTITY} is not JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"{directory / IDENTITY} is not a device identity")
    return data


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
