"""The message lifecycle (DESIGN section 4): states and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    """Where a message stands. ``delivered``, ``expired`` and ``canceled`` are final;
    ``failed`` is final except for an operator's replay (failed -> queued)."""

    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"


S = MessageStatus

ALLOWED_TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    S.ACCEPTED: frozenset({S.QUEUED}),
    S.QUEUED: frozenset({S.SENDING, S.FAILED, S.EXPIRED, S.CANCELED}),
    S.SENDING: frozenset({S.SENT, S.FAILED, S.EXPIRED, S.QUEUED, S.CANCELED}),
    S.SENT: frozenset({S.DELIVERED, S.FAILED, S.EXPIRED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.DELIVERED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELED: frozenset(),
}


class InvalidTransition(ValueError):
    """A transition the lifecycle table does not allow."""

    def __init__(self, current: MessageStatus, target: MessageStatus) -> None:
        super().__init__(f"transition {current} -> {target} is not allowed")
        self.current = current
        self.target = target


def can_transition(current: MessageStatus, target: MessageStatus) -> bool:
    """True when ``current -> target`` is in :data:`ALLOWED_TRANSITIONS`."""
    return target in ALLOWED_TRANSITIONS[current]


def check_transition(current: MessageStatus, target: MessageStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> target`` is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(current, target)
