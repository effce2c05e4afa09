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

Each payload may add the tenant's sender IDs (issue 7, security): ``"sender_ids": [...]``, the
``from`` values its messages may carry (E.164 numbers, alphanumeric sender IDs, short codes,
End User Messaging pool / phone-number / sender-ID ids or ARNs), and ``"default_sender_id"``,
one of them, used for a message without ``from``. A policy without ``sender_ids`` allows no
explicit ``from`` (:func:`sender_id_for`): a tenant cannot send as another tenant's number or
brand by naming it.

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
import re
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
    sender_ids: tuple[str, ...] = ()
    default_sender_id: str | None = None
    # the tenant's own retention periods (None: the stack's)
    retention: TenantRetention | None = None


# End User Messaging origination identities a policy may list besides what ``from`` accepts:
# pool, phone-number and sender-ID ids, or their ARNs (``pinpoint-sms-voice-v2``
# ``SendTextMessage`` ``OriginationIdentity``).
_EUM_IDENTITY = re.compile(
    r"(?:pool|phone|senderid)-[0-9a-f]{32}"
    r"|arn:aws[a-z-]*:sms-voice:[a-z0-9-]+:[0-9]{12}:(?:pool|phone-number|sender-id)/\S{1,256}"
)


# The canonical forms ``normalize_sender_id`` returns, recognized without phonenumbers.
_CANONICAL_SENDER = re.compile(r"\+[1-9][0-9]{6,14}|[0-9]{3,8}|[A-Za-z0-9 ]{1,11}")


def _sender_id(value: str, field: str, check_numbers: bool) -> str:
    """One sender ID of a policy, normalized (see :func:`_sender_ids`).

    Raises:
        InvalidRoutePolicy: naming ``field`` and ``value``.
    """
    if _EUM_IDENTITY.fullmatch(value):
        return value
    if (
        not check_numbers
        and value == value.strip()
        and _CANONICAL_SENDER.fullmatch(value)
        and (value[0] == "+" or value.isdigit() or any(ch.isalpha() for ch in value))
    ):
        return value
    # phonenumbers' metadata (a few hundred ms to load) only where a number must be checked
    from sms_gateway.domain.phone import InvalidPhoneNumber, normalize_sender_id

    try:
        return normalize_sender_id(value)
    except InvalidPhoneNumber as exc:
        raise InvalidRoutePolicy(f"{field} ({value!r}): {exc}") from None


def _sender_ids(
    data: dict[str, Any], check_numbers: bool = True
) -> tuple[tuple[str, ...], str | None]:
    """The policy's ``sender_ids`` (normalized) and ``default_sender_id``.

    ``check_numbers``: check each number against libphonenumber's metadata, as when a policy
    is written; False for a stored policy (checked when it was written), whose canonical
    entries are then taken without loading that metadata (the sender's first policy read).

    Raises:
        InvalidRoutePolicy: naming the field and the entry that is not a sender ID.
    """
    raw = data.get("sender_ids", [])
    if not raw and data.get("default_sender_id") is None:
        return (), None
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise InvalidRoutePolicy("'sender_ids' must be a list of strings")
    found = [
        _sender_id(value, f"'sender_ids'[{index}]", check_numbers)
        for index, value in enumerate(raw)
    ]
    default = data.get("default_sender_id")
    if default is None:
        return tuple(dict.fromkeys(found)), None
    if not isinstance(default, str):
        raise InvalidRoutePolicy("'default_sender_id' must be a string")
    default = _sender_id(default, "'default_sender_id'", check_numbers)
    if default not in found:
        raise InvalidRoutePolicy("'default_sender_id' must be one of 'sender_ids'")
    return tuple(dict.fromkeys(found)), default


def stored_payload(payload: dict[str, Any], policy: RoutePolicy) -> dict[str, Any]:
    """The payload to store for ``policy`` (parsed from ``payload`` with its numbers
    checked): ``payload`` with its ``sender_ids`` and ``default_sender_id`` in canonical
    form (:func:`_sender_id`), since a stored policy is read back without libphonenumber and
    must mean what was checked (``"ACME "`` is ``ACME``; ``+4407911123456`` is
    ``+447911123456``, the form a message's ``from`` is normalized to at ingest)."""
    if not policy.sender_ids:
        return payload
    stored = {**payload, "sender_ids": list(policy.sender_ids)}
    if policy.default_sender_id is not None:
        stored["default_sender_id"] = policy.default_sender_id
    return stored


