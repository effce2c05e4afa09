"""The sender's SQL figures (issue 6, item 8), as the PostgreSQL server receives them.

Statements are counted on the wire: the sender's engine connects through a loopback TCP
proxy that reads the PostgreSQL frontend/backend protocol, counting every statement the
server is asked to run (an ``Execute`` of the extended protocol, which pg8000 uses, or a
simple ``Query``), BEGIN/COMMIT/ROLLBACK and pings included, and every ``ErrorResponse``
the server answers. Nothing in the gateway is instrumented: this is what the server sees.

Figures, each printed with its goal:

- statements per SMS, first-attempt success, at batches of 10 and of 1;
- statements per SMS with one retry (provider-a fails each first attempt), batches of 10:
  both invocations (the failing one and the one that sends) counted;
- error statements (ErrorResponse from the server) over all of the above;
- warm in-process throughput (SMS/s, median of ``--runs``) with an instant provider, on
  PostgreSQL (connected directly, not through the counting proxy) and on SQLite;
- the wall time of a batch of 10 whose provider takes 200 ms per send.

The sender runs in-process as the SenderFunction runs it (the real
:class:`~sms_gateway.services.sender.SenderService` over the SQL stores, warm: engine,
policy cache and thread pool already up), with a recording SQS stand-in.

Usage (from the repository root)::

    SMS_GATEWAY_BENCH_POSTGRES_DSN=postgresql+pg8000://postgres@127.0.0.1:5432/bench_sender \\
        python -m bench.sql_figures [--messages N] [--runs R]

The database named in the DSN is emptied and migrated: give it one of its own.
``SMS_GATEWAY_TEST_POSTGRES_DSN`` is used when the bench variable is not set.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, make_url, text

from sms_gateway.domain.content import Encoding
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.providers.base import ProviderRegistry
from sms_gateway.providers.simulator import SimulatorProvider
from sms_gateway.services.ports import NullMetrics
from sms_gateway.services.receipts import ReceiptService
from sms_gateway.services.routing import CachedPolicyResolver
from sms_gateway.services.sender import SenderConfig, SenderService, SqsRecord
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.policies import SqlPolicyStore
from sms_gateway.storage.repository import MessageRepository
from sms_gateway.storage.schema import run_migrations
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import metadata

DSN_VARIABLES = ("SMS_GATEWAY_BENCH_POSTGRES_DSN", "SMS_GATEWAY_TEST_POSTGRES_DSN")

GOALS = {
    "batch10": 1.0,
    "batch1": 4.0,
    "retry10": 2.0,
    "errors": 0,
    "throughput": 600.0,
    "slow_batch": 0.35,
}

# ---- the wire counter ----------------------------------------------------------------------

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass
class WireCounts:
    """What the server was asked and answered. ``statements``: by first word (BEGIN,
    INSERT, WITH, SELECT, ...); ``errors``: ErrorResponse messages."""

    statements: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    @property
    def total(self) -> int:
        return sum(self.statements.values())


class PgWireProxy:
    """A loopback TCP proxy to a PostgreSQL server that counts statements and errors."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.counts = WireCounts()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> WireCounts:
        """The counts so far; start again from zero."""
        with self._lock:
            counts, self.counts = self.counts, WireCounts()
        return counts

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # SSL/GSS requests are answered with one untyped byte ('N': no encryption)
            untyped = threading.Semaphore(0)
            threading.Thread(
                target=self._frontend, args=(client, server, untyped), daemon=True
            ).start()
            threading.Thread(
                target=self._backend, args=(server, client, untyped), daemon=True
            ).start()

    @staticmethod
    def _recv(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _frontend(
        self, client: socket.socket, server: socket.socket, untyped: threading.Semaphore
    ) -> None:
        portals: dict[bytes, bytes] = {}
        prepared: dict[bytes, bytes] = {}
        try:
            while True:  # startup (and SSL/GSS requests) carry no type byte
                head = self._recv(client, 4)
                (length,) = struct.unpack("!I", head)
                body = self._recv(client, length - 4)
                request = struct.unpack("!I", body[:4])[0] in (SSL_REQUEST, GSSENC_REQUEST)
                if request:
                    untyped.release()
                server.sendall(head + body)
                if not request:
                    break
            while True:
                head = self._recv(client, 5)
                kind = head[:1]
                (length,) = struct.unpack("!I", head[1:])
                body = self._recv(client, length - 4)
                server.sendall(head + body)
                if kind == b"P":  # Parse: name \0 query \0 ...
                    name, rest = body.split(b"\0", 1)
                    prepared[name] = rest.split(b"\0", 1)[0]
                elif kind == b"B":  # Bind: portal \0 statement \0 ...
                    portal, rest = body.split(b"\0", 1)
                    portals[portal] = prepared.get(rest.split(b"\0", 1)[0], b"?")
                elif kind == b"E":  # Execute: portal \0 max rows
                    self._count(portals.get(body.split(b"\0", 1)[0], b"?"))
                elif kind == b"Q":  # simple query
                    self._count(body.rstrip(b"\0"))
                elif kind == b"X":
                    return
        except (ConnectionError, OSError, struct.error):
            return
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

    def _count(self, query: bytes) -> None:
        word = query.strip().split(None, 1)[0].upper().decode() if query.strip() else "?"
        with self._lock:
            self.counts.statements[word] += 1

    def _backend(
        self, server: socket.socket, client: socket.socket, untyped: threading.Semaphore
    ) -> None:
        try:
            while True:
                first = self._recv(server, 1)
                # the frontend counts a request before forwarding it, so by the time its
                # answer byte is here the count is there
                if untyped.acquire(blocking=False):
                    client.sendall(first)
                    continue
                head = first + self._recv(server, 4)
                (length,) = struct.unpack("!I", head[1:])
                client.sendall(head + self._recv(server, length - 4))
                if head[:1] == b"E":
                    with self._lock:
                        self.counts.errors += 1
        except (ConnectionError, OSError, struct.error):
            return
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)


