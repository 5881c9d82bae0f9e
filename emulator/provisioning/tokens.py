"""Certificate ownership tokens: opaque, bound to one certificate, spent by one successful RegisterThing,
expiring after a TTL (AWS: 1 hour). When a token expires and its certificate was never activated,
the certificate goes away with it (fleet-provision-api)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from emulator.provisioning.errors import InvalidCertificateOwnershipToken

DEFAULT_TTL_S = 3600.0


@dataclass
class TokenGrant:
    token: str
    certificate_id: str
    expires_at: float
    in_use: bool = False


class TokenStore:
    """Thread-safe; the service calls `claim` before RegisterThing and `spend` or `release` after it.

    UNCONFIRMED detail: AWS does not say whether a RegisterThing that fails (say, the hook denied)
    spends the token. A device retrying after a transient failure is what a user expects to work,
    so here only a successful RegisterThing spends it; a concurrent second use is refused.
    """

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._grants: dict[str, TokenGrant] = {}
        self._lock = threading.Lock()
        self.changes = 0  # tokens issued, spent or expired, for --persist

    def issue(self, certificate_id: str) -> str:
        # AWS's tokens are long opaque strings; the length makes guessing hopeless here too.
        token = secrets.token_urlsafe(96)
        with self._lock:
            self._grants[token] = TokenGrant(token, certificate_id, self._clock() + self.ttl_s)
            self.changes += 1
        return token

    def claim(self, token: str) -> TokenGrant:
        with self._lock:
            grant = self._grants.get(token)
            if grant is None or grant.expires_at <= self._clock():
                raise InvalidCertificateOwnershipToken(
                    "Certificate ownership token is invalid or has expired."
                )
            if grant.in_use:
                raise InvalidCertificateOwnershipToken("Certificate ownership token is already being used.")
            grant.in_use = True
            return grant

    def spend(self, grant: TokenGrant) -> None:
        with self._lock:
            self._grants.pop(grant.token, None)
            self.changes += 1

    def release(self, grant: TokenGrant) -> None:
        with self._lock:
            if grant.token in self._grants:
                grant.in_use = False

    def expire(self) -> list[str]:
        """Drop expired tokens that are not in use; return their certificate ids."""
        now = self._clock()
        with self._lock:
            expired = [g for g in self._grants.values() if g.expires_at <= now and not g.in_use]
            for grant in expired:
                del self._grants[grant.token]
            if expired:
                self.changes += 1
        return [g.certificate_id for g in expired]

    def snapshot(self) -> list[tuple[str, str, float]]:
        """(token, certificate id, expiry in epoch seconds) of every token: the clock here is
        monotonic, which does not survive a restart; wall time does."""
        offset = time.time() - self._clock()
        with self._lock:
            return [(g.token, g.certificate_id, g.expires_at + offset) for g in self._grants.values()]

    def restore(self, saved: list[tuple[str, str, float]]) -> None:
        """Tokens of an earlier run, each with the time it had left (expired ones expire at once)."""
        offset = self._clock() - time.time()
        with self._lock:
            for token, certificate_id, expires_at in saved:
                self._grants[token] = TokenGrant(token, certificate_id, expires_at + offset)

    def __len__(self) -> int:
        return len(self._grants)
