"""The MQTT versions the simulator speaks and its default: one place for the command lines, Locust and
the transport (a light module: the command lines import it before anything of awscrt)."""

from __future__ import annotations

from typing import Literal, get_args

MqttVersion = Literal["3.1.1", "5"]
MQTT_VERSIONS: tuple[MqttVersion, ...] = get_args(MqttVersion)
# MQTT 5 is what a user of the AWS IoT Device SDK expects: the SDK's current samples connect with its mqtt5
# client (mqtt5_client_builder), and AWS recommends that client; its MQTT 3.1.1 client enters maintenance
# mode in April 2027 (AWS Developer Tools Blog, "AWS IoT Device SDK MQTT 3.1.1 and V1 Service Clients
# Entering Maintenance Mode"). The embedded devices this project targets (FreeRTOS coreMQTT, Renesas RX)
# speak 3.1.1: `--mqtt 3.1.1` simulates those.
DEFAULT_MQTT: MqttVersion = "5"
MQTT_HELP = (
    "MQTT version of every connection. 5 (the default) is what the AWS IoT Device SDK's current samples "
    "speak (its mqtt5 client, which AWS recommends over its 3.1.1 client); 3.1.1 is what FreeRTOS coreMQTT "
    "and the Renesas RX devices speak. Same flow, same report either way."
)
