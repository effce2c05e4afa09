"""Storage errors, translated from driver errors so that callers never see a driver type."""

from __future__ import annotations


class StorageUnavailable(RuntimeError):
    """The database could not be reached or refused the statement for an operational reason
    (connection refused, failover, timeout). Retrying later may succeed."""
