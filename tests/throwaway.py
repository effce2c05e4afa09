"""Throwaway PostgreSQL and MariaDB servers on a random loopback port, for tests that stop a
server, change a password or fill its connection slots (things never done to the shared
servers of ``SMS_GATEWAY_TEST_*_DSN``).

Each server lives in its own temporary directory, listens on 127.0.0.1 only, allows few
connections (so filling them is cheap), has a superuser the harness uses without a password
and an application user ``gateway`` that logs in with a password, owning the database
``gateway``. Every command is bounded in time; :meth:`Server.destroy` stops the server and
removes its directory. The binaries must be on PATH (``initdb``/``pg_ctl``,
``mariadb-install-db``/``mariadbd``): a missing one is an error, never a skip. As root
(containers, CI) the servers run as the ``postgres`` / ``mysql`` system users, since neither
server runs as root.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import URL

APP_USER = "gateway"
DATABASE = "gateway"
COMMAND_SECONDS = 60
# Connection slots: PostgreSQL max_connections 5 with 2 reserved for superusers leaves 3 for
# the application user; MariaDB's floor is 10 (plus one for a SUPER user).
POSTGRES_MAX_CONNECTIONS = 5
POSTGRES_SUPERUSER_RESERVED = 2
MARIADB_MAX_CONNECTIONS = 10


def require(*binaries: str) -> dict[str, str]:
    """The full path of each binary.

    Raises:
        RuntimeError: one is not on PATH (the server tests must run, CI has them).
    """
    found = {name: shutil.which(name) for name in binaries}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise RuntimeError(f"not on PATH: {', '.join(missing)} (needed by the outage tests)")
    return {name: str(path) for name, path in found.items()}


def free_port() -> int:
    """A port in 20000-40000 that nothing listens on now (random, a few tries)."""
    for _ in range(50):
        port = random.randint(20_000, 40_000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-40000")


def _as(user: str, argv: list[str]) -> list[str]:
    """``argv`` run as system ``user`` when we are root, else as ourselves."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", user, "--", *argv]


def _run(argv: list[str], log: Path) -> None:
    with log.open("ab") as out:
        subprocess.run(argv, check=True, stdout=out, stderr=out, timeout=COMMAND_SECONDS)


def _wait_port(port: int, seconds: float = COMMAND_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@dataclass
class Server:
    """One throwaway server. ``kind``: ``postgresql`` or ``mysql``."""

    kind: str
    base: Path
    port: int
    password: str = "first-password"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def admin_url(self, database: str | None = DATABASE) -> URL:
        """The superuser (no password), database ``gateway`` by default."""
        if self.kind == "postgresql":
            return URL.create(
                "postgresql+pg8000", "postgres", None, "127.0.0.1", self.port, database
            )
        return URL.create(
            "mysql+pymysql", "root", None, "127.0.0.1", self.port, database, {"charset": "utf8mb4"}
        )

    def app_url(self, password: str | None = None) -> URL:
        """The application user with ``password`` (default: the current one)."""
        return self.admin_url().set(username=APP_USER, password=password or self.password)

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start (again) on the same port and data."""
        if self.kind == "postgresql":
            _run(
                _as(
                    "postgres",
                    [
                        "pg_ctl",
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-w",
                        "-t",
                        str(COMMAND_SECONDS),
                        "start",
                    ],
                ),
                self.base / "commands.log",
            )
        else:
            self.process = subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    f"--datadir={self.data}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.base / 'mysqld.sock'}",
                    f"--pid-file={self.base / 'mysqld.pid'}",
                    f"--log-error={self.log}",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    f"--max-connections={MARIADB_MAX_CONNECTIONS}",
                    "--innodb-buffer-pool-size=16M",
                    "--innodb-log-file-size=8M",
                    *(["--user=mysql"] if os.geteuid() == 0 else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_port(self.port)

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended)."""
        if self.kind == "postgresql":
            _run(
                _as(
                    "postgres",
                    [
                        "pg_ctl",
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-t",
                        str(COMMAND_SECONDS),
                        "stop",
                    ],
                ),
                self.base / "commands.log",
            )
            return
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=COMMAND_SECONDS)
            self.process = None

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        try:
            if self.kind == "postgresql":
                if (self.data / "postmaster.pid").exists():
                    self.stop()
            else:
                self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"


def _private_dir(owner: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=f"sms-gateway-{owner}-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(owner)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    return base


def start_postgres() -> Server:
    """A PostgreSQL cluster (initdb) on a random loopback port, started, with the role and
    database ``gateway`` (password login; the superuser ``postgres`` logs in without one)."""
    require("initdb", "pg_ctl")
    base = _private_dir("postgres")
    server = Server("postgresql", base, free_port())
    try:
        _run(
            _as(
                "postgres",
                [
                    "initdb",
                    "-D",
                    str(server.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            ),
            base / "commands.log",
        )
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {server.port}\n"
                f"unix_socket_directories = '{server.data}'\n"
                f"max_connections = {POSTGRES_MAX_CONNECTIONS}\n"
                f"superuser_reserved_connections = {POSTGRES_SUPERUSER_RESERVED}\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 16MB\npassword_encryption = 'scram-sha-256'\n"
            )
        (server.data / "pg_hba.conf").write_text(
            "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        server.start()
        from sqlalchemy import create_engine, text

        admin = create_engine(server.admin_url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{server.password}'"))
            conn.execute(text(f"CREATE DATABASE {DATABASE} OWNER {APP_USER}"))
        admin.dispose()
    except BaseException:
        server.destroy()
        raise
    return server


def start_mariadb() -> Server:
    """A MariaDB server (mariadb-install-db) on a random loopback port, started, with the user
    and database ``gateway`` (password login; ``root`` logs in without one)."""
    require("mariadb-install-db", "mariadbd")
    base = _private_dir("mysql")
    server = Server("mysql", base, free_port())
    try:
        _run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={server.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *(["--user=mysql"] if os.geteuid() == 0 else []),
            ],
            base / "commands.log",
        )
        server.start()
        from sqlalchemy import create_engine, text

        admin = create_engine(server.admin_url(None))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4"))
            conn.execute(
                text(f"CREATE USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{server.password}'")
            )
            conn.execute(text(f"GRANT ALL ON {DATABASE}.* TO '{APP_USER}'@'127.0.0.1'"))
        admin.dispose()
    except BaseException:
        server.destroy()
        raise
    return server
