"""The local stack's AWS journal, without moto: which SQS messages a journal says are still
live, and how the file is read and written (sms_gateway.local.journal)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from sms_gateway.local.journal import (
    Journal,
    JournalError,
    LiveMessage,
    live_messages,
    read_journal,
)

SEND = "123456789012/sms-gateway-send"
DEAD = "123456789012/sms-gateway-dead-letter"


def sent(message_id: str, queue: str = SEND, at: int = 1_000, **extra: Any) -> dict[str, Any]:
    return (
        LiveMessage(
            queue=queue, region="us-east-1", id=message_id, body=f"body {message_id}", sent_ms=at
        ).entry()
        | extra
    )


def received(*ids: str, queue: str = SEND, at: int = 2_000) -> dict[str, Any]:
    return {"k": "sqs.receive", "region": "us-east-1", "queue": queue, "at": at, "ids": list(ids)}


def deleted(*ids: str, queue: str = SEND) -> dict[str, Any]:
    return {"k": "sqs.delete", "region": "us-east-1", "queue": queue, "at": 3_000, "ids": list(ids)}


def test_deleted_messages_are_not_live_and_the_rest_keep_order_and_receive_counts() -> None:
    entries = [
        sent("a"),
        sent("b"),
        sent("c"),
        {"k": "ddb", "region": "us-east-1", "target": "PutItem", "body": {}},
        received("a", "b"),
        deleted("a"),
        received("b", at=2_500),
        {"k": "sqs.visibility", "queue": SEND, "id": "b", "visible_ms": 9_000},
    ]
    live = live_messages(entries)
    assert [m.id for m in live] == ["b", "c"]
    b, c = live
    assert (b.receives, b.first_receive_ms, b.visible_ms) == (2, 2_000, 9_000)
    assert (c.receives, c.first_receive_ms, c.visible_ms) == (0, None, 0)
    assert b.body == "body b"


def test_a_delete_or_receive_journaled_before_its_send_still_counts() -> None:
    # Two threads: the consumer's entry can land before the producer's.
    entries = [received("x", "y"), deleted("x"), sent("x"), sent("y")]
    live = live_messages(entries)
    assert [(m.id, m.receives) for m in live] == [("y", 1)]


def test_a_message_received_from_the_dead_letter_queue_lives_there_now() -> None:
    # moto's redrive moves the message itself, keeping its MessageId.
    entries = [sent("m"), received("m"), received("m"), received("m", queue=DEAD)]
    (message,) = live_messages(entries)
    assert (message.queue, message.receives) == (DEAD, 3)


def test_purge_drops_what_the_queue_held_then_but_not_later_sends() -> None:
    entries = [
        sent("old", at=1_000),
        sent("dead", queue=DEAD, at=1_000),
        {"k": "sqs.purge", "region": "us-east-1", "queue": SEND, "at": 1_500},
        sent("new", at=2_000),
    ]
    assert [m.id for m in live_messages(entries)] == ["dead", "new"]


def test_a_compacted_entry_round_trips() -> None:
    message = LiveMessage(
        queue=SEND,
        region="us-east-1",
        id="m",
        body="{}",
        sent_ms=5,
        attributes={"a": {"DataType": "Binary", "BinaryValue": "AAE="}},
        receives=2,
        first_receive_ms=7,
        visible_ms=11,
    )
    assert LiveMessage.from_entry(message.entry()) == message
    assert live_messages([message.entry()]) == [message]


def test_journal_appends_lines_and_replaces_atomically(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "d" / "j.jsonl")
    journal.open()
    journal.append([{"k": "one", "text": "é\n"}, {"k": "two"}])
    journal.append([])
    journal.close()
    assert (tmp_path / "d" / "j.jsonl").read_text(encoding="utf-8").count("\n") == 2
    assert read_journal(journal.path) == [{"k": "one", "text": "é\n"}, {"k": "two"}]
    journal.replace([{"k": "three"}])
    assert read_journal(journal.path) == [{"k": "three"}]
    assert not (tmp_path / "d" / "j.jsonl.tmp").exists()
    with pytest.raises(RuntimeError):
        journal.append([{"k": "closed"}])


def test_a_torn_last_line_is_skipped_but_a_corrupt_middle_line_is_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    assert read_journal(path) == []
    path.write_bytes(b'{"k":"a"}\n{"k":"b"}\n{"k":"c","bo')
    assert read_journal(path) == [{"k": "a"}, {"k": "b"}]
    path.write_bytes(b'{"k":"a"}\nnot json\n{"k":"c"}\n')
    with pytest.raises(JournalError, match="line 2"):
        read_journal(path)


def test_a_failed_append_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk (ENOSPC) or RLIMIT_FSIZE (EFBIG) after a partial write: the half line is cut
    # off again, so the next append does not glue onto it.
    journal = Journal(tmp_path / "j.jsonl")
    journal.open()
    journal.append([{"k": "one"}])
    before = journal.path.read_bytes()
    real_write = os.write
    calls = []

    def short_then_full(fd: int, data: Any) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[:7])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError, match="No space"):
        journal.append([{"k": "two", "body": "x" * 100}])
    monkeypatch.setattr(os, "write", real_write)
    assert journal.path.read_bytes() == before
    journal.append([{"k": "three"}])
    journal.close()
    assert read_journal(journal.path) == [{"k": "one"}, {"k": "three"}]


def test_a_corrupt_middle_line_is_refused_with_one_line_naming_each_remedy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"k":"a"}\n{"k":"sqs.se{"k":"b"}\n{"k":"c"}\n')
    with pytest.raises(JournalError) as raised:
        read_journal(path)
    message = str(raised.value)
    assert "\n" not in message
    assert "line 2" in message and str(path) in message
    assert "--reset-journal" in message and "--reset " in message
    assert "SQL database is kept" in message


def test_the_journal_is_private_to_its_owner_after_compaction_too(tmp_path: Path) -> None:
    # It holds phone numbers and message bodies: mode 0600 whatever the umask.
    old = os.umask(0o022)
    try:
        journal = Journal(tmp_path / "j.jsonl")
        journal.open()
        journal.append([{"k": "one"}])
        journal.close()
        assert journal.path.stat().st_mode & 0o777 == 0o600
        (tmp_path / "j.jsonl.tmp").write_text("left over")  # a crash mid-compaction
        (tmp_path / "j.jsonl.tmp").chmod(0o644)
        journal.replace([{"k": "two"}])
        assert journal.path.stat().st_mode & 0o777 == 0o600
        assert read_journal(journal.path) == [{"k": "two"}]
    finally:
        os.umask(old)
