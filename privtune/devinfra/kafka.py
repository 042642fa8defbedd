"""Run real Apache Kafka 4.3 (KRaft) on loopback for tests and local development.

Every node is a combined broker+controller; all ``n`` nodes are voters of a static
controller quorum (``controller.quorum.voters``). Jars come from
``scripts/fetch_kafka.sh`` (Maven Central, cached under
``${PRIVTUNE_CACHE:-~/.cache/privtune}/kafka-4.3.1/libs``); Java 17+ is required.

Example:
    >>> with KafkaCluster(n_brokers=3) as kc:          # doctest: +SKIP
    ...     kc.create_topic("events", partitions=3)
    ...     producer = Producer({"bootstrap.servers": kc.bootstrap_servers})
    ...     kc.kill(0)          # SIGKILL node 0
    ...     kc.start_node(0)    # restart it on its existing storage

Environment:
    PRIVTUNE_KAFKA_LIBS: use this directory of jars instead of fetching.
    PRIVTUNE_CACHE: cache root for the fetched jars.
    PRIVTUNE_KEEP_INFRA: if set to 1, a temporary ``base_dir`` is kept after stop().
    PRIVTUNE_KAFKA_CDS: set to 0 to disable the JVM class-data-sharing archive that
        the first clean node shutdown writes to the cache (it cuts JVM start time).
    JAVA_HOME: java is ``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from privtune.devinfra import (
    DevInfraError,
    free_port,
    make_temp_dir,
    register,
    repo_root,
    spawn,
    tail,
    terminate,
    unregister,
)

__all__ = ["KAFKA_VERSION", "KafkaCluster", "kafka_libs_dir", "log_start_offsets"]

KAFKA_VERSION = "4.3.1"
_STARTED_MARK = b"Kafka Server started"
_log = logging.getLogger(__name__)

_LOG4J2 = """\
status = warn
name = privtune-kafka
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


