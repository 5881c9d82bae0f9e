"""cdk-nag AwsSolutions through CDK's policy validation: any unacknowledged finding fails synth."""

from __future__ import annotations

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks


def add_nag_checks(app: App) -> None:
    # Acknowledgments sit beside the constructs they concern, each with its reason.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
