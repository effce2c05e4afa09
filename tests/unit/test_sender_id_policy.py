"""Per-tenant sender IDs in the route policy (issue 7, security): parsing, the allow rule and
the safe default (no list: no explicit ``from``)."""

from __future__ import annotations

import pytest

from sms_gateway.domain.routing import (
    InvalidRoutePolicy,
    SenderIdNotAllowed,
    parse_policy,
    sender_id_for,
)

POOL = "pool-" + "0123456789abcdef" * 2
POOL_ARN = "arn:aws:sms-voice:us-east-1:123456789012:pool/" + POOL


def _policy(**extra: object) -> object:
    return parse_policy("t", "direct", {"default_provider": "p", **extra})


def test_a_policy_without_sender_ids_allows_no_from() -> None:
    policy = parse_policy("t", "direct", {"default_provider": "p"})
    assert (policy.sender_ids, policy.default_sender_id) == ((), None)
    assert sender_id_for(policy, None) is None  # the provider's configured origination
    with pytest.raises(SenderIdNotAllowed, match="lists no sender IDs"):
        sender_id_for(policy, "ACME")


def test_listed_sender_ids_are_normalized_and_allowed() -> None:
    policy = parse_policy(
        "t",
        "failover",
        {
            "providers": [{"provider": "a"}, {"provider": "b"}],
            "sender_ids": ["ACME", "0012025550100", "12345", POOL, POOL_ARN],
            "default_sender_id": "ACME",
        },
    )
    assert policy.sender_ids == ("ACME", "+12025550100", "12345", POOL, POOL_ARN)
    assert sender_id_for(policy, "+12025550100") == "+12025550100"
    assert sender_id_for(policy, "12345") == "12345"
    assert sender_id_for(policy, None) == "ACME"  # the default for a message without from
    with pytest.raises(SenderIdNotAllowed, match="not one of this tenant's sender IDs"):
        sender_id_for(policy, "OTHERBRAND")
    with pytest.raises(SenderIdNotAllowed):
        sender_id_for(policy, "acme")  # compared exactly: another brand's spelling


def test_the_default_may_be_an_end_user_messaging_pool() -> None:
    policy = parse_policy(
        "t", "direct", {"default_provider": "eum", "sender_ids": [POOL], "default_sender_id": POOL}
    )
    assert sender_id_for(policy, None) == POOL


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"sender_ids": "ACME"}, "'sender_ids' must be a list of strings"),
        ({"sender_ids": [7]}, "'sender_ids' must be a list of strings"),
        ({"sender_ids": ["ACME", "TOOLONGSENDER1"]}, "'sender_ids'[1] ('TOOLONGSENDER1')"),
        ({"sender_ids": ["+10000000001"]}, "'sender_ids'[0] ('+10000000001')"),
        ({"sender_ids": ["pool-xyz"]}, "'sender_ids'[0] ('pool-xyz')"),
        ({"sender_ids": ["ACME"], "default_sender_id": "OTHER"}, "one of 'sender_ids'"),
        ({"default_sender_id": "ACME"}, "one of 'sender_ids'"),
        ({"sender_ids": ["ACME"], "default_sender_id": 5}, "'default_sender_id' must be a string"),
    ],
)
def test_an_invalid_sender_id_entry_is_refused_naming_the_field(
    extra: dict[str, object], names: str
) -> None:
    with pytest.raises(InvalidRoutePolicy) as caught:
        _policy(**extra)
    assert names in str(caught.value)


def test_a_stored_policy_is_read_without_libphonenumber() -> None:
    """Reading a stored policy (checked when written) takes canonical entries as they are,
    so the sender's first policy read does not load libphonenumber's metadata; an entry
    that is not canonical is still normalized."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sms_gateway.domain.routing import parse_policy\n"
        "p = parse_policy('t', 'direct', {'default_provider': 'p', 'sender_ids':"
        " ['ACME', '+12025550100', '12345'], 'default_sender_id': 'ACME'},"
        " check_numbers=False)\n"
        "assert p.sender_ids == ('ACME', '+12025550100', '12345'), p\n"
        "print('phonenumbers' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
    stored = parse_policy(
        "t",
        "direct",
        {"default_provider": "p", "sender_ids": ["0012025550100"]},
        check_numbers=False,
    )
    assert stored.sender_ids == ("+12025550100",)
