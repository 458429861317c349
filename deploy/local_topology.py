"""docker-compose.yml's topology as local processes, without Docker, for deploy/rehearse.py.

- redis-server: the compose `redis` command, on a loopback port;
- the `server` service's replicas (as many as its deploy.replicas): its command and
  environment, in which only PRICING_HOST, PRICING_PORT, PRICING_METRICS_PORT,
  PRICING_MODELS_DIR and REDIS_URL change;
- Debian's nginx, in the foreground and unprivileged (as `nobody` when run by root), on
  nginx/grpc-balancer.conf rendered as the balancer's image renders it, the replicas'
  loopback addresses as its upstream servers and a free port to listen on. NGINX_MAIN is
  the rest of its configuration, which the nginx image supplies in Docker.

Each process runs in a session of its own, so that a signal reaches all of its processes
(nginx's workers too); everything started is stopped when the caller's ExitStack closes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import redis

import topology
from healthcheck import is_serving
from shared.api import pricing_pb2 as pb
from shared.api import pricing_pb2_grpc

# The package's console scripts, in the environment that runs this.
SCRIPTS = Path(sys.executable).parent
READY_S = 30.0
REQUESTS_METRIC = "pricing_requests_total{"
PROBE = pb.PriceOptionRequest(type=pb.CALL, spot=100, strike=95, tau=0.5, rate=0.02, volatility=0.3)
NGINX_MAIN = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # One line per call: when it ended, its HTTP status and grpc-status trailer (200 and 0
    # when it succeeded; a replica that dies mid-call leaves 502, or no trailer once the
    # reply had begun), and the replicas it was sent to (two when nginx retried it).
    log_format upstreams '$msec $status $sent_trailer_grpc_status $upstream_addr';
    access_log {dir}/access.log upstreams;
    # Debian's built-in temporary folders are under /var/lib/nginx, root's.
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{snippet}
}}
"""


def find_nginx() -> str | None:
    """Debian installs nginx in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held together, so none is handed out twice)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class Processes:
    """The processes started, each logging to <folder>/<name>.log. Once stop_all has begun,
    start refuses: a thread still starting a replica cannot leave one behind."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False

    def start(self, name: str, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        with self._lock, open(self.folder / f"{name}.log", "ab") as log:
            if self._closed:
                raise RuntimeError(f"not starting {name}: everything is being stopped")
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen
            )
            self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    @staticmethod
    def signal(process: subprocess.Popen[bytes], signum: int) -> None:
        """Signal the process's whole session, if it is still running."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(process.pid, signum)

    def stop_all(self) -> None:
        with self._lock:
            self._closed = True
        for process in reversed(self.started):
            self.signal(process, signal.SIGTERM)
        for process in reversed(self.started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.signal(process, signal.SIGKILL)
                process.wait()

    def wait_until(
        self, ready: Callable[[], bool], name: str, process: subprocess.Popen[bytes]
    ) -> None:
        deadline = time.monotonic() + READY_S
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within {READY_S:.0f} s:\n{self.log(name)}")
            time.sleep(0.05)


@dataclass
class Replica:
    name: str
    port: int
    metrics_port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    direct_calls: int = 0  # calls sent to it directly, not through the balancer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests_answered(self) -> int:
        """Its pricing_requests_total, all methods and codes together."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            lines = reply.read().decode().splitlines()
        counts = [line.rsplit(" ", 1)[1] for line in lines if line.startswith(REQUESTS_METRIC)]
        return round(sum(map(float, counts)))

    def version_served(self) -> str:
        self.direct_calls += 1
        with grpc.insecure_channel(self.address) as channel:
            stub = pricing_pb2_grpc.PricingServiceStub(channel)
            return stub.PriceOption(PROBE, timeout=5).model_version


@dataclass
class Running:
    """The started topology: its processes, replicas, balancer address and models folder."""

    processes: Processes
    replicas: list[Replica]
    server_command: list[str]
    balancer: str
    models: Path
    nginx_folder: Path

    def start_replica(self, replica: Replica) -> None:
        """Start (or start again) a replica and wait until its health service says SERVING."""
        script, *flags = self.server_command
        replica.process = self.processes.start(
            replica.name, [str(SCRIPTS / script), *flags], env=replica.env
        )
        ready = partial(is_serving, replica.address, timeout=0.5)
        self.processes.wait_until(ready, replica.name, replica.process)

    def stop_replica(self, replica: Replica, signum: int) -> None:
        Processes.signal(replica.process, signum)
        replica.process.wait(timeout=30)


