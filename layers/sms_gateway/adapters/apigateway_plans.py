"""Per-tenant usage plans and API keys through API Gateway's management API (boto3
``apigateway``; issue 11).

A tenant's plan covers this stack's API and stage (``apiStages``), with a ``throttle``
(``rateLimit`` requests per second, ``burstLimit``) and a ``quota`` of ``limit`` requests per
``DAY`` (API Gateway's usage-plan model: "Create and configure usage plans" in its Developer
Guide). API Gateway answers 429 to a key over its throttle or quota before any function runs.

IAM (AdminRole in ``template.yaml``), by API Gateway resource path:
``POST /usageplans`` (CreateUsagePlan), ``PATCH /usageplans/{id}`` (UpdateUsagePlan),
``GET /usageplans`` (GetUsagePlans), ``GET /usageplans/{id}/keys`` (GetUsagePlanKeys),
``POST /usageplans/{id}/keys`` (CreateUsagePlanKey),
``DELETE /usageplans/{id}/keys/{keyId}`` (DeleteUsagePlanKey), ``POST /apikeys``
(CreateApiKey), ``PATCH /apikeys/{id}`` (UpdateApiKey).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sms_gateway.domain.tenants import TenantLimits


def _limits(limits: TenantLimits) -> dict[str, Any]:
    return {
        "throttle": {"rateLimit": limits.rate_limit, "burstLimit": limits.burst_limit},
        "quota": {"limit": limits.daily_quota, "period": "DAY"},
    }


def _number(value: float) -> str:
    # A patch value is a string; a whole rate is written without ".0" (moto reads it as an
    # integer, API Gateway as a double: both take "5").
    return str(int(value)) if value.is_integer() else repr(value)


class ApiGatewayUsagePlans:
    """Usage plans and keys of the REST API ``api_id``, stage ``stage``.

    ``client``: a boto3 ``apigateway`` client. Errors are boto3's and propagate.
    """

    def __init__(self, client: Any, api_id: str, stage: str) -> None:
        self._client = client
        self._api_id = api_id
        self._stage = stage

    def create_plan(self, tenant_id: str, limits: TenantLimits) -> str:
        """A new usage plan for ``tenant_id`` on this API and stage; returns its id."""
        answer = self._client.create_usage_plan(
            name=f"sms-gateway-{self._api_id}-{self._stage}-{tenant_id}",
            description=f"sms-gateway tenant {tenant_id}",
            apiStages=[{"apiId": self._api_id, "stage": self._stage}],
            **_limits(limits),
        )
        return str(answer["id"])

    def update_plan(self, plan_id: str, limits: TenantLimits) -> None:
        """Set the plan's throttle and daily quota (takes effect at once for its keys)."""
        self._client.update_usage_plan(
            usagePlanId=plan_id,
            patchOperations=[
                {
                    "op": "replace",
                    "path": "/throttle/rateLimit",
                    "value": _number(limits.rate_limit),
                },
                {
                    "op": "replace",
                    "path": "/throttle/burstLimit",
                    "value": str(limits.burst_limit),
                },
                {"op": "replace", "path": "/quota/limit", "value": str(limits.daily_quota)},
                {"op": "replace", "path": "/quota/period", "value": "DAY"},
            ],
        )

    def create_key(self, tenant_id: str, label: str) -> tuple[str, str]:
        """A new enabled API key for ``tenant_id``; returns ``(key id, key value)``. The value
        is the secret the tenant sends as ``x-api-key``; it is returned here once and stored
        nowhere by the gateway."""
        answer = self._client.create_api_key(
            name=f"sms-gateway-{tenant_id}-{label}",
            description=f"sms-gateway tenant {tenant_id}",
            enabled=True,
        )
        return str(answer["id"]), str(answer["value"])

    def attach(self, plan_id: str, key_id: str) -> None:
        """Put the key in the plan (a key is in at most one plan per API stage)."""
        self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")

    def detach(self, plan_id: str, key_id: str) -> None:
        """Take the key out of the plan."""
        self._client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)

    def disable_key(self, key_id: str) -> None:
        """Disable the key: API Gateway refuses it (403) before any function runs."""
        self._client.update_api_key(
            apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
        )

    def plans_of_key(self, key_id: str) -> list[str]:
        """The ids of the usage plans the key is in (for this stack's API stage)."""
        plans: list[str] = []
        for page in self._client.get_paginator("get_usage_plans").paginate(keyId=key_id):
            for plan in page.get("items", []):
                stages = plan.get("apiStages", [])
                if any(
                    s.get("apiId") == self._api_id and s.get("stage") == self._stage for s in stages
                ):
                    plans.append(str(plan["id"]))
        return plans

    def keys_of_plan(self, plan_id: str) -> list[tuple[str, str]]:
        """The API keys in usage plan ``plan_id``, as ``(key id, key name)`` pairs, every page
        of ``GetUsagePlanKeys`` (the key values it also returns are dropped here)."""
        keys: list[tuple[str, str]] = []
        for page in self._client.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan_id):
            for item in page.get("items", []):
                keys.append((str(item["id"]), str(item.get("name") or "")))
        return keys
