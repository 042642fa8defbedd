"""Audit records as RFC 5424 syslog messages, RFC 5425 / 6587 octet-counted framing, and a TLS sender.

A message looks like::

    <110>1 2023-11-14T22:13:20.123Z host privtune-audit - rpc.allowed \
[privtune@32473 record_id="evt-1" tenant="acme" seq="7" hash="ab.." prev_hash="cd.."] CEF:0|...

Facility 13 (log audit); the severity follows the record's OCSF severity. The
structured-data element carries what a receiver needs to dedupe (``record_id``: exports
are at least once) and to check the chain (``seq``, ``hash``, ``prev_hash``) without
parsing the body. ``32473`` is the private enterprise number RFC 5612 reserves for
examples: an operator with a PEN of their own passes ``sd_id``.

The body is chosen with ``body``: ``"cef"`` (a CEF line), ``"ocsf"`` (OCSF JSON) or
``"json"`` (the record's stored, hash-checkable JSON). No body contains a raw line
break, and no BOM is written (RFC 5424 allows MSG-ANY; a BOM would break JSON parsers
downstream).

Plain syslog over TLS (RFC 5425) has no acknowledgement: ``TlsSyslogSender`` knows only
what it wrote to the socket, and a message written just before the receiver went away
is lost without an error. It is best-effort. Use RELP (``relp.py``) where the exporter
must know what was delivered.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
from collections.abc import Sequence
from typing import Literal

from services.audit.chain import AuditRecord, record_to_json
from services.audit.siem.cef import to_cef
from services.audit.siem.ocsf import rfc3339, severity_id, to_ocsf_json

Body = Literal["cef", "ocsf", "json"]
FACILITY_LOG_AUDIT = 13
SD_ID = "privtune@32473"
# OCSF severity_id -> syslog severity (0 emergency .. 7 debug)
_SYSLOG_SEVERITY = {0: 5, 1: 6, 2: 5, 3: 4, 4: 2, 5: 1, 6: 0, 99: 5}
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_SD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})


class SyslogSendError(ConnectionError):
    """The TLS syslog connection failed; ``sent`` messages of the batch were written before it did."""

    def __init__(self, message: str, *, sent: int) -> None:
        super().__init__(message)
        self.sent = sent


def format_rfc5424(record: AuditRecord, *, hostname: str, app_name: str = "privtune-audit", procid: str = "-",
                   body: Body = "cef", sd_id: str = SD_ID, facility: int = FACILITY_LOG_AUDIT) -> bytes:
    """One RFC 5424 message (UTF-8, no framing) for ``record``.

    Raises:
        ValueError: ``hostname``, ``app_name``, ``procid`` or ``sd_id`` is not a valid
            RFC 5424 header token (printable US-ASCII without spaces, within its length
            limit), ``facility`` is outside 0..23, or ``body`` is unknown.
    """
    _check_token("hostname", hostname, 255)
    _check_token("app_name", app_name, 48)
    _check_token("procid", procid, 128)
    _check_token("sd_id", sd_id, 32)
    if any(c in sd_id for c in '= ]"'):
        raise ValueError(f"sd_id {sd_id!r} may not contain '=', ' ', ']' or '\"'")
    if not 0 <= facility <= 23:
        raise ValueError(f"syslog facility must be 0..23, got {facility}")
    pri = facility * 8 + _SYSLOG_SEVERITY[severity_id(record)]
    msgid = _msgid(record.kind)
    params = (("record_id", record.record_id), ("tenant", record.tenant_id), ("seq", str(record.seq)),
              ("hash", record.hash), ("prev_hash", record.prev_hash))
    sd = "[" + sd_id + "".join(f' {name}="{escape_sd_value(value)}"' for name, value in params) + "]"
    header = f"<{pri}>1 {_timestamp(record.time_ms)} {hostname} {app_name} {procid} {msgid} {sd} "
    return header.encode("utf-8") + _body(record, body)


def frame(message: bytes) -> bytes:
    """RFC 5425 / RFC 6587 octet counting: ``<length> SP <message>``."""
    return b"%d %s" % (len(message), message)


def escape_sd_value(value: str) -> str:
    """Escape an SD-PARAM value: ``"``, ``\\`` and ``]`` get a backslash (RFC 5424 section 6.3.3).

    RFC 5424 has no escape for control characters, and receivers rewrite them (rsyslog
    turns LF into ``#012``), so they become U+FFFD: a record id with a line break in it
    is hostile input, and the exact id is still in the JSON bodies.
    """
    escaped = value.translate(_SD_ESCAPES)
    return _CONTROLS.sub("\ufffd", escaped) if _CONTROLS.search(escaped) else escaped


class TlsSyslogSender:
    """Sends octet-counted syslog frames over one TLS connection (RFC 5425), reconnecting on failure.

    Best-effort: there is no acknowledgement, so ``send`` returns how many messages were
    *written*, not delivered. Before each batch the sender checks whether the receiver
    closed the connection (then it reconnects), and a write that fails is retried once
    on a new connection; a message that reached the kernel just before the receiver died
    is still lost. Not thread-safe: one sender per thread.

    Args:
        host, port: the receiver (e.g. rsyslog ``imtcp`` with ``StreamDriver.Mode="1"``).
        ssl_context: a client context that trusts the receiver's CA; load a client
            certificate into it if the receiver wants mutual TLS (rsyslog drops a client
            without one silently, after the handshake).
        server_hostname: the name to check the receiver's certificate against (``host``
            by default).
        timeout: seconds for connecting and for each write.
    """

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext, *, server_hostname: str | None = None,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.server_hostname = server_hostname or host
        self.timeout = timeout
        self._sock: ssl.SSLSocket | None = None

    def send(self, messages: Sequence[bytes]) -> int:
        """Write each message as one frame; returns how many were written (all of them, or raises).

        Raises:
            SyslogSendError: the connection failed twice in a row (once, then again on a
                fresh connection); ``sent`` says how many were written before.
        """
        if self._sock is not None and not self._still_open(self._sock):
            self._drop()
        for index, message in enumerate(messages):
            data = frame(message)
            try:
                self._connection().sendall(data)
            except (OSError, ssl.SSLError):
                self._drop()
                try:
                    self._connection().sendall(data)
                except (OSError, ssl.SSLError) as exc:
                    self._drop()
                    raise SyslogSendError(f"syslog over TLS to {self.host}:{self.port} failed after {index} of "
                                          f"{len(messages)} messages: {exc}", sent=index) from exc
        return len(messages)

    def close(self) -> None:
        """Close the connection, with a TLS close_notify so the receiver sees a clean end."""
        if self._sock is not None:
            sock, self._sock = self._sock, None
            try:
                sock.settimeout(min(self.timeout, 1.0))
                sock.unwrap()
            except (OSError, ValueError):  # ssl.SSLError is an OSError; the receiver may not answer
                pass
            try:
                sock.close()
            except OSError:
                pass

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> TlsSyslogSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> ssl.SSLSocket:
        if self._sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            try:
                self._sock = self.ssl_context.wrap_socket(raw, server_hostname=self.server_hostname)
            except BaseException:
                raw.close()
                raise
        return self._sock

    def _still_open(self, sock: ssl.SSLSocket) -> bool:
        return connection_still_open(sock, self.timeout)


def connection_still_open(sock: ssl.SSLSocket | socket.socket, timeout: float) -> bool:
    """False when the peer closed ``sock`` (or it broke) while we were not looking.

    A syslog or RELP server sends nothing unprompted but a close (RELP's ``serverclose``),
    so a readable socket means the session is over, unless it was TLS housekeeping
    (TLS 1.3 session tickets), which a non-blocking read consumes without returning data.
    Call it only between exchanges, when no response is due.
    """
    try:
        poller = select.poll()  # not select.select: that fails for descriptors above 1023
        poller.register(sock, select.POLLIN)
        readable = poller.poll(0)
    except (OSError, ValueError):
        return False
    pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
    if not readable and not pending:
        return True
    sock.setblocking(False)
    try:
        sock.recv(65536)  # EOF, or something unprompted: either way the session is over
        return False
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return True
    except (OSError, ssl.SSLError):
        return False
    finally:
        try:
            sock.settimeout(timeout)
        except OSError:
            pass


def _body(record: AuditRecord, body: Body) -> bytes:
    if body == "cef":
        return to_cef(record).encode("utf-8")
    if body == "ocsf":
        return to_ocsf_json(record).encode("utf-8")
    if body == "json":
        return record_to_json(record)
    raise ValueError(f"unknown syslog body {body!r}: use 'cef', 'ocsf' or 'json'")


def _msgid(kind: str) -> str:
    """The kind as MSGID: printable US-ASCII without spaces, at most 32 characters ('-' if empty)."""
    text = "".join(c if 33 <= ord(c) <= 126 else "_" for c in kind[:32])
    return text or "-"


def _timestamp(time_ms: int) -> str:
    return rfc3339(time_ms) or "-"  # NILVALUE for a time no RFC 3339 year can hold


def _check_token(name: str, value: str, limit: int) -> None:
    if not (1 <= len(value) <= limit and all(33 <= ord(c) <= 126 for c in value)):
        raise ValueError(f"syslog {name} must be 1..{limit} printable US-ASCII characters without spaces, "
                         f"got {value[:64]!r}")
