"""The RetentionFunction's use case (issue 11, item 5): on a schedule, redact bodies and
numbers of messages older than ``redact_after_days`` and delete messages older than
``delete_after_days`` (both counted from the message's creation), in bounded batches.

A run does at most ``max_batches`` batches of each kind, of at most ``batch_size`` messages
each, and says whether work is left (the next scheduled run continues). Deleting first means
a row past both periods is not redacted just to be deleted. Rules of what is kept:
:mod:`sms_gateway.storage.retention`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sms_gateway.observability import logger
from sms_gateway.services.ports import Clock, MetricsSink

if TYPE_CHECKING:
    from sms_gateway.storage.retention import BatchResult, SqlRetentionStore


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Periods in days (``redact_after_days`` <= ``delete_after_days``) and the batch bounds.

    Raises:
        ValueError: a period or a bound below 1, or deletion before redaction.
    """

    redact_after_days: int
    delete_after_days: int
    batch_size: int = 500
    max_batches: int = 20

    def __post_init__(self) -> None:
        if min(self.redact_after_days, self.batch_size, self.max_batches) < 1:
            raise ValueError("retention periods and batch bounds must be >= 1")
        if self.delete_after_days < self.redact_after_days:
            raise ValueError("delete_after_days must be >= redact_after_days")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a run did: messages ``deleted`` and ``redacted``, ``other_rows`` (receipts and dead
    letters without a message), and whether a kind stopped at ``max_batches`` (``more``)."""

    deleted: int
    redacted: int
    other_rows: int
    more: bool

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (the function's answer)."""
        return {
            "deleted": self.deleted,
            "redacted": self.redacted,
            "other_rows": self.other_rows,
            "more": self.more,
        }


class RetentionService:
    """Runs the retention policy; see the module docstring."""

    def __init__(
        self,
        store: SqlRetentionStore,
        policy: RetentionPolicy,
        metrics: MetricsSink,
        clock: Clock,
    ) -> None:
        self._store = store
        self._policy = policy
        self._metrics = metrics
        self._clock = clock

    def run(self) -> RetentionReport:
        """One scheduled run.

        Raises:
            StorageUnavailable: the database cannot be reached (finished batches stay done).
        """
        now = self._clock()
        policy = self._policy
        deleted, other_d, more_d = self._loop(
            lambda: self._store.delete_batch(
                now - timedelta(days=policy.delete_after_days), policy.batch_size
            )
        )
        redacted, other_r, more_r = self._loop(
            lambda: self._store.redact_batch(
                now - timedelta(days=policy.redact_after_days), policy.batch_size
            )
        )
        report = RetentionReport(deleted, redacted, other_d + other_r, more_d or more_r)
        self._metrics.add("RetentionDeleted", deleted, "Count")
        self._metrics.add("RetentionRedacted", redacted, "Count")
        logger.info("retention run", extra=report.as_dict())
        return report

    def _loop(self, batch: Callable[[], BatchResult]) -> tuple[int, int, bool]:
        messages = others = 0
        for _ in range(self._policy.max_batches):
            done = batch()
            messages += done.messages
            others += done.others
            if done.messages < self._policy.batch_size and done.others < self._policy.batch_size:
                return messages, others, False
        return messages, others, True
