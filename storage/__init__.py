"""Persistence: SQLAlchemy models, repositories, migrations, engine and sessions."""
