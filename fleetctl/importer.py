"""`registry import`: validate the whole file first, then write in batches; two streaming passes.

Pass 1 validates every row and finds duplicate serials through an on-disk SQLite index, so memory
stays flat however long the file is. Pass 2 reads the file again and writes chunk by chunk.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fleetctl.errors import FleetctlError
from fleetctl.registry_store import AVAILABLE, RegistryStore
from fleetctl.serial_csv import BadRow, SerialCsv, SerialRow

CHUNK = 100  # one BatchGetItem
MAX_LISTED_BAD_ROWS = 1000  # kept for the report; the count is always exact

Progress = Callable[[int], None]


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
    """serial -> first valid line, on disk."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("CREATE TABLE seen (serial TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def add(self, serial: str, line: int) -> int | None:
        """Record the serial; the earlier line if it was already there."""
        if self.db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (serial, line)).rowcount:
            return None
        return int(self.db.execute("SELECT line FROM seen WHERE serial = ?", (serial,)).fetchone()[0])

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


def validate(csv_file: SerialCsv, index: _SerialIndex, report: ImportReport, progress: Progress) -> None:
    """Pass 1: every row checked, duplicates found; bad rows counted (the first 1000 kept)."""
    for row in csv_file.rows():
        report.rows += 1
        if isinstance(row, SerialRow):
            earlier = index.add(row.serial, row.line)
            if earlier is not None:
                row = BadRow(row.line, f"serial {row.serial!r} repeats line {earlier}")
        if isinstance(row, BadRow):
            report.invalid += 1
            if len(report.bad_rows) < MAX_LISTED_BAD_ROWS:
                report.bad_rows.append(row)
        else:
            report.valid += 1
        progress(1)


def write(
    csv_file: SerialCsv, index: _SerialIndex, store: RegistryStore, report: ImportReport, progress: Progress
) -> None:
    """Pass 2: the valid rows (first occurrence of each serial), 100 at a time."""
    chunk: list[SerialRow] = []
    for row in csv_file.rows():
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
    csv_file: SerialCsv,
    store: RegistryStore,
    *,
    skip_invalid: bool,
    known_attributes: tuple[str, ...],
    on_validate: Progress,
    on_write: Progress,
    before_write: Callable[[int], None],
) -> ImportReport:
    report = ImportReport(
        unknown_attribute_columns=[c for c in csv_file.attribute_columns if c not in known_attributes]
    )
    with _serial_index() as index:
        validate(csv_file, index, report, on_validate)
        if report.invalid and not skip_invalid:
            first = report.bad_rows[0]
            more = f" ({report.invalid} bad rows in all)" if report.invalid > 1 else ""
            raise FleetctlError(
                f"{csv_file.path}: line {first.line}: {first.reason}{more}; nothing was written "
                f"(--skip-invalid imports the good rows)"
            )
        before_write(report.valid)
        write(csv_file, index, store, report, on_write)
    return report
