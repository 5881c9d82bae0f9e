"""The one intrinsic-function evaluator under each context's rules: the assembly reader's CloudFormation set
and AWS IoT's provisioning-template set. Every function is run in both; what a context refuses is refused
with that context's error type and message, and every error names its place in the document."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import pytest

from emulator.assembly.reader import CLOUDFORMATION_RULES, AssemblyError
from emulator.intrinsics.evaluator import FUNCTIONS, MISSING, NO_VALUE, Evaluator, Rules
from emulator.provisioning.template_engine import PROVISIONING_RULES, SUPPORTED_FUNCTIONS
from emulator.provisioning.template_errors import TemplateError

WHERE = "DeviceConfiguration.v"
PARAMETERS = {"Serial": "acme-l3-0042", "Batch": "b7"}
MAPPINGS = {"Lines": {"acme": {"group": "acme-devices", "regions": ["eu", "us"]}}}
TABLE_ARN = "arn:aws:dynamodb:eu-central-1:123456789012:table/S-Table"
IOT_SUPPORTED = "(supported: Fn::FindInMap, Fn::Join, Fn::Select, Fn::Split, Fn::Sub, Ref)"


def cloudformation(node: Any, where: str = WHERE) -> Any:
    """The reader's context: pseudo parameters, Conditions and one resource, `Table`."""
    evaluator = Evaluator(
        CLOUDFORMATION_RULES,
        parameters=PARAMETERS,
        pseudo_parameters={
            "AWS::Region": "eu-central-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
        },
        mappings=MAPPINGS,
        conditions={
            "IsB7": {"Fn::Equals": [{"Ref": "Batch"}, "b7"]},
            "NotB7": {"Fn::Not": [{"Condition": "IsB7"}]},
            "Broken": {"Fn::Equals": ["only one"]},
        },
        resource_ref=lambda name: "S-Table" if name == "Table" else MISSING,
        resource_attribute=lambda name, attribute: (
            TABLE_ARN if (name, attribute) == ("Table", "Arn") else MISSING
        ),
    )
    return evaluator.evaluate(node, where)


def iot(node: Any, where: str = WHERE) -> Any:
    """The template engine's context: the request's parameters and the template's Mappings, nothing else."""
    return Evaluator(PROVISIONING_RULES, parameters=PARAMETERS, mappings=MAPPINGS).evaluate(node, where)


class Refused(NamedTuple):
    """The TemplateError message a provisioning template gets."""

    message: str


def refused(function: str) -> Refused:
    return Refused(
        f"{WHERE}.{function}: {function} is not supported by fleet provisioning templates {IOT_SUPPORTED}"
    )


class Case(NamedTuple):
    function: str
    node: Any
    cloudformation: Any
    iot: Any  # the value, or Refused


