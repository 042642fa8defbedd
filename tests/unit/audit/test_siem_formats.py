"""SIEM exports: OCSF, CEF and RFC 5424 formats with hostile values, RELP framing and sessions
against an in-process fake server, and the resumable exporter with fake sinks."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit import chain
from services.audit.chain import AuditRecord
from services.audit.siem import ocsf
from services.audit.siem.cef import escape_extension, escape_header, to_cef
from services.audit.siem.exporter import CallableSink, DeliveryError, Exporter
from services.audit.siem.ocsf import to_ocsf, validate_ocsf
from services.audit.siem.relp import (
    RelpClient,
    RelpError,
    RelpProtocolError,
    encode_frame,
    parse_frame,
)
from services.audit.siem.syslog import escape_sd_value, format_rfc5424, frame
from services.common.supervision import LoopStatus

pytestmark = pytest.mark.unit

HOSTILE = [
    "pipe|pipe", "eq=uals", "back\\slash", "new\nline", "carriage\rreturn", "close]bracket", 'quo"te',
    "ünïcødé 漢字 😀", "\\|=]\"\n\r", " leading and trailing ", "tab\there", "=", "\\", "|", "]", '"',
    "x" * 2500, "name\u200cwith\u200dzero-width", "bell\x07nul\x00esc\x1b",
]
TEXT = st.text(st.characters(codec="utf-8"), max_size=80)  # any valid text (no lone surrogates)
NO_CONTROLS = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=80)
CLEAN_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]) | st.sampled_from("\r\n\t\\|=]\""),
                     max_size=80)


def _record(prev: AuditRecord | None = None, **overrides: Any) -> AuditRecord:
    entry: dict[str, Any] = {
        "tenant_id": "acme",
        "record_id": "evt-1",
        "time_ms": 1_700_000_000_123,
        "kind": "rpc.allowed",
        "actor": "alice",
        "resource": "dataset/ds-1",
        "outcome": "allowed",
        "correlation_id": "corr-1",
        "attributes": {"method": "/privtune.v1.DatasetService/GetDataset", "peer": "ipv4:10.1.2.3:40000"},
    }
    entry.update(overrides)
    return chain.append(prev, **entry)


def _records(n: int, **overrides: Any) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    prev = None
    for i in range(n):
        prev = _record(prev, record_id=f"evt-{i:05d}", **overrides)
        out.append(prev)
    return out


# --- OCSF -------------------------------------------------------------------------------------

def test_an_allowed_call_is_api_activity_with_every_id_a_siem_needs() -> None:
    record = _record()
    event = to_ocsf(record)
    assert isinstance(validate_ocsf(event), ocsf.ApiActivity)
    assert (event["class_uid"], event["category_uid"], event["activity_id"], event["type_uid"]) == (6003, 6, 2, 600302)
    assert event["actor"]["user"]["uid"] == "alice"
    assert event["api"]["operation"] == "/privtune.v1.DatasetService/GetDataset"
    assert event["api"]["service"] == {"name": "DatasetService", "uid": "privtune.v1.DatasetService", "version": "v1"}
    assert (event["status"], event["status_id"]) == ("Success", 1)
    assert (event["severity"], event["severity_id"]) == ("Informational", 1)
    assert event["time"] == record.time_ms
    meta = event["metadata"]
    assert meta["uid"] == "evt-1" and meta["tenant_uid"] == "acme" and meta["correlation_uid"] == "corr-1"
    assert meta["product"]["name"] == meta["product"]["vendor_name"] == "privtune"
    assert meta["version"] == ocsf.OCSF_VERSION and meta["sequence"] == record.seq
    assert meta["original_time"] == "2023-11-14T22:13:20.123Z"
    assert event["src_endpoint"] == {"ip": "10.1.2.3", "port": 40000}
    assert event["resources"] == [{"uid": "dataset/ds-1", "type": "dataset"}]
    assert event["unmapped"]["hash"] == record.hash and event["unmapped"]["seq"] == record.seq
    assert event["unmapped"]["prev_hash"] == record.prev_hash


def test_raw_data_lets_a_siem_recompute_the_chain_hash() -> None:
    first = _record()
    second = _record(first, record_id="evt-2")
    event = to_ocsf(second)
    parsed = chain.record_from_json(event["raw_data"].encode("utf-8"))
    assert chain.record_hash(parsed) == second.hash == event["unmapped"]["hash"]
    assert parsed.prev_hash == first.hash
    content = json.loads(event["raw_data"])
    del content["hash"]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert hashlib.sha256(canonical).hexdigest() == second.hash
    assert "raw_data" not in to_ocsf(second, include_raw=False)


def test_an_authorization_denial_is_a_failed_api_activity() -> None:
    event = to_ocsf(_record(kind="rpc.denied", outcome="denied",
                            attributes={"method": "/privtune.v1.RegistryService/PromoteModel", "rule": "authorization",
                                        "reason": "PromoteModel needs one of the roles promote"}))
    validate_ocsf(event)
    assert event["class_uid"] == 6003 and event["activity_id"] == 3  # Promote: an update
    assert (event["status_id"], event["severity_id"]) == (2, ocsf.MEDIUM)
    assert event["status_detail"].startswith("PromoteModel needs")


@pytest.mark.parametrize("kind, actor, attributes", [
    ("rpc.denied", "anonymous", {"rule": "authentication", "method": "/privtune.v1.DatasetService/ListDatasets"}),
    ("rpc.denied", "", {"reason": "MISSING_CREDENTIALS"}),
    ("rpc.denied", "bob", {"code": "unauthenticated"}),
    ("auth.failed", "mallory", {}),
    ("auth.succeeded", "alice", {}),
])
def test_credential_failures_and_auth_kinds_are_authentication(kind: str, actor: str,
                                                                attributes: dict[str, str]) -> None:
    outcome = "succeeded" if kind == "auth.succeeded" else "denied"
    event = to_ocsf(_record(kind=kind, actor=actor, outcome=outcome, attributes=attributes))
    assert isinstance(validate_ocsf(event), ocsf.Authentication)
    assert (event["class_uid"], event["category_uid"], event["activity_id"]) == (3002, 3, 1)
    assert event["user"]["uid"] == (actor or "anonymous")
    assert event["status_id"] == (1 if outcome == "succeeded" else 2)
    if not actor or actor == "anonymous":
        assert event["user"]["type_id"] == 0


def test_break_glass_is_an_authorize_session_of_high_severity() -> None:
    event = to_ocsf(_record(kind="break_glass.used", actor="glass-user",
                            attributes={"method": "/privtune.v1.DatasetService/ListDatasets", "issuer": "https://idp"}))
    assert isinstance(validate_ocsf(event), ocsf.AuthorizeSession)
    assert (event["class_uid"], event["activity_id"], event["type_uid"]) == (3003, 1, 300301)
    assert event["privileges"] == ["break-glass"] and event["severity_id"] == ocsf.HIGH
    assert event["user"]["uid"] == "glass-user"


@pytest.mark.parametrize("kind, activity", [
    ("dataset.registered", 1), ("checkpoint.saved", 1), ("training.completed", 3), ("model.alias_moved", 3),
    ("data.mounted", 2), ("audit.read", 2), ("tenant.deleted", 4), ("something.unheard_of", 99),
])
def test_other_kinds_are_api_activity_by_their_verb(kind: str, activity: int) -> None:
    event = to_ocsf(_record(kind=kind, actor="system", outcome="succeeded", attributes={}))
    validate_ocsf(event)
    assert event["class_uid"] == 6003 and event["activity_id"] == activity
    assert event["api"]["operation"] == kind and event["metadata"]["event_code"] == kind
    assert event["actor"]["user"]["type_id"] == 3  # system
    assert event["src_endpoint"] == {"name": "unknown"}  # OCSF requires one; none was recorded
    if activity == 99:
        assert event["activity_name"] == "unheard_of"


@pytest.mark.parametrize("outcome, status, severity", [
    ("OK", 1, ocsf.INFORMATIONAL), ("NOT_FOUND", 2, ocsf.LOW), ("PERMISSION_DENIED", 2, ocsf.LOW),
    ("", 0, ocsf.INFORMATIONAL), ("half-done", 99, ocsf.INFORMATIONAL),
])
def test_an_admitted_call_takes_its_status_from_the_grpc_code(outcome: str, status: int, severity: int) -> None:
    event = to_ocsf(_record(outcome=outcome))
    validate_ocsf(event)
    assert (event["status_id"], event["severity_id"]) == (status, severity)
    assert event["status"] == {0: "Unknown", 1: "Success", 2: "Failure"}.get(status, outcome)


@pytest.mark.parametrize("peer, endpoint", [
    ("ipv6:[::1]:5000", {"ip": "::1", "port": 5000}),
    ("192.168.0.9", {"ip": "192.168.0.9"}),
    ("unix:/tmp/sock", {"name": "unknown"}),
    ("ipv4:999.1.1.1:80", {"name": "unknown"}),
])
def test_the_source_endpoint_comes_from_the_peer_attribute(peer: str, endpoint: dict[str, Any]) -> None:
    event = to_ocsf(_record(attributes={"peer": peer}))
    assert event["src_endpoint"] == endpoint
    validate_ocsf(event)


def test_a_time_past_year_9999_still_makes_a_valid_event() -> None:
    event = to_ocsf(_record(time_ms=chain.MAX_SAFE_INT))
    validate_ocsf(event)
    assert "original_time" not in event["metadata"] and event["time"] == chain.MAX_SAFE_INT


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["rpc.allowed", "rpc.denied", "auth.failed", "break_glass.used", "dataset.registered",
                             "x", "weird.kind.with.dots", "rpc.denied|x=y"]),
       actor=TEXT, resource=TEXT, outcome=st.sampled_from(["allowed", "denied", "failed", "", "odd"]),
       record_id=TEXT.filter(bool), attributes=st.dictionaries(TEXT.filter(bool), TEXT, max_size=4))
def test_every_record_becomes_a_valid_ocsf_event(kind: str, actor: str, resource: str, outcome: str, record_id: str,
                                                 attributes: dict[str, str]) -> None:
    event = to_ocsf(_record(kind=kind, actor=actor, resource=resource, outcome=outcome, record_id=record_id,
                            attributes=attributes))
    validate_ocsf(event)
    assert event["metadata"]["uid"] == record_id
    assert json.loads(json.dumps(event)) == event


def test_validate_ocsf_refuses_what_is_not_ocsf() -> None:
    event = to_ocsf(_record())
    with pytest.raises(ValueError, match="does not know"):
        validate_ocsf({**event, "metadata": {**event["metadata"], "tenant": "acme"}})
    with pytest.raises(ValueError):
        validate_ocsf({**event, "unknown_top_level": 1})
    with pytest.raises(ValueError, match="type_uid"):
        validate_ocsf({**event, "type_uid": 600399})
    with pytest.raises(ValueError, match="class_uid"):
        validate_ocsf({**event, "class_uid": 4001})
    with pytest.raises(ValueError):
        validate_ocsf({k: v for k, v in event.items() if k != "api"})
    with pytest.raises(ValueError):
        validate_ocsf({**event, "severity_id": 7})


@pytest.mark.parametrize("kind", ["rpc.allowed", "auth.failed"])
def test_a_maximal_record_stays_under_the_receiver_limit(kind: str) -> None:
    # quotes double in every JSON layer, and an Authentication event names the actor four times
    record = _record(kind=kind, actor='"' * 7_900, attributes={})
    assert len(chain.canonical_bytes(record)) > 15_000
    for body in ("ocsf", "cef", "json"):
        assert len(format_rfc5424(record, hostname="h", body=body)) < 256 * 1024  # type: ignore[arg-type]


# --- CEF --------------------------------------------------------------------------------------

def _split_unescaped(text: str, sep: str, limit: int) -> list[str]:
    parts: list[str] = []
    current, i = "", 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current += text[i:i + 2]
            i += 2
            continue
        if c == sep and len(parts) < limit:
            parts.append(current)
            current = ""
        else:
            current += c
        i += 1
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), text)


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A reference CEF reader: header fields and extension values, unescaped."""
    parts = _split_unescaped(line, "|", 7)
    assert len(parts) == 8, parts
    header = [_unescape(p) for p in parts[:7]]
    extension = parts[7]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9]+)=", extension))
    values: dict[str, str] = {}
    for current, following in zip(keys, keys[1:] + [None]):
        end = following.start() if following is not None else len(extension)
        values[current.group(1)] = _unescape(extension[current.end():end])
    return header, values


