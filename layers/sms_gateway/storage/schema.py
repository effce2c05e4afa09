"""Running the Alembic history (``sms_gateway/migrations/``, shipped in the Lambda layer with
the package) against a DSN."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

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


@dataclass(frozen=True)
class MigrationResult:
    """What :func:`upgrade_to_head` did. Revisions are Alembic revision ids; ``None`` is an
    empty database (``before``). ``ahead``: the database carries a revision this code does not
    know (a newer release migrated it); nothing was run."""

    before: str | None
    after: str | None
    ahead: bool = False


def _current(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(database: str | Engine) -> MigrationResult:
    """Upgrade ``database`` (a DSN, or an engine such as the deployed functions', whose
    credentials come from Secrets Manager) to this code's newest revision, the deploy's step.

    A database already at a revision this code's history does not contain was migrated by a
    newer release: under the expand/contract rules (docs/migrations.md) this code runs on that
    schema, so nothing is done and ``ahead`` is set. That is what a rollback needs: after a
    failed update CloudFormation sends the previous properties back to the MigrateFunction of
    the previous release.

    Raises:
        sqlalchemy.exc.SQLAlchemyError, alembic.util.CommandError: the database cannot be
            reached or a migration failed (on PostgreSQL and SQLite the failed revision's DDL
            is rolled back with it; MySQL commits each DDL statement).
    """
    from alembic.script import ScriptDirectory

    from sms_gateway.storage.engine import make_engine

    owned = isinstance(database, str)
    engine = make_engine(database) if isinstance(database, str) else database
    try:
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        script = ScriptDirectory.from_config(config)
        before = _current(engine)
        if before is not None and before not in {rev.revision for rev in script.walk_revisions()}:
            return MigrationResult(before=before, after=before, ahead=True)
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
        return MigrationResult(before=before, after=_current(engine))
    finally:
        if owned:
            engine.dispose()
