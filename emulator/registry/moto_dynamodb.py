"""Less repeated work in moto's DynamoDB (the hook's GetItem and TransactWriteItems), same behaviour.

One file because it is one library's patches: every change to moto's internals, the version they are
written against and the switch that turns them all off live together (as botocore's in
`botocore_local.py`). Pinned: moto==5.2.5 (pyproject.toml); `install()` patches nothing on any other
version. tests/emulator/test_moto_dynamodb.py sends the same requests to patched and unpatched moto and
compares results, errors and table state.

The hook's reservation (a conditional UpdateItem of the serial and of the certificate's item in one
TransactWriteItems) and its GetItem were most of the hook process's CPU. moto parses the same update
expression twice per item and validates it twice for a new item, parses each condition three times,
deep-copies every table a transaction touches, walks the expression tree ten times per validation
rebuilding a dict at every node, lists a handler's methods with `inspect.getmembers` on every request
and serializes an item reply through its generic shape walker. Here:

- parsed update expressions are kept per text and shared read-only (moto only reads the tree it parses;
  its validator works on a copy, here unpickled from the cached bytes): `_install_expression_cache`;
- a transaction saves the items it names instead of copying whole tables: `_install_transactions`;
- the validators' walks skip subtrees with no node they process: `_install_fast_traversal`;
- shape checks already passed by an expression are not repeated: `_install_structure_memo`;
- a new item's expression is validated once when its second validation would give what its first
  gave: `_install_new_item_validation`;
- an update expression of only `SET name = :value`, `ADD name :value` and `REMOVE name` that passed
  moto's validators once is applied to the item as moto's executors apply it, without building and
  walking a tree per call; anything that could fail goes through moto's own code: `_install_plain_updates`;
- conditions: the tokens of each condition text are kept, and one request parses each (text, names,
  values) once: `_install_condition_cache`; reserved words are looked up in a set:
  `_install_reserved_keywords`;
- an item's size is added up without a method call per ASCII string or number: `_install_item_size`;
- a JSON error does not render the XML document it throws away: `_install_errors`;
- a handler's method names are listed once per class, and a GetItem reply of plain attribute values is
  `json.dumps` of what moto's serializer would walk (same bytes): `_install_responses`.

`install()` once per process. `EMULATOR_FAST_PATHS=0` (or `install(enabled=False)`) keeps only the
transactions' item saving, which bounds a cost (without it each reservation copies the whole table, so
the CPU per call would measure the table's size); bench/hook_cpu.py compares the two in one run.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import os
import pickle
import threading
import types
from collections import deque
from importlib.metadata import version
from typing import Any

MOTO_VERSION = "5.2.5"
FAST_PATHS_ENV = "EMULATOR_FAST_PATHS"

log = logging.getLogger("emulator.registry.moto_dynamodb")

_MAX_EXPRESSIONS = 512
_installed: bool | None = None  # None: not asked yet; then whether the patches are in
_lock = threading.Lock()
# Set while a patched TransactWriteItems runs moto's own code: its table copy is then skipped.
_items_saved: contextvars.ContextVar[bool] = contextvars.ContextVar("items_saved", default=False)
# The condition parses of the DynamoDB request being served (`_install_condition_cache`).
_request_conditions: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "request_conditions", default=None
)


def fast_paths_wanted() -> bool:
    """False when EMULATOR_FAST_PATHS is 0/off/false/no: moto (but for the transactions' item saving)
    and botocore run as shipped."""
    return os.environ.get(FAST_PATHS_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def install(*, enabled: bool | None = None) -> bool:
    """Patch moto (once per process). Returns whether the fast paths are in: not when turned off
    (`enabled`, else EMULATOR_FAST_PATHS), and nothing is patched when moto is not the version they were
    written against."""
    global _installed
    with _lock:
        if _installed is not None:
            return _installed
        wanted = fast_paths_wanted() if enabled is None else enabled
        found = version("moto")
        if found != MOTO_VERSION:
            log.warning("moto %s is not %s: its DynamoDB runs unpatched (slower)", found, MOTO_VERSION)
            _installed = False
            return False
        # Always: without it a reservation's cost grows with the table (not a fast path, a bound).
        _install_transactions()
        _installed = wanted
        if not wanted:
            return False
        _install_expression_cache()
        _install_fast_traversal()
        _install_structure_memo()
        _install_new_item_validation()
        _install_condition_cache()
        _install_reserved_keywords()
        _install_item_size()
        _install_errors()
        _install_responses()
        _install_module_list()
        _install_plain_updates()
        return True


def _install_module_list() -> None:
    """moto's server finds a request's backend with `host in backends.list_of_moto_modules()`, and that
    generator lists moto's package directory and calls `isdir` on each of its ~150 entries: on every
    request, under the registry's lock (the hook's IoT calls at the emulator's AWS endpoint, rotation's
    several per device). The installed package does not change while the process runs: listed once."""
    from moto import backends

    listed = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return listed

    backends.list_of_moto_modules = list_of_moto_modules  # type: ignore[assignment]


def _install_expression_cache() -> None:
    """moto parses an UpdateExpression in its response handler (to list the names and values it uses) and
    again in the backend, which hands the tree to `UpdateExpressionValidator`, whose first act is a
    `copy.deepcopy` of it (the validators then rewrite their copy). Nothing else touches the tree. So
    `make` keeps each text's tree (and its pickle) and returns that one tree to every caller, and the
    validator's copy is unpickled from the kept bytes. An invalid expression raises every time (never
    kept); a tree that cannot be pickled is parsed every time, as moto does."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import UpdateExpression  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    parse = UpdateExpressionParser.make.__func__  # type: ignore[attr-defined]
    parsed: dict[tuple[type, str], Any] = {}
    pickled: dict[int, tuple[Any, bytes]] = {}  # id(shared tree) -> (that tree, its pickle)

    def make(cls: type, expression_str: str) -> Any:
        key = (cls, expression_str)
        tree = parsed.get(key)
        if tree is not None:
            return tree
        tree = parse(cls, expression_str)  # raises for an invalid expression: nothing kept
        tree._emulator_text = expression_str  # the structural checks' memo key (_install_structure_memo)
        _subtree_mask(tree)  # kept in the pickle: every copy starts with its masks (_install_fast_traversal)
        try:
            data = pickle.dumps(tree, pickle.HIGHEST_PROTOCOL)
        except Exception:  # an unpicklable tree: parse it every time, as moto does
            return tree
        if len(parsed) >= _MAX_EXPRESSIONS:
            parsed.clear()  # expression texts come from clients: bound the memory
            pickled.clear()
        parsed[key] = tree
        pickled[id(tree)] = (tree, data)
        return tree

    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if memo is None and type(value) is UpdateExpression:
            kept = pickled.get(id(value))
            if kept is not None and kept[0] is value:
                return pickle.loads(kept[1])  # noqa: S301 - our own bytes, never external input
            try:
                return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))  # noqa: S301
            except Exception:  # noqa: S110 - fall back to moto's own copy
                pass
        return copy.deepcopy(value, memo)

    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign,assignment]
    validators.deepcopy = deepcopy  # type: ignore[assignment]


