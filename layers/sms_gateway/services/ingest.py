"""Ingest: accept one SMS exactly once per (tenant, Idempotency-Key) and queue it.

Idempotency is Powertools' (DynamoDB persistence layer), keyed on ``[tenant_id, key]`` so keys
are tenant-scoped, with payload validation on the decoded JSON body (so key order and
whitespace do not matter). Outcomes (DESIGN section 5):

- first request: the message is validated, queued (one SQS message) and answered 202;
- same key, same payload: the stored answer again (``replayed``), nothing queued;
- same key, different payload: :class:`IdempotencyKeyReused` (422);
- same key while the first request is still in flight: :class:`IdempotencyInProgress` (409).

A bulk request (:meth:`IngestService.accept_batch`, ``POST /v1/messages/batch``) goes through
the same idempotent step, so the rules above hold for it as a whole, and a key names one
request whichever route it came by (reusing a single message's key for a batch is 422: the
payloads differ). What the step does for a batch is :mod:`sms_gateway.services.bulk`'s.

No SQL here: the ingest function has no database and no VPC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from sms_gateway.domain.errors import IdempotencyInProgress, IdempotencyKeyReused
from sms_gateway.domain.message import (
    QueuedMessage,
    ValidatedBatch,
    ValidatedMessage,
    derive_message_id,
    payload_fingerprint,
    retention_window,
)
from sms_gateway.observability import logger
from sms_gateway.services.bulk import (
    BatchEntry,
    BatchNotQueued,
    BatchQueue,
    BatchRefused,
    batch_answer,
    derive_batch_message_id,
    pack_answer,
    unpack_answer,
)
from sms_gateway.services.ports import Clock, MessageQueue, MetricsSink


class IngestQueue(MessageQueue, BatchQueue, Protocol):
    """The SendQueue as ingest writes it: one message (single route) or in batches (bulk)."""


__all__ = ["Accepted", "IdempotencyInProgress", "IdempotencyKeyReused", "IngestService"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to an accepted message: ``body`` is the 202 JSON; ``replayed`` is True when it
    came from the idempotency store (the message was queued by an earlier request)."""

    body: dict[str, Any]
    replayed: bool


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """``max_segments``: body limit; ``max_attempts_limit``: the queue's maxReceiveCount;
    ``idempotency_ttl_seconds``: how long a key is remembered (also the message-id window)."""

    max_segments: int
    max_attempts_limit: int
    idempotency_ttl_seconds: int = 86_400


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> Any:
    if isinstance(response, dict):
        return {**response, "__replayed__": True}
    return response  # pragma: no cover - we only store dicts


