"""Less repeated work in moto's DynamoDB UpdateItem, same behaviour.

The hook's conditional UpdateItem was the largest part of the emulator's CPU per device. moto
parses the same UpdateExpression twice per request (once in the response handler, once in the
backend) and deep-copies the parsed tree before validating it (`copy.deepcopy`, the slow generic
path). The hook sends the same expression text for every device, so:

- `UpdateExpressionParser.make` keeps the parsed tree of each expression text (pickled) and hands
  every caller a fresh copy of it: parsing is a pure function of the text, invalid expressions still
  raise every time (they are never cached), and no caller can see another's mutations.
- The validator's defensive copy of that tree is a pickle round trip instead of `copy.deepcopy`:
  the same deep copy of plain objects, done in C.

Installed once per process (`install()`); the moto code paths, validation and errors are unchanged.
"""

from __future__ import annotations

import copy
import pickle
import threading
from typing import Any

_MAX_EXPRESSIONS = 512
_installed = False
_lock = threading.Lock()


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import UpdateExpression  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    parse = UpdateExpressionParser.make.__func__  # type: ignore[attr-defined]
    parsed: dict[tuple[type, str], bytes] = {}

    def make(cls: type, expression_str: str) -> Any:
        key = (cls, expression_str)
        cached = parsed.get(key)
        if cached is not None:
            return pickle.loads(cached)  # noqa: S301 - our own bytes, never external input
        tree = parse(cls, expression_str)  # raises for an invalid expression: nothing cached
        try:
            data = pickle.dumps(tree, pickle.HIGHEST_PROTOCOL)
        except Exception:  # an unpicklable tree: parse it every time, as moto does
            return tree
        if len(parsed) >= _MAX_EXPRESSIONS:
            parsed.clear()  # expression texts come from clients: bound the memory
        parsed[key] = data
        return pickle.loads(data)  # noqa: S301

    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if memo is None and type(value) is UpdateExpression:
            try:
                return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))  # noqa: S301
            except Exception:  # noqa: S110 - fall back to moto's own copy
                pass
        return copy.deepcopy(value, memo)

    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign,assignment]
    validators.deepcopy = deepcopy  # type: ignore[assignment]
