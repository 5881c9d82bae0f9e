"""When a rotated device's old certificate goes: the rules, over the store.

- **connected**: AWS IoT's lifecycle event `$aws/events/presence/connected/<clientId>` (through the
  stack's topic rule). A thing that connects with its rotation's *new* certificate has proven it: the old
  one is deactivated and detached now, and so is any certificate the hook superseded meanwhile (it
  deactivates the certificate a second rotation, or a retry after a lost answer, makes obsolete, but may
  not detach it): the thing is left with its current certificate only.
- **sweep** (every few minutes, from a schedule): a rotation older than `grace_s` ends either way. If its
  new certificate is ACTIVE, the old one is retired; if the new one never became ACTIVE (the rotation's
  answer was lost and never retried), the rotation is abandoned instead and the old certificate, which the
  device still uses, stays. A thing is never left without a working certificate.
- **expiring** (daily): the number of devices whose current certificate expires within N days, as a metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import RetirerSettings
from .store import PendingRotation, Store


@dataclass
class Outcome:
    retired: list[str] = field(default_factory=list)  # certificate ids
    abandoned: list[str] = field(default_factory=list)  # serials whose rotation was undone
    expiring: int | None = None
    detached: list[str] = field(default_factory=list)  # superseded certificates (INACTIVE) let go of

    def as_dict(self) -> dict[str, object]:
        found = {"retired": self.retired, "abandoned": self.abandoned, "expiring": self.expiring}
        return found | ({"detached": self.detached} if self.detached else {})


def on_connected(
    client_id: str, principal: str, settings: RetirerSettings, store: Store, now_ms: int
) -> Outcome:
    outcome = Outcome()
    if not client_id.startswith(settings.thing_name_prefix):
        return outcome  # not a thing (a claim connection, another application)
    rotation = store.pending(client_id[len(settings.thing_name_prefix) :])
    if rotation is None or rotation.thing_name != client_id or principal != rotation.certificate_id:
        return outcome  # no rotation pending, or the device is still on its old certificate
    _retire(rotation, "rotated", settings, store, now_ms, outcome)
    return outcome


def sweep(settings: RetirerSettings, store: Store, now_ms: int) -> Outcome:
    outcome = Outcome()
    for rotation in store.pending_since(now_ms - settings.grace_s * 1000):
        status, _ = store.certificate_status(rotation.certificate_id)
        if status == "ACTIVE":
            _retire(rotation, "grace_expired", settings, store, now_ms, outcome)
        elif store.finish(rotation, keep=rotation.rotating_from, reason="abandoned", at_ms=now_ms):
            outcome.abandoned.append(rotation.serial)
    return outcome


def expiring(settings: RetirerSettings, store: Store, now_ms: int) -> Outcome:
    return Outcome(expiring=store.expiring(now_ms + settings.expiring_within_days * 86_400_000))


def _retire(
    rotation: PendingRotation,
    reason: str,
    settings: RetirerSettings,
    store: Store,
    now_ms: int,
    outcome: Outcome,
) -> None:
    # AWS IoT first (each step idempotent), the registry last and conditionally: a duplicate event, or
    # one racing the sweep, does the IoT steps again harmlessly and loses the registry write.
    store.retire_certificate(rotation.rotating_from, rotation.thing_name, settings.device_policy_name)
    outcome.detached += store.detach_superseded(
        rotation.thing_name,
        keep={rotation.certificate_id, rotation.rotating_from},
        policy_name=settings.device_policy_name,
    )
    if store.finish(rotation, keep=rotation.certificate_id, reason=reason, at_ms=now_ms):
        outcome.retired.append(rotation.rotating_from)
