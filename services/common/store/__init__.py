"""Metadata store on SQLAlchemy: SQLite by default, PostgreSQL when distributed."""

from services.common.store.engine import dispose as dispose_store
from services.common.store.engine import open_store, reader
from services.common.store.schema import metadata

__all__ = ["dispose_store", "metadata", "open_store", "reader"]
