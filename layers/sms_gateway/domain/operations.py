"""Operator and client operations on messages as pure rules (issue 11, item 2): cancel, dead
letter replay, stuck messages. No I/O; the service (:mod:`sms_gateway.services.operations`)
performs what these decide.

The rules are the lifecycle table of :mod:`sms_gateway.domain.states` (DESIGN section 4):

- **cancel**: only a ``queued`` message can be canceled (``queued -> canceled``). One in
  ``sending`` may already be with the provider, and one past it has been sent: both are
  refused. A canceled message answers a second cancel as the first (idempotent).
- **replay**: a dead-lettered message in ``failed`` goes back to ``queued`` (the operator's
  transition ``failed -> queued``) as a new *generation*, with ``budget`` more attempts on top
  of those it spent. A message in any other status (sent, delivered, canceled, queued again)
  is not replayed: a replay never sends a message twice. Nor is a ``failed`` message whose
  failure is not this dead letter: the DLQ function records a dead letter even while a live
  sender holds the message (and leaves the message to it); if that sender then sends it and a
  receipt fails it (``sent -> failed``, undelivered), or the provider refuses it for good
  (opted out), replaying the old dead letter would send it again. A dead letter is the
  message's current failure when the message's reason is ``dead_letter`` and the dead
  letter's generation is the message's current one (:func:`current_generation`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus


class CancelKind(StrEnum):
    """What a cancel request comes to."""

    CANCEL = "cancel"  # queued: move it to canceled
    ALREADY = "already"  # canceled before: answer as the first cancel did
    REFUSE = "refuse"  # sending or past it: too late


def decide_cancel(status: MessageStatus) -> CancelKind:
    """Whether a message in ``status`` can be canceled (module docstring, DESIGN section 4).

    ``accepted`` is never stored (the sender records a message as ``queued``), so it is
    refused like any status the table does not allow to move to ``canceled`` from a client.
    """
    if status is MessageStatus.QUEUED:
        return CancelKind.CANCEL
    if status is MessageStatus.CANCELED:
        return CancelKind.ALREADY
    return CancelKind.REFUSE


class ReplaySkip(StrEnum):
    """Why a selected dead letter was not replayed."""

    NOT_FAILED = "not_failed"  # the message moved on (sent, delivered, canceled, queued)
    # failed, but not by this dead letter (a receipt, a permanent provider error, another
    # generation): the dead letter was recorded while a live sender held the message
    FAILED_OTHERWISE = "failed_otherwise"
    TAKEN = "taken"  # another replay marked this dead letter first
    NO_MESSAGE = "no_message"  # the message row is gone
    REDACTED = "redacted"  # retention blanked its body and number: nothing left to send


def can_replay(status: MessageStatus) -> bool:
    """Only a ``failed`` message is replayed (``failed -> queued``, the operator's transition)."""
    return status is MessageStatus.FAILED


def current_generation(replayed_generations: Iterable[int]) -> int:
    """A message's current replay generation, from the generations of its dead letters that
    were replayed (``replayed_at`` set): each replay of generation ``n`` starts ``n + 1``; a
    message never replayed is on generation 0."""
    return max((g + 1 for g in replayed_generations), default=0)


def replay_skip(
    status: MessageStatus, reason_code: str | None, letter_generation: int, generation: int
) -> ReplaySkip | None:
    """Why a dead letter of ``letter_generation`` is not replayed for a message in ``status``
    with ``reason_code`` on ``generation`` (its :func:`current_generation`), or None to
    replay it: the message must be ``failed`` (else :attr:`ReplaySkip.NOT_FAILED`) and that
    failure must be this dead letter, reason ``dead_letter`` on the same generation (else
    :attr:`ReplaySkip.FAILED_OTHERWISE`); module docstring."""
    if not can_replay(status):
        return ReplaySkip.NOT_FAILED
    if reason_code != ReasonCode.DEAD_LETTER.value or letter_generation != generation:
        return ReplaySkip.FAILED_OTHERWISE
    return None


def replay_max_attempts(attempts: int, budget: int) -> int:
    """The ``max_attempts`` of a replayed message: the ``attempts`` it already spent (they
    keep their numbers in ``message_attempts``) plus ``budget`` new ones.

    Each attempt of a generation spends one receive of its SQS record, so ``budget`` is at
    most the SendQueue's maxReceiveCount (checked by the caller, which knows it).

    Raises:
        ValueError: ``budget`` < 1 or ``attempts`` < 0.
    """
    if budget < 1 or attempts < 0:
        raise ValueError("budget must be >= 1 and attempts >= 0")
    return attempts + budget


@dataclass(frozen=True, slots=True)
class ReplaySelection:
    """Which dead letters to replay: every given criterion must hold (AND).

    ``message_id``, ``tenant_id``, ``reason`` (a reason code, e.g. ``dead_letter``), and the
    dead letter's ``created_at`` in ``[since, until)`` (aware UTC). ``limit``: at most this many
    dead letters per call, oldest first (the call is repeated for more).

    Raises:
        ValueError: no criterion at all (replaying every dead letter must be asked for by a
        time range, not by forgetting a flag), ``limit`` < 1, or ``since >= until``.
    """

    message_id: str | None = None
    tenant_id: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if not any((self.message_id, self.tenant_id, self.reason, self.since, self.until)):
            raise ValueError("give at least one of message id, tenant, reason, since, until")
        if self.limit < 1:
            raise ValueError("limit must be >= 1")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``"15m"``, ``"90s"``, ``"2h"``, ``"1d"``, ``"1h30m"`` -> seconds (> 0).

    Raises:
        ValueError: anything else (an empty or zero duration included).
    """
    cleaned = text.strip().lower()
    pos = 0
    total = 0
    for match in _DURATION.finditer(cleaned):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(cleaned) or total <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 15m, 2h, 1d, 1h30m)")
    return total
