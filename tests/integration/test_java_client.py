"""The Java client (clients/java) built with Maven and run against a real `privtune up`.

The example registers raw files as a dataset, curates them, watches the job to its end and then
reads the ErrorInfo of a NOT_FOUND error: the generated messages, stubs and status details must
all work from Java as they do from Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cgrpc
from privtune.v1 import dataset_service_pb2 as dpb
from privtune.v1 import dataset_service_pb2_grpc as dgrpc
from privtune.v1 import events_pb2
from services.common.auth.pki import ensure_local_pki
from tests.server_process import ServerProcess, privtune_server  # noqa: F401 - fixture

# bounded by the subprocess timeouts below: build 600 s, server start 180 s, example 300 s
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "dev.privtune.example.CurateExample"

QA_PAIRS = [
    ("How do I order a replacement debit card?",
     "Open the app, choose Cards, then Replace card. The new card arrives within five business days."),
    ("Can I change my PIN without visiting a branch?",
     "Yes. In the app under Cards choose Change PIN and confirm the change with your passcode."),
    ("What happens when a wire transfer is sent after the cut-off time?",
     "Wires submitted after 15:00 local time leave the next business day after the morning reconciliation."),
    ("Who approves large international payments?",
     "Payments above ten thousand euros need a second approver from the payments operations team."),
    ("How long are monthly statements kept online?",
     "Statements stay downloadable for seven years; older ones can be requested from customer support."),
    ("Why was my contactless payment declined abroad?",
     "Travel mode may be off. Enable it in the app settings and the card works in other countries again."),
    ("How do I dispute a card transaction I do not recognise?",
     "Select the transaction in the app, tap Report a problem and describe what happened; we reply in two days."),
    ("Can I raise my daily cash withdrawal limit?",
     "Premium accounts can raise the limit in settings; other tiers ask support, who review each request."),
]


@pytest.fixture(scope="module")
def java_classpath() -> str:
    """Build clients/java once (Maven caches downloads in ~/.m2) and return the example's classpath."""
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: the Java client test needs Maven 3.8+ and a JDK 17+ on PATH "
                        "(Debian: apt-get install maven openjdk-17-jdk-headless)")
    build = subprocess.run([str(ROOT / "scripts" / "build_java_client.sh")], capture_output=True, text=True,
                           timeout=600)
    assert build.returncode == 0, f"Maven build of clients/java failed:\n{build.stderr[-4000:]}"
    return build.stdout.strip().splitlines()[-1]


def test_java_example_curates_a_dataset_and_reads_error_details(
        java_classpath: str, privtune_server: ServerProcess) -> None:
    records = [{"instruction": q, "input": "", "output": a} for q, a in QA_PAIRS]
    uri = privtune_server.put_files(
        "acme", "support-faq", {"faq.jsonl": "".join(json.dumps(r) + "\n" for r in records).encode()})

    run = subprocess.run(
        ["java", "-cp", java_classpath, EXAMPLE, "--target", privtune_server.target,
         "--storage-uri", uri, "--name", "support-faq", "--watch-timeout", "240",
         "--ca", str(privtune_server.ca_path), "--token", privtune_server.token("acme", "alice")],
        capture_output=True, text=True, timeout=300)

    context = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}\nserver log:\n{privtune_server.log_tail()}"
    assert run.returncode == 0, context
    assert re.search(r"^dataset ds-\w+ registered: support-faq, 1 files", run.stdout, re.M), context
    events = re.findall(r"^event (\S+) \(#\d+\)$", run.stdout, re.M)
    assert events[0] == "privtune.v1.CurationRequested", context
    assert events[-1] == "privtune.v1.DatasetVersionCreated", context
    assert re.search(r"^job \S+ succeeded: dataset_version_id dv-[0-9a-f]+$", run.stdout, re.M), context
    unknown = re.search(r"^GetDataset\((ds-\w+)\): NOT_FOUND, reason DATASET_NOT_FOUND \(domain privtune\.dev\)$",
                        run.stdout, re.M)
    assert unknown, context
    assert re.search(rf"^  resource \S+ {unknown.group(1)}$", run.stdout, re.M), context  # google.rpc.ResourceInfo


def test_java_example_over_tls_with_a_bearer_token(java_classpath: str, privtune_server: ServerProcess) -> None:
    """Against `privtune up`: the Java client trusts the local CA and sends a development issuer's token;
    tenant and caller come from the token. Without the token, or without the CA, it makes no call (the
    platform speaks only TLS and takes identity only from a verified token), and it refuses --tenant."""
    up = privtune_server
    records = [{"instruction": q, "input": "", "output": a} for q, a in QA_PAIRS]
    uri = up.put_files("acme", "faq-tls", {"faq.jsonl": "".join(json.dumps(r) + "\n" for r in records).encode()})
    base = ["java", "-cp", java_classpath, EXAMPLE, "--target", up.target, "--storage-uri", uri,
            "--watch-timeout", "240"]
    token = up.token("acme", "java-client")
    run = subprocess.run(base + ["--name", "faq-tls", "--ca", str(up.ca_path), "--token", token],
                         capture_output=True, text=True, timeout=300)
    context = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}\nserver log:\n{up.log_tail()}"
    assert run.returncode == 0, context
    assert re.search(r"^job \S+ succeeded: dataset_version_id dv-[0-9a-f]+$", run.stdout, re.M), context
    env = {k: v for k, v in os.environ.items() if k not in ("PRIVTUNE_CA", "PRIVTUNE_TOKEN")}
    for missing in (["--ca", str(up.ca_path)], ["--token", token]):
        refused = subprocess.run(base + ["--name", "refused", *missing], capture_output=True, text=True, timeout=300,
                                 env=env)
        assert refused.returncode == 2 and "--ca and --token are required" in refused.stderr, refused.stderr
    tenant = subprocess.run(base + ["--ca", str(up.ca_path), "--token", token, "--tenant", "acme"],
                            capture_output=True, text=True, timeout=300)
    assert tenant.returncode == 2 and "tenant and caller come from the token" in tenant.stderr, tenant.stderr


