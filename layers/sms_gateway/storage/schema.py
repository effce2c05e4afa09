"""Running the Alembic history (``sms_gateway/migrations/``, shipped in the Lambda layer with
the package) against a DSN."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

# The history is package data: sam build copies it into the layer with the code that needs it.
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(dsn: str, script_location: Path | None = None) -> Config:
    """An Alembic config for ``dsn`` using the project's one migration history.

    Raises:
        FileNotFoundError: ``sms_gateway/migrations/`` is missing (a broken install).
    """
    location = script_location or MIGRATIONS
    if not (location / "env.py").is_file():
        raise FileNotFoundError(f"Alembic migrations not found at {location}")
    config = Config()
    config.set_main_option("script_location", str(location))
    # '%' is ConfigParser interpolation syntax; escape it so passwords with '%' survive.
    config.set_main_option("sqlalchemy.url", dsn.replace("%", "%%"))
    return config


def run_migrations(dsn: str, revision: str = "head") -> None:
    """Upgrade the database at ``dsn`` to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(dsn), revision)
