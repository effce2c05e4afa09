"""Pure domain rules: no I/O, no boto3, no SQLAlchemy, no Powertools."""