def _install_transactions() -> None:
    """TransactWriteItems (the hook's reservation: serial and certificate items in one write) makes moto
    deep-copy every table it touches before it starts, to roll back on a cancelled transaction: a cost
    that grows with the table (10,000 serials: tens of ms per reservation, under the registry's lock).
    Here the items the transaction names are saved instead (at most 100, by their keys) and put back on
    any failure; moto's own transaction code runs unchanged. A table with a stream keeps moto's copy
    (rolled-back writes would leave stream records behind)."""
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
    models.copy = types.SimpleNamespace(deepcopy=table_copy, copy=copy.copy)  # type: ignore[assignment]

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


# ------------------------------------------------------------------ the validators' tree walks

# Each node type met gets a bit; a node's mask is the OR of the bits of the types in its subtree, kept on
# the node (`_emulator_mask`). A walk that processes none of a subtree's types has nothing to do in it.
_type_bits: dict[type, int] = {}
_bits_lock = threading.Lock()
_MASK = "_emulator_mask"
_is_node: dict[type, bool] = {}  # `isinstance(x, Node)` by type: Node is an ABC, whose check is slow


def _bit(kind: type) -> int:
    found = _type_bits.get(kind)
    if found is None:
        with _bits_lock:
            found = _type_bits.setdefault(kind, 1 << len(_type_bits))
    return found


def _subtree_mask(node: Any) -> int:
    """The mask of a moto AST node's subtree (0 for a value that is no node), computed where missing."""
    kind = type(node)
    known = _is_node.get(kind)
    if not (_node_type(kind) if known is None else known):
        return 0
    mask = node.__dict__.get(_MASK)
    if mask is not None:
        return int(mask)
    mask = _type_bits.get(kind) or _bit(kind)
    for child in node.children or ():
        mask |= _subtree_mask(child)
    node.__dict__[_MASK] = mask
    return mask


def _node_type(kind: type) -> bool:
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    found = _is_node[kind] = issubclass(kind, Node)
    return found


