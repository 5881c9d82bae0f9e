"""The Locust master and worker task definitions, and the cluster they run in.

The claim credential reaches only the workers, only at run time: ECS reads the secret's `certificatePem` and
`privateKey` fields into the container's environment (the task definition holds the secret's ARN, never its
value), and the container's entry point moves them into 0600 files before Locust starts. The master holds no
secret; it may only put reports under reports/ in the report bucket. Neither task's role can do anything
else; the execution role (used by ECS itself) may pull the image, write the task's logs and read that one
secret.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.loadtest.config import LoadTestConfig
from infra.loadtest.image import loadtest_image
from infra.loadtest.network import LOCUST_MASTER_PORT
from infra.loadtest.reports import REPORTS_PREFIX
from infra.retention import retention

MASTER_CONTAINER = "master"
WORKER_CONTAINER = "worker"
# Environment names the container entry point (device_sim/locust/container.py) reads the claim from.
ENV_CLAIM_CERTIFICATE = "CLAIM_CERTIFICATE_PEM"
ENV_CLAIM_KEY = "CLAIM_PRIVATE_KEY"
STOP_TIMEOUT_S = 60  # SIGTERM to SIGKILL: time for the master to write and upload the partial report


class LoadTestTasks(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: LoadTestConfig,
        vpc: ec2.IVpc,
        bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.cluster = ecs.Cluster(self, "Cluster", vpc=vpc)
        Validations.of(self.cluster).acknowledge(
            Acknowledgment(
                id="AwsSolutions-ECS4",
                reason="A load test measures with Locust's statistics and the project's report; Container "
                "Insights would add per-task metrics, billed by the month, to a cluster that runs for hours.",
            )
        )
        self.logs = logs.LogGroup(
            self, "Logs", retention=retention(config.log_retention_days), removal_policy=RemovalPolicy.DESTROY
        )
        image = loadtest_image()
        secret = secretsmanager.Secret.from_secret_name_v2(self, "ClaimSecret", config.claim_secret_name)

        self.master = ecs.FargateTaskDefinition(
            self, "Master", cpu=config.master_cpu, memory_limit_mib=config.master_memory_mib
        )
        self.master.add_container(
            MASTER_CONTAINER,
            image=image,
            command=["master"],
            port_mappings=[ecs.PortMapping(container_port=LOCUST_MASTER_PORT)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="master", log_group=self.logs),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_S),
        )
        self.master.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{REPORTS_PREFIX}*")]
            )
        )
        bucket_id = stack.get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
        Validations.of(self.master.task_role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{REPORTS_PREFIX}*]",
                reason="The master writes each run's report under reports/<run id>/, a name chosen when the "
                "run starts; it may only put objects, and only there.",
            )
        )

        self.worker = ecs.FargateTaskDefinition(
            self, "Worker", cpu=config.worker_cpu, memory_limit_mib=config.worker_memory_mib
        )
        self.worker.add_container(
            WORKER_CONTAINER,
            image=image,
            command=["worker"],
            secrets={
                ENV_CLAIM_CERTIFICATE: ecs.Secret.from_secrets_manager(secret, "certificatePem"),
                ENV_CLAIM_KEY: ecs.Secret.from_secrets_manager(secret, "privateKey"),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=self.logs),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_S),
        )
        self._allow_decrypt(stack, config)
        for task in (self.master, self.worker):
            _acknowledge(task)

    def _allow_decrypt(self, stack: Stack, config: LoadTestConfig) -> None:
        """The secret is encrypted with the backend's KMS key: ECS may decrypt it, through Secrets Manager."""
        execution_role = self.worker.obtain_execution_role()
        secret_arn = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{config.claim_secret_name}-??????",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        execution_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[config.claim_secret_key_arn or "*"],
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"},
                    "StringLike": {"kms:EncryptionContext:SecretARN": secret_arn},
                },
            )
        )
        if config.claim_secret_key_arn is None:
            Validations.of(execution_role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="kms:Decrypt of the claim secret's key, which lives in the backend's stack (this "
                    "stack does not depend on it); the conditions allow it only through Secrets Manager and "
                    "only for the claim secret. Set loadtest.claim_secret_key_arn to name the key instead.",
                )
            )


def _acknowledge(task: ecs.FargateTaskDefinition) -> None:
    Validations.of(task).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="ecr:GetAuthorizationToken, which ECS's execution role needs to pull the image, has no "
            "resource-level permissions (AWS's IAM reference for Amazon ECR).",
        )
    )
