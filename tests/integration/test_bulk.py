"""``POST /v1/messages/batch`` in-process under moto: shape, validation, idempotency as a whole,
SendMessageBatch partial failures, and the sender sending each message once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from sms_gateway import wiring
from sms_gateway.adapters.sqs import SqsMessageQueue
from sms_gateway.domain.message import derive_message_id, payload_fingerprint, retention_window
from sms_gateway.services.bulk import derive_batch_message_id
from sms_gateway.services.ingest import canonical_json
from tests.conftest import forget_clients
from tests.integration.test_ingest import assert_problem
from tests.support import Gateway, HttpAnswer

UUID_FIELDS = {"index", "message_id", "status", "to", "encoding", "segments"}


def numbers(n: int, body: str = "bulk {i}") -> list[dict[str, Any]]:
    """``n`` valid messages to distinct US numbers (+1 415 555 01xx)."""
    return [{"to": f"+1415555{100 + i:04d}", "body": body.format(i=i)} for i in range(n)]


def queued(gw: Gateway) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every message on the SendQueue: (body, string attributes). Each is received, then made
    visible again, so they stay on the queue for the sender."""
    found, handles = [], []
    while got := gw.sqs.receive_message(
        QueueUrl=gw.send_queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=60,
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        for m in got:
            attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
            found.append((json.loads(m["Body"]), attrs))
            handles.append(m["ReceiptHandle"])
    for handle in handles:
        gw.sqs.change_message_visibility(
            QueueUrl=gw.send_queue_url, ReceiptHandle=handle, VisibilityTimeout=0
        )
    return found


@dataclass
class BatchFaults:
    """SQS failing chosen SendMessageBatch entries, as SQS reports it: the call succeeds and
    names them in ``Failed`` (``SenderFault`` false, ``InternalError``), and they are not
    stored. The entries are taken out of the request before it leaves the client (so moto,
    the SQS here, never gets them) and added to the answer's ``Failed`` list. A call left
    with no entry is answered by the hook itself, as SQS would answer it (all ``Failed``).

    ``fails(entry, round)``: whether to fail ``entry`` (``{"Id", "MessageBody", ...}``) on
    its ``round``-th send (1-based, counted per entry body).
    """

    fails: Callable[[dict[str, Any], int], bool]
    sender_fault: bool = False
    sends: dict[str, int] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        keep, dropped = [], []
        for entry in params["Entries"]:
            body = entry["MessageBody"]
            self.sends[body] = self.sends.get(body, 0) + 1
            (dropped if self.fails(entry, self.sends[body]) else keep).append(entry)
        self.calls.append([e["Id"] for e in params["Entries"]])
        context["fault_failed"] = [
            {
                "Id": e["Id"],
                "SenderFault": self.sender_fault,
                "Code": "InvalidParameterValue" if self.sender_fault else "InternalError",
                "Message": "injected",
            }
            for e in dropped
        ]
        if keep:
            params["Entries"] = keep
        else:
            context["fault_short_circuit"] = True

    def _before_call(self, context: dict[str, Any], **_: Any) -> Any:
        if context.get("fault_short_circuit"):
            return SimpleNamespace(status_code=200, headers={}), {"Successful": [], "Failed": []}
        return None

    def _after_call(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("fault_failed"):
            parsed.setdefault("Failed", []).extend(context["fault_failed"])

    @contextmanager
    def installed(self) -> Iterator[BatchFaults]:
        """On the default boto3 session, for the ingest clients created while installed."""
        events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
        hooks = [
            ("provide-client-params.sqs.SendMessageBatch", self._params),
            ("before-call.sqs.SendMessageBatch", self._before_call),
            ("after-call.sqs.SendMessageBatch", self._after_call),
        ]
        for name, hook in hooks:
            events.register(name, hook)
        wiring.reset()  # the ingest container's SQS client is made anew, with the hooks
        forget_clients()
        try:
            yield self
        finally:
            for name, hook in hooks:
                events.unregister(name, hook)
            wiring.reset()
            forget_clients()


def batch_ids(gw: Gateway, tenant: str, key: str, messages: list[dict[str, Any]]) -> list[str]:
    """The ids the gateway must give ``messages`` (worked out here, from the rule)."""
    window = retention_window(gw.clock(), wiring.settings().idempotency_ttl_seconds)
    return [
        derive_batch_message_id(
            tenant, key, i, payload_fingerprint(canonical_json(message)), window
        )
        for i, message in enumerate(messages)
    ]


def test_answer_lists_each_message_and_the_sender_sends_each_once(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    messages = [
        {"to": "+14155550100", "body": "one", "reference": "r-1"},
        {"to": "hello", "body": "two"},
        {"to": "0044 20 7946 0958", "body": "€ three", "max_attempts": 2},
        {"to": "+14155550102", "body": "четыре", "from": "ACME"},
    ]
    answer = gw.post_batch("tenant-3", "bulk-shape", {"messages": messages})
    assert answer.status == 202, answer.body
    assert "idempotent-replayed" not in answer.headers
    assert answer.body["accepted"] == 3
    assert answer.body["rejected"] == 1
    items = answer.body["messages"]
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    assert items[1] == {
        "index": 1,
        "status": "rejected",
        "errors": [
            {
                "field": "to",
                "message": "phone number must be in international form: '+' or '00', "
                "country code, then digits (E.164)",
            }
        ],
    }
    expected_ids = batch_ids(gw, "tenant-3", "bulk-shape", messages)
    for i in (0, 2, 3):
        assert set(items[i]) == UUID_FIELDS
        assert items[i]["status"] == "queued"
        assert items[i]["message_id"] == expected_ids[i]
        assert uuid.UUID(items[i]["message_id"]).version == 5
    # GSM 03.38: the euro sign is an extension character (2 septets), still GSM-7
    assert [(items[i]["to"], items[i]["encoding"], items[i]["segments"]) for i in (0, 2, 3)] == [
        ("+14155550100", "GSM-7", 1),
        ("+442079460958", "GSM-7", 1),
        ("+14155550102", "UCS-2", 1),
    ]
    on_queue = {body["message_id"]: (body, attrs) for body, attrs in queued(gw)}
    assert set(on_queue) == {expected_ids[i] for i in (0, 2, 3)}
    body, attrs = on_queue[expected_ids[2]]
    assert attrs == {"message_id": expected_ids[2], "tenant_id": "tenant-3"}
    assert (body["body"], body["max_attempts"], body["idempotency_key"]) == (
        "€ three",
        2,
        "bulk-shape",
    )
    assert on_queue[expected_ids[0]][0]["reference"] == "r-1"
    assert on_queue[expected_ids[3]][0]["sender_id"] == "ACME"

    gw.run_until_idle()
    for i in (0, 2, 3):
        message_id = expected_ids[i]
        assert len(gw.sends(message_id)) == 1
        assert gw.get_message("tenant-3", message_id).body["status"] == "sent"
    assert gw.queue_depth() == 0


def test_a_bulk_of_100_is_ten_send_message_batch_calls(sqlite_gateway: Gateway) -> None:
    messages = numbers(100)
    with BatchFaults(lambda entry, n: False).installed() as faults:
        answer = sqlite_gateway.post_batch("tenant-3", "bulk-100", {"messages": messages})
    assert answer.status == 202, answer.body
    assert (answer.body["accepted"], answer.body["rejected"]) == (100, 0)
    # entry Id = the message's index; 10 calls of 10, in order
    assert faults.calls == [[str(i) for i in range(s, s + 10)] for s in range(0, 100, 10)]
    assert sqlite_gateway.queue_depth() == 100
    ids = [item["message_id"] for item in answer.body["messages"]]
    assert ids == batch_ids(sqlite_gateway, "tenant-3", "bulk-100", messages)
    assert len(set(ids)) == 100
    # one idempotency record for the request, its answer stored packed: ~13 KB of JSON in
    # about 4 KB (the completing UpdateItem costs 5 write units, not 14)
    (record,) = boto3.client("dynamodb").scan(TableName=wiring.settings().idempotency_table)[
        "Items"
    ]
    assert record["status"]["S"] == "COMPLETED"
    assert len(json.dumps(answer.body)) > 12_000
    assert len(record["data"]["S"]) < 4500
    replay = sqlite_gateway.post_batch("tenant-3", "bulk-100", {"messages": messages})
    assert replay.body == answer.body


def test_bulk_ids_never_equal_single_route_ids(sqlite_gateway: Gateway) -> None:
    message = {"to": "+14155550100", "body": "same"}
    window = retention_window(sqlite_gateway.clock(), 86_400)
    item_hash = payload_fingerprint(canonical_json(message))
    single = sqlite_gateway.post_message("tenant-3", "k-single", message)
    bulk = sqlite_gateway.post_batch("tenant-3", "k-bulk", {"messages": [message]})
    assert single.body["message_id"] == derive_message_id("tenant-3", "k-single", item_hash, window)
    assert bulk.body["messages"][0]["message_id"] == derive_batch_message_id(
        "tenant-3", "k-bulk", 0, item_hash, window
    )
    # same tenant, key, payload hash and window on both routes: still different ids
    assert derive_message_id("tenant-3", "k", item_hash, window) != derive_batch_message_id(
        "tenant-3", "k", 0, item_hash, window
    )
    # the same message at another index is another message
    twice = sqlite_gateway.post_batch("tenant-3", "k-twice", {"messages": [message, message]})
    first, second = (item["message_id"] for item in twice.body["messages"])
    assert first != second


def test_replay_is_the_stored_answer_and_queues_nothing(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    text = '{"messages": [{"to": "+14155550100", "body": "a"}, {"to": "x", "body": "b"}]}'
    reordered = '{ "messages" : [ {"body":"a","to":"+14155550100"}, {"body":"b","to":"x"} ] }'
    first = gw.post_batch("tenant-3", "bulk-replay", text)
    assert first.status == 202
    depth = gw.queue_depth()
    assert depth == 1
    again = gw.post_batch("tenant-3", "bulk-replay", reordered)
    assert again.status == 202
    assert again.body == first.body
    assert again.headers["idempotent-replayed"] == "true"
    assert gw.queue_depth() == depth

    changed = gw.post_batch(
        "tenant-3", "bulk-replay", {"messages": [{"to": "+14155550100", "body": "A"}]}
    )
    assert_problem(changed, 422)
    assert changed.body["type"].endswith("idempotency-key-reused")
    assert gw.queue_depth() == depth


def test_a_key_names_one_request_across_both_routes(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    message = {"to": "+14155550100", "body": "hi"}
    assert gw.post_message("tenant-3", "k-shared", message).status == 202
    reused = gw.post_batch("tenant-3", "k-shared", {"messages": [message]})
    assert_problem(reused, 422)
    assert reused.body["type"].endswith("idempotency-key-reused")
    assert gw.post_batch("tenant-3", "k-shared-2", {"messages": [message]}).status == 202
    assert_problem(gw.post_message("tenant-3", "k-shared-2", message), 422)
    # keys stay tenant-scoped
    other = gw.post_batch("tenant-1", "k-shared", {"messages": [message]})
    assert other.status == 202
    assert "idempotent-replayed" not in other.headers
    assert gw.queue_depth() == 3


def test_same_key_while_the_first_is_in_flight_is_409(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = sqlite_gateway
    inner: dict[str, HttpAnswer] = {}
    original = SqsMessageQueue.send_batch
    body = {"messages": numbers(3)}

    def send_and_retry(self: SqsMessageQueue, entries: Any) -> Any:
        if "second" not in inner:  # the client retries while the first request is running
            inner["second"] = gw.post_batch("tenant-3", "bulk-busy", body)
        return original(self, entries)

    monkeypatch.setattr(SqsMessageQueue, "send_batch", send_and_retry)
    first = gw.post_batch("tenant-3", "bulk-busy", body)
    assert first.status == 202
    assert_problem(inner["second"], 409)
    assert inner["second"].headers["retry-after"] == "1"
    assert gw.queue_depth() == 3


@pytest.mark.parametrize("key", [None, "", "x" * 256, "clé"])
def test_bad_idempotency_key_is_400(sqlite_gateway: Gateway, key: str | None) -> None:
    answer = sqlite_gateway.post_batch("tenant-3", key, {"messages": numbers(2)})
    assert_problem(answer, 400, "Idempotency-Key")
    assert sqlite_gateway.queue_depth() == 0


def test_missing_tenant_is_401(sqlite_gateway: Gateway) -> None:
    assert_problem(sqlite_gateway.post_batch(None, "k", {"messages": numbers(1)}), 401)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"messages": []}, {"messages": "must hold at least one message"}),
        (
            {"messages": numbers(101)},
            {"messages": "must hold at most 100 messages (got 101)"},
        ),
        ({}, {"messages": "is required"}),
        (
            {"messages": {"to": "+14155550100"}},
            {"messages": "must be an array of 1 to 100 messages"},
        ),
        (
            {"messages": numbers(1), "all_or_nothing": "yes", "priority": 1},
            {
                "all_or_nothing": "must be true or false",
                "priority": "unknown field: not part of this API",
            },
        ),
        (
            {"messages": numbers(1), "all_or_nothing": 1},
            {"all_or_nothing": "must be true or false"},
        ),
        ([{"to": "+14155550100", "body": "hi"}], {"$": "request body must be a JSON object"}),
    ],
)
def test_malformed_requests_are_422_naming_the_member(
    sqlite_gateway: Gateway, body: Any, errors: dict[str, str]
) -> None:
    answer = sqlite_gateway.post_batch("tenant-3", "bulk-bad", body)
    assert_problem(answer, 422, *errors)
    assert {e["field"]: e["message"] for e in answer.body["errors"]} == errors
    assert sqlite_gateway.queue_depth() == 0


def test_exactly_100_is_accepted(sqlite_gateway: Gateway) -> None:
    answer = sqlite_gateway.post_batch("tenant-3", "bulk-max", {"messages": numbers(100)})
    assert answer.status == 202
    assert answer.body["accepted"] == 100


def test_all_or_nothing_rejects_the_request_and_keeps_the_key(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    messages = [*numbers(3), {"to": "+10000000001", "body": ""}, {"to": "+14155550199"}]
    answer = gw.post_batch("tenant-3", "bulk-aon", {"messages": messages, "all_or_nothing": True})
    assert_problem(answer, 422, "messages[3].to", "messages[3].body", "messages[4].body")
    assert answer.body["errors"][0] == {
        "field": "messages[3].to",
        "message": "area code 000 does not exist: North American area codes start with 2-9",
    }
    assert "all_or_nothing" in answer.body["detail"]
    assert gw.queue_depth() == 0
    # nothing was stored: the key is still free for the corrected request
    fixed = gw.post_batch("tenant-3", "bulk-aon", {"messages": numbers(3), "all_or_nothing": True})
    assert fixed.status == 202
    assert "idempotent-replayed" not in fixed.headers
    assert gw.queue_depth() == 3


def test_a_request_without_a_valid_message_is_422(sqlite_gateway: Gateway) -> None:
    answer = sqlite_gateway.post_batch(
        "tenant-3", "bulk-none", {"messages": [{"to": "x", "body": "a"}, "not an object"]}
    )
    assert_problem(answer, 422, "messages[0].to", "messages[1]")
    assert sqlite_gateway.queue_depth() == 0


def test_entries_sqs_fails_once_are_retried_alone_and_queued_once(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    messages = numbers(25)
    with BatchFaults(lambda entry, n: entry["Id"] in {"3", "17", "24"} and n == 1).installed() as f:
        answer = gw.post_batch("tenant-3", "bulk-partial", {"messages": messages})
    assert answer.status == 202, answer.body
    assert answer.body["accepted"] == 25
    # three calls of 10, 10 and 5, then one call holding only the three failed entries
    assert [len(c) for c in f.calls] == [10, 10, 5, 3]
    assert f.calls[-1] == ["3", "17", "24"]
    ids = [body["message_id"] for body, _ in queued(gw)]
    assert sorted(ids) == sorted(batch_ids(gw, "tenant-3", "bulk-partial", messages))


def test_entries_sqs_keeps_failing_answer_503_and_a_retry_sends_each_once(
    sqlite_gateway: Gateway,
) -> None:
    """SQS fails two entries on every round: the request is not a 202 (98 messages are
    queued, 2 are not); the client retries with the same key, every message is queued again
    under the same id, and the sender still sends each one exactly once."""
    gw = sqlite_gateway
    messages = numbers(100)
    with BatchFaults(lambda entry, n: entry["Id"] in {"7", "42"}).installed() as faults:
        failed = gw.post_batch("tenant-3", "bulk-outage", {"messages": messages})
    assert_problem(failed, 503)
    assert failed.body["type"].endswith("dependency-unavailable")
    assert failed.headers["retry-after"] == "2"
    assert failed.body["detail"].startswith("98 of 100 messages were queued and will be sent")
    assert "InternalError" in failed.body["detail"]
    # 10 calls, then two further rounds (the bounded retries) of only the failed entries
    assert faults.calls[10:] == [["7", "42"], ["7", "42"]]
    assert len(faults.calls) == 12
    assert gw.queue_depth() == 98

    retried = gw.post_batch("tenant-3", "bulk-outage", {"messages": messages})
    assert retried.status == 202, retried.body
    assert "idempotent-replayed" not in retried.headers
    ids = [item["message_id"] for item in retried.body["messages"]]
    assert ids == batch_ids(gw, "tenant-3", "bulk-outage", messages)
    assert gw.queue_depth() == 198  # 98 messages are on the queue twice, same ids

    gw.run_until_idle()
    for message_id in ids:
        assert len(gw.sends(message_id)) == 1, message_id
    statuses = {gw.get_message("tenant-3", m).body["status"] for m in ids}
    assert statuses == {"sent"}
    assert gw.queue_depth() == 0
    # and now the key replays the 202
    replay = gw.post_batch("tenant-3", "bulk-outage", {"messages": messages})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.body == retried.body


def test_an_entry_sqs_refuses_as_malformed_is_500_and_not_retried(
    sqlite_gateway: Gateway,
) -> None:
    gw = sqlite_gateway
    with BatchFaults(lambda entry, n: entry["Id"] == "5", sender_fault=True).installed() as f:
        answer = gw.post_batch("tenant-3", "bulk-refused", {"messages": numbers(12)})
    assert_problem(answer, 500)
    assert answer.body["type"].endswith("internal-error")
    assert [len(c) for c in f.calls] == [10, 2]  # entry 5 was not sent again
    assert gw.queue_depth() == 11
    # the key stays usable
    assert gw.post_batch("tenant-3", "bulk-refused", {"messages": numbers(12)}).status == 202


def test_calls_stay_within_sqs_batch_payload_limit(sqlite_gateway: Gateway) -> None:
    """Ten entries of 60 KiB are 600 KiB: more than one SendMessageBatch may carry (256 KiB),
    so they go in calls of at most four; moto refuses a call over the limit."""
    from sms_gateway.services.bulk import BatchEntry

    queue = SqsMessageQueue(sqlite_gateway.sqs, sqlite_gateway.send_queue_url, "")
    entries = [BatchEntry(str(i), "x" * 60 * 1024, {"n": str(i)}) for i in range(10)]
    result = queue.send_batch(entries)
    assert sorted(result.sent, key=int) == [str(i) for i in range(10)]
    assert result.failed == {}
    assert result.calls == 3
    assert sqlite_gateway.queue_depth() == 10
    with pytest.raises(ValueError, match="unique"):
        queue.send_batch([entries[0], entries[0]])
