"""Where the master puts each run's report (JSON, HTML, Locust's CSV): a private bucket, TLS only."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_s3 as s3
from constructs import Construct

REPORTS_PREFIX = "reports/"


class ReportBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(prefix=REPORTS_PREFIX, expiration=Duration.days(retention_days))
            ],
            # Reports outlive the stack: `aws s3 rb s3://<bucket> --force` deletes them (docs/loadtest.md).
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(self.bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="Only the stack's master task writes here, under reports/; access logs would need a "
                "second bucket for a few load-test reports, and CloudTrail records the API calls.",
            )
        )
