"""`python -m device_sim fargate start|stop|status`: a Locust run on the load-test stack (infra/loadtest).

`start` runs the master task, waits until it has an address, then runs the workers pointed at it (ECS takes at
most 10 tasks per RunTask call). The master's options are those of `python -m device_sim locust` (real AWS:
`--endpoint`, `--template-name`, `--devices` or a serials file in the image...); the CA and claim paths are
the image's fixed ones, where each worker's entry point writes the claim credential from Secrets Manager.
`stop` stops the master first (it then writes and uploads the partial report) and the workers after it.
Every task is marked `startedBy=device-sim-loadtest` and grouped by run.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from device_sim.errors import Refused, UserError
from device_sim.locust.container import AMAZON_ROOT_CA, CLAIM_CERT_FILE, CLAIM_KEY_FILE

STARTED_BY = "device-sim-loadtest"
GROUP_PREFIX = "device-sim:"
MASTER_CONTAINER, WORKER_CONTAINER = "master", "worker"  # infra/loadtest/tasks.py
RUN_TASK_MAX = 10  # ECS RunTask's `count` limit
OUTPUT_KEYS = (
    "ClusterName",
    "MasterTaskDefinitionArn",
    "WorkerTaskDefinitionArn",
    "SubnetIds",
    "MasterSecurityGroupId",
    "WorkerSecurityGroupId",
    "ReportBucketName",
)


@dataclass(frozen=True)
class Stack:
    cluster: str
    master_task_definition: str
    worker_task_definition: str
    subnets: list[str]
    master_security_group: str
    worker_security_group: str
    report_bucket: str


def stack_outputs(cloudformation: Any, stack_name: str) -> Stack:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # noqa: BLE001 - botocore's ClientError: say which stack, in one line
        raise Refused(f"cannot read the stack {stack_name}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [key for key in OUTPUT_KEYS if key not in outputs]
    if missing:
        raise UserError(f"the stack {stack_name} is not a load-test stack (no output {', '.join(missing)})")
    return Stack(
        cluster=outputs["ClusterName"],
        master_task_definition=outputs["MasterTaskDefinitionArn"],
        worker_task_definition=outputs["WorkerTaskDefinitionArn"],
        subnets=outputs["SubnetIds"].split(","),
        master_security_group=outputs["MasterSecurityGroupId"],
        worker_security_group=outputs["WorkerSecurityGroupId"],
        report_bucket=outputs["ReportBucketName"],
    )


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def master_arguments(stack: Stack, run_id: str, workers: int, options: list[str]) -> list[str]:
    return [
        "master",
        "--upload",
        f"s3://{stack.report_bucket}/reports/{run_id}/",
        "--",
        "--expect-workers",
        str(workers),
        "--ca-file",
        str(AMAZON_ROOT_CA),
        "--claim-cert-file",
        str(CLAIM_CERT_FILE),
        "--claim-key-file",
        str(CLAIM_KEY_FILE),
        *options,
    ]


def _run(
    ecs: Any,
    stack: Stack,
    *,
    definition: str,
    group: str,
    security_group: str,
    container: str,
    command: list[str],
    count: int,
) -> list[str]:
    response = ecs.run_task(
        cluster=stack.cluster,
        taskDefinition=definition,
        launchType="FARGATE",
        count=count,
        startedBy=STARTED_BY,
        group=group,
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": stack.subnets,
                "securityGroups": [security_group],
                # Public subnets without a NAT gateway: a public address is how a task reaches ECR and IoT.
                "assignPublicIp": "ENABLED",
            }
        },
        overrides={"containerOverrides": [{"name": container, "command": command}]},
    )
    if response.get("failures"):
        raise Refused(f"ECS could not start the {container}: {response['failures'][0].get('reason')}")
    return [task["taskArn"] for task in response["tasks"]]


def private_ip(ecs: Any, cluster: str, task_arn: str) -> str:
    task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return str(detail["value"])
    raise Refused(f"the master task {task_arn} has no private address")


def start(
    ecs: Any, stack: Stack, workers: int, options: list[str], run_id: str | None = None, wait: bool = True
) -> dict[str, Any]:
    """Start the master, then the workers pointed at it; what was started."""
    run_id = run_id or new_run_id()
    group = GROUP_PREFIX + run_id
    (master,) = _run(
        ecs,
        stack,
        definition=stack.master_task_definition,
        group=group,
        security_group=stack.master_security_group,
        container=MASTER_CONTAINER,
        command=master_arguments(stack, run_id, workers, options),
        count=1,
    )
    if wait:
        ecs.get_waiter("tasks_running").wait(cluster=stack.cluster, tasks=[master])
    address = private_ip(ecs, stack.cluster, master)
    started: list[str] = []
    while len(started) < workers:
        started += _run(
            ecs,
            stack,
            definition=stack.worker_task_definition,
            group=group,
            security_group=stack.worker_security_group,
            container=WORKER_CONTAINER,
            command=["worker", "--", "--master-host", address],
            count=min(RUN_TASK_MAX, workers - len(started)),
        )
    return {
        "run": run_id,
        "master": master,
        "master_address": address,
        "workers": started,
        "report": f"s3://{stack.report_bucket}/reports/{run_id}/",
    }


def running_tasks(ecs: Any, stack: Stack, run_id: str | None = None) -> list[dict[str, Any]]:
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=stack.cluster, startedBy=STARTED_BY):
        arns += page["taskArns"]
    tasks: list[dict[str, Any]] = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(cluster=stack.cluster, tasks=arns[i : i + 100])["tasks"]
    tasks = [t for t in tasks if t.get("lastStatus") != "STOPPED"]
    if run_id is not None:
        tasks = [t for t in tasks if t.get("group") == GROUP_PREFIX + run_id]
    return tasks


def stop(ecs: Any, stack: Stack, run_id: str | None = None, wait: bool = True) -> dict[str, list[str]]:
    """Stop the master(s) first (each writes and uploads its partial report), then the workers."""
    tasks = running_tasks(ecs, stack, run_id)
    masters = [t["taskArn"] for t in tasks if t["taskDefinitionArn"] == stack.master_task_definition]
    workers = [t["taskArn"] for t in tasks if t["taskArn"] not in masters]
    for arn in masters:
        ecs.stop_task(cluster=stack.cluster, task=arn, reason="device_sim fargate stop")
    if masters and wait:
        ecs.get_waiter("tasks_stopped").wait(cluster=stack.cluster, tasks=masters)
    for arn in workers:
        ecs.stop_task(cluster=stack.cluster, task=arn, reason="device_sim fargate stop")
    return {"masters": masters, "workers": workers}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