def test_cef_header_and_labelled_extensions() -> None:
    record = _record()
    line = to_cef(record)
    header, ext = parse_cef(line)
    assert header[:5] == ["CEF:0", "privtune", "privtune", ocsf.product_version(), "rpc.allowed"]
    assert header[5] == "API call allowed" and header[6] == "1"
    assert ext["rt"] == str(record.time_ms) and ext["suser"] == "alice" and ext["outcome"] == "allowed"
    assert ext["request"] == "/privtune.v1.DatasetService/GetDataset"
    labels = {ext[f"cs{i}Label"]: ext[f"cs{i}"] for i in range(1, 7)}
    assert labels["tenant"] == "acme" and labels["recordId"] == "evt-1" and labels["correlationId"] == "corr-1"
    assert labels["hash"] == record.hash and labels["resource"] == "dataset/ds-1"
    assert json.loads(labels["attributes"]) == [list(p) for p in record.attributes]
    assert (ext["cn1Label"], ext["cn1"]) == ("seq", "1")
    assert (ext["flexString1Label"], ext["flexString1"]) == ("prevHash", record.prev_hash)


@pytest.mark.parametrize("kind, severity", [("rpc.denied", "5"), ("break_glass.used", "8"), ("training.failed", "3")])
def test_cef_severity_follows_the_ocsf_severity(kind: str, severity: str) -> None:
    outcome = "allowed" if kind.startswith("break") else "denied" if kind == "rpc.denied" else "failed"
    assert parse_cef(to_cef(_record(kind=kind, outcome=outcome)))[0][6] == severity


