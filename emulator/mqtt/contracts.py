"""What the broker asks of the rest of the emulator: a `Gatekeeper` (AWS IoT's authentication and policy
decisions) and `TopicHandler`s (reserved request topics, e.g. the provisioning API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from emulator.mqtt.connection import Session
    from emulator.mqtt.packets import Publish


@dataclass
class Admission:
    """What the gatekeeper decided at CONNECT: who this is and what it may do (opaque to the broker)."""

    certificate_id: str
    authority: Any  # the gatekeeper's per-connection state (policies, context)
    label: str = ""  # for log lines, e.g. "claim" or "thing device-123"


class Refused(Exception):
    """The gatekeeper refuses a CONNECT; the reason goes to the log, never to the client (as AWS).

    `hang_up`: close without any CONNACK, whatever the MQTT version, as AWS IoT does when the certificate
    itself is not accepted (an MQTT 5 client of AWS sees `connack_packet=None, AWS_ERROR_MQTT_UNEXPECTED_
    HANGUP` on such a connection). Otherwise (the certificate's policies deny iot:Connect) an MQTT 5 client
    gets CONNACK 0x87 Not authorized and an MQTT 3.1.1 client is closed without CONNACK (3.1.1 has return
    code 5, but AWS IoT does not send it: aws-samples/aws-iot-fleet-provisioning#16)."""

    def __init__(self, message: str, *, hang_up: bool = False) -> None:
        super().__init__(message)
        self.hang_up = hang_up


class Gatekeeper(Protocol):
    async def admit(self, certificate_id: str, client_id: str) -> Admission: ...
    def may_publish(self, session: Session, topic: str) -> bool: ...
    def may_subscribe(self, session: Session, topic_filter: str) -> bool: ...
    def may_receive(self, session: Session, topic: str) -> bool: ...


class TopicHandler(Protocol):
    def claims(self, topic: str) -> bool:
        """True for a topic this handler owns: it is never routed to subscribers."""
        ...

    def handle(self, session: Session, message: Publish) -> None: ...


class ConnectionEvents(Protocol):
    """Told of every connection the broker admitted, once when it is admitted and once when it has ended
    (AWS IoT's lifecycle events: emulator/mqtt/lifecycle.py). Called on the event loop; must not block."""

    def connected(self, session: Session) -> None: ...
    def disconnected(self, session: Session) -> None: ...
