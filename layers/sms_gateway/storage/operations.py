"""The SQL side of message operations (issue 11, item 2): dead letters to replay, the replay's
guarded writes, and messages stuck in a status.

Every write is a guarded statement in one transaction, so two operators (or an operator and
a sender) racing on one message or one dead letter cannot both win:

- a replay marks its dead letter (``UPDATE dead_letters SET replayed_at ... WHERE
  replayed_at IS NULL``) and moves the message ``failed -> queued`` (``WHERE status =
  'failed'`` and the version it read) in the same transaction: both or neither; it does so
  only when the message's failure is that dead letter (reason ``dead_letter``, the dead
  letter's generation the message's current one, :func:`~sms_gateway.domain.operations.
  replay_skip`), so a dead letter recorded while a live sender held the message is never
  replayed after a receipt or a permanent provider error failed the sent message;
- a replay whose queue send failed is undone by the mirror image (``queued -> failed`` while
  the message is still on that generation, the dead letter unmarked).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, not_, or_, select, update

from sms_gateway.domain.operations import (
    ReplaySelection,
    ReplaySkip,
    current_generation,
    replay_skip,
)
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.storage.messages import transition
from sms_gateway.storage.records import MessageRecord
from sms_gateway.storage.retention import REDACTED
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import dead_letters, message_events, messages


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A ``dead_letters`` row that names a message (malformed records name none and are never
    replayed). ``created_at``: when it was recorded, aware UTC."""

    id: int
    message_id: str
    tenant_id: str | None
    reason: str
    generation: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StuckMessage:
    """A message that has been in ``status`` since ``since`` (its last transition into it,
    aware UTC). ``reason_code``/``reason_detail``: the last problem noted (e.g. no route)."""

    id: str
    tenant_id: str
    status: MessageStatus
    since: datetime
    attempts: int
    max_attempts: int
    reason_code: str | None
    reason_detail: str | None


