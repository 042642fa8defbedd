"""Run one scheduled attempt of a training job, then exit: a Kubernetes training pod's entry point.

    PRIVTUNE_CLIENT_CERT=/etc/privtune/tls/tls.crt PRIVTUNE_CLIENT_KEY=/etc/privtune/tls/tls.key \\
    PRIVTUNE_CA=/etc/privtune/tls/ca.crt \\
    python -m gpu_worker.run_attempt --tenant T --job-id J --attempt N \\
        --models-root /var/privtune/models --storage-root file:///data/tenants --work-dir /scratch \\
        --bus kafka://kafka:9092 --orchestrator orchestrator:50052

It does exactly what a gpu_worker pool member does with a ``TrainingScheduled`` command:
it claims the attempt from the orchestrator (``ClaimAttempt``; a pod that loses the claim
exits 0 without running anything), runs the same child process (torchrun for several
devices), reports on the bus (``privtune.training.reports``), heartbeats, and checkpoints
then stops on a stop command or SIGTERM. It needs the bus and the orchestrator's component
(mutual TLS) address, never the metadata store's credentials.

It claims with the client certificate the Kubernetes executor issued for this attempt: the
files named by ``PRIVTUNE_CLIENT_CERT``, ``PRIVTUNE_CLIENT_KEY`` and ``PRIVTUNE_CA`` (the pod's
read-only Secret mount), and trusts only that CA for the orchestrator's server certificate.
Without them it refuses to start (exit 2): there is no plaintext fallback.

Exit status: 0 completed (or the claim went to another worker), 1 failed, 2 misconfigured
(nothing ran), 3 preempted, 4 the orchestrator could not be asked within
``$PRIVTUNE_CLAIM_GIVE_UP_S`` (default 120) seconds, which includes a refused handshake.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import grpc

EXIT = {"completed": 0, "skipped": 0, "preempted": 3, "failed": 1}
# exit status when the orchestrator could not be asked for the claim (nothing ran; the attempt is retried)
CLAIM_UNAVAILABLE = 4
# the pod's certificate files (a Kubernetes Secret mounted read-only), named by these env vars
CLIENT_CERT_ENV, CLIENT_KEY_ENV, CA_ENV = "PRIVTUNE_CLIENT_CERT", "PRIVTUNE_CLIENT_KEY", "PRIVTUNE_CA"
MAX_PEM_BYTES = 64 << 10


class CredentialsError(ValueError):
    """The pod's certificate files are missing, unreadable or expired; says which and what to do."""


def _read_pem(env: Mapping[str, str], name: str) -> bytes:
    path = env.get(name, "")
    if not path:
        raise CredentialsError(f"${name} is not set: it names a file of the pod's client certificate Secret "
                               "(the Kubernetes executor mounts it and sets the variable)")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise CredentialsError(f"${name} names {path}, which cannot be read ({exc.strerror}): is the pod's "
                               "client certificate Secret mounted?") from None
    if len(data) > MAX_PEM_BYTES or b"-----BEGIN " not in data:
        raise CredentialsError(f"${name} names {path}, which is not a PEM file")
    return data


def claim_credentials(env: Mapping[str, str], now: dt.datetime | None = None) -> grpc.ChannelCredentials:
    """Mutual-TLS credentials from the files ``env`` names: this pod's certificate and key, and the CA that
    both it and the orchestrator's server certificate come from.

    Raises:
        CredentialsError: a variable is unset, a file unreadable or not PEM, or the certificate has expired
            (the pod waited longer to start than its certificate lasts; the orchestrator retries the
            attempt with a new one).
    """
    import grpc
    from cryptography import x509

    cert, key, ca = (_read_pem(env, name) for name in (CLIENT_CERT_ENV, CLIENT_KEY_ENV, CA_ENV))
    try:
        not_after = x509.load_pem_x509_certificate(cert).not_valid_after_utc
    except ValueError:
        raise CredentialsError(f"${CLIENT_CERT_ENV} names {env[CLIENT_CERT_ENV]}, which holds no X.509 "
                               "certificate") from None
    if not_after <= (now or dt.datetime.now(dt.timezone.utc)):
        raise CredentialsError(f"the pod's client certificate expired at {not_after.isoformat()}: the pod started "
                               "after its attempt's certificate lifetime; the orchestrator retries the attempt")
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.run_attempt", description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--models-root", required=True, type=Path)
    parser.add_argument("--storage-root", required=True)
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--bus", default=os.environ.get("PRIVTUNE_BUS", ""),
                        help="event bus URI (default $PRIVTUNE_BUS)")
    parser.add_argument("--orchestrator", default=os.environ.get("PRIVTUNE_ORCHESTRATOR", ""),
                        help="the orchestrator's component (mutual TLS) address host:port "
                             "(default $PRIVTUNE_ORCHESTRATOR)")
    parser.add_argument("--worker-id", default=os.environ.get("PRIVTUNE_WORKER_ID", ""),
                        help="name of this worker in events (default: the pod's hostname)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = [name for name, value in (("--bus / $PRIVTUNE_BUS", args.bus),
                                        ("--orchestrator / $PRIVTUNE_ORCHESTRATOR", args.orchestrator)) if not value]
    if missing:
        print(f"error: set {' and '.join(missing)}", file=sys.stderr)
        return 2
    try:
        credentials = claim_credentials(os.environ)
    except CredentialsError as exc:
        print(f"error: cannot claim attempt {args.attempt} of training job {args.job_id}: {exc}", file=sys.stderr)
        return 2

    from gpu_worker.claims import ClaimUnavailable, GrpcAttemptClaims
    from gpu_worker.worker import TrainingWorker, WorkerSettings
    from services.common.bus import open_bus
    from services.common.signal_event import signal_event

    stop = signal_event()  # its waits on this thread (claim retries) may be interrupted by the handler
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = WorkerSettings(models_dir=args.models_root, storage_uri=args.storage_root, work_dir=args.work_dir,
                              worker_id=args.worker_id or f"{socket.gethostname()}-{os.getpid()}",
                              heartbeat_seconds=float(os.environ.get("PRIVTUNE_HEARTBEAT_S", "10")))
    bus = open_bus(args.bus)
    claims = GrpcAttemptClaims(args.orchestrator, stop=stop, credentials=credentials,
                               give_up_after=float(os.environ.get("PRIVTUNE_CLAIM_GIVE_UP_S", "120")))
    worker = TrainingWorker(bus, claims, settings)
    try:
        outcome = worker.run_attempt(args.tenant, args.job_id, args.attempt, stop)
    except ClaimUnavailable as exc:
        # a refused handshake (a certificate the orchestrator does not trust) looks like this too
        print(f"error: {exc}; check that --orchestrator names the component (mutual TLS) port and that the "
              "pod's certificate comes from the platform CA", file=sys.stderr)
        return CLAIM_UNAVAILABLE
    finally:
        worker.close()
        claims.close()
        bus.close()
    return EXIT.get(outcome, 1)


if __name__ == "__main__":
    raise SystemExit(main())