CASES = [
    Case("Ref", {"Ref": "Batch"}, "b7", "b7"),
    Case(
        "Ref",
        {"Ref": "AWS::Region"},
        "eu-central-1",
        Refused(
            f"Cannot resolve reference value: AWS::Region ({WHERE}.Ref refers to an undeclared parameter)"
        ),
    ),
    Case(
        "Ref",
        {"Ref": "Table"},
        "S-Table",
        Refused(f"Cannot resolve reference value: Table ({WHERE}.Ref refers to an undeclared parameter)"),
    ),
    Case("Fn::GetAtt", {"Fn::GetAtt": ["Table", "Arn"]}, TABLE_ARN, refused("Fn::GetAtt")),
    Case("Fn::GetAtt", {"Fn::GetAtt": "Table.Arn"}, TABLE_ARN, refused("Fn::GetAtt")),
    Case("Fn::Sub", {"Fn::Sub": "device-${Serial}"}, "device-acme-l3-0042", "device-acme-l3-0042"),
    Case(
        "Fn::Sub",
        {
            "Fn::Sub": [
                "${Line}/${Batch}",
                {"Line": {"Fn::Select": [1, {"Fn::Split": ["-", {"Ref": "Serial"}]}]}},
            ]
        },
        "l3/b7",
        "l3/b7",
    ),
    Case("Fn::Sub", {"Fn::Sub": "${!Literal}-${Batch}"}, "${Literal}-b7", "${Literal}-b7"),
    Case(
        "Fn::Sub",
        {"Fn::Sub": "arn:${AWS::Partition}:x:${Table}:${Table.Arn}"},
        f"arn:aws:x:S-Table:{TABLE_ARN}",
        Refused(
            f"{WHERE}.Fn::Sub: ${{AWS::Partition}} is neither a Fn::Sub variable nor a template parameter"
        ),
    ),
    Case(
        "Fn::Sub",
        {"Fn::Sub": "${Table.Arn}"},
        TABLE_ARN,
        Refused(f"{WHERE}.Fn::Sub: ${{Table.Arn}} is neither a Fn::Sub variable nor a template parameter"),
    ),
    Case(
        "Fn::Sub",
        {"Fn::Sub": ["port ${P}", {"P": 8883}]},
        "port 8883",
        Refused(f"{WHERE}.Fn::Sub[1].P: expected a string, got int 8883"),
    ),
    Case("Fn::Join", {"Fn::Join": ["-", ["a", {"Ref": "Batch"}]]}, "a-b7", "a-b7"),
    Case("Fn::Join", {"Fn::Join": [",", []]}, "", ""),
    Case(
        "Fn::Join",
        {"Fn::Join": ["", ["port:", 8883]]},
        "port:8883",
        Refused(f"{WHERE}.Fn::Join[1][1]: expected a string, got int 8883"),
    ),
    Case("Fn::Select", {"Fn::Select": ["2", {"Fn::Split": ["-", {"Ref": "Serial"}]}]}, "0042", "0042"),
    Case(
        "Fn::Split", {"Fn::Split": ["-", {"Ref": "Serial"}]}, ["acme", "l3", "0042"], ["acme", "l3", "0042"]
    ),
    Case(
        "Fn::FindInMap",
        {"Fn::FindInMap": ["Lines", {"Fn::Select": [0, {"Fn::Split": ["-", {"Ref": "Serial"}]}]}, "group"]},
        "acme-devices",
        "acme-devices",
    ),
    Case("Fn::FindInMap", {"Fn::FindInMap": ["Lines", "acme", "regions"]}, ["eu", "us"], ["eu", "us"]),
    Case("Fn::If", {"Fn::If": ["IsB7", "yes", "no"]}, "yes", refused("Fn::If")),
    Case("Fn::If", {"Fn::If": ["NotB7", "yes", {"Ref": "Batch"}]}, "b7", refused("Fn::If")),
    Case("Fn::Equals", {"Fn::Equals": [{"Ref": "Batch"}, "b7"]}, True, refused("Fn::Equals")),
    Case("Fn::Not", {"Fn::Not": [{"Condition": "IsB7"}]}, False, refused("Fn::Not")),
    Case(
        "Fn::And", {"Fn::And": [{"Condition": "IsB7"}, {"Fn::Equals": ["a", "a"]}]}, True, refused("Fn::And")
    ),
    Case(
        "Fn::Or", {"Fn::Or": [{"Condition": "NotB7"}, {"Fn::Equals": ["a", "b"]}]}, False, refused("Fn::Or")
    ),
    Case("Condition", {"Condition": "NotB7"}, False, refused("Condition")),
    Case("Fn::Base64", {"Fn::Base64": {"Ref": "Batch"}}, "Yjc=", refused("Fn::Base64")),
    Case(
        "Fn::GetAZs",
        {"Fn::GetAZs": ""},
        ["eu-central-1a", "eu-central-1b", "eu-central-1c"],
        refused("Fn::GetAZs"),
    ),
    Case(
        "Fn::GetAZs",
        {"Fn::GetAZs": "us-west-2"},
        ["us-west-2a", "us-west-2b", "us-west-2c"],
        refused("Fn::GetAZs"),
    ),
    # Outside both sets: the reader leaves a visible placeholder, a provisioning template is refused.
    Case(
        "Fn::ImportValue",
        {"Fn::ImportValue": "x"},
        "<Fn::ImportValue not resolved locally>",
        refused("Fn::ImportValue"),
    ),
]


def test_every_function_is_exercised_in_both_contexts() -> None:
    assert {case.function for case in CASES} >= FUNCTIONS
    assert PROVISIONING_RULES.functions == SUPPORTED_FUNCTIONS
    assert SUPPORTED_FUNCTIONS == {"Ref", "Fn::Join", "Fn::Select", "Fn::Split", "Fn::Sub", "Fn::FindInMap"}
    assert CLOUDFORMATION_RULES.functions == FUNCTIONS


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.function}:{case.node}")
def test_cloudformation_context(case: Case) -> None:
    assert cloudformation(case.node) == case.cloudformation


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.function}:{case.node}")
def test_provisioning_context(case: Case) -> None:
    if not isinstance(case.iot, Refused):
        assert iot(case.node) == case.iot
        return
    with pytest.raises(TemplateError) as caught:
        iot(case.node)
    assert caught.value.message == case.iot.message
    assert (caught.value.status_code, caught.value.error_code) == (400, "InvalidParameters")


# ----------------------------------------------------------------------------------------- AWS::NoValue


