"""The asyncio bridge: Locust's greenlets hand the project's asyncio flow to one real OS thread per process.

awscrt completes its futures on its own native threads and the device flow is asyncio. `asyncio.run` inside a
greenlet breaks as soon as a process has two users: every greenlet shares one OS thread, and one OS thread can
run one event loop at a time. So each process gets one OS thread (started with the original, unpatched
`_thread.start_new_thread`, since Locust monkey-patches `threading` into greenlets) running one event loop.
Work goes in with `call_soon_threadsafe`; the answer comes back through a gevent `async_` watcher, whose
`send()` is the thread-safe way to wake gevent's hub (what `loop.run_callback_threadsafe` does; the watcher
also keeps the hub from deciding that a greenlet waiting on it "would block forever").

The thread starts on first use, never at import: Locust imports the locustfile before `--processes` forks, and
no thread (neither this one nor awscrt's) survives a fork.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Result(Protocol[T]):
    """A one-shot value the waiting side blocks on (gevent's AsyncResult, or a thread's Future)."""

    def set(self, value: T) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...

    def get(self) -> T: ...


class Waker(Protocol):
    """Hands callbacks from any thread to the waiting side's thread, and makes the results it waits on."""

    def deliver(self, callback: Callable[[], None]) -> None: ...

    def new_result(self) -> Result[Any]: ...

    def close(self) -> None: ...


class GeventWaker:
    """Callbacks handed from any thread to the gevent hub of the thread that made this waker."""

    def __init__(self) -> None:
        import gevent

        self._pending: collections.deque[Callable[[], None]] = collections.deque()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._drain)

    def deliver(self, callback: Callable[[], None]) -> None:
        self._pending.append(callback)  # deque.append is atomic under the GIL
        self._watcher.send()

    def new_result(self) -> Result[Any]:
        from gevent.event import AsyncResult

        return AsyncResult()  # type: ignore[no-any-return]

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft()()

    def close(self) -> None:
        self._watcher.stop()
        self._watcher.close()


def _start_os_thread(target: Callable[[], None]) -> None:
    """A real OS thread, also in a process that gevent has monkey-patched."""
    try:
        from gevent.monkey import get_original

        start_new_thread = get_original("_thread", "start_new_thread")
    except ImportError:  # no gevent: _thread is the real one
        import _thread

        start_new_thread = _thread.start_new_thread
    start_new_thread(target, ())


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop on the original selector: gevent's patched one would start a second hub in the thread."""
    try:
        from gevent.monkey import get_original, is_module_patched
    except ImportError:
        return asyncio.new_event_loop()
    if is_module_patched("selectors"):
        return asyncio.SelectorEventLoop(get_original("selectors", "DefaultSelector")())
    return asyncio.new_event_loop()


def _settle(result: Result[T], task: asyncio.Future[T]) -> None:
    if task.cancelled():
        result.set_exception(asyncio.CancelledError())
    elif (exception := task.exception()) is not None:
        result.set_exception(exception)
    else:
        result.set(task.result())


class AsyncioBridge:
    """One event loop on one OS thread; `call` runs a coroutine there and blocks only the calling greenlet."""

    def __init__(self, waker_factory: Callable[[], Waker] = GeventWaker) -> None:
        self._waker_factory = waker_factory
        self._waker: Waker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: Result[asyncio.AbstractEventLoop] | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Start the thread (idempotent); call it from the greenlets' thread, after any fork."""
        if self._loop is not None:
            return
        if self._starting is not None:  # another greenlet is starting it: wait for the same loop
            self._starting.get()
            return
        waker = self._waker_factory()
        handed: Result[asyncio.AbstractEventLoop] = waker.new_result()
        self._starting = handed

        def run() -> None:
            loop = _new_event_loop()
            asyncio.set_event_loop(loop)

            def hand_over() -> None:  # on the waiting side: the loop is there before anyone wakes
                self._loop, self._starting = loop, None
                handed.set(loop)

            waker.deliver(hand_over)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._waker = waker
        _start_os_thread(run)
        handed.get()

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make()` on the bridge's loop and return its result (or raise its exception) here.

        Only the calling greenlet waits. If it is killed meanwhile (Locust stopping a user raises GreenletExit
        in it), the coroutine is cancelled on its loop and the kill goes on: nothing here catches it.
        """
        self.start()
        loop, waker = self._loop, self._waker
        assert loop is not None and waker is not None
        result: Result[T] = waker.new_result()
        tasks: list[asyncio.Future[T]] = []
        abandoned = False

        def begin() -> None:  # on the loop's thread
            if abandoned:
                return
            task = asyncio.ensure_future(make())
            tasks.append(task)
            task.add_done_callback(lambda done: waker.deliver(lambda: _settle(result, done)))

        def cancel() -> None:  # on the loop's thread
            for task in tasks:
                task.cancel()

        loop.call_soon_threadsafe(begin)
        settled = False
        try:
            value = result.get()
            settled = True
            return value
        except (Exception, asyncio.CancelledError):
            settled = True  # the coroutine's own outcome: it is over
            raise
        finally:
            if not settled:  # GreenletExit or another kill while waiting
                abandoned = True
                try:
                    loop.call_soon_threadsafe(cancel)
                except RuntimeError:  # the loop is closed: nothing runs on it any more
                    pass

    def stop(self) -> None:
        """Stop the loop (tasks still on it are dropped) and the waker."""
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed already
            pass
        if self._waker is not None:
            self._waker.close()
            self._waker = None
