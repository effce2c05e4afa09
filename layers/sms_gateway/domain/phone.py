"""Recipient numbers: normalization to E.164 (ITU-T E.164, via Google's libphonenumber).

Rule (DESIGN section 5): spaces, dashes and parentheses are dropped; a leading ``00``
(the ITU international prefix) becomes ``+``; the result must be an international number
that libphonenumber considers *valid* for its country code: a known country code, a possible
length, and a national number inside a range that country's numbering plan assigns
(libphonenumber's metadata, ``is_valid_number``). A possible length alone is not enough:
``+10000000001`` has ten digits after the ``+1`` but area code 000 does not exist. The
demo numbers are ``+12025550143`` and ``+12025550144``, in the 555-01xx range that the North
American plan keeps for fiction: valid, never a real subscriber.

A refused number's message says why in words a client can act on (unknown country code,
length, a trunk prefix kept after the country code, a North American area code that cannot
exist), never libphonenumber's internal text. A trunk prefix that libphonenumber itself strips
while parsing (``+44 07911 123456`` -> ``+447911123456``) is accepted, as it always was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import phonenumbers
from phonenumbers import PhoneMetadata, ValidationResult

_DROPPED = re.compile(r"[\s\-()]")
_SHAPE = re.compile(r"\+[0-9]{2,15}")
# E.164 country codes have 1 to 3 digits and none is a prefix of another.
_COUNTRY_CODE_SIZES = (1, 2, 3)
# North American Numbering Plan (NANPA): country code 1, then NPA-NXX-XXXX where the area
# code (NPA) and the exchange code (NXX) both start with 2-9, and the N11 codes (211 ... 911)
# are service codes, never area codes.
_NANP = 1
_NANP_DIGITS = 10
_NON_GEOGRAPHIC = "001"  # libphonenumber's region for +800, +808, +870, +88x, +979
_TRUNK_ZERO = "0"


class InvalidPhoneNumber(ValueError):
    """``raw`` is not a number we can send to; the message says why, for the API to show."""


def to_e164(raw: str, *, possible_only: bool = False) -> str:
    """Normalize a client-typed number to E.164 (``+`` then 8 to 15 digits).

    ``possible_only``: skip the last check (a range the numbering plan assigns) and accept any
    number of a possible length for a known country code: for a tenant whose numbers are newer
    than libphonenumber's metadata (``SMS_GATEWAY_POSSIBLE_NUMBER_TENANTS``).

    >>> to_e164("0041 44 364 35 33")
    '+41443643533'

    Raises:
        InvalidPhoneNumber: empty, not international, not digits, an unknown country code,
            the wrong length for its country code, or not a valid number there; the message
            names the reason (``unknown country code 999``, ``area code 034 does not exist:
            ...``).
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
    digits = compact[1:]
    country_code = _country_code(digits)
    try:
        number = phonenumbers.parse(compact, None)
    except phonenumbers.NumberParseException as exc:
        # The country code is known and there are at most 15 digits: libphonenumber refuses
        # such a number only when too few digits follow the country code.
        national_digits = len(digits) - len(str(country_code))
        raise InvalidPhoneNumber(
            _length_problem(country_code, national_digits, ValidationResult.TOO_SHORT)
        ) from exc
    national = phonenumbers.national_significant_number(number)
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        raise InvalidPhoneNumber(_length_problem(country_code, len(national), reason))
    if not possible_only and not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(_invalid_problem(country_code, national))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _country_code(digits: str) -> int:
    """The country code that ``digits`` (what follows the ``+``) start with.

    Raises:
        InvalidPhoneNumber: no country code known to libphonenumber starts ``digits``; the
            message shows the first 3 digits (every unassigned code has 3 digits).
    """
    known = {str(code) for code in phonenumbers.supported_calling_codes()}
    for size in _COUNTRY_CODE_SIZES:
        if digits[:size] in known:
            return int(digits[:size])
    raise InvalidPhoneNumber(f"unknown country code {digits[:3]}")


def _plan(country_code: int, region: str | None = None) -> PhoneMetadata:
    """libphonenumber's metadata for ``region`` of ``country_code`` (default: its main region,
    the one whose lengths ``is_possible_number`` checks)."""
    region = region or phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:  # pragma: no cover - callers pass known codes and their regions
        raise LookupError(f"no libphonenumber metadata for +{country_code} {region}")
    return metadata