def test_no_value_removes_keys_and_items_in_cloudformation() -> None:
    assert cloudformation({"A": {"Ref": "AWS::NoValue"}, "B": "x"}) == {"B": "x"}
    assert cloudformation(["a", {"Ref": "AWS::NoValue"}, "b"]) == ["a", "b"]
    # The usual CDK shape: a property present only under a condition.
    assert cloudformation({"A": {"Fn::If": ["IsB7", {"Ref": "AWS::NoValue"}, "x"]}}) == {}
    assert cloudformation({"A": {"Fn::If": ["NotB7", {"Ref": "AWS::NoValue"}, "x"]}}) == {"A": "x"}
    assert cloudformation({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_no_value_is_no_parameter_of_a_provisioning_template() -> None:
    with pytest.raises(TemplateError, match=r"Cannot resolve reference value: AWS::NoValue"):
        iot({"A": {"Ref": "AWS::NoValue"}})


# ----------------------------------------------------------------------------------- objects with keys


def test_a_function_beside_other_keys() -> None:
    node = {"Ref": "Batch", "Other": "x"}
    with pytest.raises(TemplateError) as caught:
        iot(node)
    assert caught.value.message == (
        f"{WHERE}: an intrinsic function must be the only key of its object, found Other, Ref"
    )
    assert cloudformation(node) == node  # CloudFormation: only a one-key object is a function


def test_an_iam_condition_block_is_data_to_the_reader() -> None:
    statement = {"Effect": "Allow", "Condition": {"StringEquals": {"iot:ClientId": {"Ref": "Batch"}}}}
    assert cloudformation(statement) == {
        "Effect": "Allow",
        "Condition": {"StringEquals": {"iot:ClientId": "b7"}},
    }


# --------------------------------------------------------------------------------------------- errors

# The same malformed input fails in both contexts with the same message, each in its own error type.
SHARED_ERRORS = [
    ({"Fn::Select": [3, ["a", "b", "c"]]}, f"{WHERE}.Fn::Select: index 3 is out of range for a list of 3"),
    ({"Fn::Select": [-1, ["a"]]}, f"{WHERE}.Fn::Select: index -1 is out of range for a list of 1"),
    ({"Fn::Select": [1, ["a", None]]}, f"{WHERE}.Fn::Select: the selected value (index 1) is null"),
    ({"Fn::Select": [0]}, f"{WHERE}.Fn::Select: Fn::Select takes [index, [values...]]"),
    (
        {"Fn::Select": [True, ["a"]]},
        f"{WHERE}.Fn::Select[0]: the index must be a non-negative integer, got bool True",
    ),
    # "²" is a digit to str.isdigit() but not to int(): once a ValueError that escaped the engine.
    (
        {"Fn::Select": ["²", ["a"]]},
        f"{WHERE}.Fn::Select[0]: the index must be a non-negative integer, got str '²'",
    ),
    ({"Fn::Select": [0, "a,b"]}, f"{WHERE}.Fn::Select[1]: expected a list, got str 'a,b'"),
    ({"Fn::Split": ["", "abc"]}, f"{WHERE}.Fn::Split[0]: the delimiter must not be empty"),
    ({"Fn::Split": [","]}, f"{WHERE}.Fn::Split: Fn::Split takes [delimiter, string]"),
    ({"Fn::Join": "a"}, f"{WHERE}.Fn::Join: Fn::Join takes [delimiter, [values...]]"),
    ({"Fn::Join": ["-", "ab"]}, f"{WHERE}.Fn::Join[1]: expected a list, got str 'ab'"),
    ({"Fn::Sub": {"Ref": "Batch"}}, f"{WHERE}.Fn::Sub: the Fn::Sub template must be a literal string"),
    ({"Fn::Sub": ["${A}"]}, f"{WHERE}.Fn::Sub: Fn::Sub takes a string or [string, {{name: value}}]"),
    ({"Fn::FindInMap": ["Nope", "a", "b"]}, f"{WHERE}.Fn::FindInMap: no mapping named 'Nope' in Mappings"),
    ({"Fn::FindInMap": ["Lines", "x", "group"]}, f"{WHERE}.Fn::FindInMap: mapping 'Lines' has no key 'x'"),
    (
        {"Fn::FindInMap": ["Lines", "acme", "x"]},
        f"{WHERE}.Fn::FindInMap: mapping 'Lines'.'acme' has no key 'x'",
    ),
    (
        {"Fn::FindInMap": ["Lines", "acme"]},
        f"{WHERE}.Fn::FindInMap: Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]",
    ),
]


@pytest.mark.parametrize("node, message", SHARED_ERRORS)
def test_shared_errors_in_each_context_type(node: Any, message: str) -> None:
    with pytest.raises(AssemblyError) as from_reader:
        cloudformation(node)
    assert str(from_reader.value) == message
    with pytest.raises(TemplateError) as from_template:
        iot(node)
    assert from_template.value.message == message


@pytest.mark.parametrize(
    "node, message",
    [
        ({"Ref": "Nope"}, f"{WHERE}.Ref: Ref to unknown resource Nope"),
        (
            {"Ref": ["Batch"]},
            f"{WHERE}.Ref: Ref takes the name of a parameter, a pseudo parameter or a resource",
        ),
        ({"Fn::GetAtt": ["Nope", "Arn"]}, f"{WHERE}.Fn::GetAtt: Fn::GetAtt of unknown resource Nope"),
        (
            {"Fn::GetAtt": "NoDot"},
            f'{WHERE}.Fn::GetAtt: Fn::GetAtt takes [LogicalId, Attribute] or "LogicalId.Attribute"',
        ),
        (
            {"Fn::Sub": "${Nope}"},
            f"{WHERE}.Fn::Sub: ${{Nope}} is neither a Fn::Sub variable, a parameter nor a resource",
        ),
        ({"Fn::If": ["Nope", "a", "b"]}, f"{WHERE}.Fn::If[0]: unknown condition Nope"),
        (
            {"Fn::If": ["IsB7", "a"]},
            f"{WHERE}.Fn::If: Fn::If takes [ConditionName, value if true, value if false]",
        ),
        ({"Fn::Not": [{"Condition": "IsB7"}, "x"]}, f"{WHERE}.Fn::Not: Fn::Not takes [condition]"),
        ({"Fn::And": []}, f"{WHERE}.Fn::And: Fn::And takes [condition, ...]"),
        ({"Fn::Or": "IsB7"}, f"{WHERE}.Fn::Or: Fn::Or takes [condition, ...]"),
        # An error inside the Conditions section names the condition, not the place that asked for it.
        ({"Condition": "Broken"}, "Conditions.Broken.Fn::Equals: Fn::Equals takes [value, value]"),
    ],
)
def test_cloudformation_errors_name_the_place(node: Any, message: str) -> None:
    with pytest.raises(AssemblyError) as caught:
        cloudformation(node)
    assert str(caught.value) == message


def test_provisioning_ref_errors_keep_their_wording() -> None:
    with pytest.raises(TemplateError) as caught:
        iot({"Ref": ["Batch"]})
    assert caught.value.message == f"{WHERE}.Ref: Ref takes a parameter name"


def test_nested_errors_carry_the_whole_path_in_both_contexts() -> None:
    node = {"Outer": [{"k": "v"}, {"Fn::Join": ["", ["a", {"Fn::Select": [4, ["b"]]}]]}]}
    message = (
        "Resources.R.Properties.Outer[1].Fn::Join[1][1].Fn::Select: index 4 is out of range for a list of 1"
    )
    with pytest.raises(AssemblyError, match=r"^Resources\.R\.Properties\.Outer\[1\]") as from_reader:
        cloudformation(node, "Resources.R.Properties")
    assert str(from_reader.value) == message
    with pytest.raises(TemplateError) as from_template:
        iot(node, "Resources.R.Properties")
    assert from_template.value.message == message


def test_rules_cannot_allow_a_function_nobody_implemented() -> None:
    with pytest.raises(ValueError, match="no evaluator for Fn::Cidr"):
        replace(PROVISIONING_RULES, functions=frozenset({"Ref", "Fn::Cidr"}))


def test_a_context_without_resources_or_pseudo_parameters_resolves_only_its_parameters() -> None:
    bare = Rules(
        functions=FUNCTIONS,
        error=RuntimeError,
        unsupported=lambda function, where: None,
        lone_function=True,
        strict_text=True,
        no_value=False,
        bad_ref="{where}: bad",
        unknown_ref="{where}: no {name}",
        unknown_sub="{where}: no ${{{name}}}",
    )
    evaluator = Evaluator(bare, parameters={"A": "1"})
    assert evaluator.evaluate({"Fn::Sub": "${A}"}, "x") == "1"
    for node, message in [
        ({"Ref": "AWS::Region"}, "x.Ref: no AWS::Region"),
        ({"Fn::GetAtt": ["R", "Arn"]}, "x.Fn::GetAtt: Fn::GetAtt of unknown resource R"),
        ({"Fn::Sub": "${R.Arn}"}, "x.Fn::Sub: no ${R.Arn}"),
        ({"Condition": "C"}, "x.Condition: unknown condition C"),
    ]:
        with pytest.raises(RuntimeError) as caught:
            evaluator.evaluate(node, "x")
        assert str(caught.value) == message
