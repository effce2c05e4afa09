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
    DEAD_LETTER = "dead_letter"
    NETWORK_ERROR = "network_error"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"

    @property
    def retryable(self) -> bool:
        """Whether a later attempt of the same message may succeed (throttling, 5xx, timeouts,
        network trouble). Unknown errors are retried: a lost message is worse than a retry."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        ReasonCode.QUOTA_EXCEEDED,
        ReasonCode.RATE_LIMITED,
        ReasonCode.PROVIDER_TRANSIENT,
        ReasonCode.NETWORK_ERROR,
        ReasonCode.TIMEOUT,
        ReasonCode.UNKNOWN,
    }
)
