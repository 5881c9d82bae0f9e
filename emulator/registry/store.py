"""The registry: moto's in-process IoT and DynamoDB backends, shared with a moto server on 127.0.0.1.

The emulator works on moto's backend objects directly (no HTTP on its hot paths); boto3, the AWS CLI
and the hook Lambda reach the very same objects through the moto server at `aws_endpoint_url`.
One lock serialises the server's requests and the emulator's own writes, so a RegisterThing is applied
atomically and DynamoDB's conditional writes stay atomic under concurrent hook calls.

One file over 400 lines: every read and write of the registry goes through one lock and one set of
indexes, which must be seen together to be right.
"""

from __future__ import annotations

import json
import pickle
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from emulator.provisioning.errors import InvalidParameters
from emulator.provisioning.template_engine import (
    ExistingThing,
    ProvisioningPlan,
    ThingChange,
    apply_overrides,
    certificate_status_change,
)
from emulator.registry import moto_dynamodb, moto_index, persistence

LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account: boto3 with any fake key lands here too

PENDING_ACTIVATION = "PENDING_ACTIVATION"
ACTIVE = "ACTIVE"
EXPIRED = (
    "EXPIRED"  # a temporary provisioning claim past its expiry (the emulator's word, not a status of AWS's)
)
# An expired temporary claim is still known for this long, so that a late connection is logged as
# EXPIRED rather than as an unknown certificate.
TEMPORARY_CLAIM_RETENTION_S = 3600.0


def use_der_certificate_ids() -> None:
    """Make moto compute certificate ids as AWS does (SHA-256 of the DER), not of the PEM text."""
    from moto import settings

    settings.default_user_config.setdefault("iot", {})["use_valid_cert"] = True  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CertificateRecord:
    certificate_id: str
    certificate_arn: str
    certificate_pem: str
    status: str


@dataclass(frozen=True)
class ConnectionIdentity:
    """What a connection's authorisation needs, read once at CONNECT."""

    certificate: CertificateRecord
    policy_documents: tuple[tuple[str, str], ...]  # (policy name, JSON document)
    thing_names: tuple[str, ...]  # things the certificate is attached to
    # The thing named like the client id, when attached (thing policy variables resolve only then).
    thing_type_name: str | None = None
    thing_attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TemporaryClaim:
    """A temporary provisioning claim (CreateProvisioningClaim): known to CONNECT, never listed."""

    certificate: CertificateRecord
    template_name: str
    policy_document: str
    expires_at: float  # epoch seconds


