"""The MQTT versions the simulator speaks and its default: one place for the command lines, Locust and
the transport (a light module: the command lines import it before anything of awscrt)."""

from __future__ import annotations

from typing import Literal, get_args

MqttVersion = Literal["3.1.1", "5"]
MQTT_VERSIONS: tuple[MqttVersion, ...] = get_args(MqttVersion)
# MQTT 5 is what a user of the AWS IoT Device SDK expects: the SDK's current samples connect with its mqtt5
# client (mqtt5_client_builder), and AWS recommends MQTT 5 for new devices. The embedded devices this
# project targets (FreeRTOS coreMQTT, Renesas RX) speak 3.1.1: `--mqtt 3.1.1` simulates those.
DEFAULT_MQTT: MqttVersion = "5"
MQTT_HELP = (
    "MQTT version of every connection. 5 (the default) is what the AWS IoT Device SDK's current samples "
    "speak (its mqtt5 client) and what AWS recommends for new devices; 3.1.1 is what FreeRTOS coreMQTT and "
    "the Renesas RX devices speak. Same flow, same report either way."
)
