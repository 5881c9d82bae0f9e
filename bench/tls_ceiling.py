"""The physical ceiling: mutual-TLS handshakes per second between two processes on this machine.

Same key types as the real flow: EC P-256 server and client keys, a P-256 CA, TLS 1.2+ as the emulator
serves it. The server is the emulator's TLS stack (Python's ssl over OpenSSL) in its own process; the
client process opens connections from a few threads, completes the handshake, and closes. Each device in
the flow does two handshakes (claim connection, then its own certificate), so the flow's ceiling in
devices per second is handshakes per second divided by two.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool = False,
    san: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(ca_name if not is_ca else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256())


def write_pki(directory: Path) -> dict[str, str]:
    """A P-256 CA and a server and a client certificate it signed, with their keys, made for this run."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(ca_key, x509.Name([]), "bench-ca", ca_key, is_ca=True)
    files: dict[str, str] = {}
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    files["ca"] = str(directory / "ca.pem")
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(ca_key, ca.subject, role, key, san=role == "server")
        (directory / f"{role}.pem").write_bytes(cert.public_bytes(pem))
        key_path = directory / f"{role}.key"
        key_path.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        key_path.chmod(0o600)
        files[role] = str(directory / f"{role}.pem")
        files[f"{role}_key"] = str(key_path)
    return files


def _serve(files: dict[str, str], port_queue: mp.Queue, stop: mp.Event) -> None:
    import asyncio

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files["server"], files["server_key"])
    context.load_verify_locations(files["ca"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.num_tickets = 0  # as the emulator's server context (emulator/runtime.py)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=context, backlog=1024)
        port_queue.put(server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.1)
        server.close()

    asyncio.run(main())


def measure(duration_s: float = 5.0, threads: int = 4) -> dict[str, float]:
    """Handshakes per second for `duration_s`, the client in this process, the server in another."""
    with tempfile.TemporaryDirectory() as tmp:
        files = write_pki(Path(tmp))
        ctx = mp.get_context("spawn")
        port_queue: mp.Queue = ctx.Queue()
        stop = ctx.Event()
        server = ctx.Process(target=_serve, args=(files, port_queue, stop), daemon=True)
        server.start()
        try:
            port = port_queue.get(timeout=30)
            client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client_ctx.load_verify_locations(files["ca"])
            client_ctx.load_cert_chain(files["client"], files["client_key"])
            counts = [0] * threads
            errors = [0] * threads
            deadline = time.perf_counter() + duration_s

            def worker(i: int) -> None:
                while time.perf_counter() < deadline:
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                                # TLS 1.3 finishes the client's handshake before the server checked the
                                # client certificate; one read waits for the server's verdict.
                                tls.recv(1)
                        counts[i] += 1
                    except (OSError, ssl.SSLError):
                        errors[i] += 1

            started = time.perf_counter()
            workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            server.join(timeout=5)
            if server.is_alive():
                server.kill()
    handshakes = sum(counts)
    per_s = handshakes / elapsed
    return {
        "handshakes": handshakes,
        "errors": sum(errors),
        "duration_s": round(elapsed, 3),
        "handshakes_per_s": round(per_s, 1),
        "device_ceiling_per_s": round(per_s / 2, 1),
    }


def run() -> dict[str, float]:
    return measure()


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    print()