def _install_fast_traversal() -> None:
    """moto's validators walk the UpdateExpression tree ten times per request, and for every node of every
    walk rebuild their `_processing_map()` dict and test `isinstance` against each of its classes: most of
    an UpdateItem's CPU. Here each walker builds its map once and remembers, per node type, which entry (if
    any) processes it; and it does not enter a subtree holding no type it processes (the subtree masks
    above, kept exact: a walk recomputes the mask of every node it visits, bottom up, a subtree it skips
    is unchanged, and moto 5.2.5's processors return a node, never change one in place). The walk's
    order, the nodes processed, the hooks and the processors are moto's.

    A walker with a `pre_processing_of_child` hook is called before each child of every node it visits,
    as moto does. moto's attribute resolver, the one validator with a hook, acts only when the parent is
    an action (it turns resolving off for the action's path, on for its value): its hook is called for
    the children of action nodes only (elsewhere it does nothing), and its walk enters every subtree that
    holds an action node. An unknown hook is called everywhere, and its walk enters every subtree."""
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        DepthFirstTraverser,
        Node,
        UpdateExpressionAddAction,
        UpdateExpressionDeleteAction,
        UpdateExpressionRemoveAction,
        UpdateExpressionSetAction,
    )
    from moto.dynamodb.parsing.validators import ExpressionAttributeResolvingProcessor

    base_hook = DepthFirstTraverser.pre_processing_of_child
    unset = object()
    is_node = _is_node
    # Types a known hook acts at; a hook not named here gets a walk that enters every subtree.
    hook_types: dict[type, tuple[type, ...]] = {
        ExpressionAttributeResolvingProcessor: (
            UpdateExpressionSetAction,
            UpdateExpressionRemoveAction,
            UpdateExpressionDeleteAction,
            UpdateExpressionAddAction,
        )
    }

    class Dispatch:
        """What a walker class does with each node type (its map's keys are its class's): the first key
        the type is an instance of (moto's `process`), and the mask of the types its walk must enter."""

        def __init__(self, walker: Any, keys: tuple[type, ...]) -> None:
            self.keys = keys
            self.entry: dict[type, Any] = {}
            self.has_hook = walker.pre_processing_of_child is not base_hook
            acting = hook_types.get(walker, ()) if self.has_hook else ()
            self.enter_types: tuple[type, ...] | None = (
                None if self.has_hook and walker not in hook_types else (*keys, *acting)
            )
            self.hook_at: dict[type, bool] = {}  # parent type -> whether the hook must be called for it
            self.hook_acting = acting if walker in hook_types else None
            self.enter = -1  # every bit: enter everything until computed
            self.enter_known = -1  # how many types `enter` was computed over

        def enter_mask(self) -> int:
            """The bits of the types this walk must enter, among the types known when it was computed, and
            every bit after them: a type met later (another thread's) is entered until this is recomputed."""
            if self.enter_known != len(_type_bits):
                with _bits_lock:
                    known = list(_type_bits.items())
                types_in = self.enter_types
                mask = sum(bit for kind, bit in known if types_in is None or issubclass(kind, types_in))
                self.enter = mask | -(1 << len(known))
                self.enter_known = len(known)
            return self.enter

        def calls_hook(self, parent: type) -> bool:
            """A known hook does something only at its parent types; another hook is always called."""
            found = self.hook_at.get(parent)
            if found is None:
                acting = self.hook_acting
                found = self.hook_at[parent] = self.has_hook and (
                    acting is None or issubclass(parent, acting)
                )
            return found

        def key(self, node: Any) -> Any:
            kind = type(node)
            found = self.entry.get(kind, unset)
            if found is unset:
                found = self.entry[kind] = next((k for k in self.keys if isinstance(node, k)), None)
            return found

    dispatches: dict[tuple[type, tuple[type, ...]], Dispatch] = {}

    def walk(
        traverser: Any, node: Any, child_id: int, mapping: dict[type, Any], dispatch: Dispatch, enter: int
    ) -> Any:
        parent_node = node.parent
        children = node.children
        kind = type(node)
        mask = _type_bits.get(kind) or _bit(kind)
        if children is not None:
            has_hook = dispatch.has_hook and (dispatch.hook_at.get(kind) or dispatch.calls_hook(kind))
            for i, child_node in enumerate(children):
                if has_hook:
                    traverser.pre_processing_of_child(node, i)
                known = is_node.get(type(child_node))
                if not (_node_type(type(child_node)) if known is None else known):
                    continue  # moto's walk returns such a child untouched
                child_mask = child_node.__dict__.get(_MASK)
                if child_mask is None:
                    child_mask = _subtree_mask(child_node)
                if child_mask & enter:
                    walk(traverser, child_node, i, mapping, dispatch, enter)
                    child_mask = _subtree_mask(children[i])  # what stands there after the child's walk
                mask |= child_mask
        node.__dict__[_MASK] = mask
        key = dispatch.entry.get(kind, unset)
        if key is unset:
            key = dispatch.key(node)
        if key is not None:
            node = mapping[key](node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        if not isinstance(node, Node):
            return node
        mapping = self.__dict__.get("_emulator_map")
        if mapping is None:  # moto rebuilds it at every node; it is the same dict every time
            mapping = self.__dict__["_emulator_map"] = self._processing_map()
        keys = tuple(mapping)
        dispatch = dispatches.get((type(self), keys))
        if dispatch is None:
            dispatch = dispatches.setdefault((type(self), keys), Dispatch(type(self), keys))
        return walk(self, node, child_id, mapping, dispatch, dispatch.enter_mask())

    DepthFirstTraverser.traverse_node_recursively = traverse_node_recursively  # type: ignore[method-assign]


# (expression text, its attribute names, the table's key attributes) of every update expression that passed
# all of moto's validators once: `_install_structure_memo` fills it, `_install_plain_updates` reads it.
_shapes_passed: set[tuple[Any, ...]] = set()


def _shape(text: str, names: dict[str, Any], table: Any) -> tuple[Any, ...]:
    return (text, tuple(sorted(names.items())), tuple(table.table_key_attrs))


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
    passed = _shapes_passed
    original_init, original_validate = UpdateExpressionValidator.__init__, UpdateExpressionValidator.validate

    def __init__(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, expression, *args, **kwargs)
        text = getattr(expression, "_emulator_text", None)
        names = self.expression_attribute_names or {}
        self._emulator_shape = None
        if text is not None and all(isinstance(v, str) for v in names.values()):
            self._emulator_shape = _shape(text, names, self.table)
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


def _validated_already(validator: Any, names: Any, values: Any, item: Any, table: Any, tree: Any) -> None:
    """An UpdateExpressionValidator set up as moto's __init__ sets one, with no processor left to run: its
    `validate()` gives `tree` (a patch that knows moto's answer already skips the copy and the walks)."""
    validator.expression_attribute_names, validator.expression_attribute_values = names, values
    validator.item, validator.table = item, table
    validator.processors = []
    validator.node_to_validate = tree
    validator._emulator_shape = None  # nothing for the shape memo to remember


def _install_new_item_validation() -> None:
    """UpdateItem on a key that has no item yet (the hook's certificate item, every time) validates its
    expression twice: against an item with no attributes, to raise any error before it creates the item,
    then against the created item, which holds only its key, to get the tree it applies. The validators
    read the item only where a path of the expression resolves in it; when no path of the expression
    starts at an attribute the created item has, both items answer every path alike ("not there"), and
    the second validation gives what the first gave. Then the first's tree is the second's result (moto
    drops it otherwise). Within one `update_item` call, for the same tree, names and values objects.
    (moto 5.2.5 refuses any path at a key attribute in an update expression, so a first validation that
    passed always qualifies; the check stays, as the reason the two results are the same.)"""
    from moto.dynamodb import models
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        ExpressionAttribute,
        ExpressionAttributeName,
        UpdateExpressionPath,
    )
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator

    # Per update_item call: the tree validated against the empty item, with what it was validated for.
    pending: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("new_item", default=None)
    roots_by_text: dict[str, tuple[tuple[str, str], ...] | None] = {}
    original_update_item = models.DynamoDBBackend.update_item
    original_init, original_validate = UpdateExpressionValidator.__init__, UpdateExpressionValidator.validate

    def path_roots(tree: Any) -> tuple[tuple[str, str], ...] | None:
        """Where every path of the expression starts: ("attribute", name) or ("name", #placeholder);
        None if some path starts otherwise."""
        roots: list[tuple[str, str]] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, UpdateExpressionPath):
                first: Any = node.children[0] if node.children else None
                if type(first) is ExpressionAttribute:
                    roots.append(("attribute", first.get_attribute_name()))
                elif type(first) is ExpressionAttributeName:
                    roots.append(("name", first.get_attribute_name_placeholder()))
                else:
                    return None
            stack.extend(c for c in node.children or () if hasattr(c, "children"))
        return tuple(roots)

    def absent_from(expression: Any, names: Any, item: Any) -> bool:
        """No path of the expression starts at an attribute of `item`."""
        text = getattr(expression, "_emulator_text", None)
        if text is None:
            return False
        if text not in roots_by_text:
            if len(roots_by_text) >= _MAX_EXPRESSIONS:
                roots_by_text.clear()
            roots_by_text[text] = path_roots(expression)
        roots = roots_by_text[text]
        if roots is None:
            return False
        for kind, name in roots:
            attribute = name if kind == "attribute" else (names or {}).get(name)
            if not isinstance(attribute, str) or attribute in item.attrs:
                return False
        return True

    def update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = pending.set([])
        try:
            return original_update_item(self, *args, **kwargs)
        finally:
            pending.reset(token)

    def __init__(
        self: Any,
        expression: Any,
        expression_attribute_names: Any,
        expression_attribute_values: Any,
        item: Any,
        table: Any,
    ) -> None:
        names, values = expression_attribute_names, expression_attribute_values
        stash = pending.get()
        self._emulator_new_item = None
        if stash:
            kept_expression, kept_names, kept_values, validated = stash.pop()
            if (
                kept_expression is expression
                and kept_names is names
                and kept_values is values
                and absent_from(expression, names, item)
            ):
                _validated_already(self, names, values, item, table, validated)  # validate() returns it
                return
        original_init(
            self,
            expression,
            expression_attribute_names=names,
            expression_attribute_values=values,
            item=item,
            table=table,
        )
        if stash is not None and not item.attrs:  # moto's stand-in for an item not created yet
            self._emulator_new_item = (expression, names, values)

    def validate(self: Any) -> Any:
        result = original_validate(self)
        new_item = self.__dict__.get("_emulator_new_item")
        stash = pending.get()
        if new_item is not None and stash is not None:
            stash.append((*new_item, result))
        return result

    models.DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    UpdateExpressionValidator.__init__ = __init__  # type: ignore[method-assign]
    UpdateExpressionValidator.validate = validate  # type: ignore[method-assign]


