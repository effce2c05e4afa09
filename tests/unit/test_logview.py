"""The local stack's log for people: real Powertools Logger lines and EMF blobs (captured from
the gateway's own Logger and metrics adapter, not typed by hand) rendered as exact lines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.local.logview import (
    QUIET_WARNINGS,
    LogView,
)
from sms_gateway.observability import PowertoolsMetrics, log_transition, logger
from tests.support import powertools_log

MESSAGE_ID = "529d92ce-adcd-500c-be03-cdb5e4fed26c"
REQUEST_ID = "d9541e41-7c0b-4a57-9d0e-2f1c1f1b7a10"
NOON = datetime(2026, 2, 5, 12, 0, 1, 234_000, tzinfo=UTC)


def shown(line: str) -> str:
    """``HH:MM:SS.mmm`` of a Powertools line, read off its ``timestamp`` text
    (``2026-02-05 12:00:01,234+0000``) in the zone that text names."""
    return str(json.loads(line)["timestamp"])[11:23].replace(",", ".")


def zone_of(line: str) -> timezone:
    offset = json.loads(line)["timestamp"][-5:]  # +HHMM
    sign = -1 if offset[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))


def view_for(
    lines: list[str], *, metrics_path: Path | None = None, verbose: bool = False
) -> tuple[LogView, io.StringIO]:
    """A view writing to a buffer, showing times in the zone of ``lines`` (UTC without)."""
    out = io.StringIO()
    zone = zone_of(lines[0]) if lines else UTC
    view = LogView(out, metrics_path=metrics_path, verbose=verbose, tz=zone, clock=lambda: NOON)
    return view, out


def test_transitions_and_accepted_become_one_line_each() -> None:
    with powertools_log() as log:
        logger.set_correlation_id(REQUEST_ID)
        logger.info(  # the shape IngestService logs
            "accepted",
            extra={
                "message_id": MESSAGE_ID,
                "tenant_id": "tenant-1",
                "segments": 1,
                "encoding": "GSM-7",
            },
        )
        logger.set_correlation_id(None)
        log_transition(
            MESSAGE_ID,
            "tenant-1",
            MessageStatus.QUEUED,
            MessageStatus.SENDING,
            attempt=1,
            provider="provider-a",
        )
        log_transition(
            MESSAGE_ID,
            "tenant-1",
            MessageStatus.SENDING,
            MessageStatus.QUEUED,
            attempt=1,
            provider="provider-a",
            reason_code=ReasonCode.PROVIDER_TRANSIENT,
            latency_ms=3,
        )
        log_transition(
            MESSAGE_ID,
            "tenant-1",
            MessageStatus.SENDING,
            MessageStatus.SENT,
            attempt=2,
            provider="provider-a",
            latency_ms=12,
        )
        log_transition(
            MESSAGE_ID,
            "tenant-2",
            MessageStatus.QUEUED,
            MessageStatus.FAILED,
            reason_code="dead_letter",
        )
        logger.info("duplicate delivery", extra={"status": "sent"})
    raw = log.getvalue().splitlines()
    assert len(raw) == 6
    view, out = view_for(raw)
    for line in raw:
        view.feed("SenderFunction", line + "\n")
    t = [shown(line) for line in raw]
    assert out.getvalue().splitlines() == [
        f"{t[0]} msg 529d92ce… tenant-1 accepted 1 segment GSM-7 req=d9541e41…",
        f"{t[1]} msg 529d92ce… tenant-1 queued→sending attempt 1 provider-a",
        f"{t[2]} msg 529d92ce… tenant-1 sending→queued attempt 1 provider-a 3ms provider_transient",
        f"{t[3]} msg 529d92ce… tenant-1 sending→sent attempt 2 provider-a 12ms",
        f"{t[4]} msg 529d92ce… tenant-2 queued→failed dead_letter",
    ]  # "duplicate delivery" (another INFO line) is hidden


def test_warnings_and_errors_show_their_keys_and_exception() -> None:
    with powertools_log() as log:
        logger.warning("message store unavailable", extra={"error": "db down", "requeues": 0})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("record failed unexpectedly")
    raw = log.getvalue().splitlines()
    warning, error = (json.loads(line) for line in raw)
    view, out = view_for(raw)
    for line in raw:
        view.feed("SenderFunction", line)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        f"{shown(raw[0])} WARNING SenderFunction message store unavailable "
        f'error="db down" requeues=0 ({warning["location"]})'
    )
    assert lines[1] == (
        f"{shown(raw[1])} ERROR SenderFunction record failed unexpectedly ({error['location']})"
    )
    assert lines[2] == "    Traceback (most recent call last):"
    assert lines[-1] == "    ValueError: boom"
    assert len(lines) == 2 + len(error["exception"].splitlines())


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Real EMF blobs: one dimensioned metric (written at once) and one flushed set."""
    from sms_gateway.observability import metrics

    capsys.readouterr()
    PowertoolsMetrics().add("SendLatency", 12, "Milliseconds", provider="provider-a")
    PowertoolsMetrics().add("MessagesAccepted", 1, "Count")
    metrics.flush_metrics()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all('"_aws"' in line for line in lines)
    return lines


