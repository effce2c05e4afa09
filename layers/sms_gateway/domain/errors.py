"""Domain errors the HTTP API answers (no HTTP codes here: :mod:`sms_gateway.api.errors`
maps each one to its status and problem ``type``, in one table).

This module imports nothing heavy, so both API functions can load the one error map on their
first request (the ingest function has no SQL; the status function no idempotency store).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sms_gateway.domain.states import MessageStatus


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: ``field`` is the JSON member (``to``, ``messages[2].body``, ``$`` for
    the document itself) or header name; ``message`` says why, for a client."""

    field: str
    message: str


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before by this tenant with a different request body."""


class IdempotencyInProgress(Exception):
    """The first request with this Idempotency-Key has not finished yet."""


class MessageNotFound(LookupError):
    """No message with that id (or not the caller's: the answer is the same)."""


class ReceiptConflict(Exception):
    """A delivery receipt for a message that has no attempt sent or in flight (still queued,
    or waiting for a retry): nothing could have been delivered, so nothing is stored."""


class MessageNotCancelable(Exception):
    """The message is ``sending`` or past it: too late to cancel (an HTTP 409).

    ``status``: where it stands (a :class:`~sms_gateway.domain.states.MessageStatus`).
    """

    def __init__(self, message_id: str, status: MessageStatus) -> None:
        super().__init__(
            f"message {message_id} is {status.value}: only a queued message can be canceled"
        )
        self.status = status


class ApiKeyNotActive(Exception):
    """The request's API key maps to no tenant: it was never registered as a tenant's key,
    or it was revoked (issue 11; :mod:`sms_gateway.domain.tenants`). An HTTP 403."""


class InvalidField(ValueError):
    """A value that is well-formed but breaks a domain rule only the service can check
    (for example a receipt time before its message was created). ``field``: the JSON member."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
