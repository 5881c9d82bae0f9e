from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from device_sim.demo import Demo


def test_the_demo_shows_the_hooks_reason_for_each_rejection(tmp_path: Path) -> None:
    log = [
        "2026-11-23 09:43:19,393 INFO emulator listening",
        json.dumps(
            {"message": "provisioning decision", "decision": "allow", "reason": "ALLOWED_NEW", "serial": "A1"}
        ),
        json.dumps(
            {
                "message": "provisioning decision",
                "decision": "deny",
                "reason": "UNKNOWN_SERIAL",
                "serial": "X1",
            }
        ),
        json.dumps(
            {"message": "provisioning decision", "decision": "deny", "reason": "TAKEN", "serial": "A1"}
        ),
        '{"broken json',
    ]
    (tmp_path / "emulator.log").write_text("\n".join(log) + "\n")
    out = io.StringIO()
    demo = Demo(tmp_path, tmp_path / "reports", 1, Console(file=out, width=120))
    demo.hook_decisions(["X1", "A1", "never-seen"])
    text = out.getvalue()
    assert "UNKNOWN_SERIAL" in text and "TAKEN" in text
    assert "ALLOWED_NEW" not in text and "never-seen" not in text
