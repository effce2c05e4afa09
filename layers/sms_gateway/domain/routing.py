"""Tenant route policies (DESIGN section 8): which provider gets attempt n of a message.

Strategies and their JSON payloads (contract):

- ``direct``:   ``{"default_provider": "a"}``
- ``weighted``: ``{"providers": [{"provider": "a", "weight": 70},
  {"provider": "b", "weight": 30}]}``
- ``failover``: ``{"providers": [{"provider": "a"}, {"provider": "b"}]}``; attempt n goes to the
  next provider in order after a failure (wrapping around).

Each payload may add ``"delivery": "at_most_once"`` (the default) or ``"at_least_once"``: what
follows an attempt whose outcome is unknown (issue 7; see
:func:`sms_gateway.domain.decisions.decide_after_attempt`).

Each payload may add ``"retention": {"redact_after_days": N, "delete_after_days": M}``: the
tenant's own retention periods (issue 11), used by the RetentionFunction instead of the
stack's ``RedactAfterDays``/``DeleteAfterDays``; see :class:`TenantRetention` for the bounds.

The weighted choice is a stable hash of the message id, so a message keeps its provider across
retries and the split over many messages follows the weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Strategy(StrEnum):
    """How a policy picks a provider."""

    DIRECT = "direct"
    WEIGHTED = "weighted"
    FAILOVER = "failover"


class Delivery(StrEnum):
    """What follows an attempt whose outcome is unknown (the request left, no answer came).

    ``at_most_once``: the message fails with ``outcome_unknown`` (never two SMS on a handset);
    ``at_least_once``: it is retried like a transient failure (never a lost SMS).
    """

    AT_MOST_ONCE = "at_most_once"
    AT_LEAST_ONCE = "at_least_once"


class InvalidRoutePolicy(ValueError):
    """A stored policy whose strategy or payload is not one of the contract's shapes."""


# Bounds of a tenant's retention periods, as the template's DeleteAfterDays: rows outlive the
# DeadLetterQueue's 14-day retention (a late dead letter can't re-create a deleted message
# as replayable), and nothing is kept past 100 years.
MIN_DELETE_AFTER_DAYS = 15
MAX_RETENTION_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class TenantRetention:
    """A tenant's own retention periods in days, counted from a message's creation: body,
    number and error texts are blanked after ``redact_after_days``, rows deleted after
    ``delete_after_days`` (the audit trail stays; :mod:`sms_gateway.storage.retention`).

    Bounds: ``1 <= redact_after_days < delete_after_days``, ``delete_after_days >= 15``
    (:data:`MIN_DELETE_AFTER_DAYS`), both ``<= 36500``.

    Raises:
        InvalidRoutePolicy: a period that is not an integer or is out of those bounds.
    """

    redact_after_days: int
    delete_after_days: int

    def __post_init__(self) -> None:
        for name in ("redact_after_days", "delete_after_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidRoutePolicy(f"retention: '{name}' must be an integer")
            if not 1 <= value <= MAX_RETENTION_DAYS:
                raise InvalidRoutePolicy(
                    f"retention: '{name}' must be between 1 and {MAX_RETENTION_DAYS}"
                )
        if self.delete_after_days < MIN_DELETE_AFTER_DAYS:
            raise InvalidRoutePolicy(
                f"retention: 'delete_after_days' must be >= {MIN_DELETE_AFTER_DAYS} "
                "(rows outlive the DeadLetterQueue's 14 days)"
            )
        if self.delete_after_days <= self.redact_after_days:
            raise InvalidRoutePolicy(
                "retention: 'delete_after_days' must be more than 'redact_after_days'"
            )


def _retention(data: dict[str, Any]) -> TenantRetention | None:
    """The payload's ``retention`` object, or None when it has none."""
    if "retention" not in data:
        return None
    block = data["retention"]
    expected = {"redact_after_days", "delete_after_days"}
    if not isinstance(block, dict) or set(block) != expected:
        raise InvalidRoutePolicy(
            "retention: must be an object with exactly 'redact_after_days' and 'delete_after_days'"
        )
    return TenantRetention(block["redact_after_days"], block["delete_after_days"])


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """A tenant's parsed route policy.

    ``providers``: provider names in policy order; ``weights``: one positive int per provider
    for ``weighted`` (empty otherwise); ``version``: the stored row's version; ``delivery``:
    the guarantee for unknown outcomes.
    """

    tenant_id: str
    strategy: Strategy
    providers: tuple[str, ...]
    weights: tuple[int, ...] = ()
    version: int = 1
    delivery: Delivery = Delivery.AT_MOST_ONCE
    # the tenant's own retention periods (None: the stack's)
    retention: TenantRetention | None = None


def _provider_name(item: Any, where: str) -> str:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("provider"), str)
        or not item["provider"]
    ):
        raise InvalidRoutePolicy(f"{where}: each entry needs a non-empty 'provider' string")
    return str(item["provider"])


