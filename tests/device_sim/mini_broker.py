"""A minimal mTLS MQTT endpoint, in MQTT 3.1.1 or MQTT 5 as the client asks: just enough to accept a
CONNECT, acknowledge QoS 1 publishes and subscriptions, and answer with the refusal a test scripts.

It records the client ids, the protocol level of each CONNECT, the publish topics it saw and the subject
CN of each client certificate. What it answers:
- `connack`: the CONNACK return code (3.1.1) or reason code (5), for every CONNECT;
- `suback`: the code of every granted filter (default QoS 1), or a refusal (3.1.1 `0x80`, 5 `0x87`...);
- `on_publish`: None (PUBACK), `("puback", code)` (MQTT 5 PUBACK with that reason code), `("disconnect",
  code)` (MQTT 5: DISCONNECT with that reason code; 3.1.1: the connection closed) or `("close", 0)`.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from tests.device_sim.pki import Authority, cert_pem, key_pem

PublishAnswer = tuple[str, int] | None


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """MQTT's variable byte integer at AT: (value, the index after it)."""
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _packet(header: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([header]) + bytes(encoded) + body


class MiniBroker:
    def __init__(
        self,
        directory: Path,
        authority: Authority,
        connack: int = 0,
        *,
        suback: int = 1,
        on_publish: PublishAnswer = None,
    ) -> None:
        key, cert = authority.issue("localhost", server=True)
        assert key is not None
        (directory / "server.pem").write_bytes(cert_pem(cert))
        (directory / "server.key").write_bytes(key_pem(key))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "server.pem", directory / "server.key")
        self.context.verify_mode = ssl.CERT_REQUIRED
        (directory / "server-ca.pem").write_bytes(cert_pem(authority.cert))
        self.context.load_verify_locations(directory / "server-ca.pem")
        self.connack, self.suback, self.on_publish = connack, suback, on_publish
        self.client_ids: list[str] = []
        self.levels: list[int] = []  # 4: MQTT 3.1.1, 5: MQTT 5
        self.client_cns: list[str] = []
        self.published: list[tuple[str, bytes]] = []
        self.subscribed: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(raw,), daemon=True).start()

    def _session(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                peer = tls.getpeercert()
                cn = dict(x[0] for x in peer["subject"]).get("commonName", "") if peer else ""
                level = 4  # until the CONNECT says
                while True:
                    header = tls.recv(1)
                    if not header:
                        return
                    length, shift = 0, 0
                    while True:
                        byte = tls.recv(1)[0]
                        length |= (byte & 0x7F) << shift
                        shift += 7
                        if not byte & 0x80:
                            break
                    body = b""
                    while len(body) < length:
                        chunk = tls.recv(length - len(body))
                        if not chunk:
                            return
                        body += chunk
                    if header[0] >> 4 == 1:
                        level = body[2 + int.from_bytes(body[0:2], "big")]
                    answer, keep_open = self._answer(header[0], body, level, cn)
                    tls.sendall(answer)
                    if not keep_open:
                        return
        except (OSError, ssl.SSLError, IndexError):
            return

    def _answer(self, header: int, body: bytes, level: int, cn: str) -> tuple[bytes, bool]:
        """What to send back (maybe nothing), and whether the connection stays open after it."""
        kind = header >> 4
        if kind == 1:  # CONNECT: protocol name, level, flags, keep-alive, [properties,] client id
            at = 2 + int.from_bytes(body[0:2], "big") + 4
            if level == 5:
                properties, at = _varint(body, at)
                at += properties
            id_len = int.from_bytes(body[at : at + 2], "big")
            self.client_ids.append(body[at + 2 : at + 2 + id_len].decode())
            self.levels.append(level)
            self.client_cns.append(cn)
            connack = _packet(0x20, bytes([0, self.connack, 0]) if level == 5 else bytes([0, self.connack]))
            return connack, self.connack == 0  # a refusing CONNACK closes the connection
        if kind == 3:  # PUBLISH: topic, [packet id,] [properties,] payload
            topic_len = int.from_bytes(body[0:2], "big")
            topic = body[2 : 2 + topic_len].decode()
            qos = (header >> 1) & 3
            at = 2 + topic_len
            packet_id = b""
            if qos:
                packet_id, at = body[at : at + 2], at + 2
            if level == 5:
                properties, at = _varint(body, at)
                at += properties
            self.published.append((topic, body[at:]))  # before the PUBACK: the test reads it after
            if self.on_publish is not None:
                what, code = self.on_publish
                if what == "puback" and level == 5:
                    return _packet(0x40, packet_id + bytes([code, 0])), True
                if what == "disconnect" and level == 5:
                    return _packet(0xE0, bytes([code, 0])), False
                return b"", False  # 3.1.1 has no refusal but the hang-up
            return (_packet(0x40, packet_id) if qos else b""), True
        if kind == 8:  # SUBSCRIBE: packet id, [properties,] (filter, options)*
            packet_id, at = body[0:2], 2
            if level == 5:
                properties, at = _varint(body, at)
                at += properties
            codes = bytearray()
            while at < len(body):
                filter_len = int.from_bytes(body[at : at + 2], "big")
                self.subscribed.append(body[at + 2 : at + 2 + filter_len].decode())
                at += 2 + filter_len + 1
                codes.append(self.suback)
            return _packet(0x90, packet_id + (b"\0" if level == 5 else b"") + bytes(codes)), True
        if kind == 10:  # UNSUBSCRIBE: packet id, [properties,] filter*; MQTT 5 answers a code for each
            if level != 5:
                return _packet(0xB0, body[0:2]), True
            properties, at = _varint(body, 2)
            at += properties
            count = 0
            while at < len(body):
                at += 2 + int.from_bytes(body[at : at + 2], "big")
                count += 1
            return _packet(0xB0, body[0:2] + b"\0" + bytes(count)), True
        if kind == 12:  # PINGREQ
            return bytes([0xD0, 0]), True
        return b"", kind != 14  # DISCONNECT: the client leaves