def canonical_json(payload: Any) -> str:
    """``payload`` as canonical JSON: sorted keys, no insignificant whitespace, UTF-8 kept."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def idempotency_config(ttl_seconds: int) -> IdempotencyConfig:
    """The ingest idempotency configuration (one instance per container)."""
    return IdempotencyConfig(
        event_key_jmespath="[tenant_id, idempotency_key]",
        payload_validation_jmespath="payload",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl_seconds,
        hash_function="sha256",
        response_hook=_mark_replayed,
    )


class IngestService:
    """Validates, deduplicates and queues messages; see the module docstring."""

    def __init__(
        self,
        *,
        queue: IngestQueue,
        clock: Clock,
        metrics: MetricsSink,
        config: IngestConfig,
        persistence_store: BasePersistenceLayer,
        idempotency: IdempotencyConfig,
    ) -> None:
        self._queue = queue
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._enqueue_once = idempotent_function(
            data_keyword_argument="request",
            persistence_store=persistence_store,
            config=idempotency,
        )(self._enqueue)

    def accept(
        self, tenant_id: str, idempotency_key: str, validated: ValidatedMessage, payload: Any
    ) -> Accepted:
        """Accept one message for ``tenant_id`` under ``idempotency_key``: ``validated`` is the
        message (checked by the API layer, :func:`sms_gateway.api.requests.validate_send_request`),
        ``payload`` the decoded JSON body it came from (what a replay is compared with).

        Raises:
            IdempotencyKeyReused: same key, different payload.
            IdempotencyInProgress: same key, first request still running.
            botocore.exceptions.ClientError: SQS or DynamoDB refused; nothing was stored.
        """
        # Only tenant_id + idempotency_key make the key and only payload is validated;
        # "message" rides along so the idempotent step needs no shared state.
        request = {
            "tenant_id": tenant_id,
            "idempotency_key": idempotency_key,
            "payload": payload,
            "message": _message_fields(validated),
        }
        return self._once(request)

    def accept_batch(
        self, tenant_id: str, idempotency_key: str, batch: ValidatedBatch, payload: Any
    ) -> Accepted:
        """Accept a bulk request for ``tenant_id`` under ``idempotency_key``: ``batch`` is its
        messages as checked by :func:`sms_gateway.api.batch.validate_batch_request` (at least
        one valid, and none invalid under ``all_or_nothing``: the API layer answers 422
        otherwise), ``payload`` the decoded JSON body (``{"messages": [...],
        "all_or_nothing"?}``). One idempotency record for the request, one SQS message per
        valid message (SendMessageBatch, 10 per call).

        ``body`` of the answer: ``{"messages": [{index, message_id, status: "queued", to,
        encoding, segments} | {index, status: "rejected", errors: [{field, message}]}],
        "accepted": n, "rejected": m}``, in request order. An invalid message rejects only
        itself, unless ``all_or_nothing``.

        Raises:
            IdempotencyKeyReused: same key, different payload (or a single message's key).
            IdempotencyInProgress: same key, first request still running.
            BatchNotQueued: SQS did not take some messages after bounded retries (503);
                BatchRefused (500) when it refused one as malformed.
            botocore.exceptions.ClientError: SQS or DynamoDB refused a whole call.
        """
        rejected = batch.rejected
        request = {
            "tenant_id": tenant_id,
            "idempotency_key": idempotency_key,
            "payload": payload,
            "batch": [
                {
                    "index": item.index,
                    "item_hash": payload_fingerprint(canonical_json(item.payload)),
                    "message": _message_fields(item.message),
                }
                for item in batch.accepted
                if item.message is not None
            ],
            "rejected": [
                {
                    "index": item.index,
                    "status": "rejected",
                    "errors": [{"field": e.field, "message": e.message} for e in item.errors],
                }
                for item in rejected
            ],
        }
        return self._once(request)

    def _once(self, request: dict[str, Any]) -> Accepted:
        """Run the idempotent step; map Powertools' idempotency errors to ours."""
        try:
            answer = self._enqueue_once(request=request)
        except IdempotencyValidationError as exc:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request body"
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise IdempotencyInProgress(
                "a request with this Idempotency-Key is still being processed"
            ) from exc
        answer = unpack_answer(answer)
        replayed = bool(answer.pop("__replayed__", False))
        if replayed:
            self._metrics.add("IdempotentReplays", 1, "Count")
        return Accepted(body=answer, replayed=replayed)

    def _enqueue(self, request: dict[str, Any]) -> dict[str, Any]:
        """The idempotent step (its qualified name is part of the stored keys: keep it).
        A bulk request carries ``batch``; a single one ``message``."""
        if "batch" in request:
            return self._enqueue_batch(request)
        now = self._clock()
        message_id = derive_message_id(
            request["tenant_id"],
            request["idempotency_key"],
            payload_fingerprint(canonical_json(request["payload"])),
            retention_window(now, self._config.idempotency_ttl_seconds),
        )
        message = _queued_message(message_id, request, request["message"], now)
        self._queue.send(
            message.model_dump_json(),
            {"message_id": message_id, "tenant_id": message.tenant_id},
        )
        self._metrics.add("MessagesAccepted", 1, "Count")
        _log_accepted(message)
        return {
            "message_id": message_id,
            "status": "queued",
            "to": message.to,
            "encoding": message.encoding.value,
            "segments": message.segments,
            "created_at": now.isoformat().replace("+00:00", "Z"),
        }

    def _enqueue_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        """Queue every valid message of a bulk request; see :mod:`sms_gateway.services.bulk`.
        Returns the 202 body packed (:func:`~sms_gateway.services.bulk.pack_answer`): it is
        what the idempotency record stores; :meth:`_once` unpacks it.

        Raises:
            BatchNotQueued, BatchRefused: some messages could not be queued (the idempotency
                record is then deleted by Powertools, so the key stays usable).
        """
        now = self._clock()
        window = retention_window(now, self._config.idempotency_ttl_seconds)
        messages: dict[str, QueuedMessage] = {}
        for item in request["batch"]:
            message_id = derive_batch_message_id(
                request["tenant_id"],
                request["idempotency_key"],
                item["index"],
                item["item_hash"],
                window,
            )
            messages[str(item["index"])] = _queued_message(
                message_id, request, item["message"], now
            )
        result = self._queue.send_batch(
            [
                BatchEntry(
                    entry_id=entry_id,
                    body=message.model_dump_json(),
                    attributes={"message_id": message.message_id, "tenant_id": message.tenant_id},
                )
                for entry_id, message in messages.items()
            ]
        )
        if result.failed:
            failures = list(result.failed.values())
            logger.error(
                "bulk request not fully queued",
                extra={
                    "tenant_id": request["tenant_id"],
                    "queued": len(result.sent),
                    "failed_indexes": sorted(int(i) for i in result.failed),
                    "codes": sorted({f.code for f in failures}),
                    "calls": result.calls,
                },
            )
            error = BatchRefused if any(f.sender_fault for f in failures) else BatchNotQueued
            raise error(len(result.sent), len(messages), failures)
        self._metrics.add("MessagesAccepted", len(messages), "Count")
        for message in messages.values():
            _log_accepted(message)
        accepted = [
            {
                "index": int(entry_id),
                "message_id": message.message_id,
                "status": "queued",
                "to": message.to,
                "encoding": message.encoding.value,
                "segments": message.segments,
            }
            for entry_id, message in messages.items()
        ]
        return pack_answer(batch_answer(accepted, request["rejected"]))


def _message_fields(validated: ValidatedMessage) -> dict[str, Any]:
    """A validated message as the JSON-able fields the idempotent step reads."""
    return {
        "to": validated.to,
        "sender_id": validated.sender_id,
        "body": validated.body,
        "encoding": validated.content.encoding.value,
        "segments": validated.content.segments,
        "max_attempts": validated.max_attempts,
        "reference": validated.reference,
        "validity_period": validated.validity_period,
    }


def _queued_message(
    message_id: str, request: dict[str, Any], fields: dict[str, Any], now: datetime
) -> QueuedMessage:
    """The SendQueue body of one message (``fields``: :func:`_message_fields`)."""
    return QueuedMessage(
        message_id=message_id,
        tenant_id=request["tenant_id"],
        to=fields["to"],
        sender_id=fields["sender_id"],
        body=fields["body"],
        encoding=fields["encoding"],
        segments=fields["segments"],
        max_attempts=fields["max_attempts"],
        reference=fields["reference"],
        idempotency_key=request["idempotency_key"],
        created_at=now,
        expires_at=(
            now + timedelta(seconds=fields["validity_period"])
            if fields["validity_period"]
            else None
        ),
    )


def _log_accepted(message: QueuedMessage) -> None:
    logger.info(
        "accepted",
        extra={
            "message_id": message.message_id,
            "tenant_id": message.tenant_id,
            "segments": message.segments,
            "encoding": message.encoding.value,
        },
        stacklevel=3,  # the line of the service that accepted it, as log_transition does
    )
