"""A real rsyslog for the SIEM export tests: TLS syslog (RFC 5425) and RELP over TLS on loopback.

    syslog_receiver   module: a running ``SyslogReceiver``; installs rsyslog first
                      (``scripts/infra.sh rsyslog-install``, Debian packages, only if missing).

The receiver is ``rsyslogd -n -f <conf> -i <pidfile>`` with its own work directory and no
system configuration, listening on 127.0.0.1 only, on two free ports:

* ``tls_port``: ``imtcp`` with the ``gtls`` stream driver (``StreamDriver.Mode="1"``),
  mutual TLS (``x509/certvalid``: a client certificate from the test CA is required;
  rsyslog drops a client without one silently, after the handshake);
* ``relp_port``: ``imrelp`` with ``tls="on"``, ``tls.authMode="name"`` and the client
  certificate's DNS name as the one permitted peer.

At each start, the readiness probe (a bare TCP connect to each port) makes rsyslog log
one TLS handshake error per input in ``internal.log``: expected, not a failure.

Each input writes what it receives to its own file, one message per line, exactly as
received (``%rawmsg%``); ``received("tls" | "relp")`` reads them back. ``restart()`` stops and
starts rsyslog on the same ports. The main queue is ``Direct``, so imrelp acknowledges a
message only after the file action ran: an acknowledged message is on disk.

rsyslogd runs under a small watchdog process whose stdin is a pipe from pytest: when the
pipe closes (the fixture ends, or pytest dies, even by SIGKILL) the watchdog stops
rsyslogd; rsyslogd also gets SIGKILL if the watchdog itself dies (PR_SET_PDEATHSIG).
Certificates come from a throwaway CA made with ``cryptography`` for each receiver.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[1]
CLIENT_NAME = "audit-exporter.privtune.test"  # the DNS name on the client certificate; RELP permits only it
START_TIMEOUT_S = 30.0

# Runs rsyslogd as its child and exits with it; stops it when stdin reaches EOF (the test
# session ended or died).
_WATCHDOG = r"""
import ctypes, signal, subprocess, sys, threading
def die_with_parent():
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: rsyslogd dies if this watchdog dies
proc = subprocess.Popen(sys.argv[1:], preexec_fn=die_with_parent, stdin=subprocess.DEVNULL)
def stop_at_eof():
    sys.stdin.read()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
