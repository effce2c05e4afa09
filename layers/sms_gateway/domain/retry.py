"""Retry backoff: how long a message stays invisible in SQS before its next attempt."""

from __future__ import annotations

# SQS caps a message's visibility timeout at 12 hours.
SQS_MAX_VISIBILITY_SECONDS = 43_200


def backoff_seconds(attempt: int, base: int, cap: int) -> int:
    """Delay before attempt ``attempt + 1`` after attempt ``attempt`` (1-based) failed.

    Exponential: ``base * 2**(attempt - 1)``, capped at ``cap`` and at SQS's 12-hour maximum.
    ``backoff_seconds(1, 30, 900) == 30``, ``(2, 30, 900) == 60``, ``(6, 30, 900) == 900``.

    Raises:
        ValueError: ``attempt`` < 1 or a negative ``base`` / ``cap``.
    """
    if attempt < 1 or base < 0 or cap < 0:
        raise ValueError("attempt must be >= 1 and base, cap >= 0")
    exponent = min(attempt - 1, 32)  # 2**32 * base already exceeds any cap
    return int(min(base * 2**exponent, cap, SQS_MAX_VISIBILITY_SECONDS))
