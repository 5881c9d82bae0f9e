"""AWS IoT's authentication and authorisation for MQTT connections.

CONNECT: the client certificate must be registered and ACTIVE, and the union of the policies attached
to it must allow iot:Connect on `client/<clientId>`. The connection context (client id; the thing,
when the client id names a thing attached to the certificate) is fixed at CONNECT, as are the
policies: AWS applies policy changes to live connections only eventually, and here a reconnect does.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from emulator.mqtt.connection import Session
from emulator.mqtt.contracts import Admission, Refused
from emulator.mqtt.policy_engine import (
    ConnectionContext,
    PolicyEngine,
    client_arn,
    topic_arn,
    topicfilter_arn,
)
from emulator.registry.store import ACTIVE, ConnectionIdentity


class RegistryBusy(Exception):
    """Raised by an `identity_now` that would have to wait for the registry: ask a worker thread instead."""


SHARED_DECISIONS = 4096  # decisions kept per context-free engine (topics are chosen by clients: bounded)


@dataclass
class ConnectionAuthority:
    engine: PolicyEngine
    context: ConnectionContext
    decisions: dict[tuple[str, str], bool] = field(default_factory=dict)  # (action, resource) -> allowed


class IotGatekeeper:
    def __init__(
        self,
        *,
        region: str,
        account_id: str,
        identity: Callable[[str, str], ConnectionIdentity | None],
        executor: Executor,
        identity_now: Callable[[str, str], ConnectionIdentity | None] | None = None,
    ) -> None:
        """`identity` may block (the registry's lock): it runs on `executor`. `identity_now`, if given,
        answers on the event loop or raises RegistryBusy without waiting; a CONNECT then costs no thread
        hand-off unless another thread holds the registry (issue 17: the hand-off cost more than the
        look-up)."""
        self._region = region
        self._account = account_id
        self._identity = identity
        self._identity_now = identity_now
        self._executor = executor
        self._engines: OrderedDict[tuple[str, ...], PolicyEngine] = OrderedDict()
        # Decisions of engines whose policies read nothing of the connection (`context_free`: the claim's),
        # shared by all their connections: each claim connection asks the same few questions.
        self._shared: dict[tuple[str, ...], dict[tuple[str, str], bool]] = {}

    def _engine(self, documents: tuple[str, ...]) -> PolicyEngine:
        """One compiled engine per distinct set of policy documents (all devices share one)."""
        engine = self._engines.get(documents)
        if engine is None:
            engine = PolicyEngine(json.loads(d) for d in documents)
            self._engines[documents] = engine
            if len(self._engines) > 512:
                dropped, _ = self._engines.popitem(last=False)
                self._shared.pop(dropped, None)
        else:
            self._engines.move_to_end(documents)
        return engine

    async def admit(self, certificate_id: str, client_id: str) -> Admission:
        identity: ConnectionIdentity | None
        try:
            if self._identity_now is None:
                raise RegistryBusy
            identity = self._identity_now(certificate_id, client_id)
        except RegistryBusy:
            loop = asyncio.get_running_loop()
            identity = await loop.run_in_executor(self._executor, self._identity, certificate_id, client_id)
        # A certificate AWS IoT does not accept ends the connection before any MQTT answer (hang_up).
        if identity is None:
            raise Refused("certificate is not registered", hang_up=True)
        if identity.certificate.status != ACTIVE:
            raise Refused(f"certificate is {identity.certificate.status}", hang_up=True)
        attached = client_id in identity.thing_names
        context = ConnectionContext(
            client_id=client_id,
            thing_name=client_id if attached else None,
            is_attached=attached,
            certificate_id=certificate_id,
            thing_type_name=identity.thing_type_name,
            thing_attributes=identity.thing_attributes,
        )
        documents = tuple(sorted(document for _, document in identity.policy_documents))
        engine = self._engine(documents)
        authority = ConnectionAuthority(engine, context)
        if engine.context_free:
            authority.decisions = self._shared.setdefault(documents, {})
        if not engine.is_allowed("iot:Connect", client_arn(self._region, self._account, client_id), context):
            raise Refused("iot:Connect not allowed by the certificate's policies")
        label = f"thing={client_id}" if attached else "principal=certificate"
        return Admission(certificate_id, authority, label)

    def _allowed(self, session: Session, action: str, resource: str) -> bool:
        authority: ConnectionAuthority = session.admission.authority
        key = (action, resource)
        decision = authority.decisions.get(key)
        if decision is None:
            decision = authority.engine.is_allowed(action, resource, authority.context)
            if len(authority.decisions) < SHARED_DECISIONS if authority.engine.context_free else 256:
                authority.decisions[key] = decision
        return decision

    def may_publish(self, session: Session, topic: str) -> bool:
        return self._allowed(session, "iot:Publish", topic_arn(self._region, self._account, topic))

    def may_subscribe(self, session: Session, topic_filter: str) -> bool:
        return self._allowed(
            session, "iot:Subscribe", topicfilter_arn(self._region, self._account, topic_filter)
        )

    def may_receive(self, session: Session, topic: str) -> bool:
        return self._allowed(session, "iot:Receive", topic_arn(self._region, self._account, topic))
