"""A real `pricing-server` in a subprocess on a free port, for tests that talk gRPC to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc

from redis_process import free_port
from shared.api import pricing_pb2_grpc

# A worker listens within ~1 s here; a server that has not after this long is broken.
STARTUP_SECONDS = 60


class ServerProcess:
    """`python -m server.main` with the given flags; `address` once it listens."""

    def __init__(self, models: Path, *flags: str, workers: int = 1) -> None:
        self.port = free_port()
        # Worker i serves metrics on metrics_port + i: a run of free ports, none of them ours.
        self.metrics_port = _free_run(workers, avoid=self.port)
        command = [
            sys.executable, "-m", "server.main", "--host", "127.0.0.1", "--port", str(self.port),
            "--models", str(models), "--metrics-port", str(self.metrics_port),
            "--reload-interval", "0.2", "--workers", str(workers), *flags,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.log: list[str] = []
        self._listening = threading.Semaphore(0)  # released once per worker that listens
        self._stdout_closed = False
        self._readers = [
            threading.Thread(target=target, daemon=True) for target in (self._watch, self._collect)
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        for _ in range(workers):
            woken = self._listening.acquire(timeout=max(0.0, deadline - time.monotonic()))
            if not woken or self._stdout_closed:
                self.process.kill()
                raise RuntimeError(
                    f"pricing-server stopped or did not listen within {STARTUP_SECONDS} s "
                    f"(exit status {self.process.wait()}): {''.join(self.log)}"
                )
        self.address = f"127.0.0.1:{self.port}"

    def _watch(self) -> None:
        for line in self.process.stdout:
            for _ in range(line.count("listening on")):
                self._listening.release()
        self._stdout_closed = True  # the server has exited: wake the constructor to say so
        self._listening.release()

    def _collect(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)

    def channel(self) -> grpc.Channel:
        # Replies to batches above ~87,000 rows exceed gRPC's default 4 MB receive limit.
        options = [
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 64 << 20),
        ]
        return grpc.insecure_channel(self.address, options=options)

    def stub(self) -> pricing_pb2_grpc.PricingServiceStub:
        return pricing_pb2_grpc.PricingServiceStub(self.channel())

    def metrics(self, worker: int = 0) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port + worker}/metrics", timeout=5
        ) as reply:
            return reply.read().decode()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        self.process.stdout.close()
        self.process.stderr.close()
        return code


def _free_run(count: int, avoid: int) -> int:
    """A base port with `count` free ports from it on, none equal to `avoid`.

    A port just released by free_port() may be handed out again at once, so the gRPC port
    is excluded explicitly (the two once collided in CI).
    """
    for _ in range(50):
        base = free_port()
        run = range(base, base + count)
        if base + count < 65536 and avoid not in run and all(_is_free(p) for p in run):
            return base
    raise RuntimeError("no run of free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
