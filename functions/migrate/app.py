"""MigrateFunction: the CloudFormation custom resource ``SchemaMigrations`` that runs the
Alembic history inside the VPC on every deploy that changes the code (docs/migrations.md).

Create and Update upgrade the database to this release's newest revision, before the SQL
functions are updated (they ``DependsOn`` the resource); a failure answers ``FAILED``, which
fails the deploy and rolls the stack back. Delete does nothing: the data outlives the stack.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sms_gateway import wiring
from sms_gateway.adapters.custom_resource import (
    CustomResourceRequest,
    response_body,
    send_response,
)
from sms_gateway.observability import logger

PHYSICAL_ID = "sms-gateway-schema"


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    """A custom resource request in; the response PUT to its ``ResponseURL``; returns the
    response's ``Status`` and ``Reason`` (for the log; CloudFormation reads only the PUT)."""
    request = CustomResourceRequest.from_event(event)
    physical_id = request.physical_resource_id or PHYSICAL_ID
    data: dict[str, str] = {}
    if request.request_type == "Delete":
        success, reason = True, "nothing to delete: the database outlives the stack"
    else:
        try:
            result = wiring.migration_result()
        except Exception as error:
            logger.exception("migration failed")
            success, reason = False, f"migration failed: {type(error).__name__}: {error}"
        else:
            success = True
            data = {"Revision": result.after or ""}
            reason = (
                f"database at {result.before}, newer than this release: nothing run"
                if result.ahead
                else f"migrated from {result.before or 'an empty database'} to {result.after}"
            )
            logger.info(reason, extra={"before": result.before, "after": result.after})
    body = response_body(
        request, success=success, reason=reason, physical_resource_id=physical_id, data=data
    )
    status = send_response(request, body)
    logger.info("response sent", extra={"http_status": status, "success": success})
    return {"Status": "SUCCESS" if success else "FAILED", "Reason": reason}