@pytest.mark.parametrize("value", HOSTILE)
def test_cef_escapes_hostile_values_and_never_breaks_a_line(value: str) -> None:
    record = _record(actor=value, resource=value, correlation_id=value, record_id=value or "x", kind=f"k.{value}")
    line = to_cef(record)
    assert "\n" not in line and "\r" not in line
    header, ext = parse_cef(line)
    cleaned = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", "\ufffd", value)
    assert ext["suser"] == cleaned.strip() or ext["suser"] == cleaned
    assert header[4] == f"k.{cleaned}".replace("\n", " ").replace("\r", " ")


@settings(max_examples=200, deadline=None)
@given(actor=CLEAN_TEXT, resource=CLEAN_TEXT, correlation=CLEAN_TEXT)
def test_cef_extension_values_read_back_exactly(actor: str, resource: str, correlation: str) -> None:
    # a space next to a key boundary is ambiguous in CEF itself; readers trim, so do we
    actor, resource, correlation = (v.strip(" ") or "v" for v in (actor, resource, correlation))
    _, ext = parse_cef(to_cef(_record(actor=actor, resource=resource, correlation_id=correlation)))
    assert (ext["suser"], ext["cs5"], ext["cs3"]) == (actor, resource, correlation)


def test_cef_escape_functions() -> None:
    assert escape_header("a|b\\c\nd") == "a\\|b\\\\c d"
    assert escape_extension("a=b\\c\nd\re|f") == "a\\=b\\\\c\\nd\\re|f"
    assert escape_extension("nul\x00") == "nul\ufffd"
    assert escape_extension("zero\u200dwidth é") == "zero\u200dwidth é"


