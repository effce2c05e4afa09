"""The message aggregate in SQL: ``messages`` with its ``message_attempts`` and
``message_events`` (SQLAlchemy Core, explicit statements).

Every status change is a conditional ``UPDATE messages ... WHERE status = :from`` plus a
``message_events`` row in the same unit (DESIGN section 4), so a duplicate or late SQS
delivery can never move a message backwards: the losing writer matches 0 rows and stops.

The sender's hot path is set-based (issue 6): :meth:`SqlMessageStore.intake` records a
batch and claims what the caller's plan says, :meth:`SqlMessageStore.finish_many` writes
the outcomes. Statements the server receives per batch (PostgreSQL; BEGIN/COMMIT included):

- intake: 1 (``WITH ins AS (INSERT ... ON CONFLICT DO NOTHING RETURNING) INSERT events``),
  + 1 ``SELECT`` when some messages already existed (a retry or a duplicate),
  + 1 claim (``WITH c AS (UPDATE ... WHERE status = 'queued' AND version = ... RETURNING)
  INSERT attempts, INSERT events``);
- finish: 1 (``WITH u AS (UPDATE messages ... CASE id ... RETURNING), UPDATE attempts,
  INSERT events SELECT ... FROM u``), answering which messages have receipts waiting.

Each of those is one statement, atomic by itself, so it runs without BEGIN/COMMIT. SQLite
and MySQL/MariaDB have no data-modifying CTEs: there each phase is one transaction of
multi-row statements (MySQL locks the batch's rows with ``SELECT ... FOR UPDATE`` where
PostgreSQL and SQLite use ``RETURNING``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    DateTime,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus, check_transition
from sms_gateway.storage.records import (
    AttemptRecord,
    AttemptResult,
    Claim,
    Finish,
    Finished,
    IntakeResult,
    MessageRecord,
    OptOut,
)
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import (
    UTCDateTime,
    message_attempts,
    message_events,
    messages,
    opt_outs,
    receipts,
)

LEASE_LOST_DETAIL = "sender lease expired before the attempt finished"
OPTED_OUT_DETAIL = "the number opted out for this tenant and sender ID (sms-gateway optout clear)"


def _opted_out(tenant_id: Any, to_number: Any, sender_id: Any) -> Any:
    """``EXISTS`` an ``opt_outs`` row for the tenant, number and sender ID ('' for none)."""
    return exists().where(
        opt_outs.c.tenant_id == tenant_id,
        opt_outs.c.number == to_number,
        opt_outs.c.sender_id == func.coalesce(sender_id, ""),
    )


def _as_opted_out(row: MessageRecord) -> MessageRecord:
    """``row`` as the intake leaves it when its number opted out: ``failed``/``opted_out``."""
    return replace(
        row,
        status=MessageStatus.FAILED,
        reason_code=ReasonCode.OPTED_OUT.value,
        reason_detail=OPTED_OUT_DETAIL,
        version=row.version + 1,
    )


def _opted_out_events(ids: Sequence[str], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "message_id": i,
            "from_status": MessageStatus.QUEUED.value,
            "to_status": MessageStatus.FAILED.value,
            "reason_code": ReasonCode.OPTED_OUT.value,
            "detail": OPTED_OUT_DETAIL,
            "at": now,
        }
        for i in ids
    ]


def _fail_opted_out(ids: Sequence[str], now: datetime) -> Any:
    """``queued -> failed`` (reason ``opted_out``) for ``ids`` still queued."""
    return (
        update(messages)
        .where(messages.c.id.in_(list(ids)), messages.c.status == MessageStatus.QUEUED.value)
        .values(
            status=MessageStatus.FAILED.value,
            reason_code=ReasonCode.OPTED_OUT.value,
            reason_detail=OPTED_OUT_DETAIL,
            updated_at=now,
            version=messages.c.version + 1,
        )
    )


Plan = Callable[[dict[str, MessageRecord]], Sequence[Claim]]
"""Given the batch's rows by id, the claims to make (the service's decisions)."""


def new_row(msg: QueuedMessage, now: datetime) -> dict[str, Any]:
    """The ``messages`` row of a message first seen at ``now``: ``queued``, version 1."""
    return {
        "id": msg.message_id,
        "tenant_id": msg.tenant_id,
        "to_number": msg.to,
        "sender_id": msg.sender_id,
        "body": msg.body,
        "status": MessageStatus.QUEUED.value,
        "encoding": msg.encoding.value,
        "segments": msg.segments,
        "attempts": 0,
        "max_attempts": msg.max_attempts,
        "idempotency_key": msg.idempotency_key,
        "reference": msg.reference,
        "version": 1,
        "created_at": msg.created_at,
        "updated_at": now,
        "expires_at": msg.expires_at,
        "receipt_waiting": False,
    }


def new_record(msg: QueuedMessage, now: datetime) -> MessageRecord:
    """The :class:`MessageRecord` that :func:`new_row` stores."""
    row = new_row(msg, now)
    row["status"] = MessageStatus.QUEUED
    return MessageRecord(
        **row,
        reason_code=None,
        reason_detail=None,
        provider=None,
        provider_message_id=None,
        lease_expires_at=None,
        sent_at=None,
        delivered_at=None,
    )


def intake_events(msg: QueuedMessage, now: datetime) -> list[dict[str, Any]]:
    """The audit rows of a new message: ``-> accepted`` (at its creation) ``-> queued``."""
    return [
        {
            "message_id": msg.message_id,
            "from_status": None,
            "to_status": MessageStatus.ACCEPTED.value,
            "reason_code": None,
            "detail": None,
            "at": msg.created_at,
        },
        {
            "message_id": msg.message_id,
            "from_status": MessageStatus.ACCEPTED.value,
            "to_status": MessageStatus.QUEUED.value,
            "reason_code": None,
            "detail": None,
            "at": now,
        },
    ]


def transition(
    conn: Connection,
    message_id: str,
    current: MessageStatus,
    target: MessageStatus,
    now: datetime,
    *,
    reason: ReasonCode | None = None,
    detail: str | None = None,
    extra_where: Any = None,
    **values: Any,
) -> bool:
    """One guarded status change plus its audit row, on ``conn`` (inside the caller's unit).

    Returns False (nothing written) when the message is not in ``current``.

    Raises:
        InvalidTransition: the lifecycle table forbids ``current -> target``.
    """
    check_transition(current, target)
    where = and_(messages.c.id == message_id, messages.c.status == current.value)
    if extra_where is not None:
        where = and_(where, extra_where)
    if reason is not None:
        values.setdefault("reason_code", reason.value)
        values.setdefault("reason_detail", detail)
    result = conn.execute(
        update(messages)
        .where(where)
        .values(status=target.value, updated_at=now, version=messages.c.version + 1, **values)
    )
    if result.rowcount != 1:
        return False
    conn.execute(
        insert(message_events).values(
            message_id=message_id,
            from_status=current.value,
            to_status=target.value,
            reason_code=reason.value if reason else None,
            detail=detail,
            at=now,
        )
    )
    return True


def close_in_flight(conn: Connection, message_id: str, now: datetime) -> None:
    """Close an attempt whose sender vanished: whether the provider got it is unknown."""
    conn.execute(
        update(message_attempts)
        .where(
            message_attempts.c.message_id == message_id,
            message_attempts.c.outcome == "in_flight",
        )
        .values(
            outcome="transient_error",
            reason_code=ReasonCode.TIMEOUT.value,
            error_detail=LEASE_LOST_DETAIL,
            finished_at=now,
        )
    )


def _by_id(column: Any, mapping: dict[str, Any], type_: Any, else_: Any = None) -> Any:
    """``CASE column WHEN id THEN value ... [ELSE else_] END`` with typed values."""
    whens = {key: literal(value, type_) for key, value in mapping.items()}
    if else_ is None:
        return case(whens, value=column)
    return case(whens, value=column, else_=else_)


def _finish_values(finishes: Sequence[Finish], now: datetime) -> dict[str, Any]:
    """The ``SET`` of the outcome update: one CASE per column, keyed by message id."""
    sent = {f.message_id: f for f in finishes if f.target is MessageStatus.SENT}
    return {
        "status": _by_id(messages.c.id, {f.message_id: f.target.value for f in finishes}, String),
        "lease_expires_at": None,
        "updated_at": now,
        "version": messages.c.version + 1,
        "provider_message_id": _by_id(
            messages.c.id,
            {i: f.result.provider_message_id for i, f in sent.items()},
            String,
            messages.c.provider_message_id,
        )
        if sent
        else messages.c.provider_message_id,
        "sent_at": case(
            (messages.c.id.in_(list(sent)), literal(now, UTCDateTime())), else_=messages.c.sent_at
        )
        if sent
        else messages.c.sent_at,
        "reason_code": _by_id(
            messages.c.id,
            {
                f.message_id: None
                if f.target is MessageStatus.SENT or f.result.reason_code is None
                else f.result.reason_code.value
                for f in finishes
            },
            String,
        ),
        "reason_detail": _by_id(
            messages.c.id,
            {
                f.message_id: None if f.target is MessageStatus.SENT else f.result.error_detail
                for f in finishes
            },
            Text,
        ),
    }


def _finish_guard(finishes: Sequence[Finish]) -> ColumnElement[bool]:
    """Only messages still ``sending`` on the attempt that is being closed (a sender whose
    lease was taken over must not overwrite the next attempt)."""
    return and_(
        messages.c.id.in_([f.message_id for f in finishes]),
        messages.c.status == MessageStatus.SENDING.value,
        messages.c.attempts
        == _by_id(messages.c.id, {f.message_id: f.attempt for f in finishes}, Integer),
    )


def _close_attempts(finishes: Sequence[Finish], now: datetime) -> Any:
    """One UPDATE closing every finished attempt row (CASE by message id)."""
    col = message_attempts.c.message_id

    def per(get: Callable[[Finish], Any], type_: Any) -> Any:
        return _by_id(col, {f.message_id: get(f) for f in finishes}, type_)

    return (
        update(message_attempts)
        .where(
            col.in_([f.message_id for f in finishes]),
            message_attempts.c.attempt_number == per(lambda f: f.attempt, Integer),
        )
        .values(
            outcome=per(lambda f: f.result.outcome, String),
            reason_code=per(
                lambda f: f.result.reason_code.value if f.result.reason_code else None, String
            ),
            error_code=per(lambda f: f.result.error_code, String),
            error_detail=per(lambda f: f.result.error_detail, Text),
            latency_ms=per(lambda f: f.result.latency_ms, Integer),
            finished_at=now,
        )
    )


def _claim_update(claims: Sequence[Claim], lease_until: datetime, now: datetime) -> Any:
    """One UPDATE claiming every message of ``claims``: ``queued -> sending``, guarded by the
    version each was seen at (optimistic: another sender's claim in between wins)."""
    by = {c.message_id: c for c in claims}
    return (
        update(messages)
        .where(
            messages.c.id.in_(list(by)),
            messages.c.status == MessageStatus.QUEUED.value,
            messages.c.version
            == _by_id(messages.c.id, {i: c.version for i, c in by.items()}, Integer),
        )
        .values(
            status=MessageStatus.SENDING.value,
            attempts=_by_id(messages.c.id, {i: c.attempt for i, c in by.items()}, Integer),
            provider=_by_id(messages.c.id, {i: c.provider for i, c in by.items()}, String),
            lease_expires_at=lease_until,
            updated_at=now,
            version=messages.c.version + 1,
        )
    )


# The batch's rows travel as one array per column (``unnest``), so the statement's text is the
# same for every batch size: SQLAlchemy compiles it once and pg8000 sends one statement.
_UNNEST_COLUMNS: dict[str, Any] = {
    "id": String,
    "tenant_id": String,
    "to_number": String,
    "sender_id": String,
    "body": Text,
    "encoding": String,
    "segments": Integer,
    "max_attempts": Integer,
    "idempotency_key": String,
    "reference": String,
    "created_at": DateTime,
    "expires_at": DateTime,
}
_CLAIM_COLUMNS: dict[str, Any] = {
    "id": String,
    "version": Integer,
    "attempt": Integer,
    "provider": String,
}
_CLAIMED_COLUMNS: dict[str, Any] = {
    "status": String,
    "attempts": Integer,
    "version": Integer,
    "provider": String,
    "lease_expires_at": DateTime,
}
_CONSTANT_COLUMNS = ("updated_at", "receipt_waiting")


def _naive_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


def _arrays(name: str, columns: dict[str, Any]) -> Any:
    """``unnest(:name_col1, :name_col2, ...) AS name(col1, col2, ...)``: rows passed as one
    array per column, so the statement's text does not depend on how many rows there are
    (SQLAlchemy builds and compiles it once; see :func:`_array_params`)."""
    binds = [bindparam(f"{name}_{col}", type_=ARRAY(type_())) for col, type_ in columns.items()]
    return func.unnest(*binds).table_valued(*columns).render_derived(name=name)


def _array_params(
    name: str, columns: dict[str, Any], rows: Sequence[dict[str, Any]]
) -> dict[str, list[Any]]:
    """The parameters of :func:`_arrays` ``name`` for ``rows`` (times as naive UTC)."""
    return {
        f"{name}_{col}": [_naive_utc(r[col]) if type_ is DateTime else r[col] for r in rows]
        for col, type_ in columns.items()
    }


_NOW = bindparam("now", type_=UTCDateTime())
_LEASE = bindparam("lease_until", type_=UTCDateTime())
_NEW_COLUMNS = _UNNEST_COLUMNS | _CLAIMED_COLUMNS


@functools.cache
def _pg_intake() -> Any:
    """One statement: insert the batch's new messages (those the plan claimed already
    ``sending``), their events and in-flight attempt rows; returns ``(id, status)`` of each
    row inserted (PostgreSQL data-modifying CTEs). A message whose number opted out (an
    ``opt_outs`` row) is inserted ``failed`` with reason ``opted_out`` instead, unclaimed."""
    source = _arrays("b", _NEW_COLUMNS)
    src = select(
        *source.c,
        _opted_out(source.c.tenant_id, source.c.to_number, source.c.sender_id).label("oo"),
    ).subquery("s")
    opted: dict[str, Any] = {
        "status": literal(MessageStatus.FAILED.value, String),
        "attempts": literal(0, Integer),
        "version": literal(2, Integer),
        "provider": cast(null(), String),
        "lease_expires_at": cast(null(), DateTime),
    }
    rows = select(
        *(
            case((src.c.oo, opted[name]), else_=src.c[name]) if name in opted else src.c[name]
            for name in _NEW_COLUMNS
        ),
        _NOW,
        literal(False, Boolean),
        case((src.c.oo, literal(ReasonCode.OPTED_OUT.value, String))),
        case((src.c.oo, literal(OPTED_OUT_DETAIL, Text))),
    )
    ins = (
        pg_insert(messages)
        .from_select([*_NEW_COLUMNS, *_CONSTANT_COLUMNS, "reason_code", "reason_detail"], rows)
        .on_conflict_do_nothing(index_elements=[messages.c.id])
        .returning(
            messages.c.id,
            messages.c.created_at,
            messages.c.status,
            messages.c.attempts,
            messages.c.provider,
        )
        .cte("ins")
    )

    def event(src: str | None, dst: str, at: Any, reason: str | None = None) -> Any:
        return select(
            ins.c.id,
            cast(null(), String(16)) if src is None else literal(src, String(16)),
            literal(dst, String(16)),
            cast(null(), String(32)) if reason is None else literal(reason, String(32)),
            cast(null(), Text) if reason is None else literal(OPTED_OUT_DETAIL, Text),
            at,
        )

    sending = ins.c.status == MessageStatus.SENDING.value
    failed = ins.c.status == MessageStatus.FAILED.value
    events = union_all(
        event(None, MessageStatus.ACCEPTED.value, ins.c.created_at),
        event(MessageStatus.ACCEPTED.value, MessageStatus.QUEUED.value, _NOW),
        event(MessageStatus.QUEUED.value, MessageStatus.SENDING.value, _NOW).where(sending),
        event(
            MessageStatus.QUEUED.value,
            MessageStatus.FAILED.value,
            _NOW,
            ReasonCode.OPTED_OUT.value,
        ).where(failed),
    )
    ev = (
        insert(message_events)
        .from_select(
            ["message_id", "from_status", "to_status", "reason_code", "detail", "at"], events
        )
        .cte("ev")
    )
    att = (
        insert(message_attempts)
        .from_select(
            ["message_id", "attempt_number", "provider", "outcome", "started_at"],
            select(
                ins.c.id, ins.c.attempts, ins.c.provider, literal("in_flight", String(32)), _NOW
            ).where(sending),
        )
        .cte("att")
    )
    return select(ins.c.id, ins.c.status).add_cte(ev).add_cte(att)


def _pg_intake_params(
    batch: Sequence[QueuedMessage], claims: dict[str, Claim], lease_until: datetime, now: datetime
) -> dict[str, Any]:
    rows = []
    for m in batch:
        row = new_row(m, now)
        claim = claims.get(m.message_id)
        if claim is not None:  # inserted and claimed at once: version 2, as after a claim
            row |= {
                "status": MessageStatus.SENDING.value,
                "attempts": claim.attempt,
                "version": 2,
                "provider": claim.provider,
                "lease_expires_at": lease_until,
            }
        else:
            row |= {"provider": None, "lease_expires_at": None}
        rows.append(row)
    return _array_params("b", _NEW_COLUMNS, rows) | {"now": now}


@functools.cache
def _pg_claim() -> Any:
    """One statement: claim messages ``queued -> sending`` at the versions they were read,
    with their in-flight attempt rows and events; returns the claimed ids."""
    v = _arrays("v", _CLAIM_COLUMNS)
    claim = (
        update(messages)
        .where(
            messages.c.id == v.c.id,
            messages.c.version == v.c.version,
            messages.c.status == MessageStatus.QUEUED.value,
        )
        .values(
            status=MessageStatus.SENDING.value,
            attempts=v.c.attempt,
            provider=v.c.provider,
            lease_expires_at=_LEASE,
            updated_at=_NOW,
            version=messages.c.version + 1,
        )
        .returning(messages.c.id, messages.c.attempts, messages.c.provider)
        .cte("c")
    )
    attempts = (
        insert(message_attempts)
        .from_select(
            ["message_id", "attempt_number", "provider", "outcome", "started_at"],
            select(
                claim.c.id,
                claim.c.attempts,
                claim.c.provider,
                literal("in_flight", String(32)),
                _NOW,
            ),
        )
        .cte("a")
    )
    audit = (
        insert(message_events)
        .from_select(
            ["message_id", "from_status", "to_status", "at"],
            select(
                claim.c.id,
                literal(MessageStatus.QUEUED.value, String(16)),
                literal(MessageStatus.SENDING.value, String(16)),
                _NOW,
            ),
        )
        .cte("e")
    )
    return select(claim.c.id).add_cte(attempts).add_cte(audit)


def _pg_claim_params(
    claims: Sequence[Claim], lease_until: datetime, now: datetime
) -> dict[str, Any]:
    rows = [
        {"id": c.message_id, "version": c.version, "attempt": c.attempt, "provider": c.provider}
        for c in claims
    ]
    return _array_params("v", _CLAIM_COLUMNS, rows) | {"now": now, "lease_until": lease_until}


_ATTEMPT_COLUMNS: dict[str, Any] = {
    "id": String,
    "attempt": Integer,
    "outcome": String,
    "attempt_reason": String,
    "error_code": String,
    "error_detail": Text,
    "latency_ms": Integer,
}


@functools.cache
def _pg_finish() -> Any:
    """One statement: move every message still ``sending`` on its attempt to its target,
    close every attempt row, one event per move; returns ``(id, receipts waiting)`` of each
    message moved (waiting: the parked flag, or an unmatched receipt for a sent one)."""
    v = _arrays("v", _FINISH_COLUMNS)
    sent = v.c.status == MessageStatus.SENT.value
    moved = (
        update(messages)
        .where(
            messages.c.id == v.c.id,
            messages.c.status == MessageStatus.SENDING.value,
            messages.c.attempts == v.c.attempt,
        )
        .values(
            status=v.c.status,
            lease_expires_at=None,
            updated_at=_NOW,
            version=messages.c.version + 1,
            provider_message_id=case(
                (sent, v.c.provider_message_id), else_=messages.c.provider_message_id
            ),
            sent_at=case((sent, _NOW), else_=messages.c.sent_at),
            reason_code=v.c.reason_code,
            reason_detail=v.c.reason_detail,
        )
        .returning(
            messages.c.id,
            messages.c.status,
            messages.c.reason_code,
            messages.c.reason_detail,
            messages.c.receipt_waiting,
            messages.c.provider_message_id,
        )
        .cte("u")
    )
    w = _arrays("w", _ATTEMPT_COLUMNS)
    closed = (
        update(message_attempts)
        .where(
            message_attempts.c.message_id == w.c.id,
            message_attempts.c.attempt_number == w.c.attempt,
        )
        .values(
            outcome=w.c.outcome,
            reason_code=w.c.attempt_reason,
            error_code=w.c.error_code,
            error_detail=w.c.error_detail,
            latency_ms=w.c.latency_ms,
            finished_at=_NOW,
        )
        .cte("a")
    )
    audit = (
        insert(message_events)
        .from_select(
            ["message_id", "from_status", "to_status", "reason_code", "detail", "at"],
            select(
                moved.c.id,
                literal(MessageStatus.SENDING.value, String(16)),
                moved.c.status,
                moved.c.reason_code,
                moved.c.reason_detail,
                _NOW,
            ),
        )
        .cte("e")
    )
    unmatched = exists().where(
        receipts.c.provider_message_id == moved.c.provider_message_id,
        receipts.c.outcome == "unmatched",
    )
    waiting = or_(
        moved.c.receipt_waiting,
        and_(moved.c.status == MessageStatus.SENT.value, unmatched),
    )
    return select(moved.c.id, waiting).add_cte(closed).add_cte(audit)


_FINISH_COLUMNS: dict[str, Any] = {
    "id": String,
    "attempt": Integer,
    "status": String,
    "provider_message_id": String,
    "reason_code": String,
    "reason_detail": Text,
}


def _finish_rows(finishes: Sequence[Finish]) -> list[dict[str, Any]]:
    rows = []
    for f in finishes:
        sent = f.target is MessageStatus.SENT
        reason = f.result.reason_code.value if f.result.reason_code else None
        rows.append(
            {
                "id": f.message_id,
                "attempt": f.attempt,
                "status": f.target.value,
                "provider_message_id": f.result.provider_message_id,
                "reason_code": None if sent else reason,
                "reason_detail": None if sent else f.result.error_detail,
                "outcome": f.result.outcome,
                "error_code": f.result.error_code,
                "latency_ms": f.result.latency_ms,
                "attempt_reason": reason,
                "error_detail": f.result.error_detail,
            }
        )
    return rows


class SqlMessageStore:
    """The :class:`~sms_gateway.services.ports.MessageStore` port over SQL.

    All methods take ``now`` (aware UTC) from the caller's clock, so tests control time.
    Errors: :class:`~sms_gateway.storage.errors.StorageUnavailable` when the database cannot
    be reached (after one retry on a fresh connection).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- reads ---------------------------------------------------------------------------

    def _first(self, *conditions: Any) -> MessageRecord | None:
        def unit(conn: Connection) -> MessageRecord | None:
            row = conn.execute(select(messages).where(*conditions).limit(1)).first()
            return MessageRecord.from_row(row) if row else None

        return self._db.single(unit)

    def get(self, message_id: str) -> MessageRecord | None:
        """The message with ``message_id``, or None."""
        return self._first(messages.c.id == message_id)

    def get_for_tenant(self, tenant_id: str, message_id: str) -> MessageRecord | None:
        """The message if it belongs to ``tenant_id``; None for unknown and foreign ids alike."""
        return self._first(messages.c.id == message_id, messages.c.tenant_id == tenant_id)

    def find_by_provider_message_id(
        self, provider_message_id: str, provider: str | None = None
    ) -> MessageRecord | None:
        """The message a provider knows as ``provider_message_id`` (sent through ``provider``,
        when given: two providers may issue the same id), or None."""
        conditions = [messages.c.provider_message_id == provider_message_id]
        if provider is not None:
            conditions.append(messages.c.provider == provider)
        return self._first(*conditions)

    def attempts(self, message_id: str) -> list[AttemptRecord]:
        """The provider calls for ``message_id``, oldest first."""

        def unit(conn: Connection) -> list[AttemptRecord]:
            rows = conn.execute(
                select(
                    message_attempts.c.attempt_number,
                    message_attempts.c.provider,
                    message_attempts.c.outcome,
                    message_attempts.c.reason_code,
                    message_attempts.c.error_code,
                    message_attempts.c.error_detail,
                    message_attempts.c.latency_ms,
                )
                .where(message_attempts.c.message_id == message_id)
                .order_by(message_attempts.c.attempt_number)
            ).all()
            return [AttemptRecord(*row) for row in rows]

        return self._db.single(unit)

    def events(self, message_id: str) -> list[tuple[str | None, str, str | None]]:
        """The audit trail of ``message_id``: ``(from, to, reason_code)`` rows, in order."""

        def unit(conn: Connection) -> list[tuple[str | None, str, str | None]]:
            rows = conn.execute(
                select(
                    message_events.c.from_status,
                    message_events.c.to_status,
                    message_events.c.reason_code,
                )
                .where(message_events.c.message_id == message_id)
                .order_by(message_events.c.id)
            ).all()
            return [(r[0], r[1], r[2]) for r in rows]

        return self._db.single(unit)

    # ---- the sender's batch --------------------------------------------------------------

    def intake(
        self,
        batch: Sequence[QueuedMessage],
        plan: Plan,
        lease_until: datetime,
        now: datetime,
    ) -> IntakeResult:
        """Record the messages of ``batch`` not stored yet (``queued``, events ``-> accepted ->
        queued``), then claim what ``plan`` decides from the rows: ``queued -> sending`` for
        its attempt and provider until ``lease_until``, an ``in_flight`` attempt row and a
        ``queued -> sending`` event each. A claim whose row changed since it was read (another
        sender) is not made. ``batch`` holds each message id once.

        Returns the rows (as before the claim), the ids inserted and the ids claimed.
        """
        if not batch:
            return IntakeResult({}, frozenset(), frozenset())
        if self._db.dialect == "postgresql":
            return self._intake_postgresql(batch, plan, lease_until, now)
        return self._db.tx(lambda conn: self._intake_tx(conn, batch, plan, lease_until, now))

    def _intake_postgresql(
        self,
        batch: Sequence[QueuedMessage],
        plan: Plan,
        lease_until: datetime,
        now: datetime,
    ) -> IntakeResult:
        # Messages are assumed new (the common case): the plan's claims for them are made
        # by the INSERT itself. Those that existed are read and claimed afterwards.
        assumed = {m.message_id: new_record(m, now) for m in batch}
        first = {c.message_id: c for c in plan(assumed) if c.attempt == 1 and c.version == 1}
        params = _pg_intake_params(batch, first, lease_until, now)
        inserted = self._db.single(lambda conn: conn.execute(_pg_intake(), params).all())
        new = frozenset(r[0] for r in inserted)
        made = frozenset(r[0] for r in inserted if r[1] == MessageStatus.SENDING.value)
        opted = frozenset(r[0] for r in inserted if r[1] == MessageStatus.FAILED.value)
        rows = {i: _as_opted_out(assumed[i]) if i in opted else assumed[i] for i in new}
        existing = [m.message_id for m in batch if m.message_id not in new]
        if not existing:
            return IntakeResult(rows, new, made, opted)
        found, flagged = self._db.single(lambda conn: self._rows(conn, existing, lock=False))
        stop = [i for i in flagged if found[i].status is MessageStatus.QUEUED]
        if stop:  # rare: a retried message whose number opted out since its last attempt
            failed = self._db.tx(lambda conn: self._fail_opted_out(conn, stop, now))
            found |= {i: _as_opted_out(found[i]) for i in failed}
            opted |= failed
        rows |= found
        claims = list(plan({i: r for i, r in found.items() if i not in opted}))
        if not claims:
            return IntakeResult(rows, new, made, opted)
        claim_params = _pg_claim_params(claims, lease_until, now)
        claimed = frozenset(
            self._db.single(lambda conn: list(conn.execute(_pg_claim(), claim_params).scalars()))
        )
        return IntakeResult(rows, new, made | claimed, opted)

    def _rows(
        self, conn: Connection, ids: Sequence[str], *, lock: bool
    ) -> tuple[dict[str, MessageRecord], frozenset[str]]:
        """The rows of ``ids`` and, among them, those whose number opted out (read in the same
        SELECT: a correlated ``EXISTS`` on ``opt_outs``)."""
        flag = _opted_out(messages.c.tenant_id, messages.c.to_number, messages.c.sender_id)
        query = select(messages, flag.label("opted_out")).where(messages.c.id.in_(list(ids)))
        if lock:
            query = query.with_for_update(of=messages)
        rows: dict[str, MessageRecord] = {}
        flagged: set[str] = set()
        for r in conn.execute(query):
            data = dict(r._mapping)
            if data.pop("opted_out"):
                flagged.add(data["id"])
            data["status"] = MessageStatus(data["status"])
            data["receipt_waiting"] = bool(data["receipt_waiting"])
            rows[data["id"]] = MessageRecord(**data)
        return rows, frozenset(flagged)

    def _fail_opted_out(
        self, conn: Connection, ids: Sequence[str], now: datetime
    ) -> frozenset[str]:
        """PostgreSQL: ``queued -> failed`` (``opted_out``) for ``ids`` still queued, with
        their events; returns the ids moved."""
        stmt = _fail_opted_out(ids, now).returning(messages.c.id)
        moved = frozenset(conn.execute(stmt).scalars())
        if moved:
            conn.execute(insert(message_events).values(_opted_out_events(sorted(moved), now)))
        return moved

    def _intake_tx(
        self,
        conn: Connection,
        batch: Sequence[QueuedMessage],
        plan: Plan,
        lease_until: datetime,
        now: datetime,
    ) -> IntakeResult:
        ids = [m.message_id for m in batch]
        insert_rows = self._db.insert_if_absent(messages, [new_row(m, now) for m in batch])
        mysql = self._db.dialect != "sqlite"
        if not mysql:
            new = frozenset(conn.execute(insert_rows.returning(messages.c.id)).scalars())
            rows, flagged = self._rows(conn, ids, lock=False)  # the INSERT took the write lock
        else:
            conn.execute(insert_rows)
            rows, flagged = self._rows(conn, ids, lock=True)
            # MySQL cannot say which rows INSERT IGNORE inserted: ours are untouched rows
            # carrying this unit's timestamp (DATETIME(6)); a concurrent copy has its own
            new = frozenset(
                i
                for i, r in rows.items()
                if r.version == 1 and r.status is MessageStatus.QUEUED and r.updated_at == now
            )
        events = [e for m in batch if m.message_id in new for e in intake_events(m, now)]
        # a number that opted out: queued -> failed here, never offered to the plan (one
        # UPDATE, only in a batch that has such a message; its events join the batch's INSERT)
        stop = sorted(i for i in flagged if rows[i].status is MessageStatus.QUEUED)
        opted: frozenset[str] = frozenset()
        if stop:
            stmt = _fail_opted_out(stop, now)
            if self._db.returning:
                opted = frozenset(conn.execute(stmt.returning(messages.c.id)).scalars())
            else:  # the rows are locked (FOR UPDATE) and queued: every one moves
                conn.execute(stmt)
                opted = frozenset(stop)
            events += _opted_out_events(sorted(opted), now)
            rows |= {i: _as_opted_out(rows[i]) for i in opted}
        claims = list(plan({i: r for i, r in rows.items() if i not in opted}))
        claimed: frozenset[str] = frozenset()
        if claims:
            stmt = _claim_update(claims, lease_until, now)
            if self._db.returning:
                claimed = frozenset(conn.execute(stmt.returning(messages.c.id)).scalars())
            else:
                # the rows are locked (FOR UPDATE): a claim on the version read now is certain
                claimed = frozenset(
                    c.message_id
                    for c in claims
                    if c.message_id in rows
                    and rows[c.message_id].status is MessageStatus.QUEUED
                    and rows[c.message_id].version == c.version
                )
                if claimed:
                    conn.execute(stmt)
            made = [c for c in claims if c.message_id in claimed]
            if made:
                conn.execute(
                    insert(message_attempts),
                    [
                        {
                            "message_id": c.message_id,
                            "attempt_number": c.attempt,
                            "provider": c.provider,
                            "outcome": "in_flight",
                            "started_at": now,
                        }
                        for c in made
                    ],
                )
            events += [
                {
                    "message_id": c.message_id,
                    "from_status": MessageStatus.QUEUED.value,
                    "to_status": MessageStatus.SENDING.value,
                    "reason_code": None,
                    "detail": None,
                    "at": now,
                }
                for c in made
            ]
        if events:
            conn.execute(insert(message_events).values(events))
        return IntakeResult(rows, new, claimed, opted)

    def finish_many(self, finishes: Sequence[Finish], now: datetime) -> Finished:
        """Write the outcomes of a batch's provider calls: close each attempt row, move each
        message ``sending -> target`` (only if still ``sending`` on that attempt), one event
        each. ``finishes`` holds each message id once.

        Returns the ids that moved and, among them, those with receipts waiting (the parked
        flag, or for ``sent`` an unmatched receipt carrying the provider message id).

        Raises:
            StorageUnavailable: the database cannot be reached.
            DBAPIError: the database refused a value (the caller retries without details).
        """
        if not finishes:
            return Finished(frozenset(), frozenset())
        if self._db.dialect == "postgresql":
            return self._finish_postgresql(finishes, now)
        return self._db.tx(lambda conn: self._finish_tx(conn, finishes, now))

    def _finish_postgresql(self, finishes: Sequence[Finish], now: datetime) -> Finished:
        rows = _finish_rows(finishes)
        params = (
            _array_params("v", _FINISH_COLUMNS, rows)
            | _array_params("w", _ATTEMPT_COLUMNS, rows)
            | {"now": now}
        )
        found = self._db.single(lambda conn: conn.execute(_pg_finish(), params).all())
        return Finished(frozenset(r[0] for r in found), frozenset(r[0] for r in found if r[1]))

    def _finish_tx(self, conn: Connection, finishes: Sequence[Finish], now: datetime) -> Finished:
        by = {f.message_id: f for f in finishes}
        stmt = (
            update(messages).where(_finish_guard(finishes)).values(**_finish_values(finishes, now))
        )
        if self._db.returning:
            rows = conn.execute(stmt.returning(messages.c.id, messages.c.receipt_waiting)).all()
            flags = {r[0]: bool(r[1]) for r in rows}
        else:
            locked = conn.execute(
                select(
                    messages.c.id,
                    messages.c.status,
                    messages.c.attempts,
                    messages.c.receipt_waiting,
                )
                .where(messages.c.id.in_(list(by)))
                .with_for_update()
            ).all()
            flags = {
                r[0]: bool(r[3])
                for r in locked
                if r[1] == MessageStatus.SENDING.value and r[2] == by[r[0]].attempt
            }
            if flags:
                conn.execute(stmt)
        conn.execute(_close_attempts(finishes, now))
        audit = {r["id"]: r for r in _finish_rows(finishes)}
        if flags:
            conn.execute(
                insert(message_events).values(
                    [
                        {
                            "message_id": i,
                            "from_status": MessageStatus.SENDING.value,
                            "to_status": by[i].target.value,
                            "reason_code": audit[i]["reason_code"],
                            "detail": audit[i]["reason_detail"],
                            "at": now,
                        }
                        for i in flags
                    ]
                )
            )
        pmids = {
            by[i].result.provider_message_id: i
            for i in flags
            if by[i].target is MessageStatus.SENT and by[i].result.provider_message_id
        }
        waiting = {i for i, flag in flags.items() if flag}
        if pmids:
            found = conn.execute(
                select(receipts.c.provider_message_id).where(
                    receipts.c.provider_message_id.in_(list(pmids)),
                    receipts.c.outcome == "unmatched",
                )
            ).scalars()
            waiting |= {pmids[p] for p in found if p in pmids}
        return Finished(frozenset(flags), frozenset(waiting))

    def record_opt_outs(self, entries: Sequence[OptOut], now: datetime) -> None:
        """Record numbers that answered ``opted_out`` (one INSERT; an existing entry is kept
        as first recorded). Later intakes fail their messages without a provider call."""
        if not entries:
            return
        rows = {
            (e.tenant_id, e.number, e.sender_id or ""): {
                "tenant_id": e.tenant_id,
                "number": e.number,
                "sender_id": e.sender_id or "",
                "message_id": e.message_id,
                "provider": e.provider,
                "created_at": now,
            }
            for e in entries
        }
        self._db.single(
            lambda conn: conn.execute(self._db.insert_if_absent(opt_outs, list(rows.values())))
        )

    # ---- one message at a time (rare paths, operators, tests) -----------------------------

    def record_queued(self, msg: QueuedMessage, now: datetime) -> bool:
        """Insert ``msg`` as ``queued`` (events: -> accepted -> queued) unless it exists.

        Returns True when this call inserted it, False when it was already there (a duplicate
        SQS delivery, a retried ingest, a dead letter of a message the sender saw). No error
        reaches the server for an existing one.
        """

        def unit(conn: Connection) -> bool:
            result = conn.execute(self._db.insert_if_absent(messages, [new_row(msg, now)]))
            if result.rowcount != 1:
                return False
            conn.execute(insert(message_events).values(intake_events(msg, now)))
            return True

        return self._db.tx(unit)

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
        """Move ``message_id`` from ``current`` to ``target`` if it is still ``current``.

        ``values``: other ``messages`` columns to set in the same statement.
        Returns False (and changes nothing) when the message is not in ``current``.

        Raises:
            InvalidTransition: the lifecycle table forbids ``current -> target``.
        """
        return self._db.tx(
            lambda conn: transition(
                conn, message_id, current, target, now, reason=reason, detail=detail, **values
            )
        )

    def release_expired_lease(self, message_id: str, now: datetime) -> bool:
        """``sending -> queued`` when the sender holding the lease is gone (lease expired).

        The in-flight attempt row is closed as ``transient_error`` / ``timeout``, since whether
        the provider got the message is unknown.
        """

        def unit(conn: Connection) -> bool:
            moved = transition(
                conn,
                message_id,
                MessageStatus.SENDING,
                MessageStatus.QUEUED,
                now,
                reason=ReasonCode.TIMEOUT,
                detail=LEASE_LOST_DETAIL,
                extra_where=or_(
                    messages.c.lease_expires_at.is_(None), messages.c.lease_expires_at <= now
                ),
                lease_expires_at=None,
            )
            if moved:
                close_in_flight(conn, message_id, now)
            return moved

        return self._db.tx(unit)

    def claim(
        self,
        message_id: str,
        version: int,
        attempt: int,
        provider: str,
        lease_expires_at: datetime,
        now: datetime,
    ) -> bool:
        """``queued -> sending`` for ``attempt`` on ``provider`` with its ``in_flight`` attempt
        row, for one message (see :meth:`intake` for a batch). Optimistic on ``version``:
        False when another sender got there first."""

        def unit(conn: Connection) -> bool:
            moved = transition(
                conn,
                message_id,
                MessageStatus.QUEUED,
                MessageStatus.SENDING,
                now,
                extra_where=messages.c.version == version,
                attempts=attempt,
                provider=provider,
                lease_expires_at=lease_expires_at,
            )
            if moved:
                conn.execute(
                    insert(message_attempts).values(
                        message_id=message_id,
                        attempt_number=attempt,
                        provider=provider,
                        outcome="in_flight",
                        started_at=now,
                    )
                )
            return moved

        return self._db.tx(unit)

    def finish_attempt(
        self,
        message_id: str,
        attempt: int,
        result: AttemptResult,
        target: MessageStatus,
        now: datetime,
    ) -> bool:
        """:meth:`finish_many` for one message; returns whether it moved."""
        done = self.finish_many([Finish(message_id, attempt, result, target)], now)
        return message_id in done.moved

    def note_problem(self, message_id: str, reason: ReasonCode, detail: str, now: datetime) -> None:
        """Record why a queued message could not be attempted (e.g. no route policy), without
        a status change, so that a later dead letter can say why."""

        def unit(conn: Connection) -> None:
            conn.execute(
                update(messages)
                .where(messages.c.id == message_id, messages.c.status == "queued")
                .values(reason_code=reason.value, reason_detail=detail, updated_at=now)
            )

        self._db.single(unit)