# ------------------------------------------------------------------------- plain update expressions

_SET, _ADD, _REMOVE = "SET", "ADD", "REMOVE"


class _Fallback(Exception):
    """A plain update met what moto's own code must answer (an error, most likely)."""


class _PlainUpdate:
    """What `UpdateExpressionValidator.validate` returns for a plain update (`_install_plain_updates`):
    the steps moto's executors would take, in their order, with the values moto's validators would have
    put in the tree. `normalize()` is moto's next call on a validated tree (nothing to do here); the
    executor then calls `apply(item)`."""

    __slots__ = ("steps", "slow")

    def __init__(self, steps: list[tuple[str, str, Any]], slow: Any) -> None:
        self.steps = steps
        self.slow = slow  # moto's own validation and execution, for anything `apply` does not answer

    def normalize(self) -> None:
        return None

    def apply(self, item: Any) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        attrs = item.attrs
        before = dict(attrs)  # every step replaces or removes a top-level attribute: a shallow copy restores
        try:
            for op, attribute, value in self.steps:
                if op is _SET:  # SetExecutor: the attribute, through the item's size check
                    attrs[attribute] = value
                elif op is _REMOVE:  # RemoveExecutor
                    attrs.pop(attribute, None)
                elif value.is_set():  # AddExecutor, a set: created empty (size-checked), then extended
                    if not value.value:
                        raise _Fallback
                    current = attrs.get(attribute)
                    if attribute not in attrs:
                        current = DynamoType({value.type: []})
                        attrs[attribute] = current
                    if type(current) is not DynamoType or current.type != value.type:
                        raise _Fallback
                    merged = list(current.value)  # moto appends in place (no size check); a copy, to restore
                    for member in value.value:
                        if member not in merged:
                            merged.append(member)
                    extended = copy.copy(current)
                    extended.value = merged
                    dict.__setitem__(attrs, attribute, extended)
                elif value.type == "N":  # AddExecutor, a number: the sum, through the size check
                    existing = attrs[attribute] if attribute in attrs else DynamoType({"N": "0"})
                    if type(existing) is not DynamoType or existing.type != "N":
                        raise _Fallback
                    attrs[attribute] = existing + value
                else:
                    raise _Fallback
        except Exception:  # noqa: BLE001 - the item as it was, and moto's own code gives the answer
            pass
        else:
            return
        dict.clear(attrs)
        dict.update(attrs, before)
        self.slow(item)  # outside the handler: moto's error is raised as moto raises it


