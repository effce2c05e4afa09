"""Message operations on every SQL dialect (issue 11, item 2): cancel (the route and its race
with the sender), dead-letter replay (by message, tenant, reason, time range; generations;
never a second send), stuck messages, and the ``sms-gateway admin`` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sms_gateway import wiring
from sms_gateway.domain.content import Encoding
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.operations import ReplaySelection, ReplaySkip
from sms_gateway.domain.states import MessageStatus
from sms_gateway.providers.base import SendRequest, SendResult
from sms_gateway.services.dead_letter import DeadLetter
from sms_gateway.services.operations import InvalidReplay, MessageOperations
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.operations import SqlOperationsStore
from sms_gateway.storage.records import AttemptResult, Claim
from sms_gateway.storage.repository import RoutePolicyRepository
from sms_gateway.storage.sql import Database
from tests.support import Gateway

PROBLEM_BASE = "https://sms-gateway.example/docs/problems.md#"


def _post(gateway: Gateway, tenant: str, key: str, **extra: Any) -> str:
    answer = gateway.post_message(tenant, key, {"to": "+12025550143", "body": "hi", **extra})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def _status(gateway: Gateway, message_id: str) -> MessageStatus:
    row = gateway.repo.get(message_id)
    assert row is not None
    return row.status


def _queued(message_id: str, tenant: str, created_at: datetime, **extra: Any) -> QueuedMessage:
    return QueuedMessage(
        message_id=message_id,
        tenant_id=tenant,
        to="+12025550143",
        body="hi",
        encoding=Encoding.GSM7,
        segments=1,
        max_attempts=extra.pop("max_attempts", 3),
        idempotency_key=f"key-{message_id}",
        created_at=created_at,
        **extra,
    )


# ---- cancel ---------------------------------------------------------------------------------


def test_a_canceled_message_is_acknowledged_and_never_sent(gateway: Gateway) -> None:
    """tenant-1's provider-a fails each message's first attempt: the message is back in
    ``queued`` with its record on the queue when the tenant cancels it. The record is then
    acknowledged without a second provider call; a second cancel answers the same."""
    message_id = _post(gateway, "tenant-1", "cancel-1")
    gateway.poller("sender").poll_once()  # attempt 1 fails: queued again, record kept
    assert _status(gateway, message_id) is MessageStatus.QUEUED
    assert len(gateway.sends(message_id)) == 1

    first = gateway.cancel_message("tenant-1", message_id)
    assert first.status == 200, first.body
    assert first.body["status"] == "canceled"
    assert first.body["attempts"] == 1
    assert (first.body["reason_code"], first.body["reason_detail"]) == (
        None,
        "canceled by the tenant",
    )
    again = gateway.cancel_message("tenant-1", message_id)
    assert (again.status, again.body) == (200, first.body)

    gateway.run_until_idle()
    assert len(gateway.sends(message_id)) == 1  # the first attempt only
    assert gateway.queue_depth("send") == 0  # the record was acknowledged
    assert gateway.repo.dead_letters_for(message_id) == []
    assert gateway.repo.events(message_id)[-1] == ("queued", "canceled", None)
    assert [e for e in gateway.repo.events(message_id) if e[1] == "canceled"] == [
        ("queued", "canceled", None)
    ]
    assert gateway.get_message("tenant-1", message_id).body["status"] == "canceled"


def test_cancel_while_the_sender_holds_the_message_is_409_and_it_is_sent_once(
    gateway: Gateway,
) -> None:
    """The cancel lands while the provider call is in flight (``sending``): refused with
    problem+json; the send completes and stands."""
    answers = []
    provider = gateway.providers["provider-b"]
    inner = provider.inner

    class CancelDuringSend:
        name = inner.name

        def send(self, request: SendRequest) -> SendResult:
            answers.append(gateway.cancel_message("tenant-3", request.message_id))
            result: SendResult = inner.send(request)
            return result

    provider.inner = CancelDuringSend()
    message_id = _post(gateway, "tenant-3", "cancel-2")
    gateway.run_until_idle()

    (answer,) = answers
    assert answer.status == 409
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.body["type"] == PROBLEM_BASE + "message-not-cancelable"
    assert "sending" in answer.body["detail"]
    assert _status(gateway, message_id) is MessageStatus.SENT
    assert len(gateway.sends(message_id)) == 1
    late = gateway.cancel_message("tenant-3", message_id)
    assert (late.status, late.body["status"]) == (409, 409)


def test_cancel_of_an_unknown_or_foreign_message_is_404(gateway: Gateway) -> None:
    message_id = _post(gateway, "tenant-2", "cancel-3")
    gateway.poller("sender").poll_once()
    foreign = gateway.cancel_message("tenant-1", message_id)
    unknown = gateway.cancel_message("tenant-2", "4f7f2a8e-0000-5000-8000-00000000dead")
    for answer in (foreign, unknown):
        assert answer.status == 404
        assert answer.body["type"] == PROBLEM_BASE + "message-not-found"
    assert _status(gateway, message_id) is MessageStatus.QUEUED


def test_a_claim_that_lost_to_a_cancel_claims_nothing(gateway: Gateway) -> None:
    """The race on the row itself: the sender read the message ``queued`` at version v, the
    cancel committed first; the sender's claim (guarded by status and v) moves nothing, on
    every dialect's intake path, and the copy of the record is acknowledged unsent."""
    now = gateway.clock()
    msg = _queued("4f7f2a8e-0000-5000-8000-0000000000c1", "tenant-3", now)
    assert gateway.repo.record_queued(msg, now)
    seen = gateway.repo.get(msg.message_id)
    assert seen is not None and seen.status is MessageStatus.QUEUED

    canceled = wiring.operations().cancel("tenant-3", msg.message_id)
    assert canceled.status is MessageStatus.CANCELED

    stale = [Claim(msg.message_id, seen.version, 1, "provider-b")]
    taken = gateway.repo.intake([msg], lambda rows: stale, now + timedelta(seconds=30), now)
    assert taken.claimed == frozenset()
    assert _status(gateway, msg.message_id) is MessageStatus.CANCELED
    assert gateway.repo.attempts(msg.message_id) == []

    gateway.sqs.send_message(QueueUrl=gateway.send_queue_url, MessageBody=msg.model_dump_json())
    gateway.run_until_idle()
    assert gateway.sends(msg.message_id) == []
    assert gateway.queue_depth("send") == 0


