"""A device key that lives in a PKCS#11 token (SoftHSM2 here; a secure element on a real MCU).

The key pair is generated inside the token as a non-extractable, sensitive object. The CSR is assembled
around the token: the CertificationRequestInfo is built with asn1crypto from the public key the token
reports, its SHA-256 digest is signed with CKM_ECDSA inside the token (what the Renesas RX demo does
through its PKCS#11 port), and the DER signature is attached. awscrt then does mTLS with the same key
through the token (`TlsContextOptions.create_client_with_mtls_pkcs11`). Nothing but the key's label
is ever written under the device's directory.

SoftHSM2 reads SOFTHSM2_CONF once per process, when the library is first initialised, so a process uses
one token directory; the CLI sets it from --out-dir before anything loads the library.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from awscrt import io as crt_io

from device_sim.errors import UserError
from fleetctl.fingerprint import spki_sha256

SOFTHSM_LIB_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
DEFAULT_TOKEN_LABEL = "device-sim"
DEFAULT_USER_PIN = "1234"  # a simulated device's token; a real one would take the PIN from its firmware
IDENTITY_FILE = "pkcs11.json"


def find_softhsm() -> Path | None:
    """The SoftHSM2 module, or None when SoftHSM2 is not installed."""
    if shutil.which("softhsm2-util") is None:
        return None
    for candidate in SOFTHSM_LIB_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class Token:
    module: Path
    conf_file: Path
    label: str
    user_pin: str


def prepare_softhsm_token(
    token_dir: Path,
    *,
    label: str = DEFAULT_TOKEN_LABEL,
    user_pin: str = DEFAULT_USER_PIN,
    module: Path | None = None,
) -> Token:
    """A SoftHSM2 configuration and an initialised token under token_dir (reused if already there)."""
    module = module or find_softhsm()
    if module is None:
        raise UserError("--key-store pkcs11 needs SoftHSM2 (apt-get install softhsm2)")
    token_dir = token_dir.resolve()
    objects = token_dir / "tokens"
    objects.mkdir(parents=True, exist_ok=True)
    conf = token_dir / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {objects}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n"
    )
    current = os.environ.get("SOFTHSM2_CONF")
    if current and Path(current).resolve() != conf and _module_loaded(module):
        raise UserError(f"this process already uses the SoftHSM2 configuration {current}")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    if not any(objects.iterdir()):
        so_pin = secrets.token_hex(8)  # never needed again: the simulator only uses the user PIN
        result = subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                user_pin,
            ],
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise UserError(
                f"softhsm2-util could not initialise a token: {result.stderr.strip() or result.stdout}"
            )
    return Token(module=module, conf_file=conf, label=label, user_pin=user_pin)


def _module_loaded(module: Path) -> bool:
    try:
        return str(module.resolve()) in Path("/proc/self/maps").read_text()
    except OSError:
        return False


class Pkcs11Key:
    """An EC P-256 key generated in the token; only its label, the token's label and the module are known."""

    def __init__(self, token: Token, key_label: str) -> None:
        self.token = token
        self.key_label = key_label
        self._public_key_info: bytes | None = None

    @classmethod
    def generate(cls, token: Token, serial: str, label: str | None = None) -> Pkcs11Key:
        """A new key pair in the token, labelled `label` (the factory: the serial) or `<serial>-<random>`."""
        from pkcs11 import Attribute, KeyType
        from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

        # A fresh label per key: a device that provisions again makes a new key, the old one stays untouched.
        key = cls(token, label or f"{serial}-{secrets.token_hex(4)}")
        with _session(token) as session:
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
            )
            public, _private = params.generate_keypair(
                store=True,
                label=key.key_label,
                id=key.key_label.encode(),
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                    Attribute.TOKEN: True,
                },
                public_template={Attribute.VERIFY: True, Attribute.TOKEN: True},
            )
            key._public_key_info = encode_ec_public_key(public)
        return key

    @classmethod
    def find(cls, token: Token, label: str) -> Pkcs11Key | None:
        """The token's key pair with this label, or None."""
        import pkcs11
        from pkcs11 import KeyType, ObjectClass
        from pkcs11.util.ec import encode_ec_public_key

        with _session(token) as session:
            try:
                session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label)
                public = session.get_key(
                    object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label
                )
            except pkcs11.NoSuchKey:
                return None
            except pkcs11.MultipleObjectsReturned:
                raise UserError(
                    f"PKCS#11 token '{token.label}' holds more than one key labelled {label!r}"
                ) from None
            key = cls(token, label)
            key._public_key_info = encode_ec_public_key(public)
        return key

    def destroy(self) -> None:
        """Delete the key pair from the token (a rotated device's old key); nothing if it is gone."""
        from pkcs11 import Attribute, ObjectClass

        with _session(self.token) as session:
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for found in list(
                    session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: self.key_label})
                ):
                    found.destroy()

    def public_key_sha256(self) -> str:
        return spki_sha256(self._spki())

    def _spki(self) -> bytes:
        """The DER SubjectPublicKeyInfo of the key, as the token reports its public half."""
        if self._public_key_info is None:
            from pkcs11 import KeyType, ObjectClass
            from pkcs11.util.ec import encode_ec_public_key

            with _session(self.token) as session:
                public = session.get_key(
                    object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=self.key_label
                )
                self._public_key_info = encode_ec_public_key(public)
        return self._public_key_info

    def csr_pem(self, serial: str) -> str:
        from asn1crypto import csr, keys, pem, x509
        from pkcs11 import KeyType, Mechanism, ObjectClass
        from pkcs11.util.ec import encode_ecdsa_signature

        spki = self._spki()
        with _session(self.token) as session:
            private = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=self.key_label
            )
            info = csr.CertificationRequestInfo(
                {
                    "version": "v1",
                    "subject": x509.Name.build({"common_name": serial}),
                    "subject_pk_info": keys.PublicKeyInfo.load(spki),
                    "attributes": [],
                }
            )
            digest = hashlib.sha256(info.dump()).digest()
            raw_signature = private.sign(digest, mechanism=Mechanism.ECDSA)  # r || s, made inside the token
        request = csr.CertificationRequest(
            {
                "certification_request_info": info,
                "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                "signature": encode_ecdsa_signature(raw_signature),
            }
        )
        return pem.armor("CERTIFICATE REQUEST", request.dump()).decode()

    def tls_options(self, certificate_pem: bytes) -> crt_io.TlsContextOptions:
        return crt_io.TlsContextOptions.create_client_with_mtls_pkcs11(
            pkcs11_lib=_crt_lib(self.token.module),
            user_pin=self.token.user_pin,
            token_label=self.token.label,
            private_key_label=self.key_label,
            cert_file_contents=certificate_pem,
        )

    def save(self, out_dir: Path) -> Path:
        path = out_dir / IDENTITY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "module": str(self.token.module),
                    "softhsm2_conf": str(self.token.conf_file),
                    "token_label": self.token.label,
                    "key_label": self.key_label,
                },
                indent=2,
            )
            + "\n"
        )
        return path


