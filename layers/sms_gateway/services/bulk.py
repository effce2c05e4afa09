"""Bulk send: up to 100 SMS under one Idempotency-Key, queued with SQS SendMessageBatch.

:class:`~sms_gateway.services.ingest.IngestService` runs the request through the same
Powertools idempotent step as a single message (one idempotency record per request, keyed on
tenant + key); this module is what that step does for a batch, and the queue port it needs.

Ids. Every message gets a UUID version 5 id, reproduced by any retry of the same request:
``uuid5(BATCH_MESSAGE_ID_NAMESPACE, tenant \\x1f key \\x1f index \\x1f item hash \\x1f
window)``, ``item hash`` being the SHA-256 of the message's canonical JSON as sent and
``window`` the idempotency-retention window (see :func:`~sms_gateway.domain.message.
derive_message_id`). Its own namespace keeps it apart from every single-route id (those are
``uuid5(MESSAGE_ID_NAMESPACE, ...)``): two ids of the two routes are equal only on a SHA-1
collision, whatever tenants, keys and payloads are used.

Queueing. Each valid message is one SQS message (the same :class:`QueuedMessage` body as the
single route), sent in SendMessageBatch calls of 10 with entry ``Id`` = the message's index in
the request; entries that SQS answers in ``Failed`` are retried a bounded number of times, and
only they (:meth:`sms_gateway.adapters.sqs.SqsMessageQueue.send_batch`). If some are still not
queued, the request is not answered 202: :class:`BatchNotQueued` (503) or
:class:`BatchRefused` (500) is raised inside the idempotent step, so Powertools deletes the
in-progress record and the client's retry with the same key runs again. The retry queues
every message again with the same id; the sender records a message insert-if-absent by id and
claims it with a conditional update, so a message queued twice is sent once
(:mod:`sms_gateway.services.sender`, "Exactly-once rules").
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Namespace of bulk message ids; differs from domain.message.MESSAGE_ID_NAMESPACE.
BATCH_MESSAGE_ID_NAMESPACE = uuid.UUID("0b6d3f52-8a3e-5d1c-b0f4-2c9e7a41d6b8")


def derive_batch_message_id(
    tenant_id: str, idempotency_key: str, index: int, item_hash: str, window: int
) -> str:
    """The id of message ``index`` (0-based) of a bulk request (UUID version 5, 36 chars).

    ``item_hash``: SHA-256 hex of the message's canonical JSON; ``window``: the retention
    window (``unix seconds // retention seconds``). The same inputs give the same id, so a
    retried request reproduces every id; see the module docstring for why it cannot equal a
    single-route id.
    """
    name = "\x1f".join((tenant_id, idempotency_key, str(index), item_hash, str(window)))
    return str(uuid.uuid5(BATCH_MESSAGE_ID_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One SQS message of a SendMessageBatch: ``entry_id`` is SQS's per-request ``Id``
    (``[A-Za-z0-9_-]{1,80}``; here the message's index in the request), ``body`` the
    message body, ``attributes`` its string message attributes."""

    entry_id: str
    body: str
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """SQS's ``Failed`` answer for one entry: its ``Code`` and ``Message``, and
    ``SenderFault`` (True: SQS refuses this entry's content, a retry cannot help)."""

    entry_id: str
    code: str
    message: str
    sender_fault: bool


@dataclass(slots=True)
class BatchSendResult:
    """What a :meth:`BatchQueue.send_batch` came to: ``sent`` maps entry id -> SQS message id,
    ``failed`` entry id -> SQS's last failure for it; ``calls``: SendMessageBatch requests."""

    sent: dict[str, str] = field(default_factory=dict)
    failed: dict[str, EntryFailure] = field(default_factory=dict)
    calls: int = 0


class BatchQueue(Protocol):
    """The SendQueue, written in batches."""

    def send_batch(self, entries: Sequence[BatchEntry]) -> BatchSendResult:
        """Put every entry on the SendQueue (10 per call), retrying failed entries a bounded
        number of times, never re-sending one that succeeded."""
        ...


class BatchNotQueued(Exception):
    """Some messages of a valid bulk request are not on the SendQueue after the retries
    (SQS's side failed them). Answered 503: the others are queued and will be sent, and a
    retry of the same request with the same key sends none twice.

    ``queued``/``total``: messages queued and messages to queue; ``failures``: SQS's answers.
    """

    def __init__(self, queued: int, total: int, failures: Sequence[EntryFailure]) -> None:
        codes = ", ".join(sorted({f.code for f in failures if f.code})) or "no code"
        super().__init__(
            f"{queued} of {total} messages were queued and will be sent; {total - queued} "
            f"could not be queued (SQS: {codes}). Retry the same request with the same "
            "Idempotency-Key: every message keeps its id and none is sent twice"
        )
        self.queued = queued
        self.total = total
        self.failures = list(failures)


class BatchRefused(BatchNotQueued):
    """As :class:`BatchNotQueued`, but SQS refused an entry as the sender's fault: the gateway
    built a message SQS does not take (a bug, answered 500), so a retry would fail again."""


def batch_answer(
    accepted: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The 202 body: ``{"messages": [...by index], "accepted": n, "rejected": m}``.

    ``accepted`` items: ``{index, message_id, status: "queued", to, encoding, segments}``;
    ``rejected`` items: ``{index, status: "rejected", errors: [{field, message}]}``.
    """
    items = sorted([*accepted, *rejected], key=lambda item: int(item["index"]))
    return {"messages": items, "accepted": len(accepted), "rejected": len(rejected)}


# The stored answer of a bulk request is kept compressed in its idempotency record: 100
# entries are ~13 KB of JSON (14 DynamoDB write units for the completing UpdateItem), ~4 KB
# compressed (the ids are most of it). Replays expand it back to the very same answer.
PACKED_ANSWER = "bulk_answer_zlib"


def pack_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` as stored: ``{PACKED_ANSWER: base64(zlib(canonical JSON))}``."""
    text = json.dumps(answer, separators=(",", ":"), ensure_ascii=False)
    return {PACKED_ANSWER: base64.b64encode(zlib.compress(text.encode(), 9)).decode("ascii")}


def unpack_answer(stored: dict[str, Any]) -> dict[str, Any]:
    """The answer :func:`pack_answer` stored (other dicts, e.g. a single message's answer,
    come back unchanged; the ``__replayed__`` mark is kept)."""
    if PACKED_ANSWER not in stored:
        return stored
    rest = {k: v for k, v in stored.items() if k != PACKED_ANSWER}
    answer: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(stored[PACKED_ANSWER])))
    return {**answer, **rest}
