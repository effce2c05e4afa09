"""Recipient numbers: normalization to E.164 (ITU-T E.164, via Google's libphonenumber).

Rule (DESIGN section 5): spaces, dashes and parentheses are dropped; a leading ``00``
(the ITU international prefix) becomes ``+``; the result must be an international number
that libphonenumber considers *possible* (right length for its country code). Validity
against live numbering plans is deliberately not required: the seed's demo numbers
(``+10000000001``) are possible but not assigned.
"""

from __future__ import annotations

import re

import phonenumbers

_DROPPED = re.compile(r"[\s\-()]")
_SHAPE = re.compile(r"\+[0-9]{2,15}")


class InvalidPhoneNumber(ValueError):
    """``raw`` is not a number we can send to; the message says why, for the API to show."""


def to_e164(raw: str) -> str:
    """Normalize a client-typed number to E.164 (``+`` then 8 to 15 digits).

    >>> to_e164("0041 44 364 35 33")
    '+41443643533'

    Raises:
        InvalidPhoneNumber: empty, not international, not digits, or not a possible number.
    """
    compact = _DROPPED.sub("", raw)
    if not compact:
        raise InvalidPhoneNumber("phone number must not be empty")
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _SHAPE.fullmatch(compact):
        raise InvalidPhoneNumber(
            "phone number must be in international form: '+' or '00', country code, "
            "then digits (E.164)"
        )
    try:
        number = phonenumbers.parse(compact, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"phone number cannot be parsed: {exc}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhoneNumber("phone number has the wrong length for its country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str) -> str:
    """A phone number safe for logs: country code area kept, the rest but 2 digits hidden.

    ``+14155550100`` -> ``+141******00``.
    """
    if len(e164) <= 6:
        return "*" * len(e164)
    return e164[:4] + "*" * (len(e164) - 6) + e164[-2:]


_ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9 ]{1,11}")
_SHORT_CODE = re.compile(r"[0-9]{3,8}")


def normalize_sender_id(raw: str) -> str:
    """Validate a sender ID (the ``from`` of an MT SMS) and return its canonical form.

    Accepted (3GPP TS 23.040 originating address): an alphanumeric sender ID of 1 to 11
    characters from ``A-Z a-z 0-9`` and space with at least one letter (kept as given); a
    short code of 3 to 8 digits; or a phone number, normalized like :func:`to_e164`.

    Raises:
        InvalidPhoneNumber: none of these forms.
    """
    value = raw.strip()
    if _SHORT_CODE.fullmatch(value):
        return value
    if _ALPHANUMERIC_SENDER.fullmatch(value) and any(ch.isalpha() for ch in value):
        return value
    if value.startswith(("+", "00")):
        return to_e164(value)
    raise InvalidPhoneNumber(
        "sender ID must be 1-11 letters, digits or spaces with at least one letter, "
        "a 3-8 digit short code, or an E.164 number"
    )
