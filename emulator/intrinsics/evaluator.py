"""CloudFormation's intrinsic functions, each written once, evaluated under the rules of one kind of template.

Two kinds of template speak the language. The synthesized stack (the cloud assembly) uses CloudFormation's
set over parameters, pseudo parameters, resources and Conditions. AWS IoT provisioning templates use
`Ref`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::Sub` and `Fn::FindInMap` over the request's parameters.
A `Rules` says what one kind allows and how it reports a problem; an `Evaluator` holds one document's names
(parameters, pseudo parameters, Mappings, Conditions, resources). Every error names its place in the
document as a dotted path, e.g. `Resources.thing.Properties.ThingName.Fn::Join[1][0]`.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FUNCTIONS",
    "MISSING",
    "NO_VALUE",
    "Evaluator",
    "Rules",
    "contains_function",
    "describe",
    "is_function_key",
]


class _Marker(enum.Enum):
    MISSING = "missing"
    NO_VALUE = "no value"


# What a scope's resource lookup answers for a name it does not hold.
MISSING = _Marker.MISSING
# The value of `{"Ref": "AWS::NoValue"}`: the object key or list item it lands in is removed.
NO_VALUE = _Marker.NO_VALUE

_SUB_VARIABLE_RE = re.compile(r"\$\{([^}]*)\}")
_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Rules:
    """What one kind of template allows, and how its evaluation reports a problem.

    The three messages are formatted with `where` (the place) and `name` (the name at fault).
    """

    functions: frozenset[str]
    error: Callable[[str], Exception]
    # A function key outside `functions`: (function, where) -> the value to use, or raise.
    unsupported: Callable[[str, str], Any]
    # True: a function key beside other keys is an error. False: such an object is data (an IAM statement's
    # "Condition" block sits beside "Effect").
    lone_function: bool
    # True: where text is expected only a string will do. False: any other value is written with str().
    strict_text: bool
    # True: `{"Ref": "AWS::NoValue"}` removes the object key or list item it is the value of.
    no_value: bool
    bad_ref: str
    unknown_ref: str
    unknown_sub: str

    def __post_init__(self) -> None:
        unknown = self.functions - FUNCTIONS
        if unknown:
            raise ValueError(f"no evaluator for {', '.join(sorted(unknown))}")


def is_function_key(key: Any) -> bool:
    return isinstance(key, str) and (key == "Ref" or key == "Condition" or key.startswith("Fn::"))


def contains_function(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(is_function_key(key) for key in value) or any(
            contains_function(item) for item in value.values()
        )
    if isinstance(value, list):
        return any(contains_function(item) for item in value)
    return False


def describe(value: Any) -> str:
    """A value as an error message names it: `null`, `a list`, `int 7`."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


