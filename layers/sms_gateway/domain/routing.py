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

The weighted choice is a stable hash of the message id, so a message keeps its provider across
retries and the split over many messages follows the weights.
"""

from __future__ import annotations

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
            are not positive integers, an unknown ``delivery``.
    """
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
