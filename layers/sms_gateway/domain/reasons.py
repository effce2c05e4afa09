"""Normalized failure reasons (DESIGN section 4), each with whether a retry can help."""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Why a message (or an attempt) failed, whatever the provider called it."""

    VALIDATION_ERROR = "validation_error"
    AUTH_FAILED = "auth_failed"
    QUOTA_EXCEEDED = "quota_exceeded"
    RATE_LIMITED = "rate_limited"
    TEMPLATE_INVALID = "template_invalid"
    SIGNATURE_INVALID = "signature_invalid"
    RECIPIENT_BLACKLISTED = "recipient_blacklisted"
    PROVIDER_TRANSIENT = "provider_transient"
    PROVIDER_PERMANENT = "provider_permanent"
    INVALID_NUMBER = "invalid_number"  # the provider says the number is invalid or unreachable
    OPTED_OUT = "opted_out"  # the recipient opted out (STOP) of this sender or account
    OUTCOME_UNKNOWN = "outcome_unknown"  # the request was sent; whether it was taken is unknown
    # the message's ``from`` is not one of its tenant's sender IDs (route policy ``sender_ids``):
    # refused by the sender before any provider call
    SENDER_ID_NOT_ALLOWED = "sender_id_not_allowed"
    DEAD_LETTER = "dead_letter"
    NETWORK_ERROR = "network_error"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"

    @property
    def retryable(self) -> bool:
        """Whether a later attempt of the same message may succeed (throttling, 5xx, timeouts,
        network trouble). Unknown errors are retried: a lost message is worse than a retry.
        ``outcome_unknown`` is retryable too; whether it *is* retried is the tenant's delivery
        guarantee (:func:`sms_gateway.domain.decisions.decide_after_attempt`)."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        ReasonCode.QUOTA_EXCEEDED,
        ReasonCode.RATE_LIMITED,
        ReasonCode.PROVIDER_TRANSIENT,
        ReasonCode.NETWORK_ERROR,
        ReasonCode.TIMEOUT,
        ReasonCode.UNKNOWN,
        ReasonCode.OUTCOME_UNKNOWN,
    }
)