def start(stack: ExitStack, folder: Path, models: Path) -> Running:
    """Start the topology, its files in `folder`, on the models folder `models`."""
    spec = topology.compose()
    processes = Processes(folder)
    stack.callback(processes.stop_all)
    server = topology.service("server", spec)
    redis_port, balancer_port, *ports = free_ports(2 + 2 * server["deploy"]["replicas"])
    _start_redis(processes, topology.argv(topology.service("redis", spec)), redis_port)
    replicas = _replicas(topology.environment(server), ports, models, redis_port)
    nginx = folder / "nginx"
    nginx.mkdir()
    balancer = f"127.0.0.1:{balancer_port}"
    running = Running(processes, replicas, topology.argv(server), balancer, models, nginx)
    for replica in replicas:
        running.start_replica(replica)
    _start_nginx(running, topology.environment(topology.service("balancer", spec)))
    return running


def versions() -> dict[str, str]:
    """The versions of the nginx and redis-server that run here."""
    redis_binary = topology.argv(topology.service("redis"))[0]
    return {
        "nginx": _first_line([find_nginx() or "nginx", "-v"]),
        "redis": _first_line([redis_binary, "--version"]),
    }


def _start_redis(processes: Processes, command: list[str], port: int) -> None:
    binary, *flags = command
    local = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(processes.folder)]
    process = processes.start("redis", [shutil.which(binary) or binary, *flags, *local])
    client = redis.Redis(port=port, socket_timeout=0.2)
    processes.wait_until(_succeeds(client.ping), "redis", process)
    client.close()


def _replicas(
    compose_env: dict[str, str], ports: list[int], models: Path, redis_port: int
) -> list[Replica]:
    """One replica per (gRPC, metrics) pair of `ports`, with the compose environment."""
    redis_url = urlsplit(compose_env["REDIS_URL"])._replace(netloc=f"127.0.0.1:{redis_port}")
    replicas = []
    for i, (port, metrics_port) in enumerate(zip(ports[::2], ports[1::2], strict=True), 1):
        local = {"PRICING_HOST": "127.0.0.1", "PRICING_PORT": str(port),
                 "PRICING_METRICS_PORT": str(metrics_port), "PRICING_MODELS_DIR": str(models),
                 "REDIS_URL": redis_url.geturl()}  # fmt: skip
        env = _replica_env(compose_env, local)
        replicas.append(Replica(f"replica-{i}", port, metrics_port, env))
    return replicas


def _start_nginx(running: Running, compose_env: dict[str, str]) -> None:
    folder = running.nginx_folder
    # As the image's entrypoint renders it: the compose environment, and a resolver that the
    # literal upstream addresses put in below never use.
    env = {**compose_env, "NGINX_LOCAL_RESOLVERS": "127.0.0.1"}
    conf = topology.render_template(topology.BALANCER_CONF.read_text(), env)
    conf = topology.with_upstream_addresses(conf, [r.address for r in running.replicas])
    conf = topology.with_listen_port(conf, int(running.balancer.rsplit(":", 1)[1]))
    (folder / "nginx.conf").write_text(NGINX_MAIN.format(dir=folder, snippet=conf))
    argv = [find_nginx() or "nginx", "-p", str(folder), "-c", str(folder / "nginx.conf"),
            "-e", str(folder / "error.log")]  # fmt: skip
    process = running.processes.start("nginx", argv, **_unprivileged(folder))
    try:
        ready = partial(is_serving, running.balancer, timeout=0.5)
        running.processes.wait_until(ready, "nginx", process)
    except RuntimeError as error:
        log = (folder / "error.log").read_text(errors="replace")
        raise RuntimeError(f"{error}\n{log}") from None


def _replica_env(compose_env: dict[str, str], local: dict[str, str]) -> dict[str, str]:
    """This process's environment less any server settings, then compose's, then `local`."""
    if missing := set(local) - set(compose_env):
        raise ValueError(f"{topology.COMPOSE_FILE}: the server service sets no {sorted(missing)}")
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PRICING_") and name != "REDIS_URL"
    }
    return {**inherited, **compose_env, **local}


def _unprivileged(folder: Path) -> dict[str, Any]:
    """Popen settings that run nginx as `nobody` when this runs as root, as itself otherwise;
    `folder` (its configuration, logs and temporary files) is made that user's."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    folder.parent.chmod(0o755)
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _succeeds(call: Callable[[], Any]) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return bool(call())
        except redis.RedisError:  # not listening yet
            return False

    return ready


def _first_line(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (result.stdout + result.stderr).strip().splitlines()[0]
