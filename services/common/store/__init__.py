"""Metadata store on SQLAlchemy: SQLite by default, PostgreSQL when distributed."""

from services.common.store.engine import open_store
from services.common.store.schema import metadata

__all__ = ["metadata", "open_store"]
