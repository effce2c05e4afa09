"""What the services need from the outside world, as protocols (fakes in unit tests)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


class MessageQueue(Protocol):
    """The SendQueue and its DeadLetterQueue."""

    def send(self, body: str, attributes: Mapping[str, str], delay_seconds: int = 0) -> str:
        """Put one message on the SendQueue (hidden for ``delay_seconds``, 0..900); returns the
        SQS message id."""
        ...

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        """Hide a received SendQueue message for ``seconds`` (0..43200) before redelivery."""
        ...

    def send_to_dead_letter(self, body: str, attributes: Mapping[str, str]) -> str:
        """Put one message on the DeadLetterQueue; returns the SQS message id."""
        ...


class MetricsSink(Protocol):
    """Business metrics (EMF through Powertools in production)."""

    def add(self, name: str, value: float, unit: str, **dimensions: str) -> None:
        """Record ``value`` of metric ``name`` (unit: Count, Milliseconds, Seconds) with
        low-cardinality ``dimensions`` (provider, outcome, status; never a message id)."""
        ...


class NullMetrics:
    """A :class:`MetricsSink` that drops everything."""

    def add(self, name: str, value: float, unit: str, **dimensions: str) -> None:
        """Do nothing."""
