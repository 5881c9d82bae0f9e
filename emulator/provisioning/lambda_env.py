"""Each Lambda function's own environment, in a process that runs several of them on threads.

On AWS every function has its environment to itself. Here the hook process (and, with `--hook-isolation
thread`, the emulator's) runs the hook and the certificate retirer side by side, and `os.environ` is one
per process: the later function's `POWERTOOLS_SERVICE_NAME` would be the earlier one's too. So
`os.environ` becomes a layered view: while a function is imported or invoked on a thread, that thread
reads the function's variables first, then the process's. Writes go to the process's environment (and to
the layer, so the function reads back what it wrote). Other threads see no layer at all.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any


class _LayeredEnviron(MutableMapping[str, str]):
    def __init__(self, base: MutableMapping[str, str]) -> None:
        self.base = base
        self._local = threading.local()

    def _layer(self) -> dict[str, str] | None:
        return getattr(self._local, "layer", None)

    def __getitem__(self, key: str) -> str:
        layer = self._layer()
        if layer is not None and key in layer:
            return layer[key]
        return self.base[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.base[key] = value
        layer = self._layer()
        if layer is not None and key in layer:
            layer[key] = value

    def __delitem__(self, key: str) -> None:
        layer = self._layer()
        found = layer is not None and layer.pop(key, None) is not None
        if key in self.base:
            del self.base[key]
        elif not found:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        layer = self._layer() or {}
        yield from layer
        yield from (key for key in self.base if key not in layer)

    def __len__(self) -> int:
        layer = self._layer() or {}
        return len(layer) + sum(1 for key in self.base if key not in layer)

    def copy(self) -> dict[str, str]:
        return dict(self)

    def __repr__(self) -> str:
        return f"_LayeredEnviron({dict(self)!r})"

    @contextlib.contextmanager
    def layer(self, variables: Mapping[str, str]) -> Iterator[None]:
        previous = self._layer()
        self._local.layer = {**(previous or {}), **variables}
        try:
            yield
        finally:
            self._local.layer = previous


_install_lock = threading.Lock()


def _layered() -> _LayeredEnviron:
    """The process's layered `os.environ`, installed on first use (os.getenv reads it too)."""
    with _install_lock:
        current: Any = os.environ
        if not isinstance(current, _LayeredEnviron):
            current = _LayeredEnviron(os.environ)
            os.environ = current  # type: ignore[assignment]  # noqa: B003 - a view over the same variables
        return current  # type: ignore[no-any-return]


def function_environment(variables: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
    """`with function_environment(env):` this thread reads `env` first, then the process's variables."""
    return _layered().layer(dict(variables))
