"""Alarms on the hook and on claim misuse, sent to an encrypted SNS topic, and a dashboard."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra import constants as c
from infra.claims import ClaimCertificate
from infra.config import FleetConfig
from infra.dashboard import build_dashboard
from infra.names import pascal

PERIOD = Duration.minutes(5)
# AWS gives the hook 5 s; a p99 at 4 s means devices are about to be denied by timeout.
DURATION_ALARM_MS = 4000
# FILL: a period with only denials is a 100 % denial rate, not a missing data point.
DENIAL_RATE_EXPRESSION = "100 * FILL(denied, 0) / (FILL(allowed, 0) + FILL(denied, 0))"


def hook_metric(config: FleetConfig, name: str, **dimensions: str) -> cw.Metric:
    """A metric the hook emits (EMF): namespace from config, dimension service=provisioning-hook."""
    return cw.Metric(
        namespace=config.metrics_namespace,
        metric_name=name,
        statistic="Sum",
        period=PERIOD,
        dimensions_map={"service": c.HOOK_SERVICE_NAME, **dimensions},
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FleetConfig,
        hook: lambda_.IFunction,
        claims: Sequence[ClaimCertificate],
        key: kms.IKey,
        retirer: lambda_.IFunction | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "AlarmTopic", master_key=key, enforce_ssl=True, display_name="Fleet provisioning alarms"
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        allowed = hook_metric(config, c.METRIC_ALLOWED)
        denied = hook_metric(config, c.METRIC_DENIED)
        self.denial_rate = cw.MathExpression(
            expression=DENIAL_RATE_EXPRESSION,
            using_metrics={"allowed": allowed, "denied": denied},
            period=PERIOD,
            label="Denial rate (%)",
        )
        duration_p99 = hook.metric_duration(statistic="p99", period=PERIOD)
        errors = hook.metric_errors(statistic="Sum", period=PERIOD)

        self.alarms: list[cw.Alarm] = [
            self._alarm(
                "HookErrors",
                errors,
                threshold=1,
                description="The pre-provisioning hook failed: every failure denies a device.",
            ),
            self._alarm(
                "HookDuration",
                duration_p99,
                threshold=DURATION_ALARM_MS,
                description="Hook p99 duration nears AWS's 5 s limit, after which devices are denied.",
            ),
            self._alarm(
                "DenialRate",
                self.denial_rate,
                threshold=config.denial_rate_alarm_percent,
                description="Many provisioning requests are denied: unknown serials, a misconfigured "
                "factory line or a leaked claim credential being tried.",
            ),
        ]
        claim_metrics: dict[str, cw.Metric] = {}
        for claim in claims:
            metric = hook_metric(config, c.METRIC_ALLOWED_BY_CLAIM, ClaimCertificateId=claim.certificate_id)
            claim_metrics[claim.name] = metric
            self.alarms.append(
                self._alarm(
                    f"ProvisioningSpike{pascal(claim.name)}",
                    metric,
                    threshold=config.provisioning_spike_per_5min,
                    comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    description=f"More devices than expected provisioned with claim '{claim.name}' "
                    f"in 5 minutes: a leaked claim? Set it inactive in cdk.json and deploy.",
                )
            )
        rotation_metrics: dict[str, cw.IMetric] = {}
        if retirer is not None:
            rotation_metrics = self._rotation_alarms(config, retirer)
        self.dashboard = build_dashboard(
            self,
            config=config,
            allowed=allowed,
            denied=denied,
            denial_rate=self.denial_rate,
            duration_p99=duration_p99,
            errors=errors,
            claim_metrics=claim_metrics,
            alarms=self.alarms,
            rotation_metrics=rotation_metrics,
        )

    def _rotation_alarms(self, config: FleetConfig, retirer: lambda_.IFunction) -> dict[str, cw.IMetric]:
        """Rotations refused above a rate, a failing retirer, and the certificates that expire soon."""
        allowed = hook_metric(config, c.METRIC_ROTATION_ALLOWED)
        denied = hook_metric(config, c.METRIC_ROTATION_DENIED)
        failure_rate = cw.MathExpression(
            expression=DENIAL_RATE_EXPRESSION,
            using_metrics={"allowed": allowed, "denied": denied},
            period=PERIOD,
            label="Rotation failure rate (%)",
        )
        expiring = cw.Metric(
            namespace=config.metrics_namespace,
            metric_name=c.METRIC_EXPIRING,
            statistic="Maximum",
            period=Duration.days(1),
            dimensions_map={"service": c.RETIRER_SERVICE_NAME},
            label=f"Certificates expiring within {config.rotation.expiring_within_days} days",
        )
        self.alarms += [
            self._alarm(
                "RotationFailureRate",
                failure_rate,
                threshold=config.rotation.failure_rate_alarm_percent,
                description="Many certificate rotations are refused: devices cannot renew (a broken "
                "device policy, a firmware bug) or something tries to rotate in their place.",
            ),
            self._alarm(
                "RetirerErrors",
                retirer.metric_errors(statistic="Sum", period=PERIOD),
                threshold=1,
                description="The certificate retirer failed: old certificates stay ACTIVE after rotation.",
            ),
        ]
        return {"rotation_failure_rate": failure_rate, "expiring": expiring}

    def _alarm(
        self,
        construct_id: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        description: str,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=comparison,
            alarm_description=description,
            # No provisioning traffic is normal (a factory shift ended), not a failure.
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        return alarm
