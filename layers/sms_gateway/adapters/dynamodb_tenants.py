"""Tenant and API-key records in the template's ``TenantsTable`` (DynamoDB; issue 11).

One table, partition key ``pk`` (S), two kinds of item:

- ``{"pk": "key#<api key id>", "kind": "key", "key_id", "tenant_id", "state":
  "active"|"revoked", "created_at", "revoked_at"?}``: what the ingest and status functions
  read, one ``GetItem`` per key id and cache period (:class:`~sms_gateway.services.tenants.
  TenantKeyResolver`);
- ``{"pk": "tenant#<tenant id>", "kind": "tenant", "tenant_id", "name", "usage_plan_id",
  "shared_plan", "rate_limit"?, "burst_limit"?, "daily_quota"?, "created_at"}``: the admin
  commands' record.

Times are RFC 3339 strings (UTC). Writes that create a record are conditional
(``attribute_not_exists(pk)``), so two admins creating the same tenant or key cannot
overwrite each other. Listing scans the table (an admin command over a few hundred items, not
a request path).

The ingest function imports this module (no SQL here), so it imports nothing beyond botocore.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from sms_gateway.domain.tenants import KeyRecord, KeyState, Tenant, TenantLimits

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_PREFIX: Final = "key#"
TENANT_PREFIX: Final = "tenant#"
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


class RecordExists(Exception):
    """A tenant or key record with that id is there already; nothing was written."""


class RecordMissing(LookupError):
    """No tenant or key record with that id."""


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _time(item: dict[str, Any], name: str) -> datetime | None:
    raw = item.get(name)
    return datetime.fromisoformat(raw["S"]) if raw else None


def key_from_item(item: dict[str, Any]) -> KeyRecord:
    """A key item as a :class:`KeyRecord`."""
    created = _time(item, "created_at")
    assert created is not None
    return KeyRecord(
        key_id=item["key_id"]["S"],
        tenant_id=item["tenant_id"]["S"],
        state=KeyState(item["state"]["S"]),
        created_at=created,
        revoked_at=_time(item, "revoked_at"),
    )


def tenant_from_item(item: dict[str, Any]) -> Tenant:
    """A tenant item as a :class:`Tenant`."""
    limits = None
    if "daily_quota" in item:
        limits = TenantLimits(
            rate_limit=float(item["rate_limit"]["N"]),
            burst_limit=int(item["burst_limit"]["N"]),
            daily_quota=int(item["daily_quota"]["N"]),
        )
    created = _time(item, "created_at")
    assert created is not None
    return Tenant(
        tenant_id=item["tenant_id"]["S"],
        name=item["name"]["S"],
        usage_plan_id=item["usage_plan_id"]["S"],
        limits=limits,
        created_at=created,
        shared_plan=item.get("shared_plan", {}).get("BOOL", False),
    )


def _tenant_item(tenant: Tenant) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": _s(TENANT_PREFIX + tenant.tenant_id),
        "kind": _s("tenant"),
        "tenant_id": _s(tenant.tenant_id),
        "name": _s(tenant.name),
        "usage_plan_id": _s(tenant.usage_plan_id),
        "shared_plan": {"BOOL": tenant.shared_plan},
        "created_at": _s(tenant.created_at.isoformat()),
    }
    if tenant.limits is not None:
        item["rate_limit"] = {"N": repr(tenant.limits.rate_limit)}
        item["burst_limit"] = {"N": str(tenant.limits.burst_limit)}
        item["daily_quota"] = {"N": str(tenant.limits.daily_quota)}
    return item


class DynamoDbTenantStore:
    """Tenant and key records in the DynamoDB table ``table`` (module docstring).

    IAM: the API functions need ``dynamodb:GetItem`` only; the admin commands ``GetItem``,
    ``PutItem``, ``UpdateItem`` and ``Scan``. Errors other than a failed condition are
    boto3's (``ClientError``, connection errors) and propagate.
    """

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def get_key(self, key_id: str) -> KeyRecord | None:
        """The record of API key ``key_id``, or None (one strongly consistent ``GetItem``:
        a key revoked a moment ago reads revoked)."""
        answer = self._client.get_item(
            TableName=self._table, Key={"pk": _s(KEY_PREFIX + key_id)}, ConsistentRead=True
        )
        item = answer.get("Item")
        return key_from_item(item) if item else None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The record of ``tenant_id``, or None."""
        answer = self._client.get_item(
            TableName=self._table, Key={"pk": _s(TENANT_PREFIX + tenant_id)}, ConsistentRead=True
        )
        item = answer.get("Item")
        return tenant_from_item(item) if item else None

    def _put_new(self, item: dict[str, Any], what: str) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                raise RecordExists(f"{what} exists already") from None
            raise

    def create_tenant(self, tenant: Tenant) -> None:
        """Write a new tenant record.

        Raises:
            RecordExists: a tenant with that id exists (nothing written).
        """
        self._put_new(_tenant_item(tenant), f"tenant {tenant.tenant_id}")

    def replace_tenant(self, tenant: Tenant) -> None:
        """Overwrite an existing tenant record (its plan or limits changed).

        Raises:
            RecordMissing: no tenant with that id.
        """
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_tenant_item(tenant),
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                raise RecordMissing(f"no tenant {tenant.tenant_id}") from None
            raise

    def create_key(self, key: KeyRecord) -> None:
        """Write a new key record (``active``).

        Raises:
            RecordExists: that key id is registered already (to this or another tenant).
        """
        self._put_new(
            {
                "pk": _s(KEY_PREFIX + key.key_id),
                "kind": _s("key"),
                "key_id": _s(key.key_id),
                "tenant_id": _s(key.tenant_id),
                "state": _s(key.state.value),
                "created_at": _s(key.created_at.isoformat()),
            },
            f"API key {key.key_id}",
        )

    def revoke_key(self, key_id: str, tenant_id: str, at: datetime) -> KeyRecord:
        """Mark the key ``revoked`` (it never authenticates again); returns the record.
        Revoking a revoked key keeps its first ``revoked_at``.

        Raises:
            RecordMissing: no such key of that tenant.
        """
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": _s(KEY_PREFIX + key_id)},
                UpdateExpression="SET #s = :revoked, revoked_at = if_not_exists(revoked_at, :at)",
                ConditionExpression="attribute_exists(pk) AND tenant_id = :tenant",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":revoked": _s(KeyState.REVOKED.value),
                    ":at": _s(at.isoformat()),
                    ":tenant": _s(tenant_id),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                raise RecordMissing(f"tenant {tenant_id} has no API key {key_id}") from None
            raise
        return key_from_item(answer["Attributes"])

    def _scan(self, kind: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
        names = {"#k": "kind"}
        values = {":kind": _s(kind)}
        expression = "#k = :kind"
        if tenant_id is not None:
            expression += " AND tenant_id = :tenant"
            values[":tenant"] = _s(tenant_id)
        items: list[dict[str, Any]] = []
        pages = self._client.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        for page in pages:
            items.extend(page.get("Items", []))
        return items

    def list_tenants(self) -> list[Tenant]:
        """Every tenant, by id."""
        return sorted(
            (tenant_from_item(i) for i in self._scan("tenant")), key=lambda t: t.tenant_id
        )

    def keys_of(self, tenant_id: str) -> list[KeyRecord]:
        """The tenant's keys, oldest first."""
        return sorted(
            (key_from_item(i) for i in self._scan("key", tenant_id)),
            key=lambda k: (k.created_at, k.key_id),
        )
