"""Constant-time lookups on moto's IoT backend, so that per-request work does not grow with the fleet.

moto 5 keeps certificates, things and the principal attachments in plain dicts and answers several
lookups by scanning all of them: `describe_certificate` (the hook calls it for every device),
`describe_thing`, `_get_principal` (a certificate by ARN) and the `list_principal_*` calls compare
every entry. With 10,000 provisioned devices each RegisterThing and each CONNECT paid for
10,000-entry scans under the registry's one lock, and the fleet's throughput decayed from ~1,200 to
single-digit devices per minute (docs/emulator.md, "Performance").

`install(backend)` keeps moto as the registry: the two attachment dicts are replaced by dicts that
also index their pairs by principal and by target (every write moto or the emulator makes goes
through `__setitem__`/`__delitem__`/`pop`, so the index cannot drift), and the scanning lookups are
overridden on this backend instance by equivalents that use the dict keys moto already has
(certificates by id, things by ARN) or the index. Behaviour, including the exceptions, is moto's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Pair = tuple[str, str]  # (principal ARN, policy name or thing name)


class PairIndex(dict[Pair, Any]):
    """moto's `principal_policies` / `principal_things`, plus both sides of each pair indexed."""

    def __init__(self, items: Iterable[tuple[Pair, Any]] = ()) -> None:
        super().__init__()
        # Inner dicts keep insertion order, as moto's scans of an OrderedDict did.
        self.by_principal: dict[str, dict[Pair, None]] = {}
        self.by_target: dict[str, dict[Pair, None]] = {}
        for key, value in items:
            self[key] = value

    def __setitem__(self, key: Pair, value: Any) -> None:
        super().__setitem__(key, value)
        self.by_principal.setdefault(key[0], {})[key] = None
        self.by_target.setdefault(key[1], {})[key] = None

    def __delitem__(self, key: Pair) -> None:
        super().__delitem__(key)
        self._unindex(key)

    def pop(self, key: Pair, *default: Any) -> Any:
        if key in self:
            value = super().pop(key)
            self._unindex(key)
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def popitem(self) -> tuple[Pair, Any]:
        key, value = super().popitem()
        self._unindex(key)
        return key, value

    def clear(self) -> None:
        super().clear()
        self.by_principal.clear()
        self.by_target.clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Pair, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def keys_of_principal(self, principal_arn: str) -> list[Pair]:
        return list(self.by_principal.get(principal_arn, ()))

    def keys_of_target(self, target: str) -> list[Pair]:
        return list(self.by_target.get(target, ()))

    def _unindex(self, key: Pair) -> None:
        for index, side in ((self.by_principal, key[0]), (self.by_target, key[1])):
            keys = index.get(side)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del index[side]


def install(backend: Any) -> None:
    """Index this moto IoT backend instance (idempotent)."""
    from moto.iot.exceptions import ResourceNotFoundException
    from moto.utilities.utils import get_partition

    if not isinstance(backend.principal_policies, PairIndex):
        backend.principal_policies = PairIndex(backend.principal_policies.items())
    if not isinstance(backend.principal_things, PairIndex):
        backend.principal_things = PairIndex(backend.principal_things.items())
    policies: PairIndex = backend.principal_policies
    things: PairIndex = backend.principal_things
    thing_arn_prefix = (
        f"arn:{get_partition(backend.region_name)}:iot:{backend.region_name}:{backend.account_id}:thing/"
    )
    original_get_principal = backend._get_principal

    def describe_certificate(certificate_id: str) -> Any:
        certificate = backend.certificates.get(certificate_id)
        if certificate is None:
            raise ResourceNotFoundException()
        return certificate

    def describe_thing(thing_name: str) -> Any:
        thing = backend.things.get(thing_arn_prefix + thing_name)
        if thing is None or thing.thing_name != thing_name:
            raise ResourceNotFoundException()
        return thing

    def get_principal(principal_arn: str) -> Any:
        if ":cert/" in principal_arn:
            # moto's certificate ARNs end in cert/<certificate id>: look up by id, check the ARN.
            certificate = backend.certificates.get(principal_arn.rsplit(":cert/", 1)[1])
            if certificate is None or certificate.arn != principal_arn:
                raise ResourceNotFoundException()
            return certificate
        return original_get_principal(principal_arn)

    def list_principal_policies(principal_arn: str) -> list[Any]:
        return [policies[k][1] for k in policies.keys_of_principal(principal_arn)]

    def list_policy_principals(policy_name: str) -> list[str]:
        return [k[0] for k in policies.keys_of_target(policy_name)]

    def list_principal_things(principal_arn: str) -> list[str]:
        return [k[1] for k in things.keys_of_principal(principal_arn)]

    def list_thing_principals(thing_name: str) -> list[str]:
        if backend.things.get(thing_arn_prefix + thing_name) is None:
            raise ResourceNotFoundException(
                f"Failed to list principals for thing {thing_name} because the thing does not exist "
                "in your account"
            )
        return [k[0] for k in things.keys_of_target(thing_name)]

    backend.describe_certificate = describe_certificate
    backend.describe_thing = describe_thing
    backend._get_principal = get_principal
    backend.list_principal_policies = list_principal_policies
    backend.list_policy_principals = list_policy_principals
    backend.list_principal_things = list_principal_things
    backend.list_thing_principals = list_thing_principals
