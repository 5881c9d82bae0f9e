"""The broker on its own event-loop thread, its worker pools, and the token and claim sweep: the serving
half of `runtime.start_emulator`, which builds what it serves."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from emulator import stack_setup
from emulator.assembly.reader import StackModel
from emulator.awsapi.control_plane import MqttAddress
from emulator.awsapi.server import LocalAwsServer
from emulator.mqtt.auth import IotGatekeeper, RegistryBusy
from emulator.mqtt.broker import ALPN_PROTOCOL, Broker
from emulator.mqtt.lifecycle import LifecycleEvents, Listener
from emulator.mqtt.limits import Limits
from emulator.mqtt.provisioning import ProvisioningTopics
from emulator.provisioning.ca import CertificateAuthority
from emulator.provisioning.service import ProvisioningService
from emulator.registry.store import ConnectionIdentity, Registry

if TYPE_CHECKING:
    from emulator.runtime import ClaimFiles, Emulator, EmulatorOptions

log = logging.getLogger("emulator")

STOP_GRACE_S = 2.0  # how long stop() lets requests already running finish
CERTIFICATE_WORKERS = 8  # CreateCertificateFromCsr / CreateKeysAndCertificate, and the token sweep
ADMISSION_WORKERS = 4  # CONNECT: the certificate's identity, when another thread holds the registry


def serve(
    emulator: Emulator,
    model: StackModel,
    claims: dict[str, ClaimFiles],
    state: Path,
    authority: CertificateAuthority,
    registry: Registry,
    service: ProvisioningService,
    aws: LocalAwsServer,
    mqtt_address: MqttAddress,
    options: EmulatorOptions,
    cleanups: list[Callable[[], None]],
    *,
    lifecycle_listeners: Sequence[Listener] = (),
) -> Emulator:
    """The broker on its event loop thread; returns once it accepts connections. AWS IoT's lifecycle
    events go to their subscribers and to `lifecycle_listeners` (the stack's topic rules)."""
    # One pool per kind of work, so that none queues behind another. A RegisterThing thread mostly
    # waits for the hook (up to its time-out); with one shared pool, a burst of them held every thread
    # while CONNECT admissions and CSR signings queued behind, and the CPU idled (concurrency 100:
    # ~10 % fewer devices/s than with threads to spare). The RegisterThing pool's size also bounds how
    # many invocations wait at the hook at once, which is where the hook's clock runs.
    register = ThreadPoolExecutor(options.service_workers, thread_name_prefix="register-thing")
    certificates = ThreadPoolExecutor(CERTIFICATE_WORKERS, thread_name_prefix="certificates")
    admission = ThreadPoolExecutor(ADMISSION_WORKERS, thread_name_prefix="admission")
    pools = (register, certificates, admission)

    def stop_pools() -> None:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)

    cleanups.append(stop_pools)
    on_outcome = emulator.outcomes.append if options.record_outcomes else None
    limits = Limits.for_profile(options.limits, session_expiry_s=options.session_expiry_s)
    topics = ProvisioningTopics(
        service,
        certificates,
        on_outcome,
        register_executor=register,
        lose_replies=options.lose_replies,
        limits=limits,
    )
    gatekeeper = IotGatekeeper(
        region=model.region,
        account_id=registry.account_id,
        identity=registry.identity,
        executor=admission,
        identity_now=lambda certificate_id, client_id: _identity_now(registry, certificate_id, client_id),
    )
    events = LifecycleEvents(lambda message: broker.route(message), lifecycle_listeners)
    broker = Broker(
        ssl_context=server_ssl_context(state, authority),
        gatekeeper=events.observe(gatekeeper),
        handlers=[topics],
        host=options.host,
        port=options.port,
        extra_ports=() if options.alpn_port is None else (options.alpn_port,),
        limits=limits,
    )
    raise_descriptor_limit()
    broker.events = events
    emulator.broker = broker

    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    stopping: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        try:
            await broker.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        sweeper = asyncio.create_task(sweep(service, registry, certificates, options.token_ttl_s))
        started.set()
        await stopping.wait()
        sweeper.cancel()
        # Queued requests are dropped (their connections close now, no reply could reach them);
        # requests already running get a short grace, then are abandoned like a timed-out hook.
        stop_pools()
        await broker.stop()
        await topics.drain(timeout=STOP_GRACE_S)

    thread = threading.Thread(
        target=loop.run_until_complete, args=(main(),), name="emulator-loop", daemon=True
    )
    thread.start()
    started.wait()
    if failure:
        raise failure[0]

    def stop() -> None:
        if stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=STOP_GRACE_S + 3)
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception:
                log.debug("cleanup failed", exc_info=True)

    emulator._stop = stop
    # A certificate that leaves ACTIVE (UpdateCertificate, DeleteCertificate) loses its connections.
    registry.on_certificate_change(
        lambda certificate_id, status: broker.close_certificate_sessions(
            certificate_id, f"AUTH_ERROR certificate {status}"
        )
    )
    mqtt_address.host, mqtt_address.port = options.advertised_host, broker.port
    emulator.endpoint = stack_setup.endpoint_document(
        model, claims, state, options.advertised_host, broker.port, aws.url
    )
    emulator.endpoint.update(
        {
            "mqtt_versions": ["3.1.1", "5"],
            "alpn_port": broker.ports[1] if options.alpn_port is not None else None,
            "alpn_protocols": [ALPN_PROTOCOL],
            "session_expiry_s": options.session_expiry_s,
            "limits": limits.profile,
        }
    )
    stack_setup.write_json(state / "endpoint.json", emulator.endpoint)
    log.info(
        "listening on %s:%s%s (MQTT 3.1.1 and 5 over TLS, ALPN %s, limits %s), AWS APIs at %s, state in %s%s",
        options.host,
        broker.port,
        f" and :{broker.ports[1]}" if options.alpn_port is not None else "",
        ALPN_PROTOCOL,
        limits.profile,
        aws.url,
        state,
        " (persisted)" if options.persist else "",
    )
    return emulator


