"""The local stack's AWS state survives a restart: moto behind a write-ahead journal.

Why not moto's own persistence? moto keeps its backends in memory only. Its recorder
(``MOTO_ENABLE_RECORDING``, ``/moto-api/recorder/...``) appends *every* request to a file and
replays them all over HTTP: the file grows without end, reads and failed calls are replayed
too, and a replayed ``SendMessage`` gets a new ``MessageId`` while the recorded
``DeleteMessage`` calls carry receipt handles of the old run, so every message ever sent would
come back. So the local stack keeps its own journal, of *facts* rather than requests:

- :class:`JournalingApp`, a WSGI middleware in front of moto's app (the same
  ``DomainDispatcherApplication(create_backend_app)`` that ``ThreadedMotoServer`` serves),
  appends JSON lines for each state-changing call to ``<data dir>/aws-journal.jsonl`` and
  writes them to the OS (one ``write(2)`` on an ``O_APPEND`` descriptor) *before* the response
  leaves: whatever a client was told has happened survives ``kill -9`` of the process (add
  ``fsync=True`` to survive a power cut too).
- A failed write (disk full, file size limit) is cut back off (``ftruncate`` to the length
  before it), so the file never holds a torn line except the last one after a kill mid-write,
  which a restart skips. The call is answered 500 ``InternalFailure`` and, as far as a client
  can tell, did not happen:

  * DynamoDB (JSON protocol, ``X-Amz-Target: DynamoDB_20120810.*``): ``PutItem``,
    ``UpdateItem``, ``DeleteItem``, ``BatchWriteItem``, ``TransactWriteItems`` and the PartiQL
    writes are journaled *ahead*: the request itself is written first and only then given to
    moto, so a write that cannot be journaled never reaches moto (botocore's retry of the 500
    is a first try again, not a ``ConditionalCheckFailed`` against its own earlier attempt).
    A write moto then refuses (a failed condition, a validation error) is followed by a
    ``ddb.refused`` line, and the restart skips it; were that line lost, replaying the refused
    write is refused again (writes are serialised, so the replay sees the same state), which
    changes nothing. A kill between the line and moto's answer leaves a write the client
    never heard of, which the restart applies: a timed-out call may have happened, as on AWS.
    Writes are replayed in order (serialised, so the journal's order is moto's order).
  * SQS sends get their ``MessageId`` from moto, so they are journaled after moto took them;
    when that fails, the new messages are taken out of moto again before the 500.
  * SQS receives, deletes, visibility changes and purges are journaled after moto applied
    them; when that fails, moto keeps the change and the call still answers 500. The only
    effect of the missing line is at the next restart: the message is delivered again (or
    sooner), which the sender tolerates (see below).
- SQS (JSON protocol, ``X-Amz-Target: AmazonSQS.*``, which botocore >= 1.31.63 speaks): a sent
  message is kept whole (id, body, attributes, sent time, delay); ``ReceiveMessage`` answers
  record which message ids were received from which queue (receipt handles map to ids in
  memory), so ``DeleteMessage(Batch)`` and ``ChangeMessageVisibility(Batch)`` are journaled by
  message id; ``PurgeQueue`` too. A query-protocol (form) write to SQS is refused with 400
  ``UnsupportedProtocol`` rather than left out of the journal silently.

At start (:meth:`JournaledMotoServer.restore`, after the template's table and queues exist and
before anything else talks to moto), the journal is read and what is still live goes back:

- DynamoDB writes are replayed in order; then every table is scanned and items whose TTL
  attribute (the table's ``TimeToLiveSpecification``, from the template) has passed are
  deleted, as DynamoDB's TTL sweeper would.
- SQS messages sent and never deleted (nor purged), whose queue's ``MessageRetentionPeriod``
  has not run out since they were first sent, are put back into moto's backend with their own
  ``MessageId``, sent time, attributes and ``ApproximateReceiveCount``, in the queue they were
  last received from (moto's redrive moves a message to the dead-letter queue keeping its id;
  a message that used up ``maxReceiveCount`` is moved by moto on its next receive, as SQS
  does). A delay or a visibility timeout set by ``ChangeMessageVisibility`` (the sender's retry
  backoff) is kept; the visibility a ``ReceiveMessage`` gave is not: the consumer that held the
  message died with the process, so it is delivered again at once.
- The journal is then compacted (written to a temporary file, fsynced, renamed over the old
  one): one ``PutItem`` per live item and one entry per live message.

Redelivering a message the sender had already finished is safe: the sender acknowledges a
duplicate delivery of a message past ``queued`` from SQL state without sending
(:mod:`sms_gateway.services.sender`). Only the template's queues and tables come back (they
are created from it at each start); queues or tables created by hand are not journaled, nor
are moves started with ``StartMessageMoveTask``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer

__all__ = [
    "JOURNAL_FILE",
    "Journal",
    "JournalError",
    "JournaledMotoServer",
    "JournalingApp",
    "LiveMessage",
    "RestoreReport",
    "live_messages",
    "read_journal",
]

logger = logging.getLogger(__name__)

JOURNAL_FILE: Final = "aws-journal.jsonl"

_SQS_PREFIX: Final = "AmazonSQS."
_DYNAMODB_PREFIX: Final = "DynamoDB_20120810."
_DYNAMODB_WRITES: Final = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)
_SQS_JOURNALED: Final = frozenset(
    {
        "SendMessage",
        "SendMessageBatch",
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "PurgeQueue",
    }
)
# Receives may long-poll: they are not serialised with the writes (see JournalingApp).
_UNSERIALISED: Final = frozenset({"ReceiveMessage"})
_DUMMY_DATE: Final = "20260101"
_SHUTDOWN_POLL_SECONDS: Final = 0.05  # how often the moto server thread checks for stop()


class JournalError(Exception):
    """The journal file cannot be read: a line in its middle is not a JSON object.

    (A torn last line, from a kill during a write, is skipped with a warning instead; a torn
    line in the middle cannot come from this module, whose failed writes are cut back off, so
    it is never guessed at.) The message is one line naming the remedies:
    ``sms-gateway local --reset-journal`` deletes the journal only (the SQL database is kept),
    ``--reset`` the journal and the default SQLite database.
    """


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- the file ----------------------------------------------------------------------------------


class Journal:
    """An append-only JSON-lines file; each :meth:`append` is one ``write(2)``.

    Args:
        path: the file (created on first append, mode 0600).
        fsync: also ``fsync`` each append (survives a power cut, not only a killed process).
    """

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None

    def open(self) -> None:
        """Open the file for appending (creating its directory)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._fd is not None

    def append(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Write ``entries`` (JSON objects) as lines, all in one write.

        Raises:
            RuntimeError: not open.
            OSError: the write failed (disk full, ...).
        """
        data = "".join(
            json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n" for entry in entries
        ).encode("utf-8")
        if not data:
            return
        with self._lock:
            if self._fd is None:
                raise RuntimeError(f"journal {self.path} is not open")
            # Only this object appends (the data dir is locked), so the length before the
            # write is where a failed write is cut back to.
            before = os.fstat(self._fd).st_size
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:
                try:
                    os.ftruncate(self._fd, before)
                except OSError:
                    logger.exception("journal %s: a failed write could not be cut off", self.path)
                raise

    def replace(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Atomically replace the file's content with ``entries`` (temporary file, fsync,
        rename, fsync of the directory). Call while closed. The new file has mode 0600, as
        the first one: it holds phone numbers and message bodies."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.unlink(missing_ok=True)  # a leftover keeps its mode through O_CREAT
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The entries of the journal at ``path`` (``[]`` when there is none).

    Raises:
        JournalError: a line other than the last is not a JSON object.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    entries: list[dict[str, Any]] = []
    last = max((index for index, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError as error:
            if number == last:
                logger.warning("journal %s: torn last line skipped (%s)", path, error)
                continue
            raise JournalError(
                f"AWS journal {path} line {number + 1} is not a JSON object ({error}); "
                "start with --reset-journal to delete this journal only (queued messages and "
                "idempotency records are lost, the SQL database is kept), or with --reset to "
                "delete it and the default SQLite database in the same directory"
            ) from error
        entries.append(entry)
    return entries


# -- SQS: which messages are still live -------------------------------------------------------


@dataclass
class LiveMessage:
    """A message the journal says is still in a queue.

    ``queue``: ``<account>/<queue name>`` (the QueueUrl's path); ``attributes`` and
    ``system_attributes`` in SQS's JSON wire form (``BinaryValue`` base64); times in epoch
    milliseconds; ``visible_ms``: not to be delivered before (0: at once); ``receives``:
    ``ApproximateReceiveCount`` so far.
    """

    queue: str
    region: str
    id: str
    body: str
    sent_ms: int
    attributes: dict[str, Any] = field(default_factory=dict)
    system_attributes: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    dedup: str | None = None
    receives: int = 0
    first_receive_ms: int | None = None
    visible_ms: int = 0

    def entry(self) -> dict[str, Any]:
        """The journal entry (kind ``sqs.send``) that brings this message back as it is."""
        return {
            "k": "sqs.send",
            "region": self.region,
            "queue": self.queue,
            "id": self.id,
            "body": self.body,
            "attributes": self.attributes,
            "system_attributes": self.system_attributes,
            "group": self.group,
            "dedup": self.dedup,
            "sent_ms": self.sent_ms,
            "receives": self.receives,
            "first_receive_ms": self.first_receive_ms,
            "visible_ms": self.visible_ms,
        }

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> LiveMessage:
        """Inverse of :meth:`entry`."""
        return cls(
            queue=str(entry["queue"]),
            region=str(entry["region"]),
            id=str(entry["id"]),
            body=str(entry["body"]),
            sent_ms=int(entry["sent_ms"]),
            attributes=dict(entry.get("attributes") or {}),
            system_attributes=dict(entry.get("system_attributes") or {}),
            group=entry.get("group"),
            dedup=entry.get("dedup"),
            receives=int(entry.get("receives") or 0),
            first_receive_ms=entry.get("first_receive_ms"),
            visible_ms=int(entry.get("visible_ms") or 0),
        )


def live_messages(entries: Iterable[Mapping[str, Any]]) -> list[LiveMessage]:
    """The SQS messages sent and not since deleted or purged, in the order they were sent.

    Rules: ``sqs.send`` adds a message; ``sqs.receive`` counts a receive and moves the message
    to the queue it was received from (moto's redrive to the dead-letter queue keeps the id);
    ``sqs.delete`` removes it for good (message ids are unique, so a delete journaled before its
    send, by a race between threads, still wins); ``sqs.visibility`` sets when it may be
    delivered again; ``sqs.purge`` removes the queue's messages sent before it. Retention is
    not applied here (it needs the queues' settings; see :meth:`JournaledMotoServer.restore`).
    Other kinds are ignored.
    """
    messages: dict[str, LiveMessage] = {}
    deleted: set[str] = set()
    early: dict[str, list[tuple[str, int]]] = {}  # receives journaled before their send
    for entry in entries:
        kind = entry.get("k")
        if kind == "sqs.send":
            message = LiveMessage.from_entry(entry)
            if message.id in deleted:
                continue
            for queue, at in early.pop(message.id, []):
                _received(message, queue, at)
            messages[message.id] = message
        elif kind == "sqs.receive":
            at = int(entry.get("at") or 0)
            for message_id in entry.get("ids", []):
                if message_id in messages:
                    _received(messages[message_id], str(entry["queue"]), at)
                elif message_id not in deleted:
                    early.setdefault(message_id, []).append((str(entry["queue"]), at))
        elif kind == "sqs.delete":
            for message_id in entry.get("ids", []):
                deleted.add(message_id)
                messages.pop(message_id, None)
                early.pop(message_id, None)
        elif kind == "sqs.visibility":
            found = messages.get(str(entry.get("id")))
            if found is not None:
                found.visible_ms = int(entry["visible_ms"])
        elif kind == "sqs.purge":
            at = int(entry["at"])
            for message_id, message in list(messages.items()):
                if message.queue == entry["queue"] and message.sent_ms <= at:
                    del messages[message_id]
    return list(messages.values())


def _received(message: LiveMessage, queue: str, at: int) -> None:
    message.receives += 1
    message.queue = queue
    if message.first_receive_ms is None:
        message.first_receive_ms = at


# -- the middleware ---------------------------------------------------------------------------


@dataclass
class _Call:
    service: str  # "sqs" | "dynamodb"
    action: str
    region: str
    request: dict[str, Any]


class JournalingApp:
    """WSGI middleware: journal each successful state-changing DynamoDB/SQS call of ``app``
    before its response is returned (see the module docstring for what is journaled).

    Inactive (a plain pass-through) until :meth:`activate`.
    """

    def __init__(self, app: WSGIApplication, journal: Journal) -> None:
        self.app = app
        self.journal = journal
        self.active = False
        self._write_lock = threading.Lock()
        self._handles_lock = threading.Lock()
        self._handles: dict[str, str] = {}  # receipt handle -> message id
        self._handles_of: dict[str, list[str]] = {}  # message id -> its receipt handles

    def activate(self) -> None:
        """Start journaling (the journal must be open)."""
        self.active = True

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.active:
            return self.app(environ, start_response)
        try:
            call = _parse_call(environ)
        except _Refused as refused:
            start_response(
                "400 Bad Request", [("Content-Type", "text/xml"), ("x-amzn-query-error", "1")]
            )
            return [refused.xml()]
        if call is None:
            return self.app(environ, start_response)
        if call.action in _UNSERIALISED:
            return self._journaled(call, environ, start_response)
        with self._write_lock:
            return self._journaled(call, environ, start_response)

    def _journaled(
        self, call: _Call, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if call.service == "dynamodb":
            return self._write_ahead(call, environ, start_response)
        status, headers, body = _run(self.app, environ)
        if status.startswith("200"):
            answer: dict[str, Any] = {}
            try:
                answer = json.loads(body or b"{}")
                entries = self._entries(call, answer)
                if entries:  # an empty receive changes nothing
                    self.journal.append(entries)
            except Exception as error:  # one line: the cause (disk full ...) says it all
                logger.error(
                    "journal: could not record %s.%s (answered 500): %s",
                    call.service,
                    call.action,
                    error,
                )
                if call.action in ("SendMessage", "SendMessageBatch"):
                    _unsend(call, answer)
                return _journal_failure(start_response)
        start_response(status, headers)
        return [body]

    def _write_ahead(
        self, call: _Call, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """A DynamoDB write: journaled first, then applied (see the module docstring)."""
        try:
            self.journal.append(self._entries(call, {}))
        except Exception as error:
            logger.error(
                "journal: could not record dynamodb.%s (answered 500, not applied): %s",
                call.action,
                error,
            )
            return _journal_failure(start_response)
        status, headers, body = _run(self.app, environ)
        if not status.startswith("200"):
            try:
                self.journal.append([{"k": "ddb.refused", "region": call.region}])
            except Exception:  # harmless: replaying a refused write is refused again
                logger.exception("journal: could not mark a refused dynamodb.%s", call.action)
        start_response(status, headers)
        return [body]

    def _entries(self, call: _Call, answer: dict[str, Any]) -> list[dict[str, Any]]:
        at = _now_ms()
        request = call.request
        if call.service == "dynamodb":
            return [{"k": "ddb", "region": call.region, "target": call.action, "body": request}]
        queue = urlsplit(str(request.get("QueueUrl", ""))).path.strip("/")
        base = {"region": call.region, "queue": queue}
        action = call.action
        if action == "SendMessage":
            return [_sent(base, request, str(answer["MessageId"]), at)]
        if action == "SendMessageBatch":
            by_id = {entry["Id"]: entry for entry in request.get("Entries", [])}
            return [
                _sent(base, by_id[item["Id"]], str(item["MessageId"]), at)
                for item in answer.get("Successful", [])
                if item.get("Id") in by_id
            ]
        if action == "ReceiveMessage":
            received = answer.get("Messages") or []
            if not received:
                return []
            with self._handles_lock:
                for message in received:
                    handle, message_id = message["ReceiptHandle"], message["MessageId"]
                    self._handles[handle] = message_id
                    self._handles_of.setdefault(message_id, []).append(handle)
            return [
                {**base, "k": "sqs.receive", "at": at, "ids": [m["MessageId"] for m in received]}
            ]
        if action == "DeleteMessage":
            ids = self._forget([str(request["ReceiptHandle"])])
            return [{**base, "k": "sqs.delete", "at": at, "ids": ids}] if ids else []
        if action == "DeleteMessageBatch":
            by_id = {entry["Id"]: entry for entry in request.get("Entries", [])}
            handles = [
                str(by_id[item["Id"]]["ReceiptHandle"])
                for item in answer.get("Successful", [])
                if item.get("Id") in by_id
            ]
            ids = self._forget(handles)
            return [{**base, "k": "sqs.delete", "at": at, "ids": ids}] if ids else []
        if action in ("ChangeMessageVisibility", "ChangeMessageVisibilityBatch"):
            if action == "ChangeMessageVisibility":
                changed = [request]
            else:
                by_id = {entry["Id"]: entry for entry in request.get("Entries", [])}
                changed = [
                    by_id[item["Id"]]
                    for item in answer.get("Successful", [])
                    if item.get("Id") in by_id
                ]
            entries = []
            for change in changed:
                message_id = self._message_id(str(change["ReceiptHandle"]))
                if message_id is not None:
                    visible_ms = at + int(change.get("VisibilityTimeout") or 0) * 1000
                    entries.append(
                        {**base, "k": "sqs.visibility", "id": message_id, "visible_ms": visible_ms}
                    )
            return entries
        if action == "PurgeQueue":
            return [{**base, "k": "sqs.purge", "at": at}]
        return []  # pragma: no cover - _SQS_JOURNALED lists only the actions above

    def _message_id(self, handle: str) -> str | None:
        with self._handles_lock:
            found = self._handles.get(handle)
        if found is None:
            logger.warning("journal: a receipt handle this run did not hand out was accepted")
        return found

    def _forget(self, handles: list[str]) -> list[str]:
        ids = []
        with self._handles_lock:
            for handle in handles:
                message_id = self._handles.get(handle)
                if message_id is None:
                    logger.warning("journal: a receipt handle this run did not hand out")
                    continue
                ids.append(message_id)
                for old in self._handles_of.pop(message_id, []):
                    self._handles.pop(old, None)
        return ids


def _journal_failure(start_response: StartResponse) -> list[bytes]:
    """The 500 answered for a call that could not be journaled (botocore retries it)."""
    start_response("500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.0")])
    return [
        json.dumps(
            {"__type": "InternalFailure", "message": "the local stack could not journal this call"}
        ).encode()
    ]


def _unsend(call: _Call, answer: Mapping[str, Any]) -> None:
    """Take the messages a ``SendMessage(Batch)`` just put into moto out again (by id)."""
    from moto.sqs.models import sqs_backends

    ids = {str(answer["MessageId"])} if "MessageId" in answer else set()
    ids |= {
        str(item["MessageId"]) for item in answer.get("Successful") or [] if "MessageId" in item
    }
    path = urlsplit(str(call.request.get("QueueUrl", ""))).path.strip("/")
    account, _, name = path.partition("/")
    try:
        queue = sqs_backends[account][call.region].queues[name]
    except KeyError:
        return
    with queue._messages_lock:
        queue._messages = [message for message in queue._messages if message.id not in ids]
        for message in [m for m in queue._pending_messages if m.id in ids]:
            queue._pending_messages.discard(message)


def _sent(base: Mapping[str, Any], request: Mapping[str, Any], message_id: str, at: int) -> Any:
    delay = int(request.get("DelaySeconds") or 0)
    return LiveMessage(
        queue=str(base["queue"]),
        region=str(base["region"]),
        id=message_id,
        body=str(request.get("MessageBody", "")),
        sent_ms=at,
        attributes=dict(request.get("MessageAttributes") or {}),
        system_attributes=dict(request.get("MessageSystemAttributes") or {}),
        group=request.get("MessageGroupId"),
        dedup=request.get("MessageDeduplicationId"),
        visible_ms=at + delay * 1000 if delay else 0,
    ).entry()


class _Refused(Exception):
    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action

    def xml(self) -> bytes:
        return (
            "<ErrorResponse><Error><Type>Sender</Type><Code>UnsupportedProtocol</Code>"
            f"<Message>the local stack journals SQS {self.action} in the JSON protocol only "
            "(botocore &gt;= 1.31.63)</Message></Error></ErrorResponse>"
        ).encode()


def _read_body(environ: WSGIEnvironment) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    body: bytes = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _credential_scope(environ: WSGIEnvironment) -> tuple[str, str] | None:
    """(region, service) from a SigV4 ``Authorization`` header, else None."""
    auth = str(environ.get("HTTP_AUTHORIZATION") or "")
    try:
        scope = auth.split(",")[0].split()[1]
        _, _, region, service, _ = scope.split("/")
    except (IndexError, ValueError):
        return None
    return region, service.lower()


def _parse_call(environ: WSGIEnvironment) -> _Call | None:
    """The journaled call this request is, or None (anything else: passed through as is).

    Raises:
        _Refused: an SQS write in the query protocol.
    """
    target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
    scope = _credential_scope(environ)
    region = scope[0] if scope else "us-east-1"
    if target.startswith(_DYNAMODB_PREFIX):
        action = target.removeprefix(_DYNAMODB_PREFIX)
        service = "dynamodb"
        if action not in _DYNAMODB_WRITES:
            return None
    elif target.startswith(_SQS_PREFIX):
        action = target.removeprefix(_SQS_PREFIX)
        service = "sqs"
        if action not in _SQS_JOURNALED:
            return None
    else:
        form = str(environ.get("CONTENT_TYPE") or "").startswith(
            "application/x-www-form-urlencoded"
        )
        if scope is not None and scope[1] == "sqs" and form:
            fields = parse_qs(_read_body(environ).decode("utf-8", "replace"))
            action = (fields.get("Action") or [""])[0]
            if action in _SQS_JOURNALED:
                raise _Refused(action)
        return None
    try:
        request = json.loads(_read_body(environ) or b"{}")
    except ValueError:
        return None  # moto answers the malformed request; it changes nothing
    if not isinstance(request, dict):
        return None
    return _Call(service=service, action=action, region=region, request=request)


def _run(
    app: WSGIApplication, environ: WSGIEnvironment
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call ``app`` and collect its whole answer (status, headers, body)."""
    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], b"".join(chunks)


# -- the server -------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    """What :meth:`JournaledMotoServer.restore` did: DynamoDB writes replayed (and refused on
    replay), items kept and dropped for TTL, messages put back, messages dropped for
    retention, journal entries before and after compaction."""

    writes_replayed: int = 0
    writes_refused: int = 0
    items: int = 0
    items_expired: int = 0
    messages: int = 0
    messages_expired: int = 0
    entries_before: int = 0
    entries_after: int = 0

    def __str__(self) -> str:
        return (
            f"{self.items} item(s) ({self.items_expired} past their TTL dropped, "
            f"{self.writes_replayed} write(s) replayed), {self.messages} message(s) "
            f"({self.messages_expired} past retention dropped); journal {self.entries_before}"
            f" -> {self.entries_after} entries"
        )


class JournaledMotoServer:
    """moto's server (DynamoDB, SQS, ...) on ``host:port`` behind :class:`JournalingApp`.

    Same interface as ``moto.server.ThreadedMotoServer`` (``start``, ``get_host_and_port``,
    ``stop``) plus :meth:`restore`, which replays and compacts the journal at ``journal_path``
    and then starts journaling. Until :meth:`restore` nothing is journaled.

    Args:
        journal_path: the JSON-lines journal (``<data dir>/aws-journal.jsonl``).
        host, port: where to listen; port 0 picks a free one.
        fsync: fsync each journal append (see :class:`Journal`).
    """

    def __init__(
        self, journal_path: Path, *, host: str = "127.0.0.1", port: int = 0, fsync: bool = False
    ) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.journal = Journal(journal_path, fsync=fsync)
        self.moto_app: WSGIApplication = DomainDispatcherApplication(create_backend_app)
        self.app = JournalingApp(self.moto_app, self.journal)
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and serve in a daemon thread.

        Raises:
            OSError: the address is taken.
        """
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        self._server = make_server(
            self._host, self._port, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        server = self._server
        # werkzeug checks for shutdown() once per poll interval (0.5 s by default): a stack
        # stops within 50 ms instead of half a second.
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=_SHUTDOWN_POLL_SECONDS),
            name="moto",
            daemon=True,
        )
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        """The address it listens on. Raises RuntimeError before :meth:`start`."""
        if self._server is None:
            raise RuntimeError("moto server not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving and close the journal (moto's backends are left as they are)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.app.active = False
        self.journal.close()

    def restore(self, now_ms: int | None = None) -> RestoreReport:
        """Put the journal's live state into moto, compact the journal, start journaling.

        Call once, after the template's tables and queues exist and before anything else
        writes to moto. ``now_ms`` (epoch ms) is the clock for TTL and retention.

        Raises:
            JournalError: the journal is corrupt (see :func:`read_journal`).
            OSError: the compacted journal cannot be written.
        """
        now_ms = _now_ms() if now_ms is None else now_ms
        entries = read_journal(self.journal.path)
        report = RestoreReport(entries_before=len(entries))
        compacted: list[dict[str, Any]] = []

        dynamodb = _DynamoDB(self.moto_app)
        regions = sorted({str(e.get("region")) for e in entries if e.get("k") == "ddb"})
        for entry in _accepted_writes(entries):
            status, answer = dynamodb.call(
                str(entry["region"]), str(entry["target"]), entry["body"]
            )
            if status == 200:
                report.writes_replayed += 1
            else:
                report.writes_refused += 1
                logger.warning(
                    "journal: replayed %s refused: %s", entry["target"], answer.get("__type")
                )
        for region in regions:
            for table, item in dynamodb.live_items(region, now_ms / 1000, report):
                compacted.append(
                    {
                        "k": "ddb",
                        "region": region,
                        "target": "PutItem",
                        "body": {"TableName": table, "Item": item},
                    }
                )

        for message in live_messages(entries):
            if _load_message(message, now_ms):
                report.messages += 1
                compacted.append(message.entry())
            else:
                report.messages_expired += 1

        self.journal.close()
        self.journal.replace(compacted)
        report.entries_after = len(compacted)
        self.journal.open()
        self.app.activate()
        logger.info("journal %s: restored %s", self.journal.path, report)
        return report


def _accepted_writes(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The journal's DynamoDB writes in order, without those moto refused: a ``ddb.refused``
    line cancels the latest ``ddb`` line before it (DynamoDB writes are serialised, so no other
    DynamoDB write comes between a write and its refusal)."""
    writes: list[Mapping[str, Any]] = []
    for entry in entries:
        if entry.get("k") == "ddb":
            writes.append(entry)
        elif entry.get("k") == "ddb.refused" and writes:
            writes.pop()
    return writes


class _DynamoDB:
    """DynamoDB JSON-protocol calls straight into moto's WSGI app (no socket, not journaled)."""

    def __init__(self, app: WSGIApplication) -> None:
        from werkzeug.test import Client

        self._client = Client(app)

    def call(self, region: str, action: str, body: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, answer) of one call."""
        response = self._client.post(
            "/",
            data=json.dumps(body),
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"{_DYNAMODB_PREFIX}{action}",
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential=testing/{_DUMMY_DATE}/{region}/dynamodb/"
                    "aws4_request, SignedHeaders=host, Signature=0"
                ),
            },
        )
        answer = json.loads(response.get_data() or b"{}")
        return response.status_code, answer if isinstance(answer, dict) else {}

    def _ok(self, region: str, action: str, body: Any) -> dict[str, Any]:
        status, answer = self.call(region, action, body)
        if status != 200:
            raise RuntimeError(f"moto refused {action}: {answer}")
        return answer

    def live_items(
        self, region: str, now_s: float, report: RestoreReport
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(table, item) of every item of every table in ``region`` whose TTL has not passed;
        the expired ones are deleted from moto on the way."""
        tables = self._ok(region, "ListTables", {}).get("TableNames", [])
        for table in tables:
            ttl = self._ok(region, "DescribeTimeToLive", {"TableName": table})
            spec = ttl.get("TimeToLiveDescription", {})
            ttl_attribute = (
                spec.get("AttributeName") if spec.get("TimeToLiveStatus") == "ENABLED" else None
            )
            schema = self._ok(region, "DescribeTable", {"TableName": table})["Table"]["KeySchema"]
            keys = [part["AttributeName"] for part in schema]
            start: dict[str, Any] | None = None
            while True:
                request: dict[str, Any] = {"TableName": table}
                if start:
                    request["ExclusiveStartKey"] = start
                page = self._ok(region, "Scan", request)
                for item in page.get("Items", []):
                    if ttl_attribute and _expired(item.get(ttl_attribute), now_s):
                        report.items_expired += 1
                        key = {name: item[name] for name in keys}
                        self._ok(region, "DeleteItem", {"TableName": table, "Key": key})
                        continue
                    report.items += 1
                    yield table, item
                start = page.get("LastEvaluatedKey")
                if not start:
                    break


def _expired(value: Any, now_s: float) -> bool:
    """DynamoDB TTL: a Number attribute holding epoch seconds at or before now has expired;
    any other type never expires (AWS DynamoDB developer guide, "Time to Live")."""
    if not isinstance(value, dict) or "N" not in value:
        return False
    try:
        return float(value["N"]) <= now_s
    except ValueError:
        return False


def _load_message(message: LiveMessage, now_ms: int) -> bool:
    """Put ``message`` into moto's SQS backend as it was (id, sent time, receive count).

    Returns False when its queue's MessageRetentionPeriod has run out (or the queue is gone).
    """
    from moto.sqs.models import Message, sqs_backends

    account, _, name = message.queue.partition("/")
    backend = sqs_backends[account][message.region]
    queue = backend.queues.get(name)
    if queue is None:
        logger.warning("journal: queue %s no longer exists; message dropped", message.queue)
        return False
    retention = backend.get_queue_attributes(name, ["MessageRetentionPeriod"])
    retention_ms = int(retention["MessageRetentionPeriod"]) * 1000
    if message.sent_ms + retention_ms <= now_ms:
        return False
    loaded = Message(message.id, message.body, message.system_attributes or None)
    loaded.message_attributes = _decoded_attributes(message.attributes)
    loaded.sent_timestamp = message.sent_ms  # type: ignore[assignment]  # moto: None | int
    loaded.approximate_receive_count = message.receives
    loaded.approximate_first_receive_timestamp = message.first_receive_ms
    loaded.group_id = message.group
    loaded.deduplication_id = message.dedup
    if message.visible_ms > now_ms:
        loaded.delayed_until = float(message.visible_ms)
    queue.add_message(loaded)
    return True


def _decoded_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """JSON wire form -> moto's (``BinaryValue``/``BinaryListValues`` as bytes)."""
    decoded: dict[str, Any] = {}
    for name, value in attributes.items():
        value = dict(value)
        if isinstance(value.get("BinaryValue"), str):
            value["BinaryValue"] = base64.b64decode(value["BinaryValue"])
        if value.get("BinaryListValues"):
            value["BinaryListValues"] = [
                base64.b64decode(item) if isinstance(item, str) else item
                for item in value["BinaryListValues"]
            ]
        decoded[name] = value
    return decoded