# ---- replay ---------------------------------------------------------------------------------


def _dead_letter(gateway: Gateway, tenant: str, key: str) -> str:
    """A message of ``tenant`` (routed to provider-fail) dead-lettered after 2 attempts."""
    message_id = _post(gateway, tenant, key, max_attempts=2)
    gateway.run_until_idle()
    assert _status(gateway, message_id) is MessageStatus.FAILED
    return message_id


def _route(gateway: Gateway, tenant: str, provider: str) -> None:
    """Give ``tenant`` a direct policy to ``provider``, seen by the next sender container."""
    engine = make_engine(gateway.dsn)
    try:
        RoutePolicyRepository(engine).put(
            tenant, "direct", {"default_provider": provider}, gateway.clock()
        )
    finally:
        engine.dispose()
    wiring.reset()  # a new sender container: no route policy cached


def test_replay_by_message_id_sends_it_once_and_keeps_the_dead_letter(gateway: Gateway) -> None:
    message_id = _dead_letter(gateway, "tenant-2", "replay-1")
    (letter,) = gateway.repo.dead_letters_for(message_id)
    assert (letter["generation"], letter["replayed_at"]) == (0, None)
    _route(gateway, "tenant-2", "provider-b")
    gateway.clock.advance(60)

    report = wiring.operations().replay(ReplaySelection(message_id=message_id))
    assert report.replayed == [message_id]
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.attempts, row.max_attempts, row.reason_code) == (
        MessageStatus.QUEUED,
        2,
        3,
        None,
    )
    (kept,) = gateway.repo.dead_letters_for(message_id)
    assert kept["id"] == letter["id"]
    assert kept["replayed_at"] == gateway.clock()
    assert gateway.queue_depth("send") == 1

    gateway.run_until_idle()
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.attempts, row.provider) == (MessageStatus.SENT, 3, "provider-b")
    assert [c.attempt for c in gateway.providers["provider-b"].calls] == [3]

    again = wiring.operations().replay(ReplaySelection(message_id=message_id))
    assert (again.replayed, again.skipped) == ([], {})
    gateway.run_until_idle()
    assert len(gateway.providers["provider-b"].calls) == 1
    assert _status(gateway, message_id) is MessageStatus.SENT


