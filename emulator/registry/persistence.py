"""`--persist`: the emulator's state in one file of the state directory, which survives a restart.

What is saved: moto's IoT backend (things, certificates, policies, attachments, groups, types...),
the DynamoDB serial table (held by the hook process in `--hook-isolation process`), the ownership
tokens with their expiry, the temporary provisioning claims, and the provisioning templates with their
versions. The CA and the claim credentials are files of the state directory already.

Format: a pickle of moto's own objects (as LocalStack persists moto), readable only by the same moto
version, which pyproject.toml pins; the file records it and a mismatch is one clear error. A pickle
runs code when loaded: the file is the user's own (mode 0600 in their state directory), as are the CA
key and the claim keys beside it.

When: every `interval_s` (1 s by default) if anything may have changed, and once more on shutdown.
Saving on every change would pickle the whole registry per request, an O(fleet) cost per device
(docs/emulator.md, "Performance"): a snapshot of 10,000 provisioned devices takes ~170 ms under the
registry's lock (12 MB). So the wait between saves is also at least 10x the last save's duration,
which keeps the lock free >= 90 % of the time however large the fleet. A crash loses at most the
changes since the last save: the file is written to a temporary name, flushed to disk, then renamed
over the old one, so a crash mid-write leaves the previous state whole.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

log = logging.getLogger("emulator.persist")

STATE_FILE = "emulator-state.pickle"
FORMAT = 1
_BACKEND_IDENTITY = ("region_name", "account_id", "partition")


class PersistError(Exception):
    """The saved state cannot be used; the message says why and what to do."""


def moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


def backend_data(backend: Any) -> dict[str, Any]:
    """A moto backend's state: its data attributes, as plain containers (the emulator's indexes and
    method overrides on the instance are rebuilt on load, not saved)."""
    data = {}
    for name, value in vars(backend).items():
        if name in _BACKEND_IDENTITY or callable(value):
            continue
        data[name] = dict(value) if type(value).__name__ == "PairIndex" else value
    return data


def restore_backend(backend: Any, data: dict[str, Any]) -> None:
    for name, value in data.items():
        setattr(backend, name, value)


class StateFile:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE

    def load(self) -> dict[str, Any] | None:
        """The saved sections, or None when nothing was saved."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = pickle.loads(blob)  # noqa: S301 - the user's own file, mode 0600 (see above)
        except Exception as exc:
            raise PersistError(
                f"{self.path} cannot be read ({type(exc).__name__}): move it away to start fresh"
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise PersistError(
                f"{self.path} is not a state file of this emulator: move it away to start fresh"
            )
        if state.get("moto") != moto_version():
            raise PersistError(
                f"{self.path} was saved with moto {state.get('moto')}, this emulator runs moto "
                f"{moto_version()}: move it away to start fresh"
            )
        return dict(state["sections"])

    def save(self, sections: dict[str, Any]) -> None:
        blob = pickle.dumps(
            {"format": FORMAT, "moto": moto_version(), "saved_at": time.time(), "sections": sections},
            pickle.HIGHEST_PROTOCOL,
        )
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        # The rename itself reaches the disk with the directory's entry.
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class PeriodicSaver:
    """Saves `collect()` every `interval_s` when `version()` changed since the last save, and on `stop()`."""

    def __init__(
        self,
        state_file: StateFile,
        collect: Callable[[], dict[str, Any]],
        version: Callable[[], Hashable],
        interval_s: float = 1.0,
    ) -> None:
        self._file = state_file
        self._collect = collect
        self._version = version
        self._interval_s = interval_s
        self._saved: Hashable = None
        self._last_duration_s = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)
        self.saves = 0
        self.finished = threading.Event()  # set once the last save on stop() is done (or failed)

    def start(self) -> None:
        self._thread.start()

    def save(self, force: bool = False) -> bool:
        """Save now if anything changed (or `force`); True if it wrote the file."""
        with self._lock:
            # The version is read before collecting: a change made while collecting triggers the next save.
            version = self._version()
            if not force and version == self._saved:
                return False
            started = time.perf_counter()
            self._file.save(self._collect())
            self._saved = version
            self.saves += 1
            self._last_duration_s = time.perf_counter() - started
            log.debug("state saved in %.0f ms", self._last_duration_s * 1000)
            return True

    def _run(self) -> None:
        while not self._stopping.wait(max(self._interval_s, 10 * self._last_duration_s)):
            try:
                self.save()
            except Exception:
                log.exception("saving the state to %s failed; the previous save is intact", self._file.path)

    def stop(self) -> None:
        """The last save, with everything the emulator did up to now."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)
        try:
            self.save()
            log.info("state saved to %s", self._file.path)
        except Exception:
            log.exception("saving the state to %s failed; the previous save is intact", self._file.path)
        finally:
            self.finished.set()
