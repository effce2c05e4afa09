"""``POST /v1/messages/batch`` request validation (DESIGN section 5, issue 6 item 5).

Body: ``{"messages": [message, ...], "all_or_nothing"?: bool}`` where each message is the
body of ``POST /v1/messages`` (``{to, body, from?, max_attempts?, reference?,
validity_period?}``) and is checked by exactly the same rules
(:func:`~sms_gateway.api.requests.validate_send_request`).

Two levels of error:

- the request itself (not an object, an unknown member, ``messages`` missing, not an array,
  empty or longer than :data:`BATCH_MAX_MESSAGES`, ``all_or_nothing`` not a boolean): a 422
  problem naming the member, nothing checked further;
- one message: that message is rejected with its own field errors (``to``, ``body``, ...),
  the others stand. :func:`batch_problem` turns the rejections into one 422 problem naming
  ``messages[i].field`` when the request asked for ``all_or_nothing`` or no message is valid.

Size: a valid message is at most ~5 KB of JSON (a 10-segment body written as ``\\uXXXX``
escapes), so the largest valid request is ~0.5 MB, far inside API Gateway's 10 MB payload
limit (which the deployed API and the local HTTP front enforce before the function runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sms_gateway.api.models import BATCH_MAX_MESSAGES
from sms_gateway.api.problems import FieldError, Problem, validation_problem
from sms_gateway.api.requests import validate_send_request
from sms_gateway.domain.message import BatchItem, ValidatedBatch

__all__ = ["BATCH_MAX_MESSAGES", "BatchItem", "ValidatedBatch", "validate_batch_request"]
_MEMBERS = frozenset({"messages", "all_or_nothing"})


def validate_batch_request(
    payload: Any, *, max_segments: int, max_attempts_limit: int, possible_numbers: bool = False
) -> ValidatedBatch:
    """Validate a decoded batch body: the request's shape, then every message on its own.

    Raises:
        Problem: 422 ``validation-error`` when the request itself is malformed (fields ``$``,
            ``messages``, ``all_or_nothing`` or an unknown member). An invalid *message* does
            not raise: it is returned as a rejected :class:`BatchItem`.
    """
    if not isinstance(payload, dict):
        raise validation_problem([FieldError("$", "request body must be a JSON object")])
    errors = [
        FieldError(name, "unknown field: not part of this API")
        for name in payload
        if name not in _MEMBERS
    ]
    messages = payload.get("messages")
    if "messages" not in payload:
        errors.append(FieldError("messages", "is required"))
    elif not isinstance(messages, list):
        errors.append(
            FieldError("messages", f"must be an array of 1 to {BATCH_MAX_MESSAGES} messages")
        )
    elif not messages:
        errors.append(FieldError("messages", "must hold at least one message"))
    elif len(messages) > BATCH_MAX_MESSAGES:
        errors.append(
            FieldError(
                "messages",
                f"must hold at most {BATCH_MAX_MESSAGES} messages (got {len(messages)})",
            )
        )
    all_or_nothing = payload.get("all_or_nothing", False)
    if type(all_or_nothing) is not bool:  # strict, as the single route: no 0/1 or "true"
        errors.append(FieldError("all_or_nothing", "must be true or false"))
    if errors:
        raise validation_problem(errors)
    assert isinstance(messages, list)
    items = []
    for index, item in enumerate(messages):
        try:
            valid = validate_send_request(
                item,
                max_segments=max_segments,
                max_attempts_limit=max_attempts_limit,
                possible_numbers=possible_numbers,
            )
        except Problem as problem:
            items.append(BatchItem(index, item, None, tuple(problem.errors)))
        else:
            items.append(BatchItem(index, item, valid))
    return ValidatedBatch(tuple(items), all_or_nothing)


def item_field(index: int, field: str) -> str:
    """The request-level name of a message's field: ``messages[3].to`` (``messages[3]`` for
    the message itself, which the single route calls ``$``)."""
    return f"messages[{index}]" if field == "$" else f"messages[{index}].{field}"


def batch_problem(rejected: Sequence[BatchItem], *, total: int, all_or_nothing: bool) -> Problem:
    """The 422 answer for a batch that queues nothing: every rejected message's errors, each
    field named ``messages[i].field``.

    ``total``: how many messages the request held; ``all_or_nothing``: whether the client
    asked for it (only worded in ``detail``).
    """
    errors = [
        FieldError(item_field(item.index, e.field), e.message)
        for item in rejected
        for e in item.errors
    ]
    if all_or_nothing:
        detail = (
            f"{len(rejected)} of {total} messages are invalid and all_or_nothing is set: "
            "nothing was queued"
        )
    else:
        detail = f"none of the {total} messages is valid: nothing was queued"
    return Problem(422, "validation-error", "Request validation failed", detail, errors=errors)
