"""Demo tenants and route policies for the local stack (DESIGN section 10) and the tests.

``tenant-1`` -> ``provider-a`` (fails each message's first attempt, then succeeds) and
``tenant-2`` -> ``provider-fail`` (always transient) are the seed's demo flows. ``tenant-3`` ->
``provider-b`` (always succeeds), ``tenant-4`` failover provider-fail -> provider-b,
``tenant-5`` -> ``provider-permanent``, ``tenant-6`` -> ``provider-slow`` (2 s per send),
``tenant-7`` weighted 70/30 over provider-a / provider-b.

Sender IDs: ``tenant-3`` may send ``from`` ``ACME`` or ``+12025550100`` (its ``sender_ids``);
``tenant-1`` sends as ``DEMO1`` by default and may name it. The others list none, so a
message of theirs that names a ``from`` fails with ``sender_id_not_allowed``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository

DEMO_POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "tenant-1": (
        "direct",
        {"default_provider": "provider-a", "sender_ids": ["DEMO1"], "default_sender_id": "DEMO1"},
    ),
    "tenant-2": ("direct", {"default_provider": "provider-fail"}),
    "tenant-3": (
        "direct",
        {"default_provider": "provider-b", "sender_ids": ["ACME", "+12025550100"]},
    ),
    "tenant-4": (
        "failover",
        {"providers": [{"provider": "provider-fail"}, {"provider": "provider-b"}]},
    ),
    "tenant-5": ("direct", {"default_provider": "provider-permanent"}),
    "tenant-6": ("direct", {"default_provider": "provider-slow"}),
    "tenant-7": (
        "weighted",
        {
            "providers": [
                {"provider": "provider-a", "weight": 70},
                {"provider": "provider-b", "weight": 30},
            ]
        },
    ),
}


def seed_demo_policies(dsn: str) -> list[str]:
    """Write each of :data:`DEMO_POLICIES` that the database at ``dsn`` does not have yet.

    A policy already there (seeded earlier, or changed with ``sms-gateway policy``) is kept.
    Returns the tenants seeded now.
    """
    engine = make_engine(dsn)
    seeded = []
    try:
        repo = RoutePolicyRepository(engine)
        now = datetime.now(UTC)
        for tenant_id, (strategy, payload) in DEMO_POLICIES.items():
            if repo.get(tenant_id) is None:
                repo.put(tenant_id, strategy, payload, now)
                seeded.append(tenant_id)
    finally:
        engine.dispose()
    return seeded
