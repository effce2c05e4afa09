"""The ``opt_outs`` table for operators: list the numbers recorded as opted out, clear one
(``sms-gateway optout list|clear``). The sender records them (``record_opt_outs``) and checks
them in its intake (:mod:`sms_gateway.storage.messages`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select

from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import opt_outs


class SqlOptOutStore:
    """Operator reads and deletes on ``opt_outs``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def list(
        self, tenant_id: str | None = None, number: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Entries (newest first, at most ``limit``), filtered by tenant and/or E.164 number:
        ``{tenant_id, number, sender_id (None: no sender ID), message_id, provider,
        created_at (RFC 3339)}``."""
        query = select(opt_outs).order_by(opt_outs.c.created_at.desc()).limit(limit)
        if tenant_id is not None:
            query = query.where(opt_outs.c.tenant_id == tenant_id)
        if number is not None:
            query = query.where(opt_outs.c.number == number)

        def unit(conn: Connection) -> list[dict[str, Any]]:
            return [
                {
                    "tenant_id": r.tenant_id,
                    "number": r.number,
                    "sender_id": r.sender_id or None,
                    "message_id": r.message_id,
                    "provider": r.provider,
                    "created_at": r.created_at.isoformat().replace("+00:00", "Z"),
                }
                for r in conn.execute(query)
            ]

        return self._db.single(unit)

    def clear(self, tenant_id: str, number: str, sender_id: str | None = None) -> int:
        """Delete ``tenant_id``'s entries for ``number``: the one for ``sender_id`` ('' for
        messages without a sender ID), or every sender ID's when None. Returns how many;
        sends to the number are attempted again from then on."""
        stmt = delete(opt_outs).where(
            opt_outs.c.tenant_id == tenant_id, opt_outs.c.number == number
        )
        if sender_id is not None:
            stmt = stmt.where(opt_outs.c.sender_id == sender_id)
        return self._db.tx(lambda conn: conn.execute(stmt).rowcount)
