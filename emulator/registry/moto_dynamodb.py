"""Less repeated work in moto's DynamoDB UpdateItem and TransactWriteItems, same behaviour.

The hook's conditional UpdateItem was the largest part of the emulator's CPU per device. moto
parses the same UpdateExpression twice per request (once in the response handler, once in the
backend) and deep-copies the parsed tree before validating it (`copy.deepcopy`, the slow generic
path). The hook sends the same expression text for every device, so:

- `UpdateExpressionParser.make` keeps the parsed tree of each expression text (pickled) and hands
  every caller a fresh copy of it: parsing is a pure function of the text, invalid expressions still
  raise every time (they are never cached), and no caller can see another's mutations.
- The validator's defensive copy of that tree is a pickle round trip instead of `copy.deepcopy`:
  the same deep copy of plain objects, done in C.

- TransactWriteItems (the hook's reservation: serial and certificate items in one write) makes moto
  deep-copy every table it touches before it starts, to roll back on a cancelled transaction: a cost
  that grows with the table (10,000 serials: tens of ms per reservation, under the registry's lock).
  Here the items the transaction names are saved instead (at most 100, by their keys) and put back on
  any failure; moto's own transaction code runs unchanged. A table with a stream keeps moto's copy
  (rolled-back writes would leave stream records behind).

Installed once per process (`install()`); the moto code paths, validation and errors are unchanged.
Pinned: moto==5.2.5 (pyproject.toml); tests/emulator/test_moto_dynamodb.py compares every patched path
with moto's own.
"""

from __future__ import annotations

import contextvars
import copy
import pickle
import threading
import types
from typing import Any

_MAX_EXPRESSIONS = 512
_installed = False
_lock = threading.Lock()
# Set while a patched TransactWriteItems runs moto's own code: its table copy is then skipped.
_items_saved: contextvars.ContextVar[bool] = contextvars.ContextVar("items_saved", default=False)


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
    _install_transactions()


def _install_transactions() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = models.DynamoDBBackend.transact_write_items

    def table_copy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        # moto's `copy.deepcopy(self.tables[name])`: the items it could change are saved already.
        if _items_saved.get() and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    # moto's transaction code reads `copy.deepcopy` through the module name `copy` of models/__init__.
    models.copy = types.SimpleNamespace(deepcopy=table_copy, copy=copy.copy)  # type: ignore[attr-defined]

    def saved_items(
        backend: Any, transact_items: list[dict[str, Any]]
    ) -> list[tuple[Any, Any, Any, Any]] | None:
        """(table, hash key, range key, deep copy of the item or None) for each item the transaction
        names; None when a table has a stream or a key cannot be read (moto's path then decides)."""
        saved = []
        for entry in transact_items:
            if len(entry) != 1:
                return None
            ((op_type, op),) = entry.items()
            if not isinstance(op, dict):
                return None
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue  # moto answers ResourceNotFound; nothing of it can change
            if table.stream_shard is not None:
                return None
            source = op.get("Item") if op_type == "Put" else op.get("Key")
            try:
                hash_key = DynamoType(source[table.hash_key_attr])
                range_key = DynamoType(source[table.range_key_attr]) if table.has_range_key else None
                item = table.get_item(hash_key, range_key)
            except Exception:  # noqa: BLE001 - a malformed key: moto's own code raises the right error
                return None
            snapshot = None if item is None else pickle.loads(pickle.dumps(item, pickle.HIGHEST_PROTOCOL))  # noqa: S301
            saved.append((table, hash_key, range_key, snapshot))
        return saved

    def restore(saved: list[tuple[Any, Any, Any, Any]]) -> None:
        for table, hash_key, range_key, snapshot in reversed(saved):
            if range_key is None:
                if snapshot is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = snapshot
            else:
                rows = table.items[hash_key]
                if snapshot is None:
                    rows.pop(range_key, None)
                else:
                    rows[range_key] = snapshot

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = saved_items(self, transact_items) if len(transact_items) <= 100 else None
        if saved is None:
            return original(self, transact_items)  # type: ignore[no-any-return]
        token = _items_saved.set(True)
        try:
            original(self, transact_items)
        except BaseException:
            restore(saved)
            raise
        finally:
            _items_saved.reset(token)

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
