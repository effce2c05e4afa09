"""The local stack's log for people: the functions' raw output turned into short lines.

The handlers write what they would write in Lambda: Powertools Logger JSON lines and
CloudWatch EMF metric blobs (``{"_aws": {"CloudWatchMetrics": ...}}``), one per line. In
CloudWatch that is what you want; on a terminal it buries the few lines that matter.
:class:`LogView` reads those lines and prints:

- one line per HTTP request (from the front, :meth:`LogView.request`)::

      12:00:01.234 POST /v1/messages 202 41ms tenant-1 req=0f6c1e2a…

- one line per message state transition (the services' ``transition`` log,
  :func:`sms_gateway.observability.log_transition`) and per accepted message::

      12:00:01.230 msg 3f2a9c01… tenant-1 accepted 1 segment GSM-7 req=0f6c1e2a…
      12:00:02.001 msg 3f2a9c01… tenant-1 queued→sending attempt 1 provider-a
      12:00:02.013 msg 3f2a9c01… tenant-1 sending→sent attempt 1 provider-a 12ms

- warnings and errors with their extra keys and exception (traceback indented);

and nothing else: other INFO/DEBUG lines are hidden, EMF blobs are appended to a metrics file
(JSON Lines, one blob a line, as CloudWatch would ingest them) and never reach the console.
A line that is not JSON (a traceback on stderr, a ``print``) is passed through unchanged.
With ``verbose``, every raw line is shown as well (prefixed with its function's logical id),
metrics included.

Times are shown as ``HH:MM:SS.mmm`` in ``tz`` (default: the machine's zone); a log line's time
is its own ``timestamp``, a request's is when its answer was written.

The local stack runs each function in processes of its own (:mod:`sms_gateway.local.runtime`)
and passes every line they write to ``LocalStack(log_sink=view.feed)``; the HTTP front's
per-request hook calls :meth:`LogView.request`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "METRICS_FILE",
    "QUIET_WARNINGS",
    "LogView",
    "short_id",
]

METRICS_FILE: Final = "metrics.jsonl"
"""The metrics file's name in the local stack's data directory."""

_EMPTY_METRICS: Final = "No application metrics to publish"
QUIET_WARNINGS: Final = f"ignore:{_EMPTY_METRICS}:UserWarning"
"""A ``PYTHONWARNINGS`` / ``-W`` filter for Powertools' ``UserWarning`` at the end of an
invocation that recorded no dimensionless metric (``@metrics.log_metrics`` ->
``flush_metrics(raise_on_empty_metrics=False)``). It is not a fault here: the gateway's
dimensioned metrics go out at once as their own blobs (``single_metric``), so most invocations
end with an empty set. The message is matched as a literal prefix, the category exactly."""


# Keys Powertools' Logger adds to every line (and the exception ones): not shown as extras.
_POWERTOOLS_KEYS: Final = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "correlation_id",
        "xray_trace_id",
        "sampling_rate",
        "exception",
        "exception_name",
        "stack_trace",
    }
)
_SHOWN_LEVELS: Final = frozenset({"WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"})
# Powertools' default ``datefmt`` renders as ``2026-02-05 12:00:01,234+0000``.
_TIMESTAMP_FORMATS: Final = ("%Y-%m-%d %H:%M:%S,%f%z", "%Y-%m-%dT%H:%M:%S.%f%z")
_ID_CHARS: Final = 8


def short_id(value: str) -> str:
    """The first 8 characters of an id, with ``…`` when there were more (``3f2a9c01…``)."""
    return value if len(value) <= _ID_CHARS else f"{value[:_ID_CHARS]}…"


class LogView:
    """Turns the functions' raw output lines into lines for people (see the module docstring).

    Args:
        out: where the readable lines go (one ``write`` + ``flush`` per line).
        metrics_path: the JSON Lines file EMF blobs are appended to (its directory is created
            on the first blob); None drops them (still shown when ``verbose``).
        verbose: also show every raw line, prefixed with its function, metrics included.
        tz: the zone times are shown in; default the machine's.
        clock: the current time, for request lines and log lines without a readable
            ``timestamp`` (aware datetime; default :func:`datetime.now`).

    Thread-safe: lines may be fed from several threads (one per function or request) at once;
    each call writes whole lines.
    """

    def __init__(
        self,
        out: IO[str],
        *,
        metrics_path: Path | None = None,
        verbose: bool = False,
        tz: tzinfo | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.out = out
        self.metrics_path = metrics_path
        self.verbose = verbose
        self._tz = tz
        self._clock = clock or (lambda: datetime.now().astimezone())
        self._lock = threading.Lock()
        self._metrics_file: IO[str] | None = None

    # -- the interface -----------------------------------------------------------------------

    def feed(self, function: str, line: str) -> None:
        """Handle one raw output line of ``function`` (its template logical id, e.g.
        ``SenderFunction``). ``line`` may end with its newline. Never raises for odd input:
        what cannot be read as a Powertools line or an EMF blob is passed through."""
        line = line.rstrip("\r\n")
        record = _json_object(line)
        shown: list[str] = []
        if self.verbose:
            shown.append(f"{function} {line}")
        if record is None:
            if not self.verbose:
                shown.append(line)
        elif _is_emf(record):
            self._write_metric(line)
        elif _is_log(record):
            shown += self._render_log(function, record)
        elif not self.verbose:
            shown.append(line)  # JSON, but not ours to read
        self._emit(shown)

    def request(
        self,
        method: str,
        path: str,
        status: int,
        latency_ms: float,
        request_id: str,
        tenant: str | None,
    ) -> None:
        """Show one HTTP request as ``HH:MM:SS.mmm METHOD PATH STATUS NNms TENANT req=ID…``.

        ``latency_ms``: from the request read to the answer (milliseconds, rounded to whole
        ones); ``tenant``: None (shown ``-``) when the request named none."""
        when = self._format_time(self._clock())
        self._emit(
            [
                f"{when} {method} {path} {status} {round(latency_ms)}ms {tenant or '-'} "
                f"req={short_id(request_id)}"
            ]
        )

    def close(self) -> None:
        """Close the metrics file (a later blob reopens it)."""
        with self._lock:
            if self._metrics_file is not None:
                self._metrics_file.close()
                self._metrics_file = None

    # -- rendering -----------------------------------------------------------------------------

    def _render_log(self, function: str, record: dict[str, Any]) -> list[str]:
        level = str(record.get("level", "")).upper()
        message = record.get("message")
        if level not in _SHOWN_LEVELS:
            if message == "transition" and "to_status" in record:
                return [self._render_transition(record)]
            if message == "accepted" and "message_id" in record:
                return [self._render_accepted(record)]
            return []
        text = message if isinstance(message, str) else json.dumps(message)
        extras = " ".join(
            f"{key}={_value(value)}"
            for key, value in record.items()
            if key not in _POWERTOOLS_KEYS and value is not None
        )
        where = f" ({record['location']})" if record.get("location") else ""
        head = f"{self._time_of(record)} {level} {function} {text}"
        lines = [f"{head} {extras}{where}" if extras else f"{head}{where}"]
        exception = record.get("exception")
        if isinstance(exception, str) and exception:
            lines += [f"    {part}" for part in exception.splitlines()]
        return lines

    def _render_transition(self, record: dict[str, Any]) -> str:
        parts = [
            self._time_of(record),
            "msg",
            short_id(str(record.get("message_id", "?"))),
            str(record.get("tenant_id") or "-"),
            f"{record.get('from_status') or ''}→{record['to_status']}",
        ]
        if record.get("attempt") is not None:
            parts.append(f"attempt {record['attempt']}")
        if record.get("provider"):
            parts.append(str(record["provider"]))
        if record.get("latency_ms") is not None:
            parts.append(f"{record['latency_ms']}ms")
        if record.get("reason_code"):
            parts.append(str(record["reason_code"]))
        return " ".join(parts)

    def _render_accepted(self, record: dict[str, Any]) -> str:
        parts = [
            self._time_of(record),
            "msg",
            short_id(str(record["message_id"])),
            str(record.get("tenant_id") or "-"),
            "accepted",
        ]
        segments = record.get("segments")
        if segments is not None:
            parts.append(f"{segments} segment" + ("" if segments == 1 else "s"))
        if record.get("encoding"):
            parts.append(str(record["encoding"]))
        if record.get("correlation_id"):
            parts.append(f"req={short_id(str(record['correlation_id']))}")
        return " ".join(parts)

    def _time_of(self, record: dict[str, Any]) -> str:
        raw = record.get("timestamp")
        if isinstance(raw, str):
            for pattern in _TIMESTAMP_FORMATS:
                try:
                    return self._format_time(datetime.strptime(raw, pattern))
                except ValueError:
                    continue
        return self._format_time(self._clock())

    def _format_time(self, when: datetime) -> str:
        local = when.astimezone(self._tz)
        return f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}"

    # -- output --------------------------------------------------------------------------------

    def _emit(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._lock:
            self.out.write("".join(f"{line}\n" for line in lines))
            self.out.flush()

    def _write_metric(self, line: str) -> None:
        if self.metrics_path is None:
            return
        with self._lock:
            if self._metrics_file is None:
                self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
                self._metrics_file = self.metrics_path.open("a", encoding="utf-8")
            self._metrics_file.write(line.strip() + "\n")
            self._metrics_file.flush()


def _json_object(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _is_emf(record: dict[str, Any]) -> bool:
    aws = record.get("_aws")
    return isinstance(aws, dict) and "CloudWatchMetrics" in aws


def _is_log(record: dict[str, Any]) -> bool:
    return "level" in record and "message" in record


def _value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if (" " in value or not value) else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
