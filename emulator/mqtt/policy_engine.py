"""AWS IoT Core policy evaluation for iot:Connect, iot:Publish, iot:Subscribe and iot:Receive.

Semantics (AWS IoT developer guide: iot-policy-variables, thing-policy-variables, thing-policy-examples,
pub-sub-policy; IAM user guide for the shared policy grammar):
- an explicit Deny wins over any Allow; nothing allowed means denied;
- `*` matches any run of characters (including `/` and `:`), `?` exactly one; the MQTT wildcards `+` and `#`
  are literal characters in a policy;
- policy variables `${...}` are substituted in Resource and Condition values. A variable that cannot be
  resolved makes its Resource/value match nothing ("If the device certificate is not associated with the
  thing, this variable won't be resolved and will result in an access denied error", thing-policy-examples).

Statements are compiled once at construction; a resource pattern with variables keeps one compiled regex
per distinct set of substituted values, so a publish costs a few dictionary lookups and one regex match.

One file over 400 lines: the policy grammar (patterns, variables, conditions) and its evaluation are one
language, compiled once per policy set; split, the compiled forms would cross modules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "ConnectionContext",
    "Decision",
    "PolicyDocumentError",
    "PolicyEngine",
    "client_arn",
    "topic_arn",
    "topicfilter_arn",
]

VARIABLES_VERSION = "2012-10-17"  # policy variables are substituted only in documents of this version (IAM)


def client_arn(region: str, account: str, client_id: str) -> str:
    return f"arn:aws:iot:{region}:{account}:client/{client_id}"


def topic_arn(region: str, account: str, topic: str) -> str:
    """The resource of iot:Publish and iot:Receive."""
    return f"arn:aws:iot:{region}:{account}:topic/{topic}"


def topicfilter_arn(region: str, account: str, topic_filter: str) -> str:
    """The resource of iot:Subscribe; `+` and `#` stay as they are (literal characters to a policy)."""
    return f"arn:aws:iot:{region}:{account}:topicfilter/{topic_filter}"


class PolicyDocumentError(ValueError):
    """A policy document the engine cannot read (not a policy, wrong Effect, missing Action/Resource)."""

    status_code = 400
    error_code = "MalformedPolicyException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConnectionContext:
    """Who is asking: the MQTT connection's client id and what the registry says about its certificate.

    `thing_name` is the thing whose name equals the client id, when one exists and `is_attached` says it is
    attached to the connection's certificate. Thing policy variables resolve only then: AWS obtains the thing
    from the MQTT client id, which "must exactly match the thing name" (thing-policy-variables).
    """

    client_id: str
    thing_name: str | None = None
    is_attached: bool = False
    certificate_id: str = ""
    thing_type_name: str | None = None
    thing_attributes: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def thing_resolved(self) -> bool:
        return self.is_attached and self.thing_name is not None and self.thing_name == self.client_id

    def variable(self, name: str) -> str | None:
        """The value of policy variable / condition key `name`, None when it does not resolve."""
        if name == "iot:ClientId":
            return self.client_id
        if name == "iot:CertificateId":
            return self.certificate_id or None
        if name == "iot:Connection.Thing.IsAttached":
            return "true" if self.thing_resolved else "false"
        if not name.startswith("iot:Connection.Thing.") or not self.thing_resolved:
            return None
        if name == "iot:Connection.Thing.ThingName":
            return self.thing_name
        if name == "iot:Connection.Thing.ThingTypeName":
            return self.thing_type_name
        match = _ATTRIBUTE_KEY_RE.match(name)
        if match:
            return self.thing_attributes.get(match.group(1))
        return None


_ATTRIBUTE_KEY_RE = re.compile(r"^iot:Connection\.Thing\.Attributes\[([^\]]+)\]$")


class Decision(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit-deny"
    IMPLICIT_DENY = "implicit-deny"  # no statement allows it

    @property
    def allowed(self) -> bool:
        return self is Decision.ALLOW


# ------------------------------------------------------------------------------------------------ patterns

# `${name}` is a variable; `${*}`, `${?}`, `${$}` write the literal character (IAM). The IoT guide spells
# them `$(*)`, `$(?)`, `$($)`; that spelling is accepted too (UNCONFIRMED which one AWS IoT parses).
_TOKEN_RE = re.compile(r"\$\{([^}]*)\}|\$\(([*?$])\)|\*|\?")
_ESCAPES = {"*", "?", "$"}

# A compiled piece of a pattern: a literal string, a wildcard, or a variable name.
_Literal = str


@dataclass(frozen=True)
class _Wildcard:
    regex: str  # ".*" or "."


@dataclass(frozen=True)
class _Variable:
    name: str


_Piece = _Literal | _Wildcard | _Variable
_STAR, _ONE = _Wildcard(".*"), _Wildcard(".")


def _parse_pattern(text: str, variables: bool) -> tuple[_Piece, ...]:
    pieces: list[_Piece] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN_RE.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token == "*":
            piece: _Piece | None = _STAR
        elif token == "?":
            piece = _ONE
        elif not variables:  # a 2008-10-17 document: `${...}` is plain text
            literal.append(token)
            piece = None
        else:
            name = match.group(1) if match.group(1) is not None else match.group(2)
            if name in _ESCAPES:
                literal.append(name)
                piece = None
            else:
                piece = _Variable(name)
        if piece is not None:
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(piece)
    literal.append(text[position:])
    if "".join(literal):
        pieces.append("".join(literal))
    return tuple(pieces)


_PATTERN_CACHE = 4096  # compiled regexes kept per pattern (one per distinct set of variable values)


class _Pattern:
    """A policy string with wildcards and variables, matched against a request value.

    A pattern without wildcards is a string comparison; one with `*` only (nearly all IoT policies) is a
    scan for its literal runs; one with `?` becomes a regex, compiled once per distinct set of substituted
    variable values and kept.
    """

    __slots__ = ("_pieces", "_variables", "_one_char", "_exact", "_compiled")

    @property
    def has_variables(self) -> bool:
        return bool(self._variables)

    def __init__(self, text: str, variables: bool) -> None:
        self._pieces = _parse_pattern(text, variables)
        self._variables = tuple(piece.name for piece in self._pieces if isinstance(piece, _Variable))
        wild = any(isinstance(piece, _Wildcard) for piece in self._pieces)
        self._one_char = any(piece is _ONE for piece in self._pieces)
        self._exact = None if self._variables or wild else self._text(())
        self._compiled: dict[tuple[tuple[str, ...], bool], re.Pattern[str]] = {}

    def _values(self, ctx: ConnectionContext) -> tuple[str, ...] | None:
        values: list[str] = []
        for name in self._variables:
            value = ctx.variable(name)
            if value is None:
                return None
            values.append(value)
        return tuple(values)

    def _text(self, values: tuple[str, ...]) -> str:
        """The pattern with `values` substituted, wildcards written as `*` and `?`."""
        substituted = iter(values)
        parts: list[str] = []
        for piece in self._pieces:
            if isinstance(piece, str):
                parts.append(piece)
            elif isinstance(piece, _Wildcard):
                parts.append("*" if piece is _STAR else "?")
            else:
                parts.append(next(substituted))
        return "".join(parts)

    def _regex(self, values: tuple[str, ...]) -> str:
        substituted = iter(values)
        parts: list[str] = []
        for piece in self._pieces:
            if isinstance(piece, str):
                parts.append(re.escape(piece))
            elif isinstance(piece, _Wildcard):
                parts.append(piece.regex)
            else:
                # UNCONFIRMED: a substituted value is literal text even if it holds * or ? (the safe reading).
                parts.append(re.escape(next(substituted)))
        return "".join(parts)

    def _segments(self, values: tuple[str, ...]) -> list[str]:
        """The literal runs between `*` wildcards, with `values` substituted (only for `?`-free patterns)."""
        substituted = iter(values)
        segments: list[str] = []
        current: list[str] = []
        for piece in self._pieces:
            if piece is _STAR:
                segments.append("".join(current))
                current = []
            elif isinstance(piece, _Variable):
                current.append(next(substituted))
            else:
                current.append(piece)  # type: ignore[arg-type]  # a literal: `?` patterns never get here
        segments.append("".join(current))
        return segments

    def matches(self, value: str, ctx: ConnectionContext, ignore_case: bool = False) -> bool:
        if self._exact is not None and not ignore_case:
            return value == self._exact
        values = self._values(ctx)
        if values is None:
            return False  # an unresolved variable matches nothing
        if not self._one_char:
            # `*` only (nearly every IoT policy): a scan for the literal runs, no regex to compile.
            segments = self._segments(values)
            if ignore_case:
                return _star_match([segment.lower() for segment in segments], value.lower())
            return _star_match(segments, value)
        key = (values, ignore_case)
        compiled = self._compiled.get(key)
        if compiled is None:
            if len(self._compiled) >= _PATTERN_CACHE:
                self._compiled.clear()
            compiled = re.compile(("(?i)" if ignore_case else "") + self._regex(values), re.DOTALL)
            self._compiled[key] = compiled
        return compiled.fullmatch(value) is not None

    def resolve(self, ctx: ConnectionContext) -> str | None:
        """The text with variables substituted and wildcards kept as text (for *Equals operators)."""
        values = self._values(ctx)
        return None if values is None else self._text(values)


def _star_match(segments: list[str], value: str) -> bool:
    """Does `value` match the literal `segments` joined by `*` (any run of characters)?"""
    if len(segments) == 1:
        return value == segments[0]
    first, last = segments[0], segments[-1]
    start, end = len(first), len(value) - len(last)
    if end < start or not value.startswith(first) or not value.endswith(last):
        return False
    for segment in segments[1:-1]:  # leftmost placement of each run is optimal when only `*` separates them
        found = value.find(segment, start, end)
        if found < 0:
            return False
        start = found + len(segment)
    return True


# ---------------------------------------------------------------------------------------------- conditions

_CONDITION_OPERATORS = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "Bool",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Null",
    }
)


@dataclass(frozen=True)
class _ConditionClause:
    """One `Operator: {key: [values]}` entry: true when the context value satisfies any of the values."""

    operator: str
    key: str
    values: tuple[_Pattern, ...]
    raw_values: tuple[str, ...]
    if_exists: bool

    def holds(self, ctx: ConnectionContext) -> bool:
        base = self.operator
        if base not in _CONDITION_OPERATORS:
            return False  # unknown operator (Numeric*, Date*, IpAddress...): the statement does not apply
        actual = ctx.variable(self.key)
        if base == "Null":
            wanted = any(raw.lower() == "true" for raw in self.raw_values)
            return (actual is None) == wanted
        negated = "Not" in base
        if actual is None:
            # IAM: a key absent from the request makes positive operators false and negated ones true;
            # ...IfExists makes any operator true.
            return self.if_exists or negated
        if base == "Bool":
            return any(
                (resolved := pattern.resolve(ctx)) is not None and resolved.lower() == actual.lower()
                for pattern in self.values
            )
        if base.startswith("Arn"):
            hit = any(_arn_matches(pattern, actual, ctx) for pattern in self.values)
        elif base in ("StringLike", "StringNotLike"):
            hit = any(pattern.matches(actual, ctx) for pattern in self.values)
        else:
            ignore_case = base.endswith("IgnoreCase")
            hit = False
            for pattern in self.values:
                resolved = pattern.resolve(ctx)
                if resolved is None:
                    continue
                if resolved == actual or (ignore_case and resolved.lower() == actual.lower()):
                    hit = True
                    break
        return not hit if negated else hit


def _arn_matches(pattern: _Pattern, actual: str, ctx: ConnectionContext) -> bool:
    """ArnEquals/ArnLike: the six colon-separated ARN parts match one by one, wildcards allowed (IAM)."""
    text = pattern.resolve(ctx)
    if text is None:
        return False
    wanted_parts, actual_parts = text.split(":", 5), actual.split(":", 5)
    if len(wanted_parts) != 6 or len(actual_parts) != 6:
        return False
    return all(
        _Pattern(wanted, variables=False).matches(got, ctx)
        for wanted, got in zip(wanted_parts, actual_parts, strict=True)
    )


# ---------------------------------------------------------------------------------------------- statements


def _as_list(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise PolicyDocumentError(f"{where} must be a string or a non-empty list of strings")
    return items


@dataclass(frozen=True)
class _Statement:
    allow: bool
    actions: tuple[_Pattern, ...]
    not_action: bool
    resources: tuple[_Pattern, ...]
    not_resource: bool
    conditions: tuple[_ConditionClause, ...]

    def applies_to_action(self, action: str) -> bool:
        # Action names are case-insensitive (IAM).
        hit = any(pattern.matches(action, _NO_CONTEXT, ignore_case=True) for pattern in self.actions)
        return hit != self.not_action

    def applies(self, resource: str, ctx: ConnectionContext) -> bool:
        hit = any(pattern.matches(resource, ctx) for pattern in self.resources)
        if hit == self.not_resource:
            return False
        return all(clause.holds(ctx) for clause in self.conditions)


_NO_CONTEXT = ConnectionContext(client_id="")


def _compile_statement(raw: Any, where: str, variables: bool) -> _Statement:
    if not isinstance(raw, Mapping):
        raise PolicyDocumentError(f"{where}: a statement must be an object")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyDocumentError(f'{where}.Effect must be "Allow" or "Deny", got {effect!r}')
    if ("Action" in raw) == ("NotAction" in raw):
        raise PolicyDocumentError(f"{where}: set exactly one of Action and NotAction")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise PolicyDocumentError(f"{where}: set exactly one of Resource and NotResource")
    action_key = "Action" if "Action" in raw else "NotAction"
    resource_key = "Resource" if "Resource" in raw else "NotResource"
    actions = tuple(_Pattern(a, variables=False) for a in _as_list(raw[action_key], f"{where}.{action_key}"))
    resources = tuple(_Pattern(r, variables) for r in _as_list(raw[resource_key], f"{where}.{resource_key}"))
    return _Statement(
        allow=effect == "Allow",
        actions=actions,
        not_action=action_key == "NotAction",
        resources=resources,
        not_resource=resource_key == "NotResource",
        conditions=_compile_conditions(raw.get("Condition", {}), f"{where}.Condition", variables),
    )


def _compile_conditions(raw: Any, where: str, variables: bool) -> tuple[_ConditionClause, ...]:
    if not isinstance(raw, Mapping):
        raise PolicyDocumentError(f"{where} must be an object")
    clauses: list[_ConditionClause] = []
    for operator, entries in raw.items():
        if not isinstance(entries, Mapping):
            raise PolicyDocumentError(f"{where}.{operator} must be an object of key: value(s)")
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        for key, values in entries.items():
            items = [values] if isinstance(values, str | bool) else values
            if not isinstance(items, list) or not items:
                raise PolicyDocumentError(f"{where}.{operator}.{key} must be a value or a non-empty list")
            # JSON booleans appear in Bool conditions; IAM compares their string form.
            texts = tuple(json.dumps(item) if isinstance(item, bool) else str(item) for item in items)
            clauses.append(
                _ConditionClause(
                    operator=base,
                    key=key,
                    values=tuple(_Pattern(text, variables) for text in texts),
                    raw_values=texts,
                    if_exists=if_exists,
                )
            )
    return tuple(clauses)


class PolicyEngine:
    """The union of the IoT policies attached to one principal (certificate)."""

    def __init__(self, documents: Iterable[Mapping[str, Any] | str]) -> None:
        statements: list[_Statement] = []
        for number, document in enumerate(documents):
            if isinstance(document, str):
                try:
                    document = json.loads(document)
                except json.JSONDecodeError as error:
                    raise PolicyDocumentError(f"policy {number}: not valid JSON: {error}") from None
            if not isinstance(document, Mapping) or "Statement" not in document:
                raise PolicyDocumentError(f"policy {number}: not a policy document (no Statement)")
            raw_statements = document["Statement"]
            if isinstance(raw_statements, Mapping):
                raw_statements = [raw_statements]
            if not isinstance(raw_statements, list):
                raise PolicyDocumentError(f"policy {number}.Statement must be a list of statements")
            variables = document.get("Version") == VARIABLES_VERSION
            statements.extend(
                _compile_statement(raw, f"policy {number}.Statement[{index}]", variables)
                for index, raw in enumerate(raw_statements)
            )
        self._statements: tuple[_Statement, ...] = tuple(statements)
        self._by_action: dict[str, tuple[Sequence[_Statement], Sequence[_Statement]]] = {}
        # No policy variable and no condition: a decision depends on (action, resource) alone, so every
        # connection of these policies (every claim connection) may share it (auth.py).
        self.context_free = all(
            not statement.conditions and not any(pattern.has_variables for pattern in statement.resources)
            for statement in self._statements
        )

    def _for_action(self, action: str) -> tuple[Sequence[_Statement], Sequence[_Statement]]:
        """(deny statements, allow statements) whose Action covers `action`, computed once per action."""
        cached = self._by_action.get(action)
        if cached is None:
            relevant = [s for s in self._statements if s.applies_to_action(action)]
            cached = (tuple(s for s in relevant if not s.allow), tuple(s for s in relevant if s.allow))
            self._by_action[action] = cached
        return cached

    def evaluate(self, action: str, resource: str, ctx: ConnectionContext) -> Decision:
        denies, allows = self._for_action(action)
        if any(statement.applies(resource, ctx) for statement in denies):
            return Decision.EXPLICIT_DENY
        if any(statement.applies(resource, ctx) for statement in allows):
            return Decision.ALLOW
        return Decision.IMPLICIT_DENY

    def is_allowed(self, action: str, resource: str, ctx: ConnectionContext) -> bool:
        return self.evaluate(action, resource, ctx) is Decision.ALLOW
