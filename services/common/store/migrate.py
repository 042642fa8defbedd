"""Apply Alembic migrations programmatically (also: ``privtune migrate``)."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
_lock = threading.Lock()


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade_to_head(engine: Engine) -> None:
    """Bring the store's schema to the newest migration (a no-op when it is current)."""
    with _lock:
        command.upgrade(alembic_config(engine), "head")
