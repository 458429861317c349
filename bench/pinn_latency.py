"""Latency of the committed PINN (price + five Greeks) in onnxruntime, one thread, against the
vectorised numpy closed form measured in the same run on the same inputs.

    .venv/bin/python bench/pinn_latency.py [--models models]

Prints, per batch size, the time per call and per option of both, and their ratio; then
the server's single-option call (4 padded rows) with the CPU caches evicted before each
call, as they are in a server where gRPC and Python ran since the model's last call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from shared.artifact_store import ArtifactStore
from shared.black_scholes import black_scholes
from shared.onnx_runtime import onnx_session
from shared.pinn_graph import OUTPUTS
from timing import best_seconds, machine
from trainer.pinn.domain import sample_inputs

# Twice the development machine's L3 (32 MiB): reading it evicts the model from every level.
EVICTION_BYTES = 64 * 1024 * 1024
CACHE_LINE_FLOATS = 8  # 64-byte lines: reading one float per line touches every line
COLD_CALLS = 500


def identity_graph(columns: int) -> bytes:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", columns])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", columns])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y]
    )
    opset = onnx.helper.make_opsetid("", 17)
    return onnx.helper.make_model(graph, opset_imports=[opset]).SerializeToString()


def cold_seconds(run: Callable[[], object]) -> float:
    """Median seconds per call of `run`, each after reading EVICTION_BYTES of other memory."""
    other = np.ones(EVICTION_BYTES // 8)
    times = []
    for _ in range(COLD_CALLS):
        other[::CACHE_LINE_FLOATS].sum()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder")
    args = parser.parse_args()
    artifact = ArtifactStore(args.models).load("pinn", "default")
    session = onnx_session(artifact.model)
    outputs = list(OUTPUTS)
    print(f"model pinn/default/{artifact.version}; machine: {machine()}")
    print(
        "| batch | onnxruntime per call | per option | numpy closed form per call | per option | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (1, 64, 1024, 10_000):
        x = sample_inputs(np.random.default_rng(n), n)
        x32 = x.astype(np.float32)
        runtime = best_seconds(lambda x32=x32: session.run(outputs, {"x": x32}))
        closed = best_seconds(lambda x=x: black_scholes(*x.T))
        print(
            f"| {n:,} | {runtime * 1e6:,.1f} us | {runtime / n * 1e9:,.0f} ns "
            f"| {closed * 1e6:,.1f} us | {closed / n * 1e9:,.0f} ns | {runtime / closed:.2f} |"
        )
    x32 = sample_inputs(np.random.default_rng(4), 4).astype(np.float32)
    identity = onnx_session(identity_graph(x32.shape[1]))
    print(
        "\n| 4 rows (one PriceOption), onnxruntime | caches warm | caches evicted before each call |"
    )
    print("|---|---:|---:|")
    for label, run in (
        (f"the PINN ({len(onnx.load_from_string(artifact.model).graph.node)} nodes)",
         lambda: session.run(outputs, {"x": x32})),
        ("one Identity node: the cost of any call", lambda: identity.run(None, {"x": x32})),
    ):  # fmt: skip
        print(f"| {label} | {best_seconds(run) * 1e6:.1f} us | {cold_seconds(run) * 1e6:.1f} us |")


if __name__ == "__main__":
    main()