def test_a_replay_that_fails_again_is_a_new_generation(gateway: Gateway) -> None:
    message_id = _dead_letter(gateway, "tenant-2", "replay-2")
    report = wiring.operations().replay(ReplaySelection(message_id=message_id), budget=2)
    assert report.replayed == [message_id]
    gateway.run_until_idle()
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.reason_code, row.attempts, row.max_attempts) == (
        MessageStatus.FAILED,
        "dead_letter",
        4,
        4,
    )
    letters = gateway.repo.dead_letters_for(message_id)
    assert [(d["generation"], d["replayed_at"] is None) for d in letters] == [
        (0, False),
        (1, True),
    ]
    assert [c.attempt for c in gateway.providers["provider-fail"].calls] == [1, 2, 3, 4]
    trail = gateway.repo.events(message_id)
    assert trail.count(("failed", "queued", None)) == 1
    assert trail.count(("queued", "failed", "dead_letter")) == 2


def test_a_late_copy_of_a_replayed_generation_does_not_fail_the_replay(gateway: Gateway) -> None:
    """SQS may deliver a record twice: a copy of generation 0 redriven to the DLQ after the
    operator replayed generation 0 must not fail generation 1 (its record is on the queue)."""
    message_id = _dead_letter(gateway, "tenant-2", "replay-5")
    (letter,) = gateway.repo.dead_letters_for(message_id)
    assert wiring.operations().replay(ReplaySelection(message_id=message_id)).replayed == [
        message_id
    ]
    wiring.sql().dead_letters.process(DeadLetter("sqs-late-copy", letter["raw_payload"], 4))
    assert _status(gateway, message_id) is MessageStatus.QUEUED
    _route(gateway, "tenant-2", "provider-b")
    gateway.run_until_idle()
    assert _status(gateway, message_id) is MessageStatus.SENT
    assert len(gateway.providers["provider-b"].calls) == 1


def test_replay_by_tenant_reason_and_time_range(gateway: Gateway) -> None:
    _route(gateway, "tenant-9", "provider-fail")
    early = gateway.clock()
    first = _dead_letter(gateway, "tenant-2", "range-1")
    gateway.clock.advance(3600)
    middle = gateway.clock()
    second = _dead_letter(gateway, "tenant-9", "range-2")
    gateway.clock.advance(3600)
    third = _dead_letter(gateway, "tenant-2", "range-3")
    ops = wiring.operations()

    assert ops.replay(ReplaySelection(reason="validation_error")).replayed == []
    by_range = ops.replay(ReplaySelection(since=middle, until=middle + timedelta(minutes=30)))
    assert by_range.replayed == [second]
    by_tenant = ops.replay(ReplaySelection(tenant_id="tenant-2", since=early, limit=1))
    assert by_tenant.replayed == [first]
    by_reason = ops.replay(ReplaySelection(reason="dead_letter"))
    assert by_reason.replayed == [third]
    assert gateway.queue_depth("send") == 3
    for message_id in (first, second, third):
        assert _status(gateway, message_id) is MessageStatus.QUEUED


def test_replay_never_resends_a_message_that_was_sent_after_all(gateway: Gateway) -> None:
    """A dead letter recorded while a live sender held the message (the DLQ function leaves
    it to that sender), which then sent it: the replay skips it."""
    now = gateway.clock()
    msg = _queued("4f7f2a8e-0000-5000-8000-0000000000d1", "tenant-3", now)
    assert gateway.repo.record_queued(msg, now)
    assert gateway.repo.claim(msg.message_id, 1, 1, "provider-b", now + timedelta(seconds=30), now)
    dlq = wiring.sql().dead_letters
    assert dlq.process(DeadLetter("sqs-d1", msg.model_dump_json(), 3))
    assert _status(gateway, msg.message_id) is MessageStatus.SENDING
    assert gateway.repo.finish_attempt(
        msg.message_id, 1, AttemptResult("sent", 5, "pm-1"), MessageStatus.SENT, now
    )

    report = wiring.operations().replay(ReplaySelection(message_id=msg.message_id))
    assert report.replayed == []
    assert list(report.skipped.values()) == [ReplaySkip.NOT_FAILED]
    assert gateway.queue_depth("send") == 0
    assert gateway.repo.dead_letters_for(msg.message_id)[0]["replayed_at"] is None
    assert _status(gateway, msg.message_id) is MessageStatus.SENT


