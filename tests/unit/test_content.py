"""GSM 03.38 / UCS-2 encoding and segment counting (DESIGN section 6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.domain.content import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    ContentError,
    Encoding,
    analyze,
    check_body,
)
from tests.cases import CONTENT_CASES


@pytest.mark.parametrize("case", CONTENT_CASES, ids=[c["name"] for c in CONTENT_CASES])
def test_shared_content_cases(case: dict[str, object]) -> None:
    info = analyze(str(case["body"]))
    assert info.encoding.value == case["encoding"]
    assert info.units == case["units"]
    assert info.segments == case["segments"]


def test_gsm_long_parts_are_153_153_153_141() -> None:
    assert analyze("a" * 600).parts == (153, 153, 153, 141)


def test_escape_pair_is_never_split() -> None:
    # 152 plain septets then a euro (2 septets): the 153-septet first part cannot take the
    # pair, so it closes at 152 and the euro opens the second part.
    info = analyze("a" * 152 + "€" + "a" * 10)
    assert info.units == 164
    assert info.parts == (152, 12)


def test_surrogate_pair_is_never_split() -> None:
    # 66 BMP units then an emoji (2 units): the 67-unit part cannot take the pair.
    info = analyze("ж" * 66 + "🌸" + "ж" * 5)
    assert info.encoding is Encoding.UCS2
    assert info.units == 73
    assert info.parts == (66, 7)


def test_ucs2_71_units_is_two_segments_of_67_and_4() -> None:
    assert analyze("ж" * 71).parts == (67, 4)


def test_escape_character_itself_is_not_gsm() -> None:
    assert analyze("\x1b").encoding is Encoding.UCS2


def test_empty_body_is_rejected() -> None:
    with pytest.raises(ContentError) as err:
        analyze("")
    assert err.value.reason == "empty"


def test_segment_limit_rejects_rather_than_truncates() -> None:
    assert check_body("a" * 1530, max_segments=10).segments == 10
    with pytest.raises(ContentError) as err:
        check_body("a" * 1531, max_segments=10)
    assert err.value.reason == "too_long"
    assert "11" in str(err.value)


GSM_CHARS = sorted(GSM7_BASIC | GSM7_EXTENSION)


@given(st.text(alphabet=GSM_CHARS, min_size=1, max_size=2000))
def test_gsm_parts_cover_every_septet(body: str) -> None:
    info = analyze(body)
    expected_units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in body)
    assert info.encoding is Encoding.GSM7
    assert info.units == expected_units == sum(info.parts)
    if expected_units <= 160:
        assert info.segments == 1
    else:
        assert all(p <= 153 for p in info.parts)
        # greedy packing loses at most one septet per part (a pair that did not fit)
        assert all(p >= 152 for p in info.parts[:-1])


@given(
    st.text(min_size=1, max_size=600).filter(
        lambda s: any(c not in GSM7_BASIC and c not in GSM7_EXTENSION for c in s)
    )
)
def test_ucs2_units_are_utf16_code_units(body: str) -> None:
    info = analyze(body)
    assert info.encoding is Encoding.UCS2
    assert info.units == len(body.encode("utf-16-le")) // 2 == sum(info.parts)
    limit = 70 if info.units <= 70 else 67
    assert all(p <= limit for p in info.parts)
