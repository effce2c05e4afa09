"""The provider interface: send one SMS, return the provider's message id, or raise a
:class:`ProviderError` carrying a normalized reason code and whether a retry may help."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from sms_gateway.domain.reasons import ReasonCode


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One MT SMS for a provider. ``to`` is E.164; ``attempt`` is 1-based; ``message_id`` is ours
    (providers that support it get it as their client reference, so receipts can be matched);
    ``tenant_id``: whose message it is; ``ttl_seconds``: what is left of its validity period
    (None: no validity period)."""

    message_id: str
    attempt: int
    to: str
    sender_id: str | None
    body: str
    encoding: str
    segments: int
    tenant_id: str = ""
    ttl_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider's acceptance: its own id for the message (receipts refer to it), or None
    when it accepted the message (a 2xx) without giving one: the message is sent all the same
    (calling that outcome unknown would resend, or fail, a message the provider has)."""

    provider_message_id: str | None


class ProviderError(Exception):
    """A provider call that did not succeed.

    ``reason``: normalized reason; ``retryable``: defaults to ``reason.retryable``;
    ``error_code``: the provider's own code, kept verbatim; ``detail``: free text for operators.
    """

    def __init__(
        self,
        reason: ReasonCode,
        detail: str,
        *,
        error_code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.error_code = error_code
        self.retryable = reason.retryable if retryable is None else retryable


class Provider(Protocol):
    """What the sender needs of a provider adapter."""

    @property
    def name(self) -> str:
        """The provider's name as route policies refer to it."""
        ...

    def send(self, request: SendRequest) -> SendResult:
        """Send one SMS.

        Raises:
            ProviderError: the provider refused or failed; see its ``reason`` / ``retryable``.
        """
        ...


@runtime_checkable
class SettlesUnknown(Protocol):
    """What a provider adapter may add to :class:`Provider` (optional; only Twilio has it):
    a lookup that settles an attempt whose outcome is unknown before the sender decides."""

    def lookup(self, request: SendRequest, started_at: datetime) -> str | None:
        """The provider message id of ``request`` if the provider has it, created at or after
        ``started_at`` (aware UTC, when the attempt began); None when it is not found or the
        match is ambiguous.

        Raises:
            ProviderError: the lookup itself failed (the outcome stays unknown).
        """
        ...


class UnknownProvider(LookupError):
    """A route policy names a provider that is not configured."""


class ProviderRegistry:
    """Providers by name."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers = {p.name: p for p in providers}

    def get(self, name: str) -> Provider:
        """The provider called ``name``.

        Raises:
            UnknownProvider: no provider of that name is configured.
        """
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProvider(f"provider {name!r} is not configured") from None

    def names(self) -> list[str]:
        """Configured provider names, sorted."""
        return sorted(self._providers)
