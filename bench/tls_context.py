"""The simulator's cost of one device's TLS context: awscrt's client context for a device certificate,
with the system trust store as the machine has it, and as `device_sim.transport.Transport` sets it up
(SSL_CERT_FILE at the target's CA file, which every context then trusts alone).

awscrt 0.36's s2n backend parses the system CA bundle into every new context and then wipes it for
`override_default_trust_store`; each simulated device builds one such context for its reconnect. The two
settings run in alternating rounds in this process, so they compare as a ratio on the same machine state.
`run()` returns the results and writes bench/results/tls_context.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.tls_ceiling import write_pki

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "tls_context.json"
ROUNDS = 5
CONTEXTS_PER_ROUND = 40


def _cpu_ms_per_context(cert: bytes, key: bytes, ca: bytes) -> float:
    from awscrt import io as crt_io

    started = time.thread_time()
    for _ in range(CONTEXTS_PER_ROUND):
        options = crt_io.TlsContextOptions.create_client_with_mtls(cert, key)
        options.override_default_trust_store(ca)
        crt_io.ClientTlsContext(options)
    return (time.thread_time() - started) * 1000 / CONTEXTS_PER_ROUND


def run() -> dict[str, Any]:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from device_sim.transport import _load_only_the_ca_as_system_trust

    saved = os.environ.get("SSL_CERT_FILE")
    samples: dict[str, list[float]] = {"system_store": [], "ca_file_only": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tls-context-") as tmp:
            files = write_pki(Path(tmp))  # the client certificate stands for a device's
            ca_file = Path(files["ca"])
            cert, key = Path(files["client"]).read_bytes(), Path(files["client_key"]).read_bytes()
            ca = ca_file.read_bytes()
            for _ in range(ROUNDS):
                if saved is None:
                    os.environ.pop("SSL_CERT_FILE", None)
                else:
                    os.environ["SSL_CERT_FILE"] = saved
                samples["system_store"].append(_cpu_ms_per_context(cert, key, ca))
                _load_only_the_ca_as_system_trust(ca_file)  # what Transport does
                samples["ca_file_only"].append(_cpu_ms_per_context(cert, key, ca))
    finally:
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved
    system = statistics.median(samples["system_store"])
    ca_only = statistics.median(samples["ca_file_only"])
    result = {
        "benchmark": "device_tls_context",
        "system_store": saved or "the default bundle (SSL_CERT_FILE unset)",
        "contexts": ROUNDS * CONTEXTS_PER_ROUND,
        "cpu_ms_per_context": {"system_store": round(system, 3), "ca_file_only": round(ca_only, 3)},
        "ratio": round(system / ca_only, 1) if ca_only else None,
        "rounds_ms": {name: [round(v, 3) for v in values] for name, values in samples.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