# ---- the sender, in-process ------------------------------------------------------------------


class RecordingQueue:
    """The SendQueue/DeadLetterQueue stand-in: counts what the sender asks of SQS."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def send(self, body: str, attributes: Mapping[str, str], delay_seconds: int = 0) -> str:
        self.calls["SendMessage"] += 1
        return str(uuid.uuid4())

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.calls["ChangeMessageVisibility"] += 1

    def send_to_dead_letter(self, body: str, attributes: Mapping[str, str]) -> str:
        self.calls["SendMessage(DLQ)"] += 1
        return str(uuid.uuid4())


TENANTS = {
    "bench-instant": "provider-b",
    "bench-retry": "provider-a",
    "bench-slow": "provider-slow200",
}


def build_sender(engine: Engine) -> SenderService:
    """The sender as wiring builds it, over ``engine``, with the bench's providers."""
    db = Database(engine)
    repository = MessageRepository(db)
    now = datetime.now(UTC)
    policies = SqlPolicyStore(db)
    for tenant, provider in TENANTS.items():
        policies.put(tenant, "direct", {"default_provider": provider}, now)
    providers = ProviderRegistry(
        [
            SimulatorProvider("provider-a", fail_first=1),
            SimulatorProvider("provider-b"),
            SimulatorProvider("provider-slow200", delay_seconds=0.2),
        ]
    )
    return SenderService(
        messages=repository,
        policies=CachedPolicyResolver(policies, ttl_seconds=300, max_size=64),
        providers=providers,
        queue=RecordingQueue(),
        receipts=ReceiptService(repository, repository.receipts, NullMetrics(), lambda: now),
        metrics=NullMetrics(),
        clock=lambda: datetime.now(UTC),
        config=SenderConfig(retry_base_seconds=0, retry_max_seconds=0, lease_seconds=60),
    )


def records(tenant: str, n: int, receive_count: int = 1) -> list[SqsRecord]:
    """``n`` SendQueue records of new messages for ``tenant``."""
    out = []
    for _ in range(n):
        message_id = str(uuid.uuid4())
        msg = QueuedMessage(
            message_id=message_id,
            tenant_id=tenant,
            to="+14155550100",
            body="bench",
            encoding=Encoding.GSM7,
            segments=1,
            max_attempts=3,
            idempotency_key=message_id,
            created_at=datetime.now(UTC),
        )
        out.append(
            SqsRecord(
                sqs_message_id=str(uuid.uuid4()),
                receipt_handle=message_id,
                body=msg.model_dump_json(),
                receive_count=receive_count,
            )
        )
    return out


