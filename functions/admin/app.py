"""AdminFunction: operator commands inside the VPC, run with ``sam remote invoke``.

The event is one command object of :mod:`sms_gateway.services.admin` (the same code
``sms-gateway admin ...`` runs from a machine that reaches the database), for example::

    sam remote invoke AdminFunction --stack-name sms-gateway \\
        --event '{"command": "replay", "tenant_id": "...", "since": "2026-11-30T00:00:00Z"}'
    sam remote invoke AdminFunction --stack-name sms-gateway \\
        --event '{"command": "stuck", "state": "queued", "older_than": "15m"}'
    sam remote invoke AdminFunction --stack-name sms-gateway \\
        --event '{"command": "tenant_create", "name": "Acme", "daily_quota": 5000}'

Answers the command's JSON, or ``{"error": "..."}`` for a command that cannot run as given
(nothing was done). Replays are counted in the ``DeadLetterReplays`` metric.

It also serves the CloudFormation custom resource ``SharedPlanKeysAdoption`` (an event with a
``RequestType`` and a ``ResponseURL``; template.yaml): on Create and Update it adopts every key
of the stack's shared usage plan (property ``UsagePlanId``) that has no tenant record, as
``tenant adopt`` does (:meth:`~sms_gateway.services.tenants.TenantAdmin.adopt_plan_keys`), and
answers ``SUCCESS`` with the counts in ``Data``; a failure answers ``FAILED`` (the deploy rolls
back; the keys adopted before stay adopted, and the next run adopts the rest). Delete does
nothing: the records outlive the resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sms_gateway import wiring
from sms_gateway.adapters.custom_resource import (
    CustomResourceRequest,
    response_body,
    send_response,
)
from sms_gateway.observability import logger, metrics, tracer

ADOPTION_PHYSICAL_ID = "sms-gateway-shared-plan-keys-adoption"
# Time kept to adopt one more key and PUT the answer: without an answer CloudFormation waits
# an hour for this resource (about five calls per key, each under the 3 s read timeout).
ANSWER_MARGIN_MS = 20_000


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A command object in, its answer out; or a custom resource request in, its response
    PUT to its ``ResponseURL`` (:func:`adopt_shared_plan_keys`)."""
    if "RequestType" in event and "ResponseURL" in event:
        return adopt_shared_plan_keys(
            event, lambda: context.get_remaining_time_in_millis() < ANSWER_MARGIN_MS
        )
    from sms_gateway.services.admin import AdminError, run_command

    try:
        return run_command(
            event, wiring.operations(), wiring.utc_now(), tenants=wiring.tenant_admin
        )
    except (AdminError, wiring.SettingsError) as exc:
        logger.warning("admin command refused", extra={"error": str(exc)})
        return {"error": str(exc)}


def adopt_shared_plan_keys(
    event: dict[str, Any], out_of_time: Callable[[], bool] = lambda: False
) -> dict[str, str]:
    """The ``SharedPlanKeysAdoption`` custom resource (module docstring). Returns the
    response's ``Status`` and ``Reason`` (for the log; CloudFormation reads only the PUT).
    ``out_of_time()`` is asked before each key: True stops the run, which answers ``FAILED``
    (the next deploy adopts the rest) instead of letting the function time out unanswered.

    ``Data`` on success: ``Keys`` (the plan's keys), ``Adopted`` (made tenants now),
    ``RecordedBefore`` (had a record, active or revoked: left alone), as strings.

    Raises:
        InvalidRequest: not a custom resource request (nothing is answered).
        urllib.error.URLError: the response could not be PUT (CloudFormation waits for its
            timeout).
    """
    request = CustomResourceRequest.from_event(event)
    physical_id = request.physical_resource_id or ADOPTION_PHYSICAL_ID
    data: dict[str, str] = {}
    plan_id = str(request.properties.get("UsagePlanId") or "")
    if request.request_type == "Delete":
        success, reason = True, "nothing to delete: the tenant records outlive the stack"
    elif not plan_id:
        success, reason = False, "property UsagePlanId is missing"
    else:
        try:
            result = wiring.tenant_admin().adopt_plan_keys(plan_id, out_of_time)
        except Exception as error:
            logger.exception("adopting the shared plan's keys failed", extra={"plan": plan_id})
            success = False
            reason = f"adopting the keys of usage plan {plan_id} failed: {type(error).__name__}: "
            reason += str(error)
        else:
            success = True
            data = {
                "Keys": str(result.keys),
                "Adopted": str(len(result.adopted)),
                "RecordedBefore": str(result.recorded_before),
            }
            reason = (
                f"usage plan {plan_id}: {len(result.adopted)} key(s) adopted, "
                f"{result.recorded_before} recorded already"
            )
            logger.info(reason, extra={"plan": plan_id, "adopted": list(result.adopted)})
    body = response_body(
        request, success=success, reason=reason, physical_resource_id=physical_id, data=data
    )
    status = send_response(request, body)
    logger.info("response sent", extra={"http_status": status, "success": success})
    return {"Status": "SUCCESS" if success else "FAILED", "Reason": reason}
