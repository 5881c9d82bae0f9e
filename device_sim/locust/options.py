"""The simulator's options as Locust custom arguments: one table for the command line and the locustfile.

`python -m device_sim locust` validates its options, then passes them to Locust as `--device-sim-<name>`
arguments, which the locustfile declares from this same table. Locust's master forwards custom arguments
to its workers, so a worker started with only `--worker --master-host H` runs with the master's options.
Paths are forwarded as text and opened on the worker: the CA and claim files must exist there, same paths.

Values are plain str/int/float/bool/list (Locust's messages are msgpack).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from device_sim.mqtt_versions import DEFAULT_MQTT

PREFIX = "device-sim-"


@dataclass(frozen=True)
class Option:
    name: str  # the fleet option's name, without "--"
    kind: type  # str, int, float, bool (a flag) or list (repeatable str)
    default: Any = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{PREFIX}{self.name}"


OPTIONS: tuple[Option, ...] = (
    # The target: an emulator's endpoint file, or a real AWS IoT endpoint (files on every worker).
    Option("endpoint-file", str),
    Option("claim", str),
    Option("endpoint", str),
    Option("port", int),
    Option("ca-file", str),
    Option("claim-cert-file", str),
    Option("claim-key-file", str),
    Option("template-name", str),
    Option("client-id-pattern", str),
    # The device flow.
    Option("format", str, "json"),
    Option("mqtt", str, DEFAULT_MQTT),
    Option("flow", str, "csr"),
    Option("keys-dir", str),  # the factory station's keys (`fleet --keys-dir`), on every worker
    Option("keep-identities", str),  # `fleet --keep-identities`: DIR/<serial>, on every worker
    Option("rotate", bool),  # `fleet --rotate`: rotate the devices kept in --keep-identities
    Option("rotation-template-name", str),
    Option("param", list),
    Option("attempts", int, 4),
    Option("timeout-s", float, 30.0),
    Option("threads", int, 0),
    # The devices: read and handed out by the master only.
    Option("serials", str),
    Option("serial-prefix", str, "SIM-"),
    Option("devices", int),
    # Arrivals: each user's share of --rate, so that all users together make --rate devices per second.
    Option("rate", float),
    Option("rate-per-user", float),
    Option("concurrency", int),
    # The report and its thresholds: the master's (or the single process's).
    Option("report", str, "reports/locust.json"),
    Option("html", str),
    Option("max-p99-ms", float),
    Option("max-failed", int, 0),
    Option("max-rejected", int),
    Option("progress-every-s", float, 10.0),
)
BY_DEST = {option.dest: option for option in OPTIONS}


def to_argv(values: dict[str, Any]) -> list[str]:
    """`--device-sim-*` arguments for the values that are set (keys are option dests)."""
    argv: list[str] = []
    for dest, value in values.items():
        option = BY_DEST[dest]
        if value is None or value == [] or value is False:
            continue
        if option.kind is bool:
            argv.append(option.flag)
        elif option.kind is list:
            for item in value:
                argv += [option.flag, str(item)]
        else:
            argv += [option.flag, str(value)]
    return argv


def add_arguments(parser: Any) -> None:
    """Declare the table on Locust's parser; hidden from its --help and the web UI's form."""
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"dest": f"device_sim_{option.dest}", "include_in_web_ui": False}
        if option.kind is bool:
            kwargs |= {"action": "store_true", "default": False}
        elif option.kind is list:
            kwargs |= {"action": "append", "default": None}
        else:
            kwargs |= {"type": option.kind, "default": option.default}
        parser.add_argument(option.flag, help=argparse.SUPPRESS, **kwargs)


def from_namespace(namespace: Any) -> dict[str, Any]:
    """The values back from Locust's parsed options (on a worker: as the master forwarded them)."""
    values = {}
    for option in OPTIONS:
        value = getattr(namespace, f"device_sim_{option.dest}", None)
        values[option.dest] = option.default if value is None else value
    return values
