"""What the emulator builds from the stack at start-up, beside the broker: the stack's resources in the
registry, the hook functions and their runners (in the hook process, or on threads), and endpoint.json.

With `--persist` a restart finds the saved state already holding the stack's resources: each is
created when missing, a policy whose document the re-synthesized stack changed gets the stack's
document as its new default version, and everything else the state holds is kept as it was.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from emulator.assembly.reader import AssemblyError, StackModel
from emulator.awsapi.server import LocalAwsServer
from emulator.provisioning import hook as hooks
from emulator.provisioning.hook_host import HookHost
from emulator.rules.functions import Invoke

log = logging.getLogger("emulator")

ENV_SERIAL_TABLE = "SERIAL_TABLE_NAME"  # infra.constants.ENV_SERIAL_TABLE
ENV_THING_NAME_PREFIX = "THING_NAME_PREFIX"  # infra.constants.ENV_THING_NAME_PREFIX
ENV_ROTATION_TEMPLATE = "ROTATION_TEMPLATE_NAME"  # infra.constants.ENV_ROTATION_TEMPLATE
HOOK_HANDLER = "provisioning_hook.handler.lambda_handler"  # infra.constants.HOOK_HANDLER
MAX_POLICY_VERSIONS = 5  # AWS IoT's limit, which moto enforces too


def lambda_specs(model: StackModel) -> dict[str, hooks.LambdaSpec]:
    """The hook functions the templates name, by ARN, each with its code asset."""
    specs: dict[str, hooks.LambdaSpec] = {}
    for template in model.templates:
        if not template.hook_function_arn or template.hook_function_arn in specs:
            continue
        function = model.hook_for(template)
        if function is None or function.asset_dir is None or not function.asset_dir.is_dir():
            raise AssemblyError(
                f"template {template.name}: hook {template.hook_function_arn} has no code asset "
                "in the cloud assembly"
            )
        specs[template.hook_function_arn] = _lambda_spec(function)
    return specs


def runnable_functions(model: StackModel) -> set[str]:
    """The ARNs of the stack's functions whose code asset is in the assembly (what a rule may invoke)."""
    return {f.arn for f in model.functions if f.asset_dir is not None and f.asset_dir.is_dir()}


def target_specs(model: StackModel, arns: set[str]) -> dict[str, hooks.LambdaSpec]:
    """The functions topic rules and schedules invoke, by ARN (run beside the hooks)."""
    return {f.arn: _lambda_spec(f) for f in model.functions if f.arn in arns}


def _lambda_spec(function: Any) -> hooks.LambdaSpec:  # reader.FunctionSpec
    return hooks.LambdaSpec(
        asset_dir=str(function.asset_dir),
        handler=function.handler,
        environment=function.environment,
        function_name=function.name,
        function_arn=function.arn,
        memory_mb=function.memory_mb,
    )


def start_hooks(
    model: StackModel,
    options: Any,  # runtime.EmulatorOptions
    aws: LocalAwsServer,
    region: str,
    runners: dict[str, hooks.Hook],
    cleanups: list[Callable[[], None]],
    saved: dict[str, Any] | None,
    targets: dict[str, hooks.LambdaSpec] | None = None,
) -> tuple[HookHost | None, Invoke | None]:
    """One runner per hook function of the stack; the hook process (with the serial table) if isolated.
    `targets` (the functions of topic rules and schedules) run where the hooks run; the invoker of
    those comes back beside the hook process (None when the stack's functions do not run here)."""
    lambdas = lambda_specs(model) if options.hook is None and options.use_stack_hook else {}
    targets = dict(targets or {}) if lambdas else {}
    hook_host: HookHost | None = None
    if lambdas and options.hook_isolation == "process":
        # The serial table lives with the hook (provisioning/hook_host.py); this endpoint forwards to it.
        hook_host = HookHost(
            list({**lambdas, **targets}.values()),
            iot_endpoint_url=aws.url,
            region=region,
            workers=options.hook_workers,
            initial_state=saved.get("dynamodb") if saved else None,
        )
        cleanups.append(hook_host.close)
        aws.route("dynamodb", hook_host.dynamodb_url)
        log.info(
            "hook process %s: the hook Lambda, and DynamoDB at %s", hook_host.pid, hook_host.dynamodb_url
        )
    for arn, lambda_spec in lambdas.items():
        if hook_host is not None:
            runner = hooks.hosted_lambda_hook(hook_host, lambda_spec, timeout_s=options.hook_timeout_s)
        else:
            aws.install_shortcut()
            runner = hooks.in_process_lambda_hook(
                lambda_spec,
                aws_endpoint_url=aws.url,
                region=region,
                workers=options.hook_workers,
                timeout_s=options.hook_timeout_s,
            )
        cleanups.append(runner.close)
        runners[arn] = runner
    return hook_host, _target_invoker(targets, hook_host, aws, region, cleanups)