def kafka_libs_dir() -> Path:
    """Return the directory of Kafka jars, fetching them on first use.

    Raises:
        DevInfraError: the jars are not cached and cannot be fetched.
    """
    env = os.environ.get("PRIVTUNE_KAFKA_LIBS")
    if env:
        return Path(env)
    script = repo_root() / "scripts" / "fetch_kafka.sh"
    if script.exists():
        res = subprocess.run([str(script)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise DevInfraError(f"{script} failed:\n{res.stderr[-4000:]}")
        return Path(res.stdout.strip().splitlines()[-1])
    libs = _cache_dir() / "libs"
    if not libs.is_dir():
        raise DevInfraError(f"no Kafka jars at {libs}; run scripts/fetch_kafka.sh")
    return libs


def _cache_dir() -> Path:
    cache = Path(os.environ.get("PRIVTUNE_CACHE", Path.home() / ".cache" / "privtune"))
    return cache / f"kafka-{KAFKA_VERSION}"


def _runtime_key(java: str, libs: Path) -> str:
    """Short hash naming cache files that depend on this JVM and jar set."""
    real = Path(java).resolve()
    st = real.stat()
    ident = [str(real), str(st.st_size), str(st.st_mtime_ns), str(libs.resolve())]
    ident += sorted(p.name for p in libs.glob("*.jar"))
    return hashlib.sha256("\n".join(ident).encode()).hexdigest()[:16]


def _new_uuid() -> str:
    """A random Kafka UUID string (22 chars of url-safe base64).

    Like Kafka's ``Uuid.randomUuid()`` it never starts with ``-``, which command
    line parsers (the storage tool's) would take for an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise DevInfraError("java not found (Kafka 4.3 needs Java 17+; apt-get install openjdk-17-jre-headless)")
    return java


@dataclass
class _Node:
    index: int
    port: int
    controller_port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    cds_tmp: Path | None = None

    @property
    def config_path(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    @property
    def stdout_path(self) -> Path:
        return self.dir / "stdout.log"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def started(self) -> bool:
        """True once this process logged that it is up (broker unfenced)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_offset)
                return _STARTED_MARK in f.read()
        except OSError:
            return False

    def errors(self, limit: int = 5) -> list[str]:
        """First ERROR/FATAL lines this process logged."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_offset)
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        out: list[str] = []
        for i, ln in enumerate(lines):
            if "] ERROR " in ln or "] FATAL " in ln:
                out.append(ln[:500])
                # The exception and its causes follow on unbracketed lines.
                for nxt in lines[i + 1 : i + 200]:
                    if nxt.startswith("["):
                        break
                    if not nxt.startswith("\t"):
                        out.append("    " + nxt[:500])
                if len(out) >= limit * 3:
                    break
        return out

    def failure(self, what: str) -> DevInfraError:
        errors = "\n".join(self.errors()) or "<none>"
        return DevInfraError(
            f"Kafka node {self.index} {what}.\nFirst errors:\n{errors}\n"
            f"--- tail of {self.log_path}:\n{tail(self.log_path)}\n"
            f"--- tail of {self.stdout_path}:\n{tail(self.stdout_path, 20)}"
        )


class KafkaCluster:
    """An Apache Kafka KRaft cluster of ``n_brokers`` combined broker+controller nodes.

    Node ``i`` has ``node.id=i`` and listens on 127.0.0.1 (broker and controller
    ports chosen free at first start, kept across node restarts). Settings suit
    tests: replication factor ``min(3, n)`` for new and internal topics,
    ``min.insync.replicas`` 2 when the replication factor is 3 (else 1), no
    automatic topic creation, no initial rebalance delay, a dead broker fenced
    after 3 s, retention enforced every second (see :func:`log_start_offsets`).

    Args:
        n_brokers: number of nodes (all are controller voters).
        base_dir: where configs, data and logs go; a temporary directory (removed
            on stop) if None. Calling start() again after stop() on the same
            ``base_dir`` restarts the cluster on its data (with new ports).
        partitions: ``num.partitions`` for topics created without a count.
        heap: JVM ``-Xmx`` per node.
        startup_timeout: seconds to wait for the cluster (or a node) to come up.
        extra_config: more ``server.properties`` entries, applied to every node.
        libs_dir: directory of Kafka jars; see :func:`kafka_libs_dir` if None.
    """

    def __init__(
        self,
        n_brokers: int = 1,
        base_dir: Path | None = None,
        *,
        partitions: int = 1,
        heap: str = "512m",
        startup_timeout: float = 120.0,
        extra_config: Mapping[str, str] | None = None,
        libs_dir: Path | None = None,
    ) -> None:
        if n_brokers < 1:
            raise ValueError("n_brokers must be >= 1")
        self.n_brokers = n_brokers
        self.partitions = partitions
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.extra_config = dict(extra_config or {})
        self._libs_dir = libs_dir
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._owns_dir = base_dir is None
        self.cluster_id = _new_uuid()
        self._nodes: list[_Node] = []
        self._warm_up_call: Any = None

    # ------------------------------------------------------------------ props
    @property
    def replication_factor(self) -> int:
        """Default replication factor of new and internal topics."""
        return min(3, self.n_brokers)

    @property
    def min_insync_replicas(self) -> int:
        """``min.insync.replicas`` of the cluster."""
        return 2 if self.replication_factor == 3 else 1

    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise DevInfraError("cluster not started")
        return self._base_dir

    @property
    def bootstrap_servers(self) -> str:
        """Comma-separated ``127.0.0.1:port`` of every node's client listener."""
        if not self._nodes:
            raise DevInfraError("cluster not started")
        return ",".join(f"127.0.0.1:{n.port}" for n in self._nodes)

    def node_bootstrap(self, i: int) -> str:
        """``127.0.0.1:port`` of node ``i`` alone."""
        return f"127.0.0.1:{self._nodes[i].port}"

    def log_path(self, i: int) -> Path:
        """Path of node ``i``'s broker log."""
        return self._nodes[i].log_path

    def is_running(self, i: int) -> bool:
        """True if node ``i``'s process is alive."""
        return self._nodes[i].running()

    # -------------------------------------------------------------- lifecycle
    def start(self) -> KafkaCluster:
        """Configure, format and start every node; return once all are registered.

        Raises:
            DevInfraError: a node exited or the cluster did not come up in time;
                the message holds the tail of the node's log.
        """
        if self._nodes:
            raise DevInfraError("cluster already started")
        t0 = time.monotonic()
        libs = self._libs_dir or kafka_libs_dir()
        self._classpath = f"{libs}{os.sep}*"
        self._java = _java()
        key = _runtime_key(self._java, libs)
        cds_on = os.environ.get("PRIVTUNE_KAFKA_CDS", "1") != "0"
        self._cds = _cache_dir() / f"cds-{key}.jsa" if cds_on else None
        self._bootstrap_template = _cache_dir() / f"bootstrap-{key}.checkpoint"
        if self._base_dir is None:
            self._base_dir = make_temp_dir("privtune-kafka-")
        self._base_dir.mkdir(parents=True, exist_ok=True)
        existing = self._base_dir / "node-0" / "data" / "meta.properties"
        if existing.exists():  # restart on a persistent base_dir: keep its cluster id
            for line in existing.read_text().splitlines():
                if line.startswith("cluster.id="):
                    self.cluster_id = line.split("=", 1)[1].strip()
        ports = _distinct_free_ports(2 * self.n_brokers)
        self._nodes = [
            _Node(i, ports[2 * i], ports[2 * i + 1], self._base_dir / f"node-{i}") for i in range(self.n_brokers)
        ]
        register(self)
        try:
            for node in self._nodes:
                self._write_config(node)
            self._format()
            for node in self._nodes:
                self._spawn(node)
            self._wait_started(self._nodes)
            self._wait_registered({n.index for n in self._nodes})
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        _log.info(
            "Kafka (%d nodes) up in %.1fs at %s",
            self.n_brokers,
            time.monotonic() - t0,
            self.bootstrap_servers,
        )
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Stop every node: SIGTERM, then SIGKILL stragglers; remove a temp base_dir.

        Args:
            grace: seconds to wait for clean exits. Nodes left once the controller
                quorum is gone are killed after 1 s instead: without a quorum a
                broker's controlled shutdown would wait up to 5 minutes. (Killing
                loses nothing written: the data is in the page cache and Kafka
                recovers its logs on the next start.)
        """
        unregister(self)
        self._warm_up_call = None
        for node in self._nodes:
            if node.cds_tmp and node.running():
                # Writing the CDS archive needs a clean exit, which needs a live
                # controller quorum: stop this node first, while its peers run.
                self.stop_node(node.index, timeout=30.0)
        live = [n for n in self._nodes if n.running()]
        for node in live:
            assert node.proc is not None
            try:
                node.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        majority = len(self._nodes) // 2 + 1
        deadline = time.monotonic() + grace
        while live:
            live = [n for n in live if n.running()]
            now = time.monotonic()
            if live and len(live) < majority:
                deadline = min(deadline, now + 1.0)
                majority = 0  # set the 1 s deadline once
            if live and now >= deadline:
                for node in live:
                    assert node.proc is not None
                    node.proc.kill()
                    node.proc.wait()
                break
            time.sleep(0.05)
        for node in self._nodes:
            self._reaped(node)
        self._nodes = []
        if self._owns_dir and self._base_dir is not None:
            if os.environ.get("PRIVTUNE_KEEP_INFRA") != "1":
                shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` and reap it (its storage stays for :meth:`start_node`)."""
        node = self._nodes[i]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
        self._reaped(node)

    def stop_node(self, i: int, timeout: float = 60.0) -> None:
        """Shut node ``i`` down cleanly (SIGTERM) and wait; SIGKILL after ``timeout`` s."""
        node = self._nodes[i]
        if node.proc is not None:
            terminate(node.proc, timeout)
            self._reaped(node)

    def start_node(self, i: int) -> None:
        """Restart a stopped or killed node ``i`` on its existing storage; wait until up."""
        node = self._nodes[i]
        if node.running():
            raise DevInfraError(f"Kafka node {i} is already running")
        self._spawn(node)
        self._wait_started([node])
        self._wait_registered({i})

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic and wait until the metadata shows a leader for every partition.

        Defaults: the cluster's ``partitions`` and replication factor.
        """
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        count = partitions or self.partitions
        topic = NewTopic(
            name,
            num_partitions=count,
            replication_factor=replication_factor or self.replication_factor,
            config=dict(config or {}),
        )
        admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)[name].result(timeout)
        deadline = time.monotonic() + timeout
        while True:
            meta = admin.list_topics(name, timeout=timeout).topics.get(name)
            parts = meta.partitions if meta is not None and meta.error is None else {}
            if len(parts) == count and all(p.leader >= 0 for p in parts.values()):
                return
            if time.monotonic() > deadline:
                raise DevInfraError(f"topic {name} has no leaders after {timeout:.0f}s")
            time.sleep(0.05)

    def log_start_offsets(self, topic: str) -> dict[int, int]:
        """First offset each partition of ``topic`` still holds; see :func:`log_start_offsets`."""
        return log_start_offsets(self.bootstrap_servers, topic)

    def __enter__(self) -> KafkaCluster:
        if not self._nodes:
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
        servers = self.bootstrap_servers if self._nodes else "not started"
        return f"KafkaCluster(n_brokers={self.n_brokers}, {servers})"

    # -------------------------------------------------------------- internals
    def _server_properties(self, node: _Node) -> dict[str, str]:
        rf, misr = str(self.replication_factor), str(self.min_insync_replicas)
        voters = ",".join(f"{n.index}@127.0.0.1:{n.controller_port}" for n in self._nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.index),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.dir / "data"),
            "num.partitions": str(self.partitions),
            "default.replication.factor": rf,
            "min.insync.replicas": misr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": misr,
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": misr,
            "share.coordinator.state.topic.num.partitions": "1",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "500",
            # Notice dead brokers quickly so failover tests stay short.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "replica.lag.time.max.ms": "5000",
            # Retention acts within seconds, so a test topic with a short retention.ms loses its old
            # segments quickly (topics that keep events forever are not affected): check every
            # second from 1 s after start (not 5 min / 30 s) and delete the files at once.
            "log.retention.check.interval.ms": "1000",
            "log.initial.task.delay.ms": "1000",
            "log.segment.delete.delay.ms": "0",
            # Small footprint on small machines.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        props.update(self.extra_config)
        return props

    def _write_config(self, node: _Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in self._server_properties(node).items())
        node.config_path.write_text(body)
        (node.dir / "log4j2.properties").write_text(_LOG4J2.format(log=node.log_path))

    def _jvm(self, node: _Node, heap: str, cds: str | None = None) -> list[str]:
        if cds is None and self._cds is not None and self._cds.exists():
            cds = f"-XX:SharedArchiveFile={self._cds}"
        return [
            self._java,
            *([cds] if cds else []),
            f"-Xmx{heap}",
            "-Xms32m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # C1 only: much less CPU to start on small machines
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            "-Dlog4j2.shutdownHookEnabled=false",  # file appender flushes every event
            f"-Dlog4j2.configurationFile={node.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={node.dir}",
            "-cp",
            self._classpath,
        ]

    def _format(self) -> None:
        """Format every node's storage with the shared cluster id.

        The first time (per JVM and jar set) this runs ``kafka.tools.StorageTool
        format`` on every node in parallel and caches the ``bootstrap.checkpoint``
        it wrote (feature levels only, no ids). Later clusters get that file plus
        a ``meta.properties``, which is all the tool writes for static voters, and
        skip one JVM start per node. ``extra_config`` always uses the tool.
        """
        template = self._bootstrap_template
        if all((n.dir / "data" / "meta.properties").exists() for n in self._nodes):
            return  # already formatted (persistent base_dir)
        if template.exists() and not self.extra_config:
            for node in self._nodes:
                data = node.dir / "data"
                data.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(template, data / "bootstrap.checkpoint")
                (data / "meta.properties").write_text(
                    f"node.id={node.index}\ndirectory.id={_new_uuid()}\nversion=1\ncluster.id={self.cluster_id}\n"
                )
            return
        procs = []
        for node in self._nodes:
            argv = self._jvm(node, "256m") + [
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.cluster_id}",
                f"--config={node.config_path}",
                "--ignore-formatted",
            ]
            procs.append((node, spawn(argv, node.dir / "format.log")))
        for node, proc in procs:
            if proc.wait(timeout=120) != 0:
                raise DevInfraError(f"formatting Kafka node {node.index} failed:\n{tail(node.dir / 'format.log')}")
        if not self.extra_config:
            written = self._nodes[0].dir / "data" / "bootstrap.checkpoint"
            tmp = template.with_suffix(f".{os.getpid()}.tmp")
            try:
                shutil.copyfile(written, tmp)
                os.replace(tmp, template)
            except OSError as exc:
                _log.debug("bootstrap template not cached: %s", exc)

    def _spawn(self, node: _Node) -> None:
        node.log_offset = node.log_path.stat().st_size if node.log_path.exists() else 0
        cds = None
        if self._cds is not None and not self._cds.exists() and not any(n.cds_tmp for n in self._nodes):
            # First run with this JVM and jar set: this node dumps the loaded
            # classes at exit; _reaped() publishes the archive for later JVMs.
            self._cds.parent.mkdir(parents=True, exist_ok=True)
            node.cds_tmp = self._cds.with_suffix(f".{os.getpid()}.{node.index}.tmp")
            cds = f"-XX:ArchiveClassesAtExit={node.cds_tmp}"
        argv = self._jvm(node, self.heap, cds) + ["kafka.Kafka", str(node.config_path)]
        node.proc = spawn(argv, node.stdout_path, cwd=node.dir)

    def _reaped(self, node: _Node) -> None:
        """Publish or discard the CDS archive a just-exited node was writing."""
        if node.cds_tmp is None or self._cds is None:
            return
        tmp, node.cds_tmp = node.cds_tmp, None
        killed = node.proc is not None and node.proc.returncode == -signal.SIGKILL
        try:
            if not killed and tmp.exists() and tmp.stat().st_size > 0:
                os.replace(tmp, self._cds)
            else:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            _log.debug("CDS archive %s not published: %s", tmp, exc)

    def _wait_started(self, nodes: list[_Node]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = list(nodes)
        while pending:
            for node in list(pending):
                if node.started():
                    pending.remove(node)
                elif not node.running():
                    raise node.failure("exited during startup")
            if pending and time.monotonic() > deadline:
                raise pending[0].failure(f"did not start within {self.startup_timeout:.0f}s")
            if pending:
                time.sleep(0.1)

    def _warm_up(self) -> None:
        """Have the group coordinator create ``__consumer_offsets`` in the background.

        Otherwise the first consumer group of a test waits ~3 s for it. Describing a
        group makes the broker create the topic; the answer is ignored and nobody
        waits for it (the client is kept alive until :meth:`stop`).
        """
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": _quiet_logger()})
        self._warm_up_call = (
            admin,
            admin.describe_consumer_groups(["privtune-devinfra-warmup"]),
        )

    def _wait_registered(self, ids: set[int]) -> None:
        """Wait until the cluster metadata lists brokers ``ids`` as alive."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": _quiet_logger()})
        deadline = time.monotonic() + self.startup_timeout
        seen: set[int] = set()
        while True:
            try:
                seen = set(admin.list_topics(timeout=2).brokers)
                if ids <= seen:
                    return
            except Exception as exc:  # noqa: BLE001 - KafkaException while starting
                _log.debug("waiting for Kafka: %s", exc)
            if time.monotonic() > deadline:
                missing = min(ids - seen)
                raise self._nodes[missing].failure(f"not registered after {self.startup_timeout:.0f}s")
            time.sleep(0.1)


def log_start_offsets(bootstrap_servers: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """First offset each partition of ``topic`` still holds (its low watermark), by partition.

    It rises above 0 once retention has deleted a partition's oldest records, so a test
    can wait for that before it relies on them being gone. A namespaced bus's topic is
    called ``<namespace>.<topic>`` on the broker.

    Raises:
        DevInfraError: the topic does not exist or the broker did not answer in time.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "privtune-devinfra-watermarks",
                         "enable.auto.commit": False, "logger": _quiet_logger()})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise DevInfraError(f"topic {topic} not found on {bootstrap_servers}")
        return {p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[0])
                for p in sorted(meta.partitions)}
    except KafkaException as exc:
        raise DevInfraError(f"could not read the log start offsets of {topic} on {bootstrap_servers}: {exc}") from exc
    finally:
        consumer.close()


def _distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def _quiet_logger() -> Any:
    logger = logging.getLogger("privtune.devinfra.kafka.admin")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger
