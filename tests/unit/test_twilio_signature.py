"""X-Twilio-Signature, checked against the vectors of Twilio's own SDK
(twilio-python, tests/unit/test_request_validator.py, which exercise
twilio/request_validator.py): the same token, URL and parameters must give the same
signatures, with the SDK's port rules (accepted with or without the default port)."""

from __future__ import annotations

from sms_gateway.api.twilio_callbacks import (
    compute_signature,
    receipt_payload,
    request_urls,
    signature_valid,
)

TOKEN = "12345"
URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]


def test_compute_signature_matches_the_sdk() -> None:
    assert compute_signature(TOKEN, URI, PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_repeated_names_sorted_values_and_duplicates_dropped_as_the_sdk() -> None:
    params = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert compute_signature(TOKEN, URI, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_valid_over_the_url_as_given() -> None:
    assert signature_valid(TOKEN, [URI], PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_port_removed_on_https() -> None:
    uri = URI.replace(".com", ".com:1234")
    assert signature_valid(TOKEN, [uri], PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_port_removed_on_http() -> None:
    uri = URI.replace(".com", ".com:1234").replace("https", "http")
    assert signature_valid(TOKEN, [uri], PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")


def test_port_443_added_on_https() -> None:
    assert signature_valid(TOKEN, [URI], PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")


def test_port_80_added_on_http() -> None:
    uri = URI.replace("https", "http")
    assert signature_valid(TOKEN, [uri], PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4=")


def test_refused_when_anything_differs() -> None:
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not signature_valid("54321", [URI], PARAMS, good)
    assert not signature_valid(TOKEN, [URI + "&x=1"], PARAMS, good)
    assert not signature_valid(TOKEN, [URI], [*PARAMS, ("Extra", "1")], good)
    assert not signature_valid(TOKEN, [URI], PARAMS, "")


def test_url_rebuilt_from_an_api_gateway_event_keeps_the_stage() -> None:
    event = {
        "headers": {"Host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "path": "/v1/receipts/twilio/tw",
        "requestContext": {"stage": "prod", "path": "/prod/v1/receipts/twilio/tw"},
        "multiValueQueryStringParameters": {"message_id": ["m-1"]},
    }
    assert request_urls(event, "https://sms.example.com/v1/receipts/twilio/tw") == [
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/v1/receipts/twilio/tw"
        "?message_id=m-1",
        "https://sms.example.com/v1/receipts/twilio/tw?message_id=m-1",
    ]


def test_receipt_payload_maps_status_and_keeps_ids_and_error_code() -> None:
    form = [("MessageSid", "SM1"), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")]
    assert receipt_payload(form, {"message_id": "m-1"}) == {
        "status": "undelivered",
        "message_id": "m-1",
        "provider_message_id": "SM1",
        "error_code": "twilio:30003",
    }
    assert receipt_payload([("MessageSid", "SM1"), ("MessageStatus", "read")], {}) == {
        "status": "delivered",
        "provider_message_id": "SM1",
    }