def test_a_replay_the_queue_refuses_is_undone(gateway: Gateway) -> None:
    message_id = _dead_letter(gateway, "tenant-2", "replay-3")

    class DownQueue:
        def send(self, body: str, attributes: Any, delay_seconds: int = 0) -> str:
            raise ConnectionError("SQS unreachable")

    container = wiring.sql()
    store = SqlOperationsStore(Database(container.engine))
    ops = MessageOperations(
        messages=container.repository,
        operations=store,
        queue=DownQueue(),  # type: ignore[arg-type]
        metrics=wiring.operations()._metrics,
        clock=gateway.clock,
        max_budget=3,
    )
    report = ops.replay(ReplaySelection(message_id=message_id))
    assert report.replayed == []
    assert list(report.failed.values()) == ["replay could not be queued: ConnectionError"]
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.reason_code) == (MessageStatus.FAILED, "dead_letter")
    assert gateway.repo.dead_letters_for(message_id)[0]["replayed_at"] is None

    assert wiring.operations().replay(ReplaySelection(message_id=message_id)).replayed == [
        message_id
    ]


def test_a_dead_letter_is_replayed_by_one_operator_only(gateway: Gateway) -> None:
    message_id = _dead_letter(gateway, "tenant-2", "replay-4")
    store = SqlOperationsStore(Database(wiring.sql().engine))
    (letter,) = store.replayable(ReplaySelection(message_id=message_id))
    first = store.start_replay(letter, 1, gateway.clock())
    second = store.start_replay(letter, 1, gateway.clock())
    assert not isinstance(first, ReplaySkip) and first.status is MessageStatus.QUEUED
    assert second is ReplaySkip.NOT_FAILED
    assert store.replayable(ReplaySelection(message_id=message_id)) == []


@pytest.mark.parametrize("budget", [0, 4])
def test_replay_budget_is_bounded_by_max_receive_count(gateway: Gateway, budget: int) -> None:
    with pytest.raises(InvalidReplay, match=r"1\.\.3"):
        wiring.operations().replay(ReplaySelection(tenant_id="tenant-2"), budget=budget)


# ---- stuck ----------------------------------------------------------------------------------


def test_stuck_lists_messages_in_a_state_longer_than_the_threshold(gateway: Gateway) -> None:
    now = gateway.clock()
    old = _queued("4f7f2a8e-0000-5000-8000-0000000000e1", "tenant-1", now - timedelta(hours=1))
    new = _queued("4f7f2a8e-0000-5000-8000-0000000000e2", "tenant-1", now)
    held = _queued("4f7f2a8e-0000-5000-8000-0000000000e3", "tenant-3", now)
    assert gateway.repo.record_queued(old, now - timedelta(minutes=20))
    assert gateway.repo.record_queued(new, now - timedelta(minutes=5))
    assert gateway.repo.record_queued(held, now - timedelta(minutes=30))
    assert gateway.repo.claim(
        held.message_id, 1, 1, "provider-b", now + timedelta(seconds=30), now - timedelta(minutes=2)
    )
    # a problem noted now moves updated_at, not the time it entered queued
    gateway.repo.note_problem(old.message_id, _reason("unknown"), "no route", now)

    ops = wiring.operations()
    (stuck,) = ops.stuck(MessageStatus.QUEUED, 15 * 60)
    assert (stuck.id, stuck.since, stuck.reason_detail) == (
        old.message_id,
        now - timedelta(minutes=20),
        "no route",
    )
    assert [m.id for m in ops.stuck(MessageStatus.QUEUED, 60)] == [
        old.message_id,
        new.message_id,
    ]
    assert ops.stuck(MessageStatus.SENDING, 15 * 60) == []
    gateway.clock.advance(14 * 60)
    assert [m.id for m in ops.stuck(MessageStatus.SENDING, 15 * 60)] == [held.message_id]