class _FailingDatasets(dgrpc.DatasetServiceServicer):
    """Registers anything; answers GetDataset NOT_FOUND without the google.rpc details privtune promises."""

    def CreateDataset(self, request: dpb.CreateDatasetRequest,
                      context: grpc.ServicerContext) -> dpb.CreateDatasetResponse:
        return dpb.CreateDatasetResponse(dataset=dpb.Dataset(dataset_id="ds-fake", name=request.name))

    def GetDataset(self, request: dpb.GetDatasetRequest, context: grpc.ServicerContext) -> dpb.GetDatasetResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, f"dataset {request.dataset_id} not found")


class _Curation(cgrpc.CurationServiceServicer):
    """Every job ends in ``final_state`` after two events."""

    def __init__(self, final_state: int) -> None:
        self.final_state = final_state

    def _job(self, state: int) -> cpb.CurationJob:
        failed = state == cpb.CURATION_JOB_STATE_FAILED
        return cpb.CurationJob(
            job_id="cj-fake", dataset_id="ds-fake", state=state, dataset_version_id="" if failed else "dv-0123abcd",
            reason="no record passed the quality filters; lower quality.min_tokens" if failed else "",
            error_code=cpb.CURATION_ERROR_CODE_INVALID_ARGUMENT if failed else cpb.CURATION_ERROR_CODE_UNSPECIFIED)

    def CreateCurationJob(self, request: cpb.CreateCurationJobRequest,
                          context: grpc.ServicerContext) -> cpb.CreateCurationJobResponse:
        return cpb.CreateCurationJobResponse(job=self._job(cpb.CURATION_JOB_STATE_REQUESTED))

    def WatchCurationJob(self, request: cpb.WatchCurationJobRequest,
                         context: grpc.ServicerContext) -> Iterator[cpb.WatchCurationJobResponse]:
        final = ("CurationFailed" if self.final_state == cpb.CURATION_JOB_STATE_FAILED else "DatasetVersionCreated")
        for version, name in enumerate(["CurationRequested", final], start=1):
            yield cpb.WatchCurationJobResponse(event=events_pb2.EventEnvelope(
                type=f"privtune.v1.{name}", subject=request.job_id, aggregate_version=version))

    def GetCurationJob(self, request: cpb.GetCurationJobRequest,
                       context: grpc.ServicerContext) -> cpb.GetCurationJobResponse:
        return cpb.GetCurationJobResponse(job=self._job(self.final_state))


def _run_against_fake(java_classpath: str, final_state: int, pki_dir: Path) -> subprocess.CompletedProcess[str]:
    """The example against a fake platform over TLS (its own CA); the fake checks no token."""
    pki = ensure_local_pki(pki_dir)
    cert, key = pki.server.read()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    dgrpc.add_DatasetServiceServicer_to_server(_FailingDatasets(), server)
    cgrpc.add_CurationServiceServicer_to_server(_Curation(final_state), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        return subprocess.run(
            ["java", "-cp", java_classpath, EXAMPLE, "--target", f"127.0.0.1:{port}", "--ca", str(pki.ca.cert),
             "--token", "not-checked-by-the-fake", "--storage-uri", "file:///anywhere", "--call-timeout", "20",
             "--watch-timeout", "20"],
            capture_output=True, text=True, timeout=120)
    finally:
        server.stop(grace=None)


def test_java_example_exits_nonzero_when_the_job_fails(java_classpath: str, tmp_path: Path) -> None:
    run = _run_against_fake(java_classpath, cpb.CURATION_JOB_STATE_FAILED, tmp_path / "pki")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "event privtune.v1.CurationFailed (#2)" in run.stdout
    assert ("job cj-fake CURATION_JOB_STATE_FAILED: no record passed the quality filters; lower "
            "quality.min_tokens (CURATION_ERROR_CODE_INVALID_ARGUMENT)") in run.stdout


def test_java_example_exits_nonzero_when_an_error_lacks_error_info(java_classpath: str, tmp_path: Path) -> None:
    run = _run_against_fake(java_classpath, cpb.CURATION_JOB_STATE_SUCCEEDED, tmp_path / "pki")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "dataset_version_id dv-0123abcd" in run.stdout
    assert "failed NOT_FOUND without google.rpc.ErrorInfo" in run.stderr


def test_java_example_explains_bad_usage(java_classpath: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PRIVTUNE_STORAGE_URI"}
    run = subprocess.run(["java", "-cp", java_classpath, EXAMPLE, "--ca", "ca.pem", "--token", "t"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2
    assert "--storage-uri is required" in run.stderr and "usage:" in run.stderr