class Evaluator:
    """Evaluates the intrinsic functions in one document's JSON values.

    Names resolve in CloudFormation's order: pseudo parameters, parameters, then resources
    (`resource_ref(logical_id)` and `resource_attribute(logical_id, attribute)` answer MISSING for a name
    the document does not hold). Mappings are read as they are; Conditions are evaluated when asked.
    """

    def __init__(
        self,
        rules: Rules,
        *,
        parameters: Mapping[str, Any] = _EMPTY,
        pseudo_parameters: Mapping[str, Any] = _EMPTY,
        mappings: Mapping[str, Any] = _EMPTY,
        conditions: Mapping[str, Any] = _EMPTY,
        resource_ref: Callable[[str], Any] | None = None,
        resource_attribute: Callable[[str, str], Any] | None = None,
    ) -> None:
        self._rules = rules
        self._error = rules.error
        if rules.no_value:
            pseudo_parameters = {**pseudo_parameters, "AWS::NoValue": NO_VALUE}
        # Pseudo parameters win over a parameter of the same name; one dict keeps the hot lookup to one probe.
        self._names = {**parameters, **pseudo_parameters} if pseudo_parameters else parameters
        self._mappings = mappings
        self._conditions = conditions
        self._resource_ref = resource_ref
        self._resource_attribute = resource_attribute

    def evaluate(self, node: Any, where: str) -> Any:
        """`node` with each function replaced by its value; NO_VALUE if `node` itself is AWS::NoValue."""
        if isinstance(node, str):  # the most common node, settled before the costlier Mapping check
            return node
        if isinstance(node, Mapping):
            if len(node) == 1:
                ((key, argument),) = node.items()
                if is_function_key(key):
                    return self.call(key, argument, f"{where}.{key}")
            elif self._rules.lone_function and any(is_function_key(key) for key in node):
                raise self._error(
                    f"{where}: an intrinsic function must be the only key of its object, found "
                    f"{', '.join(sorted(map(str, node)))}"
                )
            result = {key: self.evaluate(value, f"{where}.{key}") for key, value in node.items()}
            if self._rules.no_value:
                return {key: value for key, value in result.items() if value is not NO_VALUE}
            return result
        if isinstance(node, list):
            items = [self.evaluate(item, f"{where}[{index}]") for index, item in enumerate(node)]
            if self._rules.no_value:
                return [item for item in items if item is not NO_VALUE]
            return items
        return node

    def call(self, function: str, argument: Any, where: str) -> Any:
        if function in self._rules.functions:
            return _IMPLEMENTATIONS[function](self, argument, where)
        return self._rules.unsupported(function, where)

    def condition(self, name: Any, where: str) -> bool:
        """The value of the named entry of the Conditions section."""
        if not isinstance(name, str) or name not in self._conditions:
            raise self._error(f"{where}: unknown condition {name}")
        return bool(self.evaluate(self._conditions[name], f"Conditions.{name}"))

    # ------------------------------------------------------------------------------------------- values

    def _text(self, value: Any, where: str) -> str:
        if isinstance(value, str):
            return value
        if self._rules.strict_text:
            raise self._error(f"{where}: expected a string, got {describe(value)}")
        return str(value)

    def _string(self, node: Any, where: str) -> str:
        return self._text(self.evaluate(node, where), where)

    def _list(self, node: Any, where: str) -> list[Any]:
        value = self.evaluate(node, where)
        if not isinstance(value, list):
            raise self._error(f"{where}: expected a list, got {describe(value)}")
        return value

    def _strings(self, node: Any, where: str) -> list[str]:
        values = self._list(node, where)
        for item in values:
            if not isinstance(item, str):
                return [self._text(item, f"{where}[{index}]") for index, item in enumerate(values)]
        return values

    def _arguments(self, argument: Any, count: int, where: str, usage: str) -> list[Any]:
        if not isinstance(argument, list) or len(argument) != count:
            raise self._error(f"{where}: {usage}")
        return argument

    # ---------------------------------------------------------------------------------------- functions

    def _ref(self, argument: Any, where: str) -> Any:
        if not isinstance(argument, str):
            raise self._error(self._rules.bad_ref.format(where=where, name=argument))
        value = self._names.get(argument, MISSING)
        if value is MISSING and self._resource_ref is not None:
            value = self._resource_ref(argument)
        if value is MISSING:
            raise self._error(self._rules.unknown_ref.format(where=where, name=argument))
        return value

    def _get_att(self, argument: Any, where: str) -> Any:
        if isinstance(argument, str) and "." in argument:
            logical_id, attribute = argument.split(".", 1)
        elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str):
            logical_id, attribute = argument[0], self._string(argument[1], f"{where}[1]")
        else:
            raise self._error(f'{where}: Fn::GetAtt takes [LogicalId, Attribute] or "LogicalId.Attribute"')
        lookup = self._resource_attribute
        value = MISSING if lookup is None else lookup(logical_id, attribute)
        if value is MISSING:
            raise self._error(f"{where}: Fn::GetAtt of unknown resource {logical_id}")
        return value

    def _sub(self, argument: Any, where: str) -> str:
        variables: dict[str, str] = {}
        if isinstance(argument, list):
            if len(argument) != 2 or not isinstance(argument[1], Mapping):
                raise self._error(f"{where}: Fn::Sub takes a string or [string, {{name: value}}]")
            text, variable_nodes = argument
            for name, value in variable_nodes.items():
                variables[name] = self._string(value, f"{where}[1].{name}")
        else:
            text = argument
        if not isinstance(text, str):
            raise self._error(f"{where}: the Fn::Sub template must be a literal string")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} writes ${Literal}
            if name in variables:
                return variables[name]
            return self._text(self._sub_name(name, where), where)

        return _SUB_VARIABLE_RE.sub(substitute, text)

    def _sub_name(self, name: str, where: str) -> Any:
        """A ${name} of Fn::Sub: a parameter or pseudo parameter, `Logical.Attribute` or a resource."""
        value = self._names.get(name, MISSING)
        if value is MISSING and "." in name and self._resource_attribute is not None:
            value = self._resource_attribute(*name.split(".", 1))
        if value is MISSING and self._resource_ref is not None:
            value = self._resource_ref(name)
        if value is MISSING:
            raise self._error(self._rules.unknown_sub.format(where=where, name=name))
        return value

    def _join(self, argument: Any, where: str) -> str:
        delimiter, values = self._arguments(argument, 2, where, "Fn::Join takes [delimiter, [values...]]")
        return self._string(delimiter, f"{where}[0]").join(self._strings(values, f"{where}[1]"))

    def _select(self, argument: Any, where: str) -> Any:
        # CloudFormation and AWS IoT alike: Fn::Select checks neither null values nor the index bounds, and
        # either fails the stack or the provisioning.
        index_node, values_node = self._arguments(argument, 2, where, "Fn::Select takes [index, [values...]]")
        index = self.evaluate(index_node, f"{where}[0]")
        # The index may be a number or a string of digits, as in CloudFormation ("²" is a digit, not ASCII).
        if isinstance(index, str) and index.isascii() and index.isdigit():
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int):
            raise self._error(f"{where}[0]: the index must be a non-negative integer, got {describe(index)}")
        values = self._list(values_node, f"{where}[1]")
        if not 0 <= index < len(values):
            raise self._error(f"{where}: index {index} is out of range for a list of {len(values)}")
        selected = values[index]
        if selected is None:
            raise self._error(f"{where}: the selected value (index {index}) is null")
        return selected

    def _split(self, argument: Any, where: str) -> list[str]:
        delimiter_node, text = self._arguments(argument, 2, where, "Fn::Split takes [delimiter, string]")
        delimiter = self._string(delimiter_node, f"{where}[0]")
        if not delimiter:
            raise self._error(f"{where}[0]: the delimiter must not be empty")
        return self._string(text, f"{where}[1]").split(delimiter)

    def _find_in_map(self, argument: Any, where: str) -> Any:
        usage = "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]"
        nodes = self._arguments(argument, 3, where, usage)
        map_name, top_key, second_key = (self._string(node, f"{where}[{i}]") for i, node in enumerate(nodes))
        top = self._mappings.get(map_name)
        if not isinstance(top, Mapping):
            raise self._error(f"{where}: no mapping named {map_name!r} in Mappings")
        second = top.get(top_key)
        if not isinstance(second, Mapping):
            raise self._error(f"{where}: mapping {map_name!r} has no key {top_key!r}")
        if second_key not in second:
            raise self._error(f"{where}: mapping {map_name!r}.{top_key!r} has no key {second_key!r}")
        return second[second_key]

    def _if(self, argument: Any, where: str) -> Any:
        usage = "Fn::If takes [ConditionName, value if true, value if false]"
        name, *_ = self._arguments(argument, 3, where, usage)
        chosen = 1 if self.condition(name, f"{where}[0]") else 2
        return self.evaluate(argument[chosen], f"{where}[{chosen}]")

    def _equals(self, argument: Any, where: str) -> bool:
        first, second = self._arguments(argument, 2, where, "Fn::Equals takes [value, value]")
        return bool(self.evaluate(first, f"{where}[0]") == self.evaluate(second, f"{where}[1]"))

    def _not(self, argument: Any, where: str) -> bool:
        (condition,) = self._arguments(argument, 1, where, "Fn::Not takes [condition]")
        return not self.evaluate(condition, f"{where}[0]")

    def _and(self, argument: Any, where: str) -> bool:
        conditions = self._conditions_of(argument, where, "Fn::And")
        return all(self.evaluate(node, f"{where}[{index}]") for index, node in enumerate(conditions))

    def _or(self, argument: Any, where: str) -> bool:
        conditions = self._conditions_of(argument, where, "Fn::Or")
        return any(self.evaluate(node, f"{where}[{index}]") for index, node in enumerate(conditions))

    def _conditions_of(self, argument: Any, where: str, function: str) -> list[Any]:
        if not isinstance(argument, list) or not argument:
            raise self._error(f"{where}: {function} takes [condition, ...]")
        return argument

    def _condition_function(self, argument: Any, where: str) -> bool:
        return self.condition(argument, where)

    def _base64(self, argument: Any, where: str) -> str:
        return base64.b64encode(self._string(argument, where).encode()).decode()

    def _get_azs(self, argument: Any, where: str) -> list[str]:
        region = self.evaluate(argument, where) or self._names.get("AWS::Region")
        # Locally every region has three zones, a to c.
        return [f"{self._text(region, where)}{zone}" for zone in "abc"]


_IMPLEMENTATIONS: dict[str, Callable[[Evaluator, Any, str], Any]] = {
    "Ref": Evaluator._ref,
    "Condition": Evaluator._condition_function,
    "Fn::GetAtt": Evaluator._get_att,
    "Fn::Sub": Evaluator._sub,
    "Fn::Join": Evaluator._join,
    "Fn::Select": Evaluator._select,
    "Fn::Split": Evaluator._split,
    "Fn::FindInMap": Evaluator._find_in_map,
    "Fn::If": Evaluator._if,
    "Fn::Equals": Evaluator._equals,
    "Fn::Not": Evaluator._not,
    "Fn::And": Evaluator._and,
    "Fn::Or": Evaluator._or,
    "Fn::Base64": Evaluator._base64,
    "Fn::GetAZs": Evaluator._get_azs,
}
# Every function written here; each kind of template's Rules allows a subset.
FUNCTIONS = frozenset(_IMPLEMENTATIONS)
