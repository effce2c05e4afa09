"""Running the Alembic history (``migrations/`` at the repository root) against a DSN."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

# layers/sms_gateway/storage/schema.py -> repository root
REPO_ROOT = Path(__file__).resolve().parents[3]


def alembic_config(dsn: str, script_location: Path | None = None) -> Config:
    """An Alembic config for ``dsn`` using the project's one migration history.

    Raises:
        FileNotFoundError: the ``migrations/`` folder is not beside this package's checkout.
    """
    location = script_location or REPO_ROOT / "migrations"
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
