"""The local stack's emulation of API Gateway's stage throttling (issue 11): the token bucket
(capacity ``burst``, refilled at ``rate`` per second, full at start), the choice of method
setting, and the settings read from template.yaml's ``MethodSettings``. The clock is
injected: no sleeps."""

from __future__ import annotations

import pytest

from sms_gateway.local.template import Resolver, SamTemplate
from sms_gateway.local.throttle import (
    MethodThrottle,
    StageThrottle,
    TokenBucket,
    decode_resource_path,
    method_throttles,
)
from tests.support import REPO_ROOT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _takes(bucket: TokenBucket, n: int) -> int:
    return sum(bucket.take() for _ in range(n))


def test_a_full_bucket_lets_the_burst_through_then_refuses() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5, burst=10, clock=clock)
    assert _takes(bucket, 25) == 10


def test_the_bucket_refills_at_the_rate_and_never_past_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5, burst=10, clock=clock)
    assert _takes(bucket, 10) == 10
    clock.now += 0.1  # half a token
    assert _takes(bucket, 3) == 0
    clock.now += 0.1  # a whole one now (0.2 s x 5/s)
    assert _takes(bucket, 3) == 1
    clock.now += 1.0  # 5 more
    assert _takes(bucket, 10) == 5
    clock.now += 3600  # an hour idle: full again, not 18,000 tokens
    assert _takes(bucket, 100) == 10


def test_a_flood_gets_burst_plus_rate_times_elapsed_through() -> None:
    """A request every 1/64 s for 10 s (640, far over the limit; binary-exact times): by the
    last one, at t = 639/64 s, floor(8 + 4 x 639/64) = 47 went through, the bound the flood
    test asserts (burst + rate x elapsed)."""
    clock = Clock()
    start = clock.now
    bucket = TokenBucket(rate=4, burst=8, clock=clock)
    passed = 0
    for i in range(640):
        clock.now = start + i / 64
        passed += bucket.take()
    assert passed == 47
    assert passed <= 8 + 4 * (639 / 64)


def test_a_clock_going_backwards_adds_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5, burst=2, clock=clock)
    assert _takes(bucket, 2) == 2
    clock.now -= 100
    assert _takes(bucket, 2) == 0


def test_zero_burst_throttles_everything() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=0, clock=clock)
    clock.now += 10
    assert _takes(bucket, 5) == 0


@pytest.mark.parametrize(("rate", "burst"), [(-1, 1), (1, -1)])
def test_negative_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        TokenBucket(rate, burst)
    with pytest.raises(ValueError, match="negative"):
        MethodThrottle("POST", "/v1/receipts", rate, burst)


def test_the_stage_throttles_only_its_methods_each_with_its_own_bucket() -> None:
    clock = Clock()
    stage = StageThrottle(
        [
            MethodThrottle("POST", "/v1/receipts", rate=1, burst=2),
            MethodThrottle("POST", "/v1/receipts/twilio/{provider}", rate=1, burst=1),
        ],
        clock=clock,
    )
    assert [stage.allow("POST", "/v1/receipts") for _ in range(3)] == [True, True, False]
    # another method's bucket is untouched; unthrottled routes always pass
    assert [stage.allow("POST", "/v1/receipts/twilio/{provider}") for _ in range(2)] == [
        True,
        False,
    ]
    assert all(stage.allow("POST", "/v1/messages") for _ in range(100))
    assert all(stage.allow("GET", "/v1/receipts") for _ in range(100))
    assert stage.throttled == {
        ("POST", "/v1/receipts"): 1,
        ("POST", "/v1/receipts/twilio/{provider}"): 1,
    }
    clock.now += 1
    assert stage.allow("POST", "/v1/receipts")


def test_a_methods_own_setting_wins_over_the_stage_wide_one() -> None:
    everything = MethodThrottle("*", "/*", rate=100, burst=100)
    receipts = MethodThrottle("POST", "/v1/receipts", rate=1, burst=1)
    stage = StageThrottle([everything, receipts], clock=Clock())
    assert stage.setting("POST", "/v1/receipts") == receipts
    assert stage.setting("GET", "/v1/messages/{message_id}") == everything
    assert [stage.allow("post", "/v1/receipts") for _ in range(2)] == [True, False]


def test_resource_paths_are_decoded_as_cloudformation_writes_them() -> None:
    assert decode_resource_path("/~1v1~1receipts") == "/v1/receipts"
    assert decode_resource_path("/~1v1~1receipts~1twilio~1{provider}") == (
        "/v1/receipts/twilio/{provider}"
    )
    assert decode_resource_path("/~1a~0b") == "/a~b"


def test_the_settings_come_from_the_templates_method_settings() -> None:
    """Both receipts routes, with ReceiptsRateLimit / ReceiptsBurstLimit: their defaults, or
    the values a stack is started with."""
    template = SamTemplate.from_file(REPO_ROOT / "template.yaml")
    parameters = template.parameters
    rate = float(parameters["ReceiptsRateLimit"]["Default"])
    burst = int(parameters["ReceiptsBurstLimit"]["Default"])
    paths = ["/v1/receipts", "/v1/receipts/twilio/{provider}"]
    assert method_throttles(template, Resolver(template)) == [
        MethodThrottle("POST", path, rate, burst) for path in paths
    ]
    overridden = Resolver(
        template, parameter_overrides={"ReceiptsRateLimit": "3", "ReceiptsBurstLimit": "7"}
    )
    assert method_throttles(template, overridden) == [
        MethodThrottle("POST", path, 3.0, 7) for path in paths
    ]
