"""botocore in the hook process: DynamoDB requests to the process's own moto are sent unsigned.

The hook Lambda's DynamoDB calls reach the moto DynamoDB of its own process through the `before-send`
shortcut (`LocalAwsServer.install_shortcut`): no socket, and nothing on the way checks a signature
(moto accepts any key). SigV4 signing was a tenth of the hook process's CPU per call. Everything else
of botocore stays: parameter validation (the Lambda's client config keeps it on), serialization, retries,
response parsing. Only a request whose URL is the local server's is unsigned; any other endpoint
(`AWS_ENDPOINT_URL_DYNAMODB` set to a proxy, real AWS) is signed as usual, and so is every other
service. The shortcut serves an unsigned request in the region it was told (`install_shortcut(region=)`),
where a signed one names its region in its credential scope.

Two handlers among botocore's built-in ones, so every session created afterwards has them:
`before-call` (which sees the request's URL) marks the call's context, and `choose-signer` (which sees
only that context) answers `botocore.UNSIGNED` for a marked call: botocore's documented way to skip
signing. Pinned: botocore==1.44.8 (pyproject.toml); `install()` changes nothing on another version, or
with EMULATOR_FAST_PATHS=0 (bench/hook_cpu.py compares both). tests/emulator/test_botocore_local.py
checks that the same calls give the same results and errors signed and unsigned.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import version
from typing import Any

from emulator.registry.moto_dynamodb import fast_paths_wanted

BOTOCORE_VERSION = "1.44.8"
SERVICES = ("dynamodb",)  # botocore's service ids (hyphenized) whose local calls go unsigned

log = logging.getLogger("emulator.registry.botocore_local")

_CONTEXT_KEY = "emulator_local_unsigned"
_lock = threading.Lock()
_installed: dict[str, list[tuple[str, Any]]] = {}  # local URL -> its handlers (none: not installed)


def install(local_url: str, *, enabled: bool | None = None) -> bool:
    """Send DynamoDB requests for `local_url` unsigned, from every botocore session created after this
    call. Returns whether it did: not when turned off (`enabled`, else EMULATOR_FAST_PATHS) or when
    botocore is not the version this was written against. Once per URL and process."""
    import botocore
    import botocore.handlers

    local_url = local_url.rstrip("/")
    prefix = local_url + "/"

    def mark_local(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        url = params.get("url")
        if isinstance(url, str) and (url == local_url or url.startswith(prefix)):
            context[_CONTEXT_KEY] = True

    def unsigned_if_local(context: dict[str, Any], **_: Any) -> Any:
        return botocore.UNSIGNED if context.get(_CONTEXT_KEY) else None

    with _lock:
        if local_url in _installed:
            return bool(_installed[local_url])
        wanted = fast_paths_wanted() if enabled is None else enabled
        found = version("botocore")
        if wanted and found != BOTOCORE_VERSION:
            log.warning("botocore %s is not %s: local DynamoDB calls stay signed", found, BOTOCORE_VERSION)
        handlers: list[tuple[str, Any]] = []
        if wanted and found == BOTOCORE_VERSION:
            for service in SERVICES:
                handlers += [
                    (f"before-call.{service}", mark_local),
                    (f"choose-signer.{service}", unsigned_if_local),
                ]
            botocore.handlers.BUILTIN_HANDLERS.extend(handlers)
        _installed[local_url] = handlers
        return bool(handlers)


def uninstall(local_url: str) -> None:
    """Sessions created from now on sign calls to `local_url` again (a server that stops, tests)."""
    import botocore.handlers

    with _lock:
        for handler in _installed.pop(local_url.rstrip("/"), []):
            if handler in botocore.handlers.BUILTIN_HANDLERS:
                botocore.handlers.BUILTIN_HANDLERS.remove(handler)