def _install_plain_updates() -> None:
    """The hook's two updates (the serial: SET nine attributes, ADD a certificate to a set, REMOVE the
    rotation fields; the certificate's item: SET eight) are plain: every action names one top-level
    attribute (or a #placeholder) and takes one :value. For such an expression moto builds a copy of the
    tree, walks it with ten validators that replace each :value with its DynamoType and check the shape,
    the names, the keys and the types, then walks it again to execute it: most of the hook process's CPU
    after the other fast paths. What the validators answer for it depends on the text, the names and the
    table's keys (remembered once all validators passed: `_shapes_passed`), on whether each :value is
    given and on its type and emptiness at the table's typed and key attributes (checked here, per call,
    as moto's TypeMismatchValidator and EmptyStringKeyValueValidator check it: with the action's first
    path token, which for a #placeholder is the placeholder). When all of that passes, validation gives
    the tree with each :value's DynamoType in place, and moto's executors then, in `normalize()`'s order,
    set, add or remove one top-level attribute each: what `_PlainUpdate.apply` does, through the same item
    size checks. Anything else (another expression form, a shape not yet passed, a missing value, a type
    or size that moto refuses, an ADD to an attribute of another type) restores the item and runs moto's
    own validators and executor, which give moto's answer and moto's error."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        ExpressionAttribute,
        ExpressionAttributeName,
        ExpressionAttributeValue,
        UpdateExpressionAddAction,
        UpdateExpressionPath,
        UpdateExpressionRemoveAction,
        UpdateExpressionSetAction,
        UpdateExpressionValue,
    )
    from moto.dynamodb.parsing.executors import UpdateExpressionExecutor
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator

    kinds = {
        UpdateExpressionSetAction: _SET,
        UpdateExpressionAddAction: _ADD,
        UpdateExpressionRemoveAction: _REMOVE,
    }
    # expression text -> its steps: (op, ("attribute"|"name", text), first path token, :value name or None);
    # None when the expression is not plain
    compiled: dict[str, tuple[tuple[str, tuple[str, str], str, str | None], ...] | None] = {}
    moto_only: contextvars.ContextVar[bool] = contextvars.ContextVar("moto_only", default=False)
    inner_init, inner_validate = UpdateExpressionValidator.__init__, UpdateExpressionValidator.validate
    inner_execute = UpdateExpressionExecutor.execute

    def steps_of(tree: Any) -> tuple[tuple[str, tuple[str, str], str, str | None], ...] | None:
        ordered = pickle.loads(pickle.dumps(tree, pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own tree
        ordered.normalize()  # moto's execution order (REMOVEs grouped and sorted)
        steps = []
        for action in ordered.children:
            op = kinds.get(type(action))
            if op is None or not action.children:
                return None
            path = action.children[0]
            if type(path) is not UpdateExpressionPath or len(path.children) != 1:
                return None
            element = path.children[0]
            if type(element) is ExpressionAttribute:
                target = ("attribute", element.get_attribute_name())
            elif type(element) is ExpressionAttributeName:
                target = ("name", element.get_attribute_name_placeholder())
            else:
                return None
            token = element.children[0]
            if op is _REMOVE:
                if len(action.children) != 1:
                    return None
                steps.append((op, target, token, None))
                continue
            if len(action.children) != 2:
                return None
            value = action.children[1]
            if op is _SET:
                if type(value) is not UpdateExpressionValue or len(value.children) != 1:
                    return None
                value = value.children[0]
            if type(value) is not ExpressionAttributeValue:
                return None
            steps.append((op, target, token, value.get_value_name()))
        return tuple(steps)

    def plain_update(
        expression: Any, names: Any, values: Any, table: Any
    ) -> list[tuple[str, str, Any]] | None:
        text = getattr(expression, "_emulator_text", None)
        if text is None or not isinstance(names or {}, dict) or not isinstance(values, dict):
            return None
        names = names or {}
        if not all(isinstance(v, str) for v in names.values()):
            return None
        if _shape(text, names, table) not in _shapes_passed:
            return None
        if text not in compiled:
            try:
                found = steps_of(expression)
            except Exception:  # noqa: BLE001 - not a tree this understands: moto's path, every time
                found = None
            if len(compiled) >= _MAX_EXPRESSIONS:
                compiled.clear()  # expression texts come from clients: bound the memory
            compiled[text] = found
        steps = compiled[text]
        if steps is None:
            return None
        planned: list[tuple[str, str, Any]] = []
        for op, (kind, name), token, placeholder in steps:
            attribute = name if kind == "attribute" else names.get(name)
            if not isinstance(attribute, str):
                return None
            if placeholder is None:
                planned.append((op, attribute, None))
                continue
            if placeholder not in values:
                return None
            try:
                value = DynamoType(values[placeholder])  # one per action, as the validator makes them
                if op is _SET:
                    if not value.value and value.type in ("S", "B") and token in table.attribute_keys:
                        return None
                    for definition in table.attr:
                        if definition["AttributeName"] == token and definition["AttributeType"] != value.type:
                            return None
            except Exception:  # noqa: BLE001 - a value moto's own code must answer for
                return None
            planned.append((op, attribute, value))
        return planned

    def __init__(
        self: Any,
        expression: Any,
        expression_attribute_names: Any,
        expression_attribute_values: Any,
        item: Any,
        table: Any,
    ) -> None:
        names, values = expression_attribute_names, expression_attribute_values
        steps = None if moto_only.get() else plain_update(expression, names, values, table)
        if steps is None:
            self._emulator_plain = None
            inner_init(
                self,
                expression,
                expression_attribute_names=names,
                expression_attribute_values=values,
                item=item,
                table=table,
            )
            return

        def slow(target: Any) -> None:
            token = moto_only.set(True)
            try:
                validated = UpdateExpressionValidator(
                    expression,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                    item=target,
                    table=table,
                ).validate()
            finally:
                moto_only.reset(token)
            validated.normalize()
            UpdateExpressionExecutor(validated, target, names).execute()

        _validated_already(self, names, values, item, table, None)
        self._emulator_new_item = None
        self._emulator_plain = _PlainUpdate(steps, slow)

    def validate(self: Any) -> Any:
        plain = self.__dict__.get("_emulator_plain")
        if plain is not None:
            return plain
        return inner_validate(self)

    def execute(self: Any, node: Any = None) -> None:
        if node is None and type(self.update_ast) is _PlainUpdate:
            self.update_ast.apply(self.item)
            return
        inner_execute(self, node)

    UpdateExpressionValidator.__init__ = __init__  # type: ignore[method-assign]
    UpdateExpressionValidator.validate = validate  # type: ignore[method-assign]
    UpdateExpressionExecutor.execute = execute  # type: ignore[method-assign]


# ------------------------------------------------------------------------------- conditions


def _install_condition_cache() -> None:
    """A conditional update in a transaction has its condition parsed three times: by the response handler
    (for the names it uses), by the transaction (to check it) and by UpdateItem (to check it again). The
    parse is a function of the condition text, its names and its values, and the parses of one request
    get the same two dicts (but the response handler's own empty ones when the request has none). So
    within one request (`DynamoHandler.call_action`) each (text, names dict, values dict) is parsed once,
    and the Op tree, which moto only evaluates, is handed out again with the names and values it found.
    Across requests the tokens of each text are kept (lexing is a function of the text alone; moto never
    mutates a token). A failed parse is never kept."""
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.responses import DynamoHandler

    parse, lex = ConditionExpressionParser.parse, ConditionExpressionParser._lex_condition_expression
    tokens: dict[str, tuple[Any, ...]] = {}

    def lex_condition_expression(self: Any) -> deque[Any]:
        text = self.condition_expression
        kept = tokens.get(text) if isinstance(text, str) else None
        if kept is None:
            lexed = lex(self)  # raises for text it cannot read: nothing kept
            if not isinstance(text, str):
                return lexed  # type: ignore[no-any-return]
            if len(tokens) >= _MAX_EXPRESSIONS:
                tokens.clear()
            kept = tokens[text] = tuple(lexed)
        return deque(kept)

    def parse_once(self: Any) -> Any:
        memo = _request_conditions.get()
        names, values = self.expression_attribute_names, self.expression_attribute_values
        if memo is None or not isinstance(self.condition_expression, str):
            return parse(self)
        key = (self.condition_expression, id(names), id(values))
        kept = memo.get(key)
        if kept is not None and kept[0] is names and kept[1] is values:
            op, names_found, values_found = kept[2:]
            self.expr_attr_names_found.extend(names_found)
            self.expr_attr_values_found.extend(values_found)
            return op
        before_names, before_values = len(self.expr_attr_names_found), len(self.expr_attr_values_found)
        op = parse(self)  # raises for an invalid condition: nothing kept
        memo[key] = (
            names,  # held, so that their ids cannot be reused by other dicts during the request
            values,
            op,
            tuple(self.expr_attr_names_found[before_names:]),
            tuple(self.expr_attr_values_found[before_values:]),
        )
        return op

    original_call_action = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        token = _request_conditions.set({})
        try:
            return original_call_action(self)
        finally:
            _request_conditions.reset(token)

    ConditionExpressionParser._lex_condition_expression = lex_condition_expression  # type: ignore[method-assign]
    ConditionExpressionParser.parse = parse_once  # type: ignore[method-assign]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _install_reserved_keywords() -> None:
    """Every attribute name in an expression is checked against DynamoDB's 573 reserved words, a list
    that moto scans (`name.upper() in keywords`). The same list, whose `in` asks a set (the same answer
    for a string, the only thing moto asks it about)."""
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    class Keywords(list[str]):
        def __init__(self, words: list[str]) -> None:
            super().__init__(words)
            self._set = frozenset(words)

        def __contains__(self, word: object) -> bool:
            if type(word) is str:
                return word in self._set
            return super().__contains__(word)

    ReservedKeywords.KEYWORDS = Keywords(ReservedKeywords.get_reserved_keywords())


def _install_item_size() -> None:
    """moto keeps an item within DynamoDB's 400 KB by adding up the size of every attribute each time one is
    set (`LimitedSizeDict.__setitem__`): an UpdateItem of n attributes sizes the item n times, a method
    call per attribute and per check of its type. The same sum here, but a string (S) or number (N) value
    of ASCII text is its length (what moto's UTF-8 count gives for it, and its number rule); any other
    value, and any other text (which may not even encode), is sized by moto's own code."""
    from moto.dynamodb.models.dynamo_type import DynamoType, ItemSizeTooLarge, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def value_size(value: Any) -> int:
        if type(value) is DynamoType:
            kind, content = value.type, value.value
            if type(content) is str and (kind == "N" or (kind == "S" and content.isascii())):
                return len(content)
            return int(value.size())
        if type(value) is str and value.isascii():
            return len(value)
        return bytesize(str(value))

    def __setitem__(self: Any, key: str, value: Any) -> None:
        current_item_size = sum(value_size(k) for k in self.keys()) + sum(
            value_size(v) for v in self.values()
        )
        new_item_size = bytesize(key) + (value.size() if type(value) is DynamoType else bytesize(str(value)))
        if (current_item_size + new_item_size) > 405000:  # moto's limit
            raise ItemSizeTooLarge
        dict.__setitem__(self, key, value)

    LimitedSizeDict.__setitem__ = __setitem__  # type: ignore[method-assign,assignment]


def _install_errors() -> None:
    """Every DynamoDB error moto raises (`JsonRESTError`), including those its own code raises and catches
    (UpdateItem's ADD to a set the item does not have yet, every time), first renders an XML error
    document (xmltodict) that the JSON error's constructor then replaces with its JSON body. Here the JSON
    error is built as it ends up: the same attributes, without the XML it throws away."""
    import json as json_module

    from moto.core import exceptions

    base = exceptions._RESTError

    def __init__(self: Any, error_type: str, message: str, _: str = "", **kwargs: Any) -> None:
        super(base, self).__init__()  # what _RESTError.__init__ starts with (werkzeug's HTTPException)
        self.error_type = error_type
        self.message = message
        self.description = json_module.dumps({"__type": self.error_type, "message": self.message})
        self.content_type = "application/json"

    exceptions.JsonRESTError.__init__ = __init__  # type: ignore[method-assign]


# ------------------------------------------------------------------------------- responses


def _install_responses() -> None:
    """Two costs of moto's response plumbing on every request:

    - `call_action` lists the handler's methods (`inspect.getmembers` over ~300 attributes) to check that
      the action is one of them: listed once per class here (moto adds no methods at run time);
    - a GetItem reply goes through moto's shape-driven serializer, a Python call per member of every
      attribute value. When the reply holds only plain attribute values (S, N, SS, NS, M, L, NULL, BOOL
      of str, bool, list and dict: no binary, which the serializer base64-encodes), the serializer's
      output is exactly `json.dumps` of the result dict, which is what is sent (same bytes, same headers);
      anything else goes through moto's serializer."""
    from moto import settings
    from moto.core import responses as core_responses
    from moto.core.serialize import JSONSerializer, get_serializer_class
    from moto.core.utils import method_names_from_class
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    names_by_class: dict[type, frozenset[str]] = {}

    def method_names(clazz: Any) -> frozenset[str]:  # its one caller only asks `action in method_names`
        found = names_by_class.get(clazz)
        if found is None:
            found = names_by_class[clazz] = frozenset(method_names_from_class(clazz))
        return found

    core_responses.method_names_from_class = method_names  # type: ignore[assignment]

    original_serialized = DynamoHandler.serialized
    content_types: dict[str, str] = {}

    def serialized(self: Any, action_result: Any) -> Any:
        if (
            type(action_result) is DynamoResult
            and not settings.PRETTIFY_RESPONSES
            and not self.RESPONSE_KEY_PATH_TO_TRANSFORMER
            and self._get_action() == "GetItem"
        ):
            result = action_result.result
            if _plain_get_item(result):
                service_model = core_responses.get_service_model(self.boto3_service_name)
                protocol = self.determine_response_protocol(service_model)
                if get_serializer_class(service_model.service_name, protocol) is JSONSerializer:
                    content_type = content_types.get(protocol)
                    if content_type is None:
                        operation = service_model.operation_model("GetItem")
                        content_type = JSONSerializer(operation)._get_protocol_specific_content_type()
                        content_types[protocol] = content_type
                    headers = {"Content-Type": content_type}
                    headers.update(self.response_headers)
                    return 200, headers, json.dumps(result)
        return original_serialized(self, action_result)

    DynamoHandler.serialized = serialized  # type: ignore[method-assign]


_STRINGS = frozenset({"S", "N"})
_STRING_SETS = frozenset({"SS", "NS"})
_FLAGS = frozenset({"NULL", "BOOL"})


def _plain_get_item(result: Any) -> bool:
    """A GetItem result of only plain attribute values: {} or {"Item": {name: value}}."""
    if type(result) is not dict or not set(result) <= {"Item"}:
        return False
    item = result.get("Item", {})
    return type(item) is dict and all(type(k) is str and _plain_value(v) for k, v in item.items())


def _plain_value(value: Any) -> bool:
    if type(value) is not dict or len(value) != 1:
        return False
    ((kind, content),) = value.items()
    if kind in _STRINGS:
        return type(content) is str
    if kind in _STRING_SETS:
        return type(content) is list and all(type(v) is str for v in content)
    if kind in _FLAGS:
        return type(content) is bool
    if kind == "M":
        return type(content) is dict and all(type(k) is str and _plain_value(v) for k, v in content.items())
    if kind == "L":
        return type(content) is list and all(_plain_value(v) for v in content)
    return False