class SenderIdNotAllowed(ValueError):
    """A message's ``from`` is not one of its tenant's sender IDs (reason
    ``sender_id_not_allowed``, permanent: no provider call)."""


def sender_id_for(policy: RoutePolicy, given: str | None) -> str | None:
    """The sender ID a message of ``policy``'s tenant is sent with: ``given`` (its ``from``,
    normalized at ingest) when the policy lists it; the policy's ``default_sender_id`` when
    it has no ``from``; else None (the provider's configured origination).

    A policy without ``sender_ids`` allows no explicit ``from``: the safe default, since a
    ``from`` passed through unchecked lets one tenant send as another's number or brand.

    Raises:
        SenderIdNotAllowed: ``given`` is not in the policy's ``sender_ids``.
    """
    if given is None:
        return policy.default_sender_id
    if given in policy.sender_ids:
        return given
    if not policy.sender_ids:
        raise SenderIdNotAllowed(
            "this tenant's route policy lists no sender IDs ('sender_ids'), so no 'from' is allowed"
        )
    raise SenderIdNotAllowed("'from' is not one of this tenant's sender IDs ('sender_ids')")


def _provider_name(item: Any, where: str) -> str:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("provider"), str)
        or not item["provider"]
    ):
        raise InvalidRoutePolicy(f"{where}: each entry needs a non-empty 'provider' string")
    return str(item["provider"])


def parse_policy(
    tenant_id: str,
    strategy: str,
    payload: str | dict[str, Any],
    version: int = 1,
    *,
    check_numbers: bool = True,
) -> RoutePolicy:
    """Parse a stored policy row into a :class:`RoutePolicy`.

    ``payload`` is the JSON text (or its already-decoded object). ``check_numbers``: check
    the numbers among ``sender_ids`` for validity (writing a policy); False when reading a
    stored one (see :func:`_sender_ids`).

    Raises:
        InvalidRoutePolicy: unknown strategy, malformed JSON, missing providers, weights that
            are not positive integers, an unknown ``delivery``, a ``sender_ids`` entry that is
            not a sender ID, a ``default_sender_id`` not among them,
            a ``retention`` out of :class:`TenantRetention`'s bounds.
    """
    policy = _parse_routes(tenant_id, strategy, payload, version, check_numbers)
    data = json.loads(payload) if isinstance(payload, str) else payload
    retention = _retention(data)
    return policy if retention is None else dataclasses.replace(policy, retention=retention)


def _parse_routes(
    tenant_id: str,
    strategy: str,
    payload: str | dict[str, Any],
    version: int,
    check_numbers: bool,
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
    senders, default_sender = _sender_ids(data, check_numbers)
    common: dict[str, Any] = {
        "version": version,
        "delivery": delivery,
        "sender_ids": senders,
        "default_sender_id": default_sender,
    }
    if kind is Strategy.DIRECT:
        name = data.get("default_provider")
        if not isinstance(name, str) or not name:
            raise InvalidRoutePolicy("direct: 'default_provider' must be a non-empty string")
        return RoutePolicy(tenant_id, kind, (name,), **common)
    items = data.get("providers")
    if not isinstance(items, list) or not items:
        raise InvalidRoutePolicy(f"{kind}: 'providers' must be a non-empty list")
    names = tuple(_provider_name(item, str(kind)) for item in items)
    if kind is Strategy.FAILOVER:
        return RoutePolicy(tenant_id, kind, names, **common)
    weights = []
    for item in items:
        weight = item.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise InvalidRoutePolicy("weighted: each 'weight' must be a non-negative integer")
        weights.append(weight)
    if sum(weights) <= 0:
        raise InvalidRoutePolicy("weighted: the weights must add up to more than 0")
    return RoutePolicy(tenant_id, kind, names, tuple(weights), **common)


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