def private_key_labels(token: Token) -> set[str]:
    """The labels of every private key in the token (one listing, however many keys)."""
    from pkcs11 import Attribute, ObjectClass

    with _session(token) as session:
        return {obj.label for obj in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})}


_CRT_LIBS: dict[Path, crt_io.Pkcs11Lib] = {}


def _crt_lib(module: Path) -> crt_io.Pkcs11Lib:
    # One awscrt handle per module: C_Initialize runs once, "already initialised" (by python-pkcs11) is fine.
    if module not in _CRT_LIBS:
        _CRT_LIBS[module] = crt_io.Pkcs11Lib(
            file=str(module), behavior=crt_io.Pkcs11Lib.InitializeFinalizeBehavior.DEFAULT
        )
    return _CRT_LIBS[module]


_PY_LIBS: dict[Path, object] = {}


def _session(token: Token):  # type: ignore[no-untyped-def]
    import pkcs11

    lib = _PY_LIBS.get(token.module)
    if lib is None:
        lib = _PY_LIBS[token.module] = pkcs11.lib(str(token.module))
    try:
        found = lib.get_token(token_label=token.label)  # type: ignore[attr-defined]
    except (pkcs11.NoSuchToken, pkcs11.MultipleTokensReturned) as exc:
        raise UserError(f"PKCS#11 token '{token.label}': {type(exc).__name__}") from None
    try:
        return found.open(rw=True, user_pin=token.user_pin)
    except pkcs11.PinIncorrect:
        raise UserError(f"PKCS#11 token '{token.label}': the user PIN is wrong") from None
    except pkcs11.UserAlreadyLoggedIn:
        # Logging in is per process and token: awscrt's TLS with a key of this token (a device connected
        # with its current key, rotating) logged the user in already, and every new session shares it.
        return found.open(rw=True)
