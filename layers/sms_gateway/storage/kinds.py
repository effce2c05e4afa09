"""Names of database kinds, importable without SQLAlchemy (the settings use them, and the
ingest function, which has no database, reads the settings)."""

from __future__ import annotations

from enum import StrEnum


class DatabaseEngine(StrEnum):
    """The server kinds a deployed stack may name (``SMS_GATEWAY_DB_ENGINE``)."""

    POSTGRESQL = "postgresql"
    MYSQL = "mysql"  # MySQL and MariaDB, RDS or Aurora

    @property
    def driver(self) -> str:
        """The SQLAlchemy driver name: ``postgresql+pg8000`` or ``mysql+pymysql``."""
        return "postgresql+pg8000" if self is DatabaseEngine.POSTGRESQL else "mysql+pymysql"

    @property
    def default_port(self) -> int:
        """5432 (PostgreSQL) or 3306 (MySQL)."""
        return 5432 if self is DatabaseEngine.POSTGRESQL else 3306