def _reason(code: str) -> Any:
    from sms_gateway.domain.reasons import ReasonCode

    return ReasonCode(code)


# ---- the admin commands ---------------------------------------------------------------------


def test_admin_commands_replay_and_list_stuck(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    from sms_gateway.local.cli import main

    real_now = datetime.now(UTC)
    msg = _queued("4f7f2a8e-0000-5000-8000-0000000000f1", "tenant-1", real_now)
    assert gateway.repo.record_queued(msg, real_now - timedelta(minutes=20))
    message_id = _dead_letter(gateway, "tenant-2", "cli-1")
    dsn = ["--dsn", gateway.dsn]
    capsys.readouterr()

    assert main(["admin", "stuck", "--state", "queued", "--older-than", "15m", *dsn]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["message_id", "tenant", "status", "since", "age", "attempts"]
    fields = lines[1].split()
    assert fields[:3] == [msg.message_id, "tenant-1", "queued"]
    assert 20 * 60 <= int(fields[4].removesuffix("s")) < 30 * 60

    queue = ["--queue-url", gateway.send_queue_url]
    assert main(["admin", "replay", "--message-id", message_id, *dsn, *queue]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["replayed"], answer["message_ids"]) == (1, [message_id])
    assert _status(gateway, message_id) is MessageStatus.QUEUED
    assert gateway.queue_depth("send") == 1
    assert main(["admin", "replay", "--message-id", message_id, *dsn, *queue]) == 0
    assert json.loads(capsys.readouterr().out)["replayed"] == 0


def test_admin_replay_finds_the_queue_region_or_says_what_to_set(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sms_gateway.local.cli import _queue_region, main

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert _queue_region("https://sqs.eu-west-1.amazonaws.com/111122223333/q") == "eu-west-1"
    with pytest.raises(SystemExit, match="set AWS_REGION"):
        _queue_region("http://127.0.0.1:4566/123456789012/sms-gateway-send")
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")  # what Lambda and the README set
    assert _queue_region("https://sqs.eu-west-1.amazonaws.com/111122223333/q") == "ap-southeast-2"
    # a queue that does not exist (the wrong region): the replay is undone, exit 1
    message_id = _dead_letter(gateway, "tenant-2", "cli-region")
    capsys.readouterr()
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    argv = ["admin", "replay", "--message-id", message_id, "--dsn", gateway.dsn]
    assert main([*argv, "--queue-url", gateway.send_queue_url]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["replayed"] == 0 and answer["failed"]
    assert _status(gateway, message_id) is MessageStatus.FAILED


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "replay"],  # no criterion
        ["admin", "replay", "--tenant", "t", "--attempts", "9"],
        ["admin", "replay", "--since", "yesterday"],
        ["admin", "stuck", "--state", "queued", "--older-than", "soon"],
        ["admin", "stuck", "--state", "nope", "--older-than", "15m"],
    ],
)
def test_admin_commands_refuse_bad_arguments_with_exit_2(
    gateway: Gateway, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from sms_gateway.local.cli import main

    try:
        code = main([*argv, "--dsn", gateway.dsn, "--queue-url", gateway.send_queue_url])
    except SystemExit as exited:
        code = int(exited.code or 0)
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ({"command": "replay"}, "at least one"),
        ({"command": "replay", "tenant_id": "t", "attempts": 4}, "1..3"),
        ({"command": "stuck", "state": "queued", "older_than": "soon"}, "older_than"),
        ({"command": "purge"}, "command"),
    ],
)
def test_the_admin_function_refuses_a_bad_command_and_does_nothing(
    gateway: Gateway, command: dict[str, Any], says: str
) -> None:
    message_id = _dead_letter(gateway, "tenant-2", "admin-bad")
    answer = gateway.invoke("admin", command)
    assert says in answer["error"]
    assert _status(gateway, message_id) is MessageStatus.FAILED
    assert gateway.queue_depth("send") == 0