# --- RFC 5424 ---------------------------------------------------------------------------------

_SYSLOG = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")


def parse_sd(data: bytes) -> tuple[str, dict[str, str], bytes]:
    """A reference SD-ELEMENT reader: (sd id, params, rest of the message)."""
    text = data.decode("utf-8")
    assert text[0] == "["
    i = text.index(" ")
    sd_id, params = text[1:i], {}
    while text[i] == " ":
        eq = text.index("=", i)
        name = text[i + 1:eq]
        assert text[eq + 1] == '"'
        j, value = eq + 2, ""
        while text[j] != '"':
            if text[j] == "\\" and text[j + 1] in '"\\]':
                value += text[j + 1]
                j += 2
            else:
                value += text[j]
                j += 1
        params[name] = value
        i = j + 1
    assert text[i] == "]"
    return sd_id, params, text[i + 1:].encode("utf-8")


def _split_syslog(message: bytes) -> tuple[tuple[bytes, ...], str, dict[str, str], bytes]:
    match = _SYSLOG.match(message)
    assert match, message[:200]
    sd_id, params, rest = parse_sd(message[match.end():])
    assert rest[:1] == b" "
    return match.groups(), sd_id, params, rest[1:]


def test_rfc5424_header_structured_data_and_cef_body() -> None:
    record = _record()
    message = format_rfc5424(record, hostname="audit-1.example", procid="42")
    (pri, timestamp, host, app, procid, msgid), sd_id, params, body = _split_syslog(message)
    assert pri == b"110"  # facility 13 (log audit) * 8 + 6 (informational)
    assert (timestamp, host, app, procid, msgid) == (b"2023-11-14T22:13:20.123Z", b"audit-1.example",
                                                     b"privtune-audit", b"42", b"rpc.allowed")
    assert sd_id == "privtune@32473"
    assert params == {"record_id": "evt-1", "tenant": "acme", "seq": "1", "hash": record.hash,
                      "prev_hash": record.prev_hash}
    assert body.decode() == to_cef(record)
    assert not body.startswith(b"\xef\xbb\xbf")


