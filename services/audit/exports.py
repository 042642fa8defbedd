"""The audit log's exports, configured by URI (``audit_exports``, comma separated):

- ``kafka``: every record as OCSF JSON on the ``privtune.audit`` topic of the platform's bus (key:
  the tenant, header ``x-record-id``), for SIEM consumers of the event bus;
- ``relp://host:port?ca=FILE[&cert=FILE&key=FILE][&format=ocsf|cef|json][&name=N]``: RFC 5424
  messages over RELP with TLS: each one acknowledged by the receiver (rsyslog's ``imrelp``);
- ``syslog-tls://host:port?ca=FILE[...]``: RFC 5425 syslog over TLS. RFC 5425 has no
  acknowledgement, so "delivered" means written to an open connection: use RELP where a lost
  record matters.

Each export resumes from its own acknowledged position (``audit_counters``, ``export:<name>``),
which only moves after the receiver acknowledged: after a crash of the service, the link or the
receiver, nothing is missed; a record may be sent again, always with the same record id.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine

from services.audit import log_store
from services.audit.chain import AuditRecord
from services.audit.siem.exporter import CallableSink, Exporter, RelpSink, Sink, TlsSyslogSink
from services.audit.siem.ocsf import to_ocsf
from services.audit.siem.relp import RelpClient
from services.audit.siem.syslog import TlsSyslogSender, format_rfc5424
from services.common.bus import EventBus, Message
from services.common.errors import InvalidArgument
from services.common.limits import quote
from services.common.topics import AUDIT

_FORMATS = ("ocsf", "cef", "json")


@dataclass(frozen=True)
class ExportSpec:
    name: str
    scheme: str
    host: str = ""
    port: int = 0
    ca: str = ""
    cert: str = ""
    key: str = ""
    body: str = "ocsf"


def parse(exports: str) -> list[ExportSpec]:
    """The export specs of ``audit_exports``.

    Raises:
        InvalidArgument: an entry's scheme, address, format or options are not understood.
    """
    specs = []
    for text in filter(None, (part.strip() for part in exports.split(","))):
        if text == "kafka":
            specs.append(ExportSpec(name="kafka", scheme="kafka"))
            continue
        parts = urlsplit(text)
        if parts.scheme not in ("relp", "syslog-tls") or not parts.hostname or not parts.port:
            raise InvalidArgument(f"audit export {quote(text)} is not kafka, relp://host:port or "
                                  "syslog-tls://host:port")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"ca", "cert", "key", "format", "name"}
        if unknown:
            raise InvalidArgument(f"audit export {quote(text)}: unknown option(s) {', '.join(sorted(unknown))}")
        body = options.get("format", "ocsf")
        if body not in _FORMATS:
            raise InvalidArgument(f"audit export format {quote(body)} is not one of {', '.join(_FORMATS)}")
        if not options.get("ca"):
            raise InvalidArgument(f"audit export {quote(text)} needs ca=<file>: the receiver's CA (TLS only)")
        name = options.get("name") or f"{parts.scheme}-{parts.hostname}-{parts.port}"
        specs.append(ExportSpec(name=name, scheme=parts.scheme, host=parts.hostname, port=parts.port,
                                ca=options["ca"], cert=options.get("cert", ""), key=options.get("key", ""),
                                body=body))
    return specs


def tls_context(spec: ExportSpec) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=spec.ca)
    if spec.cert:
        context.load_cert_chain(spec.cert, spec.key or None)
    return context


def ocsf_json(record: AuditRecord) -> bytes:
    return json.dumps(to_ocsf(record), sort_keys=True, separators=(",", ":")).encode()


def kafka_sink(bus: EventBus) -> Sink:
    """OCSF JSON on ``privtune.audit``; the bus acknowledges a publish only once it is durable."""
    def send(records: Sequence[AuditRecord]) -> None:
        bus.publish([Message(topic=AUDIT, key=r.tenant_id.encode(), value=ocsf_json(r),
                             headers={"x-record-id": r.record_id.encode(), "x-tenant-id": r.tenant_id.encode(),
                                      "x-seq": str(r.seq).encode(), "content-type": b"application/json"},
                             id=f"audit/{r.tenant_id}/{r.record_id}")
                     for r in records])
    return CallableSink(send)


def sink_for(spec: ExportSpec, bus: EventBus | None) -> Sink:
    if spec.scheme == "kafka":
        if bus is None:
            raise InvalidArgument("the kafka audit export needs the platform's bus")
        return kafka_sink(bus)
    encode = functools.partial(format_rfc5424, hostname=socket.gethostname()[:255] or "privtune",
                               body=spec.body)  # type: ignore[arg-type]
    if spec.scheme == "relp":
        return RelpSink(RelpClient(spec.host, spec.port, tls_context(spec)), encode)
    return TlsSyslogSink(TlsSyslogSender(spec.host, spec.port, tls_context(spec)), encode)


def exporter(engine: Engine, spec: ExportSpec, sink: Sink, batch_size: int = 500) -> Exporter:
    cursor = f"export:{spec.name}"

    def fetch(after: int, limit: int) -> list[tuple[int, AuditRecord]]:
        with engine.connect() as conn:
            return log_store.records_after_position(conn, after, limit)

    def load() -> int:
        with engine.connect() as conn:
            return log_store.counter(conn, cursor)

    def save(position: int) -> None:
        with engine.begin() as conn:
            log_store.set_counter(conn, cursor, position)

    return Exporter(f"audit-export-{spec.name}", fetch, sink, load, save, batch_size=batch_size)


def exporters(engine: Engine, bus: EventBus | None, exports: str) -> list[Callable[..., None]]:
    """The ``run`` loops of every configured export."""
    return [exporter(engine, spec, sink_for(spec, bus)).run for spec in parse(exports)]
