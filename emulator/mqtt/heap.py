"""Memory freed by connections that ended, given back to the system once a burst of them is over.

glibc keeps what Python frees in its arenas for reuse; after thousands of connections close, the process
keeps its peak size although nothing uses that memory. `malloc_trim(0)` returns the free pages of every
arena. It walks the heap and holds each arena's lock while it does, so it runs on a worker thread and only
after a burst: once at least `burst` connections ended since the last trim, `settle_s` after the last of
them (a steady flow of devices, which reuses the memory it frees, never triggers it). A no-op where the C
library has no malloc_trim (macOS, musl).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("emulator.mqtt")


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


MALLOC_TRIM = _malloc_trim()


def trim_now() -> bool:
    """Give free heap memory back to the system now; False where that is not possible."""
    if MALLOC_TRIM is None:
        return False
    MALLOC_TRIM(0)
    return True


class HeapTrimmer:
    def __init__(self, burst: int = 100, settle_s: float = 1.0) -> None:
        self.burst = burst
        self.settle_s = settle_s
        self.closed_since_trim = 0
        self.trims = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running = False

    def connection_closed(self, weight: int = 1) -> None:
        """A connection ended (`weight` > 1: it held more than a connection's worth, a slow reader's
        buffer say). Called on the event loop."""
        self.closed_since_trim += weight
        if MALLOC_TRIM is None or self.closed_since_trim < self.burst:
            return
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self.settle_s, self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._running:
            return
        self._running = True
        self.closed_since_trim = 0
        future = loop.run_in_executor(None, trim_now)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[bool]) -> None:
        self._running = False
        self.trims += 1
        if future.exception() is not None:
            log.debug("malloc_trim failed", exc_info=future.exception())