def test_rfc5424_bodies_and_priorities() -> None:
    record = _record(kind="break_glass.used")
    assert _split_syslog(format_rfc5424(record, hostname="h"))[0][0] == b"106"  # 13 * 8 + 2 (critical)
    ocsf_body = _split_syslog(format_rfc5424(record, hostname="h", body="ocsf"))[3]
    assert isinstance(validate_ocsf(json.loads(ocsf_body)), ocsf.AuthorizeSession)
    json_body = _split_syslog(format_rfc5424(record, hostname="h", body="json"))[3]
    assert json_body == chain.record_to_json(record) and chain.record_from_json(json_body) == record


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("body", ["cef", "ocsf", "json"])
def test_rfc5424_escapes_hostile_values(value: str, body: str) -> None:
    record = _record(record_id=value, actor=value, kind=f"kind {value}", attributes={"note": value})
    message = format_rfc5424(record, hostname="h", body=body)  # type: ignore[arg-type]
    assert b"\n" not in message and b"\r" not in message
    (_, _, _, _, _, msgid), _, params, rest = _split_syslog(message)
    assert params["record_id"] == re.sub("[\x00-\x1f\x7f-\x9f]", "\ufffd", value)
    assert 1 <= len(msgid) <= 32 and all(33 <= b <= 126 for b in msgid)
    if body != "cef":
        assert json.loads(rest)  # a JSON body is intact JSON


@settings(max_examples=200, deadline=None)
@given(record_id=NO_CONTROLS.filter(bool), tenant=NO_CONTROLS.filter(bool))
def test_sd_param_values_read_back_exactly(record_id: str, tenant: str) -> None:
    message = format_rfc5424(_record(record_id=record_id, tenant_id=tenant), hostname="h")
    params = _split_syslog(message)[2]
    assert (params["record_id"], params["tenant"]) == (record_id, tenant)


