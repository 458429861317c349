"""`make rehearse`: docker-compose.yml's topology, from the same files, run here without Docker.

    .venv/bin/python deploy/rehearse.py [--seconds 20] [--compare-seconds 5] [--json PATH]

Starts Redis, the server replicas and nginx as local processes (local_topology.py) on a
temporary models folder seeded from models/ (seed_models.py, as the k8s Job seeds the
volume), then:
1. sends calls one after another on one client channel to the balancer: both replicas must
   answer some (nginx balances calls, not connections);
2. runs pricing-loadtest's load direct to replica-1, then through the balancer, for
   --compare-seconds each, with 1 call in flight (the cost of the balancer's hop) and with
   8 (what the second replica adds);
3. runs the load through the balancer for --seconds while one replica is stopped gracefully
   (SIGTERM) and started again, as a rolling update does, then killed (SIGKILL) and started
   again, as `restart: unless-stopped` does after a crash, and then a new PINN version is
   promoted in the shared folder (a copy of the promoted one, through the artifact store).
It prints a report and its checks, and exits 1 if a check failed. Whatever it started, it
stops on the way out: after a failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

import local_topology
from local_topology import PROBE, Replica, Running
from seed_models import seed
from server.loadtest import SETUP_TIMEOUT_S, LoadConfig, run_load
from server.model import KIND, NAME
from shared.api import pricing_pb2 as pb
from shared.api import pricing_pb2_grpc
from shared.artifact_store import ArtifactStore

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 8  # calls in flight, so at most this many on a replica when it is killed
SINGLE_CHANNEL_CALLS = 200
SWAP_LIMIT_S = 5.0  # "within a few seconds" of a promotion, on every replica
# When each disruption starts, as a fraction of --seconds (each also waits for the last).
STOP_AT, KILL_AT, PROMOTE_AT = 0.15, 0.4, 0.7
# How a client sees a call that its replica dropped by dying, or by stopping (pricing-server
# cancels calls it has received but not begun when SIGTERM stops it): nginx answers 502
# (gRPC UNAVAILABLE), or resets the stream (CANCELLED) if the reply had begun. nginx cannot
# send such a call to another replica: it streams gRPC request bodies unbuffered.
DROPPED_CALL_CODES = {"UNAVAILABLE", "CANCELLED"}
# Set on Ctrl-C or SIGTERM: pricing-loadtest finishes its run early instead of raising, and the
# thread that disrupts the replicas stops waiting, so both are checked.
ABORT = threading.Event()


@dataclass
class Disruption:
    """What happened during the disrupted load; times are seconds since the epoch."""

    started: float = 0.0  # when replica-1 saw the load begin
    stopped: float = 0.0
    killed: float = 0.0
    back: float = 0.0  # the killed replica SERVING again
    promoted: float = 0.0
    version: str = ""
    swap_s: dict[str, float] = field(default_factory=dict)
    calls_when_back: int = 0

    def since_start(self, moment: float) -> float:
        return moment - self.started


def single_channel(running: Running) -> list[int]:
    """Calls each replica answered of SINGLE_CHANNEL_CALLS sent on one channel, in turn."""
    before = [replica.requests_answered() for replica in running.replicas]
    with grpc.insecure_channel(running.balancer) as channel:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        for k in range(SINGLE_CHANNEL_CALLS):
            request = pb.PriceOptionRequest()
            request.CopyFrom(PROBE)
            request.strike = 80.0 + k * 0.1  # distinct, so none is a cache hit
            stub.PriceOption(request, timeout=5)
    after = [replica.requests_answered() for replica in running.replicas]
    return [a - b for a, b in zip(after, before, strict=True)]


def load(target: str, seconds: float, concurrency: int, label: str) -> dict[str, Any]:
    report = run_load(LoadConfig(target=target, duration=seconds, concurrency=concurrency))
    if ABORT.is_set():
        raise KeyboardInterrupt
    return {
        "label": label,
        "concurrency": concurrency,
        "ok": report.ok,
        "errors": report.errors,
        "calls_per_s": report.throughput_rps,
        "p50_ms": report.latency_ms["p50"],
        "p99_ms": report.latency_ms["p99"],
    }


def compare(running: Running, seconds: float) -> dict[str, dict[str, Any]]:
    """Undisturbed loads direct to replica-1 and through the balancer, with 1 call in flight
    (the cost of the balancer's hop) and CONCURRENCY (what two replicas add), and the calls
    each replica answered."""
    targets = {"direct": running.replicas[0].address, "balancer": running.balancer}
    labels = {"direct": "direct to replica-1", "balancer": "through the balancer"}
    runs = {}
    for concurrency in (1, CONCURRENCY):
        for name, address in targets.items():
            before = [replica.requests_answered() for replica in running.replicas]
            run = load(address, seconds, concurrency, f"{labels[name]}, {seconds:g} s")
            after = [replica.requests_answered() for replica in running.replicas]
            answered = [a - b for a, b in zip(after, before, strict=True)]
            runs[f"{name}-{concurrency}"] = {**run, "target": name, "answered": answered}
    return runs


def promote_copy(models: Path) -> str:
    """A new version of the PINN holding the promoted one's files, promoted."""
    store = ArtifactStore(models)
    current = store.load(KIND, NAME)
    written = store.write(KIND, NAME, dict(current.files), current.written_meta)
    store.promote(KIND, NAME, written.version)
    return written.version


def disrupt(running: Running, seconds: float, happened: Disruption) -> None:
    """Restart the last replica gracefully, then kill and restart it, then promote a version
    and time until each replica serves it."""
    victim = running.replicas[-1]
    happened.started = load_begun(running.replicas[0])

    def wait_for(fraction: float) -> float:
        pause(happened.started + fraction * seconds - time.time())
        return time.time()

    happened.stopped = wait_for(STOP_AT)
    running.stop_replica(victim, signal.SIGTERM)
    running.start_replica(victim)
    happened.killed = wait_for(KILL_AT)
    running.stop_replica(victim, signal.SIGKILL)
    running.start_replica(victim)
    happened.back = time.time()
    happened.calls_when_back = victim.requests_answered()
    happened.promoted = wait_for(PROMOTE_AT)
    happened.version = promote_copy(running.models)
    for replica in running.replicas:
        while time.time() - happened.promoted < 2 * SWAP_LIMIT_S:
            if replica.version_served() == happened.version:
                happened.swap_s[replica.name] = time.time() - happened.promoted
                break
            pause(0.05)


def load_begun(replica: Replica) -> float:
    """When `replica` has answered a few calls more: the load generator's processes take a
    moment to start, and the disruptions are timed from the load's start."""
    baseline = replica.requests_answered()
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while replica.requests_answered() < baseline + 10:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no load reached {replica.name} in {SETUP_TIMEOUT_S:.0f} s")
        pause(0.02)
    return time.time()


def pause(seconds: float) -> None:
    """Sleep, unless the rehearsal is being interrupted."""
    if ABORT.wait(max(seconds, 0)):
        raise KeyboardInterrupt


def disrupted_load(running: Running, seconds: float) -> tuple[dict[str, Any], Disruption]:
    """The load through the balancer, with `disrupt` running beside it."""
    happened = Disruption()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            disrupt(running, seconds, happened)
        except BaseException as error:  # raised again below, by the thread that owns the run
            failure.append(error)

    label = f"through the balancer, {seconds:g} s: graceful restart, kill, promotion"
    thread = threading.Thread(target=run, name="disrupt")
    thread.start()
    try:
        result = load(running.balancer, seconds, CONCURRENCY, label)
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return result, happened


@dataclass
class ProxiedCall:
    """A line of nginx's access log: when the call ended, whether it succeeded (HTTP 200 and
    grpc-status 0), and the replicas it was sent to, the last one answering."""

    ended: float
    ok: bool
    replicas: list[str]


def proxied_calls(running: Running) -> list[ProxiedCall]:
    calls = []
    for line in (running.nginx_folder / "access.log").read_text().splitlines():
        ended, status, grpc_status, *replicas = line.replace(",", "").split()
        calls.append(ProxiedCall(float(ended), (status, grpc_status) == ("200", "0"), replicas))
    return calls


def rehearse(seconds: float, compare_seconds: float) -> dict[str, Any]:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rehearse-")))
        seed(REPO / "models", folder / "models")
        running = local_topology.start(stack, folder, folder / "models")
        result: dict[str, Any] = {
            "versions": local_topology.versions(),
            "single_channel_split": single_channel(running),
            "loads": compare(running, compare_seconds),
        }
        survivor_before = running.replicas[0].requests_answered()
        disrupted, happened = disrupted_load(running, seconds)
        victim = running.replicas[-1]
        calls_after_restart = (
            victim.requests_answered() - happened.calls_when_back - victim.direct_calls
        )
        survivor = running.replicas[0]
        disrupted["target"] = "balancer"
        disrupted["answered"] = [
            survivor.requests_answered() - survivor_before - survivor.direct_calls,
            calls_after_restart,
        ]
        result["loads"]["disrupted"] = disrupted
        proxied = proxied_calls(running)
        result["pids"] = [process.pid for process in running.processes.started]
    failed = [call for call in proxied if not call.ok]
    on_victim = [call for call in failed if call.replicas[-1] == victim.address]
    result["events"] = {
        "stopped_at_s": happened.since_start(happened.stopped),
        "killed_at_s": happened.since_start(happened.killed),
        "back_at_s": happened.since_start(happened.back),
        "promoted_at_s": happened.since_start(happened.promoted),
        "new_version": happened.version,
        "swap_s": happened.swap_s,
        # Calls the balancer failed, by the replica that failed them and when.
        "failed_at_sigterm": sum(call.ended < happened.killed for call in on_victim),
        "failed_at_sigkill": sum(call.ended >= happened.killed for call in on_victim),
        "failed_elsewhere": len(failed) - len(on_victim),
        "retried_by_nginx": sum(len(call.replicas) > 1 for call in proxied),
    }
    result["checks"] = judge(result, len(running.replicas))
    return result


def judge(result: dict[str, Any], replicas: int) -> dict[str, bool]:
    events, loads = result["events"], result["loads"]
    disrupted = loads["disrupted"]
    undisturbed = [run for key, run in loads.items() if key != "disrupted"]
    return {
        f"one channel's {SINGLE_CHANNEL_CALLS} calls reached every replica": (
            min(result["single_channel_split"]) > 0
        ),
        "the load through the balancer reached every replica": all(
            min(run["answered"]) > 0 for run in undisturbed if run["target"] == "balancer"
        ),
        "no failed call without a disruption": not any(run["errors"] for run in undisturbed),
        f"the failed calls are those in flight on replica-2 when it stopped or died (<= {CONCURRENCY} each)": (
            sum(disrupted["errors"].values())
            == events["failed_at_sigterm"] + events["failed_at_sigkill"]
            and events["failed_elsewhere"] == 0
            and max(events["failed_at_sigterm"], events["failed_at_sigkill"]) <= CONCURRENCY
            and set(disrupted["errors"]) <= DROPPED_CALL_CODES
        ),
        "the killed replica, restarted, got calls through the balancer": (
            disrupted["answered"][-1] > 0
        ),
        f"every replica served the new version within {SWAP_LIMIT_S:g} s": (
            len(events["swap_s"]) == replicas and max(events["swap_s"].values()) <= SWAP_LIMIT_S
        ),
    }


def report(result: dict[str, Any]) -> str:
    events = result["events"]
    versions = result["versions"]
    lines = [
        f"2 pricing-server replicas behind {versions['nginx']}, "
        f"{versions['redis'].split(' sha=')[0]}; load: pricing-loadtest, PriceOption, "
        "1 client process, 4 channels",
        "",
        "| load | in flight | calls ok | errors | calls/s | p50 ms | p99 ms | replica-1 / replica-2 |",
        "|:--|--:|--:|:--|--:|--:|--:|--:|",
    ]
    for run in result["loads"].values():
        errors = ", ".join(f"{code} {n}" for code, n in run["errors"].items()) or "none"
        lines.append(
            f"| {run['label']} | {run['concurrency']} | {run['ok']:,} | {errors} "
            f"| {run['calls_per_s']:,.0f} | {run['p50_ms']:.3f} | {run['p99_ms']:.3f} "
            f"| {_split(run['answered'])} |"
        )
    swaps = ", ".join(f"{name} after {s:.2f} s" for name, s in events["swap_s"].items())
    lines += [
        "",
        f"one channel, {SINGLE_CHANNEL_CALLS} calls in turn: replica-1 / replica-2 answered "
        f"{_split(result['single_channel_split'])}",
        f"replica-2: SIGTERM at {events['stopped_at_s']:.1f} s and restarted; SIGKILL at "
        f"{events['killed_at_s']:.1f} s, SERVING again at {events['back_at_s']:.1f} s (the last "
        "column counts its calls after that)",
        f"failed calls in nginx's log: {events['failed_at_sigterm']} in flight on replica-2 at "
        f"SIGTERM, {events['failed_at_sigkill']} at SIGKILL, {events['failed_elsewhere']} "
        f"elsewhere; calls nginx retried on replica-1 after a refused connection: "
        f"{events['retried_by_nginx']}",
        f"{events['new_version']} promoted at {events['promoted_at_s']:.1f} s, served by {swaps}",
        "",
    ]
    lines += [f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in result["checks"].items()]
    return "\n".join(lines)


def _split(counts: list[int]) -> str:
    return " / ".join(f"{n:,}" for n in counts)


def interrupt(_signum: int, _frame: Any) -> None:
    ABORT.set()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="the disrupted load's length")
    parser.add_argument(
        "--compare-seconds", type=float, default=5.0, help="each undisturbed load's length"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if local_topology.find_nginx() is None:
        print("nginx not found: `make rehearse` installs Debian's nginx", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        result = rehearse(args.seconds, args.compare_seconds)
    except KeyboardInterrupt:
        print("rehearse: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
