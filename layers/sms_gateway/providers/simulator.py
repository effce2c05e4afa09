"""The simulator provider: named, deterministic behaviours for the local stack and the tests.

Behaviours depend only on the request (message id and attempt number), never on process
state, so they hold across Lambda containers and SQS redeliveries:

- ``always_succeed``;
- ``fail_first(n)``: attempts 1..n fail transiently, later ones succeed;
- ``always_transient``: every attempt fails with ``provider_transient``;
- ``permanent``: every attempt fails with ``provider_permanent`` (as an invalid number would);
- ``delay_seconds``: sleep before answering (a slow provider, for in-flight receipts).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.providers.base import ProviderError, SendRequest, SendResult

if TYPE_CHECKING:
    from sms_gateway.providers.config import SimulatorConfig

_ID_NAMESPACE = uuid.UUID("0b5e4c55-0f5f-4f5e-8d7b-3d4b8f1f2a6c")


@dataclass(frozen=True, slots=True)
class SimulatorProvider:
    """A fake provider. ``fail_first``: attempts that fail transiently before success;
    ``fail_always``: None, ``"transient"`` or ``"permanent"``; ``delay_seconds``: latency."""

    name: str
    fail_first: int = 0
    fail_always: str | None = None
    delay_seconds: float = 0.0

    def send(self, request: SendRequest) -> SendResult:
        """Answer as the behaviour says (see the module docstring).

        Raises:
            ProviderError: ``provider_transient`` or ``provider_permanent``.
        """
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if self.fail_always == "permanent":
            raise ProviderError(
                ReasonCode.PROVIDER_PERMANENT,
                f"{self.name}: simulated permanent failure (invalid or opted-out number)",
                error_code="SIM_INVALID_NUMBER",
            )
        if self.fail_always == "transient" or request.attempt <= self.fail_first:
            raise ProviderError(
                ReasonCode.PROVIDER_TRANSIENT,
                f"{self.name}: simulated transient failure (attempt {request.attempt})",
                error_code="SIM_UNAVAILABLE",
            )
        pid = uuid.uuid5(_ID_NAMESPACE, f"{self.name}/{request.message_id}/{request.attempt}")
        return SendResult(provider_message_id=f"{self.name}-{pid}")


def from_config(name: str, config: SimulatorConfig) -> SimulatorProvider:
    """A simulator a configuration declares (``{"type": "simulator", ...}``)."""
    return SimulatorProvider(
        name,
        fail_first=config.fail_first,
        fail_always=config.fail_always,
        delay_seconds=config.delay_seconds,
    )


def demo_providers() -> list[SimulatorProvider]:
    """The seed's demo providers plus the permanent and slow ones.

    ``provider-a`` fails each message's first attempt then succeeds; ``provider-b`` always
    succeeds; ``provider-fail`` always fails transiently; ``provider-permanent`` always fails
    permanently; ``provider-slow`` succeeds after 2 seconds.
    """
    return [
        SimulatorProvider("provider-a", fail_first=1),
        SimulatorProvider("provider-b"),
        SimulatorProvider("provider-fail", fail_always="transient"),
        SimulatorProvider("provider-permanent", fail_always="permanent"),
        SimulatorProvider("provider-slow", delay_seconds=2.0),
    ]
