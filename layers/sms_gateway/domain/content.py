"""Message content: GSM-7 / UCS-2 encoding choice and segment counting.

Rules (DESIGN section 6, after 3GPP TS 23.038 "GSM 03.38" and TS 23.040):

- GSM-7 when every character is in the GSM 03.38 default alphabet or its extension table;
  otherwise UCS-2. An extension character is sent as ESC + code and costs 2 septets.
- GSM-7: one segment holds 160 septets; a concatenated message holds 153 septets per segment
  (7 septets go to the user data header), and an escape pair is never split across segments.
- UCS-2: length is counted in UTF-16 code units; one segment holds 70; a concatenated message
  67 per segment, and a surrogate pair is never split.

Nothing here ever drops, replaces or truncates a character: a body that does not fit is an
error for the caller to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator

# GSM 03.38 default alphabet (the 127 printable code points; 0x1B is the escape, not a character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: each costs 2 septets (ESC + code).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE_SEGMENT = 160
GSM7_MULTI_SEGMENT = 153
UCS2_SINGLE_SEGMENT = 70
UCS2_MULTI_SEGMENT = 67


class Encoding(StrEnum):
    """The data coding of an SMS, named as the API reports it."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


class ContentError(ValueError):
    """A body that cannot be sent as it is. ``reason`` is a stable short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """What a body costs on the air.

    ``units``: septets (GSM-7) or UTF-16 code units (UCS-2); ``segments``: SMS parts (>= 1);
    ``parts``: units in each segment, in order (their sum is ``units``).
    """

    encoding: Encoding
    units: int
    segments: int
    parts: tuple[int, ...]


def text_defect(value: str) -> str | None:
    """Why ``value`` cannot be carried (stored in SQL, encoded in UTF-8/UTF-16), or None.

    Refused: NUL (U+0000; PostgreSQL text cannot hold it) and unpaired UTF-16 surrogates (no
    UTF-8 form). Other control characters (TAB, ...) are legal: they only force UCS-2.
    """
    if "\x00" in value:
        return "must not contain the NUL character (U+0000)"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        return "must not contain unpaired UTF-16 surrogates"
    return None


def _carriable(value: str) -> str:
    defect = text_defect(value)
    if defect:
        raise ValueError(defect)
    return value


CarriableText = Annotated[str, AfterValidator(_carriable)]
"""A pydantic string type refusing what :func:`text_defect` refuses (a field error naming
the field, with the defect as message)."""


def is_gsm7(body: str) -> bool:
    """True when every character of ``body`` is in the GSM 03.38 basic or extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in body)


def _pack(costs: list[int], single: int, multi: int) -> tuple[int, ...]:
    """Split per-character costs into segments without splitting any character's units."""
    total = sum(costs)
    if total <= single:
        return (total,)
    parts: list[int] = []
    current = 0
    for cost in costs:
        if current + cost > multi:
            parts.append(current)
            current = 0
        current += cost
    parts.append(current)
    return tuple(parts)


def analyze(body: str) -> ContentInfo:
    """Encoding, length and segments of ``body`` (see the module docstring for the rules).

    Raises:
        ContentError: ``empty`` when ``body`` is the empty string.
    """
    if not body:
        raise ContentError("empty", "body must not be empty")
    if is_gsm7(body):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in body]
        parts = _pack(costs, GSM7_SINGLE_SEGMENT, GSM7_MULTI_SEGMENT)
        encoding = Encoding.GSM7
    else:
        # Characters outside the BMP are a surrogate pair: 2 UTF-16 code units, never split.
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
        parts = _pack(costs, UCS2_SINGLE_SEGMENT, UCS2_MULTI_SEGMENT)
        encoding = Encoding.UCS2
    return ContentInfo(encoding=encoding, units=sum(parts), segments=len(parts), parts=parts)


def check_body(body: str, max_segments: int) -> ContentInfo:
    """:func:`analyze` plus the segment limit.

    Raises:
        ContentError: ``empty`` for an empty body; ``too_long`` when the body needs more than
            ``max_segments`` segments (it is rejected, never truncated).
    """
    info = analyze(body)
    if info.segments > max_segments:
        raise ContentError(
            "too_long",
            f"body needs {info.segments} {info.encoding} segments ({info.units} units); "
            f"the limit is {max_segments}",
        )
    return info
