"""How one emulator run is configured: `start_emulator`'s options, which the CLI's flags fill."""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.awsapi.trusted_user import CLAIM_TTL_S
from emulator.mqtt.limits import DEFAULT_LIMITS
from emulator.provisioning import hook as hooks
from emulator.provisioning.tokens import DEFAULT_TTL_S

WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - binding every interface is the user's choice (--host)


@dataclass(frozen=True)
class EmulatorOptions:
    port: int = 0
    host: str = "127.0.0.1"
    aws_port: int = 0
    server_names: tuple[str, ...] = ()  # --san: more names for the server certificate
    persist: bool = False
    persist_interval_s: float = 1.0
    hook: hooks.HookFunction | None = None
    use_stack_hook: bool = True
    token_ttl_s: float = DEFAULT_TTL_S
    claim_ttl_s: float = CLAIM_TTL_S
    hook_timeout_s: float = hooks.HOOK_TIMEOUT_S
    hook_workers: int = 16
    service_workers: int = 32
    stack_name: str | None = None
    record_outcomes: bool = False
    hook_isolation: str = "process"
    lose_replies: dict[str, int] = field(default_factory=dict)  # operation -> accepted replies not sent
    alpn_port: int | None = None  # a second MQTT port (AWS IoT's 443)
    session_expiry_s: int = DEFAULT_LIMITS.session_expiry_s  # persistent sessions outlive their connection
    certificate_validity_days: float | None = None  # device certificates' validity (None: until 2049)
    schedule_every_s: float | None = None  # replaces every schedule's rate (tests)
    limits: str = "default"  # --limits: default | aws | off (emulator/mqtt/limits.py)

    @property
    def advertised_host(self) -> str:
        """The host clients are told (endpoint.json, DescribeEndpoint): a wildcard bind is reached on
        the loopback address here; remote devices use one of the --san names."""
        return "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host

    def certificate_names(self) -> tuple[str, ...]:
        names = ["localhost", "127.0.0.1"]
        for name in (self.host, *self.server_names):
            if name not in WILDCARD_HOSTS and name not in names:
                names.append(name)
        return tuple(names)


__all__ = ["WILDCARD_HOSTS", "EmulatorOptions"]
