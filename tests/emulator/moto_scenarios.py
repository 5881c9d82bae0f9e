"""DynamoDB requests against moto, with the emulator's library patches or without, printed as JSON:
`python -m tests.emulator.moto_scenarios mock|hook patched|plain`. test_moto_dynamodb.py runs each
(transport, mode) in a fresh process (the patches are process-wide) and compares patched with plain.

Transports:
- `mock`: boto3 against moto's `mock_aws` in this process; patched = emulator/registry/moto_dynamodb.py;
- `hook`: the hook process's setting: a `LocalAwsServer` and its `before-send` shortcut in region
  eu-west-1 (not moto's default, so a request served in the wrong region shows); patched adds
  botocore_local.py (DynamoDB calls to that server unsigned, the region from `install_shortcut`).

Each scenario records what boto3 returned or raised, every raw reply on the way (status, content type
and body bytes, before botocore parses them) and the table afterwards. The scenarios are the hook's and
the retirer's own calls, made by their own code (moto_scenarios_hook.py: every expression form they
send), and requests beside them: errors, an item that does not exist yet, every attribute type in a
reply, ReturnValues (moto_scenarios_edges.py); plain update expressions, before and after their fast
path takes them, and what it must leave to moto (moto_scenarios_plain.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TABLE = "serials"
REGION = "eu-west-1"
INDEX = "rotations"
PLAIN_UPDATES = [0]  # updates handed to the plain-update fast path so far (patched runs)


@dataclass
class Context:
    """What a scenario works with: a raw client, the hook's registry, the retirer's store."""

    db: Any
    registry: Any
    store: Any
    replies: list[dict[str, Any]] = field(default_factory=list)

    def capture(self, response_dict: dict[str, Any], **_: Any) -> None:
        body = response_dict["body"]
        self.replies.append(
            {
                "status": response_dict["status_code"],
                "content_type": response_dict["headers"].get("Content-Type"),
                "body": body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else body,
            }
        )


Scenario = tuple[str, Callable[[Context], Any]]


def call(db: Any, operation: str, **request: Any) -> Any:
    """boto3's answer, or the error it raised (code, message, cancellation reasons, item)."""
    from botocore.exceptions import ClientError

    try:
        reply = getattr(db, operation)(**request)
    except ClientError as exc:
        return {
            "error": exc.response["Error"].get("Code"),
            "message": exc.response["Error"].get("Message"),
            "reasons": exc.response.get("CancellationReasons"),
            "item": exc.response.get("Item"),
            "status": exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        }
    except Exception as exc:  # noqa: BLE001 - under mock_aws a moto bug surfaces as its own exception
        return {"raised": type(exc).__name__, "message": str(exc)}
    reply.pop("ResponseMetadata", None)
    return {"ok": reply}


def compact(value: Any) -> Any:
    """Long strings (the item-size scenarios) as their length and digest, to keep the output small."""
    if isinstance(value, str | bytes) and len(value) > 200:
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return f"<{type(value).__name__} of {len(value)}: sha256 {hashlib.sha256(data).hexdigest()}>"
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def create_table(db: Any) -> None:
    """The serial table as the stack declares it: key `pk`, the sparse rotations index."""
    db.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "rotation_pending", "AttributeType": "S"},
            {"AttributeName": "rotation_started_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": INDEX,
                "KeySchema": [
                    {"AttributeName": "rotation_pending", "KeyType": "HASH"},
                    {"AttributeName": "rotation_started_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def run(transport: str, patched: bool) -> dict[str, Any]:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(repo, "lambdas"))  # the Lambdas import as `provisioning_hook.x`
    from tests.emulator import moto_scenarios_edges, moto_scenarios_hook, moto_scenarios_plain

    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        os.environ.pop(name, None)
    installed = {"moto": False, "botocore": False}
    if patched:
        from emulator.registry import moto_dynamodb

        installed["moto"] = moto_dynamodb.install(enabled=True)
        apply = moto_dynamodb._PlainUpdate.apply

        def counted(self: Any, item: Any) -> None:
            PLAIN_UPDATES[0] += 1
            apply(self, item)

        moto_dynamodb._PlainUpdate.apply = counted  # type: ignore[method-assign]
    stop: Callable[[], None] = lambda: None  # noqa: E731
    if transport == "mock":
        from moto import mock_aws

        mock = mock_aws()
        mock.start()
        stop = mock.stop
        endpoint = None
    else:
        from emulator.awsapi.server import LocalAwsServer

        server = LocalAwsServer(threading.RLock())
        server.start()
        server.install_shortcut(region=REGION)
        endpoint = server.url
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        if patched:
            from emulator.registry import botocore_local

            installed["botocore"] = botocore_local.install(endpoint, enabled=True)
        stop = server.stop
    try:
        scenarios, plain_updates = _scenarios(
            endpoint, moto_scenarios_hook, moto_scenarios_edges, moto_scenarios_plain
        )
        # Per scenario, the updates handed to the plain-update fast path (patched only; not compared).
        return {"installed": installed, "plain_updates": plain_updates, "scenarios": scenarios}
    finally:
        stop()


def _scenarios(endpoint: str | None, *modules: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    import boto3
    from certificate_retirer.store import Store
    from provisioning_hook import registry_dynamodb

    db = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    create_table(db)
    registry_dynamodb.reset_clients()
    store = Store(TABLE, INDEX)
    context = Context(db=db, registry=registry_dynamodb.DynamoDBRegistry(TABLE, budget_s=600), store=store)
    for client in (db, registry_dynamodb.client("dynamodb"), store.db):
        client.meta.events.register("before-parse.dynamodb", context.capture)
    out: list[dict[str, Any]] = []
    plain_updates: dict[str, int] = {}
    for module in modules:
        module.seed(db)
        for name, scenario in module.SCENARIOS:
            context.replies = []
            before = PLAIN_UPDATES[0]
            result = scenario(context)
            if PLAIN_UPDATES[0] > before:
                plain_updates[name] = PLAIN_UPDATES[0] - before
            replies = context.replies
            context.replies = []
            items = db.scan(TableName=TABLE, ConsistentRead=True)["Items"]
            table = sorted(items, key=lambda item: item["pk"]["S"])
            out.append(compact({"scenario": name, "result": result, "replies": replies, "table": table}))
    return out, plain_updates


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2] == "patched"), sort_keys=True, default=str))
