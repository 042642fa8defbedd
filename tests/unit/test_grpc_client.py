"""services/common/grpc_client.py: a stop asked for during a retry's backoff ends the retries at once."""

from __future__ import annotations

import socket
import sys
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import BusUnavailable
from services.common.grpc_client import call_until_answered
from services.common.signal_event import signal_event
from tests.platform_fixtures import wait_until


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed: every call is UNAVAILABLE


def test_a_stop_during_the_backoff_makes_no_further_call() -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{_closed_port()}")
    stop = signal_event()
    calls: list[int] = []
    caller = threading.get_ident()

    def in_backoff() -> bool:  # the calling thread waits in threading, called from the retry loop itself
        frame = sys._current_frames().get(caller)
        if frame is None or frame.f_code.co_name != "wait":
            return False
        while frame is not None and frame.f_code.co_filename == threading.__file__:
            frame = frame.f_back
        return frame is not None and frame.f_code.co_name == "call_until_answered"

    def stop_in_backoff() -> None:
        wait_until(in_backoff, timeout=60, what="the retry's backoff")
        stop.set()

    def call() -> object:
        calls.append(1)
        if len(calls) == 1:
            threading.Thread(target=stop_in_backoff, daemon=True).start()
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)

    try:
        with pytest.raises(BusUnavailable, match="stopped while retrying"):
            call_until_answered(call, "a health check", give_up_after=120, stop=stop)
    finally:
        channel.close()
    assert len(calls) == 1
