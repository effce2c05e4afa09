"""Bulk send's pure parts: message ids, the packed stored answer, SendMessageBatch chunks,
request validation, and the bench's DynamoDB size arithmetic."""

from __future__ import annotations

import uuid

import pytest

from bench.bulk_figures import item_bytes, write_units
from sms_gateway.adapters.sqs import _chunks
from sms_gateway.api.batch import batch_problem, validate_batch_request
from sms_gateway.api.problems import Problem
from sms_gateway.domain.message import MESSAGE_ID_NAMESPACE, derive_message_id
from sms_gateway.services.bulk import (
    BATCH_MESSAGE_ID_NAMESPACE,
    BatchEntry,
    derive_batch_message_id,
    pack_answer,
    unpack_answer,
)


def test_batch_ids_are_uuid5_reproducible_and_depend_on_every_input() -> None:
    base = ("tenant-1", "key", 3, "ab" * 32, 20_000)
    first = derive_batch_message_id(*base)
    assert first == derive_batch_message_id(*base)
    assert uuid.UUID(first).version == 5
    # the rule, worked out by hand: uuid5 over the fields joined by the unit separator
    assert first == str(
        uuid.uuid5(BATCH_MESSAGE_ID_NAMESPACE, "tenant-1\x1fkey\x1f3\x1f" + "ab" * 32 + "\x1f20000")
    )
    variants = [
        ("tenant-2", "key", 3, "ab" * 32, 20_000),
        ("tenant-1", "key2", 3, "ab" * 32, 20_000),
        ("tenant-1", "key", 4, "ab" * 32, 20_000),
        ("tenant-1", "key", 3, "cd" * 32, 20_000),
        ("tenant-1", "key", 3, "ab" * 32, 20_001),
    ]
    assert len({first, *(derive_batch_message_id(*v) for v in variants)}) == 6
    assert BATCH_MESSAGE_ID_NAMESPACE != MESSAGE_ID_NAMESPACE
    assert first != derive_message_id("tenant-1", "key", "ab" * 32, 20_000)


def test_packed_answer_comes_back_the_same() -> None:
    answer = {
        "messages": [
            {"index": 0, "status": "rejected", "errors": [{"field": "to", "message": "é"}]}
        ],
        "accepted": 0,
        "rejected": 1,
    }
    packed = pack_answer(answer)
    assert set(packed) == {"bulk_answer_zlib"}
    assert unpack_answer(packed) == answer
    assert unpack_answer({**packed, "__replayed__": True}) == {**answer, "__replayed__": True}
    single = {"message_id": "m", "status": "queued"}
    assert unpack_answer(single) is single


def test_chunks_hold_at_most_10_entries_and_256_kib() -> None:
    small = [BatchEntry(str(i), "x", {}) for i in range(25)]
    assert [len(c) for c in _chunks(small)] == [10, 10, 5]
    assert [e.entry_id for c in _chunks(small) for e in c] == [str(i) for i in range(25)]
    # 100 KiB bodies: two fit in 256 KiB, a third does not
    big = [BatchEntry(str(i), "x" * 100 * 1024, {"message_id": "m"}) for i in range(5)]
    assert [len(c) for c in _chunks(big)] == [2, 2, 1]


def test_item_errors_are_per_message_and_named_by_index_in_a_problem() -> None:
    batch = validate_batch_request(
        {"messages": [{"to": "+14155550100", "body": "hi"}, {"to": "+14155550100"}, 7]},
        max_segments=10,
        max_attempts_limit=3,
    )
    assert [i.index for i in batch.accepted] == [0]
    assert [(i.index, [(e.field, e.message) for e in i.errors]) for i in batch.rejected] == [
        (1, [("body", "is required")]),
        (2, [("$", "request body must be a JSON object")]),
    ]
    problem = batch_problem(batch.rejected, total=3, all_or_nothing=True)
    assert problem.status == 422
    assert [e.field for e in problem.errors] == ["messages[1].body", "messages[2]"]


@pytest.mark.parametrize("value", [None, True, 1, "true"])
def test_all_or_nothing_must_be_a_json_boolean(value: object) -> None:
    payload = {"messages": [{"to": "+14155550100", "body": "hi"}], "all_or_nothing": value}
    if value is True:
        assert validate_batch_request(payload, max_segments=10, max_attempts_limit=3).all_or_nothing
        return
    with pytest.raises(Problem) as raised:
        validate_batch_request(payload, max_segments=10, max_attempts_limit=3)
    assert [e.field for e in raised.value.errors] == ["all_or_nothing"]


def test_dynamodb_item_size_and_write_units() -> None:
    # names + values: "id"(2) + 5, "n"(1) + 12345 -> 3 digits pairs + 1 = 4 bytes
    assert item_bytes({"id": {"S": "abcde"}, "n": {"N": "12345"}}) == 2 + 5 + 1 + 4
    assert [write_units(b) for b in (1, 1024, 1025, 4104)] == [1, 1, 2, 5]
