"""The load-test stack: it only composes the constructs. The backend's stack never depends on it."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.loadtest.config import LoadTestConfig
from infra.loadtest.network import LoadTestNetwork
from infra.loadtest.reports import ReportBucket
from infra.loadtest.tasks import LoadTestTasks

# Stack outputs that `python -m device_sim fargate` reads to start and stop a run.
OUTPUTS = (
    "ClusterName",
    "MasterTaskDefinitionArn",
    "WorkerTaskDefinitionArn",
    "SubnetIds",
    "MasterSecurityGroupId",
    "WorkerSecurityGroupId",
    "ReportBucketName",
    "LogGroupName",
)


class LoadTestStack(Stack):
    def __init__(self, scope: Construct, *, config: LoadTestConfig) -> None:
        super().__init__(
            scope,
            config.stack_name,
            stack_name=config.stack_name,
            description="Fleet provisioning load test: Locust master and workers on ECS Fargate (opt-in)",
        )
        network = LoadTestNetwork(self, "Network", log_retention_days=config.log_retention_days)
        reports = ReportBucket(self, "Reports", retention_days=config.report_retention_days)
        tasks = LoadTestTasks(self, "Tasks", config=config, vpc=network.vpc, bucket=reports.bucket)
        values = {
            "ClusterName": tasks.cluster.cluster_name,
            "MasterTaskDefinitionArn": tasks.master.task_definition_arn,
            "WorkerTaskDefinitionArn": tasks.worker.task_definition_arn,
            "SubnetIds": ",".join(s.subnet_id for s in network.vpc.public_subnets),
            "MasterSecurityGroupId": network.master_group.security_group_id,
            "WorkerSecurityGroupId": network.worker_group.security_group_id,
            "ReportBucketName": reports.bucket.bucket_name,
            "LogGroupName": tasks.logs.log_group_name,
        }
        for name in OUTPUTS:
            CfnOutput(self, name, value=values[name])