def test_sd_escape_and_frame() -> None:
    assert escape_sd_value('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert escape_sd_value("line\nbreak\x00 é") == "line\ufffdbreak\ufffd é"
    assert frame(b"hello") == b"5 hello"
    assert frame("é".encode()) == b"2 \xc3\xa9"  # octets, not characters


@pytest.mark.parametrize("field, value", [("hostname", ""), ("hostname", "has space"), ("hostname", "hôst"),
                                          ("hostname", "h" * 256), ("app_name", "a" * 49), ("procid", "p q"),
                                          ("sd_id", "bad=id"), ("body", "xml"), ("facility", 24)])
def test_rfc5424_refuses_bad_header_settings(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"hostname": "h", field: value}
    with pytest.raises(ValueError):
        format_rfc5424(_record(), **kwargs)


def test_a_time_past_year_9999_is_the_nil_timestamp() -> None:
    assert _split_syslog(format_rfc5424(_record(time_ms=chain.MAX_SAFE_INT), hostname="h"))[0][1] == b"-"


# --- RELP framing -----------------------------------------------------------------------------

@pytest.mark.parametrize("txnr, command, data", [(1, "open", b"relp_version=0\ncommands=syslog"),
                                                 (999_999_999, "rsp", b"200 OK"), (7, "close", b""),
                                                 (3, "syslog", b"with spaces \n and LF\n")])
def test_relp_frames_round_trip(txnr: int, command: str, data: bytes) -> None:
    encoded = encode_frame(txnr, command, data)
    assert encoded.endswith(b"\n")
    assert parse_frame(encoded + b"2 rsp 6 200 OK\n") == ((txnr, command, data), len(encoded))
    for cut in range(len(encoded)):
        assert parse_frame(encoded[:cut]) is None  # incomplete: wait for more


@pytest.mark.parametrize("garbage", [b"x rsp 0\n", b"1 rsp\n", b"1 r$p 0\n", b"1 rsp 3 abcd", b"1 rsp 0 x\n",
                                     b"12345678901 rsp 0\n", b"1 rsp 10 abc\n" + b"x" * 60, b"HTTP/1.1 200 OK\r\n"])
def test_relp_refuses_what_is_not_a_frame(garbage: bytes) -> None:
    with pytest.raises(RelpProtocolError):
        parse_frame(garbage)


def test_relp_refuses_an_oversized_frame_before_reading_it() -> None:
    with pytest.raises(RelpProtocolError, match="over"):
        parse_frame(b"1 rsp 99999 ", max_data=1000)


class FakeRelpServer:
    """A RELP server on 127.0.0.1 (plain TCP) whose answer to each syslog command a test decides.

    ``on_syslog(index, txnr, data)`` returns the rsp frames to send (bytes), ``b""`` to send
    nothing yet, or None to drop the connection. ``index`` counts syslog commands over all
    sessions. Answers held back with ``b""`` are in ``held``.
    """

    def __init__(self, on_syslog: Callable[[int, int, bytes], bytes | None]) -> None:
        self.on_syslog = on_syslog
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.sessions = 0
        self.max_outstanding = 0
        self.opens: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.sessions += 1
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        buffer = bytearray()
        outstanding: list[int] = []
        while True:
            parsed = parse_frame(buffer)
            if parsed is None:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                continue
            (txnr, command, data), used = parsed
            del buffer[:used]
            if command == "open":
                self.opens.append(data)
                conn.sendall(encode_frame(txnr, "rsp", b"200 OK\nrelp_version=0\nrelp_software=fake\n"
                                                       b"commands=syslog"))
            elif command == "close":
                conn.sendall(encode_frame(txnr, "rsp"))
                return
            elif command == "syslog":
                outstanding.append(txnr)
                self.max_outstanding = max(self.max_outstanding, len(outstanding))
                index = len(self.received)
                self.received.append(data)
                answer = self.on_syslog(index, txnr, data)
                if answer is None:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                if answer:
                    conn.sendall(answer)
                    outstanding.clear()

    def close(self) -> None:
        self.listener.close()


def _ok(txnr: int) -> bytes:
    return encode_frame(txnr, "rsp", b"200 OK")


@pytest.fixture
def fake_relp() -> Iterator[Callable[[Callable[[int, int, bytes], bytes | None]], FakeRelpServer]]:
    servers: list[FakeRelpServer] = []

    def make(on_syslog: Callable[[int, int, bytes], bytes | None]) -> FakeRelpServer:
        server = FakeRelpServer(on_syslog)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def _messages(n: int) -> list[bytes]:
    return [f"<110>1 - h app - - - message {i}".encode() for i in range(n)]


def test_relp_sends_in_order_and_counts_acknowledgements(fake_relp: Any) -> None:
    server = fake_relp(lambda i, txnr, data: _ok(txnr))
    with RelpClient("127.0.0.1", server.port, None, window=4, timeout=10) as client:
        assert client.send(_messages(25)) == 25
        assert client.send(_messages(3)) == 3
    assert server.received == _messages(25) + _messages(3) and server.sessions == 1
    offers = server.opens[0].split(b"\n")
    assert b"relp_version=0" in offers and b"commands=syslog" in offers
    assert any(o.startswith(b"relp_software=privtune") for o in offers)
    assert server.max_outstanding <= 4


def test_relp_answers_out_of_order_still_count_from_the_first(fake_relp: Any) -> None:
    held: list[int] = []

    def answer(i: int, txnr: int, data: bytes) -> bytes:
        held.append(txnr)
        if len(held) < 3:
            return b""
        frames = b"".join(_ok(t) for t in reversed(held))
        held.clear()
        return frames

    server = fake_relp(answer)
    client = RelpClient("127.0.0.1", server.port, None, window=3, timeout=10)
    assert client.send(_messages(9)) == 9
    client.close()
    assert server.max_outstanding == 3


def test_relp_refusal_says_how_many_were_acknowledged(fake_relp: Any) -> None:
    server = fake_relp(lambda i, txnr, data: _ok(txnr) if i != 5 else encode_frame(txnr, "rsp", b"500 no space"))
    client = RelpClient("127.0.0.1", server.port, None, window=1, timeout=10)
    with pytest.raises(RelpError, match="refused message 5") as info:
        client.send(_messages(10))
    assert info.value.acknowledged == 5 and info.value.refused


def test_relp_disconnect_mid_batch_says_how_many_were_acknowledged(fake_relp: Any) -> None:
    server = fake_relp(lambda i, txnr, data: _ok(txnr) if i < 7 else None)
    client = RelpClient("127.0.0.1", server.port, None, window=2, timeout=10)
    with pytest.raises(RelpError) as info:
        client.send(_messages(10))
    assert info.value.acknowledged == 7 and not info.value.refused


def test_relp_server_close_ends_the_batch(fake_relp: Any) -> None:
    server = fake_relp(lambda i, txnr, data: _ok(txnr) if i < 2 else encode_frame(0, "serverclose"))
    client = RelpClient("127.0.0.1", server.port, None, window=1, timeout=10)
    with pytest.raises(RelpError, match="closed the session") as info:
        client.send(_messages(4))
    assert info.value.acknowledged == 2


def test_relp_a_server_that_never_answers_times_out_with_a_full_window(fake_relp: Any) -> None:
    server = fake_relp(lambda i, txnr, data: b"")
    client = RelpClient("127.0.0.1", server.port, None, window=8, timeout=0.3)
    with pytest.raises(RelpError, match="did not answer") as info:
        client.send(_messages(20))
    assert info.value.acknowledged == 0
    for _ in range(200):  # the client sent a window's worth and then waited; let the server read it all
        if len(server.received) >= 8:
            break
        threading.Event().wait(0.02)
    assert len(server.received) == 8


def test_relp_reopens_a_session_the_server_dropped_between_batches(fake_relp: Any) -> None:
    server = fake_relp(lambda i, txnr, data: _ok(txnr) if i != 3 else None)  # the 4th message kills session 1
    client = RelpClient("127.0.0.1", server.port, None, window=1, timeout=10)
    assert client.send(_messages(3)) == 3
    assert client.send(_messages(2)) == 2  # session 1 dies on its first message; resent on session 2
    assert server.sessions == 2 and server.received[-2:] == _messages(2)


def test_relp_refuses_empty_messages_before_sending() -> None:
    client = RelpClient("127.0.0.1", 1, None)
    with pytest.raises(ValueError, match="1.."):
        client.send([b"ok", b""])
    assert client.send([]) == 0


# --- exporter ---------------------------------------------------------------------------------

class CursorStore:
    def __init__(self) -> None:
        self.position = 0
        self.saves: list[int] = []

    def load(self) -> int:
        return self.position

    def save(self, position: int) -> None:
        self.position = position
        self.saves.append(position)


def _log(records: Sequence[AuditRecord], step: int = 10) -> Callable[[int, int], list[tuple[int, AuditRecord]]]:
    """A log whose positions are step, 2*step, ... (gaps are allowed)."""
    positioned = [((i + 1) * step, r) for i, r in enumerate(records)]
    return lambda after, limit: [(p, r) for p, r in positioned if p > after][:limit]


def test_step_saves_the_cursor_of_the_last_acknowledged_record() -> None:
    records, store, sent = _records(7), CursorStore(), []

    def send(batch: Sequence[AuditRecord]) -> int:
        sent.append([r.record_id for r in batch])
        return len(batch)

    exporter = Exporter("test", _log(records), CallableSink(send), store.load, store.save, batch_size=3)
    assert [exporter.step() for _ in range(4)] == [3, 3, 1, 0]
    assert store.saves == [30, 60, 70]
    assert sum(sent, []) == [r.record_id for r in records]


def test_a_partial_delivery_saves_what_was_acknowledged_and_raises() -> None:
    records, store = _records(5), CursorStore()

    def send(batch: Sequence[AuditRecord]) -> int:
        raise DeliveryError("link broke", acknowledged=2)

    exporter = Exporter("test", _log(records), CallableSink(send), store.load, store.save, batch_size=5)
    with pytest.raises(DeliveryError, match="link broke"):
        exporter.step()
    assert store.position == 20


@pytest.mark.parametrize("outcome", [RuntimeError("sink down"), 0, 6, -1, True])
def test_a_failed_or_impossible_send_saves_nothing(outcome: Any) -> None:
    records, store = _records(5), CursorStore()

    def send(batch: Sequence[AuditRecord]) -> int:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    exporter = Exporter("test", _log(records), CallableSink(send), store.load, store.save, batch_size=5)
    with pytest.raises((RuntimeError, ValueError, DeliveryError)):
        exporter.step()
    assert store.saves == []


@pytest.mark.parametrize("batch", [[(5, "a"), (5, "b")], [(7, "a"), (6, "b")], [(0, "a")], [("1", "a")]])
def test_positions_that_do_not_increase_past_the_cursor_are_refused(batch: list[tuple[Any, str]]) -> None:
    record = _record()
    exporter = Exporter("test", lambda after, limit: [(p, record) for p, _ in batch], CallableSink(len),
                        lambda: 0, lambda position: None)
    with pytest.raises(ValueError, match="position"):
        exporter.step()


def test_a_new_exporter_resumes_from_the_saved_cursor() -> None:
    records, store = _records(10), CursorStore()
    delivered: list[str] = []
    sink = CallableSink(lambda batch: delivered.extend(r.record_id for r in batch))
    Exporter("first", _log(records), sink, store.load, store.save, batch_size=4).step()
    assert Exporter("second", _log(records), sink, store.load, store.save, batch_size=4).step() == 4
    assert delivered == [r.record_id for r in records[:8]]


def test_run_survives_failures_and_delivers_everything_at_least_once() -> None:
    records, store = _records(60), CursorStore()
    delivered: list[str] = []
    calls = {"n": 0}
    closed: list[int] = []

    def flaky(batch: Sequence[AuditRecord]) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("receiver away")
        if calls["n"] == 4:
            delivered.extend(r.record_id for r in batch[:2])
            raise DeliveryError("broke after two", acknowledged=2)
        delivered.extend(r.record_id for r in batch)
        return len(batch)

    stop = threading.Event()
    status = LoopStatus("siem-test")
    exporter = Exporter("siem-test", _log(records), CallableSink(flaky, close=lambda: closed.append(1)), store.load,
                        store.save, batch_size=7, idle_seconds=0.01)
    thread = threading.Thread(target=exporter.run, args=(stop,), kwargs={"status": status, "max_backoff": 0.5},
                              daemon=True)
    thread.start()
    for _ in range(1200):
        if store.position == 600:
            break
        stop.wait(0.05)
    stop.set()
    thread.join(timeout=30)
    assert store.position == 600
    ids = [r.record_id for r in records]
    assert list(dict.fromkeys(delivered)) == ids  # each at least once, first deliveries in log order
    assert status.total_failures == 2 and len(closed) == 2  # the sink was reset after each failure
