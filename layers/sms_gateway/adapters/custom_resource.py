"""The CloudFormation custom resource protocol, as the MigrateFunction speaks it.

CloudFormation invokes the function with a request ("Custom resources", "Custom resource
request objects" in the CloudFormation User Guide)::

    {"RequestType": "Create" | "Update" | "Delete", "ResponseURL": "<pre-signed S3 URL>",
     "StackId": "arn:...", "RequestId": "<uuid>", "ResourceType": "Custom::...",
     "LogicalResourceId": "...", "PhysicalResourceId": "..." (Update, Delete),
     "ResourceProperties": {...}, "OldResourceProperties": {...} (Update)}

and waits (up to an hour) for one HTTP ``PUT`` of a JSON response to ``ResponseURL``
("Custom resource response objects")::

    {"Status": "SUCCESS" | "FAILED", "Reason": "...", "PhysicalResourceId": "...",
     "StackId": ..., "RequestId": ..., "LogicalResourceId": ..., "NoEcho": false,
     "Data": {...}}

with an empty ``Content-Type`` (the URL is signed without one) and at most 4096 bytes. A
``FAILED`` answer fails the resource and rolls the stack back.

Own code rather than a library: the protocol is one PUT, and neither Powertools nor the
maintained AWS libraries ship it (crhelper, the AWS Labs helper, adds a timer thread and a
polling mode this function does not need).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final, Literal

RESPONSE_LIMIT_BYTES: Final = 4096
RESPONSE_TIMEOUT_SECONDS: Final = 10


class InvalidRequest(ValueError):
    """The event is not a CloudFormation custom resource request (names the missing key)."""


@dataclass(frozen=True)
class CustomResourceRequest:
    """A custom resource request's fields (names as CloudFormation sends them)."""

    request_type: Literal["Create", "Update", "Delete"]
    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    physical_resource_id: str | None
    properties: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> CustomResourceRequest:
        """Raises:
        InvalidRequest: a required key is missing or RequestType is unknown."""
        required = ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId")
        missing = [key for key in required if not event.get(key)]
        if missing:
            raise InvalidRequest(f"not a custom resource request: no {', '.join(missing)}")
        kind = event["RequestType"]
        if kind not in ("Create", "Update", "Delete"):
            raise InvalidRequest(f"unknown RequestType {kind!r}")
        return cls(
            request_type=kind,
            response_url=str(event["ResponseURL"]),
            stack_id=str(event["StackId"]),
            request_id=str(event["RequestId"]),
            logical_resource_id=str(event["LogicalResourceId"]),
            physical_resource_id=event.get("PhysicalResourceId"),
            properties=dict(event.get("ResourceProperties") or {}),
        )


def response_body(
    request: CustomResourceRequest,
    *,
    success: bool,
    reason: str,
    physical_resource_id: str,
    data: dict[str, str] | None = None,
) -> bytes:
    """The response document, UTF-8 JSON of at most :data:`RESPONSE_LIMIT_BYTES` (the reason
    is shortened to fit; CloudFormation shows it in the stack's events)."""
    document: dict[str, Any] = {
        "Status": "SUCCESS" if success else "FAILED",
        "Reason": reason,
        "PhysicalResourceId": physical_resource_id,
        "StackId": request.stack_id,
        "RequestId": request.request_id,
        "LogicalResourceId": request.logical_resource_id,
        "NoEcho": False,
        "Data": data or {},
    }
    body = json.dumps(document).encode()
    while len(body) > RESPONSE_LIMIT_BYTES and document["Reason"]:
        excess = len(body) - RESPONSE_LIMIT_BYTES
        document["Reason"] = document["Reason"][: max(0, len(document["Reason"]) - excess - 3)]
        document["Reason"] += "..."
        body = json.dumps(document).encode()
    return body


def send_response(request: CustomResourceRequest, body: bytes) -> int:
    """PUT ``body`` to the request's pre-signed ``ResponseURL``; returns the HTTP status.

    Raises:
        urllib.error.URLError: the URL could not be reached (CloudFormation then waits for
            its timeout, an hour: the caller logs it).
        ValueError: the URL is not https (or http on loopback, for the tests).
    """
    url = request.response_url
    if not (url.startswith("https://") or url.startswith("http://127.0.0.1:")):
        raise ValueError("ResponseURL must be an https URL")
    put = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(put, timeout=RESPONSE_TIMEOUT_SECONDS) as answer:  # noqa: S310
        return int(answer.status)
