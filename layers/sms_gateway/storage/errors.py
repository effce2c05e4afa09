"""Storage errors, translated from driver errors so that callers never see a driver type."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sms_gateway.storage.outages import OutageClass


class StorageUnavailable(RuntimeError):
    """The database could not be reached or refused the unit for an operational reason
    (connection refused or lost, credentials refused, too many connections, shutting down or
    starting up, failover). Retrying later may succeed.

    ``outage``: the SQLSTATE class that says why (:class:`~sms_gateway.storage.outages.
    OutageClass`), or None when the reason is not the server's (the credentials' secret could
    not be fetched, a simulated outage).
    """

    def __init__(self, message: str, *, outage: OutageClass | None = None) -> None:
        super().__init__(message)
        self.outage = outage
