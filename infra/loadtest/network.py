"""The load test's network: public subnets and no NAT gateway (tasks get public IPs: nothing billed by the
hour but the tasks), rejected traffic in flow logs, and security groups that open only what Locust and the
devices use: workers to the master on Locust's port, everything out on 443 (ECR, S3, Secrets Manager, logs)
and 8883 (AWS IoT's MQTT over TLS), nothing in from the internet."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.retention import retention

LOCUST_MASTER_PORT = 5557
MQTT_TLS_PORT = 8883
HTTPS_PORT = 443


class LoadTestNetwork(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
            ],
        )
        flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=retention(log_retention_days), removal_policy=RemovalPolicy.DESTROY
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.master_group = ec2.SecurityGroup(
            self, "Master", vpc=self.vpc, description="Locust master", allow_all_outbound=False
        )
        self.worker_group = ec2.SecurityGroup(
            self,
            "Workers",
            vpc=self.vpc,
            description="Locust workers (simulated devices)",
            allow_all_outbound=False,
        )
        anywhere = ec2.Peer.any_ipv4()
        self.master_group.add_egress_rule(anywhere, ec2.Port.tcp(HTTPS_PORT), "ECR, S3 and CloudWatch Logs")
        self.worker_group.add_egress_rule(anywhere, ec2.Port.tcp(HTTPS_PORT), "ECR, Secrets Manager, logs")
        self.worker_group.add_egress_rule(
            anywhere, ec2.Port.tcp(MQTT_TLS_PORT), "AWS IoT Core, MQTT over TLS"
        )
        self.worker_group.add_egress_rule(
            self.master_group, ec2.Port.tcp(LOCUST_MASTER_PORT), "Locust workers to their master"
        )
        self.master_group.add_ingress_rule(
            self.worker_group, ec2.Port.tcp(LOCUST_MASTER_PORT), "Locust workers to their master"
        )