class SqlOperationsStore:
    """Reads and guarded writes for :class:`~sms_gateway.services.operations.MessageOperations`.

    Errors: :class:`~sms_gateway.storage.errors.StorageUnavailable` when the database cannot
    be reached.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def replayable(self, selection: ReplaySelection) -> list[DeadLetterRow]:
        """Dead letters not replayed yet that match ``selection`` (every criterion), oldest
        first, at most ``selection.limit``. Rows without a message id are left out, and so are
        those whose message is ``failed`` by something else (another reason, or a later
        generation): ``failed`` leaves only by a replay, so they can never be replayed and
        must not use up the limit. A message in another status keeps its dead letter listed
        (:meth:`start_replay` skips it as not failed): it may still fail by it."""
        later = dead_letters.alias("later")
        replayed_later = (
            exists()
            .where(
                later.c.message_id == dead_letters.c.message_id,
                later.c.replayed_at.is_not(None),
                later.c.generation >= dead_letters.c.generation,
            )
            .correlate(dead_letters)
        )
        failed_otherwise = (
            exists()
            .where(
                messages.c.id == dead_letters.c.message_id,
                messages.c.status == MessageStatus.FAILED.value,
                or_(
                    messages.c.reason_code.is_(None),
                    messages.c.reason_code != ReasonCode.DEAD_LETTER.value,
                    replayed_later,
                ),
            )
            .correlate(dead_letters)
        )
        query = select(
            dead_letters.c.id,
            dead_letters.c.message_id,
            dead_letters.c.tenant_id,
            dead_letters.c.reason,
            dead_letters.c.generation,
            dead_letters.c.created_at,
        ).where(
            dead_letters.c.replayed_at.is_(None),
            dead_letters.c.message_id.is_not(None),
            not_(failed_otherwise),
        )
        if selection.message_id is not None:
            query = query.where(dead_letters.c.message_id == selection.message_id)
        if selection.tenant_id is not None:
            query = query.where(dead_letters.c.tenant_id == selection.tenant_id)
        if selection.reason is not None:
            query = query.where(dead_letters.c.reason == selection.reason)
        if selection.since is not None:
            query = query.where(dead_letters.c.created_at >= selection.since)
        if selection.until is not None:
            query = query.where(dead_letters.c.created_at < selection.until)
        query = query.order_by(dead_letters.c.id).limit(selection.limit)
        return self._db.single(
            lambda conn: [DeadLetterRow(*row) for row in conn.execute(query).all()]
        )

    def start_replay(
        self, letter: DeadLetterRow, budget: int, now: datetime
    ) -> MessageRecord | ReplaySkip:
        """Mark ``letter`` replayed and move its message ``failed -> queued`` with ``budget``
        more attempts (``max_attempts = attempts + budget``), reason cleared, an event saying
        which generation starts; one transaction. Only when the message's failure is
        ``letter`` (:func:`~sms_gateway.domain.operations.replay_skip`). Returns the message as
        now stored, or why nothing was done (then nothing was written)."""
        from sms_gateway.domain.operations import replay_max_attempts

        def unit(conn: Connection) -> MessageRecord | ReplaySkip:
            row = conn.execute(select(messages).where(messages.c.id == letter.message_id)).first()
            if row is None:
                return ReplaySkip.NO_MESSAGE
            message = MessageRecord.from_row(row)
            replayed = conn.execute(
                select(dead_letters.c.generation).where(
                    dead_letters.c.message_id == message.id,
                    dead_letters.c.replayed_at.is_not(None),
                )
            ).scalars()
            generation = current_generation(replayed)
            skip = replay_skip(message.status, message.reason_code, letter.generation, generation)
            if skip is not None:
                return skip
            if message.body == REDACTED:
                return ReplaySkip.REDACTED
            marked = conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == letter.id, dead_letters.c.replayed_at.is_(None))
                .values(replayed_at=now)
            )
            if marked.rowcount != 1:
                return ReplaySkip.TAKEN
            moved = transition(
                conn,
                message.id,
                MessageStatus.FAILED,
                MessageStatus.QUEUED,
                now,
                detail=f"replayed by an operator: generation {letter.generation + 1}",
                extra_where=messages.c.version == message.version,
                max_attempts=replay_max_attempts(message.attempts, budget),
                generation=letter.generation + 1,
                reason_code=None,
                reason_detail=None,
                lease_expires_at=None,
            )
            if not moved:  # changed since read: undo the mark with the transaction
                raise _Raced
            found = conn.execute(select(messages).where(messages.c.id == message.id)).one()
            return MessageRecord.from_row(found)

        try:
            return self._db.tx(unit)
        except _Raced:
            return ReplaySkip.TAKEN

    def undo_replay(
        self, letter: DeadLetterRow, message: MessageRecord, detail: str, now: datetime
    ) -> bool:
        """Put back what :meth:`start_replay` did when the replay could not be queued: the
        message ``queued -> failed`` (reason ``dead_letter``, ``max_attempts`` as before is
        not needed: the next replay recomputes it) if it is still at the version the replay
        left, and the dead letter unmarked. Returns whether the message moved back."""

        def unit(conn: Connection) -> bool:
            moved = transition(
                conn,
                message.id,
                MessageStatus.QUEUED,
                MessageStatus.FAILED,
                now,
                reason=ReasonCode.DEAD_LETTER,
                detail=detail,
                extra_where=messages.c.version == message.version,
            )
            if moved:
                conn.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == letter.id)
                    .values(replayed_at=None)
                )
            return moved

        return self._db.tx(unit)

    def stuck(
        self, status: MessageStatus, before: datetime, limit: int = 100
    ) -> list[StuckMessage]:
        """Messages in ``status`` whose last transition into it happened before ``before``
        (aware UTC), longest-stuck first, at most ``limit``.

        "Since" is the newest ``message_events`` row into the status (``updated_at`` also moves
        when a problem is noted without a status change, so it would hide a message that is
        retried forever without a route); a row without such an event falls back to its
        ``updated_at``."""
        since_event = (
            select(func.max(message_events.c.at))
            .where(
                message_events.c.message_id == messages.c.id,
                message_events.c.to_status == messages.c.status,
            )
            .scalar_subquery()
        )
        since = func.coalesce(since_event, messages.c.updated_at).label("since")
        query = (
            select(
                messages.c.id,
                messages.c.tenant_id,
                messages.c.status,
                since,
                messages.c.attempts,
                messages.c.max_attempts,
                messages.c.reason_code,
                messages.c.reason_detail,
            )
            .where(and_(messages.c.status == status.value, since < before))
            .order_by(since, messages.c.id)
            .limit(limit)
        )

        def unit(conn: Connection) -> list[StuckMessage]:
            found: list[StuckMessage] = []
            for row in conn.execute(query).all():
                data: dict[str, Any] = dict(row._mapping)
                data["status"] = MessageStatus(data["status"])
                data["since"] = _aware(data["since"])
                found.append(StuckMessage(**data))
            return found

        return self._db.single(unit)


class _Raced(Exception):
    """The message changed between the read and the guarded update: roll back."""


def _aware(value: Any) -> datetime:
    """A time read through ``max()``/``coalesce()``: SQLAlchemy does not apply the column type
    to an aggregate on every dialect (SQLite returns text, the others naive datetimes)."""
    from datetime import UTC

    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
