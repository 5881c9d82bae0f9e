"""`registry import`: validate the whole file first, then write in batches; two streaming passes.

Pass 1 validates every row and finds duplicate serials and duplicate device-key fingerprints through an
on-disk SQLite index, so memory stays flat however long the file is. Pass 2 reads the file again and
writes chunk by chunk. A CSV file and a vendor manifest are both row sources (`RowSource`).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fleetctl.errors import FleetctlError
from fleetctl.registry_store import AVAILABLE, RegistryStore
from fleetctl.serial_csv import BadRow, SerialRow

CHUNK = 100  # one BatchGetItem
MAX_LISTED_BAD_ROWS = 1000  # kept for the report; the count is always exact

Progress = Callable[[int], None]


class RowSource(Protocol):
    path: Path
    unit: str  # "line" of a CSV, "entry" of a manifest
    attribute_columns: list[str]

    def rows(self) -> Iterator[SerialRow | BadRow]:
        """Every row, validated on its own; one full pass per call."""
        ...


@dataclass
class ImportReport:
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0  # data differs but the serial is RESERVED/REVOKED: never clobbered
    bad_rows: list[BadRow] = field(default_factory=list)
    kept_serials: list[str] = field(default_factory=list)
    unknown_attribute_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "kept": self.kept,
            "bad_rows": [{"line": b.line, "reason": b.reason} for b in self.bad_rows],
            "kept_serials": self.kept_serials,
            "unknown_attribute_columns": self.unknown_attribute_columns,
        }


class _SerialIndex:
    """serial -> first valid line, and device-key fingerprint -> that line, on disk."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("CREATE TABLE seen (serial TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
        db.execute("CREATE TABLE keys (fingerprint TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def add(self, row: SerialRow, unit: str) -> str | None:
        """Record the row's serial and key; or say what repeats an earlier row (then nothing is kept)."""
        earlier = self.first_line(row.serial)
        if earlier is not None:
            return f"serial {row.serial!r} repeats {unit} {earlier}"
        if row.public_key_sha256 is not None:
            found = self.db.execute(
                "SELECT line FROM keys WHERE fingerprint = ?", (row.public_key_sha256,)
            ).fetchone()
            if found is not None:
                # One key, two serials: whoever holds the key could provision either.
                return f"public_key_sha256 repeats {unit} {found[0]}: two serials cannot share one device key"
            self.db.execute("INSERT INTO keys VALUES (?, ?)", (row.public_key_sha256, row.line))
        self.db.execute("INSERT INTO seen VALUES (?, ?)", (row.serial, row.line))
        return None

    def first_line(self, serial: str) -> int | None:
        row = self.db.execute("SELECT line FROM seen WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else int(row[0])


@contextmanager
def _serial_index() -> Iterator[_SerialIndex]:
    with tempfile.TemporaryDirectory(prefix="fleetctl-import-") as tmp:
        db = sqlite3.connect(Path(tmp) / "serials.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute("BEGIN")
            yield _SerialIndex(db)
        finally:
            db.close()


def validate(source: RowSource, index: _SerialIndex, report: ImportReport, progress: Progress) -> None:
    """Pass 1: every row checked, duplicates found; bad rows counted (the first 1000 kept)."""
    for row in source.rows():
        report.rows += 1
        if isinstance(row, SerialRow):
            repeated = index.add(row, source.unit)
            if repeated is not None:
                row = BadRow(row.line, repeated)
        if isinstance(row, BadRow):
            report.invalid += 1
            if len(report.bad_rows) < MAX_LISTED_BAD_ROWS:
                report.bad_rows.append(row)
        else:
            report.valid += 1
        progress(1)


def write(
    source: RowSource, index: _SerialIndex, store: RegistryStore, report: ImportReport, progress: Progress
) -> None:
    """Pass 2: the valid rows (first occurrence of each serial), 100 at a time."""
    chunk: list[SerialRow] = []
    for row in source.rows():
        if isinstance(row, SerialRow) and index.first_line(row.serial) == row.line:
            chunk.append(row)
            if len(chunk) == CHUNK:
                _write_chunk(chunk, store, report)
                progress(len(chunk))
                chunk = []
    if chunk:
        _write_chunk(chunk, store, report)
        progress(len(chunk))


def _write_chunk(chunk: list[SerialRow], store: RegistryStore, report: ImportReport) -> None:
    existing = store.existing([row.serial for row in chunk])
    new = []
    for row in chunk:
        current = existing.get(row.serial)
        if current is None:
            new.append(row)
        elif current.same_data(row):
            report.unchanged += 1
        elif current.status == AVAILABLE and store.update_available(row):
            report.updated += 1
        else:
            report.kept += 1
            if len(report.kept_serials) < MAX_LISTED_BAD_ROWS:
                report.kept_serials.append(row.serial)
    store.put_new(new)
    report.new += len(new)


def import_serials(
    source: RowSource,
    store: RegistryStore,
    *,
    skip_invalid: bool,
    known_attributes: tuple[str, ...],
    on_validate: Progress,
    on_write: Progress,
    before_write: Callable[[int], None],
) -> ImportReport:
    report = ImportReport(
        unknown_attribute_columns=[c for c in source.attribute_columns if c not in known_attributes]
    )
    with _serial_index() as index:
        validate(source, index, report, on_validate)
        if report.invalid and not skip_invalid:
            first = report.bad_rows[0]
            more = f" ({report.invalid} bad {plural(source.unit)} in all)" if report.invalid > 1 else ""
            raise FleetctlError(
                f"{source.path}: {source.unit} {first.line}: {first.reason}{more}; nothing was written "
                f"(--skip-invalid imports the good {plural(source.unit)})"
            )
        before_write(report.valid)
        write(source, index, store, report, on_write)
    return report


def plural(unit: str) -> str:
    return "entries" if unit == "entry" else unit + "s"