def parse_policy(
    tenant_id: str, strategy: str, payload: str | dict[str, Any], version: int = 1
) -> RoutePolicy:
    """Parse a stored policy row into a :class:`RoutePolicy`.

    ``payload`` is the JSON text (or its already-decoded object).

    Raises:
        InvalidRoutePolicy: unknown strategy, malformed JSON, missing providers, weights that
            are not positive integers, an unknown ``delivery``, a ``retention`` out of
            :class:`TenantRetention`'s bounds.
    """
    policy = _parse_routes(tenant_id, strategy, payload, version)
    data = json.loads(payload) if isinstance(payload, str) else payload
    retention = _retention(data)
    return policy if retention is None else dataclasses.replace(policy, retention=retention)


def _parse_routes(
    tenant_id: str, strategy: str, payload: str | dict[str, Any], version: int
) -> RoutePolicy:
    try:
        kind = Strategy(strategy)
    except ValueError as exc:
        raise InvalidRoutePolicy(f"unknown strategy {strategy!r}") from exc
    try:
        data = json.loads(payload) if isinstance(payload, str) else payload
    except json.JSONDecodeError as exc:
        raise InvalidRoutePolicy(f"payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRoutePolicy("payload must be a JSON object")
    try:
        delivery = Delivery(data.get("delivery", Delivery.AT_MOST_ONCE))
    except ValueError:
        raise InvalidRoutePolicy("'delivery' must be 'at_most_once' or 'at_least_once'") from None
    if kind is Strategy.DIRECT:
        name = data.get("default_provider")
        if not isinstance(name, str) or not name:
            raise InvalidRoutePolicy("direct: 'default_provider' must be a non-empty string")
        return RoutePolicy(tenant_id, kind, (name,), version=version, delivery=delivery)
    items = data.get("providers")
    if not isinstance(items, list) or not items:
        raise InvalidRoutePolicy(f"{kind}: 'providers' must be a non-empty list")
    names = tuple(_provider_name(item, str(kind)) for item in items)
    if kind is Strategy.FAILOVER:
        return RoutePolicy(tenant_id, kind, names, version=version, delivery=delivery)
    weights = []
    for item in items:
        weight = item.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise InvalidRoutePolicy("weighted: each 'weight' must be a non-negative integer")
        weights.append(weight)
    if sum(weights) <= 0:
        raise InvalidRoutePolicy("weighted: the weights must add up to more than 0")
    return RoutePolicy(tenant_id, kind, names, tuple(weights), version=version, delivery=delivery)


def _bucket(message_id: str, total: int) -> int:
    digest = hashlib.sha256(message_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def choose_provider(policy: RoutePolicy, message_id: str, attempt: int) -> str:
    """The provider for ``attempt`` (1-based) of ``message_id`` under ``policy``.

    Raises:
        ValueError: ``attempt`` < 1.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if policy.strategy is Strategy.DIRECT:
        return policy.providers[0]
    if policy.strategy is Strategy.FAILOVER:
        return policy.providers[(attempt - 1) % len(policy.providers)]
    point = _bucket(message_id, sum(policy.weights))
    for name, weight in zip(policy.providers, policy.weights, strict=True):
        if point < weight:
            return name
        point -= weight
    raise AssertionError("unreachable: point < sum(weights)")  # pragma: no cover
