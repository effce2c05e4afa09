"""The route-policy aggregate in SQL: ``tenant_route_policies``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from sms_gateway.domain.routing import (
    InvalidRoutePolicy,
    RoutePolicy,
    TenantRetention,
    parse_policy,
    stored_payload,
)
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import tenant_route_policies


class SqlPolicyStore:
    """The :class:`~sms_gateway.services.ports.PolicyStore` port over SQL.

    Accepts a :class:`Database` or (for scripts and the local stack) an ``Engine``.
    """

    def __init__(self, db: Database | Engine) -> None:
        self._db = db if isinstance(db, Database) else Database(db)

    def get(self, tenant_id: str) -> RoutePolicy | None:
        """The tenant's parsed policy, or None when it has none.

        Raises:
            InvalidRoutePolicy: the stored row is malformed.
            StorageUnavailable: the database cannot be reached.
        """

        def unit(conn: Connection) -> Any:
            return conn.execute(
                select(
                    tenant_route_policies.c.strategy,
                    tenant_route_policies.c.payload,
                    tenant_route_policies.c.version,
                ).where(tenant_route_policies.c.tenant_id == tenant_id)
            ).first()

        row = self._db.single(unit)
        if row is None:
            return None
        # checked when written (put): numbers are not looked up in libphonenumber again
        return parse_policy(tenant_id, row.strategy, row.payload, row.version, check_numbers=False)

    def retention_periods(self) -> dict[str, TenantRetention]:
        """Every tenant whose policy has its own retention periods, with them (one query over
        all policies; a malformed stored row is logged and the tenant keeps the stack's).

        Raises:
            StorageUnavailable: the database cannot be reached.
        """
        table = tenant_route_policies

        def unit(conn: Connection) -> Any:
            return conn.execute(
                select(table.c.tenant_id, table.c.strategy, table.c.payload, table.c.version)
            ).all()

        periods: dict[str, TenantRetention] = {}
        for row in self._db.single(unit):
            try:
                policy = parse_policy(
                    row.tenant_id, row.strategy, row.payload, row.version, check_numbers=False
                )
            except InvalidRoutePolicy:
                from sms_gateway.observability import logger  # not at import: see observability

                logger.warning("malformed route policy: retention uses the stack's periods")
                continue
            if policy.retention is not None:
                periods[row.tenant_id] = policy.retention
        return periods

    def put(self, tenant_id: str, strategy: str, payload: dict[str, Any], now: datetime) -> int:
        """Create or replace the tenant's policy (validated first); returns its new version.

        Raises:
            InvalidRoutePolicy: ``strategy``/``payload`` is not a contract shape.
            StorageUnavailable: the database cannot be reached.
        """
        policy = parse_policy(tenant_id, strategy, payload)
        # sender IDs as checked: a stored policy is read without libphonenumber
        text = json.dumps(stored_payload(payload, policy), sort_keys=True)

        def unit(conn: Connection) -> int:
            result = conn.execute(
                update(tenant_route_policies)
                .where(tenant_route_policies.c.tenant_id == tenant_id)
                .values(
                    strategy=strategy,
                    payload=text,
                    version=tenant_route_policies.c.version + 1,
                    updated_at=now,
                )
            )
            if result.rowcount == 0:
                conn.execute(
                    insert(tenant_route_policies).values(
                        tenant_id=tenant_id,
                        strategy=strategy,
                        payload=text,
                        version=1,
                        updated_at=now,
                    )
                )
            version = conn.execute(
                select(tenant_route_policies.c.version).where(
                    tenant_route_policies.c.tenant_id == tenant_id
                )
            ).scalar_one()
            return int(version)

        return self._db.tx(unit)
