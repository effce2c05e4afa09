"""API Gateway's stage throttling, emulated for the local stack's HTTP front (issue 11).

The template throttles the unauthenticated receipts routes with the stage's
``MethodSettings`` (``ThrottlingRateLimit`` / ``ThrottlingBurstLimit``, from the
``ReceiptsRateLimit`` / ``ReceiptsBurstLimit`` parameters). Deployed, API Gateway answers a
request over the limit ``429 {"message":"Too Many Requests"}`` itself, before any Lambda
function is invoked. This module does the same locally, so that a flood against the local
stack shows what the deployed throttle does.

The algorithm is API Gateway's (its "Throttle API requests" guide): a token bucket per method
setting, holding at most ``burst`` tokens and refilled at ``rate`` tokens per second; each
request takes one token or, when none is left, is throttled. The bucket starts full. One
bucket serves all callers of the method (stage throttling is not per client; the usage plan's
per-key throttling and WAF's per-IP rule are not emulated).

Method settings are read from every ``AWS::Serverless::Api`` (and ``AWS::ApiGateway::Stage``)
``MethodSettings`` of the template, values resolved like the rest of the local stack (the
parameters' defaults or overrides). ``ResourcePath`` is the resource path with ``/`` written
``~1`` (JSON Pointer escaping, ``~0`` is ``~``); ``/*`` and ``HttpMethod: "*"`` match every
resource and method, as in CloudFormation. A setting without a throttling limit does not
throttle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sms_gateway.local.template import Resolver, SamTemplate

TOO_MANY_REQUESTS_BODY = {"message": "Too Many Requests"}
"""API Gateway's body of a throttled request (status 429)."""

Clock = Callable[[], float]
"""Seconds on a monotonic clock (``time.monotonic``)."""


@dataclass(frozen=True, slots=True)
class MethodThrottle:
    """One method setting: ``http_method`` (``"*"``: any) on ``resource_path`` (decoded, e.g.
    ``/v1/receipts``; ``"/*"``: any), ``rate`` requests per second, ``burst`` requests.

    Raises:
        ValueError: a negative rate or burst.
    """

    http_method: str
    resource_path: str
    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 0:
            raise ValueError(f"throttle of {self.http_method} {self.resource_path}: negative")

    def matches(self, method: str, resource_path: str) -> bool:
        """Whether the setting covers ``method`` on the route ``resource_path`` (the
        template's path, ``{param}`` included)."""
        return self.http_method in ("*", method.upper()) and self.resource_path in (
            "/*",
            resource_path,
        )


class TokenBucket:
    """A token bucket: at most ``burst`` tokens, ``rate`` tokens added per second of
    ``clock``; starts full. Thread-safe.

    Raises:
        ValueError: a negative rate or burst.
    """

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("rate and burst must be >= 0")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take one token: True when there was one (the request goes through), False when the
        bucket is empty (the request is throttled; nothing is taken)."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._at)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


@dataclass
class StageThrottle:
    """The stage's method throttles; :meth:`allow` decides each request.

    The most specific setting applies (an exact method and path over wildcards), as a
    method's own setting overrides the stage's ``/*`` one. ``throttled`` counts the refused
    requests per ``(method, resource_path)``.
    """

    settings: Sequence[MethodThrottle]
    clock: Clock = time.monotonic
    throttled: dict[tuple[str, str], int] = field(default_factory=dict)
    _buckets: dict[MethodThrottle, TokenBucket] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._buckets = {s: TokenBucket(s.rate, s.burst, self.clock) for s in self.settings}

    def setting(self, method: str, resource_path: str) -> MethodThrottle | None:
        """The setting that applies to ``method`` on ``resource_path``, or None."""
        found = [s for s in self.settings if s.matches(method, resource_path)]
        if not found:
            return None
        return max(found, key=lambda s: (s.resource_path != "/*", s.http_method != "*"))

    def allow(self, method: str, resource_path: str) -> bool:
        """Whether a request for ``method`` on the route ``resource_path`` goes through (it
        takes a token from its setting's bucket); False: answer 429."""
        chosen = self.setting(method, resource_path)
        if chosen is None or self._buckets[chosen].take():
            return True
        with self._lock:
            key = (method.upper(), resource_path)
            self.throttled[key] = self.throttled.get(key, 0) + 1
        return False


def decode_resource_path(path: str) -> str:
    """A ``MethodSettings`` ``ResourcePath``, ``/`` followed by the resource path with ``/``
    written ``~1`` (``~`` written ``~0``), as the resource path: ``/~1v1~1receipts`` ->
    ``/v1/receipts``; ``/*`` (every resource) stays ``/*``."""
    if path == "/*" or not path.startswith("/"):
        return path
    return path[1:].replace("~1", "/").replace("~0", "~")


def method_throttles(template: SamTemplate, resolver: Resolver) -> list[MethodThrottle]:
    """Every throttling ``MethodSettings`` entry of the template's APIs and stages, resolved.

    Entries without both ``ThrottlingRateLimit`` and ``ThrottlingBurstLimit`` are left out
    (the account-level default they would fall back to is not emulated).

    Raises:
        TemplateError: a value cannot be resolved (e.g. an unknown parameter).
        ValueError: a limit that is not a number, or negative.
    """
    throttles = []
    for kind in ("AWS::Serverless::Api", "AWS::ApiGateway::Stage"):
        for resource in template.resources_of_type(kind).values():
            properties: Mapping[str, Any] = resource.get("Properties") or {}
            for entry in properties.get("MethodSettings") or []:
                if "ThrottlingRateLimit" not in entry or "ThrottlingBurstLimit" not in entry:
                    continue
                throttles.append(
                    MethodThrottle(
                        http_method=str(resolver.resolve(entry.get("HttpMethod", "*"))).upper(),
                        resource_path=decode_resource_path(
                            str(resolver.resolve(entry.get("ResourcePath", "/*")))
                        ),
                        rate=float(resolver.resolve(entry["ThrottlingRateLimit"])),
                        burst=int(float(resolver.resolve(entry["ThrottlingBurstLimit"]))),
                    )
                )
    return throttles
