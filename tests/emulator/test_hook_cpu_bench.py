"""bench/hook_cpu.py measures what it says: one run with the library fast paths off and one with them on,
each a hook process set up as the emulator sets it up, every invocation allowed; a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import hook_cpu


def test_one_pair_runs_the_hook_with_the_fast_paths_off_then_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hook_cpu, "RESULTS", tmp_path / "hook_cpu.json")
    lines: list[str] = []
    result = hook_cpu.run(pairs=1, calls=5, progress=lines.append)
    assert [(r["mode"], r["fast_paths"]) for r in result["runs"]] == [
        ("off", {"moto": False, "botocore": False}),
        ("on", {"moto": True, "botocore": True}),
    ]
    assert all(r["allowed"] == 5 + hook_cpu.WARMUP and r["ms_per_call"] > 0 for r in result["runs"])
    off, on = (result["ms_per_call_median"][mode] for mode in ("off", "on"))
    assert result["ratio_median"] == pytest.approx(off / on, rel=0.01)
    assert json.loads((tmp_path / "hook_cpu.json").read_text()) == result
    assert len(lines) == 2 and "fast paths off" in lines[0]
    table = hook_cpu.table(result)
    assert table.splitlines()[-1].startswith("| median |") and f"{on:.2f}" in table
