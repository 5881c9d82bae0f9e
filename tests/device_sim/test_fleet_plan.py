from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_sim.errors import UserError
from device_sim.fleet import GeneratedSerials, Shard, arrival_offsets, read_serials


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=64))
def test_shards_partition_the_serials_exactly(total: int, count: int) -> None:
    serials = [f"S{i}" for i in range(total)]
    slices = [Shard(i, count).take(serials) for i in range(1, count + 1)]
    assert [s for part in slices for s in part] == serials
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_shard_slices_generated_serials_without_materialising_them() -> None:
    serials = GeneratedSerials("SIM-", 10_000)
    part = Shard.parse("2/4").take(serials)
    assert len(part) == 2500
    assert part[0] == "SIM-002500" and part[-1] == "SIM-004999"
    assert list(Shard.parse("4/4").take(GeneratedSerials("X", 10)))[-1] == "X000009"


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b", "1", "1/2/3", "-1/2"])
def test_bad_shards_are_one_line_errors(text: str) -> None:
    with pytest.raises(UserError, match="--shard"):
        Shard.parse(text)


def test_serials_file_plain_csv_and_comments(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("# factory line A\nA001\n\nA002\n")
    assert read_serials(plain) == ["A001", "A002"]
    csv = tmp_path / "batch.csv"
    csv.write_text("batch,serial,model\nb1,C-1,m\nb1,C-2,m\n")
    assert read_serials(csv) == ["C-1", "C-2"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(UserError, match="holds no serials"):
        read_serials(empty)
    with pytest.raises(UserError, match="cannot read"):
        read_serials(tmp_path / "missing.txt")


def test_arrivals_all_at_once_without_a_rate() -> None:
    assert list(arrival_offsets(3, None)) == [0.0, 0.0, 0.0]


def test_arrivals_at_a_steady_rate() -> None:
    assert list(arrival_offsets(5, 10.0)) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_arrivals_ramp_linearly_then_hold_the_rate() -> None:
    offsets = list(arrival_offsets(400, 20.0, ramp_s=10.0))  # 100 devices arrive during the ramp
    assert offsets == sorted(offsets)
    assert sum(1 for t in offsets if t < 5.0) == pytest.approx(25, abs=1)  # N(5) = 20*25/20 = 25
    assert sum(1 for t in offsets if t < 10.0) == pytest.approx(100, abs=1)
    after = [t for t in offsets if t >= 10.0]
    gaps = {round(b - a, 9) for a, b in zip(after, after[1:], strict=False)}
    assert gaps == {0.05}
