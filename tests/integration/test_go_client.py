"""The generated Go client against a real `privtune up`: the example program registers a dataset,
curates it and watches the job over TLS with a bearer token (the only way in); privtune-errors,
on the same server and the same way, checks the status details of every error path of the dataset
and curation APIs, and that a call whose identity is missing or forged is refused (see
clients/go/cmd/privtune-errors for the table of cases)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cgrpc
from tests.server_process import ServerProcess, running_server

# bounded by the subprocess timeouts below: build 600 s, server start 180 s, two client runs 180 s each
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parents[2]
GO_MODULE = ROOT / "clients" / "go"
TENANT = "acme"


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.fail("Go is needed to build clients/go (install it, e.g. apt-get install -y golang)")
    return go


@pytest.fixture(scope="module")
def go_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/go/cmd/* built once; the first build downloads modules into the Go module cache."""
    out = tmp_path_factory.mktemp("go-bin")
    # -mod=readonly (the default): a go.mod or go.sum that needs changing fails the build.
    env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    build = subprocess.run([_go(), "build", "-o", str(out), "./cmd/..."], cwd=GO_MODULE, env=env,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"go build failed:\n{build.stdout}{build.stderr}"
    return out


@pytest.fixture(scope="module")
def privtune_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `privtune up` for this module's tests (they use distinct folders and names)."""
    with running_server(tmp_path_factory.mktemp("privtune-up")) as server:
        yield server


def _faq(records: int = 20) -> bytes:
    """Distinct instruction pairs that pass the default quality filters."""
    return "".join(json.dumps({
        "instruction": f"How do I change the spending limit on card number {i} from the mobile app?",
        "input": "",
        "output": f"Open the app, choose Cards, pick card {i}, then Limits; the new limit applies within "
                  f"{i + 1} minutes and you get a confirmation message."}) + "\n"
        for i in range(records)).encode()


def _run(binary: Path, up: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PRIVTUNE_CA", "PRIVTUNE_TOKEN")}
    return subprocess.run([str(binary), "-target", up.target, *args], capture_output=True, text=True, timeout=180,
                          env=env)


def _run_tls(binary: Path, up: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``_run`` trusting the server's CA, with a token of the tenant from its development issuer."""
    return _run(binary, up, "-ca", str(up.ca_path), "-token", up.token(TENANT, "go-client"), *args)


def _line(pattern: str, line: str) -> str:
    """The first group of ``pattern``, which must match the whole ``line``."""
    match = re.fullmatch(pattern, line)
    assert match, f"{line!r} does not match {pattern!r}"
    return match.group(1)


def test_example_client_registers_curates_and_watches_a_job(go_bin: Path, privtune_up: ServerProcess) -> None:
    uri = privtune_up.put_files(TENANT, "faq", {"faq.jsonl": _faq()})
    run = _run_tls(go_bin / "privtune-example", privtune_up, "-uri", uri)
    assert run.returncode == 0, f"{run.stdout}{run.stderr}\nserver log:\n{privtune_up.log_tail()}"
    lines = run.stdout.splitlines()
    _line(r"dataset (ds-\w+): faq, 1 files, \d+ bytes", lines[0])
    job_id = _line(r"curation job (cj-\w+): CURATION_JOB_STATE_\w+", lines[1])
    assert [line for line in lines if line.startswith("event ")] == [
        "event 1 privtune.v1.CurationRequested", "event 2 privtune.v1.DatasetVersionCreated"]
    version = _line(r"dataset_version_id (dv-\w+)", lines[-1])
    with privtune_up.channel() as channel:
        job = cgrpc.CurationServiceStub(channel).GetCurationJob(
            cpb.GetCurationJobRequest(job_id=job_id), metadata=privtune_up.metadata(TENANT), timeout=30).job
    assert job.dataset_version_id == version

    # The example derives its request ids from its inputs: a second run answers with the first run's
    # dataset and job (the finished job's history streams, then the stream ends).
    again = _run_tls(go_bin / "privtune-example", privtune_up, "-uri", uri)
    assert again.returncode == 0, f"{again.stdout}{again.stderr}"
    assert again.stdout.splitlines()[:2] == [lines[0], f"curation job {job_id}: CURATION_JOB_STATE_SUCCEEDED"]
    assert again.stdout.splitlines()[-1] == lines[-1]


def test_every_dataset_and_curation_error_carries_status_details(go_bin: Path, privtune_up: ServerProcess) -> None:
    up = privtune_up
    uri = up.put_files(TENANT, "errors-a", {"a.jsonl": _faq(3)})
    other = up.put_files(TENANT, "errors-b", {"b.jsonl": _faq(4)})
    run = _run_tls(go_bin / "privtune-errors", up, "-uri", uri, "-other-uri", other)
    assert run.returncode == 0, f"privtune-errors exited {run.returncode}:\n{run.stdout}{run.stderr}"
    summary = re.search(r"privtune-errors: (\d+) of \1 error cases as expected", run.stdout)
    # the table's 20 cases of the dataset and curation APIs, then 5 of a missing or forged identity
    assert summary and int(summary.group(1)) >= 25, run.stdout
    for case in ("ListDatasets without a token", "ListDatasets with only the identity headers",
                 "ListDatasets authorization not Bearer", "ListDatasets token with a forged tenant claim",
                 "ListDatasets tenant header naming another tenant"):
        assert f"ok    {case}\n" in run.stdout, run.stdout


def test_error_checker_needs_tls_and_a_token(go_bin: Path, privtune_up: ServerProcess) -> None:
    """Without -ca or -token it makes no call (the platform takes neither plaintext nor identity headers);
    a token that names another tenant than -tenant is a mistake it says, not a call it makes."""
    binary = go_bin / "privtune-errors"
    token = privtune_up.token(TENANT, "go-client")
    for args in (["-ca", str(privtune_up.ca_path)], ["-token", token], ["-tenant", TENANT]):
        bare = _run(binary, privtune_up, "-uri", "file:///x", "-other-uri", "file:///y", *args)
        assert bare.returncode == 2 and "-ca and -token are required" in bare.stderr, bare.stderr
    mismatch = _run_tls(go_bin / "privtune-errors", privtune_up, "-tenant", "globex", "-uri", "file:///x",
                        "-other-uri", "file:///y")
    assert mismatch.returncode == 2 and 'the token is of tenant "acme"' in mismatch.stderr


def test_example_client_needs_tls_and_a_token(go_bin: Path, privtune_up: ServerProcess) -> None:
    """Without -ca or without -token the example makes no call, saying why: the platform speaks only TLS and
    takes identity only from a verified token (privtune-errors checks that it refuses identity headers)."""
    uri = privtune_up.put_files(TENANT, "faq-refused", {"faq.jsonl": _faq()})
    no_token = _run(go_bin / "privtune-example", privtune_up, "-uri", uri, "-ca", str(privtune_up.ca_path))
    assert no_token.returncode == 2 and "-ca and -token are required" in no_token.stderr, no_token.stderr
    no_ca = _run(go_bin / "privtune-example", privtune_up, "-uri", uri, "-token", privtune_up.token(TENANT, "go-client"))
    assert no_ca.returncode == 2 and "-ca and -token are required" in no_ca.stderr, no_ca.stderr
