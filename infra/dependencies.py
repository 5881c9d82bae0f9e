"""Trim the DependsOn CDK writes on a Lambda function that a GetAtt already enforces (cfn-lint W3005)."""

from __future__ import annotations

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_lambda as lambda_


def depend_on_role_policy_only(function: lambda_.Function) -> None:
    """CDK makes a function depend on its role *and* the role's policy; `Role: GetAtt` covers the role.

    The policy dependency stays: without it the function could be invoked before it may use the table.
    Call after the last grant (the default policy exists from the first one).
    """
    role = function.role
    assert role is not None and role.node.try_find_child("DefaultPolicy") is not None
    policy = role.node.find_child("DefaultPolicy").node.default_child
    assert isinstance(policy, CfnResource)
    cfn_function = function.node.default_child
    assert isinstance(cfn_function, CfnResource)
    cfn_function.add_override("DependsOn", [Stack.of(function).get_logical_id(policy)])
