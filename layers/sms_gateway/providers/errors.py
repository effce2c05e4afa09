"""Error tables: a provider's own error codes and HTTP statuses -> our reason codes (issue 7).

Each real provider module holds one table, :class:`ErrorTable`, as data: rows of
:class:`ErrorRule` (the provider's code, our reason, whether a retry may help, and the source
of the mapping: the provider's documentation page). Nothing is guessed from an error message.

Rules shared by every table (DESIGN section 8): throttling and 5xx are transient; invalid or
unreachable numbers, opted-out destinations, blocked content and unsupported countries are
permanent, with ``invalid_number`` and ``opted_out`` as reasons of their own. A code the table
does not know falls back on its HTTP status (429 and 5xx transient, other 4xx permanent).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.providers.base import ProviderError


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row: provider ``code`` -> ``reason`` (``retryable``), with ``source`` (a URL)."""

    code: str
    reason: ReasonCode
    retryable: bool
    source: str


class ErrorTable:
    """A provider's rows by code, with the HTTP-status fallback.

    ``provider_type``: ``end_user_messaging`` | ``sns`` | ``twilio`` | ``http``.
    """

    def __init__(self, provider_type: str, rules: Iterable[ErrorRule]) -> None:
        self.provider_type = provider_type
        self._rules: dict[str, ErrorRule] = {}
        for rule in rules:
            if rule.code in self._rules:
                raise ValueError(f"{provider_type}: duplicate error code {rule.code!r}")
            self._rules[rule.code] = rule

    def __iter__(self) -> Iterator[ErrorRule]:
        return iter(self._rules.values())

    def __len__(self) -> int:
        return len(self._rules)

    def rule(self, code: str | None) -> ErrorRule | None:
        """The row for ``code`` (None: not in the table)."""
        return self._rules.get(code) if code is not None else None

    def error(self, name: str, code: str | None, status: int | None, detail: str) -> ProviderError:
        """The :class:`ProviderError` for a refusal with provider ``code`` and HTTP ``status``.

        A known code wins; else 429 -> ``rate_limited``, 5xx -> ``provider_transient``, 401/403
        -> ``auth_failed`` (permanent: a resend cannot fix a credential), anything else
        ``provider_permanent``.
        """
        rule = self.rule(code)
        text = f"{name}: {detail}"
        if rule is not None:
            return ProviderError(rule.reason, text, error_code=code, retryable=rule.retryable)
        if status == 429:
            return ProviderError(ReasonCode.RATE_LIMITED, text, error_code=code, retryable=True)
        if status is not None and status >= 500:
            return ProviderError(
                ReasonCode.PROVIDER_TRANSIENT, text, error_code=code, retryable=True
            )
        if status in (401, 403):
            return ProviderError(ReasonCode.AUTH_FAILED, text, error_code=code, retryable=False)
        return ProviderError(ReasonCode.PROVIDER_PERMANENT, text, error_code=code, retryable=False)


def outcome_unknown(name: str, detail: str) -> ProviderError:
    """The request left us and no answer came back (read timeout, reset after sending): the
    provider may have accepted it. None of the four APIs takes an idempotency key, so whether
    to send again is the tenant's delivery guarantee, not ours."""
    return ProviderError(
        ReasonCode.OUTCOME_UNKNOWN, f"{name}: {detail}", error_code="OUTCOME_UNKNOWN"
    )


def not_sent(name: str, detail: str, *, timeout: bool = False) -> ProviderError:
    """The request never reached the provider (connection refused, connect timeout, DNS):
    safe to retry."""
    reason = ReasonCode.TIMEOUT if timeout else ReasonCode.NETWORK_ERROR
    return ProviderError(reason, f"{name}: {detail}", error_code="NOT_SENT", retryable=True)
