"""Shared pytest fixtures: real Kafka and PostgreSQL servers, started lazily.

Nothing starts unless a test asks for it, so unit tests pay nothing.

Kafka (``privtune.devinfra.kafka.KafkaCluster``, Apache Kafka 4.3 KRaft):
    kafka_cluster         session: one 1-node cluster shared by the whole run.
    kafka_bootstrap       session: its ``bootstrap.servers`` string, or
                          ``$PRIVTUNE_TEST_KAFKA_BOOTSTRAP`` if set (then no local
                          cluster starts).
    kafka_cluster_factory module: ``make(n_brokers=3, **kwargs) -> KafkaCluster``
                          starts a private cluster (e.g. to kill nodes); all are
                          stopped when the module's tests are done.

PostgreSQL (``privtune.devinfra.postgres.PostgresServer``):
    postgres_server       session: a private server, or an ``ExternalPostgres``
                          for ``$PRIVTUNE_TEST_POSTGRES_URL`` if set.
    postgres_url          session: URL of its ``privtune`` database (for an
                          external server: the database named in the env URL).
    postgres_db_factory   session: ``make(prefix="test") -> url`` creates a new
                          empty database with a unique name.
    postgres_module_url   module: a fresh database for the requesting module.

Every URL is SQLAlchemy style, ``postgresql+psycopg://...``.

S3 (moto's server mode, a real S3 API on 127.0.0.1; see tests/s3_fixtures.py):
    s3_server             session: the server (``endpoint_url``, ``client()``, ``root_uri(bucket)``).
    s3_bucket             function: a fresh bucket.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from privtune.devinfra.kafka import KafkaCluster
from privtune.devinfra.postgres import (
    POSTGRES_URL_ENV,
    ExternalPostgres,
    PostgresServer,
)
from tests.oidc_provider import oidc_provider  # noqa: F401 - fixture for every test module
from tests.platform_fixtures import shared_auth  # noqa: F401 - one PKI and token issuer per session
from tests.s3_fixtures import s3_bucket, s3_server  # noqa: F401 - fixtures for every test module

KAFKA_BOOTSTRAP_ENV = "PRIVTUNE_TEST_KAFKA_BOOTSTRAP"


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A 1-node Kafka cluster for the whole session."""
    with KafkaCluster(n_brokers=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """``bootstrap.servers`` for tests: the session cluster or $PRIVTUNE_TEST_KAFKA_BOOTSTRAP."""
    external = os.environ.get(KAFKA_BOOTSTRAP_ENV)
    if external:
        return external
    cluster: KafkaCluster = request.getfixturevalue("kafka_cluster")
    return cluster.bootstrap_servers


@pytest.fixture(scope="module")
def kafka_cluster_factory() -> Iterator[Callable[..., KafkaCluster]]:
    """Start private clusters: ``make(n_brokers=3, **kwargs)``; stopped after the module."""
    clusters: list[KafkaCluster] = []

    def make(n_brokers: int = 3, **kwargs: Any) -> KafkaCluster:
        cluster = KafkaCluster(n_brokers=n_brokers, **kwargs)
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | ExternalPostgres]:
    """A private PostgreSQL server, or the one named by $PRIVTUNE_TEST_POSTGRES_URL."""
    external = os.environ.get(POSTGRES_URL_ENV)
    if external:
        yield ExternalPostgres(external)
        return
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer | ExternalPostgres) -> str:
    """SQLAlchemy URL of the session's shared database."""
    return postgres_server.url


@pytest.fixture(scope="session")
def postgres_db_factory(
    postgres_server: PostgresServer | ExternalPostgres,
) -> Iterator[Callable[..., str]]:
    """``make(prefix="test") -> url``: a new empty database, dropped at session end."""
    run = uuid.uuid4().hex[:6]
    counter = itertools.count(1)
    created: list[str] = []

    def make(prefix: str = "test") -> str:
        clean = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40] or "test"
        name = f"{clean}_{run}_{next(counter)}"
        created.append(name)
        return postgres_server.create_database(name)

    yield make
    if isinstance(postgres_server, ExternalPostgres):  # a private server is deleted anyway
        for name in created:
            try:
                postgres_server.drop_database(name)
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass


@pytest.fixture(scope="module")
def postgres_module_url(request: pytest.FixtureRequest, postgres_db_factory: Callable[..., str]) -> str:
    """A fresh database for the requesting test module."""
    return postgres_db_factory(request.module.__name__.rsplit(".", 1)[-1])
