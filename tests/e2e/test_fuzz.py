"""Fuzzing the local stack from the committed ``docs/openapi.json`` (issue 8 item 3).

schemathesis generates requests for every operation of the document, valid ones (positive)
and ones that break it (negative), and each answer is checked against the document: no 5xx,
a documented status, content type and headers, a body matching its schema. It runs twice,
once per way the local stack can authenticate callers:

- ``header-tenant``: tenants by ``X-Tenant-ID`` (the local stack's ``AuthMode=local``; one
  request in ten carries none and must be 401), receipts unsigned (no receipt secret);
- ``signed-receipts``: the same tenancy, and ``SMS_GATEWAY_RECEIPT_SECRETS`` set, so receipts
  must carry ``X-Provider``/``X-Timestamp``/``X-Signature`` (API key mode itself needs API
  Gateway's key check, which the local stack does not have: deployed, the same code reads
  the key id instead of the header, tested in tests/integration).

Bounded: a fixed number of examples per operation and mode (derandomized, so the same run
each time), a 60 s timeout per request and :data:`TIME_BUDGET` per mode. ``make fuzz`` runs it
with its figures printed (CI calls it); ``make test`` leaves it out (marker ``fuzz``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sms_gateway.api.signatures import sign
from tests.e2e.conftest import local_stack
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

DOCUMENT = REPO_ROOT / "docs" / "openapi.json"
EXAMPLES = 70  # per operation, generation mode and tenancy mode: 4 x 2 x 2 x 70 = 1,120
TIME_BUDGET = 300.0  # seconds per tenancy mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SECRET = "fuzz-secret"
TENANTS = ("tenant-1", "tenant-2", "tenant-3")
DEMO_NUMBER = "+12025550143"


@dataclass
class Figures:
    """What one tenancy mode's run sent and got."""

    mode: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def line(self) -> str:
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(self.statuses.items()))
        return (
            f"fuzz {self.mode}: {self.requests} requests in {self.seconds:.0f} s, "
            f"{self.server_errors} server errors, {len(self.failures)} breaking the document; "
            f"statuses {statuses}"
        )


def _body_bytes(kwargs: dict[str, Any]) -> bytes:
    """The request body as it goes on the wire (what a provider signs)."""
    if "json" in kwargs:
        return json.dumps(kwargs.pop("json")).encode()
    data = kwargs.pop("data", b"")
    return data.encode() if isinstance(data, str) else (data or b"")


def _sendable(message: dict[str, Any]) -> None:
    """Keep the generated shape, with values the domain rules accept."""
    message.update(
        to=DEMO_NUMBER,
        body="fuzz " + str(message.get("body", ""))[:20].encode("ascii", "ignore").decode(),
    )
    message.pop("from", None)
    if isinstance(message.get("max_attempts"), int):
        message["max_attempts"] = 1 + message["max_attempts"] % 3
    if isinstance(message.get("validity_period"), int):
        message["validity_period"] = 60 + message["validity_period"] % 3600
    if not str(message.get("reference", "")).isprintable():
        message.pop("reference", None)


def _steer(case: schemathesis.Case, known: list[str]) -> None:
    """Half the valid cases get a number that exists and an id the stack knows, so that the
    accepted answers (202, 200) are exercised too, not only refusals: random strings are
    almost never valid E.164 numbers or message ids."""
    body = case.body
    if case.operation.path == "/v1/messages" and isinstance(body, dict):
        _sendable(body)
    elif case.operation.path == "/v1/messages/batch" and isinstance(body, dict):
        for message in body.get("messages", []):
            if isinstance(message, dict):
                _sendable(message)
    elif known and case.operation.path == "/v1/receipts" and isinstance(body, dict):
        body["message_id"] = known[len(known) // 2]
        body.pop("provider_message_id", None)
    elif known and case.path_parameters is not None and "message_id" in case.path_parameters:
        case.path_parameters["message_id"] = known[-1]


def _run_mode(mode: str, url: str, signed: bool) -> Figures:
    schema = schemathesis.openapi.from_path(str(DOCUMENT))
    figures = Figures(mode)
    known: list[str] = []  # message ids the stack accepted, for status reads and receipts
    session = requests.Session()
    started = time.monotonic()

    def run(operation: Any, generation: schemathesis.GenerationMode) -> None:
        """``EXAMPLES`` generated cases of one operation, sent and checked."""

        @given(case=operation.as_strategy(generation))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            if time.monotonic() - started > TIME_BUDGET:
                return
            n = figures.requests
            if generation is schemathesis.GenerationMode.POSITIVE and n % 2 == 0:
                _steer(case, known)
            kwargs = case.as_transport_kwargs(base_url=url)
            body = _body_bytes(kwargs)
            headers = kwargs.pop("headers")
            if n % 10 != 0:  # one in ten without a tenant: 401
                headers.setdefault("X-Tenant-ID", TENANTS[n % len(TENANTS)])
            if signed and operation.path == "/v1/receipts" and n % 5 != 0:
                stamp = int(time.time())
                headers.update(
                    {
                        "X-Provider": "provider-a",
                        "X-Timestamp": str(stamp),
                        "X-Signature": sign(SECRET, stamp, body.decode("utf-8", "replace")),
                    }
                )
            response = session.request(**kwargs, headers=headers, data=body, timeout=60)
            figures.requests += 1
            figures.statuses[response.status_code] += 1
            figures.by_operation[operation.label] += 1
            if response.status_code == 202 and "message_id" in response.text:
                answer = response.json()
                items = answer.get("messages", [answer])
                known.extend(i["message_id"] for i in items if "message_id" in i)
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:  # a check's failure (or group of them): recorded
                figures.failures.append(
                    f"{operation.label} {generation.value} -> {response.status_code}: "
                    f"{str(exc)[:300]} (sent {body[:200]!r})"
                )

        exercise()

    for result in schema.get_all_operations():
        for generation in (
            schemathesis.GenerationMode.POSITIVE,
            schemathesis.GenerationMode.NEGATIVE,
        ):
            run(result.ok(), generation)
    figures.seconds = time.monotonic() - started
    session.close()
    return figures


@pytest.mark.parametrize(
    ("mode", "env"),
    [
        ("header-tenant", {}),
        ("signed-receipts", {"SMS_GATEWAY_RECEIPT_SECRETS": json.dumps({"provider-a": SECRET})}),
    ],
)
def test_fuzz_the_local_stack_from_the_document(
    tmp_path: Path, mode: str, env: dict[str, str]
) -> None:
    # --no-throttle: the subject is the document; a fast run could outpace the receipts
    # routes' stage throttle (50/s, burst 100), whose 429 is API Gateway's, not the document's
    args = ("--quiet", "--no-throttle")
    with local_stack(tmp_path / "stack", env=env, args=args) as (_, stack, _):
        figures = _run_mode(mode, stack.url, signed=bool(env))
    print("\n" + figures.line(), flush=True)
    assert figures.requests >= 500, figures.line()  # two modes: at least 1,000 in all
    assert set(figures.by_operation) == {
        "GET /v1/messages/{message_id}",
        "POST /v1/messages",
        "POST /v1/messages/batch",
        "POST /v1/messages/{message_id}/cancel",
        "POST /v1/receipts",
        "POST /v1/receipts/twilio/{provider}",
    }
    assert figures.server_errors == 0, "\n".join(figures.failures[:20])
    assert figures.failures == [], "\n".join(figures.failures[:20])
