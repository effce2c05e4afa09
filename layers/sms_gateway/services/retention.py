"""The RetentionFunction's use case (issue 11, item 5): on a schedule, redact bodies and
numbers of messages older than ``redact_after_days`` and delete messages older than
``delete_after_days`` (both counted from the message's creation), in bounded batches; then
delete the audit trail of deleted messages older than ``audit_after_days`` (counted from each
event).

A tenant whose route policy has a ``retention`` block
(:class:`~sms_gateway.domain.routing.TenantRetention`) gets its own two periods instead of
the stack's; the audit period is the stack's for everyone.

A run does at most ``max_batches`` batches of each kind, of at most ``batch_size`` messages
(or events) each, and says whether work is left (the next scheduled run continues). Deleting
first means a row past both periods is not redacted just to be deleted. Rules of what is
kept: :mod:`sms_gateway.storage.retention`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sms_gateway.observability import logger
from sms_gateway.services.ports import Clock, MetricsSink
from sms_gateway.storage.retention import BatchResult, Cutoffs

if TYPE_CHECKING:
    from sms_gateway.domain.routing import TenantRetention
    from sms_gateway.storage.retention import SqlRetentionStore

# The audit trail's default lifetime in days (3 years), counted from each event.
DEFAULT_AUDIT_AFTER_DAYS = 1095


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The stack's periods in days (``redact_after_days`` <= ``delete_after_days`` <=
    ``audit_after_days``) and the batch bounds.

    Raises:
        ValueError: a period or a bound below 1, deletion before redaction, or an audit trail
            deleted before its messages.
    """

    redact_after_days: int
    delete_after_days: int
    batch_size: int = 500
    max_batches: int = 20
    audit_after_days: int = DEFAULT_AUDIT_AFTER_DAYS

    def __post_init__(self) -> None:
        if min(self.redact_after_days, self.batch_size, self.max_batches) < 1:
            raise ValueError("retention periods and batch bounds must be >= 1")
        if self.delete_after_days < self.redact_after_days:
            raise ValueError("delete_after_days must be >= redact_after_days")
        if self.audit_after_days < self.delete_after_days:
            raise ValueError("audit_after_days must be >= delete_after_days")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a run did: messages ``deleted`` and ``redacted``, ``other_rows`` (receipts and dead
    letters without a message), ``audit_deleted`` (audit events of deleted messages past the
    audit period), and whether a kind stopped at ``max_batches`` (``more``)."""

    deleted: int
    redacted: int
    other_rows: int
    more: bool
    audit_deleted: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (the function's answer)."""
        return {
            "deleted": self.deleted,
            "redacted": self.redacted,
            "other_rows": self.other_rows,
            "audit_deleted": self.audit_deleted,
            "more": self.more,
        }


class RetentionService:
    """Runs the retention policy; see the module docstring.

    ``tenant_periods`` returns the tenants with their own periods (read once per run; the
    route policies' ``retention`` blocks: :meth:`SqlPolicyStore.retention_periods
    <sms_gateway.storage.policies.SqlPolicyStore.retention_periods>`).
    """

    def __init__(
        self,
        store: SqlRetentionStore,
        policy: RetentionPolicy,
        metrics: MetricsSink,
        clock: Clock,
        tenant_periods: Callable[[], Mapping[str, TenantRetention]] = dict,
    ) -> None:
        self._store = store
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self._tenant_periods = tenant_periods

    def cutoffs(self, now: datetime) -> tuple[Cutoffs, Cutoffs]:
        """The (redact, delete) cutoffs at ``now``: the stack's periods, and each tenant's own.

        Raises:
            StorageUnavailable: the tenants' periods cannot be read.
        """
        policy, periods = self._policy, self._tenant_periods()
        redact = Cutoffs(
            now - timedelta(days=policy.redact_after_days),
            {t: now - timedelta(days=p.redact_after_days) for t, p in periods.items()},
        )
        delete = Cutoffs(
            now - timedelta(days=policy.delete_after_days),
            {t: now - timedelta(days=p.delete_after_days) for t, p in periods.items()},
        )
        return redact, delete

    def run(self) -> RetentionReport:
        """One scheduled run.

        Raises:
            StorageUnavailable: the database cannot be reached (finished batches stay done).
        """
        now = self._clock()
        policy = self._policy
        redact_at, delete_at = self.cutoffs(now)
        deleted, other_d, more_d = self._loop(
            lambda: self._store.delete_batch(delete_at, policy.batch_size)
        )
        redacted, other_r, more_r = self._loop(
            lambda: self._store.redact_batch(redact_at, policy.batch_size)
        )
        audit_at = now - timedelta(days=policy.audit_after_days)
        audit, _, more_a = self._loop(
            lambda: BatchResult(self._store.expire_audit_batch(audit_at, policy.batch_size), 0)
        )
        report = RetentionReport(
            deleted, redacted, other_d + other_r, more_d or more_r or more_a, audit
        )
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
