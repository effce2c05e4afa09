"""The README's three demo flows against any gateway URL, each step checked and reported.

1. a message to a tenant routed to ``provider-a`` (fails each message's first attempt):
   ``202 queued``, then ``sent`` on attempt 2 by ``provider-a``;
2. a message with ``max_attempts: 2`` to a tenant routed to ``provider-fail`` (always
   transient): ``failed`` with reason ``dead_letter``;
3. a delivery receipt for message 1: ``200``, then ``delivered``.

``make smoke URL=... API_KEY=...`` runs them against a deployed stack (``python -m
scripts.demo_flows``); ``make sam-local-check`` runs them against ``sam local start-api``
(:func:`run_flows`). Locally the tenant is the ``X-Tenant-ID`` header (``AuthMode=local``);
deployed it is the API key (``x-api-key``), whose tenant needs a route policy first:
``sms-gateway policy <api-key-id> direct '{"provider": "provider-a"}' --dsn ...`` (and
``provider-fail`` for the key of flow 2). Deployed receipts must be signed: pass the
``provider-a`` receipt secret (``--receipt-secret``).

Standard library only, so it runs from any Python 3.12 without the gateway installed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Checks", "Tenant", "main", "run_flows"]


@dataclass
class Checks:
    """Named pass/fail results, printed as they come (``PASS name: detail``)."""

    results: list[tuple[str, bool, str]] = field(default_factory=list)
    out: Any = sys.stdout

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record and print one result; returns ``ok``."""
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", file=self.out)
        self.out.flush()
        return ok

    @property
    def failed(self) -> int:
        """How many checks failed."""
        return sum(1 for _, ok, _ in self.results if not ok)

    def summary(self) -> str:
        """``N passed, M failed``."""
        return f"{len(self.results) - self.failed} passed, {self.failed} failed"


@dataclass(frozen=True)
class Tenant:
    """How requests authenticate as one tenant: ``X-Tenant-ID`` (local) or ``x-api-key``
    (deployed), or both (each side ignores the other's header)."""

    tenant_id: str | None = None
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        """The tenant's request headers."""
        headers = {}
        if self.tenant_id:
            headers["X-Tenant-ID"] = self.tenant_id
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers


def request(
    method: str,
    url: str,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    """One HTTP request with ``body`` as JSON (or ``raw``, sent as is: a signed body);
    returns ``(status, decoded JSON body or {})``. HTTP errors are answers, not exceptions; a
    connection failure raises ``OSError``."""
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:  # noqa: S310
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"raw": raw[:200].decode(errors="replace")}
    return status, decoded if isinstance(decoded, dict) else {"value": decoded}


