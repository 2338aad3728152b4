"""Alembic migrations of the workbench database; run them with ``workbench db upgrade``."""
