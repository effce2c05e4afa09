"""One object over the SQL stores, for operators, scripts and tests that read a message's whole
story (row, attempts, events, receipts, dead letters) through one handle.

The services use the stores themselves, each behind its port
(:mod:`sms_gateway.services.ports`): :class:`~sms_gateway.storage.messages.SqlMessageStore`,
:class:`~sms_gateway.storage.receipts.SqlReceiptStore`,
:class:`~sms_gateway.storage.dead_letters.SqlDeadLetterStore`,
:class:`~sms_gateway.storage.policies.SqlPolicyStore`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.storage.dead_letters import SqlDeadLetterStore
from sms_gateway.storage.messages import SqlMessageStore
from sms_gateway.storage.policies import SqlPolicyStore
from sms_gateway.storage.receipts import SqlReceiptStore
from sms_gateway.storage.records import (
    OPEN_RECEIPT_OUTCOMES,
    AttemptRecord,
    AttemptResult,
    MessageRecord,
    ReceiptRecord,
)
from sms_gateway.storage.sql import Database, translate_errors

__all__ = [
    "OPEN_RECEIPT_OUTCOMES",
    "AttemptRecord",
    "AttemptResult",
    "MessageRecord",
    "MessageRepository",
    "ReceiptRecord",
    "RoutePolicyRepository",
    "translate_errors",
]

RoutePolicyRepository = SqlPolicyStore
"""The policy store under its former name (scripts, the local stack's admin commands)."""


class MessageRepository(SqlMessageStore):
    """The message store plus the receipt and dead-letter stores' reads and writes, on one
    engine. ``messages``, ``receipts``, ``dead_letters``: the stores themselves."""

    def __init__(self, engine: Engine | Database) -> None:
        db = engine if isinstance(engine, Database) else Database(engine)
        super().__init__(db)
        self.messages: SqlMessageStore = self
        self.receipts = SqlReceiptStore(db)
        self.dead_letters = SqlDeadLetterStore(db)

    def dead_letters_for(self, message_id: str | None = None) -> list[dict[str, Any]]:
        """Dead-letter rows (all, or one message's), oldest first, as dicts."""
        return self.dead_letters.list_for(message_id)

    def record_dead_letter(
        self,
        *,
        sqs_message_id: str,
        message_id: str | None,
        tenant_id: str | None,
        receive_count: int,
        reason: ReasonCode,
        detail: str | None,
        raw_payload: str,
        now: datetime,
        fail_message: bool,
    ) -> bool:
        """Store a dead letter (see :meth:`SqlDeadLetterStore.record`), then, when
        ``fail_message``, move the message to ``failed`` (even for a second copy: the first
        may have met a live sender that has since put it back to queued)."""
        stored = self.dead_letters.record(
            sqs_message_id=sqs_message_id,
            message_id=message_id,
            tenant_id=tenant_id,
            receive_count=receive_count,
            reason=reason,
            detail=detail,
            raw_payload=raw_payload,
            now=now,
        )
        if fail_message and message_id is not None:
            self.dead_letters.fail_message(message_id, reason, detail, now)
        return stored

    def fail_dead_letter(
        self, message_id: str, reason: ReasonCode, detail: str | None, now: datetime
    ) -> MessageStatus | None:
        """See :meth:`SqlDeadLetterStore.fail_message`."""
        return self.dead_letters.fail_message(message_id, reason, detail, now)
