"""docs/openapi.json is the document the code generates (the CI drift check), every problem
type the error map answers has its section in docs/problems.md, and problem ``type`` URIs use
the deployment's base."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from sms_gateway.api.errors import KINDS
from sms_gateway.api.rest import make_resolver

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_script", ROOT / "scripts" / "openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_document_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == _script().generated(), "docs/openapi.json is stale: run make openapi"


def test_document_covers_every_route_status_header_and_problem_type() -> None:
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert set(ops) == {
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/batch"),
        ("GET", "/v1/messages/{message_id}"),
        ("POST", "/v1/messages/{message_id}/cancel"),
        ("POST", "/v1/receipts"),
        ("POST", "/v1/receipts/twilio/{provider}"),
    }
    send = ops["POST", "/v1/messages"]
    # 403: a key that maps to no tenant (revoked, or never registered)
    assert set(send["responses"]) == {"202", "400", "401", "403", "409", "422", "500", "503"}
    assert "api-key-not-active" in send["responses"]["403"]["description"]
    for tenant_route in (("GET", "/v1/messages/{message_id}"), ("POST", "/v1/messages/batch")):
        assert "403" in ops[tenant_route]["responses"]
    assert set(send["responses"]["202"]["headers"]) == {"Location", "Idempotent-Replayed"}
    assert set(send["responses"]["409"]["headers"]) == {"Retry-After"}
    assert set(send["responses"]["503"]["headers"]) == {"Retry-After"}
    assert {p["name"] for p in send["parameters"]} == {"Idempotency-Key"}
    assert send["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendMessageBody"
    }
    receipt = ops["POST", "/v1/receipts"]
    assert {p["name"] for p in receipt["parameters"]} == {
        "X-Provider",
        "X-Timestamp",
        "X-Signature",
    }
    assert set(receipt["responses"]) == {
        "200",
        "202",
        "400",
        "401",
        "404",
        "409",
        "422",
        "500",
        "503",
    }
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": schemes["ApiKey"]["description"],
    }
    # every problem type of the error map is documented, and named by a route's answers
    assert set(doc["components"]["x-problem-types"]) == set(KINDS)
    described = " ".join(
        answer["description"] for op in ops.values() for answer in op["responses"].values()
    )
    assert {slug for slug in KINDS if slug != "not-found"} <= set(re.findall(r"[a-z-]+", described))


def test_every_problem_type_has_its_section_in_problems_md() -> None:
    headings = set(
        re.findall(r"^## ([a-z-]+)$", (ROOT / "docs" / "problems.md").read_text(), re.MULTILINE)
    )
    assert set(KINDS) <= headings, set(KINDS) - headings


def test_problem_type_uses_the_deployment_base() -> None:
    app = make_resolver([], "https://docs.acme.test/sms/problems.md#")
    event = json.loads((ROOT / "events" / "status-get-message.json").read_text())
    event.update(path="/v1/nothing-here", httpMethod="GET")
    answer = app.resolve(event, None)  # type: ignore[arg-type]
    assert answer["statusCode"] == 404
    body = json.loads(answer["body"])
    assert body["type"] == "https://docs.acme.test/sms/problems.md#not-found"


def test_an_answer_that_breaks_its_model_is_a_500_not_a_422() -> None:
    from aws_lambda_powertools.event_handler import Response

    from sms_gateway.api.models import ReceiptAnswer
    from sms_gateway.api.rest import RouteDoc, json_response

    def broken() -> Response[ReceiptAnswer]:
        return json_response(200, {"message_id": "m", "outcome": "lost"})  # type: ignore[arg-type]

    app = make_resolver([("GET", "/v1/nothing-here", broken, RouteDoc("broken"))])
    event = json.loads((ROOT / "events" / "status-get-message.json").read_text())
    event.update(path="/v1/nothing-here", httpMethod="GET", resource="/v1/nothing-here")
    answer = app.resolve(event, None)  # type: ignore[arg-type]
    assert answer["statusCode"] == 500, answer["body"]
    body = json.loads(answer["body"])
    assert body["type"].endswith("#internal-error")
    assert body["detail"] == "an unexpected error occurred"