def _length_problem(country_code: int, national_digits: int, reason: int) -> str:
    """Why ``national_digits`` digits after ``country_code`` cannot be a number there."""
    general = _plan(country_code).general_desc
    expected = _count(general.possible_length if general is not None else ())
    given = f"{national_digits} digit{'' if national_digits == 1 else 's'} after it"
    if reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return (
            f"too short for country code {country_code}: {given} is a local number, "
            f"add its area code ({expected} digits after the country code)"
        )
    problem = {
        ValidationResult.TOO_SHORT: "too short",
        ValidationResult.TOO_LONG: "too long",
    }.get(reason, "wrong length")
    return f"{problem} for country code {country_code}: {given}, expected {expected}"


def _count(lengths: Iterable[int]) -> str:
    """``(10,)`` -> ``10``; ``(9, 10)`` -> ``9 or 10``; ``(4, ..., 15)`` -> ``4 to 15``."""
    ordered = sorted(set(lengths))
    if not ordered:  # pragma: no cover - every plan in libphonenumber's metadata has lengths
        return "a different number of digits"
    if len(ordered) > 2 and ordered[-1] - ordered[0] == len(ordered) - 1:
        return f"{ordered[0]} to {ordered[-1]}"
    if len(ordered) == 1:
        return str(ordered[0])
    return ", ".join(map(str, ordered[:-1])) + f" or {ordered[-1]}"


def _invalid_problem(country_code: int, national: str) -> str:
    """Why a number of a possible length is still not valid (``national``: its digits after
    the country code, leading zeros kept).

    In order: a trunk prefix kept after the country code, the North American plan's fixed
    shape, then plainly not valid for the country code's region(s).
    """
    trunk = _kept_trunk_prefix(country_code, national)
    if trunk is not None:
        rest = national[len(trunk) :]
        return (
            f"drop the national trunk prefix {trunk} after the country code "
            f"(+{country_code} {rest[:3]}...)"
        )
    if country_code == _NANP and len(national) == _NANP_DIGITS:
        area, exchange = national[:3], national[3:6]
        if area[0] in "01":
            return f"area code {area} does not exist: North American area codes start with 2-9"
        if area[1:] == "11":
            return f"{area} is a service code (N11), not an area code"
        if exchange[0] in "01":
            return (
                f"exchange code {exchange} does not exist: North American exchange codes "
                "(the 3 digits after the area code) start with 2-9"
            )
    regions = phonenumbers.region_codes_for_country_code(country_code)
    if regions == (_NON_GEOGRAPHIC,):
        return f"not a valid number for the non-geographic country code {country_code}"
    if len(regions) == 1:
        return f"not a valid number for {regions[0]} (country code {country_code})"
    return f"not a valid number for {regions[0]} or another region of country code {country_code}"


def _kept_trunk_prefix(country_code: int, national: str) -> str | None:
    """The national trunk prefix ``national`` wrongly starts with, if dropping it leaves a
    valid number.

    The prefixes are those libphonenumber's metadata gives the regions of ``country_code``
    (``national_prefix``: 0 in most of Europe, 1 in North America, 8 in Russia, 06 in
    Hungary). A plan without one (Italy, San Marino) made its old trunk 0 part of some
    numbers and not of others (Italian mobiles: ``333...``, not ``0333...``), so 0 is tried.
    """
    prefixes = {
        prefix
        for region in phonenumbers.region_codes_for_country_code(country_code)
        if (prefix := _plan(country_code, region).national_prefix)
    } or {_TRUNK_ZERO}
    for prefix in sorted(prefixes):
        rest = national[len(prefix) :]
        if not national.startswith(prefix):
            continue
        try:
            candidate = phonenumbers.parse(f"+{country_code}{rest}", None)
        except phonenumbers.NumberParseException:
            continue  # too few digits left to be any number
        if phonenumbers.is_valid_number(candidate):
            return prefix
    return None


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
    short code of 3 to 8 digits; or a phone number, normalized and required to be valid
    like :func:`to_e164` (the same messages say why not).

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