def _target_invoker(
    targets: dict[str, hooks.LambdaSpec],
    hook_host: HookHost | None,
    aws: LocalAwsServer,
    region: str,
    cleanups: list[Callable[[], None]],
) -> Invoke | None:
    """Invoke(function ARN, event) for the rules' and schedules' functions: in the hook process, or on
    threads of this one (--hook-isolation thread), as the hooks."""
    if not targets:
        return None
    if hook_host is not None:
        return hook_host.invoke
    aws.install_shortcut()
    loaded = {
        arn: hooks.load_lambda(spec, hooks.lambda_environment(spec, aws_endpoint_url=aws.url, region=region))
        for arn, spec in targets.items()
    }
    pool = ThreadPoolExecutor(2, thread_name_prefix="functions")
    cleanups.append(lambda: pool.shutdown(wait=False, cancel_futures=True))

    def invoke(arn: str, event: dict[str, Any]) -> Future[Any]:
        return pool.submit(loaded[arn], event)

    return invoke


def create_resources(model: StackModel, aws_url: str) -> None:
    """Policies, groups, types, attachments and tables, through the public API (boto3 at the emulator's
    own AWS endpoint); each only when missing, so that a restored state is completed, not duplicated."""
    import boto3
    from botocore.exceptions import ClientError

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=model.region
    )
    iot = session.client("iot", endpoint_url=aws_url)
    dynamodb = session.client("dynamodb", endpoint_url=aws_url)

    def exists(error: ClientError) -> bool:
        return error.response["Error"]["Code"] in ("ResourceAlreadyExistsException", "ResourceInUseException")

    for policy in model.policies:
        try:
            iot.create_policy(policyName=policy.name, policyDocument=json.dumps(policy.document))
        except ClientError as error:
            if not exists(error):
                raise
            _update_policy(iot, policy.name, policy.document)
    for group in model.thing_groups:
        try:
            iot.create_thing_group(thingGroupName=group)
        except ClientError as error:
            if not exists(error):
                raise
    known_types = {t["thingTypeName"] for t in iot.list_thing_types()["thingTypes"]}
    for thing_type in model.thing_types:
        if thing_type not in known_types:  # moto would replace an existing type, orphaning its things
            iot.create_thing_type(thingTypeName=thing_type)
    for attachment in model.attachments:
        iot.attach_policy(policyName=attachment.policy_name, target=attachment.principal_arn)
    for table in model.tables:
        indexes = [_index(index) for index in table.global_secondary_indexes]
        try:
            dynamodb.create_table(
                TableName=table.name,
                KeySchema=table.key_schema,
                AttributeDefinitions=table.attribute_definitions,
                BillingMode="PAY_PER_REQUEST",
                **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
            )
        except ClientError as error:
            if not exists(error):
                raise
            _add_missing_indexes(dynamodb, table.name, table.attribute_definitions, indexes)


