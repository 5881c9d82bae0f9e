"""Reading and validating a serial CSV one row at a time (a million rows never sit in memory)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from fleetctl.errors import FleetctlError, UsageError
from fleetctl.fingerprint import FINGERPRINT_COLUMN, normalise_fingerprint
from fleetctl.target import Settings

SERIAL_COLUMN = "serial"
BATCH_COLUMN = "batch"
ITEM_COLUMNS = (SERIAL_COLUMN, BATCH_COLUMN, FINGERPRINT_COLUMN)  # the rest are thing attributes
# AWS IoT thing attributes (API_AttributePayload): names and values.
ATTRIBUTE_NAME_RE = re.compile(r"[a-zA-Z0-9_.,@/:#-]{1,128}")
ATTRIBUTE_VALUE_RE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}")
# A batch is a template parameter the template stores as a thing attribute: the value rule, not empty.
BATCH_RE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]{1,128}")
RESERVED_NAMES = {"SerialNumber", "Batch", "AWS::IoT::Certificate::Id"}
MAX_ATTRIBUTES = 50  # AWS's limit per thing (with a thing type)


@dataclass(frozen=True)
class SerialRow:
    line: int
    serial: str
    batch: str | None
    attributes: dict[str, str] = field(default_factory=dict)
    public_key_sha256: str | None = None  # None: this row says nothing of the key, an existing one stays
    # A CSV row states batch and attributes (an empty cell clears them); a vendor manifest's row knows only
    # the key, and the batch when the operator gives one, so it leaves the rest of an item as it is.
    sets_batch: bool = True
    sets_attributes: bool = True


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


class SerialCsv:
    """One pass over the file per `rows()` call; the header is checked on open."""

    unit = "line"  # how errors name a row's position

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.settings = settings
        self.columns = self._header()
        self.attribute_columns = [c for c in self.columns if c not in ITEM_COLUMNS]

    def _open(self) -> TextIO:
        try:
            # utf-8-sig: spreadsheets often start the file with a byte-order mark.
            return self.path.open(newline="", encoding="utf-8-sig")
        except FileNotFoundError:
            raise UsageError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{self.path}: is a directory, not a CSV file") from None
        except OSError as exc:
            raise UsageError(f"{self.path}: {exc.strerror}") from None

    def _header(self) -> list[str]:
        with self._open() as handle:
            try:
                header = next(csv.reader(handle), None)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise FleetctlError(f"{self.path}: line 1: not a readable UTF-8 CSV header ({exc})") from None
        if not header:
            raise FleetctlError(
                f"{self.path}: line 1: empty file, expected a header row with a 'serial' column"
            )
        columns = [c.strip() for c in header]
        if SERIAL_COLUMN not in columns:
            raise FleetctlError(f"{self.path}: line 1: the header has no 'serial' column")
        seen: set[str] = set()
        for name in columns:
            if name in seen:
                raise FleetctlError(f"{self.path}: line 1: column {name!r} appears twice")
            seen.add(name)
            if name in ITEM_COLUMNS:
                continue
            if name in RESERVED_NAMES or name.lower() == BATCH_COLUMN:
                raise FleetctlError(f"{self.path}: line 1: column {name!r} is a reserved template parameter")
            if not ATTRIBUTE_NAME_RE.fullmatch(name):
                raise FleetctlError(
                    f"{self.path}: line 1: column {name[:60]!r} is not a thing attribute name "
                    f"(1-128 characters of a-z A-Z 0-9 _ . , @ / : # -)"
                )
        if len(columns) - len(set(ITEM_COLUMNS) & seen) > MAX_ATTRIBUTES:
            raise FleetctlError(f"{self.path}: line 1: more than {MAX_ATTRIBUTES} attribute columns")
        return columns

    def rows(self) -> Iterator[SerialRow | BadRow]:
        """Every data row, validated on its own (duplicates are the importer's business)."""
        with self._open() as handle:
            reader = csv.reader(handle)
            line = 1
            try:
                next(reader)
                for cells in reader:
                    line = reader.line_num
                    if not cells or all(not c.strip() for c in cells):
                        continue  # blank lines are not rows
                    yield self._row(line, cells)
            except csv.Error as exc:
                raise FleetctlError(f"{self.path}: line {reader.line_num}: unreadable CSV ({exc})") from None
            except UnicodeDecodeError:
                raise FleetctlError(f"{self.path}: after line {line}: the file is not UTF-8") from None

    def _row(self, line: int, cells: list[str]) -> SerialRow | BadRow:
        if len(cells) != len(self.columns):
            return BadRow(line, f"has {len(cells)} fields, the header has {len(self.columns)}")
        values = {name: cell.strip() for name, cell in zip(self.columns, cells, strict=True)}
        serial = values[SERIAL_COLUMN]
        problem = self.settings.serial_problem(serial)
        if problem:
            return BadRow(line, problem)
        batch = values.get(BATCH_COLUMN) or None
        if batch is not None and not BATCH_RE.fullmatch(batch):
            return BadRow(
                line, f"batch {batch[:80]!r} must be 1-128 characters of a-z A-Z 0-9 _ . , @ / : # = [ ] -"
            )
        fingerprint = None
        if values.get(FINGERPRINT_COLUMN):
            fingerprint, problem = normalise_fingerprint(values[FINGERPRINT_COLUMN])
            if problem:
                return BadRow(line, problem)
        attributes = {}
        for name in self.attribute_columns:
            value = values[name]
            if not value:
                continue  # empty cell: attribute not set, the template's default applies
            if not ATTRIBUTE_VALUE_RE.fullmatch(value):
                return BadRow(
                    line,
                    f"attribute {name} value {value[:80]!r} must be at most 800 characters "
                    f"of a-z A-Z 0-9 _ . , @ / : # = [ ] -",
                )
            attributes[name] = value
        return SerialRow(line, serial, batch, attributes, public_key_sha256=fingerprint)
