#!/usr/bin/env python3
"""Exit 0 when a pricing-server's gRPC health service says SERVING, 1 otherwise.

    pricing-healthcheck [HOST:PORT]     (default 127.0.0.1:$PRICING_PORT, else 127.0.0.1:50051)

The server image's HEALTHCHECK (installed there as /usr/local/bin/pricing-healthcheck), so
Docker and compose's `depends_on: condition: service_healthy` see a replica as healthy only
once its model is loaded and warmed; `make rehearse` waits on its processes with it too.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def is_serving(address: str, timeout: float = 2.0) -> bool:
    """Whether the overall health status ("" service) at `address` is SERVING."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    address = argv[0] if argv else f"127.0.0.1:{os.environ.get('PRICING_PORT', '50051')}"
    return 0 if is_serving(address) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