def _index(index: dict[str, Any]) -> dict[str, Any]:
    """A GlobalSecondaryIndexes entry as CreateTable takes it (on-demand: no throughput)."""
    return {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}


def _add_missing_indexes(
    dynamodb: Any, name: str, attributes: list[dict[str, str]], indexes: list[dict[str, Any]]
) -> None:
    """A restored table (--persist) from before the stack had an index (the rotations index) gets it."""
    described = dynamodb.describe_table(TableName=name)["Table"]
    present = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
    for index in indexes:
        if index["IndexName"] not in present:
            dynamodb.update_table(
                TableName=name,
                AttributeDefinitions=attributes,
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )
            log.info(
                "table %s: index %s added (the stack has it, the saved state had not)",
                name,
                index["IndexName"],
            )


def _update_policy(iot: Any, name: str, document: dict[str, Any]) -> None:
    """A saved policy whose document the stack changed: the stack's document becomes the default."""
    current = json.loads(iot.get_policy(policyName=name)["policyDocument"])
    if current == document:
        return
    versions = iot.list_policy_versions(policyName=name)["policyVersions"]
    if len(versions) >= MAX_POLICY_VERSIONS:
        oldest = min((v for v in versions if not v["isDefaultVersion"]), key=lambda v: int(v["versionId"]))
        iot.delete_policy_version(policyName=name, policyVersionId=oldest["versionId"])
    iot.create_policy_version(policyName=name, policyDocument=json.dumps(document), setAsDefault=True)
    log.info(
        "policy %s: the stack's document differs from the saved one; it is now the default version", name
    )


def claim_client_id_pattern(model: StackModel) -> str | None:
    """The claim policy's iot:Connect client pattern (e.g. `prov-*`), for the simulator."""
    claim_policies = {a.policy_name for a in model.attachments}
    for policy in model.policies:
        if policy.name not in claim_policies:
            continue
        statements = policy.document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            actions = statement.get("Action", [])
            if "iot:Connect" in (actions if isinstance(actions, list) else [actions]):
                resources = statement.get("Resource", [])
                for resource in resources if isinstance(resources, list) else [resources]:
                    match = re.search(r":client/(.+)$", str(resource))
                    if match:
                        return match.group(1)
    return None


def endpoint_document(
    model: StackModel, claims: dict[str, Any], state: Path, host: str, port: int, aws_url: str
) -> dict[str, Any]:
    """endpoint.json: where the broker and the AWS API are, and the claim credentials' files.
    `rotation_template_name` only when the stack has one (the hook's ROTATION_TEMPLATE_NAME)."""
    hook_env = next((f.environment for f in model.functions if f.handler == HOOK_HANDLER), {})
    names = [t.name for t in model.templates]
    rotation = hook_env.get(ENV_ROTATION_TEMPLATE) or None
    rotation = rotation if rotation in names else None
    template = next((t for t in model.templates if t.name != rotation), model.templates[0])
    serial_table = hook_env.get(ENV_SERIAL_TABLE) or (model.tables[0].name if model.tables else None)
    first_active = next((c for c in claims.values() if c.active), None)
    return {
        "host": host,
        "port": port,
        "ca_file": str(state / "ca.pem"),
        "claim_cert_file": str(first_active.cert_file) if first_active else None,
        "claim_key_file": str(first_active.key_file) if first_active else None,
        "template_name": template.name,
        "region": model.region,
        "aws_endpoint_url": aws_url,
        "serial_table": serial_table,
        "account_id": model.account_id,
        "claim_client_id_pattern": claim_client_id_pattern(model),
        "claims": {
            c.name: {
                "cert_file": str(c.cert_file),
                "key_file": str(c.key_file),
                "certificate_id": c.certificate_id,
                "active": c.active,
            }
            for c in claims.values()
        },
        "thing_name_prefix": hook_env.get(ENV_THING_NAME_PREFIX, ""),
        **({"rotation_template_name": rotation} if rotation else {}),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)  # readers never see a half-written file
