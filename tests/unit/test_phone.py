"""E.164 normalization and sender IDs."""

from __future__ import annotations

import pytest

from sms_gateway.domain.phone import InvalidPhoneNumber, mask, normalize_sender_id, to_e164
from tests.cases import PHONE_CASES

VALID = [c for c in PHONE_CASES if "e164" in c]
INVALID = [c for c in PHONE_CASES if "e164" not in c]


@pytest.mark.parametrize("case", VALID, ids=[c["to"] for c in VALID])
def test_shared_numbers_normalize(case: dict[str, str]) -> None:
    assert to_e164(case["to"]) == case["e164"]


@pytest.mark.parametrize("case", INVALID, ids=[repr(c["to"]) for c in INVALID])
def test_shared_invalid_numbers_raise(case: dict[str, object]) -> None:
    assert case["expect_status"] == 422
    with pytest.raises(InvalidPhoneNumber):
        to_e164(str(case["to"]))


@pytest.mark.parametrize(
    "raw",
    [
        "4155550100",
        "+1415555010012345",
        "+1",
        "+44 abc",
        "0 041 44",
        "++14155550100",
        "+1-415-555-01OO",
    ],
)
def test_other_invalid_numbers(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        to_e164(raw)


def test_dashes_and_parentheses_are_dropped() -> None:
    assert to_e164("+44 (7911) 123-456") == "+447911123456"


def test_mask_keeps_country_prefix_and_last_two_digits() -> None:
    assert mask("+14155550100") == "+141******00"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ACME", "ACME"),
        ("Acme Bank 1", "Acme Bank 1"),
        ("12345", "12345"),
        ("0044 7911 123456", "+447911123456"),
    ],
)
def test_sender_ids(raw: str, expected: str) -> None:
    assert normalize_sender_id(raw) == expected


@pytest.mark.parametrize("raw", ["TwelveChars!", "ABCDEFGHIJKL", "12", "Ünïcode", ""])
def test_bad_sender_ids(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_sender_id(raw)