def raise_descriptor_limit() -> None:
    """Every connection is a file descriptor: the soft limit (often 1024) up to the hard one, as servers do,
    so that the broker's own caps (limits.py), not the descriptor limit, decide how many clients it holds."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        log.debug("could not raise the descriptor limit from %s", soft)


X509_V_ERR_CERT_HAS_EXPIRED = 10  # OpenSSL's verify code for a certificate past its notAfter
X509_V_ERR_CERT_NOT_YET_VALID = 9


class _HandshakeLogged(ssl.SSLObject):
    """The server side of each TLS connection (asyncio's SSL protocol makes one per connection through
    `SSLContext.wrap_bio`): a client certificate OpenSSL refuses in the handshake is logged in one line.

    OpenSSL refuses an expired client certificate in the handshake, as AWS IoT does, and asyncio then
    closes the connection without a word (a handshake's OSError is logged only in asyncio's debug mode).
    The handshake has not finished, so the certificate itself cannot be read here: the line says why."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLCertVerificationError as exc:
            code = exc.verify_code
            if code == X509_V_ERR_CERT_HAS_EXPIRED:
                why = "certificate expired"
            elif code == X509_V_ERR_CERT_NOT_YET_VALID:
                why = "certificate not yet valid"
            else:
                why = f"certificate refused ({exc.verify_message})"
            logging.getLogger("emulator.mqtt").info("connect refused in the TLS handshake: client %s", why)
            raise


def server_ssl_context(state: Path, authority: CertificateAuthority) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.sslobject_class = _HandshakeLogged
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(state / "server.pem", state / "server.key")
    context.load_verify_locations(cadata=authority.certificate_pem)
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as AWS IoT's port 8883
    # AWS IoT's port 443 takes MQTT with client certificates from clients offering ALPN x-amzn-mqtt-ca
    # (the SDKs' default: port 443 with that ALPN). Offered on every port here: a client that offers it gets
    # it, a client that offers no ALPN (or none of ours: OpenSSL then answers without ALPN) still connects.
    context.set_alpn_protocols([ALPN_PROTOCOL])
    # No TLS 1.3 session tickets. OpenSSL sends two after every handshake by default, which took a
    # third of the server's handshake CPU here (1.7 -> 1.2 ms). No device in this flow could use one:
    # awscrt's MQTT client does not resume sessions, and a device's second connection presents a new
    # certificate. AWS IoT's documentation says nothing on session resumption (UNCONFIRMED); a client
    # that asks for it simply gets a full handshake, which every TLS client must accept.
    context.num_tickets = 0
    return context


async def sweep(
    service: ProvisioningService, registry: Registry, executor: ThreadPoolExecutor, ttl_s: float
) -> None:
    """Expired ownership tokens (and their never-activated certificates), old temporary claims."""
    period = max(0.2, min(ttl_s / 4, 30.0))
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(period)
        try:
            deleted = await loop.run_in_executor(
                executor, service.expire_tokens, registry.delete_unactivated_certificate
            )
            for certificate in deleted:
                log.info("ownership token expired: deleted unactivated certificate %.12s", certificate)
            await loop.run_in_executor(executor, registry.forget_expired_claims)
        except Exception:
            log.exception("token expiry sweep failed")


def _identity_now(registry: Registry, certificate_id: str, client_id: str) -> ConnectionIdentity | None:
    """The registry's answer on the event loop, if nobody holds its lock (a few dict reads, cheaper than a
    thread hand-off); RegistryBusy if a worker does (a RegisterThing writing its plan): the loop never
    waits."""
    if not registry.lock.acquire(blocking=False):
        raise RegistryBusy
    try:
        return registry.identity(certificate_id, client_id)  # its own `with lock` re-enters (an RLock)
    finally:
        registry.lock.release()