class Registry:
    def __init__(
        self,
        *,
        region: str,
        account_id: str = LOCAL_ACCOUNT_ID,
        state: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`state` is a `snapshot()` of an earlier run (--persist), loaded into moto's IoT backend."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.iot.models import iot_backends

        self.region = region
        self.account_id = account_id
        self.lock = threading.RLock()
        self.iot = iot_backends[account_id][region]
        self.dynamodb = dynamodb_backends[account_id][region]
        self._clock = clock
        # AWS: "Temporary claim certificates do not show up in the account's certificate list", so
        # they are kept beside moto's certificates, where only CONNECT looks (`identity`).
        self._temporary: dict[str, TemporaryClaim] = {}
        self.generation = 0  # counts the writes made here (not those through moto's API), for --persist
        if state is not None:
            saved = pickle.loads(state)  # noqa: S301 - our own snapshot (registry/persistence.py)
            persistence.restore_backend(self.iot, saved["iot"])
            self._temporary = {c.certificate.certificate_id: c for c in saved["temporary_claims"]}
        # Lookups by certificate, thing or principal without scanning the fleet (moto_index.py).
        moto_index.install(self.iot)
        moto_dynamodb.install()  # UpdateItem without re-parsing the same expression (the hook's)
        self._describe_temporary_claims()

    def _describe_temporary_claims(self) -> None:
        """DescribeCertificate answers for a temporary claim too (ACTIVE until it expires), though it is
        never listed: the stack's hook asks whether the claim of a request is ACTIVE. UNCONFIRMED: AWS
        says only that temporary claims are not in the certificate list; a certificate id that
        DescribeCertificate did not know would make every hook that checks its claim deny them."""
        from moto.iot.exceptions import ResourceNotFoundException
        from moto.iot.models import FakeCertificate

        describe = self.iot.describe_certificate

        def describe_certificate(certificate_id: str) -> Any:
            try:
                return describe(certificate_id)
            except ResourceNotFoundException:
                claim = self._temporary.get(certificate_id)
                if claim is None:
                    raise
            status = "INACTIVE" if claim.expires_at <= self._clock() else ACTIVE
            found = FakeCertificate(claim.certificate.certificate_pem, status, self.account_id, self.region)
            found.certificate_id = claim.certificate.certificate_id
            found.arn = claim.certificate.certificate_arn
            return found

        self.iot.describe_certificate = describe_certificate  # type: ignore[method-assign]

    def snapshot(self) -> bytes:
        """moto's IoT backend and the temporary claims, for `Registry(state=...)`."""
        with self.lock:
            return pickle.dumps(
                {
                    "iot": persistence.backend_data(self.iot),
                    "temporary_claims": list(self._temporary.values()),
                },
                pickle.HIGHEST_PROTOCOL,
            )

    def dynamodb_snapshot(self) -> bytes:
        """This process's DynamoDB backend (the serial table when no hook process holds it)."""
        with self.lock:
            return pickle.dumps(persistence.backend_data(self.dynamodb), pickle.HIGHEST_PROTOCOL)

    def restore_dynamodb(self, snapshot: bytes) -> None:
        with self.lock:
            persistence.restore_backend(self.dynamodb, pickle.loads(snapshot))  # noqa: S301 - our own

    @property
    def _policy_pairs(self) -> moto_index.PairIndex:
        return cast(moto_index.PairIndex, self.iot.principal_policies)

    @property
    def _thing_pairs(self) -> moto_index.PairIndex:
        return cast(moto_index.PairIndex, self.iot.principal_things)

    # ------------------------------------------------------------------ arns
    def thing_arn(self, thing_name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account_id}:thing/{thing_name}"

    def certificate_arn(self, certificate_id: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account_id}:cert/{certificate_id}"

    # ------------------------------------------------------------ certificates
    def register_certificate(self, certificate_pem: str, status: str) -> CertificateRecord:
        with self.lock:
            cert = self.iot.register_certificate_without_ca(certificate_pem, status)
            self.generation += 1
            return _record(cert)

    # ------------------------------------------------- temporary provisioning claims
    def add_temporary_claim(
        self, certificate_pem: str, *, template_name: str, policy_document: str, expires_at: float
    ) -> CertificateRecord:
        from emulator.provisioning.ca import certificate_id

        identifier = certificate_id(certificate_pem)
        record = CertificateRecord(identifier, self.certificate_arn(identifier), certificate_pem, ACTIVE)
        with self.lock:
            self._temporary[identifier] = TemporaryClaim(record, template_name, policy_document, expires_at)
            self.generation += 1
        return record

    def claim_expired(self, certificate_id: str) -> bool:
        """True for a temporary provisioning claim past its expiry (any other certificate: False)."""
        claim = self._temporary.get(certificate_id)
        return claim is not None and claim.expires_at <= self._clock()

    def forget_expired_claims(self) -> int:
        """Drop temporary claims expired for over TEMPORARY_CLAIM_RETENTION_S; returns how many."""
        horizon = self._clock() - TEMPORARY_CLAIM_RETENTION_S
        with self.lock:
            old = [i for i, c in self._temporary.items() if c.expires_at <= horizon]
            for identifier in old:
                del self._temporary[identifier]
            if old:
                self.generation += 1
        return len(old)

    def certificate(self, certificate_id: str) -> CertificateRecord | None:
        with self.lock:
            cert = self.iot.certificates.get(certificate_id)
            return _record(cert) if cert is not None else None

    def delete_unactivated_certificate(self, certificate_id: str) -> bool:
        """Token expiry: delete the certificate if it never became active nor got attached to anything."""
        with self.lock:
            cert = self.iot.certificates.get(certificate_id)
            if cert is None or cert.status != PENDING_ACTIVATION:
                return False
            arn = cert.arn
            if self._thing_pairs.keys_of_principal(arn) or self._policy_pairs.keys_of_principal(arn):
                return False
            del self.iot.certificates[certificate_id]
            self.generation += 1
            return True

    def delete_certificate(self, certificate_id: str) -> None:
        with self.lock:
            self.iot.certificates.pop(certificate_id, None)
            self.generation += 1

    def on_certificate_change(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(certificate_id, status)` whenever a certificate leaves ACTIVE through the AWS API
        (UpdateCertificate, DeleteCertificate: `DELETED`): the broker then closes its connections, as AWS
        IoT does. Called under the registry's lock, so it must only schedule work, never wait for it."""
        iot = self.iot
        update, delete = iot.update_certificate, iot.delete_certificate

        def update_certificate(certificate_id: str, new_status: str) -> None:
            update(certificate_id, new_status)
            if new_status != ACTIVE:
                listener(certificate_id, new_status)

        def delete_certificate(certificate_id: str, force_delete: bool) -> None:
            delete(certificate_id, force_delete)
            listener(certificate_id, "DELETED")

        iot.update_certificate = update_certificate  # type: ignore[method-assign]
        iot.delete_certificate = delete_certificate  # type: ignore[method-assign]

    def identity(self, certificate_id: str, client_id: str = "") -> ConnectionIdentity | None:
        with self.lock:
            cert = self.iot.certificates.get(certificate_id)
            if cert is None:
                return self._temporary_identity(certificate_id)
            arn = cert.arn
            attached_policies = self._policy_pairs
            documents = tuple(
                (policy.name, _document_text(policy.document))
                for _, policy in (attached_policies[key] for key in attached_policies.keys_of_principal(arn))
            )
            things = tuple(name for _, name in self._thing_pairs.keys_of_principal(arn))
            thing_type, attributes = None, {}
            if client_id in things:
                thing = self.iot.things.get(self.thing_arn(client_id))
                if thing is not None:
                    thing_type = thing.thing_type.thing_type_name if thing.thing_type else None
                    attributes = {k: str(v) for k, v in thing.attributes.items()}
            return ConnectionIdentity(_record(cert), documents, things, thing_type, attributes)

    def _temporary_identity(self, certificate_id: str) -> ConnectionIdentity | None:
        claim = self._temporary.get(certificate_id)
        if claim is None:
            return None
        record = claim.certificate
        if claim.expires_at <= self._clock():
            record = CertificateRecord(
                record.certificate_id, record.certificate_arn, record.certificate_pem, EXPIRED
            )
        policy = (f"temporary-claim-{claim.template_name}", claim.policy_document)
        return ConnectionIdentity(record, (policy,), ())

    # --------------------------------------------------------------- policies
    def policy_exists(self, policy_name: str) -> bool:
        return policy_name in self.iot.policies

    # ----------------------------------------------------------- RegisterThing
    def apply_plan(self, plan: ProvisioningPlan, certificate_id: str) -> None:
        """Write what a RegisterThing plan says, all or nothing: on any error, undo and re-raise."""
        with self.lock:
            journal = _Journal()
            try:
                self._apply(plan, certificate_id, journal)
            except BaseException:
                journal.undo()
                raise
            finally:
                self.generation += 1

    def _apply(self, plan: ProvisioningPlan, certificate_id: str, journal: _Journal) -> None:
        iot = self.iot
        cert = iot.certificates.get(certificate_id)
        if cert is None:
            raise InvalidParameters(f"Certificate {certificate_id} does not exist")
        if plan.thing is not None:
            self._apply_thing(plan, journal)
        if plan.certificate is not None:
            if plan.certificate.certificate_id != certificate_id:
                raise InvalidParameters(
                    "The template's certificate must be the one being provisioned: "
                    'use {"Ref": "AWS::IoT::Certificate::Id"}'
                )
            new_status = certificate_status_change(cert.status, plan.certificate)
            if new_status is not None:
                old_status = cert.status
                cert.status = new_status
                journal.add(lambda: setattr(cert, "status", old_status))
        for policy_plan in plan.policies:
            name = policy_plan.policy_name
            if name not in iot.policies:
                if policy_plan.policy_document is None:
                    raise InvalidParameters(f"Policy {name} does not exist")
                iot.create_policy(name, json.dumps(policy_plan.policy_document))  # type: ignore[arg-type]
                journal.add(partial(iot.policies.pop, name, None))
            key = (cert.arn, name)
            if key not in iot.principal_policies:
                iot.principal_policies[key] = (cert.arn, iot.policies[name])
                journal.add(partial(iot.principal_policies.pop, key, None))
        if plan.thing is not None:
            key = (cert.arn, plan.thing.thing_name)
            if key not in iot.principal_things:
                iot.principal_things[key] = (cert.arn, iot.things[self.thing_arn(plan.thing.thing_name)])
                journal.add(partial(iot.principal_things.pop, key, None))

    def _existing_thing(self, thing_name: str) -> ExistingThing | None:
        thing = self.iot.things.get(self.thing_arn(thing_name))
        if thing is None:
            return None
        groups = [g.thing_group_name for g in self.iot.thing_groups.values() if thing.arn in g.things]
        return ExistingThing(
            attributes=dict(thing.attributes),
            thing_type_name=thing.thing_type.thing_type_name if thing.thing_type else None,
            thing_groups=groups,
            billing_group=thing.billing_group_name,
        )

    def _apply_thing(self, plan: ProvisioningPlan, journal: _Journal) -> None:
        assert plan.thing is not None
        iot = self.iot
        change: ThingChange = apply_overrides(self._existing_thing(plan.thing.thing_name), plan.thing)
        name, arn = change.thing_name, self.thing_arn(change.thing_name)
        thing_type = None
        if change.update_thing_type and change.thing_type_name is not None:
            types = [t for t in iot.thing_types.values() if t.thing_type_name == change.thing_type_name]
            if not types:
                raise InvalidParameters(f"Thing type {change.thing_type_name} does not exist")
            thing_type = types[0]
        groups: dict[str, Any] = {}
        for group_name in [*change.groups_to_add, *change.groups_to_remove]:
            found = [g for g in iot.thing_groups.values() if g.thing_group_name == group_name]
            if not found:
                raise InvalidParameters(f"Thing group {group_name} does not exist")
            groups[group_name] = found[0]
        if change.create:
            iot.create_thing(name, "", {"attributes": dict(change.attributes or {})})
            journal.add(lambda: iot.things.pop(arn, None))
        thing = iot.things[arn]
        if not change.create and change.attributes is not None:
            old_attributes = dict(thing.attributes)
            thing.attributes = dict(change.attributes)
            journal.add(lambda: setattr(thing, "attributes", old_attributes))
        if change.update_thing_type:
            old_type = thing.thing_type
            thing.thing_type = thing_type
            journal.add(lambda: setattr(thing, "thing_type", old_type))
        for group_name in change.groups_to_add:
            members = groups[group_name].things
            if arn not in members:
                members[arn] = thing
                journal.add(partial(members.pop, arn, None))
        for group_name in change.groups_to_remove:
            members = groups[group_name].things
            if arn in members:
                removed = members.pop(arn)
                journal.add(partial(members.__setitem__, arn, removed))
        if change.billing_group is not None:
            old_billing = thing.billing_group_name
            iot.add_thing_to_billing_group(billing_group_name=change.billing_group, thing_name=name)
            billing_things: list[str] = iot.describe_billing_group(change.billing_group).things

            def undo_billing() -> None:
                if arn in billing_things:
                    billing_things.remove(arn)
                thing.billing_group_name = old_billing

            journal.add(undo_billing)

    # ------------------------------------------------------------ inspection
    def thing_names(self) -> list[str]:
        with self.lock:
            return [t.thing_name for t in self.iot.things.values()]

    def certificates(self) -> Iterable[CertificateRecord]:
        with self.lock:
            return [_record(c) for c in self.iot.certificates.values()]


class _Journal:
    """Undo actions, run newest first; an undo that fails does not stop the others."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], Any]] = []

    def add(self, action: Callable[[], Any]) -> None:
        self._undo.append(action)

    def undo(self) -> None:
        for action in reversed(self._undo):
            try:
                action()
            except Exception:  # noqa: S110 - best effort; the original error is what the device hears
                pass
        self._undo.clear()


def _record(cert: Any) -> CertificateRecord:
    return CertificateRecord(cert.certificate_id, cert.arn, cert.certificate_pem, cert.status)


def _document_text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)
