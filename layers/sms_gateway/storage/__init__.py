"""SQL storage: tables (one definition, driving Alembic), engine, repositories."""
