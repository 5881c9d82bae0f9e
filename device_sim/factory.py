"""The factory's test station: one key pair per serial, kept where the device keeps it, and the manifest.

`run_factory` makes (or finds) each serial's key in a keys directory and writes the CSV that
`fleetctl registry import` takes: `serial,public_key_sha256[,batch]`. Only public keys' fingerprints and
serials are in it; nothing secret leaves the station. `KeysDir` is also how `provision --keys-dir` and
`fleet --keys-dir` find the key a device was given.

The two key stores:
- memory: `DIR/<serial>.key.pem`, mode 0600, as a device without a secure element keeps its key in flash;
- pkcs11: a key pair labelled `<serial>` inside the SoftHSM2 token under `DIR/softhsm2`, generated there as
  sensitive and non-extractable (`device_sim.pkcs11_store`), as a secure element holds it.
A key once made is never replaced: its fingerprint may already be in the registry, and a new key would
lock the device out. Running the station again for the same serials finds the same keys.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from device_sim.errors import UserError
from device_sim.keys import DeviceKey, MemoryKey, write_private
from device_sim.pkcs11_store import Pkcs11Key, Token, prepare_softhsm_token, private_key_labels

KEYS_FILE = "keys.json"  # what the directory holds: key store and token label (never a PIN or a key)
TOKEN_DIR = "softhsm2"
KEY_SUFFIX = ".key.pem"


class KeyStore(StrEnum):
    memory = "memory"
    pkcs11 = "pkcs11"


def check_serial(serial: str) -> None:
    """A serial names a file and a token label here: refuse what would escape the directory."""
    if not serial or len(serial) > 128 or serial.startswith(".") or any(c in serial for c in "/\\\0\n\r"):
        raise UserError(f"serial {serial[:60]!r} cannot name a key (empty, too long, hidden, or has / \\)")


@dataclass
class KeysDir:
    path: Path
    key_store: KeyStore
    token: Token | None = None  # the pkcs11 store's token

    @classmethod
    def create(cls, path: Path, key_store: KeyStore, *, pkcs11_pin: str) -> KeysDir:
        """The station's directory: made if new, reused if it holds keys of the same store."""
        recorded = _recorded_store(path)
        if recorded is not None and recorded is not key_store:
            raise UserError(f"{path} holds {recorded.value} keys; give --key-store {recorded.value}")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the keys directory {path}: {exc.strerror or exc}") from None
        keys_dir = cls(path, key_store, _token(path, key_store, pkcs11_pin, create=True))
        (path / KEYS_FILE).write_text(json.dumps({"key_store": key_store.value}, indent=2) + "\n")
        return keys_dir

    @classmethod
    def open(cls, path: Path, key_store: KeyStore | None, *, pkcs11_pin: str) -> KeysDir:
        """A directory the factory wrote; the key store is the one it recorded."""
        recorded = _recorded_store(path)
        if recorded is None:
            raise UserError(f"--keys-dir {path} holds no factory keys ({KEYS_FILE} is missing)")
        if key_store is not None and key_store is not recorded:
            raise UserError(f"--keys-dir {path} holds {recorded.value} keys, not {key_store.value}")
        return cls(path, recorded, _token(path, recorded, pkcs11_pin, create=False))

    def key_file(self, serial: str) -> Path:
        check_serial(serial)
        return self.path / f"{serial}{KEY_SUFFIX}"

    def find(self, serial: str) -> DeviceKey | None:
        if self.token is not None:
            check_serial(serial)
            return Pkcs11Key.find(self.token, serial)
        path = self.key_file(serial)
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            return MemoryKey.from_pem(pem)
        except ValueError:
            raise UserError(f"{path} is not a PEM private key") from None

    def load(self, serial: str) -> DeviceKey:
        """The key the factory made for this serial; the device has no other."""
        key = self.find(serial)
        if key is None:
            raise UserError(
                f"--keys-dir {self.path} has no key for serial {serial!r}; "
                f"run `device-sim factory` for it first"
            )
        return key

    def make(self, serial: str) -> tuple[DeviceKey, bool]:
        """(key, True) for a new key, (key, False) for the one already there."""
        existing = self.find(serial)
        if existing is not None:
            return existing, False
        if self.token is not None:
            return Pkcs11Key.generate(self.token, serial, label=serial), True
        key = MemoryKey()
        write_private(self.key_file(serial), key.private_pem())
        return key, True

    def missing(self, serials: Iterable[str]) -> list[str]:
        """The serials with no key here, in order (one directory listing or one token listing)."""
        if self.token is not None:
            present = private_key_labels(self.token)
        else:
            present = {
                name[: -len(KEY_SUFFIX)] for name in os.listdir(self.path) if name.endswith(KEY_SUFFIX)
            }
        return [serial for serial in serials if serial not in present]


def _recorded_store(path: Path) -> KeyStore | None:
    try:
        data = json.loads((path / KEYS_FILE).read_text())
        return KeyStore(data["key_store"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path / KEYS_FILE} is not a keys directory's description") from None


def _token(path: Path, key_store: KeyStore, pin: str, *, create: bool) -> Token | None:
    if key_store is not KeyStore.pkcs11:
        return None
    objects = path / TOKEN_DIR / "tokens"
    if not create and not (objects.is_dir() and any(objects.iterdir())):
        raise UserError(f"--keys-dir {path} has no SoftHSM2 token under {TOKEN_DIR}/")
    return prepare_softhsm_token(path / TOKEN_DIR, user_pin=pin)


@dataclass(frozen=True)
class FactoryResult:
    serials: int
    made: int
    kept: int
    manifest: Path


def run_factory(
    serials: Sequence[str],
    keys_dir: KeysDir,
    manifest: Path,
    *,
    batch: str | None = None,
    on_key: Callable[[str, bool], None] = lambda serial, made: None,
) -> FactoryResult:
    """A key per serial (made, or found from an earlier run); then the manifest CSV, whole or not at all."""
    from fleetctl.fingerprint import FINGERPRINT_COLUMN
    from fleetctl.serial_csv import BATCH_COLUMN, BATCH_RE, SERIAL_COLUMN

    if batch is not None and not BATCH_RE.fullmatch(batch):
        raise UserError(f"--batch {batch[:60]!r} is not a valid batch name")
    seen: set[str] = set()
    for serial in serials:
        check_serial(serial)
        if serial in seen:
            raise UserError(f"serial {serial!r} appears twice; each device gets its own key")
        seen.add(serial)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    partial = manifest.with_name(manifest.name + ".partial")
    made = 0
    try:
        with partial.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([SERIAL_COLUMN, FINGERPRINT_COLUMN] + ([BATCH_COLUMN] if batch else []))
            for serial in serials:
                key, new = keys_dir.make(serial)
                made += new
                writer.writerow([serial, key.public_key_sha256()] + ([batch] if batch else []))
                on_key(serial, new)
        partial.replace(manifest)  # a manifest on disk is always complete: the keys made so far stay
    finally:
        partial.unlink(missing_ok=True)
    return FactoryResult(serials=len(serials), made=made, kept=len(serials) - made, manifest=manifest)
