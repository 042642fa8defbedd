"""Run a throwaway PostgreSQL server on loopback for tests and local development.

:class:`PostgresServer` runs ``initdb`` and ``postgres`` from the Debian packages
(``scripts/infra.sh postgres-install``) in a fresh directory. PostgreSQL refuses
to run as root, so when we are root both run as the ``postgres`` system user
(the directory is chowned to it). The server listens on 127.0.0.1 only, on a
free port, with unix sockets in the data directory, trust authentication and
``fsync=off``: never use it for data you want to keep.

:class:`ExternalPostgres` wraps an already running server with the same
``url``/``create_database`` interface; the test fixtures use it when the
environment variable ``PRIVTUNE_TEST_POSTGRES_URL`` is set (e.g.
``postgresql://postgres:secret@db.internal:5432/postgres``; the role must be
allowed to ``CREATE DATABASE``).

Example:
    >>> with PostgresServer() as pg:                  # doctest: +SKIP
    ...     engine = sqlalchemy.create_engine(pg.url)
    ...     other = pg.create_database("scratch")

Environment:
    PRIVTUNE_PG_BINDIR: directory holding ``initdb`` and ``postgres``.
    PRIVTUNE_KEEP_INFRA: if set to 1, a temporary ``base_dir`` is kept after stop().
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from privtune.devinfra import (
    DevInfraError,
    free_port,
    make_temp_dir,
    register,
    spawn,
    tail,
    terminate,
    unregister,
)

__all__ = [
    "POSTGRES_URL_ENV",
    "ExternalPostgres",
    "PostgresServer",
    "create_database",
    "drop_database",
    "pg_bindir",
]

POSTGRES_URL_ENV = "PRIVTUNE_TEST_POSTGRES_URL"
_DRIVER = "postgresql+psycopg"


def pg_bindir() -> Path:
    """Directory with ``initdb`` and ``postgres`` (newest /usr/lib/postgresql/N/bin).

    Raises:
        DevInfraError: PostgreSQL server binaries are not installed.
    """
    env = os.environ.get("PRIVTUNE_PG_BINDIR")
    if env:
        return Path(env)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise DevInfraError("PostgreSQL server not installed: run scripts/infra.sh postgres-install")


def _url(base: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(base).set(drivername=_DRIVER, database=database).render_as_string(hide_password=False)


def _connect(url: str, timeout: float = 5.0) -> Any:
    """An autocommit psycopg connection to the SQLAlchemy-style ``url``."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.database or "postgres",
        connect_timeout=max(1, int(timeout)),
        autocommit=True,
    )


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"invalid database name {name!r} (use [A-Za-z_][A-Za-z0-9_]*)")
    return name


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` (dropping any old one) on the server of ``server_url``.

    Returns:
        The ``postgresql+psycopg://`` URL of the new database.
    """
    _check_name(name)
    with _connect(_url(server_url, "postgres")) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (disconnecting its sessions) if it exists."""
    _check_name(name)
    with _connect(_url(server_url, "postgres")) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresServer:
    """A private PostgreSQL server on 127.0.0.1 with a ``privtune`` database.

    Args:
        base_dir: directory for the cluster (``data/``) and logs; a temporary one,
            removed on stop, if None. Must be reachable by the ``postgres`` user.
        database: database created at start (``url`` points at it).
        settings: extra ``postgres -c`` settings.
        startup_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        database: str = "privtune",
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.database = _check_name(database)
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._owns_dir = base_dir is None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise DevInfraError("postgres not started")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def server_url(self) -> str:
        """URL of the ``postgres`` maintenance database."""
        if self.port is None:
            raise DevInfraError("postgres not started")
        return f"{_DRIVER}://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """``postgresql+psycopg://postgres@127.0.0.1:PORT/privtune`` (SQLAlchemy URL)."""
        return _url(self.server_url, self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of another database on this server."""
        return _url(self.server_url, _check_name(database))

    def create_database(self, name: str) -> str:
        """Create (or recreate, empty) database ``name``; return its URL."""
        return create_database(self.server_url, name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists."""
        drop_database(self.server_url, name)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> PostgresServer:
        """initdb a fresh cluster, start it and create the database.

        Raises:
            DevInfraError: initdb failed or the server did not come up; the message
                holds the tail of the log.
        """
        if self._proc is not None:
            raise DevInfraError("postgres already started")
        bindir = pg_bindir()
        ids = _server_ids()
        if self._base_dir is None:
            self._base_dir = make_temp_dir("privtune-pg-")
        self._base_dir.mkdir(parents=True, exist_ok=True)
        if ids is not None:
            os.chown(self._base_dir, *ids)
        register(self)
        try:
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(bindir, ids)
            self.port = self.port or free_port()  # a restart after stop_server() keeps its port
            self._spawn(bindir, ids)
            self._wait_ready()
            with _connect(self.server_url) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{self.database}"')
        except BaseException:
            self.stop()
            raise
        return self

    def stop_server(self, grace: float = 10.0) -> None:
        """Stop the server process but keep its data and port: an outage; ``start()`` ends it."""
        if self._proc is not None:
            terminate(self._proc, grace, signal.SIGINT)
            self._proc = None

    def stop(self, grace: float = 10.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL after ``grace`` s; remove a temp base_dir."""
        unregister(self)
        if self._proc is not None:
            terminate(self._proc, grace, signal.SIGINT)
            self._proc = None
        if self._owns_dir and self._base_dir is not None and os.environ.get("PRIVTUNE_KEEP_INFRA") != "1":
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None
            self.port = None

    def __enter__(self) -> PostgresServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({self.url if self.port else 'not started'})"

    # -------------------------------------------------------------- internals
    def _initdb(self, bindir: Path, ids: tuple[int, int] | None) -> None:
        log = self.base_dir / "initdb.log"
        argv = [
            str(bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        uid, gid = ids if ids is not None else (None, None)
        proc = spawn(argv, log, cwd=self.base_dir, uid=uid, gid=gid)
        if proc.wait(timeout=120) != 0:
            raise DevInfraError(f"initdb failed; {log}:\n{tail(log)}")

    def _spawn(self, bindir: Path, ids: tuple[int, int] | None) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        settings.update(self.settings)
        argv = [str(bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        uid, gid = ids if ids is not None else (None, None)
        self._proc = spawn(argv, self.log_path, cwd=self.base_dir, uid=uid, gid=gid)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self.is_running():
                raise DevInfraError(f"postgres exited during startup; {self.log_path}:\n{tail(self.log_path)}")
            try:
                _connect(self.server_url, timeout=1).close()
                return
            except Exception as exc:  # noqa: BLE001 - psycopg.OperationalError while starting
                if time.monotonic() > deadline:
                    raise DevInfraError(
                        f"postgres not ready after {self.startup_timeout:.0f}s ({exc}); "
                        f"{self.log_path}:\n{tail(self.log_path)}"
                    ) from exc
            time.sleep(0.05)


class ExternalPostgres:
    """An already running server (e.g. from ``PRIVTUNE_TEST_POSTGRES_URL``).

    Offers the ``url`` / ``create_database`` interface of :class:`PostgresServer`;
    ``start``/``stop`` do nothing.

    Args:
        url: any SQLAlchemy or libpq-style ``postgresql://`` URL; its database is
            the one ``url`` returns, the driver becomes ``postgresql+psycopg``.
    """

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        self.database = parsed.database or "postgres"
        self.server_url = _url(url, "postgres")
        self.url = _url(url, self.database)

    def url_for(self, database: str) -> str:
        return _url(self.server_url, _check_name(database))

    def create_database(self, name: str) -> str:
        return create_database(self.server_url, name)

    def drop_database(self, name: str) -> None:
        drop_database(self.server_url, name)

    def start(self) -> ExternalPostgres:
        return self

    def stop(self) -> None:
        return None

    def __enter__(self) -> ExternalPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        return f"ExternalPostgres({make_url(self.url)!r})"


def _server_ids() -> tuple[int, int] | None:
    """(uid, gid) of the ``postgres`` user when we are root, else None (run as us)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise DevInfraError(
            "running as root but there is no 'postgres' user to run PostgreSQL as; "
            "run scripts/infra.sh postgres-install"
        ) from exc
    return pw.pw_uid, pw.pw_gid
