"""Alembic migrations of Stowage's database."""
