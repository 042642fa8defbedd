"""A RELP client (the Reliable Event Logging Protocol of rsyslog's ``imrelp``), over TLS.

Plain syslog over TLS has no acknowledgement; RELP does: every ``syslog`` command gets a
``rsp`` that says ``200 OK`` once the server has taken the message. So the exporter can
advance its cursor only past what the SIEM acknowledged. See
https://www.rsyslog.com/doc/relp.html (there is no RFC). A frame is::

    TXNR SP COMMAND SP DATALEN [SP DATA] LF

``TXNR`` counts 1..999999999 per session (then wraps to 1), ``open`` is the first command
(``relp_version=0``, ``relp_software=...``, ``commands=syslog``), each ``syslog`` carries one
message, ``close`` ends the session. The server answers ``rsp`` with the same TXNR and
``200 OK`` or ``500 <reason>``, and may announce its own shutdown with ``0 serverclose 0``.

Up to ``window`` messages are in flight at once. ``send`` returns how many messages,
counted from the first, were acknowledged; when the server refuses one or the connection
breaks it raises ``RelpError`` whose ``acknowledged`` says exactly that count, so the
caller resends from there (a message sent but not acknowledged may still have arrived:
RELP is at least once, receivers dedupe on the record id).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence

from services.audit.siem.ocsf import product_version
from services.audit.siem.syslog import connection_still_open

MAX_TXNR = 999_999_999
MAX_DATALEN = 999_999_999
MAX_RESPONSE_BYTES = 64 * 1024  # a rsp is "200 OK" or a short reason; more is a confused server
_HEADER_LIMIT = 9 + 1 + 32 + 1 + 9 + 1


class RelpError(ConnectionError):
    """A RELP session failed; the first ``acknowledged`` messages of the batch were acknowledged.

    ``refused`` is True when the server answered a message with an error code (it is up
    and said no: resending the same message will fail again) rather than the connection
    breaking or timing out.
    """

    def __init__(self, message: str, *, acknowledged: int, refused: bool = False) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged
        self.refused = refused


class RelpProtocolError(RelpError):
    """The server sent something that is not a RELP frame, or a response to nothing we asked."""


class RelpClient:
    """One RELP session to ``host:port``, opened on first use and reopened after a failure.

    Args:
        host, port: the RELP server (rsyslog ``imrelp`` with ``tls="on"``).
        ssl_context: a client context that trusts the server's CA, with the client
            certificate the server's ``tls.authMode`` wants; None speaks plain TCP.
        server_hostname: the name checked against the server's certificate (``host`` by default).
        window: the most messages sent but not yet acknowledged.
        timeout: seconds for connecting and for each read or write; a server that
            acknowledges nothing for this long fails the batch.
        software: what ``relp_software`` tells the server.

    Not thread-safe: one client per thread.
    """

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, *,
                 server_hostname: str | None = None, window: int = 128, timeout: float = 10.0,
                 software: str | None = None) -> None:
        if not 1 <= window <= 100_000:
            raise ValueError(f"RELP window must be 1..100000 messages, got {window}")
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.server_hostname = server_hostname or host
        self.window = window
        self.timeout = timeout
        self.software = software or f"privtune,{product_version()}"
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._txnr = 0
        self._used = False  # whether the open session has carried a batch already

    def send(self, messages: Sequence[bytes]) -> int:
        """Send each message as one ``syslog`` command; returns ``len(messages)`` once all are acknowledged.

        A session left over from an earlier call that turns out to be dead (the server
        restarted in between) is replaced once, transparently, if nothing of this batch
        was acknowledged on it.

        Raises:
            RelpError: the server refused a message (``500``), closed the session, broke
                the connection or did not answer within ``timeout``; ``acknowledged`` is
                how many messages, from the first, it acknowledged. The session is closed.
            ValueError: a message is empty or longer than RELP can frame.
        """
        for index, message in enumerate(messages):
            if not message or len(message) > MAX_DATALEN:
                raise ValueError(f"RELP message {index} is {len(message)} bytes; a syslog message is 1.."
                                 f"{MAX_DATALEN} bytes")
        if not messages:
            return 0
        reused = self._sock is not None and self._used
        if self._sock is not None and not connection_still_open(self._sock, self.timeout):
            self._drop()
            reused = False
        try:
            return self._send(messages)
        except RelpError as exc:
            if not (reused and exc.acknowledged == 0 and not exc.refused):
                raise
        return self._send(messages)

    def close(self) -> None:
        """End the session politely (``close``, then wait briefly for its ``rsp``) and close the socket."""
        sock = self._sock
        if sock is None:
            return
        try:
            txnr = self._next_txnr()
            sock.settimeout(min(self.timeout, 2.0))
            sock.sendall(_frame(txnr, "close", b""))
            while True:
                got, command, _ = self._read_frame()
                if command == "serverclose" or got == txnr:
                    break
        except (OSError, ssl.SSLError, RelpError):
            pass
        finally:
            self._drop()

    def __enter__(self) -> RelpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- session ---------------------------------------------------------------------------

    def _send(self, messages: Sequence[bytes]) -> int:
        try:
            self._open_if_needed()
        except RelpError:
            self._drop()
            raise
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            hint = ""
            if isinstance(exc, (ssl.SSLError, ConnectionResetError)) and self.ssl_context is not None \
                    and not isinstance(exc, ssl.SSLCertVerificationError):
                hint = (" (the server ended the TLS session: check that this client presents a certificate "
                        "the server's tls.authMode and tls.permittedPeer accept, and that it trusts the server's CA)")
            raise RelpError(f"cannot open a RELP session with {self.host}:{self.port}: {exc}{hint}",
                            acknowledged=0) from exc
        self._used = True
        total = len(messages)
        in_flight: dict[int, int] = {}  # txnr -> index in messages
        acked = [False] * total
        prefix = 0  # messages[:prefix] are all acknowledged
        next_index = 0
        try:
            while prefix < total:
                out = bytearray()
                while next_index < total and len(in_flight) < self.window:
                    txnr = self._next_txnr()
                    in_flight[txnr] = next_index
                    out += _frame(txnr, "syslog", messages[next_index])
                    next_index += 1
                if out:
                    self._sendall(bytes(out))
                txnr, command, data = self._read_frame()
                if command == "serverclose":
                    raise RelpError(f"RELP server {self.host}:{self.port} closed the session "
                                    f"({prefix} of {total} messages acknowledged)", acknowledged=prefix)
                if command != "rsp" or txnr not in in_flight:
                    raise RelpProtocolError(f"RELP server {self.host}:{self.port} sent {command!r} for transaction "
                                            f"{txnr}, which is not one in flight", acknowledged=prefix)
                index = in_flight.pop(txnr)
                code, text = _response(data)
                if code != 200:
                    raise RelpError(f"RELP server {self.host}:{self.port} refused message {index} of {total} with "
                                    f"{code} {text[:200]!r} ({prefix} acknowledged)", acknowledged=prefix,
                                    refused=True)
                acked[index] = True
                while prefix < total and acked[prefix]:
                    prefix += 1
        except RelpError as exc:
            self._drop()
            exc.acknowledged = prefix  # a frame that failed to parse does not know the count
            raise
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            what = "did not answer in time" if isinstance(exc, TimeoutError) else f"connection failed: {exc}"
            raise RelpError(f"RELP server {self.host}:{self.port} {what} ({prefix} of {total} messages "
                            f"acknowledged)", acknowledged=prefix) from exc
        return prefix

    def _open_if_needed(self) -> None:
        if self._sock is not None:
            return
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            if self.ssl_context is not None:
                self._sock = self.ssl_context.wrap_socket(raw, server_hostname=self.server_hostname)
            else:
                self._sock = raw
        except BaseException:
            raw.close()
            raise
        self._buffer.clear()
        self._txnr = 0
        self._used = False
        offers = f"relp_version=0\nrelp_software={self.software}\ncommands=syslog".encode("utf-8")
        txnr = self._next_txnr()
        self._sendall(_frame(txnr, "open", offers))
        got, command, data = self._read_frame()
        if command != "rsp" or got != txnr:
            raise RelpProtocolError(f"RELP server {self.host}:{self.port} answered open with {command!r} "
                                    f"(transaction {got})", acknowledged=0)
        code, text = _response(data)
        if code != 200:
            raise RelpError(f"RELP server {self.host}:{self.port} refused the session: {code} {text[:200]!r}",
                            acknowledged=0, refused=True)
        offered = dict(line.partition("=")[::2] for line in text.split("\n")[1:] if line)
        if "syslog" not in offered.get("commands", "").split(","):
            raise RelpProtocolError(f"RELP server {self.host}:{self.port} does not offer the syslog command "
                                    f"(commands={offered.get('commands', '')[:100]!r})", acknowledged=0)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._buffer.clear()
        self._used = False
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _next_txnr(self) -> int:
        self._txnr = 1 if self._txnr >= MAX_TXNR else self._txnr + 1
        return self._txnr

    def _sendall(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def _read_frame(self) -> tuple[int, str, bytes]:
        """The next frame from the server: (txnr, command, data)."""
        while True:
            parsed = parse_frame(self._buffer, max_data=MAX_RESPONSE_BYTES)
            if parsed is not None:
                (txnr, command, data), used = parsed
                del self._buffer[:used]
                return txnr, command, data
            assert self._sock is not None
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            self._buffer += chunk


def _frame(txnr: int, command: str, data: bytes) -> bytes:
    if not data:
        return b"%d %s 0\n" % (txnr, command.encode("ascii"))
    return b"%d %s %d %s\n" % (txnr, command.encode("ascii"), len(data), data)


def encode_frame(txnr: int, command: str, data: bytes = b"") -> bytes:
    """A RELP frame: ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``."""
    if not 0 <= txnr <= MAX_TXNR or not command.isascii() or not command.isalpha() or not 1 <= len(command) <= 32:
        raise ValueError(f"not a RELP frame header: txnr {txnr}, command {command[:40]!r}")
    return _frame(txnr, command, data)


def parse_frame(buffer: bytes | bytearray, *, max_data: int = MAX_DATALEN) -> tuple[tuple[int, str, bytes], int] | None:
    """Parse one frame from the start of ``buffer``: ((txnr, command, data), bytes used), or None if incomplete.

    Raises:
        RelpProtocolError: the bytes are not a RELP frame, or its data is over ``max_data``.
    """
    spaces: list[int] = []
    header_end = -1  # the SP before the data, or the LF of a frame without data
    for i in range(min(len(buffer), _HEADER_LIMIT)):
        byte = buffer[i]
        if byte == 0x20:
            spaces.append(i)
            if len(spaces) == 3:
                header_end = i
                break
        elif byte == 0x0A:
            if len(spaces) != 2:
                raise RelpProtocolError(f"not a RELP frame header: {bytes(buffer[:40])!r}", acknowledged=0)
            header_end = i
            break
    if header_end < 0:
        if len(buffer) >= _HEADER_LIMIT:
            raise RelpProtocolError(f"not a RELP frame header: {bytes(buffer[:40])!r}", acknowledged=0)
        return None
    txnr_text = bytes(buffer[:spaces[0]])
    command_bytes = bytes(buffer[spaces[0] + 1:spaces[1]])
    length_end = header_end
    length_text = bytes(buffer[spaces[1] + 1:length_end])
    if not (txnr_text.isdigit() and len(txnr_text) <= 9 and command_bytes.isalpha() and len(command_bytes) <= 32
            and length_text.isdigit() and len(length_text) <= 9):
        raise RelpProtocolError(f"not a RELP frame header: {bytes(buffer[:40])!r}", acknowledged=0)
    length = int(length_text)
    if length > max_data:
        raise RelpProtocolError(f"RELP frame of {length} bytes is over the {max_data}-byte limit", acknowledged=0)
    txnr, command = int(txnr_text), command_bytes.decode("ascii")
    if length == 0:
        if len(spaces) == 3:  # "1 rsp 0 ..." : data where the length says none
            raise RelpProtocolError(f"RELP frame says 0 bytes of data but has some: {bytes(buffer[:40])!r}",
                                    acknowledged=0)
        return (txnr, command, b""), length_end + 1
    if len(spaces) < 3:
        raise RelpProtocolError(f"RELP frame of {length} bytes has no data: {bytes(buffer[:40])!r}", acknowledged=0)
    start = length_end + 1
    end = start + length
    if len(buffer) < end + 1:
        return None
    if buffer[end] != 0x0A:
        raise RelpProtocolError("RELP frame does not end with LF after its data", acknowledged=0)
    return (txnr, command, bytes(buffer[start:end])), end + 1


def _response(data: bytes) -> tuple[int, str]:
    """``200 OK\\nrelp_version=0...`` -> (200, the text after the code)."""
    text = data.decode("utf-8", errors="replace")
    code = text[:3]
    if not code.isdigit():
        return 0, text
    return int(code), text[4:] if len(text) > 3 else ""
