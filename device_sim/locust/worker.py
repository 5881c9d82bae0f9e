"""A worker's side of a Locust run: serials asked of the master, statistics and errors sent back to it.

A worker asks the master for as many serials as it has users waiting; once the master says the pool is used
up and the worker's last device has finished, it sends its final statistics marked `drained`. When Locust
stops it (the run ended, or Ctrl-C/SIGTERM reached the master), it sends them once more before it reports
itself stopped, so the master's report has every device. Imported only by the locustfile: it needs gevent.
"""

from __future__ import annotations

import collections
from typing import Any

from gevent.event import Event

from device_sim.locust.coordinator import MSG_REQUEST, MSG_STATS
from device_sim.locust.devices import DeviceDriver


class RemoteSerials:
    """Serials from the master, a few at a time."""

    def __init__(self, runner: Any, driver: DeviceDriver) -> None:
        self.runner = runner
        self.driver = driver
        self.queue: collections.deque[str] = collections.deque()
        self.exhausted = False
        self.asked = False
        self.waiting = 0
        self.arrived = Event()
        self.drained_sent = False

    def take(self) -> str | None:
        while True:
            if self.queue:
                return self.queue.popleft()
            if self.exhausted:
                self.maybe_drained()
                return None
            self.waiting += 1
            try:
                if not self.asked:
                    self.asked = True
                    self.arrived.clear()
                    self.runner.send_message(MSG_REQUEST, {"want": self.waiting})
                self.arrived.wait()
            finally:
                self.waiting -= 1

    def on_serials(self, environment: Any, msg: Any, **_: Any) -> None:
        self.queue.extend(msg.data["serials"])
        self.exhausted = bool(msg.data["exhausted"])
        self.asked = False
        self.arrived.set()

    def device_done(self) -> None:
        self.maybe_drained()

    def maybe_drained(self) -> None:
        if self.exhausted and not self.queue and self.driver.in_flight == 0 and not self.drained_sent:
            self.drained_sent = True
            self.send_stats(drained=True)

    def send_stats(self, *, drained: bool = False) -> None:
        self.runner.send_message(MSG_STATS, {"snapshot": self.driver.snapshot(), "drained": drained})
