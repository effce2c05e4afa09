"""Ingest: accept one SMS exactly once per (tenant, Idempotency-Key) and queue it.

Idempotency is Powertools' (DynamoDB persistence layer), keyed on ``[tenant_id, key]`` so keys
are tenant-scoped, with payload validation on the decoded JSON body (so key order and
whitespace do not matter). Outcomes (DESIGN section 5):

- first request: the message is validated, queued (one SQS message) and answered 202;
- same key, same payload: the stored answer again (``replayed``), nothing queued;
- same key, different payload: :class:`IdempotencyKeyReused` (422);
- same key while the first request is still in flight: :class:`IdempotencyInProgress` (409).

No SQL here: the ingest function has no database and no VPC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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

from sms_gateway.api.requests import validate_send_request
from sms_gateway.domain.message import (
    QueuedMessage,
    derive_message_id,
    payload_fingerprint,
    retention_window,
)
from sms_gateway.observability import logger
from sms_gateway.services.ports import Clock, MessageQueue, MetricsSink


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before with a different payload."""


class IdempotencyInProgress(Exception):
    """The first request with this Idempotency-Key has not finished yet."""


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
        queue: MessageQueue,
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

    def accept(self, tenant_id: str, idempotency_key: str, payload: Any) -> Accepted:
        """Accept ``payload`` (the decoded JSON body) for ``tenant_id`` under ``idempotency_key``.

        Raises:
            Problem: 422 validation error naming the fields (nothing is stored or queued).
            IdempotencyKeyReused: same key, different payload.
            IdempotencyInProgress: same key, first request still running.
            botocore.exceptions.ClientError: SQS or DynamoDB refused; nothing was stored.
        """
        validated = validate_send_request(
            payload,
            max_segments=self._config.max_segments,
            max_attempts_limit=self._config.max_attempts_limit,
        )
        # Only tenant_id + idempotency_key make the key and only payload is validated;
        # "message" rides along so the idempotent step needs no shared state.
        request = {
            "tenant_id": tenant_id,
            "idempotency_key": idempotency_key,
            "payload": payload,
            "message": {
                "to": validated.to,
                "sender_id": validated.sender_id,
                "body": validated.body,
                "encoding": validated.content.encoding.value,
                "segments": validated.content.segments,
                "max_attempts": validated.max_attempts,
                "reference": validated.reference,
                "validity_period": validated.validity_period,
            },
        }
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
        replayed = bool(answer.pop("__replayed__", False))
        if replayed:
            self._metrics.add("IdempotentReplays", 1, "Count")
        return Accepted(body=answer, replayed=replayed)

    def _enqueue(self, request: dict[str, Any]) -> dict[str, Any]:
        fields = request["message"]
        now = self._clock()
        message_id = derive_message_id(
            request["tenant_id"],
            request["idempotency_key"],
            payload_fingerprint(canonical_json(request["payload"])),
            retention_window(now, self._config.idempotency_ttl_seconds),
        )
        message = QueuedMessage(
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
        self._queue.send(
            message.model_dump_json(),
            {"message_id": message_id, "tenant_id": message.tenant_id},
        )
        self._metrics.add("MessagesAccepted", 1, "Count")
        logger.info(
            "accepted",
            extra={
                "message_id": message_id,
                "tenant_id": message.tenant_id,
                "segments": message.segments,
                "encoding": message.encoding.value,
            },
        )
        return {
            "message_id": message_id,
            "status": "queued",
            "to": message.to,
            "encoding": message.encoding.value,
            "segments": message.segments,
            "created_at": now.isoformat().replace("+00:00", "Z"),
        }