def test_metrics_go_to_the_metrics_file_never_to_the_console(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blobs = emf_lines(capsys)
    path = tmp_path / "data" / "metrics.jsonl"
    view, out = view_for([], metrics_path=path)
    for blob in blobs:
        view.feed("SenderFunction", blob + "\n")
    view.close()
    view.feed("IngestFunction", blobs[1])  # reopens, appends
    view.close()
    assert out.getvalue() == ""
    assert path.read_text().splitlines() == [*blobs, blobs[1]]
    assert json.loads(path.read_text().splitlines()[0])["SendLatency"] == [12.0]


def test_verbose_shows_every_raw_line_metrics_included(capsys: pytest.CaptureFixture[str]) -> None:
    blobs = emf_lines(capsys)
    with powertools_log() as log:
        logger.info("duplicate delivery", extra={"status": "sent"})
        log_transition(MESSAGE_ID, "tenant-1", MessageStatus.SENT, MessageStatus.DELIVERED)
    raw = log.getvalue().splitlines()
    view, out = view_for(raw, verbose=True)
    for line in [*blobs, *raw, "plain text"]:
        view.feed("DlqFunction", line)
    assert out.getvalue().splitlines() == [
        f"DlqFunction {blobs[0]}",
        f"DlqFunction {blobs[1]}",
        f"DlqFunction {raw[0]}",
        f"DlqFunction {raw[1]}",
        f"{shown(raw[1])} msg 529d92ce… tenant-1 sent→delivered",
        "DlqFunction plain text",
    ]


def test_lines_that_are_not_powertools_pass_through() -> None:
    view, out = view_for([])
    for line in ["Traceback (most recent call last):", '{"not": "a log line"}', "[1, 2]", "{bad"]:
        view.feed("StatusFunction", line + "\n")
    assert out.getvalue().splitlines() == [
        "Traceback (most recent call last):",
        '{"not": "a log line"}',
        "[1, 2]",
        "{bad",
    ]


def test_a_request_is_one_line() -> None:
    view, out = view_for([])
    view.request("POST", "/v1/messages", 202, 40.6, REQUEST_ID, "tenant-1")
    view.request("POST", "/v1/receipts", 200, 0.4, "abc", None)
    assert out.getvalue().splitlines() == [
        "12:00:01.234 POST /v1/messages 202 41ms tenant-1 req=d9541e41…",
        "12:00:01.234 POST /v1/receipts 200 0ms - req=abc",
    ]


EMPTY_FLUSH = """
from aws_lambda_powertools import Metrics
Metrics(namespace="SmsGateway", service="sms-gateway").flush_metrics()
print("flushed")
"""


@pytest.mark.parametrize("filters", ["", QUIET_WARNINGS])
def test_pythonwarnings_filter_silences_powertools_empty_metrics_warning(filters: str) -> None:
    """The filter the local stack puts in the handlers' environment works as Python reads it at
    a process start; without it, Powertools warns (so the test sees the real warning)."""
    env = {**os.environ, "PYTHONWARNINGS": filters}
    done = subprocess.run(
        [sys.executable, "-c", EMPTY_FLUSH], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout == "flushed\n"
    if filters:
        assert done.stderr == ""
    else:
        assert "UserWarning: No application metrics to publish" in done.stderr


def test_the_cli_keeps_waitress_framework_warnings_off_the_console() -> None:
    import logging

    from sms_gateway.local.cli import configure_logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("waitress").level)
    try:
        configure_logging(verbose=False)
        # "total open connections reached the connection limit", "Task queue depth is N"
        assert not logging.getLogger("waitress").isEnabledFor(logging.WARNING)
        assert not logging.getLogger("waitress.queue").isEnabledFor(logging.WARNING)
        assert logging.getLogger("waitress").isEnabledFor(logging.ERROR)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("waitress").setLevel(saved[2])
