"""The emulator's memory per held connection, at each stage a connection can be held in: accepted TCP that
never starts TLS, TLS done without a CONNECT, CONNECT done (a claim connection, idle). `python -m emulator
up` in its own process, a fresh one per stage; its resident set (/proc VmRSS) before, while N connections
are held, and a few seconds after they closed. Each stage is warmed up first (50 connections opened and
closed), so that what the first connections allocate once is not counted per connection.

`run()` returns the result and writes bench/results/connection_memory.json;
`python -m bench.connection_memory [CHECKOUT]` measures another copy of the repository (an older commit).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from bench.stack import REPO_ROOT, Emulator, start_emulator, synthesize, workdir

RESULTS = REPO_ROOT / "bench" / "results" / "connection_memory.json"
# TLS done without CONNECT: at most `connecting` (256) handshakes are under way at once; more would wait,
# unstarted, among the idle ones.
STAGES = {"idle_tcp": 1000, "tls_done": 200, "connect_done": 1000}
WARM_UP = 50
SETTLE_S = 3.0  # the emulator gives freed memory back 1 s after a burst of closes (emulator/mqtt/heap.py)


def rss_mb(emulator: Emulator) -> float:
    for line in Path(f"/proc/{emulator.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _context(endpoint: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=endpoint["ca_file"])
    context.load_cert_chain(endpoint["claim_cert_file"], endpoint["claim_key_file"])
    return context


def _connect_packet(client_id: str) -> bytes:
    raw = client_id.encode()
    body = (
        b"\x00\x04MQTT\x04\x02\x04\xb0" + len(raw).to_bytes(2, "big") + raw
    )  # 3.1.1, clean, keep-alive 1200
    return bytes([0x10, len(body)]) + body


async def _open(endpoint: dict[str, Any], stage: str, count: int, tag: str) -> list[Any]:
    host, port = endpoint["host"], endpoint["port"]
    if stage == "idle_tcp":
        return [socket.create_connection((host, port)) for _ in range(count)]
    context, limit = _context(endpoint), asyncio.Semaphore(50)

    async def one(i: int) -> asyncio.StreamWriter:
        async with limit:
            reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
            if stage == "connect_done":
                writer.write(_connect_packet(f"prov-mem-{tag}-{i}"))
                await writer.drain()
                assert (await reader.readexactly(4))[3] == 0, "CONNACK refused"
            return writer

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _steady_rss(emulator: Emulator) -> float:
    """The RSS once the emulator has taken in what was opened (accepting 1,000 sockets takes a while when
    each gets TLS state at accept): the highest of samples 0.25 s apart, once two agree within 0.5 MB."""
    samples = [rss_mb(emulator)]
    for _ in range(20):
        await asyncio.sleep(0.25)
        samples.append(rss_mb(emulator))
        if len(samples) > 4 and abs(samples[-1] - samples[-2]) < 0.5:
            break
    return max(samples)


def _close(held: list[Any]) -> None:
    for item in held:
        if isinstance(item, socket.socket):
            item.close()
        else:
            item.transport.abort()


def measure_stage(emulator: Emulator, stage: str, count: int) -> dict[str, Any]:
    endpoint = emulator.endpoint

    async def hold() -> tuple[float, float]:
        _close(await _open(endpoint, stage, WARM_UP, f"warm-{stage}"))
        await asyncio.sleep(SETTLE_S)
        before = rss_mb(emulator)
        held = await _open(endpoint, stage, count, stage)
        during = await _steady_rss(emulator)
        _close(held)
        return before, during

    before, during = asyncio.run(hold())
    time.sleep(SETTLE_S)
    after = rss_mb(emulator)
    return {
        "connections": count,
        "rss_before_mb": round(before, 1),
        "rss_held_mb": round(during, 1),
        "rss_after_mb": round(after, 1),
        "kb_per_connection": round((during - before) * 1024 / count, 1),
        "retained_after_close_mb": round(after - before, 1),
    }


def run(assembly: Path | None = None, checkout: Path | None = None) -> dict[str, Any]:
    with workdir() as tmp:
        scratch = Path(tmp)
        assembly = assembly or synthesize(scratch)
        stages = {}
        for stage, count in STAGES.items():  # a fresh emulator each: no stage reuses another's heap
            emulator = start_emulator(assembly, scratch / f"state-{stage}", checkout=checkout)
            try:
                stages[stage] = measure_stage(emulator, stage, count)
            finally:
                emulator.stop()
    result = {"benchmark": "connection_memory", "stages": stages, "checkout": str(checkout or REPO_ROOT)}
    if checkout is None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(checkout=Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None), indent=2))
