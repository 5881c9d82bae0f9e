"""AWS IoT's rate throttles (`--limits aws`): a token bucket, and one bucket per key with bounded memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """`rate` events per second with a burst of one second's worth (at least one)."""

    __slots__ = ("rate", "capacity", "tokens", "stamp", "clock")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class PerKeyInterval:
    """At most one event per key every `1 / rate` seconds (AWS's CONNECT per client id). Keys older than the
    interval are forgotten as new ones arrive, so memory follows the event rate, not the number of keys."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()  # oldest first

    def allow(self, key: str) -> bool:
        now = self.clock()
        while self._last:
            oldest_key, oldest = next(iter(self._last.items()))
            if now - oldest < self.interval:
                break
            del self._last[oldest_key]
        if key in self._last:
            return False
        self._last[key] = now
        return True
