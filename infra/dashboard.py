"""The operator's dashboard: decisions, denial rate, hook latency and errors, provisioning per claim."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from infra import constants as c
from infra.config import FleetConfig

WIDTH = 12


def build_dashboard(
    scope: Construct,
    *,
    config: FleetConfig,
    allowed: cw.IMetric,
    denied: cw.IMetric,
    denial_rate: cw.IMetric,
    duration_p99: cw.IMetric,
    errors: cw.IMetric,
    claim_metrics: Mapping[str, cw.Metric],
    alarms: Sequence[cw.Alarm],
    rotation_metrics: Mapping[str, cw.IMetric] | None = None,
) -> cw.Dashboard:
    dashboard = cw.Dashboard(scope, "Dashboard", dashboard_name=f"{config.stack_name}-provisioning")
    dashboard.add_widgets(
        cw.GraphWidget(title="Hook decisions", left=[allowed, denied], width=WIDTH),
        cw.GraphWidget(title="Denial rate (%)", left=[denial_rate], width=WIDTH),
    )
    dashboard.add_widgets(
        cw.GraphWidget(title="Hook duration p99 (ms, AWS limit 5000)", left=[duration_p99], width=WIDTH),
        cw.GraphWidget(title="Hook errors", left=[errors], width=WIDTH),
    )
    dashboard.add_widgets(
        cw.GraphWidget(
            title=f"{c.METRIC_ALLOWED_BY_CLAIM} per claim credential",
            left=[m.with_(label=name) for name, m in claim_metrics.items()],
            width=WIDTH * 2,
        ),
    )
    if rotation_metrics:
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Rotation failure rate (%)",
                left=[rotation_metrics["rotation_failure_rate"]],
                width=WIDTH,
            ),
            cw.GraphWidget(
                title="Certificates expiring soon", left=[rotation_metrics["expiring"]], width=WIDTH
            ),
        )
    dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=WIDTH * 2))
    return dashboard
