"""One timer per connection for both of its read deadlines: the keep-alive between packets and the
packet read deadline within one.

`asyncio.timeout(...).reschedule()` twice per packet cancelled one timer and scheduled another on every
packet (two heap pushes, two handles, and the cancelled ones left in the loop's heap until they surfaced).
Here a packet only writes down when its phase began; the one timer is moved only when a deadline comes
*earlier* than the time it is set for (the first packet after an idle spell, or a keep-alive shorter than the
packet deadline). When it fires it checks the phase it finds: if the deadline has moved on it sets itself for
the new one, otherwise it cancels the connection's task, exactly as `asyncio.timeout` did, at the same time.
"""

from __future__ import annotations

import asyncio


class Watchdog:
    """The deadlines of one connection's packet loop. `idle()` before waiting for a packet's first byte,
    `packet_started()` once it came, `pause()` while the broker does not read (no deadline then)."""

    __slots__ = ("_loop", "_task", "_idle_s", "_packet_s", "_since", "_handle", "_armed_at", "within_packet",
                 "_paused", "expired")  # fmt: skip

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[object],
        idle_s: float | None,
        packet_s: float,
    ) -> None:
        self._loop = loop
        self._task = task
        self._idle_s = idle_s  # None: no keep-alive (MQTT keep-alive 0 where the limits allow it)
        self._packet_s = packet_s
        self._since = loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self.within_packet = False
        self._paused = False
        self.expired = False  # the timer cancelled the task: the caller turns that into its time-out

    def _deadline(self) -> float | None:
        if self._paused:
            return None
        if self.within_packet:
            return self._since + self._packet_s
        return None if self._idle_s is None else self._since + self._idle_s

    def _check(self) -> None:
        deadline = self._deadline()
        if deadline is not None and (self._handle is None or deadline < self._armed_at):
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        deadline = self._deadline()
        if deadline is None:
            return  # paused, or no keep-alive: set again by the next phase that has a deadline
        if deadline > self._armed_at:
            self._arm(deadline)  # the connection moved on since this was set
            return
        self.expired = True
        self._task.cancel()

    def idle(self) -> None:
        self.within_packet = False
        self._paused = False
        self._since = self._loop.time()
        self._check()

    def packet_started(self) -> None:
        self.within_packet = True
        self._since = self._loop.time()
        self._check()

    def pause(self) -> None:
        self._paused = True  # lazily: the timer, if it fires, finds no deadline and stops

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
