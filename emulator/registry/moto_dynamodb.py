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
        tree._emulator_text = expression_str  # the structural checks' memo key (_install_structure_memo)
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
    _install_fast_traversal()
    _install_structure_memo()


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


def _install_fast_traversal() -> None:
    """moto's validators walk the UpdateExpression tree ten times per request, and for every node of every
    walk rebuild their `_processing_map()` dict and test `isinstance` against each of its classes: most of
    an UpdateItem's CPU. Here each walker builds its map once and remembers, per node type, which entry
    (if any) processes it; the walk, its order, the hooks and the processors are moto's."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node

    base_hook = DepthFirstTraverser.pre_processing_of_child
    unset = object()
    is_node: dict[type, bool] = {}  # `isinstance(x, Node)` by type: Node is an ABC, whose check is slow

    def walk(traverser: Any, node: Any, child_id: int, state: tuple[Any, ...]) -> Any:
        kind = type(node)
        node_type = is_node.get(kind)
        if node_type is None:
            node_type = is_node[kind] = isinstance(node, Node)
        if not node_type:
            return node
        mapping, keys, memo, has_hook = state
        parent_node = node.parent
        if node.children is not None:
            for i, child_node in enumerate(node.children):
                if has_hook:
                    traverser.pre_processing_of_child(node, i)
                walk(traverser, child_node, i, state)
        key = memo.get(kind, unset)
        if key is unset:
            # `process`: the first class of the map, in its order, the node is an instance of.
            key = memo[kind] = next((k for k in keys if isinstance(node, k)), None)
        if key is not None:
            node = mapping[key](node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        state = self.__dict__.get("_emulator_dispatch")
        if state is None:
            mapping = self._processing_map()
            has_hook = type(self).pre_processing_of_child is not base_hook
            state = self.__dict__["_emulator_dispatch"] = (mapping, tuple(mapping), {}, has_hook)
        return walk(self, node, child_id, state)

    DepthFirstTraverser.traverse_node_recursively = traverse_node_recursively  # type: ignore[method-assign]


def _install_structure_memo() -> None:
    """Three of UpdateItem's ten validators check only the expression's shape: one clause of each kind, no
    overlapping paths, no key attribute updated. Their verdict is a function of the expression text, its
    attribute names and the table's keys, and each costs a walk that visits every node's clauses again (the
    deeper the expression, the worse). A (text, names, keys) that passed them once skips them; a failure is
    never remembered, so a bad expression raises its error every time, first, as moto's order has it."""
    from moto.dynamodb.parsing.validators import (
        ActionCountValidator,
        OverlappingPathsValidator,
        UpdateExpressionValidator,
        UpdateHashRangeKeyValidator,
    )

    structural = (ActionCountValidator, OverlappingPathsValidator, UpdateHashRangeKeyValidator)
    passed: set[tuple[Any, ...]] = set()
    original_init, original_validate = UpdateExpressionValidator.__init__, UpdateExpressionValidator.validate

    def __init__(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, expression, *args, **kwargs)
        text = getattr(expression, "_emulator_text", None)
        names = self.expression_attribute_names or {}
        self._emulator_shape = None
        if text is not None and all(isinstance(v, str) for v in names.values()):
            self._emulator_shape = (text, tuple(sorted(names.items())), tuple(self.table.table_key_attrs))
            if self._emulator_shape in passed:
                self.processors = [p for p in self.processors if not isinstance(p, structural)]

    def validate(self: Any) -> Any:
        result = original_validate(self)
        if self._emulator_shape is not None:
            if len(passed) >= _MAX_EXPRESSIONS:
                passed.clear()
            passed.add(self._emulator_shape)
        return result

    UpdateExpressionValidator.__init__ = __init__  # type: ignore[method-assign]
    UpdateExpressionValidator.validate = validate  # type: ignore[method-assign]
