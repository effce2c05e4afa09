"""Route policy lookup through an in-memory TTL cache (DESIGN section 8).

The cache lives as long as the Lambda container (warm invocations reuse it), is bounded in
size, and keeps a last-known-good copy of each policy: when the store fails, an expired entry
still serves, so a database blip does not stop sending for tenants already seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from cachetools import LRUCache, TTLCache

from sms_gateway.domain.routing import RoutePolicy, Strategy


class PolicyReader(Protocol):
    """Where policies are read from (the read half of
    :class:`~sms_gateway.services.ports.PolicyStore`)."""

    def get(self, tenant_id: str) -> RoutePolicy | None:
        """The tenant's policy or None. May raise on storage failure."""
        ...


PolicyStore = PolicyReader


class NoRoutePolicy(LookupError):
    """The tenant has no route policy and no default provider is configured."""


class CachedPolicyResolver:
    """Tenant -> :class:`RoutePolicy`, cached for ``ttl_seconds`` (at most ``max_size`` tenants).

    ``default_provider``: used (as a ``direct`` policy) for tenants without a policy, when set.
    ``timer``: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        store: PolicyReader,
        *,
        ttl_seconds: float,
        max_size: int,
        default_provider: str = "",
        timer: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self._fresh: TTLCache[str, RoutePolicy | None] = (
            TTLCache(maxsize=max_size, ttl=ttl_seconds, timer=timer)
            if timer
            else TTLCache(maxsize=max_size, ttl=ttl_seconds)
        )
        self._last_good: LRUCache[str, RoutePolicy | None] = LRUCache(maxsize=max_size)
        self._default_provider = default_provider
        self._lock = threading.Lock()

    def resolve(self, tenant_id: str) -> RoutePolicy:
        """The tenant's policy.

        Raises:
            NoRoutePolicy: no policy and no default provider.
            Exception: the store's own error, when it fails and nothing was ever cached.
        """
        with self._lock:
            if tenant_id in self._fresh:
                policy = self._fresh[tenant_id]
            else:
                try:
                    policy = self._store.get(tenant_id)
                except Exception:
                    if tenant_id not in self._last_good:
                        raise
                    policy = self._last_good[tenant_id]
                else:
                    self._fresh[tenant_id] = policy
                    self._last_good[tenant_id] = policy
        if policy is not None:
            return policy
        if self._default_provider:
            return RoutePolicy(tenant_id, Strategy.DIRECT, (self._default_provider,))
        raise NoRoutePolicy(f"tenant {tenant_id!r} has no route policy")

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget one tenant's cached policy (or all)."""
        with self._lock:
            if tenant_id is None:
                self._fresh.clear()
            else:
                self._fresh.pop(tenant_id, None)