def wait_for_status(
    base: str,
    message_id: str,
    tenant: Tenant,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> dict[str, Any]:
    """Poll ``GET /v1/messages/{id}`` every second until ``done(body)`` or ``timeout``
    seconds; returns the last body (``{}`` if never 200)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while True:
        status, body = request("GET", f"{base}/v1/messages/{message_id}", headers=tenant.headers())
        if status == 200:
            last = body
            if done(body):
                return body
        if time.monotonic() > deadline:
            return last
        time.sleep(1)


def _brief(body: Mapping[str, Any]) -> str:
    keys = ("status", "attempts", "provider", "reason_code")
    return ", ".join(f"{k}={body.get(k)}" for k in keys if k in body) or json.dumps(body)[:200]


def run_flows(
    base: str,
    checks: Checks,
    *,
    sent_tenant: Tenant,
    failing_tenant: Tenant | None,
    receipt_secret: str | None = None,
    timeout: float = 90.0,
    run_id: str | None = None,
) -> None:
    """The three demo flows against ``base`` (e.g. ``http://127.0.0.1:3000`` or a deployed
    ``https://.../dev``), results into ``checks``. ``failing_tenant`` None skips flow 2 (one
    check says so). Idempotency keys carry ``run_id`` (default: random), so a rerun against
    the same stack sends new messages. ``timeout``: seconds each end state may take."""
    run_id = run_id or uuid.uuid4().hex[:8]
    base = base.rstrip("/")

    status, body = request(
        "POST",
        f"{base}/v1/messages",
        {"to": "+12025550143", "body": "hello"},
        {**sent_tenant.headers(), "Idempotency-Key": f"demo-1-{run_id}"},
    )
    message_id = body.get("message_id")
    if not checks.check(
        "flow 1: POST /v1/messages -> 202 queued",
        status == 202 and body.get("status") == "queued" and bool(message_id),
        f"{status} {_brief(body)}",
    ):
        message_id = None

    failing_id = None
    if failing_tenant is None:
        print("NOT RUN flow 2: no tenant routed to provider-fail given", file=checks.out)
    else:
        status, body = request(
            "POST",
            f"{base}/v1/messages",
            {"to": "+12025550144", "body": "fail", "max_attempts": 2},
            {**failing_tenant.headers(), "Idempotency-Key": f"demo-2-{run_id}"},
        )
        failing_id = body.get("message_id")
        checks.check(
            "flow 2: POST /v1/messages (max_attempts 2) -> 202 queued",
            status == 202 and bool(failing_id),
            f"{status} {_brief(body)}",
        )

    if message_id:
        final = wait_for_status(
            base,
            message_id,
            sent_tenant,
            lambda b: b.get("status") in ("sent", "delivered", "failed"),
            timeout,
        )
        checks.check(
            "flow 1: GET -> sent on attempt 2 by provider-a",
            final.get("status") == "sent"
            and final.get("attempts") == 2
            and final.get("provider") == "provider-a",
            _brief(final),
        )
    if failing_id and failing_tenant is not None:
        final = wait_for_status(
            base, failing_id, failing_tenant, lambda b: b.get("status") == "failed", timeout
        )
        checks.check(
            "flow 2: GET -> failed, reason dead_letter",
            final.get("status") == "failed" and final.get("reason_code") == "dead_letter",
            _brief(final),
        )
    if message_id:
        # the handset's time: now (a time before the message was created is refused)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        raw = json.dumps({"message_id": message_id, "delivered_at": now})
        headers: dict[str, str] = {}
        if receipt_secret:
            stamp = str(int(time.time()))
            digest = hmac.new(
                receipt_secret.encode(), f"{stamp}.{raw}".encode(), hashlib.sha256
            ).hexdigest()
            headers = {"X-Provider": "provider-a", "X-Timestamp": stamp}
            headers["X-Signature"] = f"v1={digest}"
        status, body = request("POST", f"{base}/v1/receipts", headers=headers, raw=raw.encode())
        if not checks.check(
            "flow 3: POST /v1/receipts -> 200 delivered",
            status == 200 and body.get("status") == "delivered",
            f"{status} {_brief(body)}",
        ):
            return
        final = wait_for_status(
            base, message_id, sent_tenant, lambda b: b.get("status") == "delivered", timeout
        )
        checks.check("flow 3: GET -> delivered", final.get("status") == "delivered", _brief(final))


def main(argv: list[str] | None = None) -> int:
    """``make smoke``: the flows against ``--url``; exit 1 if any check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="API base URL (the stack's ApiUrl)")
    parser.add_argument("--api-key", help="x-api-key of a tenant routed to provider-a")
    parser.add_argument("--fail-api-key", help="x-api-key of a tenant routed to provider-fail")
    parser.add_argument("--tenant", help="X-Tenant-ID (AuthMode=local stacks), e.g. tenant-1")
    parser.add_argument("--fail-tenant", help="X-Tenant-ID routed to provider-fail: tenant-2")
    parser.add_argument("--receipt-secret", help="provider-a's receipt secret (deployed)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per end state")
    args = parser.parse_args(argv)
    if not (args.api_key or args.tenant):
        parser.error("give --api-key (deployed) or --tenant (local)")
    failing = (
        Tenant(args.fail_tenant, args.fail_api_key)
        if args.fail_tenant or args.fail_api_key
        else None
    )
    checks = Checks()
    started = time.monotonic()
    run_flows(
        args.url,
        checks,
        sent_tenant=Tenant(args.tenant, args.api_key),
        failing_tenant=failing,
        receipt_secret=args.receipt_secret,
        timeout=args.timeout,
    )
    print(f"smoke: {checks.summary()} in {time.monotonic() - started:.0f} s")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
