"""The one Logger, Tracer and Metrics of each function (Powertools), and the metrics adapter.

Settings come from ``POWERTOOLS_*`` variables in the template's Globals (service name,
namespace ``SmsGateway``, log level). Nothing here logs a whole phone number or a body.

The Tracer patches nothing when it is made: Powertools' default (``patch_modules=None``)
patches every library aws-xray-sdk supports, and patching a library imports it, so a
function without a database imported SQLAlchemy, pg8000 and PyMySQL at every cold start.
Each container patches what it calls through, when it builds the client or engine
(:func:`trace_libraries`, from :mod:`sms_gateway.wiring`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
tracer = Tracer(auto_patch=False)
metrics = Metrics()


def trace_libraries(*libraries: str) -> None:
    """Let X-Ray trace calls through ``libraries`` (aws-xray-sdk names: ``"botocore"`` for
    every AWS SDK call, ``"sqlalchemy_core"`` for each SQL statement).

    Patching imports the library, so call it where the library is first needed. Patching
    twice is a no-op (aws-xray-sdk remembers); with tracing disabled nothing is imported.
    """
    tracer.patch(list(libraries))


_UNITS = {
    "Count": MetricUnit.Count,
    "Milliseconds": MetricUnit.Milliseconds,
    "Seconds": MetricUnit.Seconds,
}


class PowertoolsMetrics:
    """:class:`~sms_gateway.services.ports.MetricsSink` over Powertools (CloudWatch EMF).

    A metric without dimensions joins the function's ``metrics`` (flushed by
    ``@metrics.log_metrics``); one with dimensions is written at once as its own EMF blob,
    so that dimensions never leak from one metric to another.
    """

    def add(self, name: str, value: float, unit: str, **dimensions: str) -> None:
        """Record one metric value (``unit``: Count, Milliseconds or Seconds)."""
        metric_unit = _UNITS[unit]
        if not dimensions:
            metrics.add_metric(name=name, unit=metric_unit, value=value)
            return
        with single_metric(name=name, unit=metric_unit, value=value) as metric:
            for key, dim in dimensions.items():
                metric.add_dimension(name=key, value=dim)


def log_transition(
    message_id: str,
    tenant_id: str | None,
    from_status: str | None,
    to_status: str,
    *,
    attempt: int | None = None,
    provider: str | None = None,
    reason_code: str | None = None,
    latency_ms: int | None = None,
) -> None:
    """Log one message state transition as ONE INFO line, message ``transition``.

    Called by the services after the conditional update succeeded (never for a transition
    that lost its race). Keys: ``message_id``, ``tenant_id``, ``from_status``, ``to_status``
    and, where known, ``attempt`` (1-based), ``provider``, ``reason_code`` and ``latency_ms``
    (the provider call, milliseconds); unknown ones are left out. No phone number, no body
    (DESIGN section 9). ``sms_gateway.local.logview`` renders these lines for people.
    """
    extra: dict[str, object] = {
        "message_id": message_id,
        "tenant_id": tenant_id,
        "from_status": from_status,
        "to_status": to_status,
        "attempt": attempt,
        "provider": provider,
        "reason_code": reason_code,
        "latency_ms": latency_ms,
    }
    # stacklevel 3: the line shows where the service called this helper, not the helper
    logger.info("transition", extra={k: v for k, v in extra.items() if v is not None}, stacklevel=3)


@contextmanager
def logged_failures(expected: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Log an unexpected exception with its stack (at ERROR) before it propagates.

    Batch record handlers use it: Powertools' BatchProcessor reports a failed record but does
    not log why, and a record failing for an unforeseen reason must be visible.
    ``expected``: exceptions that are part of the flow (a retry), logged by their raiser.
    """
    try:
        yield
    except expected:
        raise
    except Exception:
        logger.exception("record failed unexpectedly")
        raise
