"""One TLS handshake before any device starts, to turn a bad target into one precise line.

awscrt reports a server certificate it does not trust only after s2n's anti-timing "blinding" delay (10-30 s),
and a refused client certificate as a bare read failure. A plain `ssl` handshake with the same CA, claim
certificate and key says at once which of these it is. It sends no MQTT CONNECT: AWS IoT allows one CONNECT
per second per client id, and the claim connection that follows must not be throttled by this probe.
"""

from __future__ import annotations

import socket
import ssl

from device_sim.errors import Refused, UserError
from device_sim.target import Target

REFUSAL_GRACE_S = 0.3  # with TLS 1.3 the server's verdict on our certificate arrives just after the handshake


def check_target(target: Target, timeout_s: float = 5.0) -> None:
    """UserError (exit 2) when a file is unusable; Refused (exit 1) when the endpoint cannot be reached,
    is not trusted, or refuses the claim."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(target.ca_file))
    except FileNotFoundError:
        raise UserError(f"cannot read the CA file {target.ca_file}") from None
    except ssl.SSLError as exc:
        raise UserError(f"the CA file {target.ca_file} holds no PEM certificate ({exc.reason})") from None
    try:
        context.load_cert_chain(str(target.claim_cert_file), str(target.claim_key_file))
    except FileNotFoundError as exc:
        raise UserError(
            f"cannot read the claim credential {exc.filename or target.claim_cert_file}"
        ) from None
    except ssl.SSLError as exc:
        raise UserError(
            f"the claim certificate {target.claim_cert_file} and key {target.claim_key_file} "
            f"are not a usable PEM pair ({exc.reason})"
        ) from None
    try:
        raw = socket.create_connection((target.host, target.port), timeout=timeout_s)
    except TimeoutError:
        raise Refused(f"cannot reach {target.address}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise Refused(f"cannot reach {target.address}: {exc.strerror or exc}") from None
    try:
        with context.wrap_socket(raw, server_hostname=target.host) as tls:
            tls.settimeout(REFUSAL_GRACE_S)
            try:
                data = tls.recv(1)
            except TimeoutError:
                return  # the server is waiting for our CONNECT: it accepted the claim certificate
            if not data:
                raise Refused(
                    f"{target.address} closed the connection right after the TLS handshake: "
                    "it refused the claim certificate"
                )
    except ssl.SSLCertVerificationError as exc:
        raise Refused(
            f"the endpoint {target.address} is not trusted by the CA file {target.ca_file} "
            f"({exc.verify_message})"
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "ALERT" in reason.upper():
            raise Refused(
                f"{target.address} refused the claim certificate {target.claim_cert_file} "
                f"(TLS alert: {reason.lower().replace('_', ' ')})"
            ) from None
        raise Refused(f"TLS with {target.address} failed: {reason}") from None
    except (ConnectionResetError, BrokenPipeError):
        raise Refused(
            f"{target.address} reset the connection during the TLS handshake: "
            "it refused the claim certificate"
        ) from None
    except TimeoutError:
        raise Refused(f"{target.address} did not complete the TLS handshake within {timeout_s:g} s") from None
    except OSError as exc:
        raise Refused(f"TLS with {target.address} failed: {exc.strerror or exc}") from None