threading.Thread(target=stop_at_eof, daemon=True).start()
sys.exit(proc.wait())
"""


@dataclass(frozen=True)
class Certificates:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


class SyslogReceiver:
    """One rsyslogd on 127.0.0.1 with a TLS syslog input and a RELP/TLS input (see the module docstring)."""

    def __init__(self, workdir: Path, rsyslogd: str) -> None:
        self.workdir = workdir
        self.rsyslogd = rsyslogd
        self.certs = make_certificates(workdir / "pki")
        self.tls_port = free_port()
        self.relp_port = free_port()
        self.conf = workdir / "rsyslog.conf"
        self.pidfile = workdir / "rsyslogd.pid"
        self.spool = workdir / "spool"
        self.spool.mkdir(exist_ok=True)
        self.conf.write_text(self._config())
        self._watchdog: subprocess.Popen[str] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def client_context(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        """A TLS client context that trusts the test CA (and presents the client certificate)."""
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        if with_certificate:
            context.load_cert_chain(str(self.certs.client_cert), str(self.certs.client_key))
        return context

    def check_config(self) -> None:
        """``rsyslogd -N1``: fail with rsyslog's own words if the configuration is wrong."""
        done = subprocess.run([self.rsyslogd, "-N1", "-f", str(self.conf)], capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"rsyslog rejects {self.conf} (exit {done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        if self._watchdog is not None:
            raise RuntimeError("rsyslogd is already running")
        self.pidfile.unlink(missing_ok=True)
        cmd = [self.rsyslogd, "-n", "-f", str(self.conf), "-i", str(self.pidfile)]
        log = open(self.workdir / "rsyslogd.stderr", "a")
        try:
            self._watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, *cmd], stdin=subprocess.PIPE,
                                              stdout=log, stderr=log, text=True, cwd=self.workdir)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (_listening(self.host, self.tls_port) and _listening(self.host, self.relp_port)):
            if self._watchdog.poll() is not None or time.monotonic() > deadline:
                exited = self._watchdog.poll()
                what = f"exited with status {exited}" if exited is not None else \
                    f"did not listen on {self.host}:{self.tls_port} and :{self.relp_port} within {START_TIMEOUT_S:.0f}s"
                self.stop()
                raise RuntimeError(f"rsyslogd {what}:\n{self.diagnostics()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop rsyslogd (SIGTERM through the watchdog) and wait for it to exit."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        assert watchdog.stdin is not None
        try:
            watchdog.stdin.close()
        except OSError:
            pass
        try:
            watchdog.wait(timeout=20)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def restart(self) -> None:
        """Stop and start again on the same ports (connections of clients break)."""
        self.stop()
        self.start()

    def received(self, input_name: str) -> list[bytes]:
        """The messages an input (``"tls"`` or ``"relp"``) wrote so far, oldest first, as received."""
        if input_name not in ("tls", "relp"):
            raise ValueError(f"input is 'tls' or 'relp', not {input_name!r}")
        path = self.spool / f"{input_name}.log"
        if not path.exists():
            return []
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is not a message yet
        return complete.splitlines()

    def wait_for(self, input_name: str, count: int, *, timeout: float = 60.0) -> list[bytes]:
        """Poll until ``input_name`` has at least ``count`` messages; returns them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.received(input_name)
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"rsyslog's {input_name} input got {len(messages)} of {count} messages "
                                     f"within {timeout:.0f}s:\n{self.diagnostics()}")
            time.sleep(0.05)

    def diagnostics(self) -> str:
        """The tail of rsyslog's own messages and stderr, for a failure message."""
        parts = []
        for name in ("spool/internal.log", "rsyslogd.stderr"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts) or "(rsyslog wrote nothing)"

    def _config(self) -> str:
        c = self.certs
        return f"""# written by tests/syslog_receiver.py: no system configuration, loopback only
global(
  workDirectory="{self.spool}"
  processInternalMessages="on"
  maxMessageSize="256k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{c.ca}"
  defaultNetstreamDriverCertFile="{c.server_cert}"
  defaultNetstreamDriverKeyFile="{c.server_key}"
)
main_queue(queue.type="Direct")

module(load="imtcp" maxSessions="100")
module(load="imrelp")

template(name="whole" type="string" string="%rawmsg%\\n")

ruleset(name="tls") {{
  action(type="omfile" file="{self.spool}/tls.log" template="whole")
}}
ruleset(name="relp") {{
  action(type="omfile" file="{self.spool}/relp.log" template="whole")
}}

input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imrelp" address="127.0.0.1" port="{self.relp_port}" ruleset="relp" maxDataSize="256k"
      tls="on" tls.caCert="{c.ca}" tls.myCert="{c.server_cert}" tls.myPrivKey="{c.server_key}"
      tls.authMode="name" tls.permittedPeer=["{CLIENT_NAME}"])

# rsyslog's own messages (errors included)
action(type="omfile" file="{self.spool}/internal.log")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def make_certificates(root: Path) -> Certificates:
    """A CA (EC P-256, as services/common/auth/pki.py makes), a server certificate for 127.0.0.1
    and localhost, and a client certificate for ``CLIENT_NAME``; files 0600."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("privtune test syslog CA", ca_key, None, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate("127.0.0.1", server_key, ca_cert, ca_key, server=True,
                               sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate(CLIENT_NAME, client_key, ca_cert, ca_key, sans=[x509.DNSName(CLIENT_NAME)])
    certs = Certificates(ca=root / "ca.pem", server_cert=root / "server.pem", server_key=root / "server-key.pem",
                         client_cert=root / "client.pem", client_key=root / "client-key.pem")
    for path, data in ((certs.ca, ca_cert.public_bytes(serialization.Encoding.PEM)),
                       (certs.server_cert, server_cert.public_bytes(serialization.Encoding.PEM)),
                       (certs.server_key, _key_pem(server_key)),
                       (certs.client_cert, client_cert.public_bytes(serialization.Encoding.PEM)),
                       (certs.client_key, _key_pem(client_key))):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return certs


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(common_name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False,
                 sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "privtune tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName(sans or []), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def install_rsyslog() -> str:
    """Install rsyslog with its TLS and RELP modules if missing (``scripts/infra.sh rsyslog-install``);
    returns the path of rsyslogd."""
    done = subprocess.run([str(REPO / "scripts" / "infra.sh"), "rsyslog-install"], capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/infra.sh rsyslog-install failed (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    found = shutil.which("rsyslogd") or next((p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd")
                                              if os.access(p, os.X_OK)), None)
    if found is None:
        raise RuntimeError("scripts/infra.sh rsyslog-install succeeded but no rsyslogd is on PATH or in /usr/sbin")
    return found


@pytest.fixture(scope="module")
def syslog_receiver() -> Iterator[SyslogReceiver]:
    """A running rsyslog receiver for the requesting module; stopped and deleted afterwards."""
    rsyslogd = install_rsyslog()
    workdir = Path(tempfile.mkdtemp(prefix="privtune-rsyslog-"))
    try:
        receiver = SyslogReceiver(workdir, rsyslogd)
        receiver.check_config()
        receiver.start()
        try:
            yield receiver
        finally:
            receiver.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
