"""In-memory fakes of the store ports, for service unit tests (milliseconds, no database).

They pass the same contract suite as the SQL stores (``tests/contract``): same guards
(``WHERE status = :from``, versions, lease ends), same answers. One lock stands in for the
database's transactions. ``fail_next``: a number of calls that raise
:class:`StorageUnavailable` first (an outage, for tests).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.receipts import settles_unknown
from sms_gateway.domain.routing import RoutePolicy, parse_policy, stored_payload
from sms_gateway.domain.states import MessageStatus, check_transition
from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.messages import LEASE_LOST_DETAIL, OPTED_OUT_DETAIL, new_record
from sms_gateway.storage.receipts import settle_values, settled_detail
from sms_gateway.storage.records import (
    OPEN_RECEIPT_OUTCOMES,
    AttemptRecord,
    Claim,
    Finish,
    Finished,
    IntakeResult,
    MessageRecord,
    OptOut,
    ReceiptRecord,
    Settled,
)


@dataclass
class _Attempt:
    message_id: str
    attempt_number: int
    provider: str
    outcome: str
    reason_code: str | None = None
    error_code: str | None = None
    error_detail: str | None = None
    latency_ms: int | None = None
    started_at: datetime | None = None


@dataclass
class MemoryState:
    """The fake database: rows by table."""

    messages: dict[str, MessageRecord] = field(default_factory=dict)
    attempts: list[_Attempt] = field(default_factory=list)
    events: list[tuple[str, str | None, str, str | None]] = field(default_factory=list)
    receipts: dict[int, dict[str, Any]] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    policies: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    opt_outs: dict[tuple[str, str, str], OptOut] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.RLock = field(default_factory=threading.RLock)
    fail_next: int = 0
    calls: int = 0

    def enter(self) -> None:
        """Count a call; raise StorageUnavailable while ``fail_next`` lasts."""
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            raise StorageUnavailable("database unavailable: simulated outage")


class _Base:
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    def _move(
        self,
        message_id: str,
        current: MessageStatus,
        target: MessageStatus,
        now: datetime,
        *,
        reason: ReasonCode | None = None,
        detail: str | None = None,
        guard: Callable[[MessageRecord], bool] | None = None,
        **values: Any,
    ) -> bool:
        check_transition(current, target)
        row = self.state.messages.get(message_id)
        if row is None or row.status is not current or (guard and not guard(row)):
            return False
        if reason is not None:
            values.setdefault("reason_code", reason.value)
            values.setdefault("reason_detail", detail)
        self.state.messages[message_id] = replace(
            row, status=target, updated_at=now, version=row.version + 1, **values
        )
        self.state.events.append(
            (message_id, current.value, target.value, reason.value if reason else None)
        )
        return True

    def _close_in_flight(self, message_id: str) -> None:
        for attempt in self.state.attempts:
            if attempt.message_id == message_id and attempt.outcome == "in_flight":
                attempt.outcome = "transient_error"
                attempt.reason_code = ReasonCode.TIMEOUT.value
                attempt.error_detail = LEASE_LOST_DETAIL


class MemoryMessageStore(_Base):
    """The :class:`~sms_gateway.services.ports.MessageStore` port in memory."""

    def get(self, message_id: str) -> MessageRecord | None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            return self.state.messages.get(message_id)

    def get_for_tenant(self, tenant_id: str, message_id: str) -> MessageRecord | None:
        """See the port."""
        row = self.get(message_id)
        return row if row is not None and row.tenant_id == tenant_id else None

    def find_by_provider_message_id(
        self, provider_message_id: str, provider: str | None = None
    ) -> MessageRecord | None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            for row in self.state.messages.values():
                if row.provider_message_id == provider_message_id and (
                    provider is None or row.provider == provider
                ):
                    return row
            return None

    def attempts(self, message_id: str) -> list[AttemptRecord]:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            found = [a for a in self.state.attempts if a.message_id == message_id]
            return [
                AttemptRecord(
                    a.attempt_number,
                    a.provider,
                    a.outcome,
                    a.reason_code,
                    a.error_code,
                    a.error_detail,
                    a.latency_ms,
                )
                for a in sorted(found, key=lambda a: a.attempt_number)
            ]

    def events(self, message_id: str) -> list[tuple[str | None, str, str | None]]:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            return [(e[1], e[2], e[3]) for e in self.state.events if e[0] == message_id]

    def _insert(self, msg: QueuedMessage, now: datetime) -> bool:
        if msg.message_id in self.state.messages:
            return False
        self.state.messages[msg.message_id] = new_record(msg, now)
        self.state.events.append((msg.message_id, None, MessageStatus.ACCEPTED.value, None))
        self.state.events.append(
            (msg.message_id, MessageStatus.ACCEPTED.value, MessageStatus.QUEUED.value, None)
        )
        return True

    def intake(
        self,
        batch: Sequence[QueuedMessage],
        plan: Callable[[dict[str, MessageRecord]], Sequence[Claim]],
        lease_until: datetime,
        now: datetime,
    ) -> IntakeResult:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            new = frozenset(m.message_id for m in batch if self._insert(m, now))
            opted = set()
            for m in batch:
                row = self.state.messages.get(m.message_id)
                key = (row.tenant_id, row.to_number, row.sender_id or "") if row else None
                if key in self.state.opt_outs and self._move(
                    m.message_id,
                    MessageStatus.QUEUED,
                    MessageStatus.FAILED,
                    now,
                    reason=ReasonCode.OPTED_OUT,
                    detail=OPTED_OUT_DETAIL,
                ):
                    opted.add(m.message_id)
            rows = {
                m.message_id: self.state.messages[m.message_id]
                for m in batch
                if m.message_id in self.state.messages
            }
            claimed = set()
            for claim in plan({i: r for i, r in rows.items() if i not in opted}):
                if self._move(
                    claim.message_id,
                    MessageStatus.QUEUED,
                    MessageStatus.SENDING,
                    now,
                    guard=lambda r, v=claim.version: r.version == v,  # type: ignore[misc]
                    attempts=claim.attempt,
                    provider=claim.provider,
                    lease_expires_at=lease_until,
                ):
                    self.state.attempts.append(
                        _Attempt(
                            claim.message_id,
                            claim.attempt,
                            claim.provider,
                            "in_flight",
                            started_at=now,
                        )
                    )
                    claimed.add(claim.message_id)
            return IntakeResult(rows, new, frozenset(claimed), frozenset(opted))

    def record_opt_outs(self, entries: Sequence[OptOut], now: datetime) -> None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            for e in entries:
                self.state.opt_outs.setdefault((e.tenant_id, e.number, e.sender_id or ""), e)

    def finish_many(self, finishes: Sequence[Finish], now: datetime) -> Finished:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            moved: set[str] = set()
            waiting: set[str] = set()
            for f in finishes:
                result = f.result
                for attempt in self.state.attempts:
                    if attempt.message_id == f.message_id and attempt.attempt_number == f.attempt:
                        attempt.outcome = result.outcome
                        attempt.reason_code = (
                            result.reason_code.value if result.reason_code else None
                        )
                        attempt.error_code = result.error_code
                        attempt.error_detail = result.error_detail
                        attempt.latency_ms = result.latency_ms
                sent = f.target is MessageStatus.SENT
                values: dict[str, Any] = {"lease_expires_at": None}
                if sent:
                    values |= {
                        "provider_message_id": result.provider_message_id,
                        "sent_at": now,
                        "reason_code": None,
                        "reason_detail": None,
                    }
                if not self._move(
                    f.message_id,
                    MessageStatus.SENDING,
                    f.target,
                    now,
                    reason=None if sent else result.reason_code,
                    detail=None if sent else result.error_detail,
                    guard=lambda r, n=f.attempt: r.attempts == n,  # type: ignore[misc]
                    **values,
                ):
                    continue
                moved.add(f.message_id)
                row = self.state.messages[f.message_id]
                unmatched = sent and any(
                    r["provider_message_id"] == result.provider_message_id
                    and r["outcome"] == "unmatched"
                    for r in self.state.receipts.values()
                )
                if row.receipt_waiting or unmatched:
                    waiting.add(f.message_id)
            return Finished(frozenset(moved), frozenset(waiting))

    def record_queued(self, msg: QueuedMessage, now: datetime) -> bool:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            return self._insert(msg, now)

    def transition(
        self,
        message_id: str,
        current: MessageStatus,
        target: MessageStatus,
        now: datetime,
        *,
        reason: ReasonCode | None = None,
        detail: str | None = None,
        **values: Any,
    ) -> bool:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            return self._move(
                message_id, current, target, now, reason=reason, detail=detail, **values
            )

    def release_expired_lease(self, message_id: str, now: datetime) -> bool:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            moved = self._move(
                message_id,
                MessageStatus.SENDING,
                MessageStatus.QUEUED,
                now,
                reason=ReasonCode.TIMEOUT,
                detail=LEASE_LOST_DETAIL,
                guard=lambda r: r.lease_expires_at is None or r.lease_expires_at <= now,
                lease_expires_at=None,
            )
            if moved:
                self._close_in_flight(message_id)
            return moved

    def note_problem(self, message_id: str, reason: ReasonCode, detail: str, now: datetime) -> None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            row = self.state.messages.get(message_id)
            if row is not None and row.status is MessageStatus.QUEUED:
                self.state.messages[message_id] = replace(
                    row, reason_code=reason.value, reason_detail=detail, updated_at=now
                )


class MemoryReceiptStore(_Base):
    """The :class:`~sms_gateway.services.ports.ReceiptStore` port in memory."""

    def add(
        self,
        *,
        message_id: str | None,
        provider_message_id: str | None,
        status: str,
        error_code: str | None,
        delivered_at: datetime | None,
        raw: str,
        outcome: str,
        now: datetime,
        provider: str | None = None,
        attempt: int | None = None,
    ) -> int:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            receipt_id = next(self.state.ids)
            self.state.receipts[receipt_id] = {
                "id": receipt_id,
                "message_id": message_id,
                "provider_message_id": provider_message_id,
                "status": status,
                "error_code": error_code,
                "delivered_at": delivered_at,
                "outcome": outcome,
                "received_at": now,
                "provider": provider,
                "attempt": attempt,
            }
            if outcome == "pending" and message_id in self.state.messages:
                row = self.state.messages[message_id]
                self.state.messages[message_id] = replace(row, receipt_waiting=True)
            return receipt_id

    def apply(
        self,
        message_id: str,
        target: MessageStatus,
        now: datetime,
        *,
        receipt_id: int,
        delivered_at: datetime | None,
        reason: ReasonCode | None,
        detail: str | None,
    ) -> bool:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            values: dict[str, Any] = {}
            if target is MessageStatus.DELIVERED:
                values["delivered_at"] = delivered_at or now
            moved = self._move(
                message_id, MessageStatus.SENT, target, now, reason=reason, detail=detail, **values
            )
            receipt = self.state.receipts.get(receipt_id)
            if receipt is not None and receipt["outcome"] in OPEN_RECEIPT_OUTCOMES:
                receipt["outcome"] = "applied" if moved else "stale"
                receipt["message_id"] = message_id
            return moved

    def take_waiting(
        self,
        message_id: str,
        provider_message_id: str | None,
        provider: str | None = None,
        attempt: int | None = None,
    ) -> list[ReceiptRecord]:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            row = self.state.messages.get(message_id)
            if row is not None and row.receipt_waiting:
                self.state.messages[message_id] = replace(row, receipt_waiting=False)
            found = []
            for r in sorted(self.state.receipts.values(), key=lambda r: r["id"]):
                pending = (
                    r["message_id"] == message_id
                    and r["outcome"] == "pending"
                    and (attempt is None or r["attempt"] in (None, attempt))
                )
                unmatched = bool(provider_message_id) and (
                    r["provider_message_id"] == provider_message_id and r["outcome"] == "unmatched"
                )
                signed = provider is None or r["provider"] in (None, provider)
                if (pending or unmatched) and signed:
                    found.append(
                        ReceiptRecord(
                            r["id"],
                            r["message_id"],
                            r["provider_message_id"],
                            r["status"],
                            r["error_code"],
                            r["delivered_at"],
                            r["outcome"],
                            r["received_at"],
                        )
                    )
            return found

    def mark(self, receipt_id: int, outcome: str) -> None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            receipt = self.state.receipts.get(receipt_id)
            if receipt is not None and receipt["outcome"] in OPEN_RECEIPT_OUTCOMES:
                receipt["outcome"] = outcome

    def settle_unknown(
        self,
        message_id: str,
        target: MessageStatus,
        now: datetime,
        *,
        receipt_id: int,
        provider_message_id: str | None,
        delivered_at: datetime | None,
        reason: ReasonCode | None,
        detail: str | None,
    ) -> Settled | None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            row = self.state.messages.get(message_id)
            if row is None or not settles_unknown(row.status, row.reason_code):
                return None
            receipt = self.state.receipts.get(receipt_id)
            signer = receipt["provider"] if receipt is not None else None
            unknown = [
                a
                for a in self.state.attempts
                if a.message_id == message_id
                and a.outcome == "unknown"
                and (signer is None or a.provider == signer)
            ]
            if not unknown:
                return None
            attempt = max(unknown, key=lambda a: a.attempt_number)
            sent_at = attempt.started_at or now
            values = settle_values(
                target,
                now,
                provider=attempt.provider,
                provider_message_id=provider_message_id,
                sent_at=sent_at,
                delivered_at=delivered_at,
                reason=reason,
                detail=detail,
            )
            self.state.messages[message_id] = replace(
                row, status=target, updated_at=now, version=row.version + 1, **values
            )
            attempt.outcome = "sent"
            attempt.reason_code = attempt.error_code = None
            attempt.error_detail = settled_detail(receipt_id, provider_message_id)
            self.state.events.append((message_id, row.status.value, "sent", None))
            self.state.events.append(
                (message_id, "sent", target.value, reason.value if reason else None)
            )
            receipt = self.state.receipts.get(receipt_id)
            if receipt is not None and receipt["outcome"] in OPEN_RECEIPT_OUTCOMES:
                receipt["outcome"] = "applied"
                receipt["message_id"] = message_id
            return Settled(row.status, attempt.attempt_number, attempt.provider, sent_at)


class MemoryDeadLetterStore(_Base):
    """The :class:`~sms_gateway.services.ports.DeadLetterStore` port in memory."""

    def record(
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
        generation: int = 0,
    ) -> bool:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            for row in self.state.dead_letters:
                if row["sqs_message_id"] == sqs_message_id or (
                    message_id is not None
                    and row["message_id"] == message_id
                    and row["generation"] == generation
                ):
                    return False
            self.state.dead_letters.append(
                {
                    "id": next(self.state.ids),
                    "sqs_message_id": sqs_message_id,
                    "message_id": message_id,
                    "tenant_id": tenant_id,
                    "receive_count": receive_count,
                    "reason": reason.value,
                    "detail": detail,
                    "raw_payload": raw_payload,
                    "created_at": now,
                    "replayed_at": None,
                    "generation": generation,
                }
            )
            return True

    def fail_message(
        self, message_id: str, reason: ReasonCode, detail: str | None, now: datetime
    ) -> MessageStatus | None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            if self._move(
                message_id,
                MessageStatus.QUEUED,
                MessageStatus.FAILED,
                now,
                reason=reason,
                detail=detail,
                lease_expires_at=None,
            ):
                return MessageStatus.QUEUED
            if self._move(
                message_id,
                MessageStatus.SENDING,
                MessageStatus.FAILED,
                now,
                reason=reason,
                detail=detail,
                guard=lambda r: r.lease_expires_at is None or r.lease_expires_at <= now,
                lease_expires_at=None,
            ):
                self._close_in_flight(message_id)
                return MessageStatus.SENDING
            return None

    def list_for(self, message_id: str | None = None) -> list[dict[str, Any]]:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            return [
                dict(r)
                for r in self.state.dead_letters
                if message_id is None or r["message_id"] == message_id
            ]


class MemoryPolicyStore(_Base):
    """The :class:`~sms_gateway.services.ports.PolicyStore` port in memory."""

    def get(self, tenant_id: str) -> RoutePolicy | None:
        """See the port."""
        with self.state.lock:
            self.state.enter()
            stored = self.state.policies.get(tenant_id)
        if stored is None:
            return None
        return parse_policy(tenant_id, *stored, check_numbers=False)

    def put(self, tenant_id: str, strategy: str, payload: dict[str, Any], now: datetime) -> int:
        """See the port."""
        policy = parse_policy(tenant_id, strategy, payload)
        with self.state.lock:
            self.state.enter()
            version = self.state.policies.get(tenant_id, ("", "", 0))[2] + 1
            self.state.policies[tenant_id] = (
                strategy,
                json.dumps(stored_payload(payload, policy), sort_keys=True),
                version,
            )
            return version


@dataclass
class MemoryStores:
    """The four fakes over one :class:`MemoryState`."""

    state: MemoryState = field(default_factory=MemoryState)

    def __post_init__(self) -> None:
        self.messages = MemoryMessageStore(self.state)
        self.receipts = MemoryReceiptStore(self.state)
        self.dead_letters = MemoryDeadLetterStore(self.state)
        self.policies = MemoryPolicyStore(self.state)
