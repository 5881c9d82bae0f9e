"""A hook injected in place of the stack's Lambda: `--hook tests.emulator.fault_hooks:hook`.
The serial number picks the fault: RAISE*, SLEEP* (6 s, past AWS's 5 s), DENY*; anything else is allowed."""

from __future__ import annotations

import time
from typing import Any


def hook(event: dict[str, Any]) -> dict[str, Any]:
    serial = event.get("parameters", {}).get("SerialNumber", "")
    if serial.startswith("RAISE"):
        raise RuntimeError("the hook crashed")
    if serial.startswith("SLEEP"):
        time.sleep(6)
        return {"allowProvisioning": True}
    if serial.startswith("DENY"):
        return {"allowProvisioning": False}
    return {"allowProvisioning": True, "parameterOverrides": {"Batch": "fault-suite"}}


def linger(event: dict[str, Any]) -> dict[str, Any]:
    """A hook that keeps its thread busy for a minute (shutdown must not wait for it)."""
    time.sleep(60)
    return {"allowProvisioning": True}