def again(batch: list[SqsRecord]) -> list[SqsRecord]:
    """The same records redelivered (one more receive)."""
    return [
        SqsRecord(r.sqs_message_id, r.receipt_handle, r.body, r.receive_count + 1) for r in batch
    ]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The functions' JSON log lines are still formatted and written (as in Lambda, where
    they go to CloudWatch), but into memory, off the report."""
    from sms_gateway.observability import logger

    handler = logger.registered_handler
    previous = (
        handler.setStream(io.StringIO()) if isinstance(handler, logging.StreamHandler) else None
    )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if previous is not None and isinstance(handler, logging.StreamHandler):
            handler.setStream(previous)


def fresh(dsn: str) -> None:
    """Empty the database at ``dsn`` and migrate it."""
    engine = make_engine(dsn)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    run_migrations(dsn)


def count_statements(
    sender: SenderService, proxy: PgWireProxy, tenant: str, batch: int, batches: int, retry: bool
) -> tuple[float, WireCounts]:
    """Statements per SMS over ``batches`` batches of ``batch`` new messages."""
    proxy.reset()
    for _ in range(batches):
        first = records(tenant, batch)
        report = sender.process_batch(first)
        if retry:
            assert len(report.kept) == batch, report.kept
            report = sender.process_batch(again(first))
        assert not report.kept and len(report.outcomes) == batch, report
    counts = proxy.reset()
    return counts.total / (batch * batches), counts


def throughput(sender: SenderService, n: int, runs: int) -> float:
    """Warm SMS/s through batches of 10 (median of ``runs`` runs of ``n`` messages)."""
    rates = []
    for _ in range(runs):
        batches = [records("bench-instant", 10) for _ in range(n // 10)]
        started = time.perf_counter()
        for batch in batches:
            sender.process_batch(batch)
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates)


def slow_batch(sender: SenderService, runs: int) -> float:
    """Seconds for a batch of 10 whose provider takes 200 ms per send (median)."""
    times = []
    for _ in range(runs):
        batch = records("bench-slow", 10)
        started = time.perf_counter()
        report = sender.process_batch(batch)
        times.append(time.perf_counter() - started)
        assert len(report.outcomes) == 10 and not report.kept
    return statistics.median(times)


def line(label: str, value: float, goal: float, fmt: str, *, higher: bool = False) -> str:
    ok = value >= goal if higher else value <= goal
    sign = ">=" if higher else "<="
    return f"{label:66} {value:{fmt}}   goal {sign} {goal:{fmt}}   {'ok' if ok else 'MISSED'}"


def breakdown(counts: WireCounts) -> str:
    return ", ".join(f"{word} {n}" for word, n in counts.statements.most_common())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500, help="per throughput run")
    parser.add_argument("--runs", type=int, default=5, help="throughput runs (median)")
    args = parser.parse_args(argv)
    dsn = next((os.environ[v] for v in DSN_VARIABLES if os.environ.get(v)), "")
    if not dsn:
        print(
            f"set {DSN_VARIABLES[0]} to a PostgreSQL database of the bench's own", file=sys.stderr
        )
        return 2
    url = make_url(dsn)
    fresh(dsn)
    proxy = PgWireProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = make_engine(proxied)
    out: list[str] = []
    with quiet():
        sender = build_sender(engine)
        sender.process_batch(records("bench-instant", 10))  # warm: connection, caches, pool
        sender.process_batch(records("bench-retry", 10))
        sender.process_batch(records("bench-slow", 10))
        proxy.reset()
        per10, c10 = count_statements(sender, proxy, "bench-instant", 10, 5, retry=False)
        per1, c1 = count_statements(sender, proxy, "bench-instant", 1, 10, retry=False)
        retry10, cr = count_statements(sender, proxy, "bench-retry", 10, 5, retry=True)
        errors = c10.errors + c1.errors + cr.errors
        slow = slow_batch(sender, 3)
    engine.dispose()
    # throughput without the counting proxy: its threads would share the interpreter (and
    # its lock) with the sender, and it is not part of the system measured
    direct = make_engine(dsn)
    with quiet():
        direct_sender = build_sender(direct)
        direct_sender.process_batch(records("bench-instant", 10))
        pg_rate = throughput(direct_sender, args.messages, args.runs)
    direct.dispose()
    with tempfile.TemporaryDirectory() as tmp, quiet():
        sqlite_dsn = f"sqlite:///{Path(tmp) / 'bench.db'}"
        run_migrations(sqlite_dsn)
        sqlite_engine = make_engine(sqlite_dsn)
        sqlite_sender = build_sender(sqlite_engine)
        sqlite_sender.process_batch(records("bench-instant", 10))
        sqlite_rate = throughput(sqlite_sender, args.messages, args.runs)
        sqlite_engine.dispose()

    out.append("== sender SQL figures (issue 6), counted on the PostgreSQL wire")
    out.append(f"   server {url.host}:{url.port}/{url.database}; warm, in-process sender")
    out.append(line("statements per SMS, first attempt, batches of 10", per10, 1.0, ".2f"))
    out.append(f"   ({breakdown(c10)} over 50 SMS)")
    out.append(line("statements per SMS, first attempt, batches of 1", per1, 4.0, ".2f"))
    out.append(f"   ({breakdown(c1)} over 10 SMS)")
    out.append(
        line("statements per SMS, one retry, batches of 10 (both invocations)", retry10, 2.0, ".2f")
    )
    out.append(f"   ({breakdown(cr)} over 50 SMS)")
    out.append(line("error statements (ErrorResponse) on these paths", errors, 0, "d"))
    out.append(
        line(
            f"throughput, PostgreSQL, instant provider (SMS/s, median of {args.runs})",
            pg_rate,
            600.0,
            ".0f",
            higher=True,
        )
    )
    out.append(
        f"{'throughput, SQLite, instant provider (SMS/s, median of ' + str(args.runs) + ')':66}"
        f" {sqlite_rate:.0f}   (no goal; for comparison)"
    )
    out.append(line("batch of 10, provider 200 ms per send (s, median of 3)", slow, 0.35, ".3f"))
    print("\n".join(out))
    return 0


def run_if_configured() -> None:
    """:func:`main` when a PostgreSQL DSN is configured (``make bench``), else a note."""
    if any(os.environ.get(v) for v in DSN_VARIABLES):
        main([])
    else:
        print(f"\n== sender SQL figures: skipped (set {DSN_VARIABLES[0]})")


if __name__ == "__main__":
    raise SystemExit(main())
